"""Model behaviour beyond reference parity: attention paths, low precision, masking rules, outputs, tasks."""

from __future__ import annotations

import math

import pytest
import torch

from tvlt.configuration import TvltConfig
from tvlt.layers import TvltSelfAttention
from tvlt.masking import (
    audio_noise,
    masked_mse,
    patchify_audio,
    patchify_pixels,
    random_masking,
    restore_with_mask_tokens,
    unpatchify_audio,
    unpatchify_pixels,
)
from tvlt.modeling import TvltForAudioVisualClassification, TvltForPreTraining, TvltModel, TvltModelOutput


def make_inputs(config: TvltConfig, batch: int = 2, frames: int = 2, audio_frames: int = 32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    pixel = torch.rand(batch, frames, 3, config.image_size, config.image_size, generator=gen) * 2 - 1
    audio = torch.rand(batch, 1, audio_frames, config.frequency_length, generator=gen) * 2 - 1
    return pixel, audio


def randomize(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("with_mask", [False, True])
def test_sdpa_and_eager_attention_agree(with_mask):
    attn = TvltSelfAttention(32, 4, qkv_bias=True, dropout=0.0).eval()
    x = torch.randn(3, 10, 32)
    mask = None
    if with_mask:
        mask = torch.ones(3, 10, dtype=torch.bool)
        mask[1, 6:] = False
        mask[2, 2:] = False
    sdpa, _ = attn(x, mask, "sdpa")
    eager, probs = attn(x, mask, "eager", output_attentions=True)
    assert (sdpa - eager).abs().max().item() < 1e-5
    assert probs.shape == (3, 4, 10, 10)
    if with_mask:
        assert probs[1, :, :, 6:].abs().max().item() == 0.0
        assert torch.allclose(probs.sum(-1), torch.ones(3, 4, 10))


def test_whole_model_sdpa_equals_eager(tiny_config):
    model = TvltModel(tiny_config).eval()
    randomize(model)
    pixel, audio = make_inputs(tiny_config)
    pixel_mask = torch.ones(2, 32)
    pixel_mask[0, 16:] = 0
    with torch.no_grad():
        a = model(pixel, audio, pixel_mask=pixel_mask).last_hidden_state
        model.config.attn_implementation = "eager"
        b = model(pixel, audio, pixel_mask=pixel_mask).last_hidden_state
    assert (a - b).abs().max().item() < 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_low_precision_with_fully_padded_region_is_finite(tiny_config, dtype, implementation):
    """Sample 1 has no real audio at all and only one real video frame: outputs stay finite in bf16/fp16."""
    config = TvltConfig(**{**tiny_config.to_dict(), "attn_implementation": implementation})
    model = TvltForPreTraining(config).eval()
    randomize(model)
    model.to(dtype)
    pixel, audio = make_inputs(config)
    pixel_mask = torch.ones(2, 32)
    pixel_mask[1, 16:] = 0
    audio_mask = torch.ones(2, 32)
    audio_mask[1] = 0
    with torch.no_grad():
        out = model(pixel.to(dtype), audio.to(dtype), pixel_mask=pixel_mask, audio_mask=audio_mask,
                    labels=torch.tensor([1.0, 0.0]), compute_mae=True)
        enc = model.tvlt(pixel.to(dtype), audio.to(dtype), pixel_mask=pixel_mask, audio_mask=audio_mask)
    assert torch.isfinite(enc.last_hidden_state).all()
    for name in ("loss", "matching_logits", "pixel_logits", "audio_logits"):
        assert torch.isfinite(getattr(out, name)).all(), name
    assert out.audio_label_masks[1].sum().item() == 0  # nothing to reconstruct in sample 1's audio


def test_masking_without_padding_is_argsort_of_noise():
    tokens = torch.randn(2, 12, 4)
    noise = torch.rand(2, 12)
    result = random_masking(tokens, noise, 0.75)
    expected_keep = torch.argsort(noise, 1)[:, :3]
    assert torch.equal(result.ids_keep, expected_keep)
    assert torch.equal(result.kept, tokens.gather(1, expected_keep[:, :, None].expand(-1, -1, 4)))
    assert result.label_masks.sum(1).tolist() == [9.0, 9.0]
    assert result.kept_attention_mask is None


def test_padding_safe_masking_rules():
    """Same token count per sample; >= 1 real token kept; padding never a target; ratio applied to real tokens."""
    torch.manual_seed(0)
    num_tokens = 40
    mask = torch.zeros(4, num_tokens)
    mask[0] = 1  # no padding
    mask[1, :20] = 1  # half padding
    mask[2, :1] = 1  # a single real token
    mask[3, :36] = 1  # little padding: int(36 * 0.25) = 9 real + 1 padding kept
    for _ in range(20):
        noise = torch.rand(4, num_tokens)
        result = random_masking(torch.randn(4, num_tokens, 8), noise, 0.75, mask)
        assert result.kept.shape == (4, 10, 8)
        kept_real = result.kept_attention_mask.sum(1).tolist()
        assert kept_real == [10, 5, 1, 9]
        assert (result.label_masks * (1 - mask)).sum().item() == 0  # padding never a target
        assert result.label_masks.sum(1).tolist() == [30, 15, 0, 27]
        # kept and masked real tokens partition the real tokens
        kept_flags = torch.zeros(4, num_tokens).scatter(1, result.ids_keep, 1.0)
        assert torch.equal((kept_flags * mask) + result.label_masks, mask)
        assert torch.equal(result.ids_restore, torch.argsort(torch.argsort(result.ids_restore, 1), 1))


def test_frame_level_and_patch_level_audio_noise():
    torch.manual_seed(0)
    frame = audio_noise(2, 24, 4, "frame-level", torch.device("cpu"))
    assert torch.equal(frame.view(2, 6, 4), frame.view(2, 6, 4)[:, :, :1].expand(-1, -1, 4))
    patch = audio_noise(2, 24, 4, "patch-level", torch.device("cpu"))
    assert patch.unique().numel() == 48
    with pytest.raises(ValueError, match="audio_mask_type"):
        audio_noise(2, 24, 4, "tube", torch.device("cpu"))


@pytest.mark.parametrize("mask_type", ["frame-level", "patch-level"])
def test_audio_mask_types_in_model(tiny_config, mask_type):
    config = TvltConfig(**{**tiny_config.to_dict(), "audio_mask_type": mask_type, "audio_mask_ratio": 0.5})
    model = TvltModel(config).eval()
    pixel, audio = make_inputs(config, audio_frames=64)  # 16 time patches x 4 freq patches
    torch.manual_seed(3)
    with torch.no_grad():
        out = model(pixel, audio, mask_audio=True)
    masks = out.audio_label_masks.view(2, 16, 4)
    assert out.last_audio_hidden_state.shape[1] == 32
    assert out.audio_label_masks.sum(1).tolist() == [32.0, 32.0]
    whole_frames = bool((masks == masks[:, :, :1]).all())
    assert whole_frames is (mask_type == "frame-level")


def test_masked_mse_with_nothing_to_reconstruct_is_zero():
    pred, target = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    assert masked_mse(pred, target, torch.zeros(2, 5)).item() == 0.0
    mask = torch.tensor([[1.0, 0, 0, 1, 0], [0, 0, 0, 0, 0]])
    expected = ((pred - target) ** 2).mean(-1)[mask.bool()].mean()
    assert torch.allclose(masked_mse(pred, target, mask), expected)


def test_patchify_round_trips_and_order():
    pixel = torch.arange(2 * 2 * 3 * 8 * 8, dtype=torch.float32).view(2, 2, 3, 8, 8)
    patches = patchify_pixels(pixel, [4, 4])
    assert patches.shape == (2, 8, 48)
    # patch 1 of frame 0 = rows 0-3, cols 4-7; first value (row 0, col 4, channel 0), then channel 1
    assert patches[0, 1, 0] == pixel[0, 0, 0, 0, 4] and patches[0, 1, 1] == pixel[0, 0, 1, 0, 4]
    assert torch.equal(unpatchify_pixels(patches, 2, 3, 8, [4, 4]), pixel)
    audio = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    a = patchify_audio(audio, [4, 4])
    assert a.shape == (2, 4, 16)
    assert a[0, 1, 1] == audio[0, 0, 0, 5]  # time-major patches, frequency innermost
    assert torch.equal(unpatchify_audio(a, 1, 8, [4, 4]), audio)


def test_restore_with_mask_tokens_inverts_shuffle():
    tokens = torch.randn(2, 6, 3)
    result = random_masking(tokens, torch.rand(2, 6), 0.5)
    token = torch.full((1, 1, 3), 7.0)
    full = restore_with_mask_tokens(result.kept, token, result.ids_restore)
    kept = result.label_masks == 0
    assert torch.equal(full[kept], tokens[kept])
    assert (full[~kept] == 7.0).all()


def test_output_tuple_semantics(tiny_config):
    model = TvltModel(tiny_config).eval()
    pixel, audio = make_inputs(tiny_config)
    with torch.no_grad():
        out = model(pixel, audio)
        as_tuple = model(pixel, audio, return_dict=False)
    assert isinstance(out, TvltModelOutput)
    assert torch.equal(out[0], out.last_hidden_state) and torch.equal(out["last_hidden_state"], out[0])
    assert len(out.to_tuple()) == 3 and out.pixel_label_masks is None  # None fields skipped by to_tuple
    assert len(as_tuple) == 7 and as_tuple[3:] == (None,) * 4  # return_dict=False keeps the port's positions
    assert torch.equal(as_tuple[1], out.last_pixel_hidden_state)
    assert list(out.keys()) == ["last_hidden_state", "last_pixel_hidden_state", "last_audio_hidden_state"]


def test_pretraining_task_switches(tiny_config):
    pixel, audio = make_inputs(tiny_config)
    labels = torch.tensor([1.0, 0.0])
    mae_only = TvltForPreTraining(TvltConfig(**{**tiny_config.to_dict(), "task_matching": False})).eval()
    assert not hasattr(mae_only, "matching_head")
    out = mae_only(pixel, audio, labels=labels, compute_mae=True)
    assert out.matching_logits is None and torch.allclose(out.loss, out.pixel_loss + out.audio_loss)
    vam_only = TvltForPreTraining(TvltConfig(**{**tiny_config.to_dict(), "task_mae": False})).train()
    assert not hasattr(vam_only, "decoder")
    out = vam_only(pixel, audio, labels=labels, pixel_values_mixed=pixel.flip(0))
    assert out.pixel_logits is None and torch.equal(out.loss, out.matching_loss)
    with pytest.raises(ValueError, match="task_matching"):
        TvltForPreTraining(TvltConfig(**{**tiny_config.to_dict(), "task_mae": False, "task_matching": False}))


def test_pretraining_backward_with_gradient_checkpointing(tiny_config):
    model = TvltForPreTraining(tiny_config).train()
    randomize(model)
    pixel, audio = make_inputs(tiny_config)
    torch.manual_seed(0)
    ref = model(pixel, audio, labels=torch.tensor([1.0, 0.0]))
    ref.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    torch.manual_seed(0)
    out = model(pixel, audio, labels=torch.tensor([1.0, 0.0]))
    out.loss.backward()
    assert torch.allclose(out.loss, ref.loss)
    for name, g in grads.items():
        assert torch.allclose(dict(model.named_parameters())[name].grad, g, atol=1e-6), name


def test_bad_inputs_raise_clear_errors(tiny_config):
    model = TvltModel(tiny_config)
    pixel, audio = make_inputs(tiny_config)
    with pytest.raises(ValueError, match="pixel_values"):
        model(pixel[:, :, :, :16, :16], audio)
    with pytest.raises(ValueError, match="num_frames"):
        model(torch.cat([pixel, pixel], 1), audio)
    with pytest.raises(ValueError, match="multiple of 4"):
        model(pixel, audio[:, :, :30])
    with pytest.raises(ValueError, match="pixel_mask"):
        model(pixel, audio, pixel_mask=torch.ones(2, 31))
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(pixel, audio[:1])


def test_classifier_pooler_layout_keys(tiny_config):
    config = TvltConfig(**{**tiny_config.to_dict(), "classifier_pooler": True, "num_labels": 1})
    model = TvltForAudioVisualClassification(config)
    keys = {k for k in model.state_dict() if k.startswith("classifier")}
    assert keys == {"classifier.0.dense.weight", "classifier.0.dense.bias", "classifier.1.weight",
                    "classifier.1.bias", "classifier.2.weight", "classifier.2.bias", "classifier.4.weight",
                    "classifier.4.bias"}
    pixel, audio = make_inputs(config)
    assert model(pixel, audio).logits.shape == (2, 1)


def test_multi_label_loss_type_is_bce_per_label(tiny_config):
    config = TvltConfig(**{**tiny_config.to_dict(), "num_labels": 6, "loss_type": "multi_label_classification"})
    model = TvltForAudioVisualClassification(config).eval()
    pixel, audio = make_inputs(config)
    labels = torch.tensor([[1.0, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 1]])
    out = model(pixel, audio, labels=labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels)
    assert torch.allclose(out.loss, expected)
    # hand-computed: logits 0 give ln 2 per label; pos_weight 3 triples the positive terms (2 of 6 in row 0)
    logits = torch.zeros(1, 6)
    assert float(model.compute_loss(logits, labels[:1])) == pytest.approx(math.log(2))
    weighted = model.compute_loss(logits, labels[:1], pos_weight=torch.full((6,), 3.0))
    assert float(weighted) == pytest.approx((2 * 3 + 4) * math.log(2) / 6)
    with pytest.raises(ValueError, match=r"labels must have the logits' shape \(1, 6\)"):
        model.compute_loss(logits, torch.tensor([1]))


def test_classification_loss_type_is_cross_entropy_as_the_port(tiny_config):
    """The port's contract for "classification": cross-entropy, also for float labels of the logits' shape (soft
    targets), never BCE."""
    model = TvltForAudioVisualClassification(TvltConfig(**{**tiny_config.to_dict(), "num_labels": 2}))
    logits = torch.tensor([[0.0, 0.0], [math.log(3), 0.0]])  # p = [1/2, 1/2], then [3/4, 1/4]
    assert float(model.compute_loss(logits, torch.tensor([1, 0]))) == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)
    soft = model.compute_loss(logits, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    assert float(soft) == pytest.approx((math.log(2) + math.log(4)) / 2)


def test_no_weight_decay_names_tables_tokens_biases_and_norms(tiny_config):
    model = TvltForPreTraining(tiny_config)
    names = model.no_weight_decay()
    for expected in ("tvlt.cls_embedding", "tvlt.pixel_embeddings.pos_embed_v", "tvlt.audio_embeddings.freq_embed",
                     "pixel_mask_token", "decoder_audio_type_embed", "tvlt.layernorm.weight",
                     "tvlt.encoder.layer.0.attention.attention.query.bias"):
        assert expected in names, expected
    assert "tvlt.encoder.layer.0.attention.attention.query.weight" not in names
    assert "tvlt.pixel_embeddings.patch_embeddings.projection.weight" not in names


def test_first_token_only_computes_the_same_cls(tiny_config):
    model = TvltModel(tiny_config).eval()
    randomize(model)
    pixel, audio = make_inputs(tiny_config)
    audio_mask = torch.ones(2, 32)
    audio_mask[1, 8:] = 0
    full = model(pixel, audio, audio_mask=audio_mask).last_hidden_state
    cls = model(pixel, audio, audio_mask=audio_mask, first_token_only=True).last_hidden_state
    assert cls.shape == (2, 1, 32)
    assert (cls[:, 0] - full[:, 0]).abs().max().item() < 1e-6
    grads = torch.autograd.grad(full[:, 0].sum(), list(model.parameters()), allow_unused=True)
    grads_cls = torch.autograd.grad(cls.sum(), list(model.parameters()), allow_unused=True)
    for g, h in zip(grads, grads_cls, strict=True):
        assert (g is None and h is None) or (g - h).abs().max().item() < 1e-5
    with_states = model(pixel, audio, first_token_only=True, output_hidden_states=True)
    assert with_states.last_hidden_state.shape[1] == 1 + 32 + 32  # full sequence when states are requested


def test_compiled_pretraining_step_matches_eager(tiny_config):
    """``model.compile()`` (the ``model.compile=true`` option) gives the eager loss, logits and gradients to fp32
    rounding when the MAE noise is passed in. Without it, inductor draws the masking noise with its own RNG, so
    a compiled run masks different patches than an eager run with the same seed (documented in docs/model.md)."""
    eager = TvltForPreTraining(tiny_config).train()
    randomize(eager)
    compiled = TvltForPreTraining(tiny_config).train()
    compiled.load_state_dict(eager.state_dict())
    compiled.compile()
    pixel, audio = make_inputs(tiny_config)
    gen = torch.Generator().manual_seed(1)
    ph, pw = tiny_config.image_patch_size
    pt, pf = tiny_config.audio_patch_size
    pixel_noise = torch.rand(2, pixel.shape[1] * (tiny_config.image_size // ph) * (tiny_config.image_size // pw),
                             generator=gen)
    audio_noise = torch.rand(2, (audio.shape[2] // pt) * (tiny_config.frequency_length // pf), generator=gen)
    outputs = []
    for model in (eager, compiled):
        out = model(pixel, audio, labels=torch.tensor([1.0, 0.0]), pixel_values_mixed=pixel.flip(0),
                    pixel_noise=pixel_noise, audio_noise=audio_noise)
        out.loss.backward()
        outputs.append(out)
    assert abs(outputs[0].loss.item() - outputs[1].loss.item()) < 1e-5
    assert outputs[0].pixel_logits.shape == outputs[1].pixel_logits.shape
    assert (outputs[0].pixel_logits - outputs[1].pixel_logits).abs().max().item() < 1e-5
    assert (outputs[0].audio_logits - outputs[1].audio_logits).abs().max().item() < 1e-5
    assert torch.equal(outputs[0].pixel_label_masks, outputs[1].pixel_label_masks)
    compiled_params = dict(compiled.named_parameters())
    for name, p in eager.named_parameters():
        assert p.grad is not None, name
        assert (p.grad - compiled_params[name].grad).abs().max().item() < 1e-4, name


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_padding_values_do_not_reach_any_output_of_a_real_sample(tiny_config, implementation):
    """Issue 17.6: an 8-frame and a 2-frame video (and a long and a short spectrogram) in one batch; filling the
    padding with 0 or with 1e6 gives the same losses and the same logits at every real position (the MAE decoder
    masks padding keys as the encoder does). Unpadded parity with the reference: tests/test_parity_model.py."""
    config = TvltConfig(**{**tiny_config.to_dict(), "num_frames": 8, "attn_implementation": implementation})
    model = TvltForPreTraining(config).eval()
    randomize(model)
    ppf, nf = config.num_patches_per_frame, config.num_freq_patches
    pixel, audio = make_inputs(config, frames=8, audio_frames=64)
    pixel_mask = torch.ones(2, 8 * ppf)
    pixel_mask[1, 2 * ppf:] = 0  # sample 1: 2 real frames of 8
    audio_mask = torch.ones(2, 64 // 4 * nf)
    audio_mask[1, 4 * nf:] = 0  # sample 1: 4 real time patches (16 spectrogram frames) of 16
    gen = torch.Generator().manual_seed(3)
    noise = dict(pixel_noise=torch.rand(2, 8 * ppf, generator=gen), audio_noise=torch.rand(2, 16, generator=gen))
    outs = []
    for fill in (0.0, 1e6):
        p, a = pixel.clone(), audio.clone()
        p[1, 2:] = fill
        a[1, :, 16:] = fill
        with torch.no_grad():
            outs.append(model(p, a, pixel_mask, audio_mask, labels=torch.tensor([1.0, 0.0]),
                              pixel_values_mixed=p.flip(0), pixel_mask_mixed=pixel_mask.flip(0), compute_mae=True,
                              **noise))  # eval mode runs MAE only when asked (as the port)
    zero, huge = outs
    for name in ("loss", "matching_loss", "pixel_loss", "audio_loss", "matching_logits"):
        assert torch.allclose(getattr(zero, name), getattr(huge, name), rtol=0, atol=1e-6), name
    real_pixels, real_audio = pixel_mask.bool(), audio_mask.bool()
    assert torch.allclose(zero.pixel_logits[real_pixels], huge.pixel_logits[real_pixels], rtol=0, atol=1e-5)
    assert torch.allclose(zero.audio_logits[real_audio], huge.audio_logits[real_audio], rtol=0, atol=1e-5)
    # sample 1's padded positions are no reconstruction target; its real masked positions are
    assert zero.pixel_label_masks[1, 2 * ppf:].sum() == 0 and zero.pixel_label_masks[1, :2 * ppf].sum() > 0


def test_pretraining_loss_is_the_weighted_sum_of_the_terms_that_ran():
    from tvlt.modeling import pretraining_loss

    terms = {"vam": torch.tensor(0.5), "mae_pixel": torch.tensor(2.0), "mae_audio": None}
    assert float(pretraining_loss(terms)) == 2.5
    assert float(pretraining_loss(terms, {"vam": 2.0, "mae_pixel": 0.25, "mae_audio": 9.0})) == 1.5
    assert pretraining_loss({"vam": None}) is None
    assert pretraining_loss({"vam": torch.tensor(1.0, dtype=torch.bfloat16)}).dtype == torch.float32
    with pytest.raises(ValueError, match=r"unknown term\(s\) \['mae'\]"):
        pretraining_loss({"mae": torch.tensor(1.0)})
