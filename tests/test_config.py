"""The composed config (conf/): every data config is its datamodule's arguments, shared keys come from one file,
the optimizer from one file, and every experiment's demo preset is that experiment with the demo settings."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_class
from omegaconf import OmegaConf

from datamodules.base import ClipDataModule

CONF = Path(__file__).resolve().parents[1] / "conf"
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml") if not p.stem.startswith("_"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")
                     if not p.stem.startswith("_") and not p.stem.endswith("_demo"))


def composed(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_the_groups_are_the_ones_documented():
    assert DATA == ["classify", "mosei", "mosei_emotion", "pretrain", "retrieval"]
    assert EXPERIMENTS == ["classify", "mosei", "mosei_emotion", "pretrain", "retrieval"]


@pytest.mark.parametrize("name", DATA)
def test_data_config_keys_are_exactly_arguments_of_its_datamodule(name):
    """A key the datamodule does not take would fail at instantiation; a shared key (conf/data/_base.yaml) that one
    datamodule lacks as well. Every shared value is written once: in _base, unless the data config changes it."""
    data = composed([f"data={name}"]).data
    cls = get_class(data._target_)
    params = set()
    for klass in (cls, ClipDataModule):
        params |= {n for n, p in inspect.signature(klass.__init__).parameters.items()
                   if n != "self" and p.kind is not p.VAR_KEYWORD}
    assert set(data) - {"_target_"} <= params, sorted(set(data) - {"_target_"} - params)
    base = OmegaConf.load(CONF / "data" / "_base.yaml")
    assert set(base) <= set(data)
    own = OmegaConf.load(CONF / "data" / f"{name}.yaml")
    repeated = [k for k in own if k != "defaults" and k in base and own[k] == base[k]]
    assert repeated == [], f"conf/data/{name}.yaml repeats _base.yaml's {repeated}"


def test_mosei_emotion_is_mosei_with_the_emotion_task():
    sentiment, emotion = composed(["data=mosei"]).data, composed(["data=mosei_emotion"]).data
    assert emotion.task == "emotion" and sentiment.task == "sentiment"
    assert {k: v for k, v in emotion.items() if k != "task"} == {k: v for k, v in sentiment.items() if k != "task"}


def test_the_optimizer_is_written_once_and_is_the_original_release_adamw():
    """REFERENCE.md B.6: AdamW(betas 0.9/0.98, eps 1e-8, weight decay 0.001), lr 1e-4 for fine-tuning."""
    opt = composed([]).model.optimizer
    assert OmegaConf.to_container(opt) == {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-4,
                                           "betas": [0.9, 0.98], "eps": 1e-8, "weight_decay": 0.001}
    # no second source in code: a module built without one has none (tests/test_lit_modules.py: it refuses to train)
    from tvlt.lit import SentimentModule

    assert SentimentModule(config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
                                   "intermediate_size": 64}).optimizer_factory is None


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_demo_preset_is_its_experiment_with_the_demo_settings(experiment):
    full, demo = composed([f"experiment={experiment}"]), composed([f"experiment={experiment}_demo"])
    assert full.demo_preset == f"{experiment}_demo" and demo.demo_preset is None
    assert demo.task_name == f"{experiment}_demo" and "demo" in demo.tags
    assert demo.model._target_ == full.model._target_ and demo.data._target_ == full.data._target_
    assert (full.model.config.get("hidden_size"), demo.model.config.hidden_size) == (None, 128)  # tvlt_demo
    # retrieval's VAM head needs a lower lr, 1 frame and a wider initialization to leave its plateau at chance
    # (conf/experiment/retrieval_demo.yaml, docs/training.md)
    lr, frames = (3e-4, 1) if experiment == "retrieval" else (1e-3, 4)
    assert demo.model.config.get("initializer_range") == (0.1 if experiment == "retrieval" else None)
    assert (demo.model.optimizer.lr, demo.model.scheduler.warmup_steps, demo.model.scheduler.total_steps) == \
        (lr, 10, None)
    assert (demo.data.batch_size, demo.trainer.accumulate_grad_batches, demo.data.num_frames) == (8, 1, frames)
    assert {k: v for k, v in demo.model.optimizer.items() if k != "lr"} == \
        {k: v for k, v in full.model.optimizer.items() if k != "lr"}  # the same AdamW
    # retrieval ranks checkpoints by what it is about; the others' task metrics saturate on the demo's few clips
    assert (demo.monitor, demo.monitor_mode) == (("val/rsum", "max") if experiment == "retrieval"
                                                 else ("val/loss", "min"))
    # the demo sets: the MOSEI-layout one for sentiment, emotion, pretraining; a class set for classify, retrieval
    assert Path(demo.data.demo_dir).name == {"mosei_emotion": "mosei", "pretrain": "mosei"}.get(experiment,
                                                                                                   experiment)


def switched(overrides: list[str]):
    """``datamodules.demo.apply_demo_preset`` on the composed config, inside Hydra as run.py calls it."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from datamodules.demo import apply_demo_preset

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.job.config_name = "config"
        HydraConfig.instance().set_config(cfg)
        return apply_demo_preset(cfg)


def test_the_demo_preset_replaces_the_experiment_only_when_no_data_is_given(caplog):
    with caplog.at_level("WARNING"):
        cfg = switched(["experiment=retrieval", "trainer.max_epochs=3"])
    assert (cfg.task_name, cfg.demo_from, cfg.trainer.max_epochs) == ("retrieval_demo", "retrieval", 3)
    assert Path(cfg.data.demo_dir).name == "retrieval" and cfg.model.optimizer.lr == 3e-4
    assert "demo preset experiment=retrieval_demo" in caplog.text and "data.root=<MSR-VTT folder>" in caplog.text
    for given in (["data.root=/data/msrvtt"], ["data.manifest=pairs.csv"], ["data.shards=s3://b/msrvtt"],
                  ["mode=embed"], ["demo_preset=null"]):
        cfg = switched(["experiment=retrieval", *given])
        assert cfg.task_name == "retrieval" and "demo_from" not in cfg, given
