"""Optimizer parameter groups and the learning-rate schedule.

The original release (REFERENCE.md B.6) trains with AdamW(lr, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.001) on
all parameters, and (since 2023-02-05) a linear warm-up followed by cosine decay, stepped once per optimizer step.
Both are reproduced here; excluding norms, biases and embeddings from weight decay is an option (off by default,
as in the original release).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def param_groups(model: nn.Module, exclude_no_decay: bool) -> list[dict]:
    """The model's trainable parameters as optimizer groups: one group (the optimizer's own weight decay for all),
    or with ``exclude_no_decay`` a decayed group and a group with ``weight_decay=0`` holding the parameters the
    model's ``no_weight_decay()`` names (the one rule; timm's convention)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not exclude_no_decay:
        return [{"params": [p for _, p in params]}]
    skip = model.no_weight_decay()
    return [{"params": [p for n, p in params if n not in skip]},
            {"params": [p for n, p in params if n in skip], "weight_decay": 0.0}]


def warmup_cosine_lambda(warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """LR multiplier for optimizer step ``s`` (0-based): ``s / warmup_steps`` during warm-up, then
    ``min + (1 - min) * 0.5 * (1 + cos(pi * progress))`` with ``progress`` going from 0 to 1 over the remaining
    steps, and ``min_lr_ratio`` after ``total_steps``. Same shape as the original release's
    ``get_cosine_schedule_with_warmup`` (which has ``min_lr_ratio = 0``)."""
    if warmup_steps < 0 or total_steps <= 0:
        raise ValueError(f"scheduler: warmup_steps ({warmup_steps}) must be >= 0 and total_steps ({total_steps}) > 0")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """A ``LambdaLR`` with :func:`warmup_cosine_lambda`; step it once per optimizer step (``interval: step``)."""
    return LambdaLR(optimizer, warmup_cosine_lambda(warmup_steps, total_steps, min_lr_ratio))
