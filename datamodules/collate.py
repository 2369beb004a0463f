"""Collation: pad clips to the batch maximum, masks from true lengths, VAM negatives for pretraining.

Batch contract (what every datamodule's DataLoader yields and the LightningModules consume)::

    batch = {
        "pixel_values": float32 (B, T, 3, H, W)  frames, padded to the batch's largest frame count T with the
                        image processor's ``padding_value`` (0.0 hf, -1.0 original)
        "pixel_mask":   int64 (B, T * patches_per_frame)  1 = patch of a real frame, 0 = padding
        "audio_values": float32 (B, 1, Ta, 128)  log-mel, padded to the batch's longest clip with the feature
                        extractor's ``padding_value`` (Ta a multiple of 16)
        "audio_mask":   int64 (B, Ta / 16 * 8)  1 = audio patch holding real frames, time-major
        "labels":       sentiment: float32 (B,) in [-3, 3]
                        emotion:   float32 (B, 6) 0/1, order happy, sad, angry, fear, disgust, surprise
                        classify:  int64 (B,) class indices (single-label) or float32 (B, K) 0/1 (multi-label)
                        pretraining: float32 (B,) VAM targets, 1 = matched, 0 = video swapped
                        retrieval: absent
        "pixel_values_mixed", "pixel_mask_mixed": pretraining only; the video each sample's audio is matched
                        against (another clip's video where labels == 0, about half of the batch)
        "ids":          list[str] sample ids (file stems)
        "record_index": list[int] read from shards only: each sample's place in its split
    }

Read from shards with ``data.shards_decode=device`` (items carrying ``frames``, see :mod:`datamodules.transform`),
the loader's batch holds the frames as stored instead of ``pixel_values`` (``pixel_mask`` as above):

        "pixel_jpeg":       uint8 (N,) every real frame's JPEG file, back to back, sample-major
        "pixel_jpeg_bytes": int64 (B, T) bytes of each frame's file, 0 for a padding frame
    or  "pixel_frames":     uint8 (B, T, 3, H, W) (lossless shards), zeros for padding frames
        "vam_order":        pretraining: the order whose videos ``pixel_values_mixed`` takes

and :meth:`TvltCollator.finish_frames` (the datamodule's ``on_before_batch_transfer``) turns them into the
contract's ``pixel_values`` (and ``pixel_values_mixed``, ``pixel_mask_mixed``) on the training device.

Masks are built here, once, from the true lengths each item carries (its frame count, its audio patch count), never
from pixel or spectrogram values: a black frame or silence is real content.

In ``on_error="skip"`` mode failed samples arrive as :class:`datamodules.skips.Skipped` markers; they are dropped
here and listed in ``batch["skipped"]`` (a list of (id, cause)); a batch whose every sample failed is
``{"ids": [], "skipped": [...]}``. :class:`datamodules.skips.SplitLoader` takes it from there (see
:mod:`datamodules.skips`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import get_worker_info

from datamodules.skips import Skipped
from datamodules.transform import decode_jpeg_frames, jpeg_files
from tvlt.matching import vam_negatives

__all__ = ["TvltCollator", "batch_tensor", "padded"]


def batch_tensor(like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialized tensor of ``like``'s dtype and device for a batch field of ``shape``.

    Inside a DataLoader worker a CPU batch is allocated in shared memory, as torch's ``default_collate`` does: the
    worker would otherwise copy it there to send it to the main process. That copy touches every page of the batch
    afresh (float32 frames: 4.8 MB per 8-frame 224x224 clip), the largest single cost of a worker's batch on the VM
    these figures come from (``make bench``, data rows).
    """
    if get_worker_info() is None or like.device.type != "cpu":
        return like.new_empty(shape)
    storage = like._typed_storage()._new_shared(math.prod(shape), device=like.device)
    return like.new(storage).view(shape)


def padded(tensors: list[torch.Tensor], value: float, dim: int = 0) -> torch.Tensor:
    """Tensors of one shape but along ``dim`` -> (B, *shape) with ``dim`` at its longest, each tensor followed by
    ``value`` (allocated by :func:`batch_tensor`; every element is written once)."""
    longest = max(t.shape[dim] for t in tensors)
    shape = list(tensors[0].shape)
    shape[dim] = longest
    out = batch_tensor(tensors[0], (len(tensors), *shape))
    for i, t in enumerate(tensors):
        n = t.shape[dim]
        out[i].narrow(dim, 0, n).copy_(t)
        out[i].narrow(dim, n, longest - n).fill_(value)
    return out


