"""TVLT datamodules: from video/audio files on disk to padded batches (see docs/data.md).

Names are imported lazily, so the isolated decode process (``datamodules._rawdecode``) does not pull in torch or
Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "MoseiDataModule": "datamodules.mosei",
    "PretrainDataModule": "datamodules.pretrain",
    "RetrievalDataModule": "datamodules.retrieval",
    "ClassifyDataModule": "datamodules.classify",
    "ClipDataModule": "datamodules.base",
    "NoUsableClipsError": "datamodules.skips",
    "ClipDataset": "datamodules.datasets",
    "ClipReader": "datamodules.decoding",
    "Clip": "datamodules.decoding",
    "ClipDecodeError": "datamodules.decoding",
    "CAUSES": "datamodules.decoding",
    "TvltCollator": "datamodules.collate",
    "Skipped": "datamodules.skips",
    "vam_negatives": "tvlt.matching",
    "Manifest": "datamodules.manifests",
    "ManifestError": "datamodules.manifests",
    "PackedStrings": "datamodules.manifests",
    "DemoSpec": "datamodules.demo",
    "ensure_demo_mosei": "datamodules.demo",
    "EMOTIONS": "tvlt.labels",
    "build_shards": "datamodules.shards",
    "open_shards": "datamodules.shards",
    "ShardSettingsError": "datamodules.shards",
    "UnsafeShardError": "datamodules.shards",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
