"""Which frames of a clip the model sees at evaluation: one rule for the decoder (``datamodules.sampling``), the
shards and the image processor's ``frames_over_limit="subsample"``.

NumPy only (no torch), so the isolated decode process can import it cheaply.
"""

from __future__ import annotations

import numpy as np

__all__ = ["uniform_frame_indices"]


def uniform_frame_indices(count: int, num_frames: int) -> np.ndarray:
    """Indices int64 (min(count, num_frames),) of ``num_frames`` frames spread uniformly over ``count`` frames,
    starting at frame 0: ``floor(linspace(0, count, num_frames, endpoint=False))``, the original release's rule.
    A clip of ``count <= num_frames`` frames gives each of its frames once (never a repeated frame).

    Raises:
        ValueError: a negative ``count`` or ``num_frames < 1``.
    """
    if count < 0 or num_frames < 1:
        raise ValueError(f"frame selection needs count >= 0 and num_frames >= 1, got {count} and {num_frames}")
    if count <= num_frames:
        return np.arange(count, dtype=np.int64)
    return np.floor(np.linspace(0, count, num_frames, endpoint=False)).astype(np.int64)
