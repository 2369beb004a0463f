"""Train, test or predict with TVLT: the Hydra entry point.

    python run.py experiment=mosei                         # fit, validate, test the best checkpoint (demo data)
    python run.py experiment=mosei data.root=/data/mosei model.pretrained=/ckpt/TVLT.ckpt
    python run.py experiment=mosei ckpt_path=logs/mosei/runs/<run>/checkpoints/last.ckpt   # resume
    python run.py -m experiment=mosei model.optimizer.lr=1e-4,5e-5                        # sweep
    python run.py mode=predict experiment=mosei ckpt_path=<best.ckpt> input=clip.mp4       # one clip
    python run.py experiment=classify data.manifest=clips.csv                              # your own labels

See docs/training.md. The run function returns the value of ``optimized_metric`` so sweepers can optimize it.
"""

from __future__ import annotations

import logging
import math
import netrc
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger("run")

# config keys holding file paths: relative values are made absolute against the launch directory, once, before
# any DDP process or multirun job starts (DDP children re-run this file from the same directory and agree)
PATH_KEYS = ("paths.root_dir", "data.root", "data.manifest", "data.demo_dir", "data.shards",
             "data.shards_cache_dir", "model.pretrained", "ckpt_path", "input", "input_audio")


# ---------------------------------------------------------------------------------------------------- set-up
def _rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def apply_demo_preset(cfg: DictConfig) -> DictConfig:
    """With no data given (``data.root``, ``data.manifest``, ``data.shards`` null: the embedded demo dataset), an
    experiment that names a ``demo_preset`` is re-composed as that preset, keeping every command-line override. The
    full-size schedule (TVLT-base, effective batch 128, 10 epochs) would take days on a CPU and means nothing on 32
    clips. Not in ``mode=predict`` / ``mode=embed``, whose model comes from the checkpoint."""
    preset = cfg.get("demo_preset")
    data = cfg.get("data") or {}
    if (not preset or any(data.get(k) is not None for k in ("root", "manifest", "shards"))
            or cfg.get("mode") in ("predict", "embed")):
        return cfg
    from hydra import compose

    overrides = [o for o in HydraConfig.get().overrides.task if not o.split("=")[0].lstrip("+~") == "experiment"]
    if _rank_zero():
        what = getattr(get_class(cfg.data._target_), "root_description", "data folder")
        log.warning("No data.root given: using the embedded demo dataset with the demo preset experiment=%s "
                    "(demo-size model, short schedule). Pass data.root=<%s> for the real experiment.",
                    preset, what)
    new = compose(config_name=HydraConfig.get().job.config_name, overrides=[f"experiment={preset}", *overrides])
    with open_dict(new):
        new.demo_from = OmegaConf.select(cfg, "task_name")
    return new


def resolve_paths(cfg: DictConfig) -> None:
    """Make the file paths in :data:`PATH_KEYS` absolute against the launch directory (in place)."""
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, str) and value and not os.path.isabs(value) and "://" not in value:  # s3://... stays
            OmegaConf.update(cfg, key, to_absolute_path(value), merge=False, force_add=False)


def wandb_has_credentials() -> bool:
    """An API key in WANDB_API_KEY or in ~/.netrc (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("//")[-1])\
            is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def configure_wandb(cfg: DictConfig) -> None:
    """W&B without an account: offline (no network), synced later with ``wandb sync``. Set before any DDP child
    starts, so children inherit it."""
    if "wandb" not in (cfg.get("logger") or {}):
        return
    if "WANDB_MODE" not in os.environ and not wandb_has_credentials():
        os.environ["WANDB_MODE"] = "offline"
        if _rank_zero():
            log.info("W&B: no API key configured, logging offline (sync later with `wandb sync <run dir>`)")
    os.environ.setdefault("WANDB_SILENT", "true")


def print_config(cfg: DictConfig) -> None:
    """The composed config as a rich tree (rank zero), also saved to <output_dir>/config_tree.log."""
    if not _rank_zero():
        return
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    order = ["data", "model", "trainer", "callbacks", "logger", "paths"]
    keys = order + [k for k in cfg if k not in order]
    for key in keys:
        if key not in cfg:
            continue
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        tree.add(key, style="dim", guide_style="dim").add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "config_tree.log", "w") as f:
        rich.print(tree, file=f)


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


# ---------------------------------------------------------------------------------------------------- train/test
def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (unless ``train=false``), test the best checkpoint, export it with save_pretrained. Returns the
    trainer's metrics. Loggers are closed even when the run fails."""
    import lightning.pytorch as pl

    from tvlt.lit.callbacks import SlurmRequeue, Summaries
    from tvlt.lit.runs import check_data, ddp_in_sweep_job

    mode = cfg.get("mode", "train")
    fit = mode == "train" and cfg.get("train", True)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    # plain containers (not omegaconf objects) so the hyperparameters in checkpoints load with weights_only=True
    datamodule = instantiate(cfg.data, _convert_="all")
    check_data(datamodule, "fit" if fit else "test")  # before the model: a wrong data.root fails at once
    # a datamodule whose data defines the head (classify: class names from the manifest) hands it to the module
    task = datamodule.model_arguments() if hasattr(datamodule, "model_arguments") else {}
    model = instantiate(cfg.model, _convert_="all", **task)
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
            metrics = _fit_test_export(cfg, trainer, model, datamodule, fit, mode)
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


