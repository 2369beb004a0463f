"""run.py end to end on the real config: composition of every experiment, one step of each (fast_dev_run), a
2-process CPU DDP run with W&B offline and the network blocked, a `-m` sweep through the real command line,
resume from last.ckpt, predict on a real clip, and a crash that still closes its logger.

Tiny model (hidden 32, 2 layers), 1 frame, a small demo dataset, no workers.
"""

from __future__ import annotations

import copy
import math
import os
import re
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Callback
from omegaconf import open_dict

from tvlt.configuration import TvltConfig
from tvlt.labels import EMOTIONS
from tvlt.lit import job, predict, runs
from tvlt.processing import TvltProcessor

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO / "tests" / "data"  # real clips shipped with the tests
EXPERIMENTS = ["mosei", "mosei_demo", "mosei_emotion", "mosei_emotion_demo", "pretrain", "retrieval"]

# small and fast everywhere: tiny model, 1 frame, batch 2, no workers, in-process decoding
FAST = ["model=tvlt_tiny", "data.num_frames=1", "data.batch_size=2", "data.num_workers=0",
        "data.decode_timeout=null", "trainer.accelerator=cpu"]


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> str:
    """The embedded demo MOSEI set (32 train, 8 valid, 8 test clips), generated once for these tests."""
    from datamodules.demo import ensure_demo_mosei

    return str(ensure_demo_mosei(tmp_path_factory.mktemp("demo") / "mosei"))


def demo_overrides(demo_dir: str, experiment: str = "mosei") -> list[str]:
    """The demo set of ``experiment``: the session's MOSEI set, or for retrieval a small class set beside it (made
    once; retrieval refuses the MOSEI set, which is another kind)."""
    if experiment.startswith("retrieval"):
        return [f"data.demo_dir={Path(demo_dir).parent / 'retrieval'}", "data.demo_clips=[8,4,4]"]
    return [f"data.demo_dir={demo_dir}"]


def compose_cfg(tmp_path: Path, overrides: list[str]):
    """The config run.py would get, with Hydra's runtime set (as `@hydra.main` does)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"paths.log_dir={tmp_path}/logs", *overrides],
                      return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / "out")
            cfg.hydra.job.config_name = "config"
        HydraConfig.instance().set_config(cfg)
        cfg = job.apply_demo_preset(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "out")
            cfg.pop("hydra", None)
    runs.resolve_paths(cfg)
    return cfg


def run_cli(args: list[str], cwd: Path, timeout: int = 420, env: dict | None = None, check: bool = True):
    """run.py in a process group of its own; on timeout the whole group (DDP children included) is killed and the
    test fails, so a hang fails instead of hanging the suite."""
    proc = start_cli(args, cwd, env)
    return finish_cli(proc, timeout, check)


def start_cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "run.py"), *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env if env is not None else os.environ.copy(),
                            start_new_session=True)


def finish_cli(proc: subprocess.Popen, timeout: int, check: bool = True) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"run.py did not finish within {timeout} s (killed): {proc.args}\n{stdout[-2000:]}{stderr[-3000:]}")
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if check:
        assert done.returncode == 0, stdout[-3000:] + stderr[-5000:]
    return done


def offline_env(tmp_path: Path) -> dict:
    """No W&B key anywhere (empty HOME: no ~/.netrc), every connection to a closed port."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               WANDB_BASE_URL="http://127.0.0.1:9")
    env.pop("NO_PROXY", None)
    return env


# ------------------------------------------------------------------------------------------- composition
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_with_the_original_hyperparameters(experiment, tmp_path):
    cfg = compose_cfg(tmp_path, [f"experiment={experiment}", "data.root=some/mosei"])
    opt = cfg.model.optimizer
    assert (opt._target_, opt._partial_, list(opt.betas), opt.eps, opt.weight_decay) == \
        ("torch.optim.AdamW", True, [0.9, 0.98], 1e-8, 0.001)
    # relative paths are made absolute against the launch directory
    assert cfg.data.root == str(Path.cwd() / "some" / "mosei")
    want = {  # REFERENCE.md B.6: lr, effective batch on one device, warm-up, epochs, module
        "mosei": (1e-4, 1 * 128, 100, 10, "SentimentModule"),
        "mosei_emotion": (1e-4, 4 * 32, 100, 10, "EmotionModule"),
        "pretrain": (1e-5, 4 * 1024, 1000, 100, "PretrainModule"),
        "retrieval": (1e-5, 8 * 16, 100, 40, "RetrievalModule"),
    }.get(experiment)
    if want is not None:
        lr, batch, warmup, epochs, module = want
        assert opt.lr == lr
        assert cfg.data.batch_size * cfg.trainer.accumulate_grad_batches == batch
        assert cfg.model.scheduler.warmup_steps == warmup
        assert cfg.trainer.max_epochs == epochs
        assert cfg.model._target_ == f"tvlt.lit.{module}"
        built = TvltConfig(**cfg.model.config)
        assert (built.hidden_size, built.num_hidden_layers, built.num_attention_heads) == (768, 12, 12)  # TVLT-base
    if experiment == "pretrain":  # REFERENCE.md B.6: 75 % of frame patches, 15 % of audio frames, VAM on half
        assert (cfg.model.config.pixel_mask_ratio, cfg.model.config.audio_mask_ratio) == (0.75, 0.15)
        assert cfg.data.vam_negative_prob == 0.5


def test_no_data_root_switches_to_the_demo_preset(tmp_path):
    cfg = compose_cfg(tmp_path, ["experiment=mosei", "model.optimizer.lr=0.005"])
    assert cfg.task_name == "mosei_demo" and cfg.demo_from == "mosei"
    assert cfg.model.config.hidden_size == 128  # model=tvlt_demo
    assert cfg.model.optimizer.lr == 0.005  # command-line overrides survive the switch
    cfg = compose_cfg(tmp_path, ["experiment=mosei", "model=tvlt_tiny"])
    assert cfg.model.config.hidden_size == 32
    real = compose_cfg(tmp_path, ["experiment=mosei", "data.root=/data/mosei"])
    assert real.task_name == "mosei" and real.trainer.accumulate_grad_batches == 128


