"""Checkpoint save/load: HF format both ways, original-release format, Lightning checkpoints, error reports."""

from __future__ import annotations

import logging

import pytest
import torch
import transformers

from tvlt.checkpoints import convert_original_state_dict, load_checkpoint, read_state_dict
from tvlt.configuration import TvltConfig
from tvlt.modeling import TvltForAudioVisualClassification, TvltForPreTraining, TvltModel

OURS_ONLY = {"num_labels", "classifier_pooler", "attn_implementation", "return_dict", "output_attentions",
             "output_hidden_states", "model_type"}


def hf_config(config: TvltConfig) -> transformers.TvltConfig:
    kwargs = {k: v for k, v in config.to_dict().items() if k not in OURS_ONLY}
    return transformers.TvltConfig(num_labels=config.num_labels, **kwargs)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=gen, device=p.device))


ENCODER_PARTS = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
                 "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
TOP_LEVEL = {
    "tvlt.cls_embedding": "cls_token",
    "tvlt.pixel_embeddings.patch_embeddings.projection": "patch_embed_v.proj",
    "tvlt.pixel_embeddings.pos_embed_v": "pos_embed_v", "tvlt.pixel_embeddings.temporal_embed": "temporal_embed",
    "tvlt.pixel_embeddings.type_embed_v": "type_embed_v",
    "tvlt.audio_embeddings.patch_embeddings.projection": "patch_embed_a.proj",
    "tvlt.audio_embeddings.pos_embed_a": "pos_embed_a", "tvlt.audio_embeddings.freq_embed": "freq_embed",
    "tvlt.audio_embeddings.type_embed_a": "type_embed_a", "tvlt.layernorm": "norm",
    "encoder_to_decoder": "decoder_embed", "decoder.layernorm": "decoder_norm", "pixel_mask_token": "mask_token_v",
    "audio_mask_token": "mask_token_a", "decoder_pixel_pos_embed": "decoder_pos_embed_v",
    "decoder_audio_pos_embed": "decoder_pos_embed_a", "decoder_temporal_embed": "decoder_temporal_embed",
    "decoder_freq_embed": "decoder_freq_embed", "decoder_pixel_type_embed": "decoder_type_embed_v",
    "decoder_audio_type_embed": "decoder_type_embed_a", "pixel_mae_head": "mae_score_video",
    "audio_mae_head": "mae_score_audio", "matching_head": "matching_score", "classifier": "classifier",
}
ORIGINAL_ROWS = {"pos_embed_a": 1020, "decoder_pos_embed_a": 1020, "temporal_embed": 64,
                 "decoder_temporal_embed": 64}


def to_original_format(state_dict: dict[str, torch.Tensor], extra_rows_seed: int = 0) -> dict[str, torch.Tensor]:
    """Build an original-release state dict from HF-layout weights (rename, fuse q/k/v, grow the tables)."""
    gen = torch.Generator().manual_seed(extra_rows_seed)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        stacks = (("tvlt.encoder.layer.", "blocks."), ("decoder.decoder_layers.", "decoder_blocks."))
        for hf_stack, orig_stack in stacks:
            if key.startswith(hf_stack):
                index, rest = key[len(hf_stack):].split(".", 1)
                part, kind = rest.rsplit(".", 1)
                if part.startswith("attention.attention."):
                    if part.endswith("query"):
                        base = f"{hf_stack}{index}.attention.attention"
                        out[f"{orig_stack}{index}.attn.qkv.{kind}"] = torch.cat(
                            [state_dict[f"{base}.{n}.{kind}"] for n in ("query", "key", "value")])
                else:
                    out[f"{orig_stack}{index}.{ENCODER_PARTS[part]}.{kind}"] = value
                break
        else:
            for hf_name, orig_name in TOP_LEVEL.items():
                if key == hf_name or key.startswith(hf_name + "."):
                    out[orig_name + key[len(hf_name):]] = value
                    break
            else:
                raise KeyError(key)
    for name, rows in ORIGINAL_ROWS.items():
        if name in out:
            t = out[name]
            extra = torch.randn(1, rows - t.shape[1], t.shape[2], generator=gen, device=t.device) \
                if t.device.type != "meta" else torch.empty(1, rows - t.shape[1], t.shape[2], device="meta")
            out[name] = torch.cat([t, extra], dim=1)
    return out


