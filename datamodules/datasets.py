"""ClipDataset: manifest row -> decoded clip -> :class:`datamodules.transform.ClipTransform` -> one item for
:class:`datamodules.collate.TvltCollator`."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.decoding import ClipDecodeError, ClipReader
from datamodules.manifests import Manifest
from datamodules.skips import Skipped
from datamodules.transform import ClipTransform

__all__ = ["ClipDataset", "ON_ERROR"]

ON_ERROR = ("raise", "skip")


class ClipDataset(Dataset):
    """Items ``{"id", "pixel_values" (T, 3, H, W), "audio_values" (1, Ta, 128), "audio_patches", "labels"?}``, made by
    :class:`datamodules.transform.ClipTransform`.

    Args:
        manifest: the split's clips (worker-safe storage, see :mod:`datamodules.manifests`).
        reader: decodes frames and audio (:class:`datamodules.decoding.ClipReader`).
        image_processor, feature_extractor: the ``tvlt`` processors (see :class:`ClipTransform`).
        sampling: ``"uniform"`` (evaluation; deterministic) or ``"random"`` (training: random window + jitter).
        window_seconds: length of the random window (None: the whole clip).
        seeded_eval: with ``sampling="random"``, seed each index with itself, so that a validation set of random
            windows is the same every epoch (pretraining validation).
        on_error: ``"raise"`` re-raises :class:`ClipDecodeError`; ``"skip"`` returns a :class:`Skipped` marker (see
            :mod:`datamodules.skips`).
        label_transform: maps the manifest's float32 label row to the item's ``labels`` tensor (None: no labels).
    """

    def __init__(
        self,
        manifest: Manifest,
        reader: ClipReader,
        image_processor: Any,
        feature_extractor: Any,
        sampling: str = "uniform",
        window_seconds: float | None = None,
        seeded_eval: bool = False,
        on_error: str = "raise",
        label_transform: Callable[[np.ndarray], torch.Tensor] | None = None,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if sampling not in ("uniform", "random"):
            raise ValueError(f"sampling must be 'uniform' or 'random', got {sampling!r}")
        self.manifest = manifest
        self.reader = reader
        self.transform = ClipTransform(image_processor, feature_extractor, label_transform)
        self.sampling = sampling
        self.window_seconds = window_seconds
        self.seeded_eval = seeded_eval
        self.on_error = on_error

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int) -> dict[str, Any] | Skipped:
        clip_id = self.manifest.ids[index]
        try:
            clip = self.reader.read(self.manifest.videos[index], self.manifest.audio(index), mode=self.sampling,
                                    window_seconds=self.window_seconds, seed=self._seed(index))
        except ClipDecodeError as e:
            if self.on_error == "raise":
                raise
            return Skipped(clip_id, e.cause, str(e))
        labels = self.manifest.labels[index] if self.manifest.labels is not None else None
        return self.transform(clip, clip_id, labels)

    def _seed(self, index: int) -> int | None:
        if self.sampling != "random":
            return None
        if self.seeded_eval:
            return int(index)
        # torch's global RNG is seeded per DataLoader worker and per epoch (seed_everything(workers=True) makes it
        # reproducible), unlike numpy's, which forked workers would share.
        return int(torch.randint(0, 2**62, ()).item())