def test_demo_notice_names_the_data_each_experiment_needs(tmp_path, caplog):
    """Issue 17.9: the retrieval demo notice asked for a "MOSEI folder"; issue 17.7: predict mode switched presets."""
    with caplog.at_level("WARNING", logger="run"):
        compose_cfg(tmp_path, ["experiment=retrieval"])
        assert "Pass data.root=<MSR-VTT folder> for the real experiment" in caplog.text
        compose_cfg(tmp_path, ["experiment=pretrain"])
        assert "Pass data.root=<folder of videos> for the real experiment" in caplog.text
        caplog.clear()
        cfg = compose_cfg(tmp_path, ["experiment=mosei", "mode=predict"])
    assert cfg.task_name == "mosei" and "demo" not in caplog.text  # predict reads no dataset


# ------------------------------------------------------------------------------------------- one step each
@pytest.mark.parametrize("experiment", ["mosei", "mosei_emotion", "pretrain", "retrieval"])
def test_fast_dev_run(experiment, tmp_path, demo_dir):
    """One step of each split with data.batch_size=2: every split's metrics are logged over the two clips of its one
    batch, with the values a fresh tiny model must give."""
    extra = ["callbacks.reconstructions.every_n_steps=1"] if experiment == "pretrain" else []
    cfg = compose_cfg(tmp_path, [f"experiment={experiment}", *FAST, *demo_overrides(demo_dir, experiment),
                                 "trainer.fast_dev_run=true", "logger=none", *extra])
    metrics = job.train(cfg)
    task = experiment.removesuffix("_demo")
    per_emotion = [f"{m}_{e}" for e in EMOTIONS for m in ("wacc", "f1", "acc")]
    evaluated = {
        "mosei": ["loss", "acc2_nonneg", "f1_nonneg", "acc2_pos", "f1_pos", "acc7", "acc5", "mae", "pearson"],
        "mosei_emotion": ["loss", "wacc", "f1", "acc", *per_emotion],
        "pretrain": ["loss", "vam_loss", "mae_pixel_loss", "mae_audio_loss", "vam_acc"],
        "retrieval": [f"{d}_{m}" for d in ("v2a", "a2v") for m in ("r1", "r5", "r10", "medr")] + ["rsum"],
    }[task]
    stages = ["val"] if task == "pretrain" else ["val", "test"]  # the pretraining data has no test split
    want = {f"{s}/{k}" for s in stages for k in evaluated}
    if task == "pretrain":  # logged per step and per epoch
        want |= {f"train/{k}{suffix}" for k in evaluated for suffix in ("", "_step", "_epoch") if k != "loss"}
        want |= {"train/loss", "train/loss_step", "train/loss_epoch"}
    else:
        want |= {"train/loss"} | {f"{s}/num_samples" for s in stages}
    if task == "retrieval":
        want.add("train/vam_acc")
    assert set(metrics) == want
    for stage in stages:
        if task != "pretrain":
            assert metrics[f"{stage}/num_samples"] == 2.0
    if task == "mosei":
        # MSE >= (mean absolute error)^2 over the same two predictions; accuracies of two clips are 0, 1/2 or 1
        assert metrics["test/loss"] >= metrics["test/mae"] ** 2 * (1 - 1e-5) > 0
        assert {metrics[f"test/{k}"] for k in ("acc2_nonneg", "acc2_pos", "acc7", "acc5")} <= {0.0, 0.5, 1.0}
    if task == "mosei_emotion":  # a fresh head's logits are close to 0: BCE close to ln 2
        assert metrics["train/loss"] == pytest.approx(math.log(2), abs=0.03)
    if task == "pretrain":  # frames and spectrogram next to their reconstructions
        pngs = sorted(p.name for p in (tmp_path / "out" / "reconstructions").glob("*.png"))
        assert pngs == ["step0000001_frames.png", "step0000001_spectrogram.png"]
        for stage in ("train", "val"):  # the loss is the sum of its logged parts (weights 1)
            parts = sum(metrics[f"{stage}/{k}"] for k in ("vam_loss", "mae_pixel_loss", "mae_audio_loss"))
            assert metrics[f"{stage}/loss"] == pytest.approx(parts, rel=1e-5)
        assert metrics["train/vam_loss"] == pytest.approx(math.log(2), abs=0.03)
        assert metrics["train/vam_acc"] in (0.0, 0.5, 1.0)
    if task == "retrieval":
        assert metrics["train/loss"] == pytest.approx(math.log(2), abs=0.03)
        for stage in stages:  # two candidates: every true pair is within the top 5
            r1 = metrics[f"{stage}/v2a_r1"], metrics[f"{stage}/a2v_r1"]
            assert set(r1) <= {0.0, 0.5, 1.0}
            assert [metrics[f"{stage}/{d}_{k}"] for d in ("v2a", "a2v") for k in ("r5", "r10")] == [1.0] * 4
            assert metrics[f"{stage}/rsum"] == pytest.approx(4.0 + sum(r1))


def test_real_mosei_layout_from_test_media(tmp_path):
    """experiment=mosei with data.root on a MOSEI-layout folder built from the real CMU-MOSEI segment (symlinks):
    no demo preset, one step of each split."""
    root = tmp_path / "mosei"
    for split in ("train", "valid", "test"):
        (root / split / "video").mkdir(parents=True)
        (root / split / "audio_wav").mkdir(parents=True)
        (root / split / "video" / "K0m1tO3Ybyc_2.mp4").symlink_to(MEDIA / "K0m1tO3Ybyc_2.mp4")
        (root / split / "audio_wav" / "K0m1tO3Ybyc_2.wav").symlink_to(MEDIA / "K0m1tO3Ybyc_2.wav")
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"label_file_{split}.csv").write_text("FileName,sentiment_score\nK0m1tO3Ybyc_2,0.6667\n")
    cfg = compose_cfg(tmp_path, ["experiment=mosei", *FAST, f"data.root={root}", "trainer.fast_dev_run=true",
                                 "logger=none"])
    assert cfg.task_name == "mosei"  # a data root: the real experiment, not the demo preset
    metrics = job.train(cfg)
    assert metrics["test/num_samples"] == 1.0
    # one clip: the MSE loss is the square of the absolute error
    assert math.isfinite(metrics["test/mae"])
    assert metrics["test/loss"] == pytest.approx(metrics["test/mae"] ** 2, rel=1e-4)


# ------------------------------------------------------------------------------------------- resume
class ResumeProbe(Callback):
    """Records the step and optimizer state the moment training (re)starts."""

    seen: dict = {}

    def on_train_start(self, trainer, pl_module):
        ResumeProbe.seen = {"step": trainer.global_step,
                            "optimizer": copy.deepcopy(trainer.optimizers[0].state_dict())}


