"""Scaling curves: time and peak memory of the encoder forward and of a fine-tuning step as the input grows,
this project vs transformers 4.40.2 (same config, same weights, same inputs, same run), drawn to
``bench/results/scaling.png``.

Sweeps (batch 1, CPU fp32, no padding masks):

- frames 1, 2, 4, 8, 16 of 224x224 with 512 audio frames (~5.9 s): 1 + 196*F + 256 tokens;
- audio 1, 5, 10, 20 s (86, 430, 861, 1722 spectrogram frames, padded to a multiple of 16 as the feature
  extractor does) with 8 frames: 1 + 1568 + 8*ceil(T/16) tokens.

Config: TVLT-base widths (d 768, 12 heads, MLP 3072) with ``num_frames=16`` (the temporal table must have a row
per frame; both implementations get the same config) and ``spectrogram_length=2048`` (room for 20 s), 1 label,
regression. To fit the shared 2-core CPU the encoder is cut to ``TVLT_BENCH_SCALING_LAYERS`` layers (default 2;
every layer is identical, so the curves keep their shape and the full 12-layer encoder costs ~12/layers times
as much; set it to 12 for the full model, ~6x the time). ``--quick`` (repeats=1) uses 1 layer.

Cases per point: ``forward`` (``model.tvlt`` under ``torch.inference_mode``) and ``fine-tuning step``
(TvltForAudioVisualClassification forward + MSE loss + backward + AdamW step), after one warm-up forward + step
at the smallest point (which also creates the AdamW state, so it is not in the measured memory). The step is
called with ``output_hidden_states=True`` for both implementations, which turns off this project's CLS-only last
layer: in a 2-layer cut it would skip about half the work instead of the full model's ~1/12, and the sweep is
about how one layer scales with L (the full-size steps, CLS-only included, are ``bench_model``'s).

Time: the measuring process runs torch with ``TVLT_BENCH_SCALING_THREADS`` threads (default 1) and the figure
is its CPU time per call (``time.process_time``), the median of up to 3 calls (1 call where a call is estimated
above ~2 s). On a shared, oversubscribed CPU, wall time mostly measures the other tenants (docs/benchmarks.md
shows identical two-thread calls varying severalfold); the CPU time of a single-threaded process is what the call
costs on one idle core, and the same holds for both implementations. Wall times are kept in ``scaling.json``.

Peak memory: the Linux peak-RSS counter of the measuring process is reset right before each measured call
(``gc.collect()``, glibc ``malloc_trim(0)`` to hand freed memory back, then ``echo 5 > /proc/self/clear_refs``),
and the figure is ``VmHWM - VmRSS_before``: the extra resident memory the call needed (activations, attention
matrices, gradients; not the weights or the optimizer state, which both implementations share). One subprocess
measures everything, interleaving the two implementations point by point. Run alone:
``python -m bench.bench_scaling [--layers N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import proc_kb, random_inputs, reference_available

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PLOT_PATH = RESULTS_DIR / "scaling.png"
FRAME_POINTS = (1, 2, 4, 8, 16)
AUDIO_SECONDS = (1, 5, 10, 20)
FIXED_AUDIO_FRAMES = 512
FIXED_FRAMES = 8
DEFAULT_LAYERS = 2
MAX_REPEATS = 3
SLOW_STEP_S = 2.0  # calls estimated above this (s) are measured once
ASSUMED_FLOPS = 80e9  # FLOP/s of one core, fp32, on the low side (rows report ours'); only decides repeats
DEFAULT_THREADS = 1
CASES = ("forward", "fine-tuning step")


@dataclass(frozen=True)
class Point:
    sweep: str  # "frames" or "audio"
    frames: int
    audio_frames: int  # after padding to a multiple of the patch height
    label: str  # "F=4" / "10 s"


def sweep_points() -> list[Point]:
    from tvlt.flops import audio_frames_for_seconds

    points = [Point("frames", f, FIXED_AUDIO_FRAMES, f"F={f}") for f in FRAME_POINTS]
    for seconds in AUDIO_SECONDS:
        frames = math.ceil(audio_frames_for_seconds(seconds) / 16) * 16
        points.append(Point("audio", FIXED_FRAMES, frames, f"{seconds} s"))
    return points


def bench_config_kwargs(layers: int) -> dict:
    return dict(num_frames=max(*FRAME_POINTS, FIXED_FRAMES), spectrogram_length=2048, num_hidden_layers=layers,
                num_labels=1, loss_type="regression")


# --------------------------------------------------------------------------------------------- peak memory
_LIBC = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None


def reset_peak_rss() -> int | None:
    """Release freed memory, reset the peak-RSS counter; return the current RSS in kB (None if unsupported)."""
    gc.collect()
    if _LIBC is None:
        return None
    _LIBC.malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return proc_kb("VmRSS")


def peak_rss_delta_mb(before_kb: int | None) -> float | None:
    if before_kb is None:
        return None
    return (proc_kb("VmHWM") - before_kb) / 1024


def _available_mb() -> float:
    try:
        return proc_kb("MemAvailable", "/proc/meminfo") / 1024
    except (OSError, KeyError):
        return float("inf")


# ------------------------------------------------------------------------------------------------- worker
def _models(layers: int):
    """Reference and ours, same config and weights (ours loads the reference's state dict strictly). Without
    the reference (transformers 4.40.2 comes with the ``test`` extra) only ours is measured."""
    import torch

    from tvlt import TvltConfig, TvltForAudioVisualClassification

    kwargs = bench_config_kwargs(layers)
    torch.manual_seed(0)
    ours = TvltForAudioVisualClassification(TvltConfig(**kwargs))
    if not reference_available():
        print("  no transformers with TVLT installed: measuring this project only", file=sys.stderr)
        return {"ours": ours}
    import transformers

    ref = transformers.TvltForAudioVisualClassification(transformers.TvltConfig(**kwargs))
    ours.load_state_dict(ref.state_dict(), strict=True)
    return {"ours": ours, "reference": ref}


def _inputs(point: Point):
    return random_inputs(1, point.frames, point.audio_frames)


def _reference_train_mb(tokens: int, layers: int) -> float:
    """Rough need of the reference's eager attention in training: a few (12, L, L) fp32 tensors per layer."""
    return layers * 12 * tokens * tokens * 4 * 3 / 2**20


def measure(layers: int, repeats: int) -> dict:
    """Measure every point in this process; returns {"points": [...], "layers", "threads"}."""
    import torch

    from tvlt.flops import encoder_forward_flops, finetune_step_flops, token_counts
    from tvlt import TvltConfig

    torch.set_num_threads(int(os.environ.get("TVLT_BENCH_SCALING_THREADS", DEFAULT_THREADS)))
    config = TvltConfig(**bench_config_kwargs(layers))
    models = _models(layers)
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-5) for name, m in models.items()}
    label = torch.tensor([[0.5]])

    def forward(name: str, pixel, audio) -> None:
        model = models[name].eval()
        with torch.inference_mode():
            model.tvlt(pixel, audio)

    def train_step(name: str, pixel, audio) -> None:
        model, optimizer = models[name].train(), optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        # output_hidden_states for both: every layer computes every row (see the module docstring)
        model(pixel, audio, labels=label, output_hidden_states=True).loss.backward()
        optimizer.step()

    points = sweep_points()
    warm = _inputs(points[0])
    for name in models:  # warm-up: thread pool, kernels, AdamW state
        forward(name, *warm)
        train_step(name, *warm)

    results = []
    for point in points:
        pixel, audio = _inputs(point)
        tokens = token_counts(config, point.frames, point.audio_frames).sequence
        flops = {"forward": encoder_forward_flops(config, point.frames, point.audio_frames).total,
                 "fine-tuning step": finetune_step_flops(
                     config, point.frames, point.audio_frames, cls_only_last_layer=False).total}  # every row
        entry = {**asdict(point), "tokens": tokens, "flops": flops, "cases": {}}
        for case, fn in (("forward", forward), ("fine-tuning step", train_step)):
            runs = 1 if flops[case] / ASSUMED_FLOPS > SLOW_STEP_S else max(1, min(repeats, MAX_REPEATS))
            entry["cases"][case] = {}
            for name in models:
                need = _reference_train_mb(tokens, layers) if name == "reference" and case != "forward" else 0
                if need > 0.7 * _available_mb():
                    entry["cases"][case][name] = {"skipped": f"needs ~{need:.0f} MB, "
                                                             f"{_available_mb():.0f} MB available"}
                    continue
                times, walls, peaks = [], [], []
                for _ in range(runs):
                    before = reset_peak_rss()
                    start, start_cpu = time.perf_counter(), time.process_time()
                    fn(name, pixel, audio)
                    times.append(time.process_time() - start_cpu)
                    walls.append(time.perf_counter() - start)
                    peaks.append(peak_rss_delta_mb(before))
                entry["cases"][case][name] = {"median_s": statistics.median(times), "times_s": times,
                                              "wall_s": walls, "peak_mb": None if peaks[0] is None else max(peaks)}
            print(f"  {point.label:9s} L={tokens:5d} {case:16s} " + ", ".join(
                f"{n} {v['median_s']:.2f} s / {v['peak_mb'] or 0:.0f} MB" if "median_s" in v else f"{n} skipped"
                for n, v in entry["cases"][case].items()), file=sys.stderr, flush=True)
        results.append(entry)
    return {"layers": layers, "threads": torch.get_num_threads(), "points": results}


