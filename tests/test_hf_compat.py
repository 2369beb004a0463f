"""Code written for the Hugging Face port runs unchanged: the model surface beyond forward, loading options,
``transformers.Trainer`` and a ``peft`` LoRA fine-tune, each against transformers==4.40.2's TVLT classes on the tiny
config. Weights are copied from the port's model, so values agree to fp32 rounding (atol 1e-5, 1e-4 after
optimizer steps)."""

from __future__ import annotations

import logging

import pytest
import torch
import transformers

from tests.test_parity_model import hf_config, inputs, randomize
from tvlt import TvltConfig, TvltForAudioVisualClassification, TvltForPreTraining, TvltModel

CLASSES = [
    (TvltModel, transformers.TvltModel),
    (TvltForPreTraining, transformers.TvltForPreTraining),
    (TvltForAudioVisualClassification, transformers.TvltForAudioVisualClassification),
]


def pair(ours_cls, hf_cls, config: TvltConfig):
    hf = hf_cls(hf_config(config))
    randomize(hf)
    ours = ours_cls(config)
    ours.load_state_dict(hf.state_dict(), strict=True)
    return ours, hf


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


# ------------------------------------------------------------------------------------------- model surface
@pytest.mark.parametrize("ours_cls,hf_cls", CLASSES)
def test_model_surface_matches_the_port(tiny_config, ours_cls, hf_cls):
    ours, hf = pair(ours_cls, hf_cls, tiny_config)
    for name in ("main_input_name", "supports_gradient_checkpointing", "base_model_prefix",
                 "_keys_to_ignore_on_load_missing", "_keys_to_ignore_on_load_unexpected", "_keys_to_ignore_on_save",
                 "_tied_weights_keys", "_keep_in_fp32_modules"):
        assert getattr(ours, name) == getattr(hf, name), name
    assert ours.can_generate() is hf.can_generate() is False
    assert ours.device == hf.device and ours.dtype == hf.dtype == torch.float32
    assert ours.num_parameters() == hf.num_parameters()
    assert ours.num_parameters(exclude_embeddings=True) == hf.num_parameters(exclude_embeddings=True)
    for p, q in zip(ours.parameters(), hf.parameters()):
        p.requires_grad_(p.ndim > 1)
        q.requires_grad_(q.ndim > 1)
    assert ours.num_parameters(only_trainable=True) == hf.num_parameters(only_trainable=True) < ours.num_parameters()
    ours_embeddings, hf_embeddings = ours.get_input_embeddings(), hf.get_input_embeddings()
    assert len(ours_embeddings) == len(hf_embeddings) == 2
    for a, b in zip(ours_embeddings, hf_embeddings):
        assert torch.equal(a.projection.weight, b.projection.weight)
    assert ours.get_output_embeddings() is hf.get_output_embeddings() is None
    assert ours.base_model is (ours if ours_cls is TvltModel else ours.tvlt)
    assert ours._supports_sdpa  # this package's attention is SDPA by default (the port has eager only)


def test_gradient_checkpointing_options(tiny_config):
    pixel, audio, _, _ = inputs(tiny_config, seed=2)
    labels = torch.tensor([1, 0])
    config = TvltConfig(**{**tiny_config.to_dict(), "num_labels": 2})
    reference = TvltForAudioVisualClassification(config).train()
    randomize(reference)
    reference(pixel, audio, labels=labels).loss.backward()
    for kwargs in (None, {"use_reentrant": False}, {"use_reentrant": True}):
        model = TvltForAudioVisualClassification(config).train()
        model.load_state_dict(reference.state_dict())
        assert not model.is_gradient_checkpointing
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        assert model.is_gradient_checkpointing
        model(pixel, audio, labels=labels).loss.backward()
        grads = dict(reference.named_parameters())
        for name, p in model.named_parameters():
            assert max_diff(p.grad, grads[name].grad) <= 1e-6, (kwargs, name)
        model.gradient_checkpointing_disable()
        assert not model.is_gradient_checkpointing
    old_style = TvltConfig(**{**tiny_config.to_dict(), "gradient_checkpointing": True})  # the port's legacy key
    assert TvltModel(old_style).is_gradient_checkpointing
    assert transformers.TvltModel(hf_config(tiny_config)).supports_gradient_checkpointing


