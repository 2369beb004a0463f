"""TvltFeatureExtractor: waveform -> normalised log-mel spectrogram patches (torchaudio, batched, CPU or GPU).

Two modes:

``mode="hf"`` (default) reproduces the Hugging Face port (transformers <= 4.40.2, ``TvltFeatureExtractor``):
periodic Hann window of ``n_fft`` = 2048 samples, hop ``sampling_rate // 86`` = 512, centre padding by reflection,
power spectrum, 128 Slaney mel filters (Slaney mel scale, area-normalised) from 0 Hz to Nyquist (the HF port
hard-codes 22050 Hz: the same at the default 44.1 kHz), ``power_to_db``
with ``amin`` 1e-10, ``ref`` 1.0 and ``top_db`` 80 (the 80 dB floor taken over the whole clip, last STFT frame
included), the last STFT frame dropped (``N // 512`` frames), values mapped to [-1, 1] by
``clip((dB - 20) / 40, -2, 0) + 1`` (>= 20 dB -> 1, <= -60 dB -> -1), at most ``spectrogram_length`` = 2048 frames,
time padded with ``padding_value`` = 0.0 to a multiple of the 16-frame patch, ``audio_mask`` from true lengths
(``ceil(T / 16) * 8`` ones per clip, time-major patch order).

``mode="original"`` reproduces the original TVLT release (``rawvideo_utils.preprocess_audio`` with librosa 0.9.2),
with which the released checkpoints were trained. Its differences from the HF port:

1. the clip mean is subtracted first (DC removal);
2. centre padding with zeros instead of reflection;
3. the last STFT frame is kept (``1 + N // 512`` frames);
4. time is padded with -1.0 by ``16 - T % 16`` frames, i.e. always at least one frame, so a whole extra (masked)
   patch of -1 is added when ``T`` is already a multiple of 16; batches are padded with -1.0 (``padding_value``);
5. at most ``spectrogram_length`` = 1024 frames (about 11.9 s), applied after that padding.

In both modes the mask is length-based by default. The original release derives its mask from values instead,
masking every 16x16 patch that is entirely -1, which also masks silent or band-limited patches of real audio;
``mask_from_values=True`` adds that rule.

Beyond both references: other sampling rates are resampled (:func:`tvlt.audio.resample`) instead of rejected;
one multi-channel clip, declared with ``channels="first"`` (C, N) or ``channels="last"`` (N, C), is averaged to
mono; integer PCM is scaled to [-1, 1]; NaN/inf samples and unusable shapes raise ``ValueError``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torchaudio.functional as AF

from tvlt.audio import check_waveform, resample
from tvlt.processing_utils import BatchFeature, ProcessorConfigMixin, ReturnTensors, note_no_effect, pad_sequences

Mode = Literal["hf", "original"]
_MODES = ("hf", "original")

# mode -> (spectrogram_length, padding_value): HF port defaults vs original release (audio_size 1024, -1 padding)
_MODE_DEFAULTS: dict[str, tuple[int, float]] = {"hf": (2048, 0.0), "original": (1024, -1.0)}

_ACCEPTED_SHAPES = (
    "accepted audio: a 1-D waveform (N,); a 2-D array (B, N) with N > B = a batch of mono clips; a list of 1-D waveforms; "
    "or one multi-channel clip (C, N) / (N, C) declared with channels='first' / 'last'"
)

AMIN = 1e-10  # power floor before log10 (librosa / HF power_to_db)
TOP_DB = 80.0  # dynamic range kept below the clip's maximum, in dB
DB_OFFSET, DB_SCALE = 20.0, 40.0  # (dB - 20) / 40, clipped to [-2, 0], plus 1 -> [-1, 1]


def _int_pcm_scale(dtype: np.dtype) -> tuple[float, float]:
    """(offset, scale) mapping integer PCM of ``dtype`` to [-1, 1]: x -> (x - offset) / scale."""
    info = np.iinfo(dtype)
    if info.min == 0:  # unsigned, e.g. 8-bit WAV: silence at mid-scale
        mid = (int(info.max) + 1) / 2
        return mid, mid
    return 0.0, float(-int(info.min))


def _as_float_tensor(x: Any, what: str) -> torch.Tensor:
    """numpy / torch / list of numbers -> floating tensor; integer PCM scaled to [-1, 1]."""
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bool or x.is_complex():
            raise ValueError(f"{what}: audio must be real numbers, got dtype {x.dtype}")
        if not x.is_floating_point():
            offset, scale = _int_pcm_scale(np.dtype(str(x.dtype).removeprefix("torch.")))
            return (x.to(torch.float32) - offset) / scale
        return x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float32)
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or np.iscomplexobj(arr) or arr.dtype == object:
        raise ValueError(f"{what}: audio must be real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.integer):
        offset, scale = _int_pcm_scale(arr.dtype)
        return torch.from_numpy((arr.astype(np.float32) - offset) / scale)
    if arr.ndim == 0:
        raise ValueError(f"{what}: got a single number; {_ACCEPTED_SHAPES}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _reflect_indices(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of ``x`` padded by ``pad`` on each side in numpy's "reflect" mode (edge not repeated), valid for
    any ``pad`` (repeated reflection when ``pad >= n``), so clips shorter than the window work as in the HF port."""
    idx = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= n, period - idx, idx)


