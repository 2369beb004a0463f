"""Transformer building blocks of TVLT: multi-head self-attention, MLP, pre-norm layer, layer stack.

Module and parameter names reproduce the Hugging Face port's state-dict keys (``attention.attention.query``,
``attention.output.dense``, ``intermediate.dense``, ``output.dense``, ``layernorm_before``/``layernorm_after``),
because those names are a public contract: HF checkpoints load strictly.

Attention has two paths of identical semantics (timm-style switch):

- ``"sdpa"``: :func:`torch.nn.functional.scaled_dot_product_attention` with a boolean key mask; never
  materialises the (B, heads, L, L) matrix when the backend can avoid it.
- ``"eager"``: plain ``softmax(q k^T / sqrt(d)) v``; masked scores are filled with the dtype's minimum *after*
  the product, so fp16/bf16 cannot overflow (the original release filled with -1e12, which overflows fp16).
  Used whenever attention weights are requested.

Key masks are boolean ``(B, L)``, True = a real token that may be attended to. Callers guarantee each row has
at least one True (the CLS token is always real), so no softmax row is empty.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tvlt.activations import get_activation
from tvlt.configuration import TvltConfig


class TvltSelfAttention(nn.Module):
    """Query/key/value projections and the attention itself. Parameters: query, key, value."""

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool, dropout: float) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} not divisible by num_attention_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.query = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.key = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.value = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.dropout = dropout

    def _fusable(self) -> bool:
        """True while query/key/value are plain Linear layers. A wrapped projection (a LoRA adapter from ``peft``,
        a quantised layer) must be called as a module, or its extra computation would be skipped."""
        return all(type(m) is nn.Linear for m in (self.query, self.key, self.value))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, H, L, d)."""
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def _project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self._fusable():
            return self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        # One GEMM for q, k and v (weights concatenated on the fly; the copy is tiny next to the GEMM).
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight], dim=0)
        bias = None
        if self.query.bias is not None:
            bias = torch.cat([self.query.bias, self.key.bias, self.value.bias], dim=0)
        b, n, _ = x.shape
        qkv = F.linear(x, weight, bias).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # unbind, not indexing: its backward is one stack instead of zero-filling (3, B, H, L, d) per slice
        q, k, v = qkv.unbind(0)
        return q, k, v

    def _project_first_query(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query of the first token only, keys and values of all tokens: (B, H, 1, d), (B, H, L, d) x 2."""
        b, n, _ = x.shape
        q = self.query(x[:, :1]).view(b, 1, self.num_heads, self.head_dim).transpose(1, 2)
        if not self._fusable():
            return q, self._heads(self.key(x)), self._heads(self.value(x))
        weight = torch.cat([self.key.weight, self.value.weight], dim=0)
        bias = None if self.key.bias is None else torch.cat([self.key.bias, self.value.bias], dim=0)
        k, v = F.linear(x, weight, bias).view(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        implementation: str = "sdpa",
        output_attentions: bool = False,
        first_query_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, L, D), key_mask (B, L) bool or None -> context (B, L, D), attention probs (B, H, L, L) or None.

        ``first_query_only``: attend from the first token only (context (B, 1, D)); for heads that read CLS.
        """
        q, k, v = self._project_first_query(x) if first_query_only else self._project_qkv(x)
        dropout = self.dropout if self.training else 0.0
        mask = None if key_mask is None else key_mask[:, None, None, :]
        probs = None
        if implementation == "sdpa" and not output_attentions:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            probs = scores.softmax(dim=-1)
            context = torch.matmul(F.dropout(probs, dropout, self.training), v)
        b, _, n, _ = context.shape
        context = context.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        return context, probs if output_attentions else None


class TvltSelfOutput(nn.Module):
    """Output projection of the attention block. Parameter: dense."""

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(x))


