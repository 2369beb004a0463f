"""Inference and precision: predict throughput over a folder of clips, and bf16-mixed against fp32 on the CPU.

Rows (no reference figure: neither reference ships dataset prediction; the bf16 rows compare two precisions of
this project in the same run, ratio = fp32 time / bf16 time):

- ``predict over a folder``: clips/s of ``Trainer.predict`` over the embedded demo MOSEI set (48 clips: 2 s mp4 +
  16 kHz wav), as ``mode=predict`` reads it (``datamodule.evaluation_loader``, uniform frames, no jitter), the
  demo-size sentiment model, 4 frames, batch 8, with 1 and 2 DataLoader workers. Worker start-up is inside the
  timed pass: a prediction run pays it once.
- ``bf16-mixed``: the same predict pass with ``precision="bf16-mixed"`` (1 worker); the demo model's forward and
  fine-tuning step (forward, backward, AdamW; B=2, 4 frames of 224x224 + 512 audio frames) under
  ``torch.autocast("cpu", torch.bfloat16)``, which is what Lightning's ``bf16-mixed`` runs, against fp32;
- the prediction difference of the two precisions on that fixed input set: max |bf16 - fp32| of the sentiment
  score over the 48 clips, next to the spread (std) of the fp32 scores.

bf16 is fast only where the CPU multiplies bf16 natively (AVX-512-BF16 or AMX); elsewhere PyTorch converts in
software and bf16 is slower than fp32. The notes name the CPU's bf16 instructions found in /proc/cpuinfo.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo" / "mosei"
OVERRIDES = ["experiment=mosei_demo", f"data.demo_dir={DEMO}", "data.num_frames=4", "data.batch_size=8"]


def _cfg(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    GlobalHydra.instance().clear()
    return cfg


def _bf16_instructions() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    found = sorted({f for f in flags.split() if "bf16" in f or f.startswith("amx")})
    return ", ".join(found) or "none (bf16 converted in software)"


def predict_pass(module, num_workers: int, precision: str) -> tuple[float, list[float]]:
    """Seconds of one ``Trainer.predict`` over train+valid+test of the demo set, and the sentiment scores."""
    import lightning.pytorch as pl
    from hydra.utils import instantiate

    cfg = _cfg([*OVERRIDES, f"data.num_workers={num_workers}"])
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    trainer = pl.Trainer(accelerator="cpu", devices=1, precision=precision, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    scores: list[float] = []
    start = time.perf_counter()
    for split in ("train", "valid", "test"):
        for out in trainer.predict(module, dataloaders=datamodule.evaluation_loader(split)):
            scores += out["preds"].float().reshape(-1).tolist()
    return time.perf_counter() - start, scores


def _module():
    from hydra.utils import instantiate

    torch.manual_seed(0)
    return instantiate(_cfg(OVERRIDES).model, _convert_="all")


def _step_times(module, bf16: bool, train: bool, repeats: int) -> float:
    model = module.model
    model.train(train)
    gen = torch.Generator().manual_seed(0)
    batch = {"pixel_values": torch.randn(2, 4, 3, 224, 224, generator=gen),
             "audio_values": torch.randn(2, 1, 512, 128, generator=gen)}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if train:
                out = model(**batch)
                out.logits.float().pow(2).mean().backward()
            else:
                with torch.inference_mode():
                    model(**batch)
        if train:
            opt.step()
            opt.zero_grad(set_to_none=True)

    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(repeats: int = 5) -> list[dict]:
    from datamodules.demo import DemoSpec, ensure_demo_mosei

    ensure_demo_mosei(DEMO, DemoSpec())  # outside the timed passes
    module = _module().eval()
    rows = []
    rates = {}
    for workers in (1, 2):
        seconds, scores = predict_pass(module, workers, "32-true")
        rates[workers] = len(scores) / seconds
        rows.append({"case": f"predict over a folder, fp32, {workers} worker(s)", "ours": rates[workers],
                     "reference": None, "unit": "clips/s",
                     "notes": f"{len(scores)} demo clips (2 s mp4 + 16 kHz wav), demo sentiment model, 4 frames, "
                              f"batch 8, Trainer.predict over datamodule.evaluation_loader; worker start-up "
                              f"included"})
    fp32_scores = scores
    seconds, bf16_scores = predict_pass(module, 1, "bf16-mixed")
    diff = max(abs(a - b) for a, b in zip(fp32_scores, bf16_scores))
    cpu = _bf16_instructions()
    rows.append({"case": "predict over a folder, bf16-mixed, 1 worker", "ours": len(bf16_scores) / seconds,
                 "reference": None, "unit": "clips/s",
                 "notes": f"as the fp32 row; {len(bf16_scores) / seconds / rates[1]:.2f}x the fp32 rate; "
                          f"CPU bf16 instructions: {cpu}"})
    rows.append({"case": "bf16-mixed vs fp32 prediction difference (max abs delta of the sentiment score)", "ours": diff,
                 "reference": None, "unit": "score",
                 "notes": f"over the {len(fp32_scores)} demo clips, demo model (random init, seed 0); fp32 scores "
                          f"have std {statistics.pstdev(fp32_scores):.3f}"})
    reps = max(1, min(repeats, 3))
    for train, what in ((False, "forward"), (True, "fine-tuning step (fwd+bwd+AdamW)")):
        fp32 = _step_times(_module(), False, train, reps)
        bf16 = _step_times(_module(), True, train, reps)
        rows.append({"case": f"demo model {what}, B=2, bf16-mixed vs fp32", "ours": bf16, "reference": fp32,
                     "unit": "s",
                     "notes": f"'reference' column = fp32 of this project; 4x224^2 + 512 audio frames; "
                              f"torch.autocast(cpu, bfloat16) as Lightning's bf16-mixed; median of {reps} after a "
                              f"warm-up; CPU bf16 instructions: {cpu}"})
    return rows


if __name__ == "__main__":
    for row in run(repeats=1):
        print(row)
