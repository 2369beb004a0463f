"""Data pipeline benchmark: clips per second through decode + preprocess, raw video vs LitData shards.

Input: a generated 10 s, 640x480, 30 fps H.264 clip with 44.1 kHz stereo AAC audio (temp dir), listed 32 times in
a manifest. Each case runs the MOSEI-style evaluation pipeline (8 uniform frames, the whole clip's audio from the
container, hf processors, collation, batch size 1) through a DataLoader with one (and, for the default
raw and the shard cases, two) worker processes (persistent, so worker start-up is not timed); the figure is the median over ``repeats`` epochs after one warm-up epoch.

Cases:
- raw, isolated decode (the default: decoding in a helper process with a 30 s timeout);
- raw, in-process decode (``decode_timeout=None``), to show what the hang protection costs;
- LitData shards (``datamodules.shards``: 16 JPEG candidates at 224x224, quality 90, + float16 log-mel; 8 decoded
  and normalized per clip) from local disk with one and two workers, and from a local S3-compatible server (moto on
  127.0.0.1) with one worker; from local disk at batch 8 with one worker: decoded in the worker, lossless shards
  (``--frames uint8``: no decoding, the value step only), decoding left to
  the device (``data.shards_decode=device``: the loader alone, which is what a GPU run's CPU side supplies), and
  left to the device with this CPU as the device (the main process decodes and normalizes each batch); the build
  rate (2 build workers) and the bytes per clip on disk;
- the baseline of the shard rows: the removed pre-extraction cache's layout (the 8 evaluation frames stored decoded,
  memory-mapped, with the float16 log-mel; normalized at read time), batch 1 and 8, one worker.

There is no reference figure: neither reference implementation ships a comparable loader for this input.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bench import median_seconds, moving_pattern
from datamodules.collate import TvltCollator
from datamodules.datasets import ClipDataset
from datamodules.decoding import ClipReader
from datamodules.demo import write_mp4
from datamodules.manifests import Row, build_manifest
from datamodules.transform import ClipTransform
from tvlt.feature_extraction import TvltFeatureExtractor
from tvlt.image_processing import TvltImageProcessor

CLIPS = 32  # per epoch: enough that epoch start-up latency does not dominate the cached rate


def make_clip(path: Path) -> None:
    """The benchmarks' input clip: 10 s, 640x480, 30 fps H.264 (``moving_pattern``) with 44.1 kHz stereo AAC."""
    n = 10 * 44100
    time_axis = np.arange(n) / 44100
    noise = np.random.default_rng(0).standard_normal(n)
    audio = np.stack([0.3 * np.sin(2 * np.pi * 440 * time_axis), 0.1 * noise]).astype(np.float32)
    write_mp4(path, moving_pattern(), 30, audio=audio, audio_rate=44100, crf=23)


def _clips_per_second(dataset: ClipDataset, collate: TvltCollator, repeats: int, workers: int = 1) -> float:
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, persistent_workers=True, collate_fn=collate)
    return loader_rate(loader, repeats)


