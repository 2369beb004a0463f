"""Frame-index sampling: uniform over the clip (evaluation) or a random window with jitter (training).

Everything here is plain numpy and torch-free, because it also runs inside the isolated decode process
(:mod:`datamodules._rawdecode`). Every function returns indices that lie in ``[0, num_decodable)``: callers pass the
number of frames that can actually be decoded, not the container header's claim (see
:func:`datamodules._rawdecode.probe`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FrameSample", "uniform_indices", "random_window_indices", "sample_frames"]


@dataclass(frozen=True)
class FrameSample:
    """Sorted, unique frame indices and the half-open span of frames ``[first, stop)`` they were drawn from.

    The span (not just the drawn frames) defines the clip's time window, which the audio is cut to.
    """

    indices: np.ndarray  # int64 (T,), sorted, unique
    first: int
    stop: int


def uniform_indices(num_decodable: int, num_frames: int) -> FrameSample:
    """``num_frames`` indices spread uniformly over the whole clip, starting at frame 0.

    Same rule as the original TVLT release (``linspace(0, len, n, endpoint=False)`` floored). A clip with fewer
    decodable frames than ``num_frames`` gives each of its frames once (T = ``num_decodable``), never repeated or
    out-of-range indices; the pixel mask then marks only those frames.
    """
    _check(num_decodable, num_frames)
    if num_decodable <= num_frames:
        idx = np.arange(num_decodable, dtype=np.int64)
    else:
        idx = np.floor(np.linspace(0, num_decodable, num_frames, endpoint=False)).astype(np.int64)
    return FrameSample(idx, 0, num_decodable)


def random_window_indices(
    num_decodable: int,
    num_frames: int,
    window_frames: int | None,
    rng: np.random.Generator,
    jitter: bool = True,
) -> FrameSample:
    """A random window of ``window_frames`` frames (whole clip when ``None`` or longer than the clip), split into
    ``num_frames`` equal segments with one frame per segment, at a random offset inside the segment when
    ``jitter`` (TSN-style), else at the segment start.

    The window start is uniform over all positions that keep the window inside the clip.
    """
    _check(num_decodable, num_frames)
    span = num_decodable if window_frames is None else max(1, min(int(window_frames), num_decodable))
    first = int(rng.integers(0, num_decodable - span + 1))
    if span <= num_frames:
        return FrameSample(np.arange(first, first + span, dtype=np.int64), first, first + span)
    # Integer segment bounds; each segment holds at least one frame (span > num_frames), so one index per segment
    # gives strictly increasing indices.
    bounds = np.floor(np.arange(num_frames + 1) * (span / num_frames)).astype(np.int64)
    widths = np.diff(bounds)
    offsets = np.floor(rng.random(num_frames) * widths).astype(np.int64) if jitter else np.zeros(num_frames, np.int64)
    idx = first + bounds[:-1] + np.minimum(offsets, widths - 1)
    return FrameSample(idx, first, first + span)


def sample_frames(
    num_decodable: int,
    num_frames: int,
    mode: str,
    window_frames: int | None = None,
    seed: int | None = None,
    jitter: bool = True,
) -> FrameSample:
    """Dispatch on ``mode``: ``"uniform"`` (evaluation) or ``"random"`` (training, seeded by ``seed``)."""
    if mode == "uniform":
        return uniform_indices(num_decodable, num_frames)
    if mode == "random":
        return random_window_indices(num_decodable, num_frames, window_frames, np.random.default_rng(seed), jitter)
    raise ValueError(f"frame sampling mode must be 'uniform' or 'random', got {mode!r}")


def _check(num_decodable: int, num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_decodable < 1:
        raise ValueError(f"a clip needs at least one decodable frame, got {num_decodable}")
