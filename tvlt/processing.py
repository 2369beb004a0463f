"""TvltProcessor: one call that prepares video frames and audio for the TVLT models.

Wraps a :class:`~tvlt.TvltImageProcessor` and a :class:`~tvlt.TvltFeatureExtractor` and returns the inputs the models
take: ``pixel_values``, ``pixel_mask``, ``audio_values``, ``audio_mask`` and, for video-audio matching negatives,
``pixel_values_mixed`` / ``pixel_mask_mixed``. The port's arguments are accepted with their meaning: per-call
settings go to the sub-processor that has them; ``mask_audio`` / ``mask_pixel`` (and the feature extractor's
``resample``) have no effect, in the port either (masking for MAE happens inside the model: ``mask_pixel=`` /
``mask_audio=`` of its ``forward``), and say so once. Names neither sub-processor knows (typos) raise ``TypeError``
where the port would ignore them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from tvlt.feature_extraction import TvltFeatureExtractor
from tvlt.image_processing import TvltImageProcessor
from tvlt.processing_utils import BatchFeature, ReturnTensors, note_no_effect, read_config_json, write_config_json

# keyword arguments of TvltProcessor.__call__ forwarded to each sub-processor (``resample`` is the image
# processor's interpolation, as in the port, where the same kwargs reach both)
_IMAGE_KWARGS = frozenset(TvltImageProcessor._valid_processor_keys) - {"videos", "is_mixed", "return_tensors",
                                                                        "mask_pixel"}
_AUDIO_KWARGS = frozenset({"return_attention_mask", "channels"})


class TvltProcessor:
    """Image processor + feature extractor for TVLT.

    Args:
        image_processor: a :class:`TvltImageProcessor`.
        feature_extractor: a :class:`TvltFeatureExtractor`.

    Raises:
        TypeError: either argument of the wrong type.
        ValueError: the two were built in different modes.
    """

    attributes: ClassVar[list[str]] = ["image_processor", "feature_extractor"]
    model_input_names: ClassVar[list[str]] = [
        "audio_values",
        "audio_mask",
        "pixel_values",
        "pixel_mask",
        "pixel_values_mixed",
        "pixel_mask_mixed",
    ]

    def __init__(self, image_processor: TvltImageProcessor, feature_extractor: TvltFeatureExtractor) -> None:
        if not isinstance(image_processor, TvltImageProcessor):
            raise TypeError(f"image_processor must be a TvltImageProcessor, got {type(image_processor).__name__}")
        if not isinstance(feature_extractor, TvltFeatureExtractor):
            raise TypeError(f"feature_extractor must be a TvltFeatureExtractor, got {type(feature_extractor).__name__}")
        if image_processor.mode != feature_extractor.mode:
            raise ValueError(
                f"image_processor.mode={image_processor.mode!r} but feature_extractor.mode={feature_extractor.mode!r};"
                " build both in the same mode (TvltProcessor.create(mode=...))"
            )
        self.image_processor = image_processor
        self.feature_extractor = feature_extractor

    @classmethod
    def create(cls, mode: Literal["hf", "original"] = "hf", **kwargs: Any) -> TvltProcessor:
        """Both sub-processors with their defaults for ``mode``; ``kwargs`` go to whichever accepts them.

        Raises:
            ValueError: a keyword neither sub-processor accepts.
        """
        image_kwargs = {k: v for k, v in kwargs.items() if k in TvltImageProcessor.config_keys}
        audio_kwargs = {k: v for k, v in kwargs.items() if k in TvltFeatureExtractor.config_keys}
        unknown = set(kwargs) - set(image_kwargs) - set(audio_kwargs)
        if unknown:
            raise ValueError(f"unknown processor setting(s) {sorted(unknown)}")
        return cls(TvltImageProcessor(mode=mode, **image_kwargs), TvltFeatureExtractor(mode=mode, **audio_kwargs))

    @property
    def mode(self) -> str:
        return self.feature_extractor.mode

    def __call__(
        self,
        images: Any = None,
        audio: Any = None,
        images_mixed: Any = None,
        sampling_rate: int | None = None,
        mask_audio: bool = False,
        mask_pixel: bool = False,
        *,
        return_tensors: ReturnTensors = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Prepare ``images`` (videos) and/or ``audio``; see the sub-processors for the accepted forms.

        Args:
            images: images/videos for ``pixel_values`` / ``pixel_mask``.
            audio: waveform(s) for ``audio_values`` / ``audio_mask``.
            images_mixed: images/videos for ``pixel_values_mixed`` / ``pixel_mask_mixed`` (VAM negatives).
            sampling_rate: rate of ``audio`` in Hz (resampled to the feature extractor's rate when different).
            mask_audio, mask_pixel: the port's arguments, accepted with no effect (none in the port either); noted
                once.
            return_tensors: ``"pt"``, ``"np"`` or ``None`` (numpy), for every output.
            **kwargs: the image processor's per-call settings (``do_normalize``, ``image_mean``, ``num_frames``,
                ``input_data_format``, ...: see :meth:`TvltImageProcessor.preprocess`); ``return_attention_mask``,
                ``channels`` (feature extractor).

        Returns:
            BatchFeature with keys in the HF port's order: audio_values, audio_mask, pixel_values, pixel_mask,
            pixel_values_mixed, pixel_mask_mixed (those whose input was given).

        Raises:
            ValueError: no ``images``, ``audio`` nor ``images_mixed`` given.
            TypeError: an argument no sub-processor knows (named, with the accepted ones).
        """
        unknown = set(kwargs) - _IMAGE_KWARGS - _AUDIO_KWARGS
        if unknown:
            accepted = sorted(_IMAGE_KWARGS | _AUDIO_KWARGS | {"images", "audio", "images_mixed", "sampling_rate",
                                                              "mask_audio", "mask_pixel", "return_tensors"})  # fmt: skip
            raise TypeError(f"TvltProcessor got unknown argument(s) {sorted(unknown)}; accepted: {accepted}")
        if images is None and audio is None and images_mixed is None:
            raise ValueError("pass at least one of images, audio or images_mixed")
        if audio is None and sampling_rate is not None:
            raise TypeError("sampling_rate was given without audio")
        image_kwargs = {k: v for k, v in kwargs.items() if k in _IMAGE_KWARGS}
        audio_kwargs = {k: v for k, v in kwargs.items() if k in _AUDIO_KWARGS}
        if (images is None and images_mixed is None) and image_kwargs:
            raise TypeError(f"image argument(s) {sorted(image_kwargs)} given without images")
        if audio is None and audio_kwargs:
            raise TypeError(f"audio argument(s) {sorted(audio_kwargs)} given without audio")
        out: dict[str, Any] = {}
        if audio is not None:
            out.update(
                self.feature_extractor(
                    audio, sampling_rate=sampling_rate, return_tensors=return_tensors, mask_audio=mask_audio,
                    **audio_kwargs,
                )
            )
        elif mask_audio:
            note_no_effect("TvltProcessor", "mask_audio", "masking is done by the model: forward(mask_audio=True)")
        if images is not None:
            out.update(self.image_processor(images, return_tensors=return_tensors, mask_pixel=mask_pixel,
                                            **image_kwargs))
        elif mask_pixel:
            note_no_effect("TvltProcessor", "mask_pixel", "masking is done by the model: forward(mask_pixel=True)")
        if images_mixed is not None:
            out.update(self.image_processor(images_mixed, is_mixed=True, return_tensors=return_tensors, **image_kwargs))
        return BatchFeature(out)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "processor_class": type(self).__name__,
            "image_processor": self.image_processor.to_dict(),
            "feature_extractor": self.feature_extractor.to_dict(),
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[Path]:
        """Write both sub-processors' settings to ``save_directory/preprocessor_config.json`` (one JSON object with
        an ``image_processor`` and a ``feature_extractor`` section); returns the list of files written, as the
        port."""
        return [write_config_json(save_directory, self.to_dict())]

    @classmethod
    def from_pretrained(cls, pretrained_path: str | os.PathLike, **kwargs: Any) -> TvltProcessor:
        """Load from a directory (or file) written by :meth:`save_pretrained` or by the Hugging Face port, local or
        a Hugging Face Hub name (:func:`tvlt.hub.resolve`; its options ``cache_dir``, ``revision``, ``token``,
        ``local_files_only``, ``force_download`` go to the Hub client).

        The HF port's ``TvltProcessor.save_pretrained`` writes one flat file holding the feature extractor's keys
        only (the image processor's are overwritten); settings missing from the file take their defaults. A
        ``mode`` key, if present, applies to both. ``kwargs`` override settings of whichever sub-processor has them.

        Raises:
            FileNotFoundError: no ``preprocessor_config.json``.
            ValueError: keys neither sub-processor knows (named in the message with the file).
        """
        from tvlt.hub import HUB_OPTIONS, resolve

        hub = {key: kwargs.pop(key) for key in HUB_OPTIONS if key in kwargs}
        config, file = read_config_json(resolve(pretrained_path, **hub))
        return cls.from_dict(config, source=str(file), **kwargs)

    @classmethod
    def from_dict(cls, config: dict[str, Any], source: str = "config", **kwargs: Any) -> TvltProcessor:
        """Build from the content of a ``preprocessor_config.json`` (:meth:`to_dict`, or the Hugging Face port's
        flat form; see :meth:`from_pretrained`); ``kwargs`` override settings of whichever sub-processor has them.

        Raises:
            ValueError: keys neither sub-processor knows (named in the message with ``source``).
        """
        nested = "image_processor" in config or "feature_extractor" in config
        if nested:
            extra = set(config) - {"image_processor", "feature_extractor", "processor_class"}
            if extra:
                raise ValueError(f"{source}: unknown top-level key(s) {sorted(extra)}")
        image_over = {k: v for k, v in kwargs.items() if k in TvltImageProcessor.config_keys}
        audio_over = {k: v for k, v in kwargs.items() if k in TvltFeatureExtractor.config_keys}
        unknown = set(kwargs) - set(image_over) - set(audio_over)
        if unknown:
            raise ValueError(f"unknown processor setting(s) {sorted(unknown)}")
        mode = config.get("mode", "hf")
        if not nested and "feature_extractor_type" in config and "image_processor_type" not in config:
            # the HF port's processor directory: the feature extractor's file only
            image_processor = TvltImageProcessor(**{"mode": mode, **image_over})
        else:
            image_processor = TvltImageProcessor.from_dict(config, source=source, **image_over)
        if not nested and "image_processor_type" in config and "feature_extractor_type" not in config:
            feature_extractor = TvltFeatureExtractor(**{"mode": mode, **audio_over})
        else:
            feature_extractor = TvltFeatureExtractor.from_dict(config, source=source, **audio_over)
        return cls(image_processor, feature_extractor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(\n  {self.image_processor!r},\n  {self.feature_extractor!r}\n)"
