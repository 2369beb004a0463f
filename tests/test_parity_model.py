"""Parity with the Hugging Face port (transformers==4.40.2, used only as a test oracle).

Weights are copied with a strict ``load_state_dict``; random noise for MAE masking is reproduced by seeding
torch's RNG identically before both calls (both draw pixel noise (B, Np) first, then audio noise).
Tolerance: atol 1e-5 in fp32.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from tvlt.configuration import TvltConfig
from tvlt.modeling import TvltForAudioVisualClassification, TvltForPreTraining, TvltModel

ATOL = 1e-5
OURS_ONLY = {"num_labels", "classifier_pooler", "attn_implementation", "return_dict", "output_attentions",
             "output_hidden_states", "model_type"}


def hf_config(config: TvltConfig) -> transformers.TvltConfig:
    kwargs = {k: v for k, v in config.to_dict().items() if k not in OURS_ONLY}
    if kwargs["audio_mask_type"] == "patch-level":
        kwargs["audio_mask_type"] = "patch_level"
    return transformers.TvltConfig(num_labels=config.num_labels, **kwargs)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter (including the zero-initialised tables) distinct random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.ndim == 1:  # LayerNorm scale near 1
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))


def pair(ours_cls, hf_cls, config: TvltConfig):
    hf = hf_cls(hf_config(config))
    randomize(hf)
    ours = ours_cls(config)
    result = ours.load_state_dict(hf.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return ours.eval(), hf.eval()


def inputs(config: TvltConfig, batch: int = 2, frames: int = 2, audio_frames: int = 48, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    pixel = torch.rand(batch, frames, 3, config.image_size, config.image_size, generator=gen) * 2 - 1
    audio = torch.rand(batch, 1, audio_frames, config.frequency_length, generator=gen) * 2 - 1
    num_pixel = frames * config.num_patches_per_frame
    num_audio = audio_frames // config.audio_patch_size[0] * config.num_freq_patches
    return pixel, audio, num_pixel, num_audio


def padding_masks(batch: int, num_pixel: int, num_audio: int, per_frame: int, freq: int):
    """Sample 1 has only its first frame and its first 3 audio time patches real."""
    pixel_mask = torch.ones(batch, num_pixel)
    audio_mask = torch.ones(batch, num_audio)
    pixel_mask[1, per_frame:] = 0
    audio_mask[1, 3 * freq:] = 0
    return pixel_mask, audio_mask


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


FIELDS = ["last_hidden_state", "last_pixel_hidden_state", "last_audio_hidden_state", "pixel_label_masks",
          "audio_label_masks", "pixel_ids_restore", "audio_ids_restore"]


def compare_model_outputs(ours_out, hf_out) -> None:
    for name in FIELDS:
        a, b = getattr(ours_out, name), getattr(hf_out, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert max_diff(a, b) <= ATOL, (name, max_diff(a, b))


@pytest.mark.parametrize("with_masks", [False, True])
def test_model_unmasked_matches_reference(tiny_config, with_masks):
    ours, hf = pair(TvltModel, transformers.TvltModel, tiny_config)
    pixel, audio, num_pixel, num_audio = inputs(tiny_config)
    masks = {}
    if with_masks:
        pm, am = padding_masks(2, num_pixel, num_audio, tiny_config.num_patches_per_frame,
                               tiny_config.num_freq_patches)
        masks = dict(pixel_mask=pm, audio_mask=am)
    with torch.no_grad():
        a = ours(pixel, audio, **masks, output_hidden_states=True, output_attentions=True)
        b = hf(pixel, audio, **masks, output_hidden_states=True, output_attentions=True)
    compare_model_outputs(a, b)
    assert a.last_hidden_state.shape == (2, 1 + num_pixel + num_audio, 32)
    assert len(a.hidden_states) == len(b.hidden_states) == tiny_config.num_hidden_layers + 1
    for x, y in zip(a.hidden_states + a.attentions, b.hidden_states + b.attentions, strict=True):
        assert max_diff(x, y) <= ATOL
    if with_masks:  # padding really changes the result (the mask is not a no-op)
        with torch.no_grad():
            unmasked = ours(pixel, audio).last_hidden_state
        assert max_diff(unmasked[1], a.last_hidden_state[1]) > 1e-3
        assert max_diff(unmasked[0], a.last_hidden_state[0]) <= ATOL


@pytest.mark.parametrize("with_masks", [False, True])
def test_model_mae_masking_matches_reference_with_same_noise(tiny_config, with_masks):
    ours, hf = pair(TvltModel, transformers.TvltModel, tiny_config)
    pixel, audio, num_pixel, num_audio = inputs(tiny_config)
    masks = dict(pixel_mask=torch.ones(2, num_pixel), audio_mask=torch.ones(2, num_audio)) if with_masks else {}
    with torch.no_grad():
        torch.manual_seed(123)
        a = ours(pixel, audio, **masks, mask_pixel=True, mask_audio=True)
        torch.manual_seed(123)
        b = hf(pixel, audio, **masks, mask_pixel=True, mask_audio=True)
    compare_model_outputs(a, b)
    keep_pixel = int(num_pixel * 0.25)
    assert a.last_pixel_hidden_state.shape[1] == keep_pixel
    assert a.pixel_label_masks.sum().item() == 2 * (num_pixel - keep_pixel)


def test_explicit_noise_equals_seeded_draw(tiny_config):
    """Passing noise explicitly reproduces the reference's own draw (pixel (B,Np) then audio (B,Tp))."""
    ours, hf = pair(TvltModel, transformers.TvltModel, tiny_config)
    pixel, audio, num_pixel, num_audio = inputs(tiny_config)
    torch.manual_seed(7)
    pixel_noise = torch.rand(2, num_pixel)
    audio_noise = torch.rand(2, num_audio // tiny_config.num_freq_patches)
    with torch.no_grad():
        a = ours(pixel, audio, mask_pixel=True, mask_audio=True, pixel_noise=pixel_noise, audio_noise=audio_noise)
        torch.manual_seed(7)
        b = hf(pixel, audio, mask_pixel=True, mask_audio=True)
    compare_model_outputs(a, b)


def test_pretraining_train_mode_losses_and_logits(tiny_config):
    ours, hf = pair(TvltForPreTraining, transformers.TvltForPreTraining, tiny_config)
    ours.train(), hf.train()
    pixel, audio, num_pixel, num_audio = inputs(tiny_config, seed=3)
    mixed = pixel.flip(0)
    labels = torch.tensor([[1.0], [0.0]])
    masks = dict(pixel_mask=torch.ones(2, num_pixel), audio_mask=torch.ones(2, num_audio),
                 pixel_mask_mixed=torch.ones(2, num_pixel))
    torch.manual_seed(5)
    a = ours(pixel, audio, labels=labels, pixel_values_mixed=mixed, **masks)
    torch.manual_seed(5)
    b = hf(pixel, audio, labels=labels, pixel_values_mixed=mixed, **masks)
    for name in ("loss", "matching_logits", "pixel_logits", "audio_logits"):
        assert max_diff(getattr(a, name), getattr(b, name)) <= ATOL, name
    assert a.pixel_logits.shape == (2, num_pixel, 8 * 8 * 3)
    assert a.audio_logits.shape == (2, num_audio, 4 * 4)
    assert torch.allclose(a.loss, a.matching_loss + a.pixel_loss + a.audio_loss)
    # gradients agree too
    a.loss.backward(), b.loss.backward()
    ga = dict(ours.named_parameters())
    for name, p in hf.named_parameters():
        assert max_diff(ga[name].grad, p.grad) <= 1e-4, name


def test_pretraining_eval_mode_matches_the_reference(tiny_config):
    """Eval mode runs matching only, as the reference: outputs are deterministic and a batch gives the same
    values as its samples one by one. MAE in eval mode is opt-in (compute_mae=True), reproducible under a seed."""
    ours, hf = pair(TvltForPreTraining, transformers.TvltForPreTraining, tiny_config)
    pixel, audio, _, _ = inputs(tiny_config, seed=4)
    labels = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        a = ours(pixel, audio, labels=labels, pixel_values_mixed=pixel.flip(0))
        again = ours(pixel, audio, labels=labels, pixel_values_mixed=pixel.flip(0))
        b = hf(pixel, audio, labels=labels, pixel_values_mixed=pixel.flip(0))
        single = ours(pixel[1:], audio[1:], labels=labels[1:], pixel_values_mixed=pixel.flip(0)[1:])
        as_tuple = ours(pixel, audio, labels=labels, pixel_values_mixed=pixel.flip(0), return_dict=False)
        ref_tuple = hf(pixel, audio, labels=labels, pixel_values_mixed=pixel.flip(0), return_dict=False)
    assert a.pixel_logits is None and a.audio_logits is None and a.pixel_loss is None
    assert max_diff(a.matching_logits, b.matching_logits) <= ATOL and max_diff(a.loss, b.loss) <= ATOL
    assert torch.equal(a.loss, again.loss) and torch.equal(a.matching_logits, again.matching_logits)
    assert max_diff(single.matching_logits, a.matching_logits[1:]) <= ATOL
    assert len(as_tuple) == len(ref_tuple) == 4 and as_tuple[2] is None and ref_tuple[2] is None
    assert max_diff(as_tuple[1], ref_tuple[1]) <= ATOL
    with torch.no_grad():
        torch.manual_seed(3)
        mae = ours(pixel, audio, labels=labels, pixel_values_mixed=pixel.flip(0), compute_mae=True)
        torch.manual_seed(3)
        mae_again = ours(pixel, audio, labels=labels, pixel_values_mixed=pixel.flip(0), compute_mae=True)
    assert mae.pixel_logits.shape == (2, 2 * tiny_config.num_patches_per_frame, 8 * 8 * 3)
    assert torch.equal(mae.loss, mae_again.loss)
    assert torch.allclose(mae.loss, mae.matching_loss + mae.pixel_loss + mae.audio_loss)


@pytest.mark.parametrize("loss_type,num_labels,labels", [
    ("regression", 1, torch.tensor([[0.5], [-1.0]])),
    ("classification", 3, torch.tensor([2, 0])),
    # float class probabilities: the port's CrossEntropyLoss takes them as soft targets
    ("classification", 3, torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])),
])
def test_classification_logits_and_loss(tiny_config, loss_type, num_labels, labels):
    config = TvltConfig(**{**tiny_config.to_dict(), "loss_type": loss_type, "num_labels": num_labels})
    ours, hf = pair(TvltForAudioVisualClassification, transformers.TvltForAudioVisualClassification, config)
    pixel, audio, num_pixel, num_audio = inputs(config, seed=6)
    pm, am = padding_masks(2, num_pixel, num_audio, config.num_patches_per_frame, config.num_freq_patches)
    with torch.no_grad():
        a = ours(pixel, audio, pixel_mask=pm, audio_mask=am, labels=labels)
        b = hf(pixel, audio, pixel_mask=pm, audio_mask=am, labels=labels)
    assert a.logits.shape == (2, num_labels)
    assert max_diff(a.logits, b.logits) <= ATOL
    assert max_diff(a.loss, b.loss) <= ATOL


