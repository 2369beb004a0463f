"""The activations ``TvltConfig.hidden_act`` may name: one table, which the config validates against and the
layers build from. Names are the Hugging Face ones, so a port ``config.json`` means the same function here."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["ACTIVATIONS", "get_activation"]


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


#: name -> function. "gelu" is the exact erf GELU (the reference's); "gelu_new" and "gelu_pytorch_tanh" are the
#: tanh approximation under HF's two names.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": F.relu,
    "silu": F.silu,
    "selu": F.selu,
}


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function ``name`` stands for.

    Raises:
        ValueError: ``name`` is not in :data:`ACTIVATIONS` (the message lists the names).
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"hidden_act: unsupported activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
