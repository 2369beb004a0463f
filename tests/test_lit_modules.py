"""LightningModules on hand-made batches: heads built per task, losses, non-finite guard, optimizer and schedule,
retrieval's full score matrix, reconstruction panels. Tiny model (hidden 32), 1-2 frames, short audio."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tvlt.lit import EmotionModule, NonFiniteLossError, PretrainModule, RetrievalModule, SentimentModule
from tvlt.lit.callbacks import reconstruction_panels
from tvlt.lit.optim import warmup_cosine_lambda
from tvlt.metrics import retrieval_scores

from conftest import TINY_CONFIG, TINY_WIDTHS as TINY  # full-size inputs below: only the widths are tiny


def make_batch(b: int = 3, frames: int = 1, audio_frames: int = 32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "pixel_values": torch.rand(b, frames, 3, 224, 224, generator=g) * 2 - 1,
        "pixel_mask": torch.ones(b, frames * 196, dtype=torch.long),
        "audio_values": torch.rand(b, 1, audio_frames, 128, generator=g) * 2 - 1,
        "audio_mask": torch.ones(b, audio_frames // 16 * 8, dtype=torch.long),
        "labels": torch.tensor([-1.0, 0.0, 2.0])[:b],
        "ids": [f"clip{i}" for i in range(b)],
    }


def unused_parameters(module, loss) -> list[str]:
    module.zero_grad()
    loss.backward()
    return [n for n, p in module.named_parameters() if p.grad is None]


def test_sentiment_builds_only_the_classifier_and_uses_every_parameter():
    m = SentimentModule(config=TINY)
    names = {n for n, _ in m.named_parameters()}
    assert any(n.startswith("model.classifier.") for n in names)
    assert not any("matching_head" in n or "decoder" in n or "mae_head" in n for n in names)
    assert m.model.config.num_labels == 1
    batch = make_batch()
    loss = m.training_step(batch, 0)
    logits = m(batch)
    assert loss.item() == pytest.approx(F.mse_loss(logits[:, 0], batch["labels"]).item(), rel=1e-5)
    assert unused_parameters(m, m.training_step(batch, 0)) == []


def test_emotion_loss_is_bce_per_emotion():
    m = EmotionModule(config=TINY)
    assert m.model.config.num_labels == 6
    batch = make_batch()
    batch["labels"] = torch.tensor([[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0]], dtype=torch.float)
    loss = m.training_step(batch, 0)
    logits = m(batch)
    want = F.binary_cross_entropy_with_logits(logits, batch["labels"])
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    probs = m.predict_step(batch)["preds"]
    assert probs.shape == (3, 6) and ((probs >= 0) & (probs <= 1)).all()
    assert m.describe(probs)[0].startswith("emotions: ")


def test_pretrain_uses_loss_weights_and_every_parameter():
    torch.manual_seed(0)
    m = PretrainModule(config=TINY, loss_weights={"vam": 2.0, "mae_pixel": 0.5})
    batch = make_batch()
    batch["labels"] = torch.tensor([1.0, 0.0, 1.0])
    batch["pixel_values_mixed"] = batch["pixel_values"].roll(1, 0)
    batch["pixel_mask_mixed"] = batch["pixel_mask"]
    torch.manual_seed(1)
    out = m.training_step(batch, 0)
    torch.manual_seed(1)  # the same MAE masks
    ref = m.model(**{k: batch[k] for k in ("pixel_values", "audio_values", "pixel_mask", "audio_mask", "labels",
                                           "pixel_values_mixed", "pixel_mask_mixed")})
    want = 2.0 * ref.matching_loss + 0.5 * ref.pixel_loss + 1.0 * ref.audio_loss
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert out["pixel_logits"].shape == (3, 196, 16 * 16 * 3)
    assert out["audio_logits"].shape == (3, 16, 256)
    assert unused_parameters(m, m.training_step(batch, 0)["loss"]) == []
    with pytest.raises(ValueError, match="unknown keys"):
        PretrainModule(config=TINY, loss_weights={"mae": 1.0})


def test_retrieval_builds_no_decoder_and_uses_every_parameter():
    m = RetrievalModule(config=TINY)
    names = {n for n, _ in m.named_parameters()}
    assert any("matching_head" in n for n in names)
    assert not any("decoder" in n or "mae_head" in n for n in names)
    assert unused_parameters(m, m.training_step(make_batch(), 0)) == []


def test_retrieval_trains_on_in_batch_negatives():
    """Each pair the VAM head is trained on is the audio with the video ``vam_negatives`` names: about half are
    another clip's (label 0), the rest the clip's own (label 1); the loss is the BCE of the head on those labels.
    A training step that labels every pair positive fails here."""
    m = RetrievalModule(config=TINY)
    seen = []
    forward = m.model.forward

    def spy(**kwargs):
        out = forward(**kwargs)
        seen.append((kwargs, out))
        return out

    m.model.forward = spy
    batch = make_batch(4, seed=3)
    batch["pixel_mask"][2, 100:] = 0  # clip 2's padding travels with its video
    torch.manual_seed(0)
    losses = [m.training_step(batch, 0) for _ in range(10)]
    labels = torch.cat([kwargs["labels"] for kwargs, _ in seen])
    assert 0.3 < float((labels == 0).float().mean()) < 0.7
    for loss, (kwargs, out) in zip(losses, seen):
        for i in range(4):
            j = next(j for j in range(4) if torch.equal(kwargs["pixel_values_mixed"][i], batch["pixel_values"][j]))
            assert kwargs["labels"][i] == float(j == i)
            assert torch.equal(kwargs["pixel_mask_mixed"][i], batch["pixel_mask"][j])
        want = F.binary_cross_entropy_with_logits(out.matching_logits.view(-1), kwargs["labels"])
        assert torch.equal(loss, want)


def test_retrieval_scores_every_video_against_every_audio():
    torch.manual_seed(0)
    m = RetrievalModule(config=TINY, score_batch_size=2).eval()
    batches = [make_batch(2, seed=1), make_batch(2, seed=2)]
    batches[1]["ids"] = ["clip2", "clip0"]  # clip0 repeated, as a padded DistributedSampler does
    batches[1]["audio_values"][1] = batches[0]["audio_values"][0]
    batches[1]["pixel_values"][1] = batches[0]["pixel_values"][0]
    logged = {}
    m.log_metrics = lambda metrics, stage: logged.update({f"{stage}/{k}": v for k, v in metrics.items()})
    for i, b in enumerate(batches):
        m.validation_step(b, i)
    m.on_validation_epoch_end()
    # brute force: every pair through the model, 3 distinct clips, in the module's order (sorted by sample key)
    clips = {"clip0": (batches[0], 0), "clip1": (batches[0], 1), "clip2": (batches[1], 0)}
    from tvlt.metrics import sample_keys

    order = sorted(clips, key=lambda s: int(sample_keys([s])[0]))
    scores = torch.zeros(3, 3)
    with torch.no_grad():
        for i, v in enumerate(order):
            for j, a in enumerate(order):
                bv, iv = clips[v]
                ba, ia = clips[a]
                enc = m.model.tvlt(bv["pixel_values"][iv:iv + 1].half().float(),
                                   ba["audio_values"][ia:ia + 1].half().float(),
                                   bv["pixel_mask"][iv:iv + 1], ba["audio_mask"][ia:ia + 1], return_dict=True)
                scores[i, j] = m.model.matching_head(enc.last_hidden_state).view(-1)[0]
    want = {**retrieval_scores(scores), "num_samples": 3.0}
    assert logged.keys() == {f"val/{k}" for k in want}
    for k, v in want.items():
        assert logged[f"val/{k}"] == pytest.approx(v), k


def test_nonfinite_loss_names_the_samples():
    m = SentimentModule(config=TINY)
    batch = make_batch()
    batch["labels"] = torch.tensor([0.0, float("nan"), 1.0])
    with pytest.raises(NonFiniteLossError, match=r"\['clip0', 'clip1', 'clip2'\]"):
        m.training_step(batch, 0)


def test_warmup_cosine_values():
    f = warmup_cosine_lambda(warmup_steps=10, total_steps=110, min_lr_ratio=0.0)
    assert f(0) == 0.0
    assert f(5) == pytest.approx(0.5)  # linear warm-up
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)  # half way through the cosine: 0.5 * (1 + cos(pi/2))
    assert f(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert f(110) == pytest.approx(0.0) and f(500) == pytest.approx(0.0)
    g = warmup_cosine_lambda(0, 100, min_lr_ratio=0.1)
    assert g(100) == pytest.approx(0.1) and g(0) == pytest.approx(1.0)


def configured_module(*overrides: str):
    """The sentiment module as run.py builds it from conf/ (tiny size, no scheduler): the optimizer comes from
    conf/model/tvlt_base.yaml, its one source."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=tvlt_tiny", "model.scheduler=null", *overrides])
    return instantiate(cfg.model, _convert_="all")