def _fit_test_export(cfg: DictConfig, trainer, model, datamodule, fit: bool, mode: str) -> dict[str, float]:
    """Log the config, fit (when ``fit``), test the best checkpoint (or ``ckpt_path``), export; the metrics."""
    metrics: dict[str, float] = {}
    container = OmegaConf.to_container(cfg, resolve=True)
    for lg in trainer.loggers:
        lg.log_hyperparams(container)  # rank zero only (Lightning loggers)
    if fit:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        metrics.update(_floats(trainer.callback_metrics))
    best = _best_checkpoint(trainer) if fit else cfg.get("ckpt_path")
    if mode == "test" and not best:
        raise ValueError("mode=test needs ckpt_path=<checkpoint>")
    if cfg.get("test", True):
        if mode == "train" and not best:
            log.warning("No best checkpoint (fast_dev_run, or no validation): testing the current weights")
        elif fit and not _is_best(trainer, best):
            log.warning("No best checkpoint (no validation): testing the last weights (%s)", Path(best).name)
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(_floats(trainer.callback_metrics))
    if cfg.get("export_pretrained") and best and fit:
        _export(model, best, cfg, trainer, tested=bool(cfg.get("test", True)))
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


def _export(model, best: str, cfg: DictConfig, trainer, tested: bool) -> None:
    """Best weights (or the last ones when no best checkpoint was chosen) as
    ``<output_dir>/pretrained/{config.json, model.safetensors}`` (rank zero)."""
    if not trainer.is_global_zero:
        return
    from tvlt.lit.base import read_checkpoint

    if not tested:  # trainer.test has already loaded the best weights into the module otherwise
        model.load_state_dict(read_checkpoint(best)["state_dict"])
    out = model.export_pretrained(Path(cfg.paths.output_dir) / "pretrained")
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


