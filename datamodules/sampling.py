"""Frame-index sampling: uniform over the clip (evaluation) or a random window with jitter (training).

Everything here is plain numpy and torch-free, because it also runs inside the isolated decode process
(:mod:`datamodules._rawdecode`). Indices count the frames a player presents, in presentation order, and lie in
``[0, n)`` where ``n`` is the number of frames the file really holds (see :func:`datamodules._rawdecode.index_video`),
not the container header's claim.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvlt.frames import uniform_frame_indices

__all__ = ["FrameSample", "uniform_indices", "random_window", "random_window_indices", "span_indices",
           "sample_frames"]


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

    The rule is :func:`tvlt.frames.uniform_frame_indices` (the original release's). A clip with fewer decodable
    frames than ``num_frames`` gives each of its frames once (T = ``num_decodable``), never repeated or
    out-of-range indices; the pixel mask then marks only those frames.
    """
    _check(num_decodable, num_frames)
    return FrameSample(uniform_frame_indices(num_decodable, num_frames), 0, num_decodable)


def random_window_indices(
    num_decodable: int,
    num_frames: int,
    window_frames: int | None,
    rng: np.random.Generator,
    jitter: bool = True,
) -> FrameSample:
    """A random window of ``window_frames`` frames of a constant-rate clip: :func:`random_window` with the frame
    index as the clock."""
    times = np.arange(num_decodable, dtype=np.float64)
    window = None if window_frames is None else max(1, int(window_frames))
    return random_window(times, float(num_decodable), num_frames, window, rng, jitter)


def random_window(
    times: np.ndarray,
    end_time: float,
    num_frames: int,
    window_seconds: float | None,
    rng: np.random.Generator,
    jitter: bool = True,
) -> FrameSample:
    """A random window of ``window_seconds`` (whole clip when ``None`` or longer than the clip), split into
    ``num_frames`` equal segments of frames with one frame per segment, at a random offset inside the segment when
    ``jitter`` (TSN-style), else at the segment start.

    Args:
        times: float64 (n,) increasing presentation times of the clip's frames, in seconds.
        end_time: when the last frame stops being shown (s).

    The window is measured on the frames' timestamps, so on a variable-frame-rate clip it lasts ``window_seconds``
    wherever it falls; its start is uniform over the frames at which a whole window fits. On a constant-rate clip
    this is the original release's rule: ``round(window_seconds * fps)`` frames from a uniform start.
    """
    n = len(times)
    _check(n, num_frames)
    eps = 1e-6 * max(1.0, abs(float(end_time)))
    first, stop = 0, n
    if window_seconds is not None and end_time - times[0] > window_seconds + eps:
        starts = np.flatnonzero(times + window_seconds <= end_time + eps)
        first = int(starts[int(rng.integers(0, len(starts)))])
        stop = max(first + 1, int(np.searchsorted(times, times[first] + window_seconds - eps, side="left")))
    span = stop - first
    if span <= num_frames:
        return FrameSample(np.arange(first, stop, dtype=np.int64), first, stop)
    # Integer segment bounds; each segment holds at least one frame (span > num_frames), so one index per segment
    # gives strictly increasing indices.
    bounds = np.floor(np.arange(num_frames + 1) * (span / num_frames)).astype(np.int64)
    widths = np.diff(bounds)
    offsets = np.floor(rng.random(num_frames) * widths).astype(np.int64) if jitter else np.zeros(num_frames, np.int64)
    idx = first + bounds[:-1] + np.minimum(offsets, widths - 1)
    return FrameSample(idx, first, stop)


def span_indices(times: np.ndarray, span: tuple[float, float], num_frames: int) -> FrameSample:
    """The frames shown during ``span`` = (start, end) seconds on the clip's clock (0 = its first frame): those
    whose presentation time lies in [start, end); all of them when they are at most ``num_frames``, else
    ``num_frames`` uniformly among them (cutting a segment out of a longer video, ``python -m datamodules.prepare``).

    Raises:
        ValueError: the span is empty or holds no frame of the clip (it lies outside the video).
    """
    start, end = float(span[0]), float(span[1])
    if not end > start:
        raise ValueError(f"span [{start:g}, {end:g}) s is empty")
    rel = times - times[0]
    first = int(np.searchsorted(rel, start, side="left"))
    stop = int(np.searchsorted(rel, end, side="left"))
    if stop <= first:
        raise ValueError(f"span [{start:.3f}, {end:.3f}) s holds no frame: the clip's {len(times)} frames lie in "
                         f"[0, {rel[-1]:.3f}] s")
    inner = uniform_indices(stop - first, num_frames)
    return FrameSample(inner.indices + first, first, stop)


def sample_frames(
    times: np.ndarray,
    end_time: float,
    num_frames: int,
    mode: str,
    window_seconds: float | None = None,
    seed: int | None = None,
    jitter: bool = True,
    span: tuple[float, float] | None = None,
) -> FrameSample:
    """Dispatch on ``mode``: ``"uniform"`` (evaluation: by index over the whole clip), ``"random"`` (training: a
    window measured on ``times``, seeded by ``seed``) or ``"span"`` (the frames of ``span`` seconds)."""
    if mode == "span":
        if span is None:
            raise ValueError("frame sampling mode 'span' needs span=(start, end) seconds")
        return span_indices(times, span, num_frames)
    if mode == "uniform":
        return uniform_indices(len(times), num_frames)
    if mode == "random":
        return random_window(times, end_time, num_frames, window_seconds, np.random.default_rng(seed), jitter)
    raise ValueError(f"frame sampling mode must be 'uniform', 'random' or 'span', got {mode!r}")


def _check(num_decodable: int, num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_decodable < 1:
        raise ValueError(f"a clip needs at least one decodable frame, got {num_decodable}")
