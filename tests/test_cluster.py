"""SLURM, for real: a one-node cluster started on this machine by scripts/slurm_local.sh (slurmctld, slurmd,
munge from Debian's packages; root), a `-m` sweep through the submitit launcher (`hydra/launcher=slurm_cpu`) whose
2 jobs are each a 2-task DDP run started by srun, and the preemption of one of them: SIGUSR1 to its tasks
(`scancel --signal=USR1`), Lightning's auto-requeue saves a checkpoint and requeues the job, which resumes and ends
like the job that was left alone.

Run by `make test-cluster` (marker `cluster`, deselected from `make test`). Tiny model, 1 frame, a small demo set.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm_local.sh"
EPOCHS = 6
# one training batch per epoch (8 clips over 2 tasks, batch 2, limit 1) and no random frame offsets: a job that
# is stopped anywhere in an epoch and resumed redoes exactly the batch it was in, so the runs can be compared
ARGS = ["hydra/launcher=slurm_cpu", "trainer=ddp_cpu", "experiment=mosei", "model=tvlt_tiny", "data.num_frames=1",
        "data.batch_size=2", "data.num_workers=0", "data.decode_timeout=null", "data.train_jitter=false",
        "data.demo_clips=[8,5,5]", "logger=[csv,wandb]", f"trainer.max_epochs={EPOCHS}",
        "trainer.limit_train_batches=1", "model.scheduler.warmup_steps=0", "export_pretrained=true,false"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The local cluster, stopped afterwards; yields the environment its clients need."""
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_LOCAL_DIR": str(state), "SLURM_LOCAL_CTLD_PORT": str(free_port()),
           "SLURM_LOCAL_SLURMD_PORT": str(free_port())}
    start = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120)
    try:
        if start.returncode != 0:
            pytest.fail(f"the local SLURM cluster did not start: {start.stdout}{start.stderr}")
        yield {**env, "SLURM_CONF": str(state / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (rc {proc.returncode}) before {what}:\n{proc.stdout.read()[-6000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def sweep(slurm, tmp_path_factory):
    """`python run.py -m hydra/launcher=slurm_cpu ...`: 2 jobs (export_pretrained=true,false, the same training);
    job 0 gets SIGUSR1 once its first epoch is checkpointed. Returns the sweep folder, the output, job 0's id."""
    from datamodules.demo import DemoSpec, ensure_demo_mosei

    work = tmp_path_factory.mktemp("sweep")
    demo = ensure_demo_mosei(work / "demo", DemoSpec(num_train=8, num_valid=5, num_test=5))
    sweep_dir = work / "multirun"
    env = {k: v for k, v in slurm.items() if not k.startswith("WANDB_")}
    # the jobs import this checkout (not another install of the package); W&B offline, no account
    env.update(PYTHONPATH=str(REPO), WANDB_MODE="offline", HOME=str(work))
    proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), "-m", *ARGS, f"data.demo_dir={demo}",
                             f"hydra.sweep.dir={sweep_dir}"], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: (sweep_dir / "0" / "checkpoints" / "last.ckpt").is_file(), 300,
                 "job 0's first checkpoint", proc)
        array_id = wait_for(lambda: [p.name.split("_")[0] for p in (sweep_dir / ".submitit").glob("*_0")], 10,
                            "job 0's submitit folder", proc)[0]
        job0 = f"{array_id}_0"
        subprocess.run(["scancel", "--signal=USR1", job0], env=slurm, check=True, timeout=30)
        # SLURM holds a requeued batch job for about 2 minutes (Reason=BeginTime); an operator can release it
        wait_for(lambda: "Restarts=1" in job_info(job0, slurm) and "JobState=PENDING" in job_info(job0, slurm), 60,
                 "job 0 to be requeued", proc)
        subprocess.run(["scontrol", "update", f"jobid={job0}", "StartTime=now"], env=slurm, check=True, timeout=30)
        out, _ = proc.communicate(timeout=480)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            subprocess.run(["scancel", "--full", "--partition=local"], env=slurm, timeout=30)
    assert proc.returncode == 0, out[-8000:]
    return sweep_dir, out, job0


def job_info(job: str, env: dict) -> str:
    return subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True,
                          timeout=30).stdout


