"""TvltConfig: defaults, validation errors naming the field, JSON round trips, reading HF config.json files."""

from __future__ import annotations

import json

import pytest
import transformers

from tvlt.configuration import TvltConfig

SPEC_DEFAULTS = dict(
    image_size=224, spectrogram_length=2048, frequency_length=128, image_patch_size=[16, 16],
    audio_patch_size=[16, 16], num_image_channels=3, num_audio_channels=1, num_frames=8, hidden_size=768,
    num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.02, layer_norm_eps=1e-6,
    qkv_bias=True, use_mean_pooling=False, decoder_num_attention_heads=16, decoder_hidden_size=512,
    decoder_num_hidden_layers=8, decoder_intermediate_size=2048, pixel_mask_ratio=0.75, audio_mask_ratio=0.15,
    audio_mask_type="frame-level", task_matching=True, task_mae=True, loss_type="classification",
)


def test_defaults_match_spec_and_reference():
    config = TvltConfig()
    reference = transformers.TvltConfig()
    for name, value in SPEC_DEFAULTS.items():
        assert getattr(config, name) == value, name
        assert getattr(reference, name) == value, name
    assert config.num_labels == reference.num_labels == 2
    assert config.classifier_pooler is False and config.attn_implementation == "sdpa"
    assert config.num_patches_per_frame == 196 and config.num_freq_patches == 8
    assert config.max_audio_time_patches == 128


@pytest.mark.parametrize("spelling", ["patch-level", "patch_level"])
def test_both_patch_level_spellings_normalise(spelling):
    assert TvltConfig(audio_mask_type=spelling).audio_mask_type == "patch-level"


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(audio_mask_type="tube"), "audio_mask_type"),
        (dict(hidden_size=100), "hidden_size"),
        (dict(decoder_hidden_size=100), "decoder_hidden_size"),
        (dict(image_patch_size=[15, 15]), "image_patch_size"),
        (dict(audio_patch_size=[16, 15]), "audio_patch_size"),
        (dict(audio_patch_size=[12, 16]), "audio_patch_size"),
        (dict(pixel_mask_ratio=1.0), "pixel_mask_ratio"),
        (dict(audio_mask_ratio=-0.1), "audio_mask_ratio"),
        (dict(loss_type="ranking"), "loss_type"),
        (dict(hidden_act="swish2"), "hidden_act"),
        (dict(num_frames=0), "num_frames"),
        (dict(attn_implementation="flash"), "attn_implementation"),
        (dict(layer_norm_eps=0), "layer_norm_eps"),
        (dict(num_labels=0), "num_labels"),
    ],
)
def test_bad_values_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"TvltConfig\.{field}"):
        TvltConfig(**kwargs)


def test_unknown_key_raises():
    with pytest.raises(ValueError, match="unknown key.*norm_pix_loss"):
        TvltConfig(norm_pix_loss=True)


def test_json_round_trip(tmp_path):
    config = TvltConfig(hidden_size=64, num_attention_heads=4, audio_mask_type="patch_level", num_labels=6,
                        classifier_pooler=True)
    path = config.save_pretrained(tmp_path)
    assert path.name == "config.json"
    data = json.loads(path.read_text())
    assert data["model_type"] == "tvlt" and data["hidden_size"] == 64 and data["num_labels"] == 6
    loaded = TvltConfig.from_pretrained(tmp_path)
    assert loaded == config and loaded.audio_mask_type == "patch-level"
    assert TvltConfig.from_json_file(path, hidden_size=128).hidden_size == 128


def test_reads_hugging_face_config_json(tmp_path):
    reference = transformers.TvltConfig(hidden_size=256, num_attention_heads=8, num_labels=1,
                                        loss_type="regression")
    reference.architectures = ["TvltForAudioVisualClassification"]
    reference.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert "transformers_version" in raw and "id2label" in raw  # the extra keys HF writes
    config = TvltConfig.from_pretrained(tmp_path)
    assert config.hidden_size == 256 and config.num_attention_heads == 8
    assert config.num_labels == 1 and config.loss_type == "regression"


def test_hf_can_read_our_config(tmp_path):
    TvltConfig(hidden_size=96, num_attention_heads=3).save_pretrained(tmp_path)
    reference = transformers.TvltConfig.from_pretrained(tmp_path)
    assert reference.hidden_size == 96 and reference.num_attention_heads == 3


def test_bad_json_file_names_the_path(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 768, "audio_mask_type": "nope"}))
    with pytest.raises(ValueError, match=r"config\.json.*audio_mask_type"):
        TvltConfig.from_json_file(path)
    with pytest.raises(FileNotFoundError):
        TvltConfig.from_pretrained(tmp_path / "missing")