def test_mean_pooling_really_pools_real_tokens(tiny_config):
    """Reference: use_mean_pooling only drops the final LayerNorm and still reads CLS. Ours mean-pools the real
    tokens; both share the encoder output, so the difference is exactly the pooled vector."""
    config = TvltConfig(**{**tiny_config.to_dict(), "use_mean_pooling": True, "num_labels": 2})
    ours, hf = pair(TvltForAudioVisualClassification, transformers.TvltForAudioVisualClassification, config)
    pixel, audio, num_pixel, num_audio = inputs(config, seed=8)
    pm, am = padding_masks(2, num_pixel, num_audio, config.num_patches_per_frame, config.num_freq_patches)
    with torch.no_grad():
        a = ours(pixel, audio, pixel_mask=pm, audio_mask=am, output_hidden_states=True)
        b = hf(pixel, audio, pixel_mask=pm, audio_mask=am, output_hidden_states=True)
        hidden = a.hidden_states[-1]  # no final LayerNorm with mean pooling
        assert max_diff(hidden, b.hidden_states[-1]) <= ATOL
        real = torch.cat([pm, am], 1).bool()
        expected = torch.stack([hidden[i, 1:][real[i]].mean(0) for i in range(2)])
        assert max_diff(a.logits, ours.classifier(expected)) <= ATOL
        assert max_diff(b.logits, ours.classifier(hidden[:, 0])) <= ATOL  # reference: CLS
    assert max_diff(a.logits, b.logits) > 1e-3


