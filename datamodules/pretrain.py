"""PretrainDataModule: videos with their own audio (HowTo100M / YTTemporal style) for MAE + VAM pretraining.

Each training sample is a random window of ``window_seconds`` (14.9 s, the original release's YTTemporal window;
the whole video when shorter) with ``num_frames`` jittered frames and the audio of the same window taken from the
container. The collator adds VAM negatives: about half of each batch gets another clip's video
(``pixel_values_mixed``/``pixel_mask_mixed``, ``labels`` 0). Validation windows are random but seeded by the index,
so they are the same every epoch.

With neither ``root`` nor ``manifest``, the embedded demo dataset's clips (video + sidecar wav, labels unused) are
used, so that pretraining runs end to end on a fresh machine.
"""

from __future__ import annotations

from typing import Any

from datamodules.base import ClipDataModule
from datamodules.demo import DemoSpec
from datamodules.manifests import (
    ManifestError,
    Row,
    csv_manifest,
    mosei_original,
    video_folder,
)

__all__ = ["PretrainDataModule"]


class PretrainDataModule(ClipDataModule):
    """Pretraining data.

    Args:
        root: a folder of videos (searched recursively for .mp4/.mkv/.webm/.avi/.mov), or
        manifest: a CSV with a ``video`` column (optional ``audio``: a sidecar path or ``container``; optional
            ``split``: train/valid). At most one of the two; neither uses the embedded demo dataset in ``demo_dir``.
        window_seconds: length of the random window per sample (None: the whole video).
        num_val: clips held out for validation when the source has no ``split`` column: the last ``num_val`` in
            sorted order (the original release holds out the last 1000), at most a tenth of the set; 0 disables
            validation.
        vam_negative_prob: probability that a sample's video is swapped for another clip's (VAM label 0).
        **kwargs: the common arguments of :class:`datamodules.base.ClipDataModule` (num_frames defaults to 4 here,
            as in the original pretraining config).
    """

    vam = True
    root_description = "folder of videos"
    optional_splits = ("valid", "test")  # pretraining data has no test split (shards: no test folder is built)

    def __init__(
        self,
        root: str | None = None,
        manifest: str | None = None,
        window_seconds: float | None = 14.9,
        num_val: int = 1000,
        vam_negative_prob: float = 0.5,
        num_frames: int = 4,
        demo_dir: str = "data/demo/mosei",
        **kwargs,
    ) -> None:
        super().__init__(num_frames=num_frames, **kwargs)
        if root is not None and manifest is not None:
            raise ValueError("PretrainDataModule takes root (a folder of videos) or manifest (a CSV), not both")
        self.demo_dir = demo_dir
        self.demo_spec = DemoSpec()
        self.root = root
        self.manifest_path = manifest
        self.window_seconds = window_seconds
        self.num_val = num_val
        self.vam_negative_prob = vam_negative_prob
        self._all: list[Row] | None = None
        self._has_split_column = False
        self.save_hyperparameters(logger=False)

    def _source(self) -> list[Row]:
        if self._all is None:
            if self.manifest_path is not None:
                import csv

                with open(self.manifest_path, newline="") as f:
                    self._has_split_column = "split" in (csv.DictReader(f).fieldnames or [])
                self._all = csv_manifest(self.manifest_path)
            else:
                self._all = video_folder(self.root)
            if not self._all:
                raise ManifestError(f"no videos found in {self.manifest_path or self.root}")
        return self._all

    def _split_rows(self, split: str) -> list[Row]:
        if self.uses_demo:
            self._ensure_demo()
            rows = mosei_original(self.demo_dir, split) if split in ("train", "valid") else []
            for row in rows:
                row.labels = None
            return rows
        rows = self._source()
        if self._has_split_column:
            return csv_manifest(self.manifest_path, split=split)
        n_val = min(self.num_val, len(rows) // 10)
        return rows[: len(rows) - n_val] if split == "train" else rows[len(rows) - n_val :]

    def _has_split(self, split: str) -> bool:
        # train must exist (an empty one fails at set-up, naming the split); valid is optional
        return split == "train" or (split == "valid" and bool(self._split_rows(split)))

    def _rows(self, split: str) -> list[Row]:
        return self._split_rows(split)

    def _dataset_options(self, split: str) -> dict[str, Any]:
        return {
            "sampling": "random",
            "window_seconds": self.window_seconds,
            "seeded_eval": split != "train",
        }

    def shard_window(self) -> float | None:
        return self.window_seconds

    def _shard_extra_settings(self) -> dict[str, Any]:
        return {"window_seconds": self.window_seconds}