def _shard_rows(manifest, tmp: str, reader: ClipReader, ip, fe, collate, repeats: int) -> list[dict]:
    from litdata import StreamingDataLoader

    from datamodules.shards import RecordToItem, build_shards, open_shards

    settings = {"num_frames": 8, "processor_mode": "hf"}
    wide = ClipReader(num_frames=16, decode_timeout=None)
    start = time.perf_counter()
    report = build_shards(manifest, str(Path(tmp) / "shards"), wide, ip, fe, settings, workers=2)
    build_rate = report["records"] / (time.perf_counter() - start)
    size = sum(p.stat().st_size for p in (Path(tmp) / "shards").glob("chunk-*.bin")) / report["records"]

    lossless = str(Path(tmp) / "shards-uint8")
    lossless_report = build_shards(manifest, lossless, wide, ip, fe, settings, frames="uint8", workers=2)
    lossless_size = sum(p.stat().st_size for p in Path(lossless).glob("chunk-*.bin")) / lossless_report["records"]

    def rate(uri: str, workers: int, options: dict | None = None, batch: int = 1, decode: str = "worker",
             finish: bool = False) -> float:
        dataset = open_shards(uri, settings, RecordToItem(8, False, ip, decode=decode), storage_options=options,
                              cache_dir=str(Path(tmp) / f"cache-{workers}-{len(uri)}"))
        loader = StreamingDataLoader(dataset, batch_size=batch, num_workers=workers, persistent_workers=True,
                                     collate_fn=collate)
        return loader_rate(FinishedBatches(loader, collate) if finish else loader, repeats)

    mapped = Path(tmp) / "mapped"
    _MappedFrames.write(mapped, Path(manifest.videos[0]), len(manifest), ip, fe)

    def mapped_rate(batch: int) -> float:
        loader = DataLoader(_MappedFrames(mapped, len(manifest), ip), batch_size=batch, num_workers=1,
                            persistent_workers=True, collate_fn=collate)
        return loader_rate(loader, repeats)

    local = str(Path(tmp) / "shards")
    local1, local2 = rate(local, 1), rate(local, 2)
    s3 = _s3_rate(Path(tmp) / "shards", rate)
    batch8 = rate(local, 1, batch=8)
    lossless8 = rate(lossless, 1, batch=8)
    mapped1, mapped8 = mapped_rate(1), mapped_rate(8)
    handed, finished = rate(local, 1, batch=8, decode="device"), rate(local, 1, batch=8, decode="device", finish=True)
    note = "16 JPEG candidates (q90) + f16 log-mel per clip, 8 decoded and normalized, hf"
    device = "data.shards_decode=device: the worker hands the 8 JPEG files on undecoded"
    return [
        {"case": "data: shards, local disk", "ours": local1, "reference": None, "unit": "clips/s",
         "notes": note + ", 1 worker"},
        {"case": "data: shards, local disk, 2 workers", "ours": local2, "reference": None, "unit": "clips/s",
         "notes": note + ", 2 workers"},
        {"case": "data: shards, local S3 server", "ours": s3, "reference": None, "unit": "clips/s",
         "notes": note + ", 1 worker, moto on 127.0.0.1 (HTTP), chunks cached locally after the warm-up epoch"},
        {"case": "data: shards, local disk, batch 8", "ours": batch8, "reference": None, "unit": "clips/s",
         "notes": note + ", 1 worker, batch 8"},
        {"case": "data: lossless shards, local disk, batch 8", "ours": lossless8, "reference": None,
         "unit": "clips/s", "notes": "--frames uint8: 16 raw uint8 candidates + f16 log-mel per clip (no JPEG "
         f"decoding), 8 normalized, hf, 1 worker, batch 8; {lossless_size / 1e3:.0f} KB per clip"},
        {"case": "data: shards, local disk, batch 8, decoding left to the device: loader alone", "ours": handed,
         "reference": None, "unit": "clips/s",
         "notes": device + " (what a GPU run's CPU side must supply; nvJPEG decoding is measured by bench/gpu.sh)"},
        {"case": "data: shards, local disk, batch 8, decoding left to the device, device = this CPU",
         "ours": finished, "reference": None, "unit": "clips/s",
         "notes": device + "; the main process decodes and normalizes each batch on the CPU (finish_frames)"},
        {"case": "data: decoded frames memory-mapped (the removed cache's layout)", "ours": mapped1,
         "reference": None, "unit": "clips/s", "notes": "baseline of the shard rows: 8 decoded uint8 frames + f16 "
         "log-mel per clip in one file, copied out and normalized in 1 worker, batch 1"},
        {"case": "data: decoded frames memory-mapped, batch 8", "ours": mapped8, "reference": None,
         "unit": "clips/s", "notes": "as above, batch 8"},
        {"case": "data: shards build", "ours": build_rate, "reference": None, "unit": "clips/s",
         "notes": "python -m datamodules.build_shards path, 2 build workers (spawned), decode + resize + JPEG + log-mel"},
        {"case": "data: shards bytes per clip", "ours": size / 1e3, "reference": None, "unit": "KB",
         "notes": "16 JPEG frames 224x224 q90 + 10 s float16 log-mel"},
    ]  # fmt: skip


