"""ClipTransform: the one path from a decoded clip to a dataset item, shared by training, evaluation, shard building
and prediction.

Item (what :class:`datamodules.collate.TvltCollator` takes)::

    {"id": str,
     "pixel_values": float32 (T, 3, H, W)   the clip's T <= num_frames frames, unpadded,
     "audio_values": float32 (1, Ta, 128)   log-mel, Ta a multiple of 16 (the clip's own padding only),
     "audio_patches": int                   real audio patches (the true audio length),
     "labels": tensor                       the label transform's output (absent without labels)}

Read from shards with ``data.shards_decode=device``, an item carries ``frames`` instead of ``pixel_values``: the
clip's frames as stored (T JPEG files, or uint8 (T, 3, H, W)), decoded and normalized per batch on the device.

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

__all__ = ["DECODE_ON", "ClipTransform", "decode_jpeg_frames", "jpeg_files"]

#: where frames read from shards are decoded and normalized: in the DataLoader workers, or per batch on the training
#: device (``data.shards_decode``; see :class:`datamodules.shards.RecordToItem`)
DECODE_ON = ("worker", "device")


def jpeg_files(data: Any, sizes: Any, positions: Any = None) -> list[torch.Tensor]:
    """JPEG files stored back to back in ``data`` (1-D uint8, numpy or a CPU tensor), ``sizes[i]`` bytes each ->
    the files at ``positions`` (default: all) as 1-D uint8 tensor views."""
    data = data if isinstance(data, torch.Tensor) else torch.from_numpy(np.asarray(data))
    offsets = np.concatenate([[0], np.cumsum(np.asarray(sizes))])
    picks = range(len(offsets) - 1) if positions is None else positions
    return [data[int(offsets[p]) : int(offsets[p + 1])] for p in picks]


def decode_jpeg_frames(files: list[torch.Tensor], device: str | torch.device | None = None) -> torch.Tensor:
    """JPEG files (1-D uint8 CPU tensors, one frame each, all of one size) -> uint8 (N, 3, H, W) on ``device``
    (on the CPU a channels-last view: not contiguous).

    Decoded by torchvision's ``decode_jpeg`` as RGB: one nvJPEG batch on a CUDA device (whose pixels may differ
    from the CPU's by a few levels: the JPEG standard leaves the inverse DCT's rounding to the decoder), else
    libjpeg-turbo on the CPU, then moved to ``device``. The files stay on the CPU (torchvision's rule).
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    if not files:
        raise ValueError("no JPEG files to decode")
    device = torch.device(device or "cpu")
    if device.type != "cuda":  # torchvision decodes on the CPU or CUDA only: other devices get the CPU's pixels
        # libjpeg-turbo's pixels are (H, W, 3) in memory, returned as a (3, H, W) view: stacked in that layout (a
        # plain copy; stacking the views gathers bytes, 10x slower here) and handed on as a (N, 3, H, W) view,
        # which the value step's float32 copy makes contiguous
        decoded = decode_jpeg(files, mode=ImageReadMode.RGB)
        return torch.stack([d.permute(1, 2, 0) for d in decoded]).permute(0, 3, 1, 2).to(device)
    return torch.stack(decode_jpeg(files, mode=ImageReadMode.RGB, device=device))


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

    def item(self, clip_id: str, pixel_values: torch.Tensor | None, audio_values: torch.Tensor, audio_patches: int,
             labels: np.ndarray | None = None, frames: Any = None) -> dict[str, Any]:
        """Assemble an item; ``labels`` (float32 (K,) row, K may be 0) goes through the label transform.

        ``frames`` instead of ``pixel_values`` (None): the clip's frames not yet decoded or normalized (a list of
        JPEG files, or uint8 (T, 3, H, W)), which the collator passes on for the batch to finish on the device
        (:meth:`datamodules.collate.TvltCollator.finish_frames`)."""
        if (pixel_values is None) == (frames is None):
            raise ValueError("an item carries either pixel_values or frames")
        item = {"id": clip_id, "audio_values": audio_values, "audio_patches": int(audio_patches)}
        item.update({"pixel_values": pixel_values} if frames is None else {"frames": frames})
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
