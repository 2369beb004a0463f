"""A summary of every ``-m`` sweep (grid, Optuna or SLURM): one row per job and the best job, as a Hydra callback.

run.py saves the metric it optimized, its mode and value as ``<output_dir>/objective.yaml`` (:func:`save_objective`:
the run's own choice, which may differ from the launched config's, e.g. under the demo preset). Each job then writes
``<job folder>/sweep_result.yaml`` when it ends (global rank zero only: under SLURM every task of a job runs the job
function); when the sweep ends, the launching process gathers those files into ``<sweep dir>/sweep_summary.csv``
(job, status, overrides, the optimized metric, its value, the job's folder, best) and logs the best job. Reading
the jobs' own files rather than the launcher's return values makes it the same for every launcher, including jobs
that ran on other machines.

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

OBJECTIVE_FILE = "objective.yaml"
RESULT_FILE = "sweep_result.yaml"
SUMMARY_FILE = "sweep_summary.csv"
COLUMNS = ("job", "status", "overrides", "metric", "mode", "value", "output_dir", "best")


def launched_as_rank_zero() -> bool:
    """Whether this process is global rank zero, as the launchers say before any Trainer exists: SLURM
    (``SLURM_PROCID``), torchrun (``RANK``), Lightning's DDP children and the other nodes (``LOCAL_RANK``,
    ``NODE_RANK``); True for a plain process."""
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key]) == 0
    return all(os.environ.get(key, "0") in ("", "0") for key in ("NODE_RANK", "LOCAL_RANK"))


def save_objective(output_dir: str | Path, metric: str, mode: str, value: float | None) -> None:
    """What a run optimized: ``metric`` (``optimized_metric``), ``mode`` (``min``/``max``, the run's
    ``monitor_mode``) and its value (None: not computed or NaN), as ``<output_dir>/objective.yaml``."""
    if mode not in ("min", "max"):
        raise ValueError(f"monitor_mode must be min or max, got {mode!r}")
    ok = isinstance(value, (int, float)) and not math.isnan(value)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create({"metric": metric, "mode": mode, "value": float(value) if ok else None}),
                   Path(output_dir) / OBJECTIVE_FILE)


def sweep_direction(config: DictConfig, rows: list[dict]) -> str:
    """``maximize`` or ``minimize``: the Optuna sweeper's direction when it has one, else the jobs' mode."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if isinstance(direction, str):
        return direction
    modes = {r["mode"] for r in rows if r["mode"]}
    if len(modes) > 1:
        raise ValueError(f"the jobs of this sweep optimized their metric in different modes: {sorted(modes)}")
    return "maximize" if modes == {"max"} else "minimize"


class SweepSummary(Callback):
    """Writes each job's result next to it and, at the end of a ``-m`` sweep, ``sweep_summary.csv``."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:  # single runs have their folder, no sweep to summarise
            return
        if not launched_as_rank_zero():
            return
        out = Path(config.hydra.runtime.output_dir)
        objective = OmegaConf.load(out / OBJECTIVE_FILE) if (out / OBJECTIVE_FILE).is_file() else {}
        ok = job_return.status == JobStatus.COMPLETED
        result = {
            "job": int(config.hydra.job.num),
            "status": "completed" if ok else f"failed: {type(job_return._return_value).__name__}",
            "overrides": list(job_return.overrides or []),
            "metric": objective.get("metric", config.get("optimized_metric")),
            "mode": objective.get("mode"),
            "value": objective.get("value") if ok else None,
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
        best = best_row(rows, sweep_direction(config, rows))
        path = write_summary(sweep_dir, rows, best)
        if best is None:
            log.warning("Sweep summary (%d jobs) in %s: no job returned a value of %s", len(rows), path,
                        sorted({r["metric"] for r in rows}))
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