# ---------------------------------------------------------------------------------------------------- predict
def predict(cfg: DictConfig) -> list[str]:
    """Print the prediction of the checkpoint ``ckpt_path`` for the clip ``input`` (video with its audio track,
    or ``input_audio=<wav>`` for a sidecar file). Returns the printed lines."""
    import torch

    from datamodules.decoding import ClipDecodeError, ClipReader
    from tvlt.feature_extraction import TvltFeatureExtractor
    from tvlt.image_processing import TvltImageProcessor
    from tvlt.lit.base import load_lit_checkpoint

    if not cfg.get("ckpt_path") or not cfg.get("input"):
        raise ValueError("mode=predict needs ckpt_path=<checkpoint .ckpt> and input=<video file>")
    module = load_lit_checkpoint(cfg.ckpt_path)
    if not hasattr(module, "describe"):
        raise ValueError(f"mode=predict supports the sentiment/emotion/classify modules, not {type(module).__name__}")
    # frames and preprocessing as in training (saved in the checkpoint) unless given on the command line
    data = cfg.get("data") or {}
    given = {o.split("=")[0] for o in HydraConfig.get().overrides.task}
    saved = getattr(module, "data_settings", {})
    num_frames = int(data.get("num_frames", 8) if "data.num_frames" in given else saved.get("num_frames", 8))
    mode = str(data.get("processor_mode", "hf") if "data.processor_mode" in given
               else saved.get("processor_mode", "hf"))
    audio = cfg.get("input_audio") or "container"
    try:
        clip = ClipReader(num_frames=num_frames).read(cfg.input, audio=audio, mode="uniform")
    except ClipDecodeError as err:
        if audio != "container" or err.cause != "no_audio_stream":
            raise
        hint = "pass input_audio=<wav or flac file> with the clip's audio"
        raise ClipDecodeError(err.path, err.cause, f"{err.detail}; {hint}" if err.detail else hint) from None
    if clip.waveform is None:
        raise ValueError(f"{cfg.input}: no audio; pass input_audio=<wav> for a sidecar audio file")
    pixels = TvltImageProcessor(mode=mode, num_frames=num_frames)(clip.frames, return_tensors="pt",
                                                                   num_frames=num_frames)
    audio_in = TvltFeatureExtractor(mode=mode)(clip.waveform, sampling_rate=clip.sampling_rate, return_tensors="pt")
    batch = {"pixel_values": pixels["pixel_values"], "pixel_mask": pixels["pixel_mask"],
             "audio_values": audio_in["audio_values"], "audio_mask": audio_in["audio_mask"], "ids": [str(cfg.input)]}
    with torch.inference_mode():
        out = module.predict_step(batch)
    lines = [f"{cfg.input}: {text}" for text in module.describe(out["preds"])]
    for line in lines:
        print(line)
    return lines


def predict_dataset(cfg: DictConfig) -> Path | None:
    """``mode=predict`` without ``input`` and ``mode=embed``: the checkpoint ``ckpt_path`` over every clip of
    ``predict.split`` of the data, on the configured devices; writes ``predictions.csv`` or
    ``embeddings.safetensors`` (and ``skipped.csv``) into the run folder (see :mod:`tvlt.lit.inference`).
    Returns the file written (rank zero; None on other processes)."""
    import json

    import torch

    from tvlt.lit import inference
    from tvlt.lit.base import load_lit_checkpoint
    from tvlt.processing import TvltProcessor

    mode = cfg.mode
    if not cfg.get("ckpt_path"):
        raise ValueError(f"mode={mode} needs ckpt_path=<checkpoint .ckpt>")
    module = load_lit_checkpoint(cfg.ckpt_path)
    if mode == "predict" and not hasattr(module, "prediction_columns"):
        raise ValueError(f"mode=predict over a dataset supports sentiment, emotion and classify checkpoints, not "
                         f"{type(module).__name__} (mode=embed works for every checkpoint)")
    given = {o.split("=")[0] for o in HydraConfig.get().overrides.task}
    with open_dict(cfg):  # frames and preprocessing as in training (saved in the checkpoint) unless given
        for key, value in getattr(module, "data_settings", {}).items():
            if f"data.{key}" not in given and key in cfg.data:
                cfg.data[key] = value
    split = str(cfg.predict.split)
    if split not in ("train", "valid", "test", "all"):
        raise ValueError(f"predict.split must be train, valid, test or all, got {split!r}")
    datamodule = instantiate(cfg.data, _convert_="all")
    splits = ["train", "valid", "test"] if split == "all" else [split]
    loaders = {s: datamodule.evaluation_loader(s) for s in splits}
    loaders = {s: loader for s, loader in loaders.items() if len(loader)}
    if not loaders:
        raise ValueError(f"predict.split={split}: the data has no such clips")
    step = module.predict_step
    if mode == "embed":
        def step(batch, batch_idx=0, dataloader_idx=0):  # noqa: ANN001
            return inference.embed_batch(module.model, batch)
    module.predict_step = lambda batch, *args: None if not batch else step(batch, *args)
    collector = inference.Collector(mode)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[collector], enable_checkpointing=False,
                          enable_model_summary=False)
    for name, loader in loaders.items():
        collector.split = name
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    order = [clip_id for name in loaders for clip_id in datamodule.manifest(name).ids]
    rows = inference.gather_rows(collector.rows, order)
    skipped = inference.gather_rows(
        [{"id": i, "cause": cause} for _, i, cause in datamodule.skipped_clips], order)
    if not trainer.is_global_zero:
        return None
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if mode == "predict":
        path = inference.write_predictions(out, rows)
    else:
        tensors = {k: torch.stack([r[k] for r in rows]) for k in ("embedding", "video", "audio")}
        path = inference.write_embeddings(out, [r["id"] for r in rows], tensors,
                                          {"checkpoint": str(cfg.ckpt_path), "splits": json.dumps(
                                              [r["split"] for r in rows])})
        # the preprocessing the embeddings were made with
        TvltProcessor(datamodule.image_processor, datamodule.feature_extractor).save_pretrained(out)
    if skipped:
        log.warning("%d clip(s) could not be read and were skipped: %s", len(skipped),
                    inference.write_skipped(out, skipped))
    log.info("Wrote %d row(s) of %s to %s", len(rows), "predictions" if mode == "predict" else "embeddings", path)
    return path