def tiny_inputs(config, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pixel = torch.rand(2, 2, 3, config.image_size, config.image_size, generator=gen) * 2 - 1
    audio = torch.rand(2, 1, 32, config.frequency_length, generator=gen) * 2 - 1
    return pixel, audio


@pytest.mark.parametrize("cls", [TvltModel, TvltForPreTraining, TvltForAudioVisualClassification])
@pytest.mark.parametrize("safe", [True, False])
def test_save_and_from_pretrained_round_trip(tmp_path, tiny_config, cls, safe):
    model = cls(tiny_config).eval()
    randomize(model)
    model.save_pretrained(tmp_path, safe_serialization=safe)
    assert (tmp_path / "config.json").is_file()
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    loaded = cls.from_pretrained(tmp_path).eval()
    assert loaded.config == model.config
    assert len(loaded.loading_report.loaded) == len(model.state_dict())
    pixel, audio = tiny_inputs(tiny_config)
    extra = dict(labels=torch.tensor([1.0, 0.0]), compute_mae=True) if cls is TvltForPreTraining else {}
    with torch.no_grad():
        torch.manual_seed(0)
        a = model(pixel, audio, **extra)[0]
        torch.manual_seed(0)
        b = loaded(pixel, audio, **extra)[0]
    assert torch.equal(a, b)


def test_hf_save_pretrained_loads_here_and_back(tmp_path, tiny_config):
    hf = transformers.TvltForPreTraining(hf_config(tiny_config)).eval()
    randomize(hf)
    hf.save_pretrained(tmp_path / "hf")
    ours = TvltForPreTraining.from_pretrained(tmp_path / "hf").eval()
    assert ours.loading_report.newly_initialized == [] and ours.loading_report.ignored == []
    pixel, audio = tiny_inputs(tiny_config)
    with torch.no_grad():
        a = ours.tvlt(pixel, audio).last_hidden_state
        b = hf.tvlt(pixel, audio).last_hidden_state
    assert (a - b).abs().max().item() <= 1e-5
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.TvltForPreTraining.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert torch.equal(back.tvlt(pixel, audio).last_hidden_state, b)


def test_original_format_checkpoint_loads_and_matches(tiny_config, caplog):
    source = TvltForPreTraining(tiny_config).eval()
    randomize(source)
    original = to_original_format(source.state_dict())
    assert "blocks.0.attn.qkv.weight" in original and original["pos_embed_a"].shape[1] == 1020
    target = TvltForPreTraining(tiny_config).eval()
    with caplog.at_level(logging.INFO, logger="tvlt.checkpoints"):
        report = load_checkpoint(target, original)
    assert report.format == "original" and not report.newly_initialized and not report.ignored
    assert any("1020 -> 16" in n for n in report.notes) and any("64 -> 2" in n for n in report.notes)
    assert "sliced" in caplog.text
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    pixel, audio = tiny_inputs(tiny_config)
    torch.manual_seed(1)
    a = source(pixel, audio, labels=torch.tensor([1.0, 0.0]), compute_mae=True)
    torch.manual_seed(1)
    b = target(pixel, audio, labels=torch.tensor([1.0, 0.0]), compute_mae=True)
    assert torch.equal(a.loss, b.loss) and torch.equal(a.pixel_logits, b.pixel_logits)
    encoder_only = TvltModel(tiny_config)
    report = load_checkpoint(encoder_only, original)
    assert "matching_head.fc.weight" in report.ignored
    assert torch.equal(encoder_only.cls_embedding, source.tvlt.cls_embedding)


def test_original_layout_parameter_counts_and_loading_at_default_size():
    """Original release: encoder 86,835,456 and TVLT.ckpt 114,227,457 parameters; HF layout 86,107,392 and
    113,014,017 (the 1020-row audio position and 64-row temporal tables are sliced to 128 and 8 rows)."""
    with torch.device("meta"):
        model = TvltForPreTraining(TvltConfig())
    assert model.num_parameters() == 113_014_017
    assert model.tvlt.num_parameters() == 86_107_392
    original = to_original_format(model.state_dict())
    assert sum(v.numel() for v in original.values()) == 114_227_457
    encoder_keys = [k for k in original if not k.startswith(("decoder", "mask_token", "mae_score", "matching_score"))]
    assert sum(original[k].numel() for k in encoder_keys) == 86_835_456
    converted = convert_original_state_dict(original, TvltConfig())
    assert sum(v.numel() for v in converted.values()) == 113_014_017
    report = load_checkpoint(model, original)
    assert len(report.loaded) == len(model.state_dict()) and not report.newly_initialized


def test_classification_parameter_count():
    with torch.device("meta"):
        assert TvltForAudioVisualClassification(TvltConfig(num_labels=1)).num_parameters() == 87_293_185


def test_original_finetuned_head_needs_classifier_pooler(tiny_config):
    pooled_config = TvltConfig(**{**tiny_config.to_dict(), "classifier_pooler": True, "num_labels": 1})
    source = TvltForAudioVisualClassification(pooled_config).eval()
    randomize(source)
    original = to_original_format(source.state_dict())
    assert "classifier.0.dense.weight" in original and "classifier.4.weight" in original
    target = TvltForAudioVisualClassification(pooled_config).eval()
    report = load_checkpoint(target, original)
    assert not report.newly_initialized
    pixel, audio = tiny_inputs(tiny_config)
    with torch.no_grad():
        assert torch.equal(source(pixel, audio).logits, target(pixel, audio).logits)
    hf_layout = TvltForAudioVisualClassification(TvltConfig(**{**tiny_config.to_dict(), "num_labels": 1}))
    with pytest.raises(ValueError, match="classifier_pooler=True"):
        load_checkpoint(hf_layout, original)


def test_lightning_checkpoint_prefixes_stripped(tmp_path, tiny_config):
    source = TvltForAudioVisualClassification(tiny_config).eval()
    randomize(source)
    for prefix in ("model.", "module.model.", "transformer."):
        state = {prefix + k: v for k, v in source.state_dict().items()}
        state["metric.total"] = torch.zeros(())  # a Lightning module's own buffer, outside the model
        path = tmp_path / "last.ckpt"
        torch.save({"state_dict": state, "epoch": 3, "global_step": 10}, path)
        target = TvltForAudioVisualClassification(tiny_config).eval()
        report = load_checkpoint(target, path)
        assert len(report.loaded) == len(source.state_dict())
        for key, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[key], value)


