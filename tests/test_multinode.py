"""Multi-node DDP without a cluster: 2 "nodes" x 2 gloo processes on 127.0.0.1, each node started as its own
`python run.py` (NODE_RANK 0 and 1, the same MASTER_ADDR/MASTER_PORT and run folder), as a launcher on two machines
would start them. Tiny model, 1 frame, a small demo set.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FAST = ["model=tvlt_tiny", "data.num_frames=1", "data.batch_size=2", "data.num_workers=0",
        "data.decode_timeout=null", "trainer.accelerator=cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_nodes(args: list[str], cwd: Path, env: dict, timeout: int = 420) -> list[str]:
    """Start node 0 and node 1 together; both must exit 0 within ``timeout`` (else both are killed)."""
    port = free_port()
    procs = []
    for node in (0, 1):
        node_env = {**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(node)}
        procs.append(subprocess.Popen([sys.executable, str(REPO / "run.py"), *args], cwd=cwd, env=node_env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:  # each node's process group: the node's launcher and the rank it spawned
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for node, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"node {node}:\n{out[-6000:]}"
    return outs


def metrics_csv(run_dir: Path) -> list[dict]:
    files = list(run_dir.rglob("metrics.csv"))
    assert len(files) == 1, files  # written by global rank zero only
    with open(files[0], newline="") as f:
        return list(csv.DictReader(f))


def last_value(rows: list[dict], key: str) -> float:
    return float([r[key] for r in rows if r.get(key)][-1])


def test_two_nodes_two_processes_each_one_run_metrics_over_all_samples_and_resume(tmp_path):
    from datamodules.demo import DemoSpec, ensure_demo_mosei

    demo = ensure_demo_mosei(tmp_path / "demo", DemoSpec(num_train=8, num_valid=5, num_test=5))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", HOME=str(tmp_path))
    run = tmp_path / "run"
    base = ["experiment=mosei", *FAST, f"data.demo_dir={demo}", "data.demo_clips=[8,5,5]", "trainer=ddp_cpu",
            "trainer.num_nodes=2", "trainer.limit_train_batches=1", "logger=[csv,wandb]"]
    outs = run_two_nodes([*base, "trainer.max_epochs=1", f"hydra.run.dir={run}"], tmp_path, env)
    text = "\n".join(outs)
    for rank in range(4):
        assert f"Initializing distributed: GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/4" in text, text[-4000:]

    # one run folder: one W&B run, one set of checkpoints, one metrics file, all from global rank zero
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    assert not (tmp_path / "logs").exists()  # no process fell back to a folder of its own
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(ckpts) == 2 and "last.ckpt" in ckpts, ckpts
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    # 8 training clips over 4 processes, batch 2: one step per epoch with limit_train_batches=1
    assert last["global_step"] == 1 and last["epoch"] == 0
    rows = metrics_csv(run)
    # 5 clips over 4 processes: the sampler pads to 8, the gathered duplicates are dropped
    assert last_value(rows, "val/num_samples") == 5.0
    assert last_value(rows, "test/num_samples") == 5.0

    # resume the same 2 x 2 layout from last.ckpt for a second epoch, into a new folder
    resumed = tmp_path / "resumed"
    run_two_nodes([*base, "trainer.max_epochs=2", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                   f"hydra.run.dir={resumed}"], tmp_path, env)
    again = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert again["global_step"] == 2 and again["epoch"] == 1
    assert again["lr_schedulers"][0]["last_epoch"] == 2
    assert last_value(metrics_csv(resumed), "test/num_samples") == 5.0
    assert len(list((resumed / "wandb").glob("offline-run-*"))) == 1
