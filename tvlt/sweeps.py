"""A summary of every ``-m`` sweep (grid, Optuna or SLURM): one row per job and the best job, as a Hydra callback.

Each job writes ``<job folder>/sweep_result.yaml`` when it ends (global rank zero only: under SLURM every task of a
job runs the job function); when the sweep ends, the launching process gathers those files into
``<sweep dir>/sweep_summary.csv`` (job, status, overrides, the optimized metric, the job's folder, best) and logs
the best job. Reading the jobs' own files rather than the launcher's return values makes it the same for every
launcher, including jobs that ran on other machines.

Configured in ``conf/hydra/default.yaml`` (``hydra.callbacks.sweep_summary``).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("sweep")

RESULT_FILE = "sweep_result.yaml"
SUMMARY_FILE = "sweep_summary.csv"
COLUMNS = ("job", "status", "overrides", "metric", "value", "output_dir", "best")


def global_rank_from_env() -> int:
    """The process's global rank as the launchers set it before any Trainer exists: SLURM (``SLURM_PROCID``),
    torchrun and Lightning's DDP children (``RANK``, or ``NODE_RANK``/``LOCAL_RANK``); 0 for a plain process."""
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return int(os.environ.get("NODE_RANK", "0") or 0) + int(os.environ.get("LOCAL_RANK", "0") or 0)


def sweep_direction(config: DictConfig) -> str:
    """``maximize`` or ``minimize``: the Optuna sweeper's direction when it has one, else ``monitor_mode``."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if isinstance(direction, str):
        return direction
    mode = config.get("monitor_mode", "min")
    if mode not in ("min", "max"):
        raise ValueError(f"monitor_mode must be min or max, got {mode!r}")
    return "maximize" if mode == "max" else "minimize"


class SweepSummary(Callback):
    """Writes each job's result next to it and, at the end of a ``-m`` sweep, ``sweep_summary.csv``."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:  # single runs have their folder, no sweep to summarise
            return
        if global_rank_from_env() != 0:
            return
        out = Path(config.hydra.runtime.output_dir)
        ok = job_return.status == JobStatus.COMPLETED
        value = job_return.return_value if ok else None
        result = {
            "job": int(config.hydra.job.num),
            "status": "completed" if ok else f"failed: {type(job_return._return_value).__name__}",
            "overrides": list(job_return.overrides or []),
            "metric": config.get("optimized_metric"),
            "value": float(value) if isinstance(value, (int, float)) and not math.isnan(value) else None,
            "output_dir": str(out),
        }
        out.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(result), out / RESULT_FILE)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect_results(sweep_dir)
        if not rows:
            log.warning("Sweep summary: no job wrote %s under %s", RESULT_FILE, sweep_dir)
            return
        best = best_row(rows, sweep_direction(config))
        path = write_summary(sweep_dir, rows, best)
        if best is None:
            log.warning("Sweep summary (%d jobs) in %s: no job returned %s", len(rows), path,
                        config.get("optimized_metric"))
            return
        log.info("Sweep summary (%d jobs) in %s; best job %d: %s = %.6g (%s), %s", len(rows), path, best["job"],
                 best["metric"], best["value"], " ".join(best["overrides"]), best["output_dir"])


def collect_results(sweep_dir: Path) -> list[dict]:
    """The results the jobs of a sweep wrote, in job order."""
    rows = [OmegaConf.to_container(OmegaConf.load(p)) for p in sweep_dir.rglob(RESULT_FILE)]
    return sorted(rows, key=lambda r: r["job"])


def best_row(rows: list[dict], direction: str) -> dict | None:
    """The job with the best value (the first one on ties); None when no job returned a value."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"hydra.sweeper.direction must be maximize or minimize, got {direction!r}")
    scored = [r for r in rows if r["value"] is not None]
    if not scored:
        return None
    pick = max if direction == "maximize" else min
    return pick(scored, key=lambda r: r["value"])


def write_summary(sweep_dir: Path, rows: list[dict], best: dict | None) -> Path:
    path = sweep_dir / SUMMARY_FILE
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "overrides": " ".join(row["overrides"]),
                             "value": "" if row["value"] is None else repr(row["value"]),
                             "best": best is not None and row["job"] == best["job"]})
    return path