class TvltFeatureExtractor(ProcessorConfigMixin):
    """Audio feature extractor for TVLT: waveforms -> ``audio_values`` (B, 1, T, 128) in [-1, 1] + ``audio_mask``.

    Args:
        spectrogram_length: most spectrogram frames kept (time axis); default 2048 (hf) / 1024 (original).
        num_channels: channels of ``audio_values``; must be 1 (TVLT audio patches are 1 x 16 x 16).
        patch_size: (time, frequency) patch size, default (16, 16).
        feature_size: number of mel bins, default 128.
        sampling_rate: rate the spectrogram is computed at, in Hz; inputs at other rates are resampled to it.
        hop_length_to_sampling_rate: hop length is ``sampling_rate // hop_length_to_sampling_rate`` (512 at 44.1 kHz).
        n_fft: FFT size and Hann window length in samples, default 2048.
        padding_value: value written in padded time frames; default 0.0 (hf) / -1.0 (original).
        return_attention_mask: whether ``audio_mask`` is returned by default.
        mode: ``"hf"`` (Hugging Face port) or ``"original"`` (original TVLT release); see the module docstring.
        stft_dtype: ``"float32"`` (default) or ``"float64"`` (as the HF port, which promotes the signal to float64).
            Measured against transformers 4.40.2: max |diff| of audio_values 1.0e-5 with either (random and real
            audio), well inside the 1e-4 parity tolerance; float32 moves half the bytes through the STFT and mel
            matmul.
        mask_from_values: also mask every 16 x 16 patch whose values are all -1 (silence below -60 dB, band-limited
            high bins, -1 padding), as the original release's ``get_patch_mask`` does. Default False (length-based
            mask only).
        **kwargs: other keys are kept as attributes and written by ``save_pretrained`` (the keyword policy of
            :mod:`tvlt.processing_utils`): ``num_audio_channels`` and ``chunk_length`` are accepted with a note that
            they have no effect; anything else is logged once by name. ``hop_length`` and ``padding_side`` must
            equal the derived hop and "right" (the port would silently use those).

    Attributes used by collate functions: ``padding_value``, ``patch_size``, ``freq_len`` (= 128 / 16 = 8 frequency
    patches per time patch), ``hop_length``.

    Raises:
        ValueError: unknown ``mode``, ``num_channels != 1``, a ``feature_size`` / ``spectrogram_length`` that is not
            a multiple of the patch size, or a ``hop_length`` / ``padding_side`` that contradicts the derived one.
    """

    model_input_names: ClassVar[list[str]] = ["audio_values", "audio_mask"]
    config_keys = (
        "spectrogram_length",
        "num_channels",
        "patch_size",
        "feature_size",
        "sampling_rate",
        "hop_length_to_sampling_rate",
        "n_fft",
        "padding_value",
        "return_attention_mask",
        "mode",
        "stft_dtype",
        "mask_from_values",
    )
    derived_keys = frozenset({"hop_length", "freq_len", "padding_side"})
    foreign_keys = frozenset(
        {
            "do_resize", "size", "num_frames", "resample", "do_center_crop", "crop_size", "do_rescale",
            "rescale_factor", "do_normalize", "image_mean", "image_std", "frames_over_limit",
            "dark_border_threshold", "init_mask_generator",
        }
    )  # fmt: skip
    section = "feature_extractor"
    padding_side = "right"
    no_effect_keys: ClassVar[dict[str, str]] = {
        "num_audio_channels": "the port stores it and uses num_channels",
        "chunk_length": "the port stores it and never reads it",
    }

    def __init__(
        self,
        spectrogram_length: int | None = None,
        num_channels: int = 1,
        patch_size: Sequence[int] = (16, 16),
        feature_size: int = 128,
        sampling_rate: int = 44100,
        hop_length_to_sampling_rate: int = 86,
        n_fft: int = 2048,
        padding_value: float | None = None,
        return_attention_mask: bool = True,
        mode: Mode = "hf",
        stft_dtype: Literal["float64", "float32"] = "float32",
        mask_from_values: bool = False,
        **kwargs: Any,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        default_length, default_padding = _MODE_DEFAULTS[mode]
        self.mode = mode
        self.spectrogram_length = int(spectrogram_length if spectrogram_length is not None else default_length)
        self.padding_value = float(padding_value if padding_value is not None else default_padding)
        self.num_channels = int(num_channels)
        self.patch_size = [int(p) for p in patch_size]
        self.feature_size = int(feature_size)
        self.sampling_rate = int(sampling_rate)
        self.hop_length_to_sampling_rate = int(hop_length_to_sampling_rate)
        self.n_fft = int(n_fft)
        self.return_attention_mask = bool(return_attention_mask)
        if stft_dtype not in ("float64", "float32"):
            raise ValueError(f"stft_dtype must be 'float64' or 'float32', got {stft_dtype!r}")
        self.stft_dtype = stft_dtype
        self.mask_from_values = bool(mask_from_values)
        if self.num_channels != 1:
            raise ValueError(f"num_channels must be 1 (TVLT spectrograms are mono), got {num_channels}")
        if len(self.patch_size) != 2 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be two positive ints (time, frequency), got {patch_size}")
        if self.feature_size % self.patch_size[1]:
            raise ValueError(f"feature_size {feature_size} is not a multiple of the patch width {self.patch_size[1]}")
        if self.spectrogram_length % self.patch_size[0]:
            raise ValueError(
                f"spectrogram_length {self.spectrogram_length} is not a multiple of the patch height "
                f"{self.patch_size[0]}"
            )
        self.hop_length = self.sampling_rate // self.hop_length_to_sampling_rate
        hop_length = kwargs.pop("hop_length", self.hop_length)
        if hop_length != self.hop_length:
            raise ValueError(
                f"hop_length={hop_length} contradicts sampling_rate // hop_length_to_sampling_rate = {self.hop_length}"
                " (the hop is derived; set hop_length_to_sampling_rate)"
            )
        if kwargs.pop("padding_side", "right") != "right":
            raise ValueError("padding_side must be 'right' (spectrograms are padded at the end, as in the port)")
        kwargs.pop("freq_len", None)
        self._store_extra_settings(kwargs)
        self.freq_len = self.feature_size // self.patch_size[1]
        self._filters: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._windows: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    # ------------------------------------------------------------------ inputs
    def _clips(self, raw_speech: Any, channels: str | None) -> list[torch.Tensor]:
        """Any accepted input -> list of 1-D floating tensors (mono clips)."""
        if channels not in (None, "first", "last"):
            raise ValueError(f"channels must be None, 'first' (C, N) or 'last' (N, C), got {channels!r}")
        if raw_speech is None:
            raise ValueError(f"no audio given; {_ACCEPTED_SHAPES}")
        if isinstance(raw_speech, (list, tuple)):
            if len(raw_speech) == 0:
                raise ValueError(f"empty list of audio; {_ACCEPTED_SHAPES}")
            if not isinstance(raw_speech[0], (np.ndarray, torch.Tensor, list, tuple)):
                raw_speech = np.asarray(raw_speech)  # a plain list of numbers is one clip (as in the HF port)
            else:
                clips = [self._one_clip(x, channels, f"audio[{i}]") for i, x in enumerate(raw_speech)]
                return clips
        x = _as_float_tensor(raw_speech, "audio")
        if x.ndim == 2 and channels is None:
            if x.shape[1] <= x.shape[0]:  # rows no longer than their count: (N, C) from soundfile, any C
                raise ValueError(
                    f"audio of shape {tuple(x.shape)} is ambiguous: a batch of {x.shape[0]} clips of "
                    f"{x.shape[1]} samples, or one clip of {x.shape[1]} channels? Pass channels='last' (N, C) or "
                    f"'first' (C, N) for one multi-channel clip, or a list of 1-D waveforms for a batch. "
                    f"{_ACCEPTED_SHAPES}"
                )
            return [self._checked(row, f"audio[{i}]") for i, row in enumerate(x)]
        return [self._one_clip(x, channels, "audio")]

    def _one_clip(self, x: Any, channels: str | None, what: str) -> torch.Tensor:
        x = _as_float_tensor(x, what)
        if x.ndim == 2 and channels is not None:
            x = x.mean(dim=0 if channels == "first" else 1)
        elif x.ndim != 1:
            hint = " (pass channels='first' or 'last' for one multi-channel clip)" if x.ndim == 2 else ""
            raise ValueError(f"{what}: got an array of shape {tuple(x.shape)}{hint}; {_ACCEPTED_SHAPES}")
        return self._checked(x, what)

    @staticmethod
    def _checked(x: torch.Tensor, what: str) -> torch.Tensor:
        check_waveform(x, what)
        return x

    def _resample(self, clips: list[torch.Tensor], sampling_rate: int) -> list[torch.Tensor]:
        if sampling_rate == self.sampling_rate:
            return clips
        return [resample(clip, int(sampling_rate), self.sampling_rate) for clip in clips]

    # ------------------------------------------------------------ spectrogram
    def mel_filters(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Slaney-scale, Slaney-normalised mel filter bank (n_fft // 2 + 1, feature_size), 0 Hz to Nyquist."""
        key = (device, dtype)
        if key not in self._filters:
            bank = AF.melscale_fbanks(
                n_freqs=self.n_fft // 2 + 1,
                f_min=0.0,
                f_max=self.sampling_rate / 2,
                n_mels=self.feature_size,
                sample_rate=self.sampling_rate,
                norm="slaney",
                mel_scale="slaney",
            )
            self._filters[key] = bank.to(device=device, dtype=dtype)
        return self._filters[key]

    def _window(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (device, dtype)
        if key not in self._windows:
            self._windows[key] = torch.hann_window(self.n_fft, periodic=True, dtype=dtype, device=device)
        return self._windows[key]

    def log_mel(self, clips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Mono clips at ``sampling_rate`` -> normalised log-mel spectrograms, each (T_i, feature_size) float32 in
        [-1, 1], before any truncation or padding. On GPU one batched STFT for all clips; on CPU clip by clip, so
        that one clip's STFT intermediates stay in cache (the BENCHMARKS.md preprocess row "batch of 8 x 10 s clips"
        measures it)."""
        if len(clips) > 1 and clips[0].device.type == "cpu":
            return [spec for clip in clips for spec in self._log_mel_batch([clip])]
        return self._log_mel_batch(clips)

    def _log_mel_batch(self, clips: list[torch.Tensor]) -> list[torch.Tensor]:
        device = clips[0].device
        dtype = torch.float64 if self.stft_dtype == "float64" else torch.float32
        half = self.n_fft // 2
        lengths = [int(c.numel()) for c in clips]
        padded = torch.zeros(len(clips), max(lengths) + 2 * half, dtype=dtype, device=device)
        for i, clip in enumerate(clips):
            clip = clip.to(device=device, dtype=dtype)
            if self.mode == "original":
                padded[i, half : half + lengths[i]] = clip - clip.mean()  # DC removal, zero centre padding
            elif lengths[i] > half:
                padded[i, : lengths[i] + 2 * half] = torch.nn.functional.pad(clip[None], (half, half), "reflect")[0]
            else:  # shorter than half a window: numpy-style repeated reflection
                padded[i, : lengths[i] + 2 * half] = clip[_reflect_indices(lengths[i], half, device)]
        spec = torch.stft(
            padded,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self._window(device, dtype),
            center=False,
            return_complex=True,
        )  # (B, n_fft // 2 + 1, frames)
        # |X|^2 as re*re + im*im: bit-identical to a sum over the size-2 last dim, without a strided reduction kernel
        re_im = torch.view_as_real(spec)
        power = re_im[..., 0] * re_im[..., 0] + re_im[..., 1] * re_im[..., 1]
        mel = torch.matmul(self.mel_filters(device, dtype).T, power)  # (B, n_mels, frames)
        db = 10.0 * torch.log10(mel.clamp_min(AMIN))
        frames = [1 + n // self.hop_length for n in lengths]  # STFT frames of each clip (last one included)
        valid = torch.arange(db.shape[-1], device=device)[None, :] < torch.tensor(frames, device=device)[:, None]
        peak = db.masked_fill(~valid[:, None, :], -math.inf).amax(dim=(1, 2), keepdim=True)
        db = torch.maximum(db, peak - TOP_DB)
        values = ((db - DB_OFFSET) / DB_SCALE).clamp(-2.0, 0.0) + 1.0
        keep = frames if self.mode == "original" else [f - 1 for f in frames]  # the HF port drops the last frame
        return [values[i, :, : keep[i]].T.to(torch.float32) for i in range(len(clips))]

    # ------------------------------------------------------------------- call
    def __call__(
        self,
        raw_speech: Any,
        *,
        sampling_rate: int | None = None,
        return_tensors: ReturnTensors = None,
        return_attention_mask: bool | None = None,
        channels: Literal["first", "last"] | None = None,
        resample: bool = False,
        mask_audio: bool = False,
    ) -> BatchFeature:
        """Waveform(s) -> ``BatchFeature(audio_values (B, 1, T, feature_size) float32, audio_mask (B, T/16 * 8))``.

        Args:
            raw_speech: a 1-D waveform (N,), a (B, N) array with N > B or a list of 1-D waveforms (a batch of mono clips), or one
                multi-channel clip (C, N) / (N, C) when ``channels`` is given; numpy, torch (any device) or a list of
                numbers. Floats are taken as [-1, 1] audio; integer PCM (int16, int32, uint8, ...) is scaled to it.
            sampling_rate: rate of ``raw_speech`` in Hz. Other rates than ``self.sampling_rate`` are resampled. If
                omitted, ``self.sampling_rate`` is assumed and a warning is issued (as in the HF port).
            return_tensors: ``"pt"`` (torch, on the input's device), ``"np"`` or ``None`` (numpy).
            return_attention_mask: include ``audio_mask`` (default: ``self.return_attention_mask``).
            channels: ``"first"`` / ``"last"``: ``raw_speech`` is ONE clip laid out (C, N) / (N, C), averaged to mono
                (or, for a list, each item is such a clip).
            resample, mask_audio: the port's arguments, accepted with no effect (none in the port either: other
                rates are always resampled here, and MAE masking is done by the model's ``forward``); noted once.

        Returns:
            ``audio_values`` (B, 1, T, feature_size) float32 with T a multiple of 16 (padded with
            ``padding_value``); ``audio_mask`` (B, T/16 * freq_len) float32, 1 for each patch holding real frames
            (a partly filled last time patch counts), ordered time-major (index = t * freq_len + f).

        Raises:
            ValueError: unaccepted shapes (the message lists the accepted ones), empty or non-finite audio, a
                non-real dtype, or audio too short for one spectrogram frame (hf mode: < hop_length samples).
        """
        if resample:
            note_no_effect(type(self).__name__, "resample", "other sampling rates are always resampled")
        if mask_audio:
            note_no_effect(type(self).__name__, "mask_audio", "masking is done by the model: forward(mask_audio=True)")
        if sampling_rate is None:
            warnings.warn(
                f"TvltFeatureExtractor: no sampling_rate given; assuming {self.sampling_rate} Hz. Pass "
                "sampling_rate= so that audio at other rates is resampled.",
                stacklevel=2,
            )
            sampling_rate = self.sampling_rate
        if int(sampling_rate) <= 0:
            raise ValueError(f"sampling_rate must be a positive number of Hz, got {sampling_rate}")
        clips = self._resample(self._clips(raw_speech, channels), int(sampling_rate))
        for i, clip in enumerate(clips):
            self._check_length(clip, f"audio[{i}]")
        specs = self.log_mel(clips)
        values, mask = self._pad(specs)
        data = {"audio_values": values}
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            data["audio_mask"] = mask
        return BatchFeature(data, tensor_type=return_tensors or "np")

    def _check_length(self, clip: torch.Tensor, what: str) -> None:
        if self.mode == "hf" and clip.numel() < self.hop_length:
            raise ValueError(
                f"{what} has {clip.numel()} samples at {self.sampling_rate} Hz: too short for one spectrogram frame "
                f"(at least {self.hop_length} samples, {1000 * self.hop_length / self.sampling_rate:.1f} ms)"
            )

    def _lengths(self, frames: int) -> tuple[int, int]:
        """(kept, padded) spectrogram frames of a clip of ``frames`` log-mel frames: at most ``spectrogram_length``
        kept; padded to a multiple of the patch height (original mode: by ``16 - T % 16`` frames, then capped)."""
        ph, cap = self.patch_size[0], self.spectrogram_length
        kept = min(frames, cap)
        if self.mode == "original":
            return kept, min(frames + ph - frames % ph, cap)
        return kept, math.ceil(kept / ph) * ph

    def patches(self, frames: int) -> int:
        """Audio patches holding real content for ``frames`` kept spectrogram frames (a partly filled last time patch
        counts): ``ceil(frames / 16) * freq_len``. The one rule behind ``audio_mask``."""
        return math.ceil(frames / self.patch_size[0]) * self.freq_len

    def clip_features(self, waveform: Any, sampling_rate: int) -> tuple[torch.Tensor, int]:
        """One mono clip -> ``(audio_values (1, Ta, feature_size) float32, audio_patches)``, unbatched.

        The same values as ``self(waveform, sampling_rate=...)["audio_values"][0]`` (Ta a multiple of 16, the
        clip's own padding), with the number of real audio patches instead of a mask: a collator pads clips to the
        batch and builds the mask once from these counts (``mask_from_values`` is not applied).

        Args:
            waveform: (N,) samples (numpy or torch; float in [-1, 1] or integer PCM) at ``sampling_rate`` Hz.

        Raises:
            ValueError: as :meth:`__call__` (empty, non-finite, non-1-D or too short audio).
        """
        clip = self._resample([self._one_clip(waveform, None, "audio")], int(sampling_rate))[0]
        self._check_length(clip, "audio")
        spec = self.log_mel([clip])[0]
        kept, padded = self._lengths(spec.shape[0])
        # the clip's own padding: the HF port's padding_value, the original release's -1 (see _pad)
        values = spec.new_full((1, padded, self.feature_size), -1.0 if self.mode == "original" else self.padding_value)
        values[0, :kept] = spec[:kept]
        return values, self.patches(kept)

    def _pad(self, specs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Time-pad each (T_i, F) spectrogram; returns values (B, 1, T, F) and the patch mask (B, T/ph * freq_len)."""
        ph = self.patch_size[0]
        lengths, padded_lengths = zip(*(self._lengths(s.shape[0]) for s in specs))
        total = max(padded_lengths)
        device = specs[0].device
        values = torch.full((len(specs), 1, total, self.feature_size), self.padding_value, device=device)
        if self.mode == "original":
            values.fill_(-1.0)
            for i, n in enumerate(padded_lengths):  # the release's own pad is -1; batch padding uses padding_value
                values[i, :, n:] = self.padding_value
        for i, (spec, n) in enumerate(zip(specs, lengths)):
            values[i, 0, :n] = spec[:n]
        patches = torch.tensor([self.patches(n) for n in lengths], device=device)
        mask = (torch.arange(total // ph * self.freq_len, device=device)[None, :] < patches[:, None]).to(torch.float32)
        if self.mask_from_values:  # a patch whose values are all -1 is masked too
            pw = self.patch_size[1]
            grid = values.reshape(len(specs), total // ph, ph, self.freq_len, pw)
            silent = (grid == -1.0).all(dim=4).all(dim=2).reshape(len(specs), -1)
            mask = mask * (~silent).to(mask.dtype)
        return values, mask

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(hop_length=self.hop_length, freq_len=self.freq_len, padding_side=self.padding_side)
        return out

    def pad(
        self,
        processed_features: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: ReturnTensors = None,
    ) -> BatchFeature:
        """Pad a batch of feature sequences (``{"audio_values": [(T_i, F) ...]}``) along time with
        ``padding_value``, as the port's ``SequenceFeatureExtractor.pad``; see :func:`tvlt.processing_utils.pad_sequences`
        for the arguments, the ``attention_mask`` it adds and the errors it raises."""
        return pad_sequences(
            processed_features, self.model_input_names[0], self.padding_value, padding=padding,
            max_length=max_length, truncation=truncation, pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=self.return_attention_mask if return_attention_mask is None else return_attention_mask,
            return_tensors=return_tensors, padding_side=self.padding_side,
        )  # fmt: skip