# ---------------------------------------------------------------------------------------------------- main
def single_lightning_log() -> None:
    """Lightning's INFO lines once, in Hydra's format (console and the run's log file). Importing ``lightning``
    adds a bare console handler to its logger that also propagates to Hydra's root handlers (every line twice),
    and ``lightning.pytorch`` stops propagating when imported before Hydra configured logging."""
    import lightning.pytorch  # noqa: F401  (adds the handlers this removes)

    if not logging.getLogger().hasHandlers():
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # Lightning's own bare console handlers only
                logger.removeHandler(handler)
        logger.propagate = True


def check_ckpt_path(cfg: DictConfig) -> None:
    """Fail before any work when ``ckpt_path`` (resume, test or predict) is missing or not a checkpoint, naming
    the file, or when a resumed run has nothing left to train (:func:`tvlt.lit.runs.check_resume`). Checkpoints
    are read with ``weights_only=True`` (they may come from anywhere)."""
    path = cfg.get("ckpt_path")
    if path:
        from tvlt.lit.base import read_checkpoint
        from tvlt.lit.runs import check_resume

        checkpoint = read_checkpoint(path, mmap=True)
        if cfg.get("mode") == "train" and cfg.get("train", True):
            check_resume(checkpoint, path, cfg.trainer)


def _unique_dir(base: str) -> str:
    from tvlt.lit.runs import reserve_run_dir  # imported when Hydra resolves hydra.run.dir, not at import time

    return reserve_run_dir(base)


if not OmegaConf.has_resolver("unique_dir"):  # conf/hydra/default.yaml: run folders never shared by two runs
    OmegaConf.register_new_resolver("unique_dir", _unique_dir)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from tvlt.lit.runs import RunConfigError

    try:
        return _main(cfg)
    except RunConfigError as err:  # a setting that cannot work, named in the message: no traceback to read
        if _rank_zero():
            log_failure(err)
            print(f"Error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as err:
        if _rank_zero():
            log_failure(err)
        raise


def log_failure(err: BaseException) -> None:
    """Why the run failed, with the traceback, into the run's log file (``<output_dir>/<task>.log``, Hydra's file
    handler). The console already gets Hydra's own report of the exception, so it is not printed twice."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "Run failed: %s: %s",
                            (type(err).__name__, err), (type(err), err, err.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _main(cfg: DictConfig) -> float | None:
    from tvlt.lit.runs import quiet_third_party_noise

    single_lightning_log()
    quiet_third_party_noise()
    if cfg.get("mode") not in ("train", "test", "predict", "embed"):
        raise ValueError(f"mode must be train, test, predict or embed, got {cfg.get('mode')!r}")
    cfg = apply_demo_preset(cfg)
    resolve_paths(cfg)
    check_ckpt_path(cfg)
    if cfg.get("mode") == "embed" or (cfg.get("mode") == "predict" and not cfg.get("input")):
        predict_dataset(cfg)
        return None
    if cfg.get("mode") == "predict":
        from tvlt.lit.runs import discard_run_dir

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
    if _rank_zero():
        if value is None:
            log.warning("optimized_metric %r was not computed (metrics: %s)", name, sorted(metrics))
        else:
            log.info("%s = %.4f", name, value)
        save_objective(cfg.paths.output_dir, name, cfg.get("monitor_mode", "min"), value)  # for the sweep summary
    return None if value is None or math.isnan(value) else value


if __name__ == "__main__":
    main()
