"""Build LitData shards of a datamodule's splits: one folder ``{out}/{split}`` each (see :mod:`datamodules.shards` for
the format, and docs/data.md).

    python -m datamodules.build_shards --datamodule mosei --root /data/mosei --out /data/mosei_shards --workers 8
    python -m datamodules.build_shards --datamodule pretrain --manifest videos.csv --out s3://bucket/howto100m

A module of its own: the datamodules read shards (:mod:`datamodules.shards`), and this command builds datamodules.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from datamodules.shards import FRAME_ENCODINGS, _join, build_summary

__all__ = ["main", "make_datamodule"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules.build_shards", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datamodule", choices=["mosei", "pretrain", "retrieval"], default="mosei",
                        help="default: mosei")
    parser.add_argument("--root", default=None, help="data root (omit both --root and --manifest for the demo set)")
    parser.add_argument("--manifest", default=None, help="CSV manifest instead of --root")
    parser.add_argument("--out", required=True, help="folder or s3:// URI (one sub-folder per split)")
    parser.add_argument("--workers", type=int, default=1, help="parallel build processes (default: 1)")
    parser.add_argument("--splits", nargs="+", default=None, help="default: the datamodule's splits")
    parser.add_argument("--task", choices=["sentiment", "emotion"], default="sentiment",
                        help="mosei labels (default: sentiment)")
    parser.add_argument("--num-frames", type=int, default=None, help="default: the datamodule's (8; pretrain 4)")
    parser.add_argument("--processor-mode", choices=["hf", "original"], default="hf", help="default: hf")
    parser.add_argument("--image-size", type=int, default=224, help="frame side (px), as data.image_size (default: 224)")
    parser.add_argument("--window-seconds", type=_seconds_or_none, default=14.9,
                        help="pretrain: window length (s), or none for one record per whole video (default: 14.9)")
    parser.add_argument("--frames", choices=FRAME_ENCODINGS, default="jpeg", help="uint8: lossless (default: jpeg)")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="1-100 (default: 90)")
    parser.add_argument("--chunk-bytes", default="64MB", help="shard chunk size (default: 64MB)")
    parser.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (else AWS_ENDPOINT_URL)")
    parser.add_argument("--demo-dir", default=None, help="default: the datamodule's (data/demo/mosei, retrieval: "
                        "data/demo/retrieval)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    dm = make_datamodule(args)
    dm.prepare_data()
    options = {"endpoint_url": args.endpoint_url} if args.endpoint_url else None
    for split in args.splits or dm.shard_splits():
        report = dm.build_shards(split, _join(args.out, split), frames=args.frames, jpeg_quality=args.jpeg_quality,
                                 workers=args.workers, chunk_bytes=args.chunk_bytes, storage_options=options)
        print(f"{split}: {build_summary(report)} (listed in {_join(args.out, split, 'build_report.json')})")
    return 0


def _seconds_or_none(value: str) -> float | None:
    """``--window-seconds``: seconds, or none / null (as ``data.window_seconds=null``)."""
    return None if value.lower() in ("none", "null") else float(value)


def make_datamodule(args: argparse.Namespace) -> Any:
    common: dict[str, Any] = dict(processor_mode=args.processor_mode, image_size=args.image_size, decode_timeout=30.0,
                                  drop_invalid=True)
    if args.demo_dir is not None:
        common["demo_dir"] = args.demo_dir
    if args.num_frames is not None:
        common["num_frames"] = args.num_frames
    if args.datamodule == "mosei":
        from datamodules.mosei import MoseiDataModule

        return MoseiDataModule(root=args.root, manifest=args.manifest, task=args.task, **common)
    if args.datamodule == "pretrain":
        from datamodules.pretrain import PretrainDataModule

        return PretrainDataModule(root=args.root, manifest=args.manifest, window_seconds=args.window_seconds,
                                  **common)
    from datamodules.retrieval import RetrievalDataModule

    return RetrievalDataModule(root=args.root, manifest=args.manifest, **common)


if __name__ == "__main__":
    sys.exit(main())