# ------------------------------------------------------------------------------------------------- fit
def quadratic_crossover(data: dict, case: str, impl: str) -> float | None:
    """Least-squares fit ``time = c1 L + c2 L^2`` over every point (both sweeps): the length ``L* = c1 / c2``
    where the quadratic (attention) term costs as much as the linear one. The FLOP model's value for TVLT-base
    is 6d = 4608 (``24 L d^2`` linear vs ``4 L^2 d`` attention FLOPs per layer)."""
    import numpy as np

    pairs = [(p["tokens"], p["cases"][case][impl]["median_s"]) for p in data["points"]
             if "median_s" in p["cases"][case].get(impl, {})]
    if len(pairs) < 3:
        return None
    tokens, times = np.array(pairs, dtype=float).T
    (c1, c2), *_ = np.linalg.lstsq(np.stack([tokens, tokens**2], axis=1), times, rcond=None)
    return float(c1 / c2) if c2 > 0 else None


# ------------------------------------------------------------------------------------------------- plot
def plot(data: dict, path: Path = PLOT_PATH) -> Path:
    """2x2 figure: rows = frames sweep / audio sweep, columns = time / peak memory; x = encoder tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {("ours", "forward"): ("tab:blue", "-", "o"), ("reference", "forward"): ("tab:orange", "-", "o"),
              ("ours", "fine-tuning step"): ("tab:blue", "--", "s"),
              ("reference", "fine-tuning step"): ("tab:orange", "--", "s")}
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    for row, (sweep, title) in enumerate((("frames", f"frames 1-16, {FIXED_AUDIO_FRAMES} audio frames"),
                                          ("audio", f"audio 1-20 s, {FIXED_FRAMES} frames"))):
        pts = [p for p in data["points"] if p["sweep"] == sweep]
        x = [p["tokens"] for p in pts]
        for col, (key, ylabel) in enumerate((("median_s", "CPU time (s)"), ("peak_mb", "peak extra RSS (MB)"))):
            ax = axes[row, col]
            for (impl, case), (color, ls, marker) in styles.items():
                xs = [p["tokens"] for p in pts if p["cases"][case].get(impl, {}).get(key) is not None]
                ys = [p["cases"][case][impl][key] for p in pts if p["cases"][case].get(impl, {}).get(key) is not None]
                if ys:
                    label = f"{impl}: {case}"
                    crossover = quadratic_crossover(data, case, impl) if key == "median_s" else None
                    if crossover is not None:
                        label += f" (L^2 term = L term at L*={crossover:.0f})"
                    ax.plot(xs, ys, color=color, linestyle=ls, marker=marker, label=label)
            if key == "median_s":
                _flop_model_line(ax, pts)
            for p in pts:
                ax.annotate(p["label"], (p["tokens"], 0), xycoords=("data", "axes fraction"), xytext=(0, 3),
                            textcoords="offset points", ha="center", fontsize=7, color="gray")
            ax.set_xlabel("encoder tokens L = 1 + 196 F + 8 ceil(T/16)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{title}: {ylabel.split(' (')[0]}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.set_xlim(0, max(x) * 1.05)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=7)
    fig.suptitle(f"TVLT scaling, CPU fp32, batch 1, {data['threads']} thread(s), encoder cut to {data['layers']} "
                 f"of 12 layers (d 768); this project vs transformers 4.40.2", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _flop_model_line(ax, pts: list[dict]) -> None:
    """Least-squares fit of ours' times to ``a + FLOPs / rate`` (fixed overhead + constant FLOP/s), drawn at
    every point: where the measured curve bends above it, the extra cost is not explained by FLOPs."""
    import numpy as np

    for case, ls in (("forward", ":"), ("fine-tuning step", "-.")):
        measured = [(p["flops"][case], p["cases"][case]["ours"]["median_s"]) for p in pts
                    if "median_s" in p["cases"][case].get("ours", {})]
        if len(measured) < 2:
            continue
        flops, times = np.array(measured).T
        slope, intercept = np.polyfit(flops, times, 1)
        ax.plot([p["tokens"] for p in pts], [intercept + slope * p["flops"][case] for p in pts], color="gray",
                linestyle=ls, linewidth=1,
                label=f"fit a + FLOPs/rate to ours' {case} ({1e-9 / slope:.0f} GFLOP/s)" if slope > 0 else None)


# ------------------------------------------------------------------------------------------------- run
def _layers(repeats: int) -> int:
    env = os.environ.get("TVLT_BENCH_SCALING_LAYERS")
    if env:
        return int(env)
    return 1 if repeats == 1 else DEFAULT_LAYERS


def rows(data: dict) -> list[dict]:
    layers, threads = data["layers"], data["threads"]
    out = []
    for p in data["points"]:
        for case in CASES:
            res = p["cases"][case]
            ours, ref = res.get("ours", {}), res.get("reference", {})
            frames = f"{p['frames']} frame{'s' if p['frames'] > 1 else ''}"
            base = (f"scaling {case}, {frames} + " + (f"{p['audio_frames']} audio frames"
                    if p["sweep"] == "frames" else f"{p['label']} audio ({p['audio_frames']} frames)")
                    + f" (L={p['tokens']})")
            gflop = p["flops"][case] / 1e9
            rate = gflop / ours["median_s"] if "median_s" in ours else float("nan")
            skipped = f"; reference skipped: {ref['skipped']}" if "skipped" in ref else ""
            notes = (f"CPU time, {threads} thread(s), {layers}/12 layers, d 768, B=1, {gflop:.0f} GFLOP, "
                     f"ours {rate:.0f} GFLOP/s, median of {len(ours.get('times_s', []))}{skipped}")
            out.append({"case": base, "ours": ours.get("median_s"), "reference": ref.get("median_s"), "unit": "s",
                        "notes": notes})
            out.append({"case": base + " peak memory", "ours": ours.get("peak_mb"), "reference": ref.get("peak_mb"),
                        "unit": "MB", "notes": "VmHWM - VmRSS before the call" + skipped})
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def run(repeats: int = 5) -> list[dict]:
    layers = _layers(repeats)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scaling.json"
        cmd = [sys.executable, "-m", "bench.bench_scaling", "--layers", str(layers), "--repeats", str(repeats),
               "--json", str(out), "--no-plot"]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(cmd, env=env, check=False, cwd=Path(__file__).resolve().parents[1])
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
        data = json.loads(out.read_text())
    save(data)
    return rows(data)


def save(data: dict) -> None:
    """Write ``bench/results/scaling.json`` (measurements + fitted crossovers) and ``scaling.png``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data["quadratic_crossover_tokens"] = {f"{impl}: {case}": quadratic_crossover(data, case, impl)
                                          for case in CASES for impl in ("ours", "reference")}
    (RESULTS_DIR / "scaling.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"  wrote {RESULTS_DIR / 'scaling.json'} and {plot(data)}", flush=True)


def markdown(path: Path = RESULTS_DIR / "scaling.json") -> str:
    """A BENCHMARKS.md section: the PNG and where the cost turns quadratic, from the last ``scaling.json``.

    For ``python -m bench`` to append after its table (returns "" when no scaling run has been saved).
    """
    if not path.is_file():
        return ""
    data = json.loads(path.read_text())
    fits = data.get("quadratic_crossover_tokens", {})

    def fit(key: str) -> str:
        return _fmt(fits.get(key))

    return "\n".join([
        "## Scaling",
        "",
        "![scaling curves](bench/results/scaling.png)",
        "",
        f"CPU time (1 thread) and peak extra RSS of the encoder forward and a fine-tuning step, frames 1-16 and "
        f"audio 1-20 s, encoder cut to {data['layers']} of 12 layers (d 768). Tokens L = 1 + 196 F + 8 ceil(T/16).",
        "Per layer the linear layers cost 24 L d^2 FLOPs and attention 4 L^2 d, so the quadratic term equals the "
        "linear one at L = 6d = 4608 (attention = MLP at L = 3072, ~14 frames with 512 audio frames).",
        f"Fitting time = c1 L + c2 L^2 over the sweep: ours L* = {fit('ours: forward')} (forward) / "
        f"{fit('ours: fine-tuning step')} (step) against the FLOP model's 4608; the reference (eager attention, "
        f"(12, L, L) scores materialised) L* = {fit('reference: forward')} / {fit('reference: fine-tuning step')} "
        "(the default input, 8 frames + 512 audio frames, is L = 1825). Peak memory: the reference's grows as L^2, "
        "ours linearly. Details: docs/benchmarks.md.",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=None, help=f"encoder layers (default {DEFAULT_LAYERS})")
    parser.add_argument("--repeats", type=int, default=MAX_REPEATS)
    parser.add_argument("--json", type=Path, default=None, help="write the raw measurements here")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    layers = args.layers or _layers(args.repeats)
    data = measure(layers, args.repeats)
    if args.json:
        args.json.write_text(json.dumps(data))
    if not args.no_plot:
        save(data)


if __name__ == "__main__":
    main()
