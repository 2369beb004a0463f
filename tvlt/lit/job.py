"""What a ``run.py`` job does: compose the run (demo preset, paths, W&B, config tree), then fit, test and export
(``mode=train`` / ``mode=test``) or predict (``mode=predict`` / ``mode=embed``, :mod:`tvlt.lit.predict`).

``run.py`` is the Hydra entry point and calls :func:`run`; tests call the steps directly on a composed config.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from datamodules.demo import apply_demo_preset
from tvlt.checkpoints import CheckpointError
from tvlt.lit.predict import predict, predict_dataset
from tvlt.lit.runs import (RunConfigError, check_callbacks, check_ckpt_path, configure_wandb, discard_run_dir,
                           end_process_group, is_rank_zero, log_failure, print_config, quiet_third_party_noise,
                           resolve_paths, single_lightning_log)

log = logging.getLogger("run")


# ---------------------------------------------------------------------------------------------------- job
def run(cfg: DictConfig) -> float | None:
    """The job of ``python run.py ...`` (each job of a ``-m`` sweep, and each DDP child): the ``mode`` of ``cfg``
    (see ``conf/config.yaml``). Returns the value of ``optimized_metric`` for sweepers (None when not computed, NaN,
    or in the predict modes). A :class:`RunConfigError` or a :class:`~tvlt.checkpoints.CheckpointError` (a
    ``ckpt_path`` that is missing or not a checkpoint, named in the message) ends the process with exit status 1 and
    its message, without a traceback; every failure is written to the run's log file."""
    try:
        return _run(cfg)
    except (RunConfigError, CheckpointError) as err:  # a setting or file that cannot work, named: no traceback
        if is_rank_zero():
            log_failure(err)
            print(f"Error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as err:
        if is_rank_zero():
            log_failure(err)
        raise
    finally:
        end_process_group()  # while the interpreter is whole: a gloo group torn down at exit can abort the process


def _run(cfg: DictConfig) -> float | None:
    single_lightning_log()
    quiet_third_party_noise()
    run_steps(cfg)  # a contradictory mode/train/test stops here, before any work
    cfg = apply_demo_preset(cfg)
    resolve_paths(cfg)
    check_ckpt_path(cfg)
    check_callbacks(cfg)
    if cfg.get("mode") == "embed" or (cfg.get("mode") == "predict" and not cfg.get("input")):
        predict_dataset(cfg)
        return None
    if cfg.get("mode") == "predict":
        predict(cfg)
        discard_run_dir(cfg.paths.output_dir, cfg.paths.root_dir)  # a prediction writes nothing: no run folder
        return None
    configure_wandb(cfg)
    print_config(cfg)
    metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if not name:
        return None
    from tvlt.sweeps import save_objective

    value = metrics.get(name)
    if is_rank_zero():
        if value is None:
            log.warning("optimized_metric %r was not computed (metrics: %s)", name, sorted(metrics))
        else:
            log.info("%s = %.4f", name, value)
        save_objective(cfg.paths.output_dir, name, cfg.get("monitor_mode", "min"), value)  # for the sweep summary
    return None if value is None or math.isnan(value) else value


# ---------------------------------------------------------------------------------------------------- set-up
MODES = ("train", "test", "predict", "embed")


def run_steps(cfg: DictConfig) -> tuple[bool, bool]:
    """The one rule for ``mode``, ``train`` and ``test`` (``conf/config.yaml``): ``mode`` says what the run does;
    ``train`` and ``test`` follow from it (null) and may be set only where they agree with it, except ``test=false``
    with ``mode=train`` (fit without the final test).

    Returns:
        (fit, test): ``mode=train`` (True, ``test`` or True), ``mode=test`` (False, True), ``predict`` / ``embed``
        (False, False).

    Raises:
        RunConfigError: an unknown ``mode``, ``mode=test`` without ``ckpt_path``, or a ``train`` / ``test`` value
            that contradicts the mode (e.g. ``mode=test train=true``), naming the keys and the command to use.
    """
    mode, train, test = cfg.get("mode"), cfg.get("train"), cfg.get("test")
    if mode not in MODES:
        raise RunConfigError(f"mode={mode}: must be one of {', '.join(MODES)}")
    for key, value in (("train", train), ("test", test)):
        if value is not None and not isinstance(value, bool):
            raise RunConfigError(f"{key}={value}: must be true, false or null (null: as mode={mode} says)")
    fit, evaluate = {"train": (True, test is not False), "test": (False, True)}.get(mode, (False, False))
    if train is not None and train != fit:
        hint = ("to test a checkpoint without training: mode=test ckpt_path=<ckpt>" if mode == "train"
                else "to train: mode=train")
        raise RunConfigError(f"mode={mode} train={str(train).lower()}: contradictory (mode={mode} "
                             f"{'trains' if fit else 'does not train'}); {hint}")
    if test is not None and test != evaluate:
        hint = {"test": "mode=test only tests; to train: mode=train",
                "predict": "mode=predict only predicts; to test a checkpoint: mode=test ckpt_path=<ckpt>",
                "embed": "mode=embed only embeds; to test a checkpoint: mode=test ckpt_path=<ckpt>"}[mode]
        raise RunConfigError(f"mode={mode} test={str(test).lower()}: contradictory; {hint}")
    if mode == "test" and not cfg.get("ckpt_path"):
        raise RunConfigError("mode=test needs ckpt_path=<checkpoint .ckpt> (the weights to test)")
    return fit, evaluate


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


# ---------------------------------------------------------------------------------------------------- train/test
def train(cfg: DictConfig) -> dict[str, float]:
    """``mode=train``: fit, test the best checkpoint (unless ``test=false``), export it with save_pretrained;
    ``mode=test``: test ``ckpt_path`` (see :func:`run_steps`). Returns the trainer's metrics. Loggers are closed
    even when the run fails."""
    import lightning.pytorch as pl

    from tvlt.lit.callbacks import SlurmRequeue, Summaries
    from tvlt.lit.runs import check_data, check_model_fits_data, ddp_in_sweep_job

    fit, test = run_steps(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    # plain containers (not omegaconf objects) so the hyperparameters in checkpoints load with weights_only=True
    datamodule = instantiate(cfg.data, _convert_="all")
    check_data(datamodule, "fit" if fit else "test")  # before the model: a wrong data.root fails at once
    # a datamodule whose data defines the head (classify: class names from the manifest) hands it to the module
    task = datamodule.model_arguments() if hasattr(datamodule, "model_arguments") else {}
    model = instantiate(cfg.model, _convert_="all", **task)
    check_model_fits_data(model, datamodule)
    # SlurmRequeue replaces Lightning's requeue-signal handler whatever the callbacks group (inert off SLURM)
    callbacks = _instantiate_group(cfg.get("callbacks")) + [Summaries(), SlurmRequeue()]
    loggers = _instantiate_group(cfg.get("logger"))
    if not loggers or cfg.trainer.get("fast_dev_run"):
        # nothing to monitor into (fast_dev_run turns loggers off); LearningRateMonitor would refuse to start
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    failed = True
    metrics: dict[str, float] = {}
    try:
        with ddp_in_sweep_job():  # in a -m sweep job, DDP children run this job, not the sweep
            metrics = _fit_test_export(cfg, trainer, model, datamodule, fit, test)
        failed = False
    except Exception as err:
        if getattr(trainer, "received_sigterm", False):
            # SLURM stopped the job (a requeue, scancel, the time limit) and what it took down with it (the W&B
            # service): end as Lightning does on SIGTERM, a SystemExit, so that submitit records no result for this
            # attempt and the launcher waits for the requeued one
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            raise SIGTERMException() from err
        raise
    finally:
        _close_loggers(trainer, failed)
    return metrics


def _fit_test_export(cfg: DictConfig, trainer, model, datamodule, fit: bool, test: bool) -> dict[str, float]:
    """Log the config, fit (when ``fit``), test the best checkpoint (or ``ckpt_path``), export; the metrics."""
    metrics: dict[str, float] = {}
    container = OmegaConf.to_container(cfg, resolve=True)
    for lg in trainer.loggers:
        lg.log_hyperparams(container)  # rank zero only (Lightning loggers)
    if fit:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        metrics.update(_floats(trainer.callback_metrics))
    best = _best_checkpoint(trainer) if fit else cfg.get("ckpt_path")
    if test:
        if fit and not best:
            log.warning("No best checkpoint (fast_dev_run, or no validation): testing the current weights")
        elif fit and not _is_best(trainer, best):
            log.warning("No best checkpoint (no validation): testing the last weights (%s)", Path(best).name)
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(_floats(trainer.callback_metrics))
    if cfg.get("export_pretrained") and best and fit:
        _export(model, datamodule, best, cfg, trainer, tested=test)
    return metrics


def _floats(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def _best_checkpoint(trainer) -> str | None:
    """The best checkpoint of the monitored metric, else ``last.ckpt`` (no validation: nothing to choose by)."""
    cb = trainer.checkpoint_callback
    if cb is None or trainer.fast_dev_run:
        return None
    return cb.best_model_path or cb.last_model_path or None


def _is_best(trainer, path: str) -> bool:
    cb = trainer.checkpoint_callback
    return bool(cb is not None and cb.best_model_path and path == cb.best_model_path)


def _export(model, datamodule, best: str, cfg: DictConfig, trainer, tested: bool) -> None:
    """Best weights (or the last ones when no best checkpoint was chosen) and the datamodule's preprocessing as
    ``<output_dir>/pretrained/{config.json, model.safetensors, preprocessor_config.json}`` (rank zero), so that
    ``from_pretrained`` of the model and of :class:`~tvlt.processing.TvltProcessor` reproduce the run."""
    if not trainer.is_global_zero:
        return
    from tvlt.checkpoints import read_checkpoint
    from tvlt.processing import TvltProcessor

    if not tested:  # trainer.test has already loaded the best weights into the module otherwise
        model.load_state_dict(read_checkpoint(best)["state_dict"])
    out = model.export_pretrained(Path(cfg.paths.output_dir) / "pretrained")
    TvltProcessor(datamodule.image_processor, datamodule.feature_extractor).save_pretrained(out)
    if _is_best(trainer, best):
        log.info("Exported the best weights (%s) with save_pretrained to %s", Path(best).name, out)
    else:
        log.warning("Exported the last weights (%s; no best checkpoint: %s was never computed) with "
                    "save_pretrained to %s", Path(best).name, cfg.get("monitor"), out)


def _close_loggers(trainer, failed: bool) -> None:
    """Finish the W&B run (Lightning's WandbLogger leaves it open), also after a crash."""
    for lg in getattr(trainer, "loggers", []):
        if type(lg).__name__ == "WandbLogger":
            import wandb

            if wandb.run is None:
                continue
            try:
                wandb.finish(exit_code=1 if failed else 0)
            except Exception as err:
                if not failed:
                    raise
                # the run's own exception is the one to report, not W&B's (e.g. its service stopped with the job)
                log.warning("W&B run not finished cleanly after the failure: %s: %s", type(err).__name__, err)