class _MappedFrames(Dataset):
    """The removed pre-extraction cache's read path, kept as the shard rows' baseline: each clip's 8 evaluation
    frames stored decoded (uint8 224x224, one memory-mapped file) with its float16 log-mel; a read copies them out
    and normalizes (the same value step as shards). Not streamable, not shardable: a measuring stick only."""

    def __init__(self, folder: Path, clips: int, ip: TvltImageProcessor) -> None:
        self.folder, self.clips, self.transform = folder, clips, ClipTransform(ip, None)
        self.patches = int((folder / "patches.txt").read_text())
        self.frames: np.ndarray | None = None
        self.audio: np.ndarray | None = None

    @classmethod
    def write(cls, folder: Path, video: Path, clips: int, ip: TvltImageProcessor, fe: TvltFeatureExtractor) -> None:
        folder.mkdir()
        clip = ClipReader(num_frames=8, decode_timeout=None).read(str(video), "container", mode="uniform")
        transform = ClipTransform(ip, fe)
        frames = transform.frames(clip.frames).permute(0, 2, 3, 1).contiguous().numpy()
        audio, patches = transform.audio(clip.waveform, clip.sampling_rate)
        (folder / "frames.u8").write_bytes(frames.tobytes() * clips)
        (folder / "audio.f16").write_bytes(audio[0].to(torch.float16).numpy().tobytes() * clips)
        (folder / "patches.txt").write_text(str(patches))

    def __len__(self) -> int:
        return self.clips

    def __getitem__(self, i: int) -> dict:
        if self.frames is None:  # opened in the worker
            self.frames = np.memmap(self.folder / "frames.u8", dtype=np.uint8, mode="r").reshape(self.clips, 8, 224,
                                                                                                  224, 3)
            self.audio = np.memmap(self.folder / "audio.f16", dtype=np.float16, mode="r").reshape(self.clips, -1, 128)
        frames = torch.from_numpy(np.array(self.frames[i])).permute(0, 3, 1, 2)
        audio = torch.from_numpy(np.array(self.audio[i])).to(torch.float32)[None]
        return self.transform.item(f"clip{i}", self.transform.pixels(frames), audio, self.patches)


class FinishedBatches:
    """A shard loader whose batches are finished (frames decoded and normalized on ``device``) as the datamodule's
    ``on_before_batch_transfer`` does; a CUDA device is synchronized after each batch, so its work is timed."""

    def __init__(self, loader: Any, collate: TvltCollator, device: Any = "cpu") -> None:
        self.loader, self.collate, self.device = loader, collate, torch.device(device)

    def __iter__(self) -> Any:
        for batch in self.loader:
            batch = self.collate.finish_frames(batch, self.device)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            yield batch


def _s3_rate(folder: Path, rate) -> float | None:
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:  # the test extra is not installed
        return None
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {"endpoint_url": f"http://{host}:{port}"}
        client = boto3.client("s3", **options)
        client.create_bucket(Bucket="bench")
        for path in folder.iterdir():
            client.upload_file(str(path), "bench", f"shards/{path.name}")
        return rate("s3://bench/shards", 1, options)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def loader_rate(loader, repeats: int) -> float:
    """Clips per second of one epoch, median over ``repeats`` epochs after a warm-up epoch (worker start, decode
    helper start, caches)."""
    gc.collect()  # earlier cases' loaders, before this one forks its workers (a worker would inherit and free them)
    clips: list[int] = []
    seconds = median_seconds(lambda: clips.append(sum(len(batch["ids"]) for batch in loader)), repeats)
    return clips[-1] / seconds


def run(repeats: int = 5) -> list[dict]:
    ip, fe = TvltImageProcessor(), TvltFeatureExtractor()
    collate = TvltCollator.from_processors(ip, fe)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip10s.mp4"
        make_clip(video)
        rows = [Row(f"clip{i}", str(video), "container", None, "bench", i) for i in range(CLIPS)]
        manifest = build_manifest(rows, "bench")
        isolated = ClipReader(num_frames=8, decode_timeout=30.0)
        in_process = ClipReader(num_frames=8, decode_timeout=None)
        threads = torch.get_num_threads()
        try:
            raw = _clips_per_second(ClipDataset(manifest, isolated, ip, fe), collate, repeats)
            raw_inproc = _clips_per_second(ClipDataset(manifest, in_process, ip, fe), collate, repeats)
            raw2 = _clips_per_second(ClipDataset(manifest, isolated, ip, fe), collate, repeats, workers=2)
            shards = _shard_rows(manifest, tmp, in_process, ip, fe, collate, repeats)
        finally:
            torch.set_num_threads(threads)
    note = "10 s 640x480 30 fps h264 + AAC, 8 frames, whole-clip audio, hf processors, 1 DataLoader worker"
    return [
        {"case": "data: decode+preprocess, raw (isolated decode)", "ours": raw, "reference": None,
         "unit": "clips/s", "notes": note},
        {"case": "data: decode+preprocess, raw (in-process decode)", "ours": raw_inproc, "reference": None,
         "unit": "clips/s", "notes": note + "; decode_timeout=None"},
        {"case": "data: decode+preprocess, raw (isolated decode), 2 workers", "ours": raw2, "reference": None,
         "unit": "clips/s", "notes": note.replace("1 DataLoader worker", "2 DataLoader workers")},
        *shards,
    ]  # fmt: skip


if __name__ == "__main__":  # documented in docs/data.md: the harness's table for this module, nothing written
    from bench.__main__ import main

    raise SystemExit(main(["--only", "data", "--no-write"]))
