"""MoseiDataModule: CMU-MOSEI sentiment (regression, score in [-3, 3]) and emotion (6 binary labels).

Data sources, in order of precedence:
- ``manifest``: a CSV with columns ``video``, ``audio`` (optional), ``split`` (train/valid/test) and the label
  columns (``sentiment_score``; or happy, sad, angry, fear, disgust, surprise intensities in [0, 3]);
- ``root``: the original release's processed layout (see :func:`datamodules.manifests.mosei_original`);
- neither: the embedded demo dataset, generated on first use into ``demo_dir`` (see :mod:`datamodules.demo`).

Clips are read whole: 8 frames uniformly over the clip (random per-segment jitter in training when
``train_jitter``), audio over the same span from the sidecar wav, as in the original release's MOSEI loaders.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from datamodules.base import ClipDataModule
from datamodules.demo import DemoSpec
from datamodules.manifests import (
    EMOTION_RANGE,
    SENTIMENT_RANGE,
    Row,
    csv_manifest,
    mosei_original,
)
from tvlt.labels import EMOTIONS

__all__ = ["MoseiDataModule"]

log = logging.getLogger(__name__)


class MoseiDataModule(ClipDataModule):
    """CMU-MOSEI for TVLT fine-tuning.

    Args:
        root: the processed MOSEI folder (``{split}/video``, ``{split}/audio_wav``, ``labels``,
            ``labels_emotion``); None with no ``manifest`` uses the embedded demo dataset.
        task: ``"sentiment"`` (labels float32 (B,) scores in [-3, 3]) or ``"emotion"`` (labels float32 (B, 6),
            1.0 where the intensity > 0; order happy, sad, angry, fear, disgust, surprise).
        manifest: a CSV manifest instead of ``root`` (see the module docstring).
        demo_dir: where the demo dataset is generated (relative paths are relative to the launch directory).
        demo_seed, demo_clips: seed and (train, valid, test) clip counts of the demo dataset.
        train_jitter: random per-segment frame offsets in training (False: the uniform evaluation frames).
        **kwargs: the common arguments of :class:`datamodules.base.ClipDataModule` (batch_size, num_workers,
            persistent_workers, pin_memory, num_frames, processor_mode, image_size, decoder_threads, decode_timeout,
            on_error, drop_invalid, shards, shards_options, shards_cache_dir, shards_decode).
    """

    root_description = "CMU-MOSEI folder"

    def __init__(
        self,
        root: str | None = None,
        task: str = "sentiment",
        manifest: str | None = None,
        demo_dir: str = "data/demo/mosei",
        demo_seed: int = 0,
        demo_clips: tuple[int, int, int] | list[int] = (32, 8, 8),
        train_jitter: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if task not in ("sentiment", "emotion"):
            raise ValueError(f"task must be 'sentiment' or 'emotion', got {task!r}")
        self.root = root
        self.task = task
        self.manifest_path = manifest
        self.demo_dir = demo_dir
        self.demo_spec = DemoSpec(
            seed=demo_seed, num_train=int(demo_clips[0]), num_valid=int(demo_clips[1]), num_test=int(demo_clips[2])
        )
        self.train_jitter = train_jitter
        self.label_range = SENTIMENT_RANGE if task == "sentiment" else EMOTION_RANGE
        self.save_hyperparameters(logger=False)

    @property
    def num_labels(self) -> int:
        return 1 if self.task == "sentiment" else len(EMOTIONS)

    def _rows(self, split: str) -> list[Row]:
        if self.manifest_path is not None:
            columns = ["sentiment_score"] if self.task == "sentiment" else list(EMOTIONS)
            return csv_manifest(self.manifest_path, split=split, label_columns=columns, default_audio="container")
        return mosei_original(self.root if self.root is not None else self.demo_dir, split, self.task)

    def _dataset_options(self, split: str) -> dict[str, Any]:
        return {
            "sampling": "random" if split == "train" and self.train_jitter else "uniform",
            "window_seconds": None,
            "label_transform": self._labels,
        }

    def _shard_extra_settings(self) -> dict[str, Any]:
        return {"task": self.task}  # the records hold this task's label rows

    def _labels(self, row: np.ndarray) -> torch.Tensor:
        if self.task == "sentiment":
            return torch.tensor(float(np.asarray(row).reshape(-1)[0]), dtype=torch.float32)
        return torch.from_numpy((np.asarray(row, dtype=np.float32) > 0).astype(np.float32))
