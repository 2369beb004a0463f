"""TVLT models: TvltModel (encoder), TvltForPreTraining (MAE + VAM), TvltForAudioVisualClassification.

Forward arguments, output fields and state-dict keys follow the Hugging Face port (transformers <= 4.40.2), so
its checkpoints load strictly (``load_state_dict(hf_model.state_dict())``). Numerics match it to fp32 rounding
(see tests/test_parity_model.py). Deliberate differences, all documented in docs/model.md:

- padding-safe MAE masking, and an MAE decoder that masks padding keys (both identical to the reference when
  there is no padding; see tvlt.masking);
- the CLS token is always a valid attention key (the reference borrows ``pixel_mask[:, :1]``, which after
  masking can be a padding token);
- a padding mask is used when either modality's mask is given (the reference needs both);
- ``use_mean_pooling=True`` mean-pools the real (non-padding) tokens for classification (the reference still
  reads CLS);
- TvltForPreTraining allows ``task_mae=False`` or ``task_matching=False``, runs MAE in eval mode on request
  (``compute_mae=True``, for validation losses; by default only in training, as the port), and an empty MAE
  target set gives loss 0 instead of NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from tvlt.configuration import TvltConfig
from tvlt.embeddings import TvltAudioEmbeddings, TvltPixelEmbeddings, tile_positions
from tvlt.layers import TvltDecoder, TvltEncoder, TvltMAEHead, TvltMatchingHead, TvltPooler
from tvlt.modeling_utils import HFModelMixin
from tvlt.masking import (
    audio_noise as draw_audio_noise,
    expand_frame_noise,
    masked_mse,
    patchify_audio,
    patchify_pixels,
    pixel_noise as draw_pixel_noise,
    random_masking,
    restore_with_mask_tokens,
)


# ----------------------------------------------------------------------------------------------------- outputs
def extra_field() -> Any:
    """A ModelOutput field of this project only: readable as an attribute or ``out["name"]``, not in the tuple."""
    return field(default=None, metadata={"extra": True})


@dataclass
class ModelOutput:
    """Dataclass output with Hugging Face ``ModelOutput`` semantics.

    Attribute access (``out.logits``), key access (``out["logits"]``), and tuple access (``out[0]``,
    ``out.to_tuple()``) where None fields are skipped. Iterating yields the names of non-None fields (dict-like).
    ``return_tuple()`` is what ``return_dict=False`` returns: the port's tuple, position for position. Fields
    declared with :func:`extra_field` (this project's additions) are attributes and string keys only, outside the
    tuple, iteration and length, so those match the port's output class.
    """

    def _port_fields(self) -> list[str]:
        return [f.name for f in fields(self) if not f.metadata.get("extra")]

    def return_tuple(self) -> tuple[Any, ...]:
        return self.to_tuple()

    def _optional_tail(self) -> tuple[Any, ...]:
        return tuple(x for x in (self.hidden_states, self.attentions) if x is not None)

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v for v in (getattr(self, name) for name in self._port_fields()) if v is not None)

    def keys(self) -> list[str]:
        return [name for name in self._port_fields() if getattr(self, name) is not None]

    def values(self) -> list[Any]:
        return list(self.to_tuple())

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            if getattr(self, key, None) is None or key not in {f.name for f in fields(self)}:
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()


@dataclass
class TvltModelOutput(ModelOutput):
    """Encoder output. L = 1 + kept pixel tokens + kept audio tokens.

    last_hidden_state (B, L, D) after the final LayerNorm (none when use_mean_pooling); last_pixel_hidden_state
    (B, Np_kept, D); last_audio_hidden_state (B, Na_kept, D); pixel/audio_label_masks (B, Np/Na) float, 1 = masked
    real token; pixel/audio_ids_restore (B, Np/Na) when masked; hidden_states: embeddings + every layer (before the
    final LayerNorm); attentions: per layer (B, heads, L, L).
    """

    last_hidden_state: torch.Tensor | None = None
    last_pixel_hidden_state: torch.Tensor | None = None
    last_audio_hidden_state: torch.Tensor | None = None
    pixel_label_masks: torch.Tensor | None = None
    audio_label_masks: torch.Tensor | None = None
    pixel_ids_restore: torch.Tensor | None = None
    audio_ids_restore: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None

    def return_tuple(self) -> tuple[Any, ...]:
        """The first seven fields always (None where not masked), then hidden states / attentions if present."""
        return (self.last_hidden_state, self.last_pixel_hidden_state, self.last_audio_hidden_state,
                self.pixel_label_masks, self.audio_label_masks, self.pixel_ids_restore,
                self.audio_ids_restore) + self._optional_tail()


@dataclass
class TvltForPreTrainingOutput(ModelOutput):
    """Pretraining output. loss = matching_loss + pixel_loss + audio_loss (terms that ran).

    matching_logits (B, 1); pixel_logits (B, Np, ph*pw*C); audio_logits (B, Na, pt*pf*C). The fields after
    ``attentions`` are this project's additions (for logging and reconstruction plots): attributes and string
    keys, outside ``to_tuple()`` / ``keys()`` / ``len()``, which match the port's class.
    """

    loss: torch.Tensor | None = None
    matching_logits: torch.Tensor | None = None
    pixel_logits: torch.Tensor | None = None
    audio_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    matching_loss: torch.Tensor | None = extra_field()
    pixel_loss: torch.Tensor | None = extra_field()
    audio_loss: torch.Tensor | None = extra_field()
    pixel_label_masks: torch.Tensor | None = extra_field()
    audio_label_masks: torch.Tensor | None = extra_field()

    def return_tuple(self) -> tuple[Any, ...]:
        """(loss if computed, matching_logits, pixel_logits, audio_logits), then hidden states / attentions if
        present; this project's extra fields are not in the tuple."""
        loss = () if self.loss is None else (self.loss,)
        return loss + (self.matching_logits, self.pixel_logits, self.audio_logits) + self._optional_tail()


@dataclass
class TvltClassifierOutput(ModelOutput):
    """Classification output (fields of HF's SequenceClassifierOutput). logits (B, num_labels)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None

    def return_tuple(self) -> tuple[Any, ...]:
        """(loss if computed, logits, None, None, None), then hidden states / attentions if present: the port
        slices its encoder tuple from index 4, so three empty slots sit before the hidden states."""
        loss = () if self.loss is None else (self.loss,)
        return loss + (self.logits, None, None, None) + self._optional_tail()


# ------------------------------------------------------------------------------------------------- base class
class TvltPreTrainedModel(HFModelMixin, nn.Module):
    """Weight init and forward flags shared by the TVLT models; the Hugging Face model surface (device, dtype,
    gradient checkpointing, save/load, ...) comes from :class:`tvlt.modeling_utils.HFModelMixin`."""

    config_class = TvltConfig
    base_model_prefix = "tvlt"

    def __init__(self, config: TvltConfig) -> None:
        super().__init__()
        if not isinstance(config, TvltConfig):
            raise TypeError(f"config must be a TvltConfig, got {type(config).__name__}")
        config.validate()
        self.config = config

    def post_init(self) -> None:
        self.apply(self._init_weights)
        self._apply_config_gradient_checkpointing()

    def _init_weights(self, module: nn.Module) -> None:
        """HF port: Linear/Conv N(0, initializer_range) with zero bias; LayerNorm 1/0; tables stay zero."""
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters that skip weight decay when decay is restricted (``exclude_no_decay`` of the
        LightningModules, whose optimizer groups come from here): biases and norm weights (every 0-/1-D tensor) and
        free tables and tokens (a parameter that is not the ``.weight`` of a layer: ``cls_embedding``,
        ``pixel_embeddings.pos_embed_v``, ``pixel_mask_token``, ...). Linear and patch-projection weights decay."""
        return {name for name, param in self.named_parameters() if param.ndim <= 1 or not name.endswith(".weight")}

    def _flags(self, output_attentions, output_hidden_states, return_dict) -> tuple[bool, bool, bool]:
        c = self.config
        return (c.output_attentions if output_attentions is None else output_attentions,
                c.output_hidden_states if output_hidden_states is None else output_hidden_states,
                c.use_return_dict if return_dict is None else return_dict)


def _as_bool_mask(mask: torch.Tensor | None, expected: tuple[int, int], name: str) -> torch.Tensor | None:
    if mask is None:
        return None
    if tuple(mask.shape) != expected:
        raise ValueError(f"{name} must have shape (B, tokens) = {expected}, got {tuple(mask.shape)}")
    return mask != 0


def _key_mask_of(mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, N) 0/1 padding mask -> bool key mask (True = real), or None."""
    return None if mask is None else mask != 0


# ------------------------------------------------------------------------------------------------- TvltModel
class TvltModel(TvltPreTrainedModel):
    """The TVLT encoder: [CLS] + video patch tokens + audio patch tokens through ``num_hidden_layers`` layers.

    Inputs: pixel_values (B, T, C, H, W) in [-1, 1]; audio_values (B, 1, T_audio, F) normalised log-mel
    (F = 128 bins, T_audio a multiple of 16); pixel_mask (B, T*Npf) and audio_mask (B, Na), 1 = real patch.
    With ``mask_pixel`` / ``mask_audio`` the tokens are MAE-masked before the encoder (it sees only kept ones).
    """

    def __init__(self, config: TvltConfig) -> None:
        super().__init__(config)
        self.cls_embedding = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.pixel_embeddings = TvltPixelEmbeddings(config)
        self.audio_embeddings = TvltAudioEmbeddings(config)
        self.encoder = TvltEncoder(config)
        self.layernorm = None
        if not config.use_mean_pooling:
            self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        audio_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        mask_pixel: bool = False,
        mask_audio: bool = False,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        pixel_noise: torch.Tensor | None = None,
        audio_noise: torch.Tensor | None = None,
        first_token_only: bool = False,
    ) -> TvltModelOutput | tuple[torch.Tensor, ...]:
        """Encode.

        ``pixel_noise`` (B, Np) / ``audio_noise`` (B, Na), or (B, Na/F_patches) for frame-level masking, replace
        the uniform draws (drawn otherwise in the reference's order: pixel first, then audio).
        ``first_token_only=True`` computes only the CLS token in the last layer (exact; for heads that read CLS,
        less work): ``last_hidden_state`` is then (B, 1, D) and the per-modality states are empty (not applied
        when hidden states or attentions are requested).

        Raises ValueError on wrong input or mask shapes.
        """
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict)
        c = self.config
        pixel_tokens = self.pixel_embeddings(pixel_values)
        audio_tokens = self.audio_embeddings(audio_values)
        if audio_tokens.shape[0] != pixel_tokens.shape[0]:
            raise ValueError(f"batch sizes differ: pixel_values {pixel_tokens.shape[0]}, "
                             f"audio_values {audio_tokens.shape[0]}")
        b, num_pixel, _ = pixel_tokens.shape
        num_audio = audio_tokens.shape[1]
        pixel_real = _as_bool_mask(pixel_mask, (b, num_pixel), "pixel_mask")
        audio_real = _as_bool_mask(audio_mask, (b, num_audio), "audio_mask")

        pixel_label_masks = audio_label_masks = pixel_ids_restore = audio_ids_restore = None
        if mask_pixel:
            if pixel_noise is None:
                pixel_noise = draw_pixel_noise(b, num_pixel, pixel_tokens.device)
            result = random_masking(pixel_tokens, pixel_noise.to(pixel_tokens.device), c.pixel_mask_ratio,
                                    pixel_real)
            pixel_tokens, pixel_real = result.kept, result.kept_attention_mask
            pixel_label_masks, pixel_ids_restore = result.label_masks, result.ids_restore
        if mask_audio:
            nf = c.num_freq_patches
            if audio_noise is None:
                audio_noise = draw_audio_noise(b, num_audio, nf, c.audio_mask_type, audio_tokens.device)
            elif audio_noise.shape == (b, num_audio // nf) and num_audio != num_audio // nf:
                audio_noise = expand_frame_noise(audio_noise, nf)
            result = random_masking(audio_tokens, audio_noise.to(audio_tokens.device), c.audio_mask_ratio,
                                    audio_real)
            audio_tokens, audio_real = result.kept, result.kept_attention_mask
            audio_label_masks, audio_ids_restore = result.label_masks, result.ids_restore

        key_mask = self._key_mask(pixel_real, audio_real, pixel_tokens, audio_tokens)
        cls = self.cls_embedding.expand(b, -1, -1).to(pixel_tokens.dtype)
        hidden = torch.cat([cls, pixel_tokens, audio_tokens], dim=1)
        implementation = "eager" if output_attentions else c.attn_implementation
        hidden, all_hidden, all_attn = self.encoder(hidden, key_mask, implementation, output_attentions,
                                                    output_hidden_states, first_token_only)
        if self.layernorm is not None:
            hidden = self.layernorm(hidden)
        num_pixel_kept = pixel_tokens.shape[1]
        out = TvltModelOutput(
            last_hidden_state=hidden,
            last_pixel_hidden_state=hidden[:, 1:1 + num_pixel_kept],
            last_audio_hidden_state=hidden[:, 1 + num_pixel_kept:],
            pixel_label_masks=pixel_label_masks,
            audio_label_masks=audio_label_masks,
            pixel_ids_restore=pixel_ids_restore,
            audio_ids_restore=audio_ids_restore,
            hidden_states=all_hidden,
            attentions=all_attn,
        )
        return out if return_dict else out.return_tuple()

    @staticmethod
    def _key_mask(pixel_real: torch.Tensor | None, audio_real: torch.Tensor | None, pixel_tokens: torch.Tensor,
                  audio_tokens: torch.Tensor) -> torch.Tensor | None:
        """(B, 1 + Np + Na) bool key mask, or None when every token is real (the fast path)."""
        if pixel_real is None and audio_real is None:
            return None
        b = pixel_tokens.shape[0]
        device = pixel_tokens.device
        if pixel_real is None:
            pixel_real = torch.ones(b, pixel_tokens.shape[1], dtype=torch.bool, device=device)
        if audio_real is None:
            audio_real = torch.ones(b, audio_tokens.shape[1], dtype=torch.bool, device=device)
        cls = torch.ones(b, 1, dtype=torch.bool, device=device)
        mask = torch.cat([cls, pixel_real, audio_real], dim=1)
        return None if bool(mask.all()) else mask


# ---------------------------------------------------------------------------------------- TvltForPreTraining
#: the pretraining loss terms, by the names of ``pretraining_loss``'s weights
PRETRAINING_TERMS = ("vam", "mae_pixel", "mae_audio")


def pretraining_loss(terms: dict[str, torch.Tensor | None],
                     weights: dict[str, float] | None = None) -> torch.Tensor | None:
    """The pretraining loss ``sum_k weights[k] * terms[k]`` over the terms that ran (not None), in float32; None when
    none ran. ``terms`` and ``weights`` are keyed by :data:`PRETRAINING_TERMS`; a missing weight is 1 (paper
    Sec. 3.3 and both references weigh VAM, pixel MAE and audio MAE equally). The model's ``loss`` and the
    pretraining LightningModule's (with its configured weights) are both this sum.

    Raises:
        ValueError: a key that is not one of :data:`PRETRAINING_TERMS`.
    """
    unknown = sorted((set(terms) | set(weights or {})) - set(PRETRAINING_TERMS))
    if unknown:
        raise ValueError(f"pretraining loss: unknown term(s) {unknown}; known: {list(PRETRAINING_TERMS)}")
    weights = weights or {}
    ran = [float(weights.get(k, 1.0)) * v.float() for k, v in terms.items() if v is not None]
    return torch.stack(ran).sum() if ran else None


class TvltForPreTraining(TvltPreTrainedModel):
    """TVLT with the pretraining heads: video-audio matching (VAM) and the MAE decoder for both modalities.

    ``loss = BCE(matching) + MSE(pixel MAE) + MSE(audio MAE)`` (:func:`pretraining_loss` with weights 1).
    The decoder (shared weights) runs separately on the pixel and audio streams, as in both references.
    """

    def __init__(self, config: TvltConfig) -> None:
        super().__init__(config)
        if not (config.task_matching or config.task_mae):
            raise ValueError("TvltConfig.task_matching / task_mae: at least one pretraining task must be enabled")
        self.tvlt = TvltModel(config)
        if config.task_matching:
            self.matching_head = TvltMatchingHead(config.hidden_size)
        if config.task_mae:
            d, dd = config.hidden_size, config.decoder_hidden_size
            self.encoder_to_decoder = nn.Linear(d, dd)
            self.pixel_mask_token = nn.Parameter(torch.zeros(1, 1, dd))
            self.audio_mask_token = nn.Parameter(torch.zeros(1, 1, dd))
            self.decoder = TvltDecoder(config)
            self.decoder_pixel_pos_embed = nn.Parameter(torch.zeros(1, config.num_patches_per_frame, dd))
            self.decoder_temporal_embed = nn.Parameter(torch.zeros(1, config.num_frames, dd))
            self.decoder_pixel_type_embed = nn.Parameter(torch.zeros(1, 1, dd))
            self.decoder_audio_pos_embed = nn.Parameter(torch.zeros(1, config.max_audio_time_patches, dd))
            self.decoder_freq_embed = nn.Parameter(torch.zeros(1, config.num_freq_patches, dd))
            self.decoder_audio_type_embed = nn.Parameter(torch.zeros(1, 1, dd))
            ph, pw = config.image_patch_size
            pt, pf = config.audio_patch_size
            self.pixel_mae_head = TvltMAEHead(dd, ph * pw * config.num_image_channels)
            self.audio_mae_head = TvltMAEHead(dd, pt * pf * config.num_audio_channels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        audio_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values_mixed: torch.Tensor | None = None,
        pixel_mask_mixed: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        pixel_noise: torch.Tensor | None = None,
        audio_noise: torch.Tensor | None = None,
        compute_mae: bool | None = None,
    ) -> TvltForPreTrainingOutput | tuple[torch.Tensor, ...]:
        """VAM on (pixel_values_mixed, audio_values) when task_matching and labels (B,) or (B, 1) of 0/1 or the
        mixed video is given (without a mixed video, pixel_values are used: all pairs matched); MAE on
        (pixel_values, audio_values) when task_mae and ``compute_mae`` (default None: in training mode only, as
        the port; True also in eval mode, e.g. for validation losses, with masks from the seeded RNG or the
        given noise).

        hidden_states/attentions come from the last encoder pass (the MAE pass when it runs).
        """
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict)
        c = self.config
        matching_logits = matching_loss = pixel_logits = audio_logits = pixel_loss = audio_loss = None
        pixel_label_masks = audio_label_masks = None
        encoder_out: TvltModelOutput | None = None

        if c.task_matching and (labels is not None or pixel_values_mixed is not None):
            video = pixel_values if pixel_values_mixed is None else pixel_values_mixed
            video_mask = pixel_mask if pixel_values_mixed is None else pixel_mask_mixed
            encoder_out = self.tvlt(video, audio_values, video_mask, audio_mask,
                                    output_attentions=output_attentions,
                                    output_hidden_states=output_hidden_states, return_dict=True,
                                    first_token_only=True)
            matching_logits = self.matching_head(encoder_out.last_hidden_state)
            if labels is not None:
                matching_loss = F.binary_cross_entropy_with_logits(
                    matching_logits.view(-1), labels.reshape(-1).to(matching_logits.dtype))

        if c.task_mae and (self.training if compute_mae is None else compute_mae):
            encoder_out = self.tvlt(pixel_values, audio_values, pixel_mask, audio_mask, mask_pixel=True,
                                    mask_audio=True, output_attentions=output_attentions,
                                    output_hidden_states=output_hidden_states, return_dict=True,
                                    pixel_noise=pixel_noise, audio_noise=audio_noise)
            pixel_logits, audio_logits = self._decode(encoder_out, pixel_values.shape[1], pixel_mask,
                                                      audio_mask)
            pixel_label_masks, audio_label_masks = encoder_out.pixel_label_masks, encoder_out.audio_label_masks
            pixel_loss = masked_mse(pixel_logits, patchify_pixels(pixel_values, c.image_patch_size),
                                    pixel_label_masks)
            audio_loss = masked_mse(audio_logits, patchify_audio(audio_values, c.audio_patch_size),
                                    audio_label_masks)

        out = TvltForPreTrainingOutput(
            loss=pretraining_loss({"vam": matching_loss, "mae_pixel": pixel_loss, "mae_audio": audio_loss}),
            matching_logits=matching_logits,
            pixel_logits=pixel_logits,
            audio_logits=audio_logits,
            hidden_states=encoder_out.hidden_states if encoder_out is not None else None,
            attentions=encoder_out.attentions if encoder_out is not None else None,
            matching_loss=matching_loss,
            pixel_loss=pixel_loss,
            audio_loss=audio_loss,
            pixel_label_masks=pixel_label_masks,
            audio_label_masks=audio_label_masks,
        )
        return out if return_dict else out.return_tuple()

    def _decode(self, encoder_out: TvltModelOutput, num_frames: int, pixel_mask: torch.Tensor | None,
                audio_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """MAE decoder on both streams -> pixel_logits (B, Np, ph*pw*C), audio_logits (B, Na, pt*pf*C).

        pixel_mask (B, Np) / audio_mask (B, Na), 1 = real patch, become the decoder's key masks, so padding (kept
        padding tokens carry encoder outputs computed from the padding values) never reaches a real position."""
        implementation = self.config.attn_implementation
        pixel = self.encoder_to_decoder(encoder_out.last_pixel_hidden_state)
        pixel = restore_with_mask_tokens(pixel, self.pixel_mask_token, encoder_out.pixel_ids_restore)
        pixel = pixel + tile_positions(self.decoder_pixel_pos_embed, self.decoder_temporal_embed[:, :num_frames])
        pixel = pixel + self.decoder_pixel_type_embed
        pixel_logits = self.pixel_mae_head(self.decoder(pixel, implementation, _key_mask_of(pixel_mask)))

        audio = self.encoder_to_decoder(encoder_out.last_audio_hidden_state)
        audio = restore_with_mask_tokens(audio, self.audio_mask_token, encoder_out.audio_ids_restore)
        time_patches = audio.shape[1] // self.config.num_freq_patches
        audio = audio + tile_positions(self.decoder_freq_embed, self.decoder_audio_pos_embed[:, :time_patches])
        audio = audio + self.decoder_audio_type_embed
        audio_logits = self.audio_mae_head(self.decoder(audio, implementation, _key_mask_of(audio_mask)))
        return pixel_logits, audio_logits


# --------------------------------------------------------------------------- TvltForAudioVisualClassification
class TvltForAudioVisualClassification(TvltPreTrainedModel):
    """TVLT encoder with an MLP head on the pooled output.

    Pooled output: the CLS token after the final LayerNorm (reference), or with ``use_mean_pooling=True`` the
    mean of the real (non-padding) pixel and audio tokens. Head (HF port): Linear(D, 2D), LayerNorm(2D,
    layer_norm_eps), GELU, Linear(2D, num_labels) as ``classifier.{0,1,3}``. With ``classifier_pooler=True``
    (original release): pooler dense+tanh, Linear, LayerNorm(eps 1e-5, torch default as in the release), GELU,
    Linear as ``classifier.{0.dense,1,2,4}``.

    Loss: :meth:`compute_loss`, the one definition of the head's loss (``forward`` with ``labels`` and the
    fine-tuning LightningModules both use it), chosen by ``config.loss_type``.
    """

    def __init__(self, config: TvltConfig) -> None:
        super().__init__(config)
        self.tvlt = TvltModel(config)
        d = config.hidden_size
        if config.classifier_pooler:
            self.classifier = nn.Sequential(TvltPooler(d), nn.Linear(d, 2 * d), nn.LayerNorm(2 * d, eps=1e-5),
                                            nn.GELU(), nn.Linear(2 * d, config.num_labels))
        else:
            self.classifier = nn.Sequential(nn.Linear(d, 2 * d), nn.LayerNorm(2 * d, eps=config.layer_norm_eps),
                                            nn.GELU(), nn.Linear(2 * d, config.num_labels))
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        audio_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        labels: torch.Tensor | None = None,
    ) -> TvltClassifierOutput | tuple[torch.Tensor, ...]:
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict)
        enc = self.tvlt(pixel_values, audio_values, pixel_mask, audio_mask, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=True,
                        first_token_only=not self.config.use_mean_pooling)
        pooled = self.pool(enc.last_hidden_state, pixel_mask, audio_mask)
        logits = self.classifier(pooled)
        loss = None if labels is None else self.compute_loss(logits, labels)
        out = TvltClassifierOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states,
                                   attentions=enc.attentions)
        return out if return_dict else out.return_tuple()

    def pool(self, hidden: torch.Tensor, pixel_mask: torch.Tensor | None,
             audio_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, L, D) -> (B, D): CLS, or the mean over real tokens when use_mean_pooling."""
        if not self.config.use_mean_pooling:
            return hidden[:, 0]
        tokens = hidden[:, 1:]
        if pixel_mask is None and audio_mask is None:
            return tokens.mean(dim=1)
        b, n = tokens.shape[:2]
        real = torch.ones(b, n, dtype=torch.bool, device=tokens.device)
        if pixel_mask is not None:
            real[:, :pixel_mask.shape[1]] = pixel_mask != 0
        if audio_mask is not None:
            real[:, n - audio_mask.shape[1]:] = audio_mask != 0
        weights = real.to(tokens.dtype)[:, :, None]
        return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor, class_weight: torch.Tensor | None = None,
                     pos_weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
        """The loss of ``config.loss_type`` on logits (B, num_labels); a scalar, the mean over the batch.

        - ``"regression"``: MSE against float labels, reshaped to the logits' shape when the sizes agree ((B,)
          against (B, 1): the port's ``MSELoss`` would broadcast them to (B, B)).
        - ``"classification"``: cross-entropy, as the port: integer labels (B,) are class indices; float labels of
          the logits' shape are class probabilities (soft targets). ``class_weight`` (num_labels,) rescales each
          class's term, ``label_smoothing`` in [0, 1) mixes the target with the uniform one.
        - ``"multi_label_classification"``: BCE-with-logits per label against float 0/1 labels (B, num_labels)
          (e.g. the six MOSEI emotions); ``pos_weight`` (num_labels,) multiplies each label's positive term.

        Raises:
            ValueError: multi-label labels whose shape is not the logits'.
        """
        labels = labels.to(logits.device)
        loss_type = self.config.loss_type
        if loss_type == "regression":
            target = labels.to(logits.dtype)
            if target.shape != logits.shape and target.numel() == logits.numel():
                target = target.reshape(logits.shape)
            return F.mse_loss(logits, target)
        if loss_type == "multi_label_classification":
            if labels.shape != logits.shape:
                raise ValueError(f"multi_label_classification: labels must have the logits' shape "
                                 f"{tuple(logits.shape)} (0/1 per label), got {tuple(labels.shape)}")
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=pos_weight)
        if labels.is_floating_point() and labels.shape == logits.shape:
            target = labels.to(logits.dtype)
        else:
            target = labels.long()
        return F.cross_entropy(logits, target, weight=class_weight, label_smoothing=label_smoothing)
