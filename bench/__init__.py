"""Benchmarks: this project against the references (transformers 4.40.2), measured in the same run.

Each ``bench/bench_<topic>.py`` defines ``run(repeats: int = 5) -> list[dict]`` returning rows
``{"case", "ours", "reference", "unit" ("s" | "clips/s" | "MB"), "notes"}`` (medians after warm-up).
``python -m bench`` (``make bench``) runs them all, prints a table and writes ``bench/results/<date>.json`` and
``BENCHMARKS.md``. The helpers below are shared by the modules: one timing rule, one synthetic input of each kind.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path


def proc_kb(field: str, path: str = "/proc/self/status") -> int:
    """A kB figure from a Linux /proc file (``VmRSS``, ``VmHWM``, ``VmSize`` of this process, or ``MemAvailable``
    from /proc/meminfo). Raises KeyError when the file has no such field."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{path} has no {field}")


def median_seconds(fn: Callable[[], object], repeats: int,
                   clock: Callable[[], float] = time.perf_counter) -> float:
    """Median duration in seconds of ``repeats`` calls of ``fn``, after one untimed call (caches, allocator, worker
    and thread start-up). ``clock``: ``time.perf_counter`` (wall time) or ``time.process_time`` (this process's
    CPU time, steadier on a shared machine but blind to work in other processes)."""
    fn()
    times = []
    for _ in range(max(1, repeats)):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def random_inputs(batch: int, frames: int, audio_frames: int, image_size: int = 224, mel_bins: int = 128):
    """Seeded ``(pixel_values (B, F, 3, S, S), audio_values (B, 1, T, 128))``, uniform in [-1, 1] as the
    processors' outputs are; the same values for both implementations (timing does not depend on them)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    pixel = torch.rand(batch, frames, 3, image_size, image_size, generator=gen) * 2 - 1
    audio = torch.rand(batch, 1, audio_frames, mel_bins, generator=gen) * 2 - 1
    return pixel, audio


def moving_pattern(seconds: int = 10, height: int = 480, width: int = 640, fps: int = 30):
    """uint8 (seconds * fps, H, W, 3) frames: a diagonal ramp scrolling 4 px per frame with a 40 x 40 noise patch,
    so that an encoder sees motion and detail (neither a still image nor pure noise) in every frame."""
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    base = ((xx + yy) % 256).astype(np.uint8)
    frames = np.empty((seconds * fps, height, width, 3), np.uint8)
    for i in range(len(frames)):
        shifted = np.roll(base, 4 * i, axis=1)
        frames[i] = np.stack([shifted, np.roll(shifted, 50, axis=0), 255 - shifted], axis=-1)
        frames[i, 100:140, 100:140] = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    return frames


def compose(overrides: list[str]):
    """The project's Hydra config (``conf/config.yaml``) with ``overrides``, as ``run.py`` would compose it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    GlobalHydra.instance().clear()
    return cfg


def reference_available() -> bool:
    """The reference is transformers with its TVLT port (removed from transformers after 4.40.2)."""
    try:
        import transformers
    except ImportError:
        return False
    return hasattr(transformers, "TvltForPreTraining")
