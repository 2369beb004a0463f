"""End to end: training samples per second of the demo experiment, as a user runs it.

Command (one subprocess, the real entry point and config)::

    python run.py experiment=mosei_demo logger=none callbacks=none trainer.max_steps=16
        trainer.limit_val_batches=0 test=false export_pretrained=false paths.log_dir=<tmp>
        +callbacks.e2e_timer._target_=bench.bench_e2e.StepTimer +callbacks.e2e_timer.out=<tmp>/timer.json

That is the demo-size model (hidden 128, 4 layers), 4 frames of 224x224 + the clips' audio, batch 8, the
embedded demo MOSEI set (generated on first use, outside the timed window) decoded from mp4/wav by the
configured loader (2 worker processes, persistent), fp32 on the CPU. Validation, testing and checkpoints are
switched off: the figure is training throughput. :class:`StepTimer` skips the first epoch (worker start-up,
warm-up) and reports, over the remaining steps:

- ``samples/s``: samples / wall time (data loading, the step and Lightning's loop: what a user sees);
- ``model samples/s``: samples / time inside the training steps (forward, backward, optimizer): how fast the
  model consumes clips; the data pipeline keeps up when its clips/s (bench_data) is above this;
- the share of wall time spent waiting for batches;
- ``loader clips/s, 1 worker``: the same experiment's training DataLoader alone (``data.num_workers=1``, raw
  mp4 + wav decoding and preprocessing, 3 epochs after a warm-up epoch): faster than the model's consumption
  means one worker would keep the demo's model fed on this machine.

There is no reference figure: neither reference ships this training loop on this data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]
MAX_STEPS = 16  # 4 epochs of the 32-clip demo train split at batch 8; the first epoch is not timed
SKIP_STEPS = 4
TIMED_LOADER_EPOCHS = 3


class StepTimer(Callback):
    """Times training batches after the first ``skip`` and writes a JSON summary to ``out`` at the end of fit.

    Step time = on_train_batch_start -> on_train_batch_end (forward, backward, optimizer step); wait = the gap
    between the end of one batch and the start of the next (data loading, epoch boundaries, loop overhead).
    """

    def __init__(self, out: str, skip: int = SKIP_STEPS) -> None:
        self.out, self.skip = out, skip
        self.seen = 0
        self.samples = 0
        self.step_s: list[float] = []
        self.wait_s = 0.0
        self._start = self._last_end = self._window_start = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last_end is not None and self.seen > self.skip:
            self.wait_s += now - self._last_end
        self._start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.seen += 1
        if self.seen == self.skip:
            self._window_start = now
        elif self.seen > self.skip:
            self.step_s.append(now - self._start)
            self.samples += int(batch["pixel_values"].shape[0])
        self._last_end = now

    def on_train_end(self, trainer, pl_module) -> None:
        if self._window_start is None or not self.step_s:
            raise RuntimeError(f"StepTimer: only {self.seen} training steps ran; need more than {self.skip}")
        wall = self._last_end - self._window_start
        summary = {"steps": len(self.step_s), "samples": self.samples, "wall_s": wall,
                   "step_s": sum(self.step_s), "wait_s": self.wait_s, "step_times_s": self.step_s}
        Path(self.out).write_text(json.dumps(summary))


def measure(max_steps: int = MAX_STEPS) -> dict:
    """Run the demo experiment in a subprocess; return the StepTimer summary plus the command."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timer.json"
        overrides = ["experiment=mosei_demo", "logger=none", "callbacks=none", f"trainer.max_steps={max_steps}",
                     "trainer.limit_val_batches=0", "test=false", "export_pretrained=false",
                     f"paths.log_dir={tmp}/logs", "+callbacks.e2e_timer._target_=bench.bench_e2e.StepTimer",
                     f"+callbacks.e2e_timer.out={out}"]
        cmd = [sys.executable, "run.py", *overrides]
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_MODE": "disabled"}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-3000:]}")
        summary = json.loads(out.read_text())
    summary["command"] = "python run.py " + " ".join(o for o in overrides if tmp not in o)
    return summary


def measure_loader(num_workers: int = 1) -> dict:
    """Clips/s of the demo experiment's training DataLoader alone (composed from the real config)."""
    from hydra.utils import instantiate

    from bench import compose

    cfg = compose(["experiment=mosei_demo", f"data.num_workers={num_workers}",
                   f"data.demo_dir={ROOT / 'data' / 'demo' / 'mosei'}"])
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    for _ in loader:  # warm-up epoch (worker start-up; persistent workers are reused)
        pass
    clips, start = 0, time.perf_counter()
    for _ in range(TIMED_LOADER_EPOCHS):
        for batch in loader:
            clips += int(batch["pixel_values"].shape[0])
    return {"clips": clips, "seconds": time.perf_counter() - start, "num_workers": num_workers,
            "batch_size": int(cfg.data.batch_size), "num_frames": int(cfg.data.num_frames)}


def _loader_in_subprocess() -> dict:
    cmd = [sys.executable, "-m", "bench.bench_e2e", "--loader"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(repeats: int = 5) -> list[dict]:
    s = measure()
    loader = _loader_in_subprocess()
    loader_rate = loader["clips"] / loader["seconds"]
    wall_rate = s["samples"] / s["wall_s"]
    model_rate = s["samples"] / s["step_s"]
    wait = 100 * s["wait_s"] / s["wall_s"]
    base = (f"{s['steps']} timed steps after a {SKIP_STEPS}-step first epoch, batch 8, demo model, 4 frames, "
            f"2 loader workers; `{s['command']}`")
    print(f"  demo training: {wall_rate:.1f} samples/s end to end, {model_rate:.1f} samples/s in the steps, "
          f"{wait:.0f}% of wall time waiting for data; loader alone, 1 worker: {loader_rate:.1f} clips/s", flush=True)
    return [
        {"case": "end to end: demo experiment training samples/s", "ours": wall_rate, "reference": None,
         "unit": "clips/s", "notes": f"{base}; {wait:.0f}% of wall time outside the training steps"},
        {"case": "demo experiment: model consumption (training steps only)", "ours": model_rate,
         "reference": None, "unit": "clips/s",
         "notes": "samples / time inside forward+backward+AdamW; the loader keeps up if its clips/s is higher"},
        {"case": "demo experiment: training loader alone, 1 worker (raw decode + preprocess)", "ours": loader_rate,
         "reference": None, "unit": "clips/s",
         "notes": f"{loader['clips']} clips (2 s mp4 + 16 kHz wav), batch {loader['batch_size']}, "
                  f"{loader['num_frames']} frames, {TIMED_LOADER_EPOCHS} epochs after a warm-up epoch; "
                  f"{loader_rate / model_rate:.1f}x the model's consumption"},
    ]


if __name__ == "__main__":  # the loader worker that run() starts; the benchmark itself: python -m bench --only e2e
    if sys.argv[1:] != ["--loader"]:
        raise SystemExit("usage: python -m bench.bench_e2e --loader (the benchmark: python -m bench --only e2e)")
    print(json.dumps(measure_loader()))