def last_values(job_dir: Path) -> dict[str, float]:
    """The last logged value of each metric, from the CSV logger's newest version (a requeued job has two)."""
    files = sorted(job_dir.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    values: dict[str, float] = {}
    with open(files[-1], newline="") as f:
        for row in csv.DictReader(f):
            values.update({k: float(v) for k, v in row.items() if v != ""})
    return values


def test_slurm_sweep_runs_two_jobs_each_a_two_task_ddp_run(sweep, slurm):
    sweep_dir, out, _ = sweep
    # one folder per job (none per rank), the launcher's own folder, the sweep's files
    assert sorted(p.name for p in sweep_dir.iterdir()) == [".submitit", "0", "1", "multirun.yaml",
                                                           "sweep_summary.csv"]
    for job in ("0", "1"):
        logs = sorted((sweep_dir / ".submitit").glob(f"*_{job}/*_{job}_*_log.out"))
        assert [p.name.rsplit("_", 2)[1] for p in logs] == ["0", "1"]  # two srun tasks
        text = "".join(p.read_text() for p in logs)
        # Lightning took the ranks from SLURM: no process spawned, both tasks joined one process group
        assert "GLOBAL_RANK: 0, MEMBER: 1/2" in text and "GLOBAL_RANK: 1, MEMBER: 2/2" in text, text[-3000:]
        assert "SLURM auto-requeueing enabled" in text
        assert last_values(sweep_dir / job)["test/num_samples"] == 5.0  # 5 test clips over 2 tasks, de-duplicated
    assert (sweep_dir / "0" / "pretrained" / "model.safetensors").is_file()
    assert not (sweep_dir / "1" / "pretrained").exists()

    with open(sweep_dir / "sweep_summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"], r["metric"]) for r in rows] == [("0", "completed", "val/loss"),
                                                                     ("1", "completed", "val/loss")]
    for row in rows:
        ckpt = torch.load(sweep_dir / row["job"] / "checkpoints" / "last.ckpt", weights_only=True)
        state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))
        assert float(row["value"]) == pytest.approx(float(state["current_score"]), rel=1e-6)
    assert "Sweep summary (2 jobs)" in out


def test_preempted_job_is_requeued_and_ends_like_the_uninterrupted_one(sweep, slurm):
    sweep_dir, out, job0 = sweep
    preempted, untouched = sweep_dir / "0", sweep_dir / "1"
    # the launcher returns once every task wrote its result; SLURM marks the job completed when they have exited
    end = time.monotonic() + 60
    while "JobState=COMPLETED" not in (info := job_info(job0, slurm)) and time.monotonic() < end:
        time.sleep(0.5)
    assert "Restarts=1" in info and "JobState=COMPLETED" in info, info
    # tvlt's SlurmRequeue (not Lightning's handler) saved an HPC checkpoint at a step boundary of all ranks,
    # requeued the job, and the new run resumed from it
    assert [p.name for p in preempted.glob("hpc_ckpt_*.ckpt")] == ["hpc_ckpt_1.ckpt"]
    log = (preempted / "mosei.log").read_text()  # both attempts, appended
    assert "and requeued the job" in log and "Restored all states from the checkpoint" in log, log[-4000:]
    assert "Handling auto-requeue signal" not in log, log[-4000:]
    hpc = torch.load(preempted / "hpc_ckpt_1.ckpt", weights_only=True)
    assert 1 <= hpc["global_step"] <= EPOCHS
    assert hpc["global_step"] == hpc["epoch"] + 1  # one step an epoch: saved at an epoch's end, after validation

    a = torch.load(preempted / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(untouched / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == EPOCHS
    for name, tensor in b["state_dict"].items():
        torch.testing.assert_close(a["state_dict"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    va, vb = last_values(preempted), last_values(untouched)
    for key in ("val/loss", "val/mae", "test/loss", "test/mae", "test/num_samples"):
        assert va[key] == pytest.approx(vb[key], rel=1e-5, abs=1e-7), key

    # nothing lost: both attempts' CSV logs and W&B offline runs, against one of each for the job left alone
    assert len(list(preempted.glob("csv/version_*/metrics.csv"))) == 2
    assert len(list(preempted.glob("wandb/offline-run-*/*.wandb"))) == 2
    assert len(list(untouched.glob("wandb/offline-run-*/*.wandb"))) == 1