class TvltCollator:
    """Pads dataset items into the batch contract above.

    Each item is a dict with ``id`` (str), ``pixel_values`` float (T, 3, H, W), ``audio_values`` float
    (1, Ta, 128) (Ta a multiple of the patch height), ``audio_patches`` (int: real audio patches, the feature
    extractor's ``clip_features`` count; see :mod:`datamodules.transform`) and optionally ``labels`` (float tensor) — or a :class:`datamodules.skips.Skipped` marker.

    Args:
        patches_per_frame: pixel patches per frame (image processor's ``patches_per_frame``; 196 at 224x224).
        pixel_padding_value: the image processor's ``padding_value`` (0.0 hf, -1.0 original).
        audio_padding_value: the feature extractor's ``padding_value`` (0.0 hf, -1.0 original).
        freq_len: audio patches per time step (feature extractor's ``freq_len``, 8).
        audio_patch_height: spectrogram frames per audio patch (feature extractor's ``patch_size[0]``, 16).
        vam: add ``pixel_values_mixed``/``pixel_mask_mixed`` and VAM ``labels`` (pretraining).
        vam_negative_prob: probability that a sample's video is swapped for another clip's (0.5), see
            :func:`tvlt.matching.vam_negatives`.
        image_processor: the run's :class:`tvlt.image_processing.TvltImageProcessor`, whose value step
            (``to_values``) :meth:`finish_frames` applies; needed only for items carrying ``frames``.
    """

    def __init__(
        self,
        patches_per_frame: int,
        pixel_padding_value: float,
        audio_padding_value: float,
        freq_len: int = 8,
        audio_patch_height: int = 16,
        vam: bool = False,
        vam_negative_prob: float = 0.5,
        image_processor: Any = None,
    ) -> None:
        self.image_processor = image_processor
        self.patches_per_frame = int(patches_per_frame)
        self.pixel_padding_value = float(pixel_padding_value)
        self.audio_padding_value = float(audio_padding_value)
        self.freq_len = int(freq_len)
        self.audio_patch_height = int(audio_patch_height)
        self.vam = vam
        if not 0.0 <= float(vam_negative_prob) <= 1.0:
            raise ValueError(f"vam_negative_prob must lie in [0, 1], got {vam_negative_prob}")
        self.vam_negative_prob = float(vam_negative_prob)

    @classmethod
    def from_processors(cls, image_processor: Any, feature_extractor: Any, vam: bool = False,
                        vam_negative_prob: float = 0.5) -> "TvltCollator":
        """The collator for items made with these processors (their patch geometry and padding values)."""
        return cls(
            patches_per_frame=image_processor.patches_per_frame,
            pixel_padding_value=image_processor.padding_value,
            audio_padding_value=feature_extractor.padding_value,
            freq_len=feature_extractor.freq_len,
            audio_patch_height=feature_extractor.patch_size[0],
            vam=vam,
            vam_negative_prob=vam_negative_prob,
            image_processor=image_processor,
        )

    def __call__(self, items: list[dict[str, Any] | Skipped]) -> dict[str, Any]:
        skipped = [(s.id, s.cause) for s in items if isinstance(s, Skipped)]
        items = [it for it in items if not isinstance(it, Skipped)]
        if not items:
            return {"ids": [], "skipped": skipped}
        deferred = "frames" in items[0]  # frames as stored in shards, finished on the device (finish_frames)
        frames = [it["frames" if deferred else "pixel_values"] for it in items]
        batch: dict[str, Any] = self.pack_frames(frames) if deferred else dict(zip(("pixel_values", "pixel_mask"),
                                                                                   self.pad_frames(frames)))
        batch["audio_values"], batch["audio_mask"] = self.pad_audio(
            [it["audio_values"] for it in items], [int(it["audio_patches"]) for it in items]
        )
        if self.vam:
            order, labels = vam_negatives(len(items), self.vam_negative_prob)
            if deferred:
                batch["vam_order"] = order
            else:
                mixed = [frames[j] for j in order.tolist()]
                batch["pixel_values_mixed"], batch["pixel_mask_mixed"] = self.pad_frames(mixed)
            batch["labels"] = labels
        elif "labels" in items[0] and items[0]["labels"] is not None:
            labels = [torch.as_tensor(it["labels"]) for it in items]
            dtype = torch.int64 if not labels[0].is_floating_point() else torch.float32  # class indices stay integers
            batch["labels"] = torch.stack([t.to(dtype) for t in labels])
        batch["ids"] = [str(it["id"]) for it in items]
        if "record_index" in items[0]:  # read from shards: each clip's place in the split (see ShardDataset)
            batch["record_index"] = [int(it["record_index"]) for it in items]
        if skipped:
            batch["skipped"] = skipped
        return batch

    def pad_frames(self, frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(T_i, 3, H, W) clips -> (B, T, 3, H, W) padded with ``pixel_padding_value``, int64 mask
        (B, T * patches_per_frame)."""
        return padded(frames, self.pixel_padding_value), self.frame_mask([f.shape[0] for f in frames])

    def frame_mask(self, lengths: list[int]) -> torch.Tensor:
        """int64 (B, max(lengths) * patches_per_frame): 1 for the patches of each clip's ``lengths[i]`` frames."""
        real = torch.tensor(lengths)[:, None] * self.patches_per_frame
        return (torch.arange(max(lengths) * self.patches_per_frame)[None, :] < real).long()

    def pack_frames(self, frames: list[Any]) -> dict[str, Any]:
        """Clips' frames as stored (each a list of T_i JPEG files, or uint8 (T_i, 3, H, W)) -> the batch's
        ``pixel_jpeg`` and ``pixel_jpeg_bytes``, or ``pixel_frames``, and ``pixel_mask`` (see the module
        docstring)."""
        lengths = [len(f) for f in frames]
        batch: dict[str, Any] = {"pixel_mask": self.frame_mask(lengths)}
        if isinstance(frames[0], torch.Tensor):
            batch["pixel_frames"] = padded(frames, 0)
            return batch
        sizes = torch.zeros((len(frames), max(lengths)), dtype=torch.int64)
        for i, files in enumerate(frames):
            sizes[i, : len(files)] = torch.tensor([len(f) for f in files])
        files = [f for clip in frames for f in clip]
        batch["pixel_jpeg"] = torch.cat(files, out=batch_tensor(files[0], (sum(len(f) for f in files),)))
        batch["pixel_jpeg_bytes"] = sizes
        return batch

    def finish_frames(self, batch: dict[str, Any], device: str | torch.device | None = None) -> dict[str, Any]:
        """A batch of :meth:`pack_frames` -> the batch contract: ``pixel_values`` float32 (B, T, 3, H, W) on
        ``device`` (JPEG files decoded there, see :func:`datamodules.transform.decode_jpeg_frames`; the image
        processor's value step applied there; padding frames ``pixel_padding_value``), and for pretraining
        ``pixel_values_mixed``/``pixel_mask_mixed``. A batch that already has ``pixel_values`` is returned as is.

        Equal to the worker-side path (:meth:`pad_frames` of normalized frames) on the CPU; on a GPU the JPEG
        decoder's rounding may differ by a few pixel levels.
        """
        if "pixel_jpeg" not in batch and "pixel_frames" not in batch:
            return batch
        if self.image_processor is None:
            raise ValueError("finish_frames needs the collator's image_processor (TvltCollator.from_processors)")
        device = torch.device("cpu" if device is None else device)
        mask = batch["pixel_mask"]
        if "pixel_jpeg" in batch:
            data, sizes = batch.pop("pixel_jpeg"), batch.pop("pixel_jpeg_bytes")
            real = sizes > 0
            frames = decode_jpeg_frames(jpeg_files(data, sizes[real]), device)
        else:
            stored = batch.pop("pixel_frames")
            real = mask.view(stored.shape[0], stored.shape[1], -1)[:, :, 0].bool()
            frames = stored.to(device)[real.to(device)]
        values = self.image_processor.to_values(frames)
        if bool(real.all()):  # no padding frames: the values are the batch (no second copy of it)
            out = values.view(*real.shape, *values.shape[1:])
        else:
            out = values.new_full((*real.shape, *values.shape[1:]), self.pixel_padding_value)
            out[real.to(device)] = values
        batch["pixel_values"] = out
        if "vam_order" in batch:
            order = batch.pop("vam_order")
            batch["pixel_values_mixed"], batch["pixel_mask_mixed"] = out[order.to(device)], mask[order]
        return batch

    def pad_audio(self, specs: list[torch.Tensor], patches: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, Ta_i, F) spectrograms -> (B, 1, Ta, F) padded with ``audio_padding_value``, int64 mask
        (B, Ta / audio_patch_height * freq_len) with ``patches[i]`` leading ones."""
        t_max = max(s.shape[-2] for s in specs)
        if t_max % self.audio_patch_height:
            raise ValueError(f"audio_values time length {t_max} is not a multiple of {self.audio_patch_height}")
        for i, (s, n) in enumerate(zip(specs, patches)):
            if n > s.shape[-2] // self.audio_patch_height * self.freq_len:
                held = s.shape[-2] // self.audio_patch_height * self.freq_len
                raise ValueError(f"audio item {i} claims {n} patches, its spectrogram holds {held}")
        out = padded(specs, self.audio_padding_value, dim=-2)
        width = t_max // self.audio_patch_height * self.freq_len
        mask = (torch.arange(width)[None, :] < torch.tensor(patches)[:, None]).long()
        return out, mask
