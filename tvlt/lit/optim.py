"""Optimizer parameter groups and the learning-rate schedule.

The original release (REFERENCE.md B.6) trains with AdamW(lr, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.001) on
all parameters, and (since 2023-02-05) a linear warm-up followed by cosine decay, stepped once per optimizer step.
Both are reproduced here; excluding norms, biases and embeddings from weight decay is an option (off by default,
as in the original release).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def no_decay(name: str, param: nn.Parameter) -> bool:
    """True for parameters that are conventionally not decayed: biases and norm weights (any 0-/1-D tensor) and free
    embedding tables or tokens (parameters that are not the ``.weight`` of a layer, e.g. ``cls_embedding``,
    ``pixel_embeddings.pos_embed_v``, ``pixel_mask_token``). Patch-embedding convolution weights are decayed."""
    return param.ndim <= 1 or not name.endswith(".weight")


def param_groups(named_params: Iterable[tuple[str, nn.Parameter]], exclude_no_decay: bool) -> list[dict]:
    """Trainable parameters as optimizer groups: one group (the optimizer's own weight decay for all), or with
    ``exclude_no_decay`` a decayed group and a group with ``weight_decay=0`` (see :func:`no_decay`)."""
    params = [(n, p) for n, p in named_params if p.requires_grad]
    if not exclude_no_decay:
        return [{"params": [p for _, p in params]}]
    decay = [p for n, p in params if not no_decay(n, p)]
    skip = [p for n, p in params if no_decay(n, p)]
    return [{"params": decay}, {"params": skip, "weight_decay": 0.0}]


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
