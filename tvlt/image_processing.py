"""TvltImageProcessor: videos (or images, as 1-frame videos) -> ``pixel_values`` (B, F, 3, H, W) + ``pixel_mask``.

All frames of a video are resized in one call of torchvision's ``transforms.v2.functional.resize`` on the uint8
tensor (CPU or GPU); no PIL round trip per frame.

``mode="hf"`` (default) reproduces the Hugging Face port (transformers <= 4.40.2, ``TvltImageProcessor``): resize
so the shortest edge is ``size["shortest_edge"]`` = 224 (long side ``int(224 * long / short)``) with bilinear
antialiased filtering (PIL's bilinear filter; torchvision's uint8 antialias kernel follows it to within one 8-bit
level), centre crop to ``crop_size`` 224 x 224 at offset ``((H - 224) // 2, (W - 224) // 2)``, rescale by 1/255,
normalise with mean = std = 0.5 (values in [-1, 1]), channels first.

``mode="original"`` reproduces the original TVLT release's frame pipeline (``rawvideo_utils``), with which the
released checkpoints were trained. Its differences from the HF port:

1. dark borders are cropped first: the bounding box of the pixels brighter than ``dark_border_threshold`` = 30 in
   every frame and channel is kept (the whole frame if no pixel qualifies);
2. centre crop to a square of side min(H, W) (start offset ``ceil((long - short) / 2)``) instead of crop after resize;
3. resize that square to ``crop_size`` (224 x 224) with bicubic interpolation without antialiasing (torchvision
   <= 0.16 tensor behaviour), rounded and clamped back to uint8;
4. padded frames of a batch hold -1.0 (``padding_value``), as the release's collate pads with -1.

In both modes ``pixel_mask`` is built from frame counts, with ``patches_per_frame`` computed from the output frame
size actually produced (the HF port uses ``size`` instead of the crop size; the original release masks by value,
every all -1 patch, which also masks pure black image patches: ``mask_from_values=True`` adds that rule).

Beyond both references: a batch of videos with different frame counts is padded with ``padding_value`` and masked;
videos longer than ``num_frames`` are uniformly subsampled (``frames_over_limit="subsample"``, the original
release's ``linspace(0, T, num_frames, endpoint=False)`` indices) or rejected (``"error"``, the HF port's
behaviour); grayscale frames are repeated to 3 channels and an alpha channel is dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from tvlt.frames import uniform_frame_indices
from tvlt.processing_utils import BatchFeature, ProcessorConfigMixin, ReturnTensors, note_no_effect

Mode = Literal["hf", "original"]
_MODES = ("hf", "original")
IMAGENET_STANDARD = (0.5, 0.5, 0.5)

# PIL resample codes (as stored by the HF port's JSON) -> torchvision interpolation
_PIL_CODES = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_PIL_UNSUPPORTED = {1: "lanczos", 4: "box", 5: "hamming"}
_INTERPOLATION = {
    "nearest": InterpolationMode.NEAREST_EXACT,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}
_CODE_OF = {"nearest": 0, "bilinear": 2, "bicubic": 3}

_ACCEPTED = (
    "accepted images/videos: an image (H, W), (H, W, C) or (C, H, W) with C in {1, 3, 4} (PIL, numpy or torch) = a "
    "1-frame video; a video as a list of such frames or a 4-D array (F, H, W, C) / (F, C, H, W); a batch as a list "
    "of videos or a 5-D array (B, F, H, W, C) / (B, F, C, H, W)"
)


def _resample_name(resample: Any) -> str:
    if isinstance(resample, InterpolationMode):
        resample = resample.value
    if isinstance(resample, int) or (hasattr(resample, "value") and isinstance(resample.value, int)):
        code = int(getattr(resample, "value", resample))
        if code in _PIL_UNSUPPORTED:
            raise ValueError(f"resample={_PIL_UNSUPPORTED[code]} is not supported; use nearest, bilinear or bicubic")
        if code not in _PIL_CODES:
            raise ValueError(f"unknown PIL resample code {code}")
        return _PIL_CODES[code]
    name = str(resample).lower()
    if name == "nearest-exact":
        name = "nearest"
    if name not in _INTERPOLATION:
        raise ValueError(f"resample must be one of {sorted(_INTERPOLATION)} (or a PIL code 0/2/3), got {resample!r}")
    return name


def _is_frame(x: Any) -> bool:
    """A single image: PIL, or a 2-D / 3-D array."""
    if hasattr(x, "getbands"):  # PIL.Image.Image without importing PIL
        return True
    return isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim in (2, 3)


class TvltImageProcessor(ProcessorConfigMixin):
    """Image/video processor for TVLT.

    Args:
        do_resize: resize frames (hf: shortest edge to ``size["shortest_edge"]``; original: square to ``crop_size``).
        size: ``{"shortest_edge": 224}`` (hf); also ``{"height": h, "width": w}`` for a fixed size.
        patch_size: (height, width) of an image patch, default (16, 16); sets ``patches_per_frame``.
        num_frames: most frames per video, default 8 (see ``frames_over_limit``).
        resample: ``"bilinear"`` (hf default), ``"bicubic"`` (original default) or ``"nearest"``; PIL codes 0/2/3
            as stored in HF JSON files are accepted.
        do_center_crop: hf: centre crop to ``crop_size`` after resizing; original: square centre crop before it.
        crop_size: ``{"height": 224, "width": 224}``; the output frame size.
        do_rescale / rescale_factor: multiply by 1/255 (inputs are 0-255 values, uint8 or float).
        do_normalize / image_mean / image_std: ``(x - mean) / std`` per channel, default 0.5 / 0.5 -> [-1, 1].
        mode: ``"hf"`` (Hugging Face port) or ``"original"`` (original TVLT release); see the module docstring.
        frames_over_limit: ``"subsample"`` (default) uniformly picks ``num_frames`` frames; ``"error"`` raises.
        dark_border_threshold: original mode only: crop borders not brighter than this (default 30; None = off).
        padding_value: value of padded frames in a batch; default 0.0 (hf) / -1.0 (original).
        mask_from_values: also mask every patch whose values are all -1 (pure black, -1 padding), as the original
            release's ``get_patch_mask`` does. Default False (mask from frame counts only).
        **kwargs: other keys are kept as attributes (the keyword policy of :mod:`tvlt.processing_utils`):
            ``init_mask_generator`` with a note that it has no effect, anything else logged once by name.

    Attributes used by collate functions: ``num_frames``, ``patches_per_frame`` (196 at 224 / 16), ``padding_value``.

    Raises:
        ValueError: unknown ``mode`` / ``frames_over_limit`` / ``resample``, or sizes that are not positive.
    """

    model_input_names: ClassVar[list[str]] = ["pixel_values", "pixel_mask", "pixel_values_mixed", "pixel_mask_mixed"]
    config_keys = (
        "do_resize",
        "size",
        "patch_size",
        "num_frames",
        "resample",
        "do_center_crop",
        "crop_size",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "image_mean",
        "image_std",
        "mode",
        "frames_over_limit",
        "dark_border_threshold",
        "padding_value",
        "mask_from_values",
    )
    foreign_keys = frozenset(
        {
            "spectrogram_length", "num_channels", "feature_size", "sampling_rate", "hop_length_to_sampling_rate",
            "n_fft", "return_attention_mask", "stft_dtype", "hop_length", "freq_len", "padding_side",
        }
    )  # fmt: skip
    derived_keys = frozenset()
    section = "image_processor"
    no_effect_keys: ClassVar[dict[str, str]] = {"init_mask_generator": "the port ignores it too; MAE masks are "
                                                "drawn by the model"}
    # the arguments of preprocess() (per-call overrides of the settings), as the port lists them
    _valid_processor_keys: ClassVar[list[str]] = [
        "videos", "do_resize", "size", "patch_size", "num_frames", "resample", "do_center_crop", "crop_size",
        "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std", "is_mixed", "return_tensors",
        "data_format", "input_data_format", "frames_over_limit", "mask_pixel",
    ]

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | None = None,
        patch_size: Sequence[int] = (16, 16),
        num_frames: int = 8,
        resample: Any = None,
        do_center_crop: bool = True,
        crop_size: dict[str, int] | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: float | Sequence[float] = IMAGENET_STANDARD,
        image_std: float | Sequence[float] = IMAGENET_STANDARD,
        mode: Mode = "hf",
        frames_over_limit: Literal["subsample", "error"] = "subsample",
        dark_border_threshold: int | None = 30,
        padding_value: float | None = None,
        mask_from_values: bool = False,
        **kwargs: Any,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if frames_over_limit not in ("subsample", "error"):
            raise ValueError(f"frames_over_limit must be 'subsample' or 'error', got {frames_over_limit!r}")
        self.mode = mode
        self.do_resize = bool(do_resize)
        self.size = dict(size) if size is not None else {"shortest_edge": 224}
        self.patch_size = [int(p) for p in patch_size]
        self.num_frames = int(num_frames)
        self.resample = _resample_name(resample if resample is not None else ("bicubic" if mode == "original" else 2))
        self.do_center_crop = bool(do_center_crop)
        self.crop_size = dict(crop_size) if crop_size is not None else {"height": 224, "width": 224}
        self.do_rescale = bool(do_rescale)
        self.rescale_factor = float(rescale_factor)
        self.do_normalize = bool(do_normalize)
        self.image_mean = [float(m) for m in ([image_mean] * 3 if isinstance(image_mean, (int, float)) else image_mean)]
        self.image_std = [float(s) for s in ([image_std] * 3 if isinstance(image_std, (int, float)) else image_std)]
        self.frames_over_limit = frames_over_limit
        self.mask_from_values = bool(mask_from_values)
        self.dark_border_threshold = None if dark_border_threshold is None else int(dark_border_threshold)
        default_padding = -1.0 if mode == "original" else 0.0
        self.padding_value = float(padding_value if padding_value is not None else default_padding)
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if len(self.patch_size) != 2 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be two positive ints, got {patch_size}")
        if not ("shortest_edge" in self.size or {"height", "width"} <= set(self.size)):
            raise ValueError(f"size must have 'shortest_edge' or 'height' and 'width', got {self.size}")
        if not {"height", "width"} <= set(self.crop_size):
            raise ValueError(f"crop_size must have 'height' and 'width', got {self.crop_size}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need 3 values (RGB)")
        self._store_extra_settings(kwargs)

    # --------------------------------------------------------------- geometry
    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of a processed frame for an input frame of ``height`` x ``width`` pixels."""
        if self.mode == "original":
            if self.do_resize:
                return self.crop_size["height"], self.crop_size["width"]
            side = min(height, width)
            return (side, side) if self.do_center_crop else (height, width)
        if self.do_resize:
            height, width = self._resized_size(height, width)
        if self.do_center_crop:
            return self.crop_size["height"], self.crop_size["width"]
        return height, width

    @property
    def patches_per_frame(self) -> int:
        """Patches per frame of the default output (``crop_size`` when cropping, else ``size``) / ``patch_size``."""
        if self.do_center_crop or self.mode == "original":
            h, w = self.crop_size["height"], self.crop_size["width"]
        elif "shortest_edge" in self.size:
            h = w = self.size["shortest_edge"]
        else:
            h, w = self.size["height"], self.size["width"]
        return (h // self.patch_size[0]) * (w // self.patch_size[1])

    def _resized_size(self, height: int, width: int) -> tuple[int, int]:
        if "shortest_edge" not in self.size:
            return self.size["height"], self.size["width"]
        short = self.size["shortest_edge"]
        if height <= width:
            return short, int(short * width / height)
        return int(short * height / width), short

    # ------------------------------------------------------------------ inputs
    def _videos(self, videos: Any, layout: str | None) -> list[list[Any]] | list[torch.Tensor]:
        """Any accepted input -> list of videos, each a (F, C, H, W) tensor."""
        if videos is None:
            raise ValueError(f"no images given; {_ACCEPTED}")
        if isinstance(videos, (list, tuple)):
            if len(videos) == 0:
                raise ValueError(f"empty list of images; {_ACCEPTED}")
            if all(_is_frame(v) for v in videos):  # a list of frames is one video (as in the HF port)
                return [self._video(list(videos), layout, "video")]
            out = []
            for i, v in enumerate(videos):  # a batch: each item a video, or an image = a 1-frame video
                if _is_frame(v):
                    v = [v]
                elif not (isinstance(v, (list, tuple)) or (isinstance(v, (np.ndarray, torch.Tensor)) and v.ndim == 4)):
                    shape = tuple(getattr(v, "shape", ()))
                    raise ValueError(f"videos[{i}] is {type(v).__name__} of shape {shape}; {_ACCEPTED}")
                out.append(self._video(v, layout, f"videos[{i}]"))
            return out
        if _is_frame(videos):
            return [self._video([videos], layout, "image")]
        if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 4:
            return [self._video(videos, layout, "video")]
        if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 5:
            return [self._video(v, layout, f"videos[{i}]") for i, v in enumerate(videos)]
        shape = tuple(getattr(videos, "shape", ()))
        raise ValueError(f"got {type(videos).__name__} of shape {shape}; {_ACCEPTED}")

    def _video(self, video: Any, layout: str | None, what: str) -> torch.Tensor:
        if isinstance(video, (list, tuple)):
            if len(video) == 0:
                raise ValueError(f"{what}: a video with no frames")
            frames = [self._frame(f, layout, f"{what}[{i}]") for i, f in enumerate(video)]
            shapes = {tuple(f.shape) for f in frames}
            if len(shapes) > 1:
                # frames of one video of different sizes: processed one by one later
                return frames  # type: ignore[return-value]
            return torch.stack(frames)
        x = video if isinstance(video, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(video))
        if x.ndim != 4:
            raise ValueError(f"{what}: got shape {tuple(x.shape)}; {_ACCEPTED}")
        if x.shape[0] == 0:
            raise ValueError(f"{what}: a video with no frames")
        first = _channels_first_axis(x.shape[1:], layout, what) == "first"
        return self._fix_channels(x if first else x.permute(0, 3, 1, 2), what)

    def _frame(self, frame: Any, layout: str | None, what: str) -> torch.Tensor:
        """One image -> (C=3, H, W) tensor."""
        if hasattr(frame, "getbands"):  # PIL image
            if frame.mode not in ("RGB", "L", "RGBA"):
                frame = frame.convert("RGB")
            frame = np.array(frame)  # a writable copy
        if not isinstance(frame, (np.ndarray, torch.Tensor)):
            raise ValueError(f"{what} is {type(frame).__name__}; {_ACCEPTED}")
        if isinstance(frame, np.ndarray) and not (frame.dtype.kind in "uif"):
            raise ValueError(f"{what}: pixel dtype {frame.dtype} is not supported; {_ACCEPTED}")
        x = frame if isinstance(frame, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frame))
        if x.ndim == 2:
            x = x[None]
        elif x.ndim == 3:
            x = x if _channels_first_axis(x.shape, layout, what) == "first" else x.permute(2, 0, 1)
        else:
            raise ValueError(f"{what}: got shape {tuple(x.shape)}; {_ACCEPTED}")
        return self._fix_channels(x[None], what)[0]

    @staticmethod
    def _fix_channels(x: torch.Tensor, what: str) -> torch.Tensor:
        """(F, C, H, W) with C in {1, 3, 4} -> (F, 3, H, W): grayscale repeated, alpha dropped."""
        if x.dtype == torch.bool or x.is_complex():
            raise ValueError(f"{what}: pixel dtype {x.dtype} is not supported")
        channels = x.shape[1]
        if channels == 1:
            return x.expand(-1, 3, -1, -1)
        if channels == 4:
            return x[:, :3]
        if channels != 3:
            raise ValueError(f"{what}: {channels} channels; expected 1 (grayscale), 3 (RGB) or 4 (RGBA)")
        return x

    # ------------------------------------------------------------- transforms
    def _select_frames(self, video: Any, num_frames: int, policy: str, what: str) -> Any:
        count = len(video)
        if count <= num_frames:
            return video
        if policy == "error":
            raise ValueError(
                f"{what} has {count} frames, more than num_frames={num_frames} "
                "(pass frames_over_limit='subsample' to pick them uniformly)"
            )
        index = uniform_frame_indices(count, num_frames)
        if isinstance(video, list):
            return [video[i] for i in index]
        return video[torch.from_numpy(index).to(video.device)]

    def _crop_dark_borders(self, x: torch.Tensor) -> torch.Tensor:
        """Original release: keep the bounding box of pixels > threshold in every frame and channel."""
        bright = (x > self.dark_border_threshold).all(dim=1).all(dim=0)  # (H, W)
        rows, cols = bright.any(dim=1), bright.any(dim=0)
        if not bool(rows.any()):
            return x
        r = torch.nonzero(rows).flatten()
        c = torch.nonzero(cols).flatten()
        return x[:, :, int(r[0]) : int(r[-1]) + 1, int(c[0]) : int(c[-1]) + 1]

    def geometry(self, x: torch.Tensor) -> torch.Tensor:
        """The geometry step alone: resize and crop one video, (F, 3, H, W) of 0-255 values -> (F, 3, h, w), the
        size :meth:`output_size` gives (original mode: after the dark-border crop, which depends on every frame
        passed together). uint8 in gives uint8 out (resampled values rounded and clamped, as PIL and torchvision
        do), so frames can be stored at the model resolution without loss; :meth:`to_values` finishes them."""
        interpolation = _INTERPOLATION[self.resample]
        if self.mode == "original":
            if self.dark_border_threshold is not None:
                x = self._crop_dark_borders(x)
            if self.do_center_crop:
                h, w = x.shape[-2:]
                side = min(h, w)
                top, left = math.ceil((h - side) / 2), math.ceil((w - side) / 2)
                x = x[..., top : top + side, left : left + side]
            if self.do_resize:
                x = _resize_like_torchvision_v1(x, (self.crop_size["height"], self.crop_size["width"]), interpolation)
            return x
        if self.do_resize:
            x = _resize(x, self._resized_size(*x.shape[-2:]), interpolation, antialias=True)
        if self.do_center_crop:
            h, w = x.shape[-2:]
            ch, cw = self.crop_size["height"], self.crop_size["width"]
            if ch > h or cw > w:
                raise ValueError(f"crop_size {ch}x{cw} is larger than the resized frame {h}x{w}")
            top, left = (h - ch) // 2, (w - cw) // 2
            x = x[..., top : top + ch, left : left + cw]
        return x

    def to_values(self, x: torch.Tensor) -> torch.Tensor:
        """The value step alone: rescale and normalize frames of 0-255 values, (F, 3, h, w) uint8 or float ->
        float32 of the same shape (``(x * rescale_factor - image_mean) / image_std`` per channel, each step as its
        ``do_*`` flag says). No resizing or cropping: :meth:`geometry` is the step before."""
        if x.is_floating_point() and self.do_rescale and x.numel() and float(x.max()) <= 1.0:
            warnings.warn(
                "TvltImageProcessor: float pixels all <= 1 are rescaled by rescale_factor again; pass 0-255 values "
                "(uint8) or do_rescale=False",
                stacklevel=3,
            )
        # rescale and normalize folded into one per-channel affine map, applied in place to a contiguous float32
        # copy (equal to (x * rescale - mean) / std within float rounding). In-place mul_/add_ rather than
        # addcmul: on a (8, 3, 224, 224) uint8 clip, 0.6 ms instead of 1.3-1.7 ms on one CPU thread here
        x = x.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
        scale = torch.full((x.shape[-3],), self.rescale_factor if self.do_rescale else 1.0, dtype=torch.float64)
        shift = torch.zeros(x.shape[-3], dtype=torch.float64)
        if self.do_normalize:
            std = torch.tensor(self.image_std, dtype=torch.float64)
            scale, shift = scale / std, -torch.tensor(self.image_mean, dtype=torch.float64) / std
        if not self.do_rescale and not self.do_normalize:
            return x
        scale = scale.to(device=x.device, dtype=torch.float32)[:, None, None]
        shift = shift.to(device=x.device, dtype=torch.float32)[:, None, None]
        return x.mul_(scale).add_(shift)

    def process_video(
        self, video: Any, num_frames: int | None = None, frames_over_limit: str | None = None
    ) -> torch.Tensor:
        """One video ((F, 3, H, W) tensor or list of (3, H, W) frames) -> (F', 3, h, w) float32, F' <= num_frames."""
        video = self._select_frames(
            video, num_frames or self.num_frames, frames_over_limit or self.frames_over_limit, "video"
        )
        if isinstance(video, list):  # frames of different sizes
            frames = [self.geometry(f[None]) for f in video]
            if len({tuple(f.shape) for f in frames}) > 1:
                raise ValueError(
                    f"frames of one video give different output sizes {sorted({tuple(f.shape[-2:]) for f in frames})}"
                    "; enable do_center_crop or pass frames of one size"
                )
            return self.to_values(torch.cat(frames))
        return self.to_values(self.geometry(video))

    # ------------------------------------------------------------------- call
    def __call__(self, videos: Any, **kwargs: Any) -> BatchFeature:
        """Same as :meth:`preprocess`."""
        return self.preprocess(videos, **kwargs)

    def preprocess(
        self,
        videos: Any,
        do_resize: bool | None = None,
        size: dict[str, int] | None = None,
        patch_size: Sequence[int] | None = None,
        num_frames: int | None = None,
        resample: Any = None,
        do_center_crop: bool | None = None,
        crop_size: dict[str, int] | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: float | Sequence[float] | None = None,
        image_std: float | Sequence[float] | None = None,
        is_mixed: bool = False,
        return_tensors: ReturnTensors = None,
        data_format: str | None = "channels_first",
        input_data_format: Literal["channels_first", "channels_last"] | None = None,
        frames_over_limit: Literal["subsample", "error"] | None = None,
        mask_pixel: bool = False,
    ) -> BatchFeature:
        """Images/videos -> ``pixel_values`` / ``pixel_mask``, with per-call overrides of the settings.

        ``do_resize`` ... ``image_std`` override the processor's settings for this call (a scalar mean / std
        applies to every channel); ``num_frames`` and ``frames_over_limit`` too. ``data_format`` must be
        "channels_first" (the models' layout). ``mask_pixel`` is accepted with no effect, as in the port (MAE
        masking is done by the model's ``forward``), and noted once. The other arguments and the outputs are those
        of :meth:`process`.

        Raises:
            ValueError: a bad override (as the constructor would raise), ``data_format="channels_last"``, or the
                errors of :meth:`process`.
        """
        if mask_pixel:
            note_no_effect(type(self).__name__, "mask_pixel", "masking is done by the model: forward(mask_pixel=True)")
        if data_format not in (None, "channels_first"):
            raise ValueError(f"data_format must be 'channels_first' (the models' layout), got {data_format!r}")
        overrides = {key: value for key, value in dict(
            do_resize=do_resize, size=size, patch_size=patch_size, resample=resample, do_center_crop=do_center_crop,
            crop_size=crop_size, do_rescale=do_rescale, rescale_factor=rescale_factor, do_normalize=do_normalize,
            image_mean=image_mean, image_std=image_std).items() if value is not None}  # fmt: skip
        processor = self
        if overrides:
            settings = {key: getattr(self, key) for key in self.config_keys}
            processor = type(self)(**{**settings, **overrides})
        return processor.process(videos, return_tensors=return_tensors, is_mixed=is_mixed,
                                 input_data_format=input_data_format, num_frames=num_frames,
                                 frames_over_limit=frames_over_limit)

    def process(
        self,
        videos: Any,
        *,
        return_tensors: ReturnTensors = None,
        is_mixed: bool = False,
        input_data_format: Literal["channels_first", "channels_last"] | None = None,
        num_frames: int | None = None,
        frames_over_limit: Literal["subsample", "error"] | None = None,
    ) -> BatchFeature:
        """Images/videos -> ``BatchFeature(pixel_values (B, F, 3, h, w) float32, pixel_mask (B, F * patches) int64)``.

        Args:
            videos: see the accepted forms in the error message: an image (PIL, numpy, torch; (H, W), (H, W, C) or
                (C, H, W)) is a 1-frame video; a list of images or a 4-D array (F, H, W, C) / (F, C, H, W) is one
                video; a list of videos or a 5-D array is a batch. Values 0-255 (uint8 preferred).
            return_tensors: ``"pt"`` (torch, on the input's device), ``"np"`` or ``None`` (numpy).
            is_mixed: name the outputs ``pixel_values_mixed`` / ``pixel_mask_mixed`` (VAM negatives).
            input_data_format: force the channel layout when it cannot be inferred (e.g. 3 x H x 3 frames).
            num_frames: override ``self.num_frames`` for this call.
            frames_over_limit: override ``self.frames_over_limit`` for this call.

        Returns:
            ``pixel_values`` (B, F_max, 3, h, w) float32, videos with fewer frames padded with ``padding_value``;
            ``pixel_mask`` (B, F_max * h/16 * w/16) int64, 1 for the patches of real frames.

        Raises:
            ValueError: unaccepted shapes or channel counts (the message lists the accepted forms), too many frames
                with ``frames_over_limit="error"``, frames of one batch with different output sizes.
        """
        layout = {"channels_first": "first", "channels_last": "last", None: None}.get(input_data_format, "bad")
        if layout == "bad":
            raise ValueError(
                f"input_data_format must be 'channels_first' or 'channels_last', got {input_data_format!r}"
            )
        limit = self.num_frames if num_frames is None else int(num_frames)
        policy = frames_over_limit or self.frames_over_limit
        if policy not in ("subsample", "error"):
            raise ValueError(f"frames_over_limit must be 'subsample' or 'error', got {policy!r}")
        processed = []
        for i, video in enumerate(self._videos(videos, layout)):
            video = self._select_frames(video, limit, policy, f"videos[{i}]")
            processed.append(self.process_video(video, num_frames=limit, frames_over_limit=policy))
        sizes = {tuple(v.shape[-2:]) for v in processed}
        if len(sizes) > 1:
            raise ValueError(f"videos of one batch give different frame sizes {sorted(sizes)}; enable do_center_crop")
        height, width = sizes.pop()
        per_frame = (height // self.patch_size[0]) * (width // self.patch_size[1])
        max_frames = max(v.shape[0] for v in processed)
        device = processed[0].device
        values = torch.full((len(processed), max_frames, 3, height, width), self.padding_value, device=device)
        mask = torch.zeros(len(processed), max_frames * per_frame, dtype=torch.int64, device=device)
        for i, video in enumerate(processed):
            values[i, : video.shape[0]] = video
            mask[i, : video.shape[0] * per_frame] = 1
        if self.mask_from_values:  # a patch whose values are all -1 (pure black) is masked too
            ph, pw = self.patch_size
            grid = values[..., : height // ph * ph, : width // pw * pw].reshape(
                len(processed), max_frames, 3, height // ph, ph, width // pw, pw
            )
            black = (grid == -1.0).permute(0, 1, 3, 5, 2, 4, 6).flatten(4).all(-1).reshape(len(processed), -1)
            mask = mask * (~black).to(mask.dtype)
        suffix = "_mixed" if is_mixed else ""
        return BatchFeature(
            {f"pixel_values{suffix}": values, f"pixel_mask{suffix}": mask}, tensor_type=return_tensors or "np"
        )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["resample"] = _CODE_OF[self.resample]  # PIL code, as the HF port stores it
        return out


def _channels_first_axis(shape: Sequence[int], layout: str | None, what: str) -> str:
    """'first' or 'last' for an image shape (C, H, W) / (H, W, C)."""
    if layout is not None:
        return layout
    first, last = shape[0] in (1, 3, 4), shape[-1] in (1, 3, 4)
    if last and not first:
        return "last"
    if first and not last:
        return "first"
    if first and last:
        # e.g. (3, H, 3): the HF port assumes channels first; so do we (override with input_data_format)
        return "first"
    raise ValueError(f"{what}: cannot find the channel axis of shape {tuple(shape)} (1, 3 or 4 channels); {_ACCEPTED}")


def _resize(x: torch.Tensor, size: tuple[int, int], interpolation: InterpolationMode, antialias: bool) -> torch.Tensor:
    """Resize a batch of frames (F, 3, H, W); uint8 stays uint8 (rounded, clamped), as PIL / torchvision do."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if not x.is_floating_point() and x.dtype != torch.uint8:
        x = x.to(torch.float32)
    x = x.contiguous()
    return TF.resize(x, list(size), interpolation=interpolation, antialias=antialias)


def _resize_like_torchvision_v1(
    x: torch.Tensor, size: tuple[int, int], interpolation: InterpolationMode
) -> torch.Tensor:
    """Resize without antialiasing as torchvision <= 0.16 did on uint8 tensors (the original release): interpolate in
    float, clamp to [0, 255], round, back to uint8. (``transforms.v2`` uses another uint8 bicubic kernel: up to 27
    levels apart on noise.)"""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    dtype = x.dtype
    y = TF.resize(x.to(torch.float32), list(size), interpolation=interpolation, antialias=False)
    if dtype == torch.uint8:
        y = y.clamp(0, 255).round().to(torch.uint8)
    return y