def test_weight_decay_groups_are_the_models_no_weight_decay_rule_and_the_optimizer_is_the_configured_one():
    """With exclude_no_decay the optimizer's groups are exactly: decayed = the layers' matrices (listed by hand
    for the 2-layer sentiment model), not decayed = what ``model.no_weight_decay()`` names (every other
    parameter: biases, norms, tables). The optimizer is the configured one, the original release's AdamW
    (REFERENCE.md B.6); a module built without one refuses to train, naming the key."""
    m = configured_module("model.exclude_no_decay=true")
    named = dict(m.model.named_parameters())
    layer = [f"tvlt.encoder.layer.{i}.{p}.weight" for i in range(2) for p in (
        "attention.attention.query", "attention.attention.key", "attention.attention.value",
        "attention.output.dense", "intermediate.dense", "output.dense")]
    decayed = {*layer, "tvlt.pixel_embeddings.patch_embeddings.projection.weight",
               "tvlt.audio_embeddings.patch_embeddings.projection.weight", "classifier.0.weight", "classifier.3.weight"}
    assert m.model.no_weight_decay() == set(named) - decayed
    assert {"tvlt.cls_embedding", "tvlt.pixel_embeddings.pos_embed_v", "tvlt.layernorm.weight", "classifier.1.weight",
            "classifier.3.bias"} <= m.model.no_weight_decay()
    opt = m.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.AdamW)
    d = opt.defaults
    assert (d["lr"], tuple(d["betas"]), d["eps"], d["weight_decay"]) == (1e-4, (0.9, 0.98), 1e-8, 0.001)
    ids = {id(p): n for n, p in named.items()}
    assert [({ids[id(p)] for p in g["params"]}, g["weight_decay"]) for g in opt.param_groups] == [
        (decayed, 0.001), (set(named) - decayed, 0.0)]
    plain = configured_module().configure_optimizers()["optimizer"]
    assert len(plain.param_groups) == 1 and len(plain.param_groups[0]["params"]) == len(named)
    with pytest.raises(ValueError, match="SentimentModule has no optimizer.*model.optimizer"):
        SentimentModule(config=TINY).configure_optimizers()


