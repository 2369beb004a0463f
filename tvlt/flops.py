"""FLOP count of TVLT per forward pass and per training step, computed from the configuration.

Convention (the usual one for model FLOP utilization, as in the PaLM/Chinchilla accounting): only matrix
products are counted, each ``(m x k) @ (k x n)`` as ``2*m*n*k`` FLOPs. That covers the patch embeddings
(a Conv2d with kernel = stride = patch is a matmul of the flattened patches), the q/k/v and output projections,
the two attention products (``Q K^T`` and ``A V``), the MLPs, the decoder input projection and the heads.
LayerNorm, softmax, GELU, residual adds, masking and the losses are not counted (< 1 % at TVLT-base sizes).
A training step is 3x its forward (backward = 2x forward: gradients with respect to activations and weights),
except the patch embeddings, which get no input gradient (pixel and audio values need none): 2x. The AdamW
update is O(parameters) and not counted. With ``attn_implementation="eager"`` this accounting agrees exactly
with ``torch.utils.flop_counter.FlopCounterMode`` (tests/test_flops.py).

Token counts follow the Hugging Face port (REFERENCE.md A.5/A.6), which this project reproduces:

- video: ``frames * (image_size / ph) * (image_size / pw)`` patches (196 per 224x224 frame);
- audio: ``ceil(T / pt) * (frequency_length / pf)`` patches for ``T`` spectrogram frames (the feature extractor
  pads time to a multiple of ``pt``; 8 frequency patches by default);
- MAE masking keeps ``int(N * (1 - ratio))`` tokens per modality; the encoder sees ``1 + kept`` (CLS included,
  in the masked pass too); the decoder sees every token of one modality at a time (two separate passes);
- pretraining = an unmasked VAM pass + a masked MAE pass + the decoder on both streams;
- the heads read only CLS, so this project's last encoder layer computes only the CLS row in the fine-tuning
  and VAM passes (keys and values still cover every token); the step functions count that work by default
  (``cls_only_last_layer=True``), ``False`` counts the reference's (every row in every layer).

Per encoder layer with ``L`` tokens, width ``d``, MLP width ``i``: projections ``8 L d^2``, attention
``4 L^2 d``, MLP ``4 L d i``. Attention FLOPs equal the MLP's at ``L = i`` (3072 for TVLT-base) and all the
linear layers' at ``L = 2d + i`` (4608): see docs/benchmarks.md.

The training loop logs these counts per batch (:func:`batch_flops`, through
:class:`tvlt.lit.callbacks.ThroughputMonitor`); the benchmarks use the step functions.

Usage::

    python -m tvlt.flops                     # table for TVLT-base, 8 frames + 512 audio frames
    python -m tvlt.flops --frames 16 --audio-seconds 20
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

SAMPLING_RATE = 44100  # Hz, the feature extractor's (REFERENCE.md A.2)
HOP_LENGTH = 512  # samples per spectrogram frame (44100 // 86)


@dataclass(frozen=True)
class FlopCount:
    """FLOPs by kind (matmuls only, 2*m*n*k each). Add two counts with ``+``, scale with ``* k``."""

    patch_embed: int = 0
    projections: int = 0  # q, k, v and attention output projections
    attention: int = 0  # Q K^T and A V
    mlp: int = 0
    heads: int = 0  # encoder_to_decoder, MAE heads, matching/classification heads

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def __add__(self, other: "FlopCount") -> "FlopCount":
        return FlopCount(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __mul__(self, k: int) -> "FlopCount":
        return FlopCount(**{f.name: getattr(self, f.name) * k for f in fields(self)})

    __rmul__ = __mul__

    def as_dict(self) -> dict[str, int]:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "total": self.total}


@dataclass(frozen=True)
class Tokens:
    """Token counts of one sample: all patches, kept patches (after MAE masking), encoder sequence length."""

    pixel: int
    audio: int
    pixel_kept: int
    audio_kept: int

    @property
    def sequence(self) -> int:
        """Encoder length: CLS + kept video + kept audio tokens."""
        return 1 + self.pixel_kept + self.audio_kept


def audio_frames_for_seconds(seconds: float, sampling_rate: int = SAMPLING_RATE, hop: int = HOP_LENGTH) -> int:
    """Spectrogram frames the feature extractor makes from ``seconds`` of audio: floor(N / hop) (the last STFT
    frame is dropped, REFERENCE.md A.2), before padding to a multiple of the patch height."""
    return int(round(seconds * sampling_rate)) // hop


def _get(config: Any, name: str) -> Any:
    return getattr(config, name)


def token_counts(config: Any, num_frames: int, audio_frames: int, pixel_mask_ratio: float = 0.0,
                 audio_mask_ratio: float = 0.0) -> Tokens:
    """Tokens for ``num_frames`` video frames and ``audio_frames`` spectrogram frames (time rows).

    ``config``: a TvltConfig (this project's or the Hugging Face port's; only attributes are read).
    Raises ValueError for non-positive sizes or ratios outside [0, 1).
    """
    if num_frames < 1 or audio_frames < 1:
        raise ValueError(f"num_frames and audio_frames must be >= 1, got {num_frames} and {audio_frames}")
    for name, ratio in (("pixel_mask_ratio", pixel_mask_ratio), ("audio_mask_ratio", audio_mask_ratio)):
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {ratio}")
    ph, pw = _get(config, "image_patch_size")
    pt, pf = _get(config, "audio_patch_size")
    size = _get(config, "image_size")
    pixel = num_frames * (size // ph) * (size // pw)
    audio = math.ceil(audio_frames / pt) * (_get(config, "frequency_length") // pf)
    return Tokens(pixel=pixel, audio=audio, pixel_kept=int(pixel * (1 - pixel_mask_ratio)),
                  audio_kept=int(audio * (1 - audio_mask_ratio)))


def layer_flops(tokens: int, hidden: int, intermediate: int, batch: int = 1, queries: int | None = None) -> FlopCount:
    """One pre-LN transformer layer on ``tokens`` tokens of width ``hidden`` (heads do not change the count).

    ``queries``: rows computed (default all ``tokens``); 1 for a last layer that computes only CLS (keys and
    values still cover every token).
    """
    n, d, i = tokens, hidden, intermediate
    q = n if queries is None else queries
    return FlopCount(
        # q (d -> d) and output (d -> d) on the computed rows, k and v (d -> 2d) on every token
        projections=batch * (2 * q * d * d + 2 * n * d * 2 * d + 2 * q * d * d),
        attention=batch * (2 * q * n * d + 2 * q * n * d),  # per head 2*q*n*dh, summed over heads: QK^T, AV
        mlp=batch * (2 * q * d * i + 2 * q * i * d),
    )


def patch_embed_flops(config: Any, tokens: Tokens, batch: int = 1) -> FlopCount:
    """Both patch embeddings (before masking: every patch is embedded, as in both references)."""
    ph, pw = _get(config, "image_patch_size")
    pt, pf = _get(config, "audio_patch_size")
    d = _get(config, "hidden_size")
    pixel = 2 * tokens.pixel * (_get(config, "num_image_channels") * ph * pw) * d
    audio = 2 * tokens.audio * (_get(config, "num_audio_channels") * pt * pf) * d
    return FlopCount(patch_embed=batch * (pixel + audio))


def encoder_forward_flops(config: Any, num_frames: int, audio_frames: int, pixel_mask_ratio: float = 0.0,
                          audio_mask_ratio: float = 0.0, batch: int = 1, cls_only_last_layer: bool = False
                          ) -> FlopCount:
    """TvltModel forward: patch embeddings + ``num_hidden_layers`` layers on 1 + kept tokens.

    ``cls_only_last_layer``: the last layer computes only the CLS row (``TvltModel(first_token_only=True)``,
    what this project's classification and VAM passes do; exact for heads that read CLS).
    """
    tokens = token_counts(config, num_frames, audio_frames, pixel_mask_ratio, audio_mask_ratio)
    d, i, n = _get(config, "hidden_size"), _get(config, "intermediate_size"), tokens.sequence
    layers = _get(config, "num_hidden_layers")
    total = patch_embed_flops(config, tokens, batch) + layer_flops(n, d, i, batch) * (layers - 1)
    return total + layer_flops(n, d, i, batch, queries=1 if cls_only_last_layer else None)


def decoder_forward_flops(config: Any, num_frames: int, audio_frames: int, pixel_mask_ratio: float | None = None,
                          audio_mask_ratio: float | None = None, batch: int = 1) -> FlopCount:
    """MAE decoder of TvltForPreTraining: encoder_to_decoder on the kept tokens, then the shared decoder layers
    on all video tokens and, separately, all audio tokens, then the pixel and audio MAE heads.

    Mask ratios default to the config's (they decide how many tokens go through encoder_to_decoder).
    """
    pr = _get(config, "pixel_mask_ratio") if pixel_mask_ratio is None else pixel_mask_ratio
    ar = _get(config, "audio_mask_ratio") if audio_mask_ratio is None else audio_mask_ratio
    tokens = token_counts(config, num_frames, audio_frames, pr, ar)
    d, dd = _get(config, "hidden_size"), _get(config, "decoder_hidden_size")
    di, layers = _get(config, "decoder_intermediate_size"), _get(config, "decoder_num_hidden_layers")
    ph, pw = _get(config, "image_patch_size")
    pt, pf = _get(config, "audio_patch_size")
    pixel_out = ph * pw * _get(config, "num_image_channels")
    audio_out = pt * pf * _get(config, "num_audio_channels")
    heads = (2 * (tokens.pixel_kept + tokens.audio_kept) * d * dd  # encoder_to_decoder (CLS dropped)
             + 2 * tokens.pixel * dd * pixel_out + 2 * tokens.audio * dd * audio_out)
    stacks = (layer_flops(tokens.pixel, dd, di, batch) + layer_flops(tokens.audio, dd, di, batch)) * layers
    return stacks + FlopCount(heads=batch * heads)


def classifier_flops(config: Any, batch: int = 1) -> FlopCount:
    """TvltForAudioVisualClassification head on the pooled token: [pooler d->d,] d->2d, 2d->num_labels."""
    d = _get(config, "hidden_size")
    labels = getattr(config, "num_labels", 2)
    pooler = 2 * d * d if getattr(config, "classifier_pooler", False) else 0
    return FlopCount(heads=batch * (pooler + 2 * d * 2 * d + 2 * 2 * d * labels))


def matching_head_flops(config: Any, batch: int = 1) -> FlopCount:
    """VAM head on CLS: pooler d->d, then d->1."""
    d = _get(config, "hidden_size")
    return FlopCount(heads=batch * (2 * d * d + 2 * d))


def finetune_forward_flops(config: Any, num_frames: int, audio_frames: int, batch: int = 1,
                           cls_only_last_layer: bool = True) -> FlopCount:
    """Fine-tuning forward: unmasked encoder + classifier head.

    ``cls_only_last_layer=True`` counts this project's work (its last layer computes only CLS, which is all the
    head reads); ``False`` the reference's (every token through every layer).
    """
    encoder = encoder_forward_flops(config, num_frames, audio_frames, batch=batch,
                                    cls_only_last_layer=cls_only_last_layer)
    return encoder + classifier_flops(config, batch)


def pretrain_forward_flops(config: Any, num_frames: int, audio_frames: int, batch: int = 1,
                           cls_only_last_layer: bool = True) -> FlopCount:
    """Pretraining forward (MAE + VAM, train mode): unmasked VAM encoder pass + matching head, masked MAE
    encoder pass (config mask ratios), decoder on both streams. Tasks switched off in the config are left out.

    ``cls_only_last_layer`` applies to the VAM pass (True: this project, False: the reference); the MAE pass
    needs every token.
    """
    total = FlopCount()
    if getattr(config, "task_matching", True):
        total = total + encoder_forward_flops(config, num_frames, audio_frames, batch=batch,
                                              cls_only_last_layer=cls_only_last_layer)
        total = total + matching_head_flops(config, batch)
    if getattr(config, "task_mae", True):
        total = total + encoder_forward_flops(config, num_frames, audio_frames, _get(config, "pixel_mask_ratio"),
                                              _get(config, "audio_mask_ratio"), batch)
        total = total + decoder_forward_flops(config, num_frames, audio_frames, batch=batch)
    return total


def training_step_flops(forward: FlopCount) -> FlopCount:
    """Forward + backward: 3x forward (backward computes activation and weight gradients, one matmul each),
    2x for the patch embeddings (their inputs, the pixel and audio values, need no gradient)."""
    return forward * 3 + FlopCount(patch_embed=-forward.patch_embed)


def finetune_step_flops(config: Any, num_frames: int, audio_frames: int, batch: int = 1,
                        cls_only_last_layer: bool = True) -> FlopCount:
    return training_step_flops(finetune_forward_flops(config, num_frames, audio_frames, batch, cls_only_last_layer))


def pretrain_step_flops(config: Any, num_frames: int, audio_frames: int, batch: int = 1,
                        cls_only_last_layer: bool = True) -> FlopCount:
    return training_step_flops(pretrain_forward_flops(config, num_frames, audio_frames, batch, cls_only_last_layer))


def batch_flops(config: Any, batch: Mapping[str, Any], task: str, training: bool) -> int:
    """Model FLOPs of one batch as the model runs it: the padded shapes of ``pixel_values`` (B, T, C, H, W) and
    ``audio_values`` (B, 1, Ta, F), for ``task`` "finetune" (encoder + classifier) or "pretrain" (the
    TvltForPreTraining tasks the config switches on); a training step when ``training`` (3x forward), else a
    forward. This is what :class:`tvlt.lit.callbacks.ThroughputMonitor` logs as FLOP/s and MFU.

    Raises:
        ValueError: an unknown ``task``.
    """
    b, t = batch["pixel_values"].shape[:2]
    audio_frames = batch["audio_values"].shape[2]
    if task == "finetune":
        forward = finetune_forward_flops(config, t, audio_frames, b)
    elif task == "pretrain":
        forward = pretrain_forward_flops(config, t, audio_frames, b)
    else:
        raise ValueError(f"FLOP task must be 'finetune' or 'pretrain', got {task!r}")
    return (training_step_flops(forward) if training else forward).total


def attention_crossover_tokens(hidden: int, intermediate: int) -> tuple[int, int]:
    """Sequence lengths where attention FLOPs (4 L^2 d) equal the MLP's (4 L d i) -> L = i, and equal all linear
    layers' (8 L d^2 + 4 L d i) -> L = 2d + i."""
    return intermediate, 2 * hidden + intermediate