def test_padding_safe_masking_differs_from_reference_only_with_padding(tiny_config):
    """With padding, the reference keeps the len_keep lowest-noise tokens whatever they are: a sample with few
    real tokens can keep none of them (its encoder sees no real video), and its real masking ratio is random.
    Ours keeps exactly max(1, int(n_real * 0.25)) real pixel tokens and masks the rest of the real ones."""
    ours, hf = pair(TvltModel, transformers.TvltModel, tiny_config)
    pixel, audio, num_pixel, num_audio = inputs(tiny_config, batch=1)
    pixel_mask = torch.zeros(1, num_pixel)
    pixel_mask[0, :4] = 1  # 4 real patches of 32
    audio_mask = torch.ones(1, num_audio)
    kept_real_ref = []
    for seed in range(20):
        with torch.no_grad():
            torch.manual_seed(seed)
            a = ours(pixel, audio, pixel_mask=pixel_mask, audio_mask=audio_mask, mask_pixel=True, mask_audio=True)
            torch.manual_seed(seed)
            b = hf(pixel, audio, pixel_mask=pixel_mask, audio_mask=audio_mask, mask_pixel=True, mask_audio=True)
        ours_targets = a.pixel_label_masks[0]
        assert ours_targets.sum().item() == 3  # 4 real, int(4 * 0.25) = 1 kept, 3 targets
        assert ours_targets[4:].sum().item() == 0  # padding never a target
        kept_real_ref.append(4 - int(b.pixel_label_masks[0].sum().item()))
        # the audio stream has no padding: identical to the reference
        assert torch.equal(a.audio_label_masks, b.audio_label_masks)
    assert min(kept_real_ref) == 0  # the reference sometimes keeps no real video token at all
    assert len(set(kept_real_ref)) > 1  # and its real masking ratio varies with the noise