def test_reconstruction_panels_paste_visible_patches():
    torch.manual_seed(0)
    m = PretrainModule(config=dict(TINY, task_matching=False))
    batch = make_batch(1, frames=2)
    out = m.training_step(batch, 0)
    panels = reconstruction_panels(batch, out, m.model.config, max_frames=2)
    assert panels["frames"].shape == (3, 2 * 224, 3 * 224)
    assert panels["spectrogram"].shape == (1, 3 * 128, 32)
    # the first column block is the input itself, mapped from [-1, 1] to [0, 1]
    want = ((batch["pixel_values"][0, 0] + 1) / 2).clamp(0, 1)
    assert torch.allclose(panels["frames"][:, :224, :224], want)
    # 392 - int(392 * 0.25) = 294 of the 2 x 196 patches are masked: grey (0.5) in the middle block
    masked = panels["frames"][:, :, 224:448]
    grey_fraction = (masked == 0.5).all(0).float().mean().item()
    assert grey_fraction == pytest.approx(294 / 392, abs=1e-3)
    # and the reconstruction block shows the input where patches were visible
    recon, inp = panels["frames"][:, :, 448:], panels["frames"][:, :, :224]
    visible = ~(masked == 0.5).all(0)
    assert torch.equal(recon[:, visible], inp[:, visible])


