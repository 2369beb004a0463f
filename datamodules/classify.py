"""ClassifyDataModule: your own clips and class labels, single-label (one class per clip) or multi-label.

Data sources, in order of precedence (see docs/data.md, "Your own clips and labels"):
- ``manifest``: a CSV with ``video``, optional ``audio`` (a wav/flac, empty or ``container`` for the video's own
  audio), ``split`` (train/valid/test) and either a ``label`` column of class names (single-label) or one 0/1
  column per class (multi-label); see :func:`datamodules.manifests.manifest_classes`;
- ``root``: a folder per class, ``root/{class}/{clip}.mp4`` (a stratified hold-out makes valid and test) or
  ``root/{train,valid,test}/{class}/{clip}.mp4``, audio in the video files
  (:func:`datamodules.manifests.class_folders`);
- neither: the generated classification demo (:func:`datamodules.demo.make_demo_classes`) in ``demo_dir``.

Class names and their order come from the data (manifest: the sorted label values or the class columns in order;
folders: the sorted class folder names), unless ``classes`` lists them. :meth:`model_arguments` hands them to the
LightningModule, which stores them in its checkpoint and exports them as ``id2label``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import torch

from datamodules.base import ClipDataModule
from datamodules.demo import ClassesDemoSpec
from datamodules.manifests import (
    ManifestError,
    Row,
    class_folders,
    class_labels,
    csv_manifest,
    manifest_classes,
)

__all__ = ["ClassifyDataModule"]

log = logging.getLogger(__name__)


class ClassifyDataModule(ClipDataModule):
    """Clips with class labels for ``experiment=classify``.

    Args:
        manifest: a classification CSV (see the module docstring); relative paths are relative to its folder.
        root: a folder-per-class tree, ``root/{class}/*.mp4`` or with split folders
            ``root/{train,valid,test}/{class}/*.mp4`` (:func:`datamodules.manifests.class_folders`).
        val_fraction, test_fraction, split_seed: a tree without split folders: the share of each class's clips
            held out for validation and test, and the seed of that draw.
        classes: class names in index order (None: from the data). A label outside them is an invalid row.
        demo_dir, demo_seed, demo_classes, demo_clips: the generated demo (no manifest and no root): where, its
            seed, its number of classes (>= 2) and (train, valid, test) clips.
        train_jitter: random per-segment frame offsets in training (False: the uniform evaluation frames).
        **kwargs: the common arguments of :class:`datamodules.base.ClipDataModule`.

    Batch ``labels``: single-label int64 (B,) class indices; multi-label float32 (B, K) 0/1.
    """

    def __init__(
        self,
        manifest: str | None = None,
        root: str | None = None,
        classes: list[str] | None = None,
        demo_dir: str = "data/demo/classify",
        demo_seed: int = 0,
        demo_classes: int = 4,
        demo_clips: tuple[int, int, int] | list[int] = (64, 16, 16),
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        train_jitter: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifest_path = manifest
        self.root = root
        self.demo_dir = demo_dir
        self.demo_spec = ClassesDemoSpec(seed=demo_seed, num_classes=int(demo_classes), num_train=int(demo_clips[0]),
                                         num_valid=int(demo_clips[1]), num_test=int(demo_clips[2]))
        self.holdout = {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": split_seed}
        self.train_jitter = train_jitter
        self._given_classes = list(classes) if classes else None
        self._classes: tuple[list[str], bool] | None = None
        self.save_hyperparameters(logger=False)

    # ------------------------------------------------------------------------------------------- classes
    def _class_info(self) -> tuple[list[str], bool]:
        if self._classes is None:
            if self.manifest_path is not None:
                self._classes = manifest_classes(self.manifest_path, self._given_classes)
            elif self.root is not None:
                self._classes = (class_folders(self.root, "train", self._given_classes, **self.holdout)[1], False)
            else:
                self._classes = (self._given_classes or self.demo_spec.classes, False)
            names = self._classes[0]
            if len(set(names)) != len(names) or len(names) < 2:
                raise ManifestError(f"{type(self).__name__}: need >= 2 distinct class names, got {names}")
        return self._classes

    @property
    def classes(self) -> list[str]:
        """Class names in index order."""
        return self._class_info()[0]

    @property
    def multilabel(self) -> bool:
        return self._class_info()[1]

    @property
    def num_labels(self) -> int:
        return len(self.classes)

    def model_arguments(self) -> dict[str, Any]:
        """What the LightningModule must know about the labels to build its head: ``classes``, ``multilabel``."""
        return {"classes": list(self.classes), "multilabel": self.multilabel}

    def label_counts(self, split: str = "train") -> tuple[np.ndarray, int]:
        """(per-class positives (K,) float64, clips) of a split: what class weights and ``pos_weight`` derive from."""
        labels = self.manifest(split).labels
        if self.multilabel:
            return labels.sum(0).astype(np.float64), len(labels)
        return np.bincount(labels.astype(np.int64), minlength=self.num_labels).astype(np.float64), len(labels)

    # ------------------------------------------------------------------------------------------- data
    def _rows(self, split: str) -> list[Row]:
        classes, multilabel = self._class_info()
        if self.manifest_path is not None:
            rows = csv_manifest(self.manifest_path, split=split, default_audio="container",
                                labels_of=class_labels(classes, multilabel))
        else:
            root = self.root if self.root is not None else self.demo_dir
            rows = class_folders(root, split, classes, **self.holdout)[0]
        repeated = [k for k, n in Counter(r.id for r in rows).items() if n > 1]
        if repeated:
            raise ManifestError(
                f"{type(self).__name__}[{split}]: clip id(s) used more than once: {repeated[:10]}; metrics count each "
                "id once, so give every clip its own id (an 'id' column, or distinct file names)")
        return rows

    def manifest(self, split: str):
        if split not in self.manifests:
            k = self.num_labels
            self.label_range = (0.0, 1.0) if self.multilabel else (0.0, float(k - 1))
        return super().manifest(split)

    def _dataset_options(self, split: str) -> dict[str, Any]:
        return {
            "sampling": "random" if split == "train" and self.train_jitter else "uniform",
            "window_seconds": None,
            "label_transform": self._labels,
        }

    def _labels(self, row: np.ndarray) -> torch.Tensor:
        if self.multilabel:
            return torch.from_numpy(np.asarray(row, dtype=np.float32))
        return torch.tensor(int(np.asarray(row).reshape(-1)[0]), dtype=torch.int64)
