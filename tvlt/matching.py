"""Video-audio matching (VAM): the in-batch negative pairs and the head's accuracy.

One definition of the negatives for every place that trains the VAM head: the pretraining collator
(``datamodules.collate``, on the CPU in the DataLoader workers) and retrieval training (``tvlt.lit.retrieval``, on
the batch's device). The model itself only scores the pairs it is given (``pixel_values_mixed`` and ``labels`` of
``TvltForPreTraining``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["vam_accuracy", "vam_negatives"]


def vam_negatives(batch_size: int, negative_prob: float = 0.5,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Video-audio pairs within a batch: ``order`` int64 (B,), the clip whose video sample i's audio is paired
    with, and ``labels`` float32 (B,), 1.0 where ``order[i] == i`` (a true pair), else 0.0.

    Each sample is chosen as a negative with probability ``negative_prob`` (a fair coin by default: about half of
    the pairs are negatives, as in the original release). The chosen ones receive the video of another clip: a
    random cyclic shift among them, so each of their videos is used once, or a random other clip when only one is
    chosen. A negative therefore never sees its own video. With one sample no negative is possible (label 1).
    Draws come from ``generator``, or torch's global CPU RNG (which the DataLoader seeds per worker).

    Raises:
        ValueError: ``negative_prob`` outside [0, 1] or a negative ``batch_size``.
    """
    if not 0.0 <= float(negative_prob) <= 1.0:
        raise ValueError(f"vam_negative_prob must lie in [0, 1], got {negative_prob}")
    if batch_size < 0:
        raise ValueError(f"batch_size must be >= 0, got {batch_size}")
    order = torch.arange(batch_size)
    if batch_size >= 2:
        chosen = torch.nonzero(torch.rand(batch_size, generator=generator) < negative_prob).flatten()
        if len(chosen) == 1:
            i = int(chosen[0])
            j = int(torch.randint(batch_size - 1, (), generator=generator))
            order[i] = j + (j >= i)  # any clip but i
        elif len(chosen) > 1:
            cycle = chosen[torch.randperm(len(chosen), generator=generator)]
            order[cycle] = cycle.roll(-1)
    labels = (order == torch.arange(batch_size)).float()
    return order, labels


def vam_accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Share of pairs the VAM head calls right: logit >= 0 predicts a true pair. logits (B, 1) or (B,), labels (B,)
    0/1 -> a scalar in [0, 1]."""
    return ((logits.reshape(-1) >= 0) == (labels.reshape(-1) > 0.5)).float().mean()
