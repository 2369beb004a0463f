"""Model benchmark: this project's TVLT against transformers 4.40.2's, default size, CPU fp32, same run.

Input (the issue's reference workload): batch 1, 8 frames of 224x224 and 512 audio frames (32 time x 8 freq
patches), so the unmasked sequence is 1 + 1568 + 256 = 1825 tokens. Cases:

- ``encoder forward``: TvltModel, inference (``torch.inference_mode``), no masking;
- ``fine-tuning step``: TvltForAudioVisualClassification (1 label, regression) forward + backward + AdamW step;
- ``pretraining step``: TvltForPreTraining, VAM (mixed video + labels) and MAE, forward + backward + AdamW step;
- ``pretraining step peak RSS``: the process's peak resident memory (ru_maxrss) during the pretraining case,
  model and optimizer included (the same for both implementations, so the difference is activations).

Timing: for each case one subprocess builds both models (same architecture and inputs) and alternates their
steps (reference, ours, reference, ours, ...), so that load from other processes on a shared machine hits both
alike. Memory: one fresh subprocess per implementation runs one pretraining step (honest ru_maxrss). Figures are
medians after one warm-up iteration, at most 3 timed iterations for the
forward and 2 for the training steps (a reference pretraining step takes tens of seconds on 2 cores). Both
implementations use the same optimizer, ``AdamW(fused=True)``. Run one case alone:
``python -m bench.bench_model --case pretrain --repeats 1`` (prints JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    "forward": "encoder forward (B=1, 8x224^2 + 512 audio frames)",
    "finetune": "fine-tuning step (fwd+bwd+AdamW, B=1)",
    "pretrain": "pretraining step MAE+VAM (fwd+bwd+AdamW, B=1)",
}
MAX_FORWARD_REPEATS = 3
MAX_STEP_REPEATS = 2  # a reference pretraining step takes tens of seconds on 2 shared cores


def _inputs(batch: int = 1):
    import torch

    gen = torch.Generator().manual_seed(0)
    pixel = torch.rand(batch, 8, 3, 224, 224, generator=gen) * 2 - 1
    audio = torch.rand(batch, 1, 512, 128, generator=gen) * 2 - 1
    return pixel, audio


def _build(case: str, impl: str):
    """Same architecture for both implementations, seeded random init (timing does not depend on values)."""
    import torch

    torch.manual_seed(0)
    if impl == "reference":
        import transformers

        classes = {"forward": transformers.TvltModel, "finetune": transformers.TvltForAudioVisualClassification,
                   "pretrain": transformers.TvltForPreTraining}
        kwargs = {"num_labels": 1, "loss_type": "regression"} if case == "finetune" else {}
        return classes[case](transformers.TvltConfig(**kwargs))
    from tvlt import TvltConfig, TvltForAudioVisualClassification, TvltForPreTraining, TvltModel

    classes = {"forward": TvltModel, "finetune": TvltForAudioVisualClassification, "pretrain": TvltForPreTraining}
    kwargs = {"num_labels": 1, "loss_type": "regression"} if case == "finetune" else {}
    return classes[case](TvltConfig(**kwargs))


def _step_fn(case: str, model, pixel, audio):
    import torch

    if case == "forward":
        model.eval()

        def step() -> None:
            with torch.inference_mode():
                model(pixel, audio)

        return step
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)  # the same optimizer for both
    labels = torch.tensor([[0.5]]) if case == "finetune" else torch.tensor([[1.0]])
    mixed = pixel.flip(1)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        if case == "finetune":
            out = model(pixel, audio, labels=labels)
        else:
            out = model(pixel, audio, labels=labels, pixel_values_mixed=mixed)
        out.loss.backward()
        optimizer.step()

    return step


def measure_interleaved(case: str, repeats: int, with_reference: bool) -> dict:
    """Time both implementations in this process, alternating reference and ours step by step, so that load
    from other processes on a shared machine hits both alike. Returns per-implementation times (s)."""
    import torch

    pixel, audio = _inputs()
    impls = ["reference", "ours"] if with_reference else ["ours"]
    steps = {impl: _step_fn(case, _build(case, impl), pixel, audio) for impl in impls}
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    torch.manual_seed(1)
    for impl in impls:
        steps[impl]()  # warm-up
    for _ in range(repeats):
        for impl in impls:
            start = time.perf_counter()
            steps[impl]()
            times[impl].append(time.perf_counter() - start)
    return {impl: {"median_s": statistics.median(t), "times_s": t} for impl, t in times.items()}


def measure_peak_rss(case: str, impl: str) -> dict:
    """One step of one implementation in a fresh process: peak resident memory (ru_maxrss) in MB."""
    pixel, audio = _inputs()
    _step_fn(case, _build(case, impl), pixel, audio)()
    return {"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _subprocess(args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "bench.bench_model", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _reference_available() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def run(repeats: int = 5) -> list[dict]:
    import torch

    with_reference = _reference_available()
    threads = torch.get_num_threads()
    rows = []
    for case, label in CASES.items():
        n = max(1, min(repeats, MAX_FORWARD_REPEATS if case == "forward" else MAX_STEP_REPEATS))
        args = ["--case", case, "--repeats", str(n)] + ([] if with_reference else ["--no-reference"])
        result = _subprocess(args)
        ours, ref = result["ours"], result.get("reference")
        note = (f"CPU fp32, {threads} torch threads, median of {n} after 1 warm-up, steps of both alternated in "
                "one process; " + ("AdamW(fused=True) for both; " if case != "forward" else "")
                + "reference = transformers 4.40.2 (eager attention)")
        rows.append({"case": label, "ours": ours["median_s"], "reference": ref["median_s"] if ref else None,
                     "unit": "s", "notes": note})
        print(f"  {label}: ours {ours['times_s']} s, reference {ref['times_s'] if ref else None} s", flush=True)
    mem = {impl: _subprocess(["--case", "pretrain", "--impl", impl, "--memory"])["maxrss_mb"]
           for impl in (["ours", "reference"] if with_reference else ["ours"])}
    rows.append({"case": "pretraining step peak RSS (B=1)", "ours": mem["ours"], "reference": mem.get("reference"),
                 "unit": "MB", "notes": "ru_maxrss of a fresh process running one step, model + AdamW state "
                 "included (same for both)"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-reference", action="store_true", help="time this project only")
    parser.add_argument("--memory", action="store_true", help="peak RSS of one step of --impl instead of timing")
    parser.add_argument("--impl", choices=["ours", "reference"], default="ours")
    args = parser.parse_args()
    if args.memory:
        print(json.dumps(measure_peak_rss(args.case, args.impl)))
    else:
        print(json.dumps(measure_interleaved(args.case, args.repeats, not args.no_reference)))


if __name__ == "__main__":
    main()
