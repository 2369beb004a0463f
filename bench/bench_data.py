"""Data pipeline benchmark: clips per second through decode + preprocess, raw video vs the pre-extraction cache.

Input: a generated 10 s, 640x480, 30 fps H.264 clip with 44.1 kHz stereo AAC audio (temp dir), listed 32 times in
a manifest. Each case runs the MOSEI-style evaluation pipeline (8 uniform frames, the whole clip's audio from the
container, hf processors, collation, batch size 1) through a DataLoader with one (and, for the default
raw and the cache cases, two) worker processes (persistent, so worker start-up is not timed); the figure is the median over ``repeats`` epochs after one warm-up epoch.

Cases:
- raw, isolated decode (the default: decoding in a helper process with a 30 s timeout);
- raw, in-process decode (``decode_timeout=None``), to show what the hang protection costs;
- cache (frames uint8 224x224 + float16 log-mel from ``datamodules.cache``; no video decoding).

There is no reference figure: neither reference implementation ships a comparable loader for this input.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from datamodules.cache import ClipCache, build_cache
from datamodules.collate import TvltCollator
from datamodules.datasets import ClipDataset
from datamodules.decoding import ClipReader
from datamodules.demo import write_mp4
from datamodules.manifests import Row, build_manifest
from tvlt.feature_extraction import TvltFeatureExtractor
from tvlt.image_processing import TvltImageProcessor

CLIPS = 32  # per epoch: enough that epoch start-up latency does not dominate the cached rate


def _make_clip(path: Path) -> None:
    t, h, w, fps = 300, 480, 640, 30
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = ((xx + yy) % 256).astype(np.uint8)
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        shifted = np.roll(base, 4 * i, axis=1)
        frames[i] = np.stack([shifted, np.roll(shifted, 50, axis=0), 255 - shifted], axis=-1)
        frames[i, 100:140, 100:140] = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    n = 10 * 44100
    time_axis = np.arange(n) / 44100
    audio = np.stack([0.3 * np.sin(2 * np.pi * 440 * time_axis), 0.1 * rng.standard_normal(n)]).astype(np.float32)
    write_mp4(path, frames, fps, audio=audio, audio_rate=44100, crf=23)


def _clips_per_second(dataset: ClipDataset, collate: TvltCollator, repeats: int, workers: int = 1) -> float:
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, persistent_workers=True, collate_fn=collate)
    for _ in loader:  # warm-up epoch: worker start, decode helper start, caches
        pass
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = sum(len(batch["ids"]) for batch in loader)
        rates.append(count / (time.perf_counter() - start))
    del loader
    return statistics.median(rates)


def run(repeats: int = 5) -> list[dict]:
    ip, fe = TvltImageProcessor(), TvltFeatureExtractor()
    collate = TvltCollator(ip.patches_per_frame, ip.padding_value, fe.padding_value, fe.freq_len, fe.patch_size[0])
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip10s.mp4"
        _make_clip(video)
        rows = [Row(f"clip{i}", str(video), "container", None, "bench", i) for i in range(CLIPS)]
        manifest = build_manifest(rows, "bench")
        isolated = ClipReader(num_frames=8, decode_timeout=30.0)
        in_process = ClipReader(num_frames=8, decode_timeout=None)
        build_cache(manifest, Path(tmp) / "cache", in_process, ip, fe)
        cache = ClipCache.open(Path(tmp) / "cache", 8, "hf")
        threads = torch.get_num_threads()
        try:
            raw = _clips_per_second(ClipDataset(manifest, isolated, ip, fe), collate, repeats)
            raw_inproc = _clips_per_second(ClipDataset(manifest, in_process, ip, fe), collate, repeats)
            cached = _clips_per_second(ClipDataset(manifest, in_process, ip, fe, cache=cache), collate, repeats)
            raw2 = _clips_per_second(ClipDataset(manifest, isolated, ip, fe), collate, repeats, workers=2)
            cached2 = _clips_per_second(ClipDataset(manifest, in_process, ip, fe, cache=cache), collate, repeats,
                                        workers=2)
        finally:
            torch.set_num_threads(threads)
    note = "10 s 640x480 30 fps h264 + AAC, 8 frames, whole-clip audio, hf processors, 1 DataLoader worker"
    return [
        {"case": "data: decode+preprocess, raw (isolated decode)", "ours": raw, "reference": None,
         "unit": "clips/s", "notes": note},
        {"case": "data: decode+preprocess, raw (in-process decode)", "ours": raw_inproc, "reference": None,
         "unit": "clips/s", "notes": note + "; decode_timeout=None"},
        {"case": "data: cache (uint8 frames + f16 log-mel)", "ours": cached, "reference": None,
         "unit": "clips/s", "notes": "same clips from python -m datamodules.cache"},
        {"case": "data: decode+preprocess, raw (isolated decode), 2 workers", "ours": raw2, "reference": None,
         "unit": "clips/s", "notes": note.replace("1 DataLoader worker", "2 DataLoader workers")},
        {"case": "data: cache, 2 workers", "ours": cached2, "reference": None,
         "unit": "clips/s", "notes": "same clips from python -m datamodules.cache, 2 DataLoader workers"},
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run():
        print(f"{row['case']:55s} {row['ours']:8.2f} {row['unit']}")
