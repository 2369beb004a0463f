"""MAE masking for TVLT: noise, padding-safe random masking, mask tokens, patchify and the masked MSE loss.

Masking follows MAE (He et al. 2022): per-sample uniform noise, argsort, keep the ``len_keep`` smallest; the
encoder then sees only kept tokens ("mask-first"), and ``ids_restore`` un-shuffles the decoder input.

Padding-safe variant (this project; the references differ only when a padding mask has zeros):

- ``len_keep = int(L * (1 - ratio))`` for every sample (same token count, so samples batch together);
- the ratio is applied to each sample's *real* tokens: it keeps ``max(1, int(n_real * (1 - ratio)))`` real
  tokens (lowest noise first), fills the remaining kept slots with padding tokens (which the encoder's key
  mask hides), and only if there is not enough padding keeps further real tokens;
- label masks are 1 only on masked real tokens: padding is never a reconstruction target.

Without padding this reduces exactly to the reference: ``ids_shuffle = argsort(noise)``. The Hugging Face port
instead keeps the ``len_keep`` lowest-noise tokens whatever they are, so a sample with little real content can
keep only padding (its encoder then sees no real token of that modality) and its real masking ratio is random.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MaskingResult:
    """Output of :func:`random_masking`. Shapes: kept (B, K, D), masks (B, L), ids (B, L)."""

    kept: torch.Tensor
    label_masks: torch.Tensor  # float, 1 = masked real token (a reconstruction target), original order
    ids_restore: torch.Tensor  # argsort(ids_shuffle): position of each original token in the shuffled order
    ids_keep: torch.Tensor  # (B, K) original indices of kept tokens, in kept order
    kept_attention_mask: torch.Tensor | None  # (B, K) bool, True = real kept token; None when no padding mask


def pixel_noise(batch: int, num_tokens: int, device: torch.device,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform [0, 1) noise (B, Np), one value per video patch (drawn like the reference: torch.rand)."""
    return torch.rand(batch, num_tokens, device=device, generator=generator)