def test_pretrained_checkpoint_starts_the_encoder(tmp_path):
    """model.pretrained: a save_pretrained folder of the pretraining model initialises a sentiment run's encoder
    (the classifier is new), and the summary line names the file."""
    torch.manual_seed(0)
    src = PretrainModule(config=TINY)
    src.export_pretrained(tmp_path / "pre")
    assert (tmp_path / "pre" / "config.json").is_file() and (tmp_path / "pre" / "model.safetensors").is_file()
    dst = SentimentModule(config=TINY, pretrained=str(tmp_path / "pre"))
    a, b = src.model.tvlt.state_dict(), dst.model.tvlt.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert f"loaded from {tmp_path / 'pre'}" in dst.summary()


def test_a_batch_without_clips_is_no_training_step():
    """data.on_error=skip: a batch whose clips all failed ({"ids": []}, delivered only under DDP) is no step
    without DDP (the DDP case is tests/test_run.py::test_ddp_goes_on_when_every_clip_of_one_process_batch_fails)."""
    for module in (SentimentModule(config=TINY), PretrainModule(config=TINY), RetrievalModule(config=TINY)):
        assert module.training_step({"ids": []}, 0) is None


class _NotATensor:
    """A class weights_only=True refuses to unpickle."""


def test_load_lit_checkpoint_names_bad_files_and_never_advises_weights_only_false(tmp_path):
    from tvlt.lit import CheckpointError, load_lit_checkpoint

    m = SentimentModule(config=TINY)
    good = tmp_path / "good.ckpt"
    torch.save({"tvlt_module": "SentimentModule", "state_dict": m.state_dict(),
                "hyper_parameters": {"config": TINY}}, good)
    loaded = load_lit_checkpoint(good)
    assert type(loaded) is SentimentModule and loaded.loaded_checkpoint == str(good)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), m.state_dict().values()))

    random_bytes = tmp_path / "random.ckpt"
    random_bytes.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    hostile = tmp_path / "object.ckpt"
    torch.save({"tvlt_module": "SentimentModule", "state_dict": {}, "extra": _NotATensor()}, hostile)
    cases = {random_bytes: "not a PyTorch checkpoint", hostile: "Unsupported global",
             tmp_path / "missing.ckpt": "checkpoint not found"}
    for path, reason in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_lit_checkpoint(path)
        message = str(info.value)
        assert str(path) in message and reason in message, message
        assert "False" not in message and info.value.__cause__ is None  # torch's advice is not passed on


def test_compile_option_compiles_in_place_and_keeps_state_dict_keys():
    """model.compile=true wraps the TVLT model's call with torch.compile without renaming any weight, so
    checkpoints and save_pretrained exports stay loadable by uncompiled models (no `_orig_mod.` prefix)."""
    from tvlt.lit import SentimentModule

    plain = SentimentModule(config=TINY_CONFIG)
    compiled = SentimentModule(config=TINY_CONFIG, compile=True)
    assert plain.model._compiled_call_impl is None
    assert compiled.model._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(compiled.state_dict(), strict=True)


def test_config_keys_stay_strict_in_the_framework():
    """The library config stores unknown keys (the port's policy); the Hydra layer refuses them by name."""
    with pytest.raises(ValueError, match=r"model\.config: unknown key\(s\) \['hidden_sise'\]"):
        SentimentModule(config={**TINY, "hidden_sise": 64})


