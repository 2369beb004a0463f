"""Waveform checks and resampling, shared by the feature extractor and the clip reader (one owner each).

- :func:`check_waveform`: a float waveform must be finite and at most :data:`MAX_PEAK` in magnitude; values beyond
  [-1, 1] but within that bound are accepted with one warning per source.
- :func:`resample`: torchaudio's windowed-sinc resampling, with time and memory bounded for any pair of rates.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction

import torch
import torchaudio.functional as AF

__all__ = ["MAX_PEAK", "MAX_RATE_TERM", "check_waveform", "resample", "resampling_ratio"]

log = logging.getLogger(__name__)

#: Largest accepted sample magnitude of a float waveform: the magnitude of the most negative 16-bit PCM value, the
#: largest that integer audio stored as float without scaling reaches in practice. Far above it (about 1e16) the
#: float32 power spectrum overflows and ``audio_values`` become NaN; no waveform convention produces such values.
MAX_PEAK = 32768.0

#: Largest term of the reduced rate ratio resampled exactly. torchaudio's kernel holds about ``new * (orig + 12)``
#: weights for the reduced ratio ``orig : new``; 16 kHz -> 44.1 kHz is 160 : 441, 192 kHz -> 44.1 kHz is 640 : 147,
#: while a co-prime rate such as 16001 Hz would need 44100 x 16013 weights (2.8 GB of float32).
MAX_RATE_TERM = 1000

_warned: set[str] = set()


def check_waveform(x: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` (a file, or an array position such as ``audio[3]``) when the float
    waveform ``x`` (any shape) is empty, holds NaN/inf, or exceeds :data:`MAX_PEAK`; warn once per ``what`` when it
    exceeds [-1, 1] but is usable (the log-mel is then louder than the checkpoints' training audio)."""
    if x.numel() == 0:
        raise ValueError(f"{what}: empty waveform")
    # one reduction and no bool copy of x (as torch.isfinite makes); NaN and inf propagate into it
    low, high = torch.aminmax(x)
    peak = max(-float(low), float(high))
    if not math.isfinite(peak):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{what}: waveform contains {bad} NaN or infinite samples")
    if peak > MAX_PEAK:
        raise ValueError(
            f"{what}: sample magnitude {peak:.3g} is not a waveform (float audio lies in [-1, 1]; accepted up to "
            f"{MAX_PEAK:g}); a broken channel or unscaled integer data?"
        )
    if peak > 1.0 and what not in _warned:
        _warned.add(what)
        log.warning(
            "%s: float waveform peaks at %.3g, outside [-1, 1]; used as it is (integer PCM stored as float should "
            "be divided by 32768)", what, peak,
        )


def resampling_ratio(orig_hz: int, target_hz: int) -> tuple[int, int]:
    """The ``(orig, new)`` pair that :func:`resample` hands to torchaudio: the reduced ratio when both terms are at
    most :data:`MAX_RATE_TERM`, else the closest ratio with both terms within it (``Fraction.limit_denominator``).

    The approximation changes the duration by the ratio's relative error: 7e-6 for 16001 Hz -> 44.1 kHz (41 : 113),
    one sample in 3 s of output.
    """
    if orig_hz <= 0 or target_hz <= 0:
        raise ValueError(f"sampling rates must be positive, got {orig_hz} -> {target_hz} Hz")
    g = math.gcd(int(orig_hz), int(target_hz))
    orig, new = int(orig_hz) // g, int(target_hz) // g
    if max(orig, new) <= MAX_RATE_TERM:
        return orig, new
    if orig <= new:
        f = Fraction(orig, new).limit_denominator(MAX_RATE_TERM)
        return max(1, f.numerator), f.denominator
    f = Fraction(new, orig).limit_denominator(MAX_RATE_TERM)
    return f.denominator, max(1, f.numerator)


def resample(waveform: torch.Tensor, orig_hz: int, target_hz: int) -> torch.Tensor:
    """Resample ``waveform`` (..., N) from ``orig_hz`` to ``target_hz`` Hz with torchaudio's default windowed sinc
    (Hann, 6 zero crossings, roll-off 0.99), as the original release does; float32 out.

    Any pair of rates costs at most a :data:`MAX_RATE_TERM`-sized kernel (see :func:`resampling_ratio`).

    Raises:
        ValueError: a rate that is not positive.
    """
    orig, new = resampling_ratio(orig_hz, target_hz)
    waveform = waveform.to(torch.float32)
    if orig == new or waveform.shape[-1] == 0:
        return waveform
    return AF.resample(waveform, orig, new)