@pytest.mark.slow
def test_default_size_parity():
    """Default-size config (768 wide, 12 layers) on small inputs: 1 frame of 224x224 and 32 audio frames."""
    config = TvltConfig()
    ours, hf = pair(TvltForPreTraining, transformers.TvltForPreTraining, config)
    pixel, audio, num_pixel, num_audio = inputs(config, batch=1, frames=1, audio_frames=32, seed=9)
    pm, am = torch.ones(1, num_pixel), torch.ones(1, num_audio)
    am[0, -config.num_freq_patches:] = 0
    with torch.no_grad():
        a = ours.tvlt(pixel, audio, pixel_mask=pm, audio_mask=am)
        b = hf.tvlt(pixel, audio, pixel_mask=pm, audio_mask=am)
        compare_model_outputs(a, b)
        torch.manual_seed(11)
        a = ours.tvlt(pixel, audio, mask_pixel=True, mask_audio=True)
        torch.manual_seed(11)
        b = hf.tvlt(pixel, audio, mask_pixel=True, mask_audio=True)
        compare_model_outputs(a, b)
        ours.train(), hf.train()
        labels = torch.tensor([[1.0]])
        torch.manual_seed(12)
        a = ours(pixel, audio, labels=labels, pixel_values_mixed=pixel)
        torch.manual_seed(12)
        b = hf(pixel, audio, labels=labels, pixel_values_mixed=pixel)
    for name in ("loss", "matching_logits", "pixel_logits", "audio_logits"):
        assert max_diff(getattr(a, name), getattr(b, name)) <= ATOL, name
    # classification head on the same encoder weights
    for loss_type, labels in (("regression", torch.tensor([[0.3]])), ("classification", torch.tensor([1]))):
        cfg = TvltConfig(loss_type=loss_type, num_labels=1 if loss_type == "regression" else 2)
        hf_cls = transformers.TvltForAudioVisualClassification(hf_config(cfg)).eval()
        hf_cls.tvlt.load_state_dict(hf.tvlt.state_dict())
        ours_cls = TvltForAudioVisualClassification(cfg).eval()
        ours_cls.load_state_dict(hf_cls.state_dict(), strict=True)
        with torch.no_grad():
            a = ours_cls(pixel, audio, pixel_mask=pm, audio_mask=am, labels=labels)
            b = hf_cls(pixel, audio, pixel_mask=pm, audio_mask=am, labels=labels)
        assert max_diff(a.logits, b.logits) <= ATOL and max_diff(a.loss, b.loss) <= ATOL
