"""ClipTransform: the one path from a decoded clip to a dataset item, shared by training, evaluation, shard building
and prediction.

Item (what :class:`datamodules.collate.TvltCollator` takes)::

    {"id": str,
     "pixel_values": float32 (T, 3, H, W)   the clip's T <= num_frames frames, unpadded,
     "audio_values": float32 (1, Ta, 128)   log-mel, Ta a multiple of 16 (the clip's own padding only),
     "audio_patches": int                   real audio patches (the true audio length),
     "labels": tensor                       the label transform's output (absent without labels)}

True lengths travel as counts (T is ``pixel_values.shape[0]``); masks are built once, at batch time, by the
collator. A clip's steps are split where shards store it: :meth:`ClipTransform.frames` (the image processor's
geometry: uint8 at the model resolution) and :meth:`ClipTransform.audio` run when shards are built,
:meth:`ClipTransform.pixels` (the value step) when they are read; per-file decoding runs all of them in a row.

One-clip prediction::

    item = ClipTransform(image_processor, feature_extractor)(clip, clip_id)
    batch = TvltCollator.from_processors(image_processor, feature_extractor)([item])
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from datamodules.decoding import Clip

__all__ = ["ClipTransform"]


class ClipTransform:
    """Decoded clip -> item (see the module docstring).

    Args:
        image_processor: a :class:`tvlt.image_processing.TvltImageProcessor` (its ``geometry`` and ``to_values``).
        feature_extractor: a :class:`tvlt.feature_extraction.TvltFeatureExtractor` (its ``clip_features``).
        label_transform: maps a float32 label row (K,) to the item's ``labels`` (None: items carry no labels).
    """

    def __init__(self, image_processor: Any, feature_extractor: Any,
                 label_transform: Callable[[np.ndarray], torch.Tensor] | None = None) -> None:
        self.image_processor = image_processor
        self.feature_extractor = feature_extractor
        self.label_transform = label_transform

    def frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (T, H, W, 3) decoded frames -> uint8 (T, 3, h, w) at the model resolution (resize and crop).

        The frames are processed together (original mode: the dark-border crop is shared by all of them)."""
        return self.image_processor.geometry(torch.from_numpy(frames).permute(0, 3, 1, 2))

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (T, 3, h, w) frames at the model resolution -> float32 (T, 3, h, w) ``pixel_values``."""
        return self.image_processor.to_values(frames)

    def audio(self, waveform: np.ndarray, sampling_rate: int) -> tuple[torch.Tensor, int]:
        """float32 (N,) mono waveform at ``sampling_rate`` Hz -> (``audio_values`` (1, Ta, 128), ``audio_patches``)."""
        return self.feature_extractor.clip_features(waveform, sampling_rate)

    def item(self, clip_id: str, pixel_values: torch.Tensor, audio_values: torch.Tensor, audio_patches: int,
             labels: np.ndarray | None = None) -> dict[str, Any]:
        """Assemble an item; ``labels`` (float32 (K,) row, K may be 0) goes through the label transform."""
        item = {"id": clip_id, "pixel_values": pixel_values, "audio_values": audio_values,
                "audio_patches": int(audio_patches)}
        if self.label_transform is not None and labels is not None and np.asarray(labels).size:
            item["labels"] = self.label_transform(labels)
        return item

    def __call__(self, clip: Clip, clip_id: str, labels: np.ndarray | None = None) -> dict[str, Any]:
        """A decoded clip (all its frames are used: the reader chose them) -> item.

        Raises:
            ValueError: a clip without audio (``clip.waveform`` None), or the processors' errors.
        """
        if clip.waveform is None:
            raise ValueError(f"{clip_id}: the clip has no audio (read it with an audio source)")
        pixel_values = self.pixels(self.frames(clip.frames))
        return self.item(clip_id, pixel_values, *self.audio(clip.waveform, clip.sampling_rate), labels)