def test_resume_continues_at_the_saved_step_with_the_same_optimizer_state(tmp_path, demo_dir):
    base = ["experiment=mosei", *FAST, *demo_overrides(demo_dir), "logger=csv", "trainer.max_epochs=1",
            "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false"]
    first = compose_cfg(tmp_path / "a", base)
    job.train(first)
    last = tmp_path / "a" / "out" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 2

    second = compose_cfg(tmp_path / "b", [*base, f"ckpt_path={last}", "trainer.max_epochs=2",
                                          f"+callbacks.probe._target_={__name__}.ResumeProbe"])
    job.train(second)
    assert ResumeProbe.seen["step"] == 2
    restored = ResumeProbe.seen["optimizer"]
    want = saved["optimizer_states"][0]
    assert restored["param_groups"][0]["lr"] == pytest.approx(want["param_groups"][0]["lr"])
    assert restored["state"].keys() == want["state"].keys()
    for k, state in want["state"].items():
        assert torch.equal(restored["state"][k]["exp_avg"], state["exp_avg"])
        assert torch.equal(restored["state"][k]["exp_avg_sq"], state["exp_avg_sq"])
        assert float(restored["state"][k]["step"]) == 2.0
    resumed = torch.load(tmp_path / "b" / "out" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 4
    assert resumed["lr_schedulers"][0]["last_epoch"] == 4

    # predict with that checkpoint on a real CMU-MOSEI segment (the mp4 has no audio stream: sidecar wav)
    assert saved["tvlt_processor"] == TvltProcessor.create(mode="hf", num_frames=1).to_dict()  # predict: alike
    cfg = compose_cfg(tmp_path / "p", ["mode=predict", "experiment=mosei", f"ckpt_path={last}",
                                       f"input={MEDIA / 'K0m1tO3Ybyc_2.mp4'}",
                                       f"input_audio={MEDIA / 'K0m1tO3Ybyc_2.wav'}"])
    lines = predict.predict(cfg)
    # the mp4 alone: the error says how to give the audio
    from datamodules.decoding import ClipDecodeError

    no_audio = compose_cfg(tmp_path / "p", ["mode=predict", "experiment=mosei", f"ckpt_path={last}",
                                            f"input={MEDIA / 'K0m1tO3Ybyc_2.mp4'}"])
    with pytest.raises(ClipDecodeError, match=r"no audio stream .*pass input_audio=<wav"):
        predict.predict(no_audio)
    # mode=test: the checkpoint on the whole test split, no training
    tested = job.train(compose_cfg(tmp_path / "t", ["mode=test", "experiment=mosei", *FAST,
                                                    *demo_overrides(demo_dir), "logger=none", f"ckpt_path={last}"]))
    assert tested["test/num_samples"] == 8.0 and not any(k.startswith("train/") for k in tested)
    assert len(lines) == 1 and re.search(r"K0m1tO3Ybyc_2\.mp4: sentiment [+-]\d+\.\d{3} \(", lines[0]), lines


def test_export_holds_the_training_preprocessing_and_predicts_as_the_checkpoint(tmp_path, demo_dir, monkeypatch):
    """Issue 10.5: <run>/pretrained/ has preprocessor_config.json beside the weights, equal to the datamodule's
    processors (non-default: original mode, 2 frames), and the one-clip predict of the checkpoint gives the same
    inputs and the same score as the export used alone (TvltProcessor + TvltForAudioVisualClassification)."""
    from hydra.utils import instantiate

    from datamodules.decoding import ClipReader
    from tvlt.lit import SentimentModule, load_lit_checkpoint
    from tvlt.modeling import TvltForAudioVisualClassification

    fast = [o for o in FAST if not o.startswith("data.num_frames=")]
    cfg = compose_cfg(tmp_path, ["experiment=mosei", *fast, "data.num_frames=2", "data.processor_mode=original",
                                 *demo_overrides(demo_dir), "logger=none", "trainer.max_epochs=1",
                                 "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false"])
    job.train(cfg)
    export = tmp_path / "out" / "pretrained"
    assert sorted(p.name for p in export.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    datamodule = instantiate(cfg.data, _convert_="all")
    loaded = TvltProcessor.from_pretrained(export)
    assert loaded.to_dict() == TvltProcessor(datamodule.image_processor, datamodule.feature_extractor).to_dict()
    assert loaded.to_dict() == TvltProcessor.create(mode="original", num_frames=2).to_dict()

    # the checkpoint's predict (its batch and score recorded at full precision)
    seen = {}
    step = SentimentModule.predict_step

    def record(self, batch, batch_idx=0):
        seen["batch"], seen["out"] = dict(batch), step(self, batch, batch_idx)
        return seen["out"]

    monkeypatch.setattr(SentimentModule, "predict_step", record)
    clip_args = [f"input={MEDIA / 'K0m1tO3Ybyc_2.mp4'}", f"input_audio={MEDIA / 'K0m1tO3Ybyc_2.wav'}"]
    best = next((tmp_path / "out" / "checkpoints").glob("epoch*.ckpt"))
    lines = predict.predict(compose_cfg(tmp_path / "p", ["mode=predict", "experiment=mosei", f"ckpt_path={best}",
                                                         *clip_args]))
    # the export alone
    clip = ClipReader(num_frames=2).read(MEDIA / "K0m1tO3Ybyc_2.mp4", audio=MEDIA / "K0m1tO3Ybyc_2.wav")
    inputs = loaded(images=clip.frames, audio=clip.waveform, sampling_rate=clip.sampling_rate, return_tensors="pt")
    for key in ("pixel_values", "pixel_mask", "audio_values", "audio_mask"):
        assert torch.equal(seen["batch"][key], inputs[key]), key
    hf_mode = TvltProcessor.create(mode="hf", num_frames=2)(audio=clip.waveform, sampling_rate=clip.sampling_rate,
                                                             return_tensors="pt")
    assert hf_mode["audio_values"].shape != inputs["audio_values"].shape or \
        not torch.allclose(hf_mode["audio_values"], inputs["audio_values"])  # the mode matters for this clip
    model = TvltForAudioVisualClassification.from_pretrained(export).eval()
    with torch.no_grad():
        score = model(**inputs).logits.reshape(-1)
    torch.testing.assert_close(seen["out"]["preds"], score, atol=1e-6, rtol=0)
    assert lines == [f"{MEDIA / 'K0m1tO3Ybyc_2.mp4'}: sentiment {float(score):+.3f} "
                     f"({'positive' if score > 0 else 'negative'}; scale -3 .. +3)"]

    # command-line settings win over the checkpoint's
    module = load_lit_checkpoint(best)
    over = compose_cfg(tmp_path / "p", ["mode=predict", "experiment=mosei", f"ckpt_path={best}", *clip_args,
                                        "data.num_frames=3"])
    assert predict.checkpoint_processor(module, over).to_dict() == \
        TvltProcessor.create(mode="original", num_frames=3).to_dict()
    over = compose_cfg(tmp_path / "p", ["mode=predict", "experiment=mosei", f"ckpt_path={best}", *clip_args,
                                        "data.processor_mode=hf"])
    assert predict.checkpoint_processor(module, over).to_dict() == TvltProcessor.create(mode="hf",
                                                                                         num_frames=2).to_dict()


class LrProbe(Callback):
    """Records (optimizer step, learning rate) before every training batch."""

    seen: list = []

    def on_train_start(self, trainer, pl_module):
        LrProbe.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        LrProbe.seen.append((trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory, demo_dir):
    """A finished 2-epoch run (4 optimizer steps per epoch, lr 1e-3, 1 warm-up step, cosine over the run), keeping
    the checkpoint of every epoch: epoch000-step000004.ckpt is what a run killed after its first epoch leaves."""
    out = tmp_path_factory.mktemp("two_epochs")
    base = ["experiment=mosei", *FAST, *demo_overrides(demo_dir), "logger=none", "trainer.max_epochs=2",
            "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "test=false", "export_pretrained=false",
            "callbacks.model_checkpoint.save_top_k=-1", "model.scheduler.warmup_steps=1"]
    job.train(compose_cfg(out, base))
    return base, out / "out" / "checkpoints"


def test_resume_with_other_accumulation_continues_the_schedule(two_epoch_run, tmp_path, caplog):
    """Issue 17.2: resuming the run killed after epoch 1 with accumulate_grad_batches=2. Lightning's estimate of
    the run (2 epochs x 4 batches / 2 = 4 optimizer steps) put the saved step 4 at the end of the cosine: learning
    rate 0 from the first resumed step. The schedule continues at step 4 of 4 + 2 and says what changed."""
    from tvlt.lit.optim import warmup_cosine_lambda

    base, ckpts = two_epoch_run
    killed = ckpts / "epoch000-step000004.ckpt"
    cfg = compose_cfg(tmp_path, [*base, f"ckpt_path={killed}", "trainer.accumulate_grad_batches=2",
                                 f"+callbacks.probe._target_={__name__}.LrProbe"])
    with caplog.at_level("INFO"):
        job.train(cfg)
    factor = warmup_cosine_lambda(1, 6)
    # 4 batches, 2 optimizer steps: the learning rate before each batch
    assert [step for step, _ in LrProbe.seen] == [4, 4, 5, 5]
    assert [lr for _, lr in LrProbe.seen] == pytest.approx([1e-3 * factor(s) for s in (4, 4, 5, 5)])
    assert LrProbe.seen[0][1] > 1e-4  # was 0.0
    assert ("Resuming at optimizer step 4 with trainer.accumulate_grad_batches 1 -> 2: the learning-rate schedule "
            "continues from that step and now ends at optimizer step 6 (it was sized for 8)") in caplog.text
    # issue 17.3: a resumed run says where its weights come from
    assert f"weights resumed from {killed} (after 1 epoch(s), 4 optimizer step(s)" in caplog.text
    assert "randomly initialised" not in caplog.text


def test_last_ckpt_is_the_newest_state_when_the_metric_stops_improving(tmp_path, demo_dir):
    """With lr 0 val/loss never improves after epoch 0, so model_checkpoint's best file stays at step 4 and
    Lightning 2.6 (save_last writes only beside a best file) left last.ckpt at step 4 of 8: a resume would repeat
    epoch 1. last_checkpoint (in callbacks=default) writes it at every epoch's end."""
    base = ["experiment=mosei", *FAST, *demo_overrides(demo_dir), "logger=none", "trainer.max_epochs=2",
            "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "test=false", "export_pretrained=false",
            "model.optimizer.lr=0.0"]
    job.train(compose_cfg(tmp_path, base))
    ckpts = tmp_path / "out" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch000-step000004.ckpt", "last.ckpt"]
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert (last["global_step"], last["epoch"]) == (8, 1)
    states = [v for k, v in last["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert Path(states[0]["best_model_path"]).name == "epoch000-step000004.ckpt"  # model_checkpoint comes first


class StopAtStep6(Callback):
    """Fails the run before its 7th batch (6 optimizer steps done): a run killed there."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 6:
            raise RuntimeError("stopped at step 6")


def test_step_checkpoints_resume_mid_epoch_with_the_schedule_of_the_whole_run(tmp_path, demo_dir, caplog):
    """callbacks=[default,step_checkpoint] writes last.ckpt every 5 optimizer steps beside the best checkpoint on
    val/loss (a monitor holds step saves back in a single ModelCheckpoint). A run of 2 epochs x 4 steps stopped
    after step 6 resumes from last.ckpt at step 5, in the middle of epoch 1: it runs that epoch's 3 remaining
    batches, and the cosine schedule keeps the run's 8 steps (it was sized 5 + 4 = 9: the interrupted epoch counted
    whole, with a warning that something had changed)."""
    from tvlt.lit.optim import warmup_cosine_lambda

    base = ["experiment=mosei", *FAST, *demo_overrides(demo_dir), "logger=none", "trainer.max_epochs=2",
            "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "test=false", "export_pretrained=false",
            "model.scheduler.warmup_steps=1", "callbacks=[default,step_checkpoint]",
            "callbacks.step_checkpoint.every_n_train_steps=5"]
    with pytest.raises(RuntimeError, match="stopped at step 6"):
        job.train(compose_cfg(tmp_path / "a", [*base, f"+callbacks.stop._target_={__name__}.StopAtStep6"]))
    ckpts = tmp_path / "a" / "out" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch000-step000004.ckpt", "last.ckpt"]
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert (last["global_step"], runs.unfinished_epoch_batches(last), runs.finished_epochs(last)) == (5, 1, 1)
    with caplog.at_level("INFO"):
        job.train(compose_cfg(tmp_path / "b", [*base, f"ckpt_path={ckpts / 'last.ckpt'}",
                                                f"+callbacks.probe._target_={__name__}.LrProbe"]))
    factor = warmup_cosine_lambda(1, 8)
    assert [step for step, _ in LrProbe.seen] == [5, 6, 7]
    assert [lr for _, lr in LrProbe.seen] == pytest.approx([1e-3 * factor(s) for s in (5, 6, 7)])
    assert "Resuming at optimizer step" not in caplog.text
    # saved at step 6 (2 batches into epoch 1) and resumed accumulating 3 batches: Lightning steps after the
    # epoch's 3rd batch and after its last, so 2 steps remain (not ceil(2 / 3) = 1) and the cosine spans 8
    saving = [*base[:-1], "callbacks.step_checkpoint.every_n_train_steps=6"]
    with pytest.raises(RuntimeError, match="stopped at step 6"):
        job.train(compose_cfg(tmp_path / "d", [*saving, f"+callbacks.stop._target_={__name__}.StopAtStep6"]))
    last = torch.load(tmp_path / "d" / "out" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["global_step"], runs.unfinished_epoch_batches(last)) == (6, 2)
    caplog.clear()
    with caplog.at_level("INFO"):
        job.train(compose_cfg(tmp_path / "e", [*saving, "trainer.accumulate_grad_batches=3",
                                                f"ckpt_path={tmp_path / 'd' / 'out' / 'checkpoints' / 'last.ckpt'}",
                                                f"+callbacks.probe._target_={__name__}.LrProbe"]))
    assert [step for step, _ in LrProbe.seen] == [6, 7]  # the step before each of the 2 batches left
    assert [lr for _, lr in LrProbe.seen] == pytest.approx([1e-3 * factor(s) for s in (6, 7)])
    assert ("Resuming at optimizer step 6 with trainer.accumulate_grad_batches 1 -> 3: the learning-rate schedule "
            "continues from that step and now ends at optimizer step 8 (it was sized for 8)") in caplog.text
    # the setting a user tries first: refused before anything runs, naming the preset
    for given in ("every_n_train_steps=5", "every_n_train_steps=0", "train_time_interval=00:10:00"):
        with pytest.raises(runs.RunConfigError, match=rf"^callbacks.model_checkpoint.{given} with monitor val/loss: "
                           r"nothing would be saved before the first validation .* use "
                           r"'callbacks=\[default,step_checkpoint\]' callbacks.step_checkpoint.every_n_train_steps=N$"):
            key = ("+" if given.startswith("train_time") else "") + f"callbacks.model_checkpoint.{given}"
            runs.check_callbacks(compose_cfg(tmp_path / "c", ["experiment=mosei", key]))
    runs.check_callbacks(compose_cfg(tmp_path / "c", base))


def test_resuming_a_finished_run_is_refused_with_how_to_continue(two_epoch_run, tmp_path):
    """Issue 17.3: the README's resume command on a run that reached trainer.max_epochs trained nothing, exited 0 and
    tested and exported the old weights into a new folder. It stops before anything is built, saying how to go on;
    with a higher limit the same checkpoint resumes."""
    from tvlt.lit.runs import RunConfigError

    base, ckpts = two_epoch_run
    last = ckpts / "last.ckpt"
    cfg = compose_cfg(tmp_path, [*base, f"ckpt_path={last}"])
    with pytest.raises(RunConfigError) as info:
        runs.check_ckpt_path(cfg)
    message = str(info.value)
    assert message.startswith(f"ckpt_path={last} is a finished run: it trained 2 epoch(s), 8 optimizer step(s), "
                              "and trainer.max_epochs=2 leaves nothing to train.")
    assert "trainer.max_epochs=3 ckpt_path=..." in message and "mode=test ckpt_path=..." in message
    runs.check_ckpt_path(compose_cfg(tmp_path, [*base, f"ckpt_path={last}", "trainer.max_epochs=3"]))  # accepted
    runs.check_ckpt_path(compose_cfg(tmp_path, [*base, f"ckpt_path={last}", "mode=test"]))  # evaluation: accepted
    with pytest.raises(RunConfigError, match=r"trainer.max_steps=8 leaves nothing to train"):
        runs.check_ckpt_path(compose_cfg(tmp_path, [*base, f"ckpt_path={last}", "trainer.max_epochs=3",
                                                   "trainer.max_steps=8"]))


def test_bad_data_fails_before_the_model_is_built_naming_the_setting(tmp_path):
    """Issue 17.8: a wrong data.root, or a folder without labels, was reported after the model was built. The data
    is checked first: with model.pretrained pointing nowhere, building the model first would fail on that instead."""
    from tvlt.lit.runs import RunConfigError

    nowhere = ["model.pretrained=/nonexistent/TVLT.ckpt", "logger=none"]
    cfg = compose_cfg(tmp_path, ["experiment=mosei", *FAST, f"data.root={tmp_path / 'nope'}", *nowhere])
    with pytest.raises(RunConfigError, match=rf"^data.root={tmp_path / 'nope'}: CMU-MOSEI root folder does not "
                                             rf"exist: {tmp_path / 'nope'}$"):
        job.train(cfg)
    (tmp_path / "unlabelled" / "train" / "video").mkdir(parents=True)
    cfg = compose_cfg(tmp_path, ["experiment=mosei", *FAST, f"data.root={tmp_path / 'unlabelled'}", *nowhere])
    labels = tmp_path / "unlabelled" / "labels" / "label_file_train.csv"
    with pytest.raises(RunConfigError, match=rf"^data.root={tmp_path / 'unlabelled'}: manifest file not found: "
                                             rf"{labels}$"):
        job.train(cfg)


def test_nonfinite_loss_stops_the_run_and_closes_the_loggers(tmp_path, demo_dir, monkeypatch):
    """lr 1e30 blows the weights up: the run stops with the sample ids, and both loggers are closed anyway."""
    for key in {k for k in os.environ if k.startswith("WANDB_")} | {"WANDB_MODE", "WANDB_SILENT"}:
        monkeypatch.setenv(key, "")  # recorded, so what runs.configure_wandb sets is undone after the test
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no W&B key -> offline
    cfg = compose_cfg(tmp_path, ["experiment=mosei", *FAST, *demo_overrides(demo_dir), "logger=[csv,wandb]",
                                 "trainer.max_epochs=3",
                                 "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                                 "model.optimizer.lr=1e30", "model.scheduler=null"])
    runs.configure_wandb(cfg)
    assert os.environ["WANDB_MODE"] == "offline"
    with pytest.raises(run_nonfinite_error(), match=r"samples: \['demo_train_\d+'"):
        job.train(cfg)
    import wandb

    assert wandb.run is None  # finished by job.train's finally
    assert list((tmp_path / "out" / "wandb").glob("offline-run-*/*.wandb"))
    csv = list((tmp_path / "out").rglob("metrics.csv"))
    # CSVLogger writes its buffer only every 100 steps or when finalized: the file proves it was closed
    assert csv and csv[0].read_text().startswith("lr-AdamW,step\n1e+30,1")


def run_nonfinite_error():
    from tvlt.lit import NonFiniteLossError

    return NonFiniteLossError


# ------------------------------------------------------------------------------------------- subprocesses
def test_ddp_two_cpu_processes_with_wandb_offline_and_no_network(tmp_path, demo_dir):
    """2-process gloo DDP of the mosei experiment; W&B offline (no key, network blocked), one run (rank zero);
    test metrics over the 5 distinct test clips although the padded sampler gives each process 3."""
    from datamodules.demo import DemoSpec, ensure_demo_mosei

    demo5 = ensure_demo_mosei(tmp_path / "demo5", DemoSpec(num_train=8, num_valid=4, num_test=5))
    proc = run_cli(["experiment=mosei", *FAST, f"data.demo_dir={demo5}", "data.demo_clips=[8,4,5]",
                    "trainer=ddp_cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                    "trainer.limit_val_batches=2", "logger=wandb", f"hydra.run.dir={tmp_path}/run"],
                   cwd=tmp_path, timeout=480, env=offline_env(tmp_path))
    out = proc.stdout + proc.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out and "distributed_backend=gloo" in out
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs  # rank zero only
    records = list(runs[0].glob("*.wandb"))
    assert records and b"accumulate_grad_batches" in records[0].read_bytes()  # the composed config is logged
    assert (tmp_path / "run" / "pretrained" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "pretrained" / "config.json").is_file()
    m = re.search(r"test/num_samples\s*│\s*([\d.]+)", out)
    assert m and float(m.group(1)) == 5.0, out[-3000:]


def test_ddp_goes_on_when_every_clip_of_one_process_batch_fails(tmp_path, demo_dir):
    """Issue 17.1: with data.on_error=skip under 2-process DDP, the process whose batch failed entirely skipped its
    step while the other waited in a collective: a hang for good. In each split one clip has no audio (a demo mp4
    read with its container audio; the demo keeps audio in sidecar wavs), batch 1 per process: at one step of each
    split one process has nothing. In training it takes a zero-weight step; in validation and test its step joins
    the finite-loss check (one collective a step) with nothing to score. Every step is taken, the metrics count the
    clips that loaded, and each skip is logged. Bounded: a hang fails."""
    rows = ["video,audio,split,sentiment_score"]
    for split, n, bad in (("train", 8, 5), ("valid", 4, 0), ("test", 4, 0)):
        for i in range(n):
            clip = f"{demo_dir}/{split}/video/demo_{split}_{i:03d}.mp4"
            audio = "container" if i == bad else f"{demo_dir}/{split}/audio_wav/demo_{split}_{i:03d}.wav"
            rows.append(f"{clip},{audio},{split},0.5")
    manifest = tmp_path / "half_audio.csv"
    manifest.write_text("\n".join(rows) + "\n")
    fast = [o for o in FAST if not o.startswith("data.batch_size")]
    proc = run_cli(["experiment=mosei_demo", *fast, "data.batch_size=1", f"data.manifest={manifest}",
                    "data.on_error=skip", "trainer=ddp_cpu", "trainer.max_epochs=1", "+trainer.num_sanity_val_steps=0",
                    "logger=none", "export_pretrained=false", f"hydra.run.dir={tmp_path}/run"],
                   cwd=tmp_path, timeout=300)
    out = proc.stdout + proc.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out
    for when in ("train epoch 0", "validate epoch 0", "test epoch 1"):  # the trainer's epoch count after the fit
        assert f"MoseiDataModule: skipped 1 clip(s) in {when}: no_audio_stream=1" in out, out[-3000:]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 4  # 8 clips / 2 processes / batch 1: no step lost on either process
    m = re.search(r"test/num_samples\s*│\s*([\d.]+)", out)
    assert m and float(m.group(1)) == 3.0, out[-3000:]  # 4 test clips, one skipped, none counted twice


def test_ddp_retrieval_scores_the_full_gathered_matrix(tmp_path, demo_dir):
    """Retrieval under 2-process DDP: audios gathered, each process scores its own videos, rows gathered and
    de-duplicated: the 5 test clips (3 per process after padding) give a 5 x 5 matrix."""
    rows = ["video,audio,split"]
    for split, n in (("train", 4), ("valid", 2), ("test", 5)):
        src = split
        for i in range(n):
            clip = f"demo_{src}_{i:03d}"
            rows.append(f"{demo_dir}/{src}/video/{clip}.mp4,{demo_dir}/{src}/audio_wav/{clip}.wav,{split}")
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("\n".join(rows) + "\n")
    proc = run_cli(["experiment=retrieval", *FAST, f"data.manifest={manifest}", "trainer=ddp_cpu",
                    "trainer.max_epochs=1", "trainer.limit_train_batches=1", "logger=none",
                    f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out
    m = re.search(r"test/num_samples\s*│\s*([\d.]+)", out)
    assert m and float(m.group(1)) == 5.0, out[-3000:]
    assert re.search(r"test/v2a_r10\s*│\s*1\.0", out)  # 5 candidates: every true pair is within the top 10


def test_multirun_sweep_of_ddp_jobs_creates_one_folder_per_job(tmp_path, demo_dir):
    """The documented sweep, with no hydra.sweep.dir override, each job on 2 DDP processes: the jobs land under
    <launch dir>/logs/<task>/multiruns/<date_time>/<job>, each writing its checkpoints in its own folder; Lightning's
    lines printed once. Issue 17.5: the rank-1 child re-ran the whole sweep, in a second sweep folder."""
    proc = run_cli(["-m", "experiment=mosei", *FAST, *demo_overrides(demo_dir), "logger=csv", "trainer=ddp_cpu",
                    "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
                    "trainer.limit_test_batches=1", "model.optimizer.lr=0.001,0.0001"], cwd=tmp_path, timeout=600)
    assert sorted(p.name for p in (tmp_path / "logs" / "mosei").iterdir()) == ["multiruns"]  # no stray run folder
    sweeps = list((tmp_path / "logs" / "mosei" / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps
    runs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1"], proc.stdout[-2000:]
    lrs = []
    for p in runs:
        overrides = (p / ".hydra" / "overrides.yaml").read_text()
        lrs.append(re.search(r"model\.optimizer\.lr=([\d.]+)", overrides).group(1))
        assert list((p / "checkpoints").glob("*.ckpt"))  # paths.output_dir is the job's folder
        assert (p / "pretrained" / "model.safetensors").is_file()
    assert lrs == ["0.001", "0.0001"]
    out = proc.stdout + proc.stderr
    assert out.count("Launching 2 jobs locally") == 1  # the children ran their job, not the sweep
    assert out.count("Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2") == 2  # each job on 2 processes
    # one line per process, in Hydra's format (Lightning's own bare console handler removed)
    assert out.count("Seed set to 12345") == 4 and "INFO: Seed set" not in out


NOISE = ("litlogger", "anonymous setting", "LeafSpec", "Total FLOPs", "v_num", "Trainer already configured",
         "could not find the monitored key")


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, demo_dir):
    """Issue 17.4: run folders are named to the second, and two runs started in the same second shared one (their
    exports, logs and last.ckpt / last-v1.ckpt mixed). Here another run holds the folder of every second around the
    start, and two runs start at once: each gets a folder of its own (<date>_<time>_<n>), with only its own files.
    Issue 17.9: the output of a W&B run has none of the usual noise."""
    runs = tmp_path / "logs" / "mosei" / "runs"
    now = datetime.now()
    taken = {(now + timedelta(seconds=k)).strftime("%Y-%m-%d_%H-%M-%S") for k in range(-5, 300)}
    for name in taken:
        (runs / name).mkdir(parents=True)
        (runs / name / "another_run.txt").write_text("")
    common = ["experiment=mosei", *FAST, *demo_overrides(demo_dir), "trainer.max_epochs=1",
              "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "test=false"]
    env = offline_env(tmp_path)
    procs = [start_cli([*common, "logger=wandb", "seed=1"], tmp_path, env),
             start_cli([*common, "logger=csv", "seed=2"], tmp_path, env)]
    wandb_run, csv_run = [finish_cli(proc, timeout=300) for proc in procs]
    for name in taken:
        assert sorted(p.name for p in (runs / name).iterdir()) == ["another_run.txt"], name
    mine = sorted(p for p in runs.iterdir() if p.name not in taken)
    assert len(mine) == 2 and all(p.name.rsplit("_", 1)[0] in taken for p in mine), mine
    by_seed = {re.search(r"seed=(\d)", (p / ".hydra" / "overrides.yaml").read_text()).group(1): p for p in mine}
    assert sorted(by_seed) == ["1", "2"]
    for seed, logger in (("1", "wandb"), ("2", "csv")):
        folder = by_seed[seed]
        assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["epoch000-step000001.ckpt", "last.ckpt"]
        assert (folder / logger).is_dir() and not (folder / {"wandb": "csv", "csv": "wandb"}[logger]).exists()
        assert (folder / "pretrained" / "model.safetensors").is_file()
    out = wandb_run.stdout + wandb_run.stderr
    assert "Trainable params" in out and "Epoch 0/0" in out  # the summary and the progress bar are still there
    assert [n for n in NOISE if n in out] == [], out[-4000:]


def test_predict_neither_switches_presets_nor_leaves_a_folder(two_epoch_run, tmp_path):
    """Issue 17.7: mode=predict logged the demo-preset notice and left an empty run folder per call."""
    _, ckpts = two_epoch_run
    proc = run_cli(["mode=predict", "experiment=mosei", f"ckpt_path={ckpts / 'last.ckpt'}",
                    f"input={MEDIA / 'K0m1tO3Ybyc_2.mp4'}", f"input_audio={MEDIA / 'K0m1tO3Ybyc_2.wav'}"],
                   cwd=tmp_path, timeout=300)
    assert re.search(r"K0m1tO3Ybyc_2\.mp4: sentiment [+-]\d\.\d{3} \(", proc.stdout), proc.stdout[-2000:]
    assert "demo" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []  # no logs/ folder at all


def test_failed_run_logs_its_reason_to_the_run_log_file(tmp_path):
    """A single run launched without hydra.run.dir writes under <launch dir>/logs/<task>/runs/<date_time>; when it
    fails, its <task>.log has the exception and traceback and the process exits non-zero."""
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("foo,bar\n1,2\n")
    proc = subprocess.run([sys.executable, str(REPO / "run.py"), "experiment=retrieval", *FAST,
                           "data.manifest=pairs.csv", "logger=none"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode != 0
    logs = list((tmp_path / "logs" / "retrieval" / "runs").glob("*/retrieval.log"))
    assert len(logs) == 1, proc.stderr[-3000:]
    text = logs[0].read_text()
    assert f"[run][ERROR] - Run failed: RunConfigError: data.manifest={manifest}:" in text
    assert "missing column(s) ['video']" in text and "Traceback (most recent call last)" in text
    # issue 17.8: a setting that cannot work is one line naming it, with no traceback to read through
    assert f"Error: data.manifest={manifest}: " in proc.stderr and "missing column(s) ['video']" in proc.stderr
    assert "Traceback" not in proc.stderr and "Model:" not in proc.stdout + proc.stderr


MODE_STEPS = [  # (overrides, (fit, test)): the rule of conf/config.yaml
    (["mode=train"], (True, True)), (["mode=train", "train=true", "test=true"], (True, True)),
    (["mode=train", "test=false"], (True, False)), (["mode=test", "ckpt_path=x.ckpt"], (False, True)),
    (["mode=test", "ckpt_path=x.ckpt", "train=false", "test=true"], (False, True)),
    (["mode=predict"], (False, False)), (["mode=embed", "train=false", "test=false"], (False, False))]
MODE_CONTRADICTIONS = [
    (["mode=test", "ckpt_path=x.ckpt", "train=true"], "mode=test train=true: contradictory (mode=test does not "
                                                      "train); to train: mode=train"),
    (["mode=train", "train=false"], "mode=train train=false: contradictory (mode=train trains); to test a "
                                    "checkpoint without training: mode=test ckpt_path=<ckpt>"),
    (["mode=test", "ckpt_path=x.ckpt", "test=false"], "mode=test test=false: contradictory; mode=test only tests"),
    (["mode=predict", "test=true"], "mode=predict test=true: contradictory; mode=predict only predicts"),
    (["mode=embed", "train=true"], "mode=embed train=true: contradictory (mode=embed does not train)"),
    (["mode=test"], "mode=test needs ckpt_path=<checkpoint .ckpt>"),
    (["mode=fit"], "mode=fit: must be one of train, test, predict, embed"),
    (["test=maybe"], "test=maybe: must be true, false or null")]


@pytest.mark.parametrize(("overrides", "steps"), MODE_STEPS)
def test_mode_decides_the_steps(overrides, steps, tmp_path):
    assert job.run_steps(compose_cfg(tmp_path, ["experiment=mosei", "data.root=r", *overrides])) == steps


@pytest.mark.parametrize(("overrides", "message"), MODE_CONTRADICTIONS)
def test_contradictory_mode_train_test_is_refused_naming_the_keys(overrides, message, tmp_path):
    with pytest.raises(runs.RunConfigError) as info:
        job.run_steps(compose_cfg(tmp_path, ["experiment=mosei", "data.root=r", *overrides]))
    assert str(info.value).startswith(message), str(info.value)


def test_contradictory_mode_stops_the_command_before_any_work(tmp_path):
    proc = run_cli(["experiment=mosei", "mode=test", "ckpt_path=x.ckpt", "train=true"], cwd=tmp_path, timeout=300,
                   check=False)
    assert proc.returncode == 1
    assert "Error: mode=test train=true: contradictory" in proc.stderr and "Traceback" not in proc.stderr
    assert "CONFIG" not in proc.stdout  # stopped before the config tree, the data and the model


def test_corrupt_ckpt_path_is_refused_up_front_naming_the_file(tmp_path):
    from tvlt.lit import CheckpointError

    bad = tmp_path / "last.ckpt"
    bad.write_bytes(os.urandom(2048))
    for mode in ("train", "test", "predict"):
        cfg = compose_cfg(tmp_path, ["experiment=mosei", f"mode={mode}", f"ckpt_path={bad}"])
        with pytest.raises(CheckpointError, match=re.escape(str(bad))) as info:
            runs.check_ckpt_path(cfg)
        assert "not a PyTorch checkpoint" in str(info.value) and "weights_only=False" not in str(info.value)
    cfg = compose_cfg(tmp_path, ["experiment=mosei", f"ckpt_path={tmp_path / 'nope.ckpt'}"])
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.ckpt"):
        runs.check_ckpt_path(cfg)


def test_pretraining_without_validation_warns_and_exports_the_last_weights(tmp_path, caplog):
    """The two real clips of tests/data: train=2, no validation split (one clip is skipped: no audio stream)."""
    cfg = compose_cfg(tmp_path, ["experiment=pretrain", *FAST, f"data.root={MEDIA}", "logger=none",
                                 "trainer.max_epochs=1", "trainer.accumulate_grad_batches=1", "test=false"])
    import warnings

    with caplog.at_level("INFO"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job.train(cfg)
    text = caplog.text
    assert "No validation data" in text and "`monitor: val/loss` is never computed" in text
    # issue 17.9: ModelCheckpoint's own warning would repeat the notice at every save
    assert not [w for w in caught if "could not find the monitored key" in str(w.message)]
    assert "Exported the last weights (last.ckpt" in text and "Exported the best" not in text
    assert (tmp_path / "out" / "pretrained" / "model.safetensors").is_file()


def test_unlisted_tvlt_config_fields_are_added_with_plus(tmp_path):
    """conf/model keeps TvltConfig as the one source of defaults: unlisted fields take `+model.config.<field>=`."""
    cfg = compose_cfg(tmp_path, ["experiment=mosei", "data.root=/data/mosei", "+model.config.audio_mask_type=foo"])
    assert cfg.model.config.audio_mask_type == "foo"
    with pytest.raises(Exception, match="audio_mask_type"):
        compose_cfg(tmp_path, ["experiment=mosei", "data.root=/data/mosei", "model.config.audio_mask_type=foo"])


def test_optuna_search_space_names_real_config_keys(tmp_path):
    """hparams_search=mosei_optuna needs the `sweep` extra (hydra-optuna-sweeper) to run; without it, check that
    every swept key exists in the composed mosei experiment and the optimized metric is one mosei logs."""
    from omegaconf import OmegaConf

    search = OmegaConf.load(REPO / "conf" / "hparams_search" / "mosei_optuna.yaml")
    cfg = compose_cfg(tmp_path, ["experiment=mosei", "data.root=/data/mosei"])
    params = search.hydra.sweeper.params
    assert len(params) == 4
    for key in params:
        assert OmegaConf.select(cfg, key, default="MISSING") != "MISSING", key
    assert search.optimized_metric == cfg.monitor == "val/acc2_nonneg"
    assert search.hydra.sweeper.direction == "maximize"


def test_a_job_closes_its_process_group_when_it_ends(tmp_path):
    """Each DDP rank's job destroys its process group itself (success or failure): a gloo group left for interpreter
    finalization aborted a finished 2-process predict (exit -6, "terminate called without an active exception")."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        cfg = compose_cfg(tmp_path, ["experiment=mosei", "data.root=r", "mode=predict", "test=true"])
        with pytest.raises(SystemExit) as info:
            job.run(cfg)
        assert info.value.code == 1
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.image_size=64"], "data.image_size=64 but model.config.image_size=224: frames must have the model's size"),
    (["+model.config.image_size=64"], "data.image_size=224 but model.config.image_size=64"),
    (["data.num_frames=8", "+model.config.num_frames=4"], "data.num_frames=8 but model.config.num_frames=4: the model "
                                                          "has temporal embeddings for at most that many frames"),
    (["data.image_size=64", "+model.config.image_size=64", "+model.config.image_patch_size=[8,8]"],
     "model.config.image_patch_size=[8, 8]: the datamodules make pixel masks of [16, 16] patches"),
    (["data.image_size=64", "+model.config.image_size=64", "data.num_frames=2", "+model.config.num_frames=4"], None),
])
def test_frames_that_do_not_fit_the_model_are_refused_naming_both_settings(overrides, message, tmp_path):
    from hydra.utils import instantiate

    cfg = compose_cfg(tmp_path, ["experiment=mosei_demo", "data.root=r", *overrides])
    datamodule, model = instantiate(cfg.data, _convert_="all"), instantiate(cfg.model, _convert_="all")
    if message is None:
        runs.check_model_fits_data(model, datamodule)
        assert datamodule.image_processor.patches_per_frame == 16  # (64 / 16) ** 2 patches per frame
        return
    with pytest.raises(runs.RunConfigError) as info:
        runs.check_model_fits_data(model, datamodule)
    assert str(info.value).startswith(message), str(info.value)