class TvltAttention(nn.Module):
    """Self-attention plus output projection (keys ``attention.*`` and ``output.dense``)."""

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool, attn_dropout: float,
                 hidden_dropout: float) -> None:
        super().__init__()
        self.attention = TvltSelfAttention(hidden_size, num_heads, qkv_bias, attn_dropout)
        self.output = TvltSelfOutput(hidden_size, hidden_dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None, implementation: str,
                output_attentions: bool, first_query_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, probs = self.attention(x, key_mask, implementation, output_attentions, first_query_only)
        return self.output(context), probs


class TvltIntermediate(nn.Module):
    """First MLP projection and activation. Parameter: dense."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: str) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, intermediate_size)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class TvltOutput(nn.Module):
    """Second MLP projection. Parameter: dense."""

    def __init__(self, intermediate_size: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(x))


class TvltLayer(nn.Module):
    """Pre-LN transformer layer (ViT/ViLT): h += Attn(LN(h)); h += MLP(LN(h))."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, config: TvltConfig) -> None:
        super().__init__()
        self.attention = TvltAttention(hidden_size, num_heads, config.qkv_bias,
                                       config.attention_probs_dropout_prob, config.hidden_dropout_prob)
        self.intermediate = TvltIntermediate(hidden_size, intermediate_size, config.hidden_act)
        self.output = TvltOutput(intermediate_size, hidden_size, config.hidden_dropout_prob)
        self.layernorm_before = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None, implementation: str = "sdpa",
                output_attentions: bool = False, first_token_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, L, D) -> (B, L, D), or (B, 1, D) with ``first_token_only`` (the CLS row computed exactly, the
        other rows skipped: they only feed keys and values)."""
        attn, probs = self.attention(self.layernorm_before(x), key_mask, implementation, output_attentions,
                                     first_token_only)
        x = (x[:, :1] if first_token_only else x) + attn
        x = x + self.output(self.intermediate(self.layernorm_after(x)))
        return x, probs


def run_layers(
    layers: nn.ModuleList,
    x: torch.Tensor,
    key_mask: torch.Tensor | None,
    implementation: str,
    output_attentions: bool,
    output_hidden_states: bool,
    checkpoint_kwargs: dict[str, Any] | None,
    first_token_only: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
    """Apply a stack of layers; collect the input and every layer output, and attention probs, if asked.

    ``checkpoint_kwargs``: None = no gradient checkpointing; else the keyword arguments of
    ``torch.utils.checkpoint.checkpoint`` (e.g. ``{"use_reentrant": False}``) for recomputing each layer in backward.

    ``first_token_only``: the last layer computes only the first (CLS) token, output (B, 1, D); ignored when
    hidden states or attentions are requested (they need every token).
    """
    first_token_only = first_token_only and not (output_hidden_states or output_attentions)
    hidden_states: list[torch.Tensor] = [x] if output_hidden_states else []
    attentions: list[torch.Tensor] = []
    last = len(layers) - 1
    for index, layer in enumerate(layers):
        cls_only = first_token_only and index == last
        if checkpoint_kwargs is not None and torch.is_grad_enabled() and not output_attentions:
            x, probs = checkpoint(layer, x, key_mask, implementation, False, cls_only, **checkpoint_kwargs)
        else:
            x, probs = layer(x, key_mask, implementation, output_attentions, cls_only)
        if output_hidden_states:
            hidden_states.append(x)
        if output_attentions:
            attentions.append(probs)
    return (x, tuple(hidden_states) if output_hidden_states else None,
            tuple(attentions) if output_attentions else None)


class TvltEncoder(nn.Module):
    """Stack of ``num_hidden_layers`` TvltLayers (keys ``encoder.layer.N.*``)."""

    def __init__(self, config: TvltConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            TvltLayer(config.hidden_size, config.num_attention_heads, config.intermediate_size, config)
            for _ in range(config.num_hidden_layers)
        )
        self.gradient_checkpointing = False
        self.checkpoint_kwargs: dict[str, Any] = {"use_reentrant": False}

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None, implementation: str,
                output_attentions: bool = False, output_hidden_states: bool = False,
                first_token_only: bool = False):
        return run_layers(self.layer, x, key_mask, implementation, output_attentions, output_hidden_states,
                          self.checkpoint_kwargs if self.gradient_checkpointing else None, first_token_only)


class TvltDecoder(nn.Module):
    """MAE decoder: ``decoder_num_hidden_layers`` TvltLayers then a LayerNorm (keys ``decoder.decoder_layers.N``,
    ``decoder.layernorm``). Shared by the pixel and audio streams, run on each separately; a key mask keeps padding
    positions from being attended to."""

    def __init__(self, config: TvltConfig) -> None:
        super().__init__()
        self.decoder_layers = nn.ModuleList(
            TvltLayer(config.decoder_hidden_size, config.decoder_num_attention_heads,
                      config.decoder_intermediate_size, config)
            for _ in range(config.decoder_num_hidden_layers)
        )
        self.layernorm = nn.LayerNorm(config.decoder_hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.checkpoint_kwargs: dict[str, Any] = {"use_reentrant": False}

    def forward(self, x: torch.Tensor, implementation: str, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, D) in original token order; key_mask (B, L) bool, True = real token (None: all real). A row
        with no real token (a sample without that modality) attends to every position: its outputs are no
        reconstruction target, and an all-masked softmax row would be NaN."""
        if key_mask is not None:
            key_mask = key_mask | ~key_mask.any(dim=1, keepdim=True)
            if bool(key_mask.all()):
                key_mask = None
        x, _, _ = run_layers(self.decoder_layers, x, key_mask, implementation, False, False,
                             self.checkpoint_kwargs if self.gradient_checkpointing else None)
        return self.layernorm(x)


class TvltPooler(nn.Module):
    """dense + tanh on the first token (keys ``pooler.dense`` / ``classifier.0.dense``)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled (B, D) -> (B, D)."""
        return torch.tanh(self.dense(pooled))


class TvltMatchingHead(nn.Module):
    """Video-audio matching (VAM) head: pooler on CLS then Linear(D, 1) (keys ``pooler.dense``, ``fc``)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.pooler = TvltPooler(hidden_size)
        self.fc = nn.Linear(hidden_size, 1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states (B, L, D) -> matching logits (B, 1)."""
        return self.fc(self.pooler(hidden_states[:, 0]))


class TvltMAEHead(nn.Module):
    """Linear decoder-width -> patch values (key ``decoder``)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.decoder = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(x)
