"""TvltConfig: defaults, validation errors naming the field, JSON round trips, reading HF config.json files."""

from __future__ import annotations

import json

import logging

import pytest
import torch
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


# generic PretrainedConfig keywords with non-default values (the port's ConfigTester checks the same kind of list)
GENERIC_KWARGS = dict(
    return_dict=False, output_hidden_states=True, output_attentions=True, torchscript=True, torch_dtype="float16",
    use_bfloat16=True, pruned_heads={"a": 1}, tie_word_embeddings=False, chunk_size_feed_forward=5,
    is_encoder_decoder=True, is_decoder=True, architectures=["TvltModel"], finetuning_task="mosei",
    id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}, problem_type="regression",
    bos_token_id=6, pad_token_id=7, max_length=50, num_beams=3, task_specific_params={"a": 1},
)


def test_generic_keywords_are_stored_as_in_the_port():
    ours = TvltConfig(**GENERIC_KWARGS)
    reference = transformers.TvltConfig(**GENERIC_KWARGS)
    for key in GENERIC_KWARGS:
        assert getattr(ours, key) == getattr(reference, key), key
    assert ours.torch_dtype is torch.float16
    assert ours.use_return_dict is reference.use_return_dict is False  # torchscript turns dict outputs off
    for key in ("tie_word_embeddings", "is_encoder_decoder", "torchscript", "chunk_size_feed_forward",
                "problem_type", "architectures", "pruned_heads", "torch_dtype", "pad_token_id"):
        assert getattr(TvltConfig(), key) == getattr(transformers.TvltConfig(), key), key


def test_unknown_keys_are_stored_and_logged_once(caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="tvlt.configuration"):
        config = TvltConfig(my_dataset_name="mosei", my_run_note=True)
        TvltConfig(my_dataset_name="again")
    assert config.my_dataset_name == "mosei" and config.my_run_note is True
    assert transformers.TvltConfig(my_dataset_name="mosei").my_dataset_name == "mosei"  # the port stores it too
    messages = [r.getMessage() for r in caplog.records if "my_dataset_name" in r.getMessage()]
    assert len(messages) == 1 and "my_run_note" in messages[0]
    config.save_pretrained(tmp_path)
    assert TvltConfig.from_pretrained(tmp_path).my_dataset_name == "mosei"
    assert transformers.TvltConfig.from_pretrained(tmp_path).my_dataset_name == "mosei"


def test_num_labels_follows_id2label_as_in_the_port():
    ours, reference = TvltConfig(num_labels=5), transformers.TvltConfig(num_labels=5)
    assert ours.id2label == reference.id2label and ours.label2id == reference.label2id
    ours.num_labels = reference.num_labels = 3
    assert ours.id2label == reference.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    named = TvltConfig(id2label={"0": "neg", "1": "pos"})  # JSON keys are strings
    assert named.num_labels == 2 and named.id2label == {0: "neg", 1: "pos"} and named.label2id == {"neg": 0, "pos": 1}
    assert TvltConfig(**{**TvltConfig().to_dict(), "num_labels": 6}).num_labels == 6  # default names are rebuilt
    with pytest.raises(ValueError, match=r"TvltConfig\.num_labels.*contradicts"):
        TvltConfig(num_labels=3, id2label={0: "neg", 1: "pos"})


def test_json_methods_update_subfolder_and_missing_path(tmp_path):
    config = TvltConfig(hidden_size=64, num_attention_heads=4, torch_dtype=torch.bfloat16, my_key=[1, 2])
    data = json.loads(config.to_json_string())
    assert data["hidden_size"] == 64 and data["torch_dtype"] == "bfloat16" and data["my_key"] == [1, 2]
    config.to_json_file(tmp_path / "c.json")
    assert TvltConfig.from_json_file(tmp_path / "c.json") == config
    config.save_pretrained(tmp_path / "sub")
    assert TvltConfig.from_pretrained(tmp_path, subfolder="sub") == config
    assert TvltConfig.from_dict(config.to_dict(), return_unused_kwargs=True) == (config, {})
    config.update({"hidden_dropout_prob": 0.1, "note": "x"})
    assert config.hidden_dropout_prob == 0.1 and TvltConfig.from_dict(config.to_dict()).note == "x"
    with pytest.raises(OSError):  # FileNotFoundError, as the port raises OSError
        TvltConfig.from_pretrained(tmp_path / "nowhere")


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


def test_every_allowed_activation_builds_and_runs():
    """One table of activations: each name the config accepts is one the layers can build, with the port's
    meaning (gelu exact, the two tanh spellings the approximation)."""
    import torch.nn.functional as F

    from tvlt.activations import ACTIVATIONS, get_activation

    assert sorted(ACTIVATIONS) == ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "selu", "silu"]
    x = torch.linspace(-3, 3, 13)
    for name in ACTIVATIONS:
        assert TvltConfig(hidden_act=name).hidden_act == name
    assert torch.equal(get_activation("gelu")(x), F.gelu(x))
    assert torch.equal(get_activation("gelu_new")(x), F.gelu(x, approximate="tanh"))
    assert torch.equal(get_activation("gelu_pytorch_tanh")(x), F.gelu(x, approximate="tanh"))
    with pytest.raises(ValueError, match=r"TvltConfig.hidden_act: must be one of \['gelu', 'gelu_new'"):
        TvltConfig(hidden_act="swish2")