def test_pretraining_weights_into_classifier_report_new_heads(tiny_config, caplog):
    source = TvltForPreTraining(tiny_config)
    randomize(source)
    target = TvltForAudioVisualClassification(tiny_config)
    with caplog.at_level(logging.WARNING, logger="tvlt.checkpoints"):
        report = load_checkpoint(target, source.state_dict())
    assert report.newly_initialized == sorted(k for k in target.state_dict() if k.startswith("classifier."))
    assert "matching_head.fc.weight" in report.ignored and "decoder.layernorm.weight" in report.ignored
    assert "newly initialised" in caplog.text
    assert torch.equal(target.tvlt.cls_embedding, source.tvlt.cls_embedding)
    # bare TvltModel weights also load into a head model
    bare = TvltModel(tiny_config)
    randomize(bare)
    report = load_checkpoint(TvltForPreTraining(tiny_config), bare.state_dict())
    assert "added prefix 'tvlt.'" in " ".join(report.notes)


def test_missing_or_misshaped_encoder_keys_raise_with_list(tiny_config):
    state = TvltForPreTraining(tiny_config).state_dict()
    del state["tvlt.encoder.layer.1.attention.attention.key.weight"]
    state["tvlt.layernorm.weight"] = torch.ones(31)
    with pytest.raises(ValueError) as err:
        load_checkpoint(TvltForPreTraining(tiny_config), state)
    message = str(err.value)
    assert "tvlt.encoder.layer.1.attention.attention.key.weight: expected (32, 32), missing in file" in message
    assert "tvlt.layernorm.weight: expected (32,), file has (31,)" in message


def test_misshaped_head_raises_unless_ignored(tiny_config):
    source = TvltForAudioVisualClassification(TvltConfig(**{**tiny_config.to_dict(), "num_labels": 3}))
    target = TvltForAudioVisualClassification(TvltConfig(**{**tiny_config.to_dict(), "num_labels": 2}))
    with pytest.raises(ValueError, match="classifier.3.weight: expected"):
        load_checkpoint(target, source.state_dict())
    report = load_checkpoint(target, source.state_dict(), ignore_mismatched_heads=True)
    assert report.newly_initialized == ["classifier.3.bias", "classifier.3.weight"]


class _NotAllowed:
    pass


def test_untrusted_pickle_is_refused(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"weight": torch.zeros(1), "payload": _NotAllowed()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.bin")
    # one reader for every torch file, pretrained weights and Lightning checkpoints alike: the same errors
    import tvlt.lit.base
    from tvlt.checkpoints import CheckpointError, read_checkpoint

    with pytest.raises(CheckpointError, match=r"Unsupported global") as info:
        read_state_dict(path)
    assert str(path) in str(info.value) and "False" not in str(info.value)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not a zip archive" * 10)
    with pytest.raises(CheckpointError, match=rf"{garbage}: not a PyTorch checkpoint"):
        read_state_dict(garbage)
    assert tvlt.lit.base.read_checkpoint is read_checkpoint
