"""Pre-extraction cache: decode and preprocess each clip once, so training does not decode video every epoch.

Per split, ``{out}/{split}/`` holds:

- ``frames.u8``: uint8 (sum T_i, H, W, 3) frames at the model resolution (224 x 224), i.e. the image processor's
  resize and crop already applied (its rescale and normalization, which are exact on uint8, run at load time);
- ``audio.f16``: float16 (sum Ta_i, 128) log-mel rows as the feature extractor produced them (values in [-1, 1], so
  float16 keeps them to within 5e-4), padded to a multiple of 16 rows, with ``audio_patches.npy`` (real patches);
- ``frame_offsets.npy``, ``audio_offsets.npy`` (int64 (N+1,)), ``ids.npy`` (fixed-width bytes), ``status.npy``
  (int8: 0 = cached, k = decoding failed with cause ``CAUSES[k-1]``), ``meta.json`` (the settings it was built with).

Frames are the evaluation frames (``num_frames`` uniform over the whole clip); training from the cache therefore has
no frame jitter. The cache stores no labels: one cache serves MOSEI sentiment and emotion.

Build it with::

    python -m datamodules.cache --datamodule mosei --root /data/mosei --out /data/mosei_cache
    python -m datamodules.cache --datamodule mosei --out data/demo/mosei_cache      # the demo dataset

and pass ``cache_dir`` (``data.cache_dir=/data/mosei_cache``) to the datamodule.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.decoding import CAUSES, ClipDecodeError, ClipReader
from datamodules.manifests import Manifest

__all__ = ["ClipCache", "build_cache", "main"]

log = logging.getLogger(__name__)
VERSION = 1


class ClipCache:
    """Read side of one split's cache (memory-mapped; opened lazily in each DataLoader worker)."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.meta = meta
        self.ids = np.load(self.path / "ids.npy")
        self.status = np.load(self.path / "status.npy")
        self.frame_offsets = np.load(self.path / "frame_offsets.npy")
        self.audio_offsets = np.load(self.path / "audio_offsets.npy")
        self.audio_patches = np.load(self.path / "audio_patches.npy")
        self._order = np.argsort(self.ids, kind="stable")
        self._frames: np.ndarray | None = None
        self._audio: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | Path, num_frames: int, processor_mode: str) -> "ClipCache":
        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"no clip cache at {path} (build it with python -m datamodules.cache)")
        meta = json.loads(meta_file.read_text())
        wanted = {"version": VERSION, "num_frames": num_frames, "processor_mode": processor_mode}
        wrong = {k: (meta.get(k), v) for k, v in wanted.items() if meta.get(k) != v}
        if wrong:
            raise ValueError(f"clip cache {path} was built with other settings (cached, wanted): {wrong}; rebuild it")
        return cls(path, meta)

    def rows_for(self, manifest: Manifest) -> np.ndarray:
        """Cache row of each manifest row (int64 (N,)); raises if any clip is not in the cache."""
        wanted = np.array([manifest.ids[i].encode("utf-8") for i in range(len(manifest))], dtype=self.ids.dtype)
        pos = np.searchsorted(self.ids, wanted, sorter=self._order)
        pos = np.clip(pos, 0, len(self.ids) - 1)
        rows = self._order[pos]
        missing = np.flatnonzero(self.ids[rows] != wanted)
        if len(missing):
            raise ValueError(
                f"clip cache {self.path} lacks {len(missing)} of {len(manifest)} clips of {manifest.name} "
                f"(first: {manifest.ids[int(missing[0])]}); rebuild it"
            )
        return rows.astype(np.int64)

    def load(self, row: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(uint8 frames (T, H, W, 3), float16 log-mel (Ta, 128), real audio patches) of cache row ``row``.

        Raises:
            ClipDecodeError: the clip failed when the cache was built (its cause is kept).
        """
        status = int(self.status[row])
        if status:
            detail = f"recorded when the cache {self.path} was built"
            raise ClipDecodeError(self.ids[row].decode(), CAUSES[status - 1], detail)
        if self._frames is None:
            h, w = self.meta["frame_size"]
            self._frames = np.memmap(self.path / "frames.u8", dtype=np.uint8, mode="r").reshape(-1, h, w, 3)
            audio = np.memmap(self.path / "audio.f16", dtype=np.float16, mode="r")
            self._audio = audio.reshape(-1, self.meta["mel_bins"])
        f0, f1 = self.frame_offsets[row], self.frame_offsets[row + 1]
        a0, a1 = self.audio_offsets[row], self.audio_offsets[row + 1]
        return np.array(self._frames[f0:f1]), np.array(self._audio[a0:a1]), int(self.audio_patches[row])

    def __getstate__(self) -> dict[str, Any]:  # never pickle the memory maps' contents into workers
        state = dict(self.__dict__)
        state["_frames"] = state["_audio"] = None
        return state


class _Extract(Dataset):
    """Decode + geometry-only image processing + feature extraction of each manifest row (DataLoader workers)."""

    def __init__(self, manifest: Manifest, reader: ClipReader, image_processor: Any, feature_extractor: Any) -> None:
        self.manifest, self.reader, self.feature_extractor = manifest, reader, feature_extractor
        self.geometry = copy.copy(image_processor)
        self.geometry.do_rescale = False
        self.geometry.do_normalize = False

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            clip = self.reader.read(self.manifest.videos[i], self.manifest.audio(i), mode="uniform")
        except ClipDecodeError as e:
            return {"status": CAUSES.index(e.cause) + 1, "error": str(e)}
        pixels = self.geometry(clip.frames, return_tensors="pt", num_frames=self.reader.num_frames)["pixel_values"][0]
        frames = pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        audio = self.feature_extractor(clip.waveform, sampling_rate=clip.sampling_rate, return_tensors="pt")
        return {
            "status": 0,
            "frames": frames,
            "audio": audio["audio_values"][0, 0].to(torch.float16).numpy(),
            "patches": int(audio["audio_mask"][0].sum().item()),
        }


def build_cache(
    manifest: Manifest,
    out: str | Path,
    reader: ClipReader,
    image_processor: Any,
    feature_extractor: Any,
    on_error: str = "raise",
    num_workers: int = 0,
) -> Path:
    """Write the cache of one split into ``out`` (created). Failed clips raise (``on_error="raise"``) or are
    recorded with their cause (``"skip"``), and the datamodule skips them at load time like live decoding would."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(
        _Extract(manifest, reader, image_processor, feature_extractor),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=lambda x: x,
    )
    status = np.zeros(len(manifest), np.int8)
    patches = np.zeros(len(manifest), np.int32)
    frame_offsets = np.zeros(len(manifest) + 1, np.int64)
    audio_offsets = np.zeros(len(manifest) + 1, np.int64)
    frame_size, mel_bins = None, None
    with open(out / "frames.u8", "wb") as ff, open(out / "audio.f16", "wb") as fa:
        for i, item in enumerate(loader):
            status[i] = item["status"]
            if item["status"]:
                if on_error == "raise":
                    raise ClipDecodeError(manifest.videos[i], CAUSES[item["status"] - 1], "while building the cache")
                log.warning("cache: %s", item["error"])
            else:
                frames, audio = item["frames"], item["audio"]
                if frame_size is None:
                    frame_size, mel_bins = list(frames.shape[1:3]), int(audio.shape[1])
                elif list(frames.shape[1:3]) != frame_size:
                    raise ValueError(f"{manifest.videos[i]}: frame size {frames.shape[1:3]} differs from {frame_size}")
                ff.write(frames.tobytes())
                fa.write(audio.tobytes())
                patches[i] = item["patches"]
            n_frames = 0 if item["status"] else item["frames"].shape[0]
            n_rows = 0 if item["status"] else item["audio"].shape[0]
            frame_offsets[i + 1] = frame_offsets[i] + n_frames
            audio_offsets[i + 1] = audio_offsets[i] + n_rows
    ids = np.array([manifest.ids[i].encode("utf-8") for i in range(len(manifest))])
    for name, array in (("ids", ids), ("status", status), ("audio_patches", patches),
                        ("frame_offsets", frame_offsets), ("audio_offsets", audio_offsets)):  # fmt: skip
        np.save(out / f"{name}.npy", array)
    meta = {
        "version": VERSION,
        "num_frames": reader.num_frames,
        "processor_mode": getattr(image_processor, "mode", "hf"),
        "frame_size": frame_size or [0, 0],
        "mel_bins": mel_bins or 128,
        "count": len(manifest),
        "failed": {c: int((status == k + 1).sum()) for k, c in enumerate(CAUSES) if (status == k + 1).any()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    log.info("cache: wrote %d clips (%d failed) to %s", len(manifest), int((status > 0).sum()), out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules.cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datamodule", choices=["mosei", "retrieval"], default="mosei")
    parser.add_argument("--root", default=None, help="data root (MOSEI: omit for the embedded demo dataset)")
    parser.add_argument("--manifest", default=None, help="CSV manifest instead of --root")
    parser.add_argument("--out", required=True, help="cache directory (one sub-folder per split)")
    parser.add_argument("--splits", nargs="+", default=None, help="default: train valid test (retrieval: train test)")
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--processor-mode", choices=["hf", "original"], default="hf")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--decoder-threads", type=int, default=1)
    parser.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    parser.add_argument("--demo-dir", default="data/demo/mosei")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    common = dict(
        num_frames=args.num_frames,
        processor_mode=args.processor_mode,
        decoder_threads=args.decoder_threads,
        on_error=args.on_error,
        drop_invalid=args.on_error == "skip",
    )
    if args.datamodule == "mosei":
        from datamodules.mosei import MoseiDataModule

        dm = MoseiDataModule(root=args.root, manifest=args.manifest, demo_dir=args.demo_dir, **common)
        splits = args.splits or ["train", "valid", "test"]
    else:
        from datamodules.retrieval import RetrievalDataModule

        dm = RetrievalDataModule(root=args.root, manifest=args.manifest, **common)
        splits = args.splits or ["train", "test"]
    dm.prepare_data()
    for split in splits:
        build_cache(
            dm.manifest(split), Path(args.out) / split, dm.reader, dm.image_processor, dm.feature_extractor,
            on_error=args.on_error, num_workers=args.num_workers,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