def test_return_dict_false_keeps_the_ports_positions(tiny_config):
    pixel, audio, num_pixel, num_audio = inputs(tiny_config, seed=3)
    config = TvltConfig(**{**tiny_config.to_dict(), "num_labels": 2})
    cases = [
        (TvltModel, transformers.TvltModel, {}),
        (TvltModel, transformers.TvltModel, {"output_hidden_states": True}),
        (TvltForAudioVisualClassification, transformers.TvltForAudioVisualClassification,
         {"labels": torch.tensor([1, 0]), "output_hidden_states": True, "output_attentions": True}),
        (TvltForAudioVisualClassification, transformers.TvltForAudioVisualClassification, {}),
    ]
    for ours_cls, hf_cls, kwargs in cases:
        ours, hf = pair(ours_cls, hf_cls, config)
        with torch.no_grad():
            a = ours.eval()(pixel, audio, return_dict=False, **kwargs)
            b = hf.eval()(pixel, audio, return_dict=False, **kwargs)
        assert isinstance(a, tuple) and len(a) == len(b), (ours_cls.__name__, kwargs)
        for index, (x, y) in enumerate(zip(a, b)):
            assert (x is None) == (y is None), (ours_cls.__name__, kwargs, index)
            if isinstance(x, torch.Tensor):
                assert max_diff(x, y) <= 1e-5, (ours_cls.__name__, kwargs, index)
            elif isinstance(x, tuple):
                assert len(x) == len(y) and all(max_diff(u, v) <= 1e-5 for u, v in zip(x, y))


# ------------------------------------------------------------------------------------------------- loading
def test_from_pretrained_honours_torch_dtype(tiny_config, tmp_path):
    ours, hf = pair(TvltForPreTraining, transformers.TvltForPreTraining, tiny_config)
    hf.save_pretrained(tmp_path / "hf")
    for dtype in (torch.float16, torch.bfloat16):
        loaded = TvltForPreTraining.from_pretrained(tmp_path / "hf", torch_dtype=dtype)
        reference = transformers.TvltForPreTraining.from_pretrained(tmp_path / "hf", torch_dtype=dtype)
        assert {p.dtype for p in loaded.parameters()} == {p.dtype for p in reference.parameters()}
        assert loaded.dtype == reference.dtype and str(loaded.config.torch_dtype) == str(reference.config.torch_dtype)
    assert TvltForPreTraining.from_pretrained(tmp_path / "hf", torch_dtype="float16").dtype == torch.float16
    ours.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    assert TvltForPreTraining.from_pretrained(tmp_path / "bf16").dtype == torch.float32  # the port's default
    assert TvltForPreTraining.from_pretrained(tmp_path / "bf16", torch_dtype="auto").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="torch_dtype"):
        TvltForPreTraining.from_pretrained(tmp_path / "hf", torch_dtype=torch.int8)
    assert not TvltForPreTraining.from_pretrained(tmp_path / "hf").training  # eval mode, as the port


def test_output_loading_info_matches_the_port(tiny_config, tmp_path, caplog):
    base, hf_base = pair(TvltModel, transformers.TvltModel, tiny_config)
    hf_base.save_pretrained(tmp_path / "base")
    with caplog.at_level(logging.WARNING, logger="tvlt.checkpoints"):
        model, info = TvltForPreTraining.from_pretrained(tmp_path / "base", output_loading_info=True)
    _, hf_info = transformers.TvltForPreTraining.from_pretrained(tmp_path / "base", output_loading_info=True)
    assert sorted(info) == sorted(hf_info) == ["error_msgs", "mismatched_keys", "missing_keys", "unexpected_keys"]
    assert sorted(info["missing_keys"]) == sorted(hf_info["missing_keys"]) != []  # the heads, newly initialised
    assert info["unexpected_keys"] == hf_info["unexpected_keys"] == []
    assert any("newly initialised" in r.getMessage() for r in caplog.records)  # warned, as the port does

    config = TvltConfig(**{**tiny_config.to_dict(), "num_labels": 3})
    classifier, hf_classifier = pair(TvltForAudioVisualClassification, transformers.TvltForAudioVisualClassification,
                                     config)
    hf_classifier.save_pretrained(tmp_path / "cls")
    kwargs = dict(num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True)
    _, info = TvltForAudioVisualClassification.from_pretrained(tmp_path / "cls", **kwargs)
    _, hf_info = transformers.TvltForAudioVisualClassification.from_pretrained(tmp_path / "cls", **kwargs)
    assert sorted(info["mismatched_keys"]) == sorted(hf_info["mismatched_keys"]) != []
    assert info["missing_keys"] == [k for k, _, _ in sorted(info["mismatched_keys"])]


