"""RetrievalDataModule: video-audio pairs for retrieval (MSR-VTT style: the audio is the same mp4's audio track).

Retrieval in TVLT is between a clip's audio and its frames (no text). Batches carry no ``labels``: the positives are
the pairs on the batch diagonal (``ids`` name them); the LightningModule builds negatives and ranks.

With neither ``root`` nor ``manifest``, the generated class demo (:func:`datamodules.demo.make_demo_classes`: each
clip's class is drawn in its frames and sounded in its audio track) gives the pairs, with its own train/valid/test
splits, so that retrieval runs end to end on a fresh machine and has something to match: a clip's audio ranks the
videos of its own class first.
"""

from __future__ import annotations

from typing import Any

from datamodules.base import ClipDataModule
from datamodules.demo import ClassesDemoSpec
from datamodules.manifests import Row, class_folders, csv_manifest, msrvtt

__all__ = ["RetrievalDataModule"]


class RetrievalDataModule(ClipDataModule):
    """Video-audio retrieval data.

    Args:
        root: MSR-VTT in the frozen-in-time layout (``videos/all/{id}.mp4``,
            ``high-quality/structured-symlinks/{train,test}_list_{cut}.txt``), or
        manifest: a CSV with ``video``, optional ``audio`` (sidecar or ``container``, the default) and ``split``
            (train/valid/test). At most one of the two; neither uses the generated class demo in ``demo_dir``.
        cut: MSR-VTT split lists to use (``miech``, 9k train / 1k test, as the original release since 2023-01-27).
        val_split: the split used for validation; MSR-VTT has no validation list, so ``test`` (as the original).
        train_jitter: random per-segment frame offsets in training (whole clip, uniform segments).
        demo_dir, demo_seed, demo_classes, demo_clips: the generated demo (no root and no manifest): where, its seed,
            classes and (train, valid, test) clips. The defaults (4 classes, 8 test clips) make chance R@1 1/8
            and class-perfect matching about 1/2 (two clips per class).
        **kwargs: the common arguments of :class:`datamodules.base.ClipDataModule`.
    """

    root_description = "MSR-VTT folder"

    def __init__(
        self,
        root: str | None = None,
        manifest: str | None = None,
        cut: str = "miech",
        val_split: str = "test",
        train_jitter: bool = True,
        demo_dir: str = "data/demo/retrieval",
        demo_seed: int = 0,
        demo_classes: int = 4,
        demo_clips: tuple[int, int, int] | list[int] = (64, 8, 8),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if root is not None and manifest is not None:
            raise ValueError("RetrievalDataModule takes root (MSR-VTT folder) or manifest (a CSV), not both")
        self.demo_dir = demo_dir
        self.demo_spec = ClassesDemoSpec(seed=demo_seed, num_classes=int(demo_classes), num_train=int(demo_clips[0]),
                                         num_valid=int(demo_clips[1]), num_test=int(demo_clips[2]),
                                         fill=True)  # the class in every patch: something VAM can match quickly
        self.root = root
        self.manifest_path = manifest
        self.cut = cut
        self.val_split = val_split
        self.train_jitter = train_jitter
        self.save_hyperparameters(logger=False)

    def _source_split(self, split: str) -> str:
        return self.val_split if split == "valid" and not self.uses_demo else split

    def _rows(self, split: str) -> list[Row]:
        source = self._source_split(split)
        if self.uses_demo:
            self._ensure_demo()
            rows = class_folders(self.demo_dir, source, self.demo_spec.classes)[0]
            for row in rows:
                row.labels = None
            return rows
        if self.manifest_path is not None:
            return csv_manifest(self.manifest_path, split=source)
        return msrvtt(self.root, source, self.cut)

    def _dataset_options(self, split: str) -> dict[str, Any]:
        return {
            "sampling": "random" if split == "train" and self.train_jitter else "uniform",
        }