def model_flop_utilization(flops_per_step: float, seconds_per_step: float, peak_flops: float) -> float:
    """Achieved FLOP/s over the machine's peak (0..1)."""
    if seconds_per_step <= 0 or peak_flops <= 0:
        raise ValueError("seconds_per_step and peak_flops must be positive")
    return flops_per_step / seconds_per_step / peak_flops


def _main() -> None:
    from tvlt import TvltConfig

    parser = argparse.ArgumentParser(prog="python -m tvlt.flops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--audio-frames", type=int, default=512, help="spectrogram frames (~86.13 per second)")
    parser.add_argument("--audio-seconds", type=float, default=None, help="instead of --audio-frames")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    frames = audio_frames_for_seconds(args.audio_seconds) if args.audio_seconds else args.audio_frames
    pt = 16
    config = TvltConfig(num_frames=max(8, args.frames),
                        spectrogram_length=max(2048, math.ceil(frames / pt) * pt), num_labels=1)
    tokens = token_counts(config, args.frames, frames)
    print(f"TVLT-base, {args.frames} frames, {frames} audio frames, batch {args.batch}: "
          f"{tokens.pixel} video + {tokens.audio} audio tokens, encoder length {tokens.sequence}")
    rows = {
        "encoder forward": encoder_forward_flops(config, args.frames, frames, batch=args.batch),
        "fine-tuning step": finetune_step_flops(config, args.frames, frames, args.batch),
        "  reference": finetune_step_flops(config, args.frames, frames, args.batch, cls_only_last_layer=False),
        "pretraining step": pretrain_step_flops(config, args.frames, frames, args.batch),
        "  reference ": pretrain_step_flops(config, args.frames, frames, args.batch, cls_only_last_layer=False),
    }
    for name, count in rows.items():
        parts = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in count.as_dict().items() if k != "total")
        print(f"  {name:18s} {count.total / 1e9:9.1f} GFLOP  ({parts})")
    print("  (steps: this project's last layer computes only CLS for the heads; reference: every row)")


if __name__ == "__main__":
    _main()