def audio_noise(batch: int, num_tokens: int, num_freq_patches: int, mask_type: str, device: torch.device,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform noise (B, Na) for audio patches.

    "frame-level": one value per time patch, shared by its ``num_freq_patches`` frequency patches (drawn as
    (B, Na / num_freq_patches) then repeated, as in the reference). "patch-level": i.i.d. per patch.
    """
    if mask_type == "frame-level":
        frames = torch.rand(batch, num_tokens // num_freq_patches, device=device, generator=generator)
        return expand_frame_noise(frames, num_freq_patches)
    if mask_type == "patch-level":
        return torch.rand(batch, num_tokens, device=device, generator=generator)
    raise ValueError(f"audio_mask_type must be 'frame-level' or 'patch-level', got {mask_type!r}")


def expand_frame_noise(frames: torch.Tensor, num_freq_patches: int) -> torch.Tensor:
    """(B, Tp) per-time-patch noise -> (B, Tp * num_freq_patches), time-major."""
    return frames[:, :, None].expand(-1, -1, num_freq_patches).reshape(frames.shape[0], -1)


def keep_count(num_tokens: int, ratio: float) -> int:
    """Tokens kept per sample: ``int(L * (1 - ratio))`` (reference), at least 1."""
    return max(1, int(num_tokens * (1 - ratio)))


def shuffle_order(noise: torch.Tensor, real: torch.Tensor | None, ratio: float, len_keep: int) -> torch.Tensor:
    """ids_shuffle (B, L): kept tokens first (ascending noise), then the rest.

    ``real`` (B, L) bool marks non-padding tokens; None means all real (then this is ``argsort(noise)``).
    """
    order = torch.argsort(noise, dim=1)
    if real is None or bool(real.all()):
        return order
    num_tokens = noise.shape[1]
    real_sorted = real.gather(1, order)
    n_real = real.sum(1, keepdim=True)
    keep_real = (n_real.double() * (1 - ratio)).floor().long().clamp(min=1, max=len_keep)
    # rank of each real token among real tokens (by noise), and of each padding token among padding
    real_rank = torch.cumsum(real_sorted.long(), 1) - 1
    pad_rank = torch.cumsum((~real_sorted).long(), 1) - 1
    # groups: 0 = kept real, 1 = padding (fills kept slots first), 2 = masked real
    group = torch.where(real_sorted, torch.where(real_rank < keep_real, 0, 2), 1)
    within = torch.where(real_sorted, real_rank, pad_rank)
    key = group * num_tokens + within
    return order.gather(1, torch.argsort(key, dim=1))


def random_masking(tokens: torch.Tensor, noise: torch.Tensor, ratio: float,
                   attention_mask: torch.Tensor | None = None) -> MaskingResult:
    """MAE random masking of ``tokens`` (B, L, D) with ``noise`` (B, L); small noise = keep.

    ``attention_mask`` (B, L): 1/True = real token, 0 = padding. Raises ValueError on shape mismatch.
    """
    b, num_tokens, d = tokens.shape
    if noise.shape != (b, num_tokens):
        raise ValueError(f"noise must have shape {(b, num_tokens)}, got {tuple(noise.shape)}")
    real = None
    if attention_mask is not None:
        if attention_mask.shape != (b, num_tokens):
            raise ValueError(f"attention mask must have shape {(b, num_tokens)}, got {tuple(attention_mask.shape)}")
        real = attention_mask.bool()
    len_keep = keep_count(num_tokens, ratio)
    ids_shuffle = shuffle_order(noise, real, ratio, len_keep)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    kept = tokens.gather(1, ids_keep[:, :, None].expand(-1, -1, d))
    masked = torch.ones(b, num_tokens, device=tokens.device)
    masked[:, :len_keep] = 0
    label_masks = masked.gather(1, ids_restore)
    kept_mask = None
    if real is not None:
        label_masks = label_masks * real.to(label_masks.dtype)
        kept_mask = real.gather(1, ids_keep)
    return MaskingResult(kept, label_masks, ids_restore, ids_keep, kept_mask)


def restore_with_mask_tokens(kept: torch.Tensor, mask_token: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """Append mask tokens after the kept tokens and un-shuffle: (B, K, D) -> (B, L, D)."""
    b, k, d = kept.shape
    num_tokens = ids_restore.shape[1]
    filler = mask_token.to(kept.dtype).expand(b, num_tokens - k, d)
    full = torch.cat([kept, filler], dim=1)
    return full.gather(1, ids_restore[:, :, None].expand(-1, -1, d))


def patchify_pixels(pixel_values: torch.Tensor, patch_size: list[int]) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T*(H/ph)*(W/pw), ph*pw*C); within a patch: row, column, channel fastest."""
    b, t, c, h, w = pixel_values.shape
    ph, pw = patch_size
    x = pixel_values.reshape(b, t, c, h // ph, ph, w // pw, pw)
    x = x.permute(0, 1, 3, 5, 4, 6, 2)  # b t gh gw ph pw c
    return x.reshape(b, t * (h // ph) * (w // pw), ph * pw * c)


def unpatchify_pixels(patches: torch.Tensor, num_frames: int, channels: int, image_size: int,
                      patch_size: list[int]) -> torch.Tensor:
    """Inverse of :func:`patchify_pixels`: (B, T*Npf, ph*pw*C) -> (B, T, C, H, W)."""
    b = patches.shape[0]
    ph, pw = patch_size
    gh, gw = image_size // ph, image_size // pw
    x = patches.reshape(b, num_frames, gh, gw, ph, pw, channels).permute(0, 1, 6, 2, 4, 3, 5)
    return x.reshape(b, num_frames, channels, image_size, image_size)


def patchify_audio(audio_values: torch.Tensor, patch_size: list[int]) -> torch.Tensor:
    """(B, C, T, F) -> (B, (T/pt)*(F/pf), pt*pf*C); within a patch: time row, frequency column, channel."""
    b, c, t, f = audio_values.shape
    pt, pf = patch_size
    x = audio_values.reshape(b, c, t // pt, pt, f // pf, pf).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (t // pt) * (f // pf), pt * pf * c)


def unpatchify_audio(patches: torch.Tensor, channels: int, frequency_length: int,
                     patch_size: list[int]) -> torch.Tensor:
    """Inverse of :func:`patchify_audio`: (B, Na, pt*pf*C) -> (B, C, T, F)."""
    b, n, _ = patches.shape
    pt, pf = patch_size
    gf = frequency_length // pf
    gt = n // gf
    x = patches.reshape(b, gt, gf, pt, pf, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, gt * pt, gf * pf)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, label_masks: torch.Tensor) -> torch.Tensor:
    """MAE loss: per-patch mean squared error, averaged over masked real patches of the whole batch.

    pred/target (B, L, P), label_masks (B, L). Reference: sum(e * mask) / sum(mask); here the denominator is
    clamped to 1, so a batch with nothing to reconstruct gives 0, not NaN (a sample with no target adds 0).
    """
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    mask = label_masks.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1.0)
