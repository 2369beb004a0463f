"""Patch embeddings and the learned position / temporal / frequency / type tables of TVLT.

Token order (HF port and original release agree): video tokens are frame-major, raster order within a frame
(index = frame * patches_per_frame + row * cols + col); audio tokens are time-major with frequency innermost
(index = time_patch * freq_patches + freq_patch). Tables are added before MAE masking, as in MAE.
"""

from __future__ import annotations

import torch
from torch import nn

from tvlt.configuration import TvltConfig


class TvltPatchProjection(nn.Module):
    """Conv2d with kernel = stride = patch size (key ``projection``)."""

    def __init__(self, in_channels: int, hidden_size: int, patch_size: list[int]) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_channels, hidden_size, kernel_size=tuple(patch_size),
                                    stride=tuple(patch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W) -> tokens (N, (H/ph)*(W/pw), D), raster order."""
        return self.projection(x).flatten(2).transpose(1, 2)


def tile_positions(within: torch.Tensor, across: torch.Tensor) -> torch.Tensor:
    """Position term for a grid: ``within`` (1, I, D) cycles fastest, ``across`` (1, A, D) slowest.

    Returns (1, A*I, D) with row ``a*I + i`` = across[a] + within[i].
    """
    return (across[:, :, None, :] + within[:, None, :, :]).flatten(1, 2)


class TvltPixelEmbeddings(nn.Module):
    """Video frames (B, T, C, H, W) -> tokens (B, T*Npf, D) with pos_embed_v, temporal_embed, type_embed_v."""

    def __init__(self, config: TvltConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embeddings = TvltPatchProjection(config.num_image_channels, config.hidden_size,
                                                    config.image_patch_size)
        d = config.hidden_size
        self.num_patches_per_image = config.num_patches_per_frame
        self.type_embed_v = nn.Parameter(torch.zeros(1, 1, d))
        self.temporal_embed = nn.Parameter(torch.zeros(1, config.num_frames, d))
        self.pos_embed_v = nn.Parameter(torch.zeros(1, self.num_patches_per_image, d))

    def check_input(self, pixel_values: torch.Tensor) -> None:
        c = self.config
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be (B, T, C, H, W); got shape {tuple(pixel_values.shape)}")
        _, t, ch, h, w = pixel_values.shape
        if ch != c.num_image_channels or h != c.image_size or w != c.image_size:
            raise ValueError(
                f"pixel_values: expected {c.num_image_channels} channels of {c.image_size}x{c.image_size} "
                f"(config num_image_channels/image_size); got shape {tuple(pixel_values.shape)}"
            )
        if t > c.num_frames:
            raise ValueError(f"pixel_values has {t} frames; config.num_frames allows at most {c.num_frames}")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.check_input(pixel_values)
        b, t = pixel_values.shape[:2]
        tokens = self.patch_embeddings(pixel_values.flatten(0, 1))  # (B*T, Npf, D)
        tokens = tokens.reshape(b, t * self.num_patches_per_image, -1)
        position = tile_positions(self.pos_embed_v, self.temporal_embed[:, :t])
        return tokens + position + self.type_embed_v


class TvltAudioEmbeddings(nn.Module):
    """Spectrograms (B, C, T, F) -> tokens (B, (T/pt)*(F/pf), D) with freq_embed, pos_embed_a, type_embed_a."""

    def __init__(self, config: TvltConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embeddings = TvltPatchProjection(config.num_audio_channels, config.hidden_size,
                                                    config.audio_patch_size)
        d = config.hidden_size
        self.num_freq_patches = config.num_freq_patches
        self.type_embed_a = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed_a = nn.Parameter(torch.zeros(1, config.max_audio_time_patches, d))
        self.freq_embed = nn.Parameter(torch.zeros(1, self.num_freq_patches, d))

    def check_input(self, audio_values: torch.Tensor) -> None:
        c = self.config
        if audio_values.ndim != 4:
            raise ValueError(f"audio_values must be (B, C, T, F); got shape {tuple(audio_values.shape)}")
        _, ch, t, f = audio_values.shape
        if ch != c.num_audio_channels or f != c.frequency_length:
            raise ValueError(
                f"audio_values: expected {c.num_audio_channels} channel(s) x {c.frequency_length} mel bins "
                f"(config num_audio_channels/frequency_length); got shape {tuple(audio_values.shape)}"
            )
        if t > c.spectrogram_length or t % c.audio_patch_size[0] or t == 0:
            raise ValueError(
                f"audio_values has {t} time frames; it must be a positive multiple of "
                f"{c.audio_patch_size[0]} and at most spectrogram_length={c.spectrogram_length}"
            )

    def forward(self, audio_values: torch.Tensor) -> torch.Tensor:
        self.check_input(audio_values)
        tokens = self.patch_embeddings(audio_values)  # (B, Tp*Fp, D)
        time_patches = tokens.shape[1] // self.num_freq_patches
        position = tile_positions(self.freq_embed, self.pos_embed_a[:, :time_patches])
        return tokens + position + self.type_embed_a