def test_pretraining_validation_runs_seeded_mae_and_keeps_training_randomness():
    """The model runs MAE only in training (as the port); the pretraining module's validation adds the MAE terms
    with masks from a seeded, forked RNG: the same loss every time, and the global RNG is left as it was."""
    torch.manual_seed(0)
    m = PretrainModule(config=TINY, val_mask_seed=5).eval()
    batch = make_batch()
    batch["labels"] = torch.tensor([1.0, 0.0, 1.0])
    batch["pixel_values_mixed"] = batch["pixel_values"].roll(1, 0)
    batch["pixel_mask_mixed"] = batch["pixel_mask"]
    logged = []
    m.log = lambda name, value, **kw: logged.append((name, float(value)))
    torch.manual_seed(123)
    with torch.no_grad():
        m.validation_step(batch, 2)
        m.validation_step(batch, 2)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))  # validation drew nothing from the global RNG
    losses = [v for k, v in logged if k == "val/loss"]
    parts = {k for k, _ in logged}
    assert len(losses) == 2 and losses[0] == losses[1]
    assert {"val/mae_pixel_loss", "val/mae_audio_loss", "val/vam_loss"} <= parts
    inputs = {k: batch[k] for k in ("pixel_values", "audio_values", "pixel_mask", "audio_mask", "labels",
                                    "pixel_values_mixed", "pixel_mask_mixed")}
    torch.manual_seed(7)  # the plain model in eval mode: matching only, deterministic
    with torch.no_grad():
        plain = m.model(**inputs)
    assert plain.pixel_loss is None and plain.loss.item() == pytest.approx(plain.matching_loss.item())
    torch.manual_seed(5 + 2)  # the module's masks are those of seed val_mask_seed + batch index
    with torch.no_grad():
        seeded = m.model(**inputs, compute_mae=True)
    assert losses[0] == pytest.approx(seeded.loss.item(), rel=1e-6)


def test_every_task_trains_through_the_base_step_that_keeps_ddp_processes_in_step():
    """The DDP-safe handling of batches whose every clip failed (issue 17.1) lives in TvltLitModule.training_step;
    a task that overrode training_step would skip it alone and hang its peers. Tasks implement train_step."""
    import tvlt.lit as lit
    from tvlt.lit.base import TvltLitModule

    tasks = [getattr(lit, name) for name in ("SentimentModule", "EmotionModule", "PretrainModule", "RetrievalModule",
                                             "ClassificationModule")]
    for task in tasks:
        assert task.training_step is TvltLitModule.training_step, task.__name__
        assert task.train_step is not TvltLitModule.train_step, task.__name__


@pytest.mark.parametrize("task,loss_type", [("sentiment", "regression"), ("emotion", "multi_label_classification"),
                                            ("classify", "classification"), ("classify-multi",
                                                                             "multi_label_classification")])
def test_task_modules_train_through_the_models_loss(task, loss_type):
    """One owner of the fine-tuning losses: the training step's loss is the model's own (``labels`` given to the
    forward), for the ``loss_type`` each task sets."""
    from tvlt.lit import ClassificationModule

    batch = make_batch()
    if task == "sentiment":
        m = SentimentModule(config=TINY)
    elif task == "emotion":
        m = EmotionModule(config=TINY)
        batch["labels"] = torch.tensor([[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0]],
                                       dtype=torch.float)
    elif task == "classify":
        m = ClassificationModule(classes=["a", "b", "c"], config=TINY)
        batch["labels"] = torch.tensor([2, 0, 1])
    else:
        m = ClassificationModule(classes=["a", "b"], multilabel=True, config=TINY)
        batch["labels"] = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert m.model.config.loss_type == loss_type
    loss = m.training_step(batch, 0)
    inputs = {k: batch[k] for k in ("pixel_values", "audio_values", "pixel_mask", "audio_mask")}
    assert torch.equal(loss, m.model(**inputs, labels=batch["labels"]).loss)
