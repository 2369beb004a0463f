"""Sweeps through the real command line (`python run.py -m ...`): Optuna with SQLite storage continued by a second
invocation, and the sweep summary of a plain grid. Tiny model, 1 frame, a small demo set, 2 training batches.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
FAST = ["model=tvlt_tiny", "data.num_frames=1", "data.batch_size=2", "data.num_workers=0",
        "data.decode_timeout=null", "trainer.accelerator=cpu", "logger=csv", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2", "trainer.limit_val_batches=2", "test=false", "export_pretrained=false"]


@pytest.fixture(scope="module")
def demo_small(tmp_path_factory) -> list[str]:
    from datamodules.demo import DemoSpec, ensure_demo_mosei

    root = ensure_demo_mosei(tmp_path_factory.mktemp("demo") / "mosei", DemoSpec(num_train=8, num_valid=4, num_test=4))
    return [f"data.demo_dir={root}", "data.demo_clips=[8,4,4]"]


def run_sweep(args: list[str], cwd: Path, timeout: int = 300) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "run.py"), "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "WANDB_MODE": "offline"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


def read_summary(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "sweep_summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_optuna_sqlite_study_continues_in_a_second_invocation(tmp_path, demo_small):
    """3 trials, then 1 more in a new invocation on the same SQLite study: the study holds 4 trials whose values
    are the ones the jobs returned, and the best parameters and value of all 4 are reported and saved next to
    each sweep."""
    import optuna  # the `sweep` extra, installed by `make test`

    db = tmp_path / "study.db"
    # warm-up 0 and no accumulation (fixed on the command line, out of the search space): each learning rate
    # changes the weights, so the trials' values differ
    args = ["experiment=mosei", "hparams_search=mosei_optuna", *FAST, *demo_small, "monitor=val/loss",
            "monitor_mode=min", "optimized_metric=val/loss",
            "hydra.sweeper.direction=minimize", f"hydra.sweeper.storage=sqlite:///{db}",
            "hydra.sweeper.study_name=tiny", "hydra.sweeper.sampler.n_startup_trials=2",
            "model.scheduler.warmup_steps=0", "trainer.accumulate_grad_batches=1"]
    out1 = run_sweep([*args, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path}/s1"], tmp_path)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    out2 = run_sweep([*args, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path}/s2"], tmp_path)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4 and "Study name: tiny" in out2

    # each trial's value is what its job returned (the summary rows), and it is the job's own val/loss
    rows = read_summary(tmp_path / "s1") + read_summary(tmp_path / "s2")
    assert [float(r["value"]) for r in rows] == [t.value for t in trials]
    for row, trial in zip(rows, trials):
        assert f"model.optimizer.lr={trial.params['model.optimizer.lr']}" in row["overrides"]
        assert row["overrides"].count("trainer.accumulate_grad_batches=") == 1  # fixed, not sampled
        ckpt = torch.load(Path(row["output_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)
        state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))
        assert row["metric"] == "val/loss" and float(state["current_score"]) == pytest.approx(trial.value)
    values = [t.value for t in trials]
    assert len(set(values)) > 1, values

    best = min(trials, key=lambda t: t.value)
    saved = OmegaConf.load(tmp_path / "s2" / "optimization_results.yaml")
    assert saved.best_value == best.value == min(values)
    assert dict(saved.best_params) == best.params  # the best over both invocations
    assert f"Best value: {best.value}" in out2
    first = OmegaConf.load(tmp_path / "s1" / "optimization_results.yaml")
    assert first.best_value == min(values[:3])
    assert "Best parameters:" in out1


def test_grid_sweep_writes_a_summary_and_names_the_best_job(tmp_path, demo_small):
    """A plain `-m` grid over two learning rates: one summary row per job with its overrides, the value of
    `optimized_metric` it returned (its checkpoint's val/loss) and its folder; the lowest val/loss is marked best.
    No data root: the runs use the demo preset, which optimizes val/loss (min) where mosei has val/acc2_nonneg
    (max); the summary follows what the runs did."""
    sweep = tmp_path / "grid"
    out = run_sweep(["experiment=mosei", *FAST, *demo_small, "model.scheduler.warmup_steps=0",
                     "model.optimizer.lr=0.03,0.0001", f"hydra.sweep.dir={sweep}"], tmp_path)
    rows = read_summary(sweep)
    assert [(r["job"], r["status"], r["metric"], r["mode"]) for r in rows] == [
        ("0", "completed", "val/loss", "min"), ("1", "completed", "val/loss", "min")]
    assert "model.optimizer.lr=0.03" in rows[0]["overrides"] and "model.optimizer.lr=0.0001" in rows[1]["overrides"]
    values = []
    for row in rows:
        assert row["output_dir"] == str(sweep / row["job"])
        ckpt = torch.load(sweep / row["job"] / "checkpoints" / "last.ckpt", weights_only=True)
        state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))
        assert float(row["value"]) == pytest.approx(float(state["current_score"]), rel=1e-6)
        values.append(float(row["value"]))
    assert values[0] != values[1]
    want = min(range(2), key=lambda i: values[i])
    assert [r["best"] for r in rows] == ["True" if i == want else "False" for i in range(2)]
    assert f"best job {want}: val/loss = " in out


@pytest.mark.parametrize(("launcher", "tasks", "gpus"), [("slurm", 4, 4), ("slurm_cpu", 2, None)])
def test_slurm_launcher_configs_compose_with_one_task_per_device(launcher, tasks, gpus):
    """Both launcher configs resolve to submitit's SLURM launcher (the `sweep` extra) with GPUs per node, never per
    task; slurm_cpu's 2 tasks per node match trainer=ddp_cpu's 2 devices (tests/test_cluster.py runs it)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={launcher}", "trainer=ddp_cpu",
                                                       "experiment=mosei", "data.root=/data/mosei"],
                      return_hydra_config=True)
    GlobalHydra.instance().clear()
    launch = cfg.hydra.launcher
    assert launch._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launch.tasks_per_node, launch.gpus_per_node, launch.get("gpus_per_task")) == (tasks, gpus, None)
    if launcher == "slurm_cpu":
        assert launch.tasks_per_node == cfg.trainer.devices and launch.nodes == cfg.trainer.num_nodes