def test_from_pretrained_without_a_directory_and_refused_options(tiny_config, tmp_path):
    model = TvltForPreTraining(tiny_config)
    randomize(model)
    loaded = TvltForPreTraining.from_pretrained(None, config=tiny_config, state_dict=model.state_dict())
    for (name, p), q in zip(model.named_parameters(), loaded.parameters()):
        assert torch.equal(p, q), name
    with pytest.raises(ValueError, match="nothing to load"):
        TvltForPreTraining.from_pretrained(None, config=tiny_config)
    model.save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="device_map"):
        TvltForPreTraining.from_pretrained(tmp_path, device_map="auto")
    with pytest.raises(TypeError, match="hidden_sise"):
        TvltForPreTraining.from_pretrained(tmp_path, hidden_sise=64)
    assert TvltForPreTraining.from_pretrained(tmp_path, hidden_dropout_prob=0.1).config.hidden_dropout_prob == 0.1
    encoder_only = {k: v for k, v in model.state_dict().items() if not k.startswith("tvlt.")}
    with pytest.raises(ValueError, match="encoder weights missing"):  # kept an error (the port only warns)
        TvltForPreTraining.from_pretrained(None, config=tiny_config, state_dict=encoder_only)


# ------------------------------------------------------------------------------------------- Trainer, PEFT
def _dataset(config: TvltConfig, n: int = 8) -> list[dict[str, torch.Tensor]]:
    pixel, audio, _, _ = inputs(config, batch=n, seed=11)
    return [{"pixel_values": pixel[i], "audio_values": audio[i], "labels": torch.tensor(i % 2)} for i in range(n)]


def _train(model: torch.nn.Module, dataset, tmp_path, name: str) -> transformers.Trainer:
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / name), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to=[], seed=0, use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0, per_device_eval_batch_size=4,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset)
    trainer.train()
    return trainer


def test_trainer_runs_as_on_the_port(tiny_config, tmp_path):
    config = TvltConfig(**{**tiny_config.to_dict(), "num_labels": 2})
    ours, hf = pair(TvltForAudioVisualClassification, transformers.TvltForAudioVisualClassification, config)
    dataset = _dataset(config)
    ours_trainer, hf_trainer = _train(ours, dataset, tmp_path, "ours"), _train(hf, dataset, tmp_path, "hf")
    ours_losses = [e["loss"] for e in ours_trainer.state.log_history if "loss" in e]
    hf_losses = [e["loss"] for e in hf_trainer.state.log_history if "loss" in e]
    assert len(ours_losses) == len(hf_losses) == 3
    assert ours_losses == pytest.approx(hf_losses, abs=1e-4)
    assert ours_trainer.evaluate()["eval_loss"] == pytest.approx(hf_trainer.evaluate()["eval_loss"], abs=1e-4)
    trained = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        assert max_diff(p, trained[name]) <= 1e-4, name


def test_peft_lora_fine_tune_runs_as_on_the_port(tiny_config, tmp_path):
    peft = pytest.importorskip("peft")
    config = TvltConfig(**{**tiny_config.to_dict(), "num_labels": 2})
    ours, hf = pair(TvltForAudioVisualClassification, transformers.TvltForAudioVisualClassification, config)
    lora = dict(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"])
    torch.manual_seed(5)
    ours_peft = peft.get_peft_model(ours, peft.LoraConfig(**lora))
    torch.manual_seed(5)
    hf_peft = peft.get_peft_model(hf, peft.LoraConfig(**lora))
    assert ours_peft.get_nb_trainable_parameters() == hf_peft.get_nb_trainable_parameters()
    lora_before = {n: p.detach().clone() for n, p in ours_peft.named_parameters() if "lora_B" in n}
    dataset = _dataset(config)
    ours_trainer, hf_trainer = _train(ours_peft, dataset, tmp_path, "ours"), _train(hf_peft, dataset, tmp_path, "hf")
    ours_losses = [e["loss"] for e in ours_trainer.state.log_history if "loss" in e]
    hf_losses = [e["loss"] for e in hf_trainer.state.log_history if "loss" in e]
    assert ours_losses == pytest.approx(hf_losses, abs=1e-4)
    moved = [n for n, p in ours_peft.named_parameters() if "lora_B" in n and not torch.equal(p, lora_before[n])]
    assert len(moved) == len(lora_before) > 0  # the adapters are on the attention path and were trained
    pixel, audio, _, _ = inputs(config, seed=12)
    with torch.no_grad():
        adapted = ours_peft.eval()(pixel_values=pixel, audio_values=audio).logits
        reference = hf_peft.eval()(pixel_values=pixel, audio_values=audio).logits
        merged = ours_peft.merge_and_unload()(pixel, audio).logits
    assert max_diff(adapted, reference) <= 1e-4 and max_diff(merged, adapted) <= 1e-5
