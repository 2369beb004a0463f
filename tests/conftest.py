"""Shared fixtures: the media folder and a tiny TVLT config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tvlt.configuration import TvltConfig

MEDIA_DIR = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """tests/data: the small real clips that ship with the repository (see tests/data/README.md)."""
    if not MEDIA_DIR.is_dir():
        pytest.fail(f"test media folder not found: {MEDIA_DIR}")
    return MEDIA_DIR


# The one tiny TVLT of the tests. TINY_WIDTHS: its widths and depths only, for tests that feed full-size inputs
# (224x224 frames, 128 mel bins: the processors' real geometry); TINY_CONFIG: small inputs too (tests/test_flops.py
# computes its FLOP counts by hand from these values).
TINY_WIDTHS = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    decoder_hidden_size=16, decoder_num_hidden_layers=2, decoder_num_attention_heads=2,
    decoder_intermediate_size=32,
)
TINY_CONFIG = dict(
    image_size=32, image_patch_size=[8, 8], num_frames=2,  # 16 patches per frame
    spectrogram_length=64, frequency_length=16, audio_patch_size=[4, 4],  # up to 16 x 4 audio patches
    **TINY_WIDTHS,
)


@pytest.fixture
def tiny_config() -> TvltConfig:
    """A TVLT config small enough for CPU unit tests (hidden 32, 2 layers, 32x32 frames, 16 mel bins)."""
    return TvltConfig(**TINY_CONFIG)


@pytest.fixture(autouse=True)
def fresh_once_notes(monkeypatch):
    """Notes logged once per process (arguments without effect) start unlogged in every test, whatever ran
    before it in the same process."""
    import tvlt.processing_utils

    monkeypatch.setattr(tvlt.processing_utils, "_noted", set())
