"""Run-level helpers of a ``run.py`` job (:mod:`tvlt.lit.job`): the set-up (paths, W&B, logging, the config tree),
what a run checks before it starts, where it writes, and what it prints.
"""

from __future__ import annotations

import logging
import netrc
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("run")

# Lightning INFO lines that are advertisements or notes about this project's own configuration, not about the run
_LIGHTNING_NOISE = (
    "try installing [litlogger]",  # printed whenever no LitLogger is configured
    "Trainer already configured with model summary callbacks",  # conf/callbacks sets its own summary
)


class _DropMessages(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


class _Once(logging.Filter):
    """Lets each distinct INFO (or lower) message through once per process; warnings and errors always pass."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def quiet_third_party_noise() -> None:
    """Silence what other libraries print on every run without informing about it: Lightning's litlogger tip and
    model-summary note, the deprecation warning Lightning's own pytree helper triggers in torch
    (``isinstance(treespec, LeafSpec)``), and Lightning's warning that an ``IterableDataset`` with ``__len__`` may
    count wrong in several workers (this project's only iterable datasets are LitData's, which give each worker its
    own records: tested in ``tests/test_shards.py``). LitData's INFO notes on each shard dataset it opens (where
    remote chunks are cached, and how), and botocore's on where it found credentials, are printed once per process
    instead of once per dataset, client and worker; their warnings all pass. Idempotent;
    warnings and messages about the run itself are kept."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessages) for f in logger.filters):
        logger.addFilter(_DropMessages(_LIGHTNING_NOISE))
    for name in ("litdata.streaming.dataset", "litdata.utilities.format", "botocore.credentials"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Once) for f in logger.filters):
            logger.addFilter(_Once())


class RunConfigError(ValueError):
    """A setting given to ``run.py`` cannot work (data that is not there, a checkpoint with nothing left to train);
    the message names the setting as it is written on the command line (``data.root=...``) and what to do."""


# ---------------------------------------------------------------------------------------------------- run folders
_reserved: dict[str, str] = {}


def reserve_run_dir(base: str) -> str:
    """The Hydra resolver behind ``hydra.run.dir`` (``${unique_dir:<logs>/<task>/runs/<date>_<time>}``): creates
    and returns ``base``, or ``base_1``, ``base_2``, ... when a run started in the same second already holds it.
    The folder is created here with ``exist_ok=False`` (atomic on POSIX file systems), so two runs started at the
    same moment never share one. Memoised per process: Hydra and Lightning's DDP launcher ask for it again."""
    if base in _reserved:
        return _reserved[base]
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    for n in range(10000):
        candidate = base if n == 0 else f"{base}_{n}"
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        _reserved[base] = candidate
        return candidate
    raise RunConfigError(f"{base}: 10000 run folders of this name exist; pass hydra.run.dir=<folder>")


def discard_run_dir(output_dir: str | Path, root_dir: str | Path) -> None:
    """Remove a run folder that holds nothing but Hydra's bookkeeping (``.hydra/``, the log file), and the parent
    folders up to ``root_dir`` that this leaves empty. For runs that write no output (``mode=predict``). Closes
    the log file handlers writing into it first."""
    import shutil

    out = Path(output_dir).resolve()
    if not out.is_dir() or any(p.name != ".hydra" and p.suffix != ".log" for p in out.iterdir()):
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve().is_relative_to(out):
            root.removeHandler(handler)
            handler.close()
    shutil.rmtree(out, ignore_errors=True)
    stop = Path(root_dir).resolve()
    parent = out.parent
    while parent != stop and stop in parent.parents and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


# ---------------------------------------------------------------------------------------------------- data
def check_data(datamodule: Any, stage: str) -> None:
    """Validate the data sources of ``stage`` (``fit`` or ``test``) before the model is built: a wrong
    ``data.root`` / ``data.manifest``, a missing label file or a bad manifest row stops the run at once, with the
    setting the user passed in the message. No clip is decoded (see ``ClipDataModule.check_sources``).

    Raises:
        RunConfigError: the datamodule's ``ManifestError`` (file, row, field), prefixed with ``data.root=...``
            (see :func:`data_errors`).
    """
    check = getattr(datamodule, "check_sources", None)
    if check is None:
        return
    with data_errors(datamodule):
        check(stage)


def check_model_fits_data(model: Any, datamodule: Any) -> None:
    """The frames the datamodule makes fit the model: their side is ``model.config.image_size``, their patches
    (for ``pixel_mask``) ``model.config.image_patch_size``, and their count at most ``model.config.num_frames``
    (the temporal embeddings). Checked before training and dataset prediction, so that a mismatch is one line naming
    the settings rather than a shape error in the first step.

    Raises:
        RunConfigError: naming ``data.image_size`` / ``data.num_frames`` / ``model.config.image_patch_size`` and
            the values.
    """
    config = getattr(getattr(model, "model", None), "config", None)
    processor = getattr(datamodule, "image_processor", None)
    if config is None or processor is None:
        return
    side = int(processor.crop_size["height"])
    if side != config.image_size:
        raise RunConfigError(f"data.image_size={side} but model.config.image_size={config.image_size}: frames must "
                             "have the model's size (set both)")
    if list(processor.patch_size) != list(config.image_patch_size):
        raise RunConfigError(f"model.config.image_patch_size={list(config.image_patch_size)}: the datamodules make "
                             f"pixel masks of {list(processor.patch_size)} patches (the paper's 16 x 16)")
    frames = getattr(datamodule, "num_frames", None)
    if frames is not None and frames > config.num_frames:
        raise RunConfigError(f"data.num_frames={frames} but model.config.num_frames={config.num_frames}: the model "
                             "has temporal embeddings for at most that many frames")


@contextmanager
def data_errors(datamodule: Any) -> Iterator[None]:
    """Turn what a wrong data source raises inside the block (a manifest problem, a missing file or folder, shards
    built with other settings) into a :class:`RunConfigError` prefixed with the settings the user gave
    (``data.root=...``, ``data.manifest=...``, ``data.shards=...``)."""
    from datamodules.manifests import ManifestError
    from datamodules.shards import ShardAccessError, ShardSettingsError, UnsafeShardError

    try:
        yield
    except (ManifestError, ShardSettingsError, UnsafeShardError, ShardAccessError, FileNotFoundError,
            NotADirectoryError) as err:
        given = [f"data.{key}={value}" for key, value in (("root", getattr(datamodule, "root", None)),
                                                          ("manifest", getattr(datamodule, "manifest_path", None)),
                                                          ("shards", getattr(datamodule, "shards", None)))
                 if value is not None]
        raise RunConfigError(f"{', '.join(given) or 'data'}: {err}") from err


# ---------------------------------------------------------------------------------------------------- resume
def check_resume(checkpoint: Mapping[str, Any], ckpt_path: str, trainer_cfg: Mapping[str, Any]) -> None:
    """Refuse to resume a run that has nothing left to train under the given limits (Lightning would train nothing,
    then the run would test and export the old weights as if they were new), saying how to continue.

    Args:
        checkpoint: the Lightning checkpoint of ``ckpt_path`` (``epoch``, ``global_step``, ``loops``).
        trainer_cfg: the composed ``trainer`` config (``max_epochs``, ``max_steps``).

    Raises:
        RunConfigError: the checkpoint already reached ``trainer.max_epochs`` or ``trainer.max_steps``.
    """
    epochs = finished_epochs(checkpoint)
    step = int(checkpoint.get("global_step", 0))
    max_epochs = trainer_cfg.get("max_epochs")
    max_steps = trainer_cfg.get("max_steps")
    if max_steps not in (None, -1) and step >= int(max_steps):
        limit, more = f"trainer.max_steps={max_steps}", f"trainer.max_steps={step + max(1, step // 2)}"
    elif max_epochs not in (None, -1) and epochs is not None and epochs >= int(max_epochs):
        limit, more = f"trainer.max_epochs={max_epochs}", f"trainer.max_epochs={epochs + max(1, epochs // 2)}"
    else:
        return
    raise RunConfigError(
        f"ckpt_path={ckpt_path} is a finished run: it trained {epochs} epoch(s), {step} optimizer step(s), and "
        f"{limit} leaves nothing to train. To train further, resume with a higher limit (e.g. {more} "
        f"ckpt_path=...; the learning-rate schedule is re-sized to the new length); to evaluate it, mode=test "
        f"ckpt_path=...; to fine-tune from its weights in a new run, model.pretrained=...")


def unfinished_epoch_batches(checkpoint: Mapping[str, Any]) -> int:
    """Training batches a Lightning checkpoint saved in the middle of an epoch (``every_n_train_steps``) had run in
    that epoch; 0 for a checkpoint saved at an epoch's end or without loop state. Lightning marks an epoch started
    but not processed until its end, and counts the epoch's batches in the epoch loop's ``batch_progress``."""
    try:
        loop = checkpoint["loops"]["fit_loop"]
        epochs = loop["epoch_progress"]["current"]
        if int(epochs["started"]) <= int(epochs["processed"]):
            return 0
        return int(loop["epoch_loop.batch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        return 0


def finished_epochs(checkpoint: Mapping[str, Any]) -> int | None:
    """Epochs a Lightning checkpoint has trained (the fit loop's processed count, what Lightning compares with
    ``max_epochs``), or None when the checkpoint has no loop state."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------------- sweeps
# hydra overrides that belong to the sweep, not to one job (a DDP child runs one job as a single run)
_SWEEP_ONLY = ("hydra.mode", "hydra.sweep", "hydra.sweeper", "hydra/sweeper", "hydra.launcher", "hydra/launcher",
               "hydra.run.dir", "hydra.job.num", "hydra.job.id", "hydra.output_subdir", "hydra.job.name")


# what Lightning's DDP launcher sets in os.environ of the process that starts the children
_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def end_process_group() -> None:
    """Destroy this process's ``torch.distributed`` process group, if one is open (a DDP run's end, on every rank).

    Destroying it is local to the process (no collective), so each rank calls it when its job returns or fails.
    A gloo group left open is torn down during interpreter finalization instead, where its worker threads can abort
    the process (``terminate called without an active exception``, exit status -6 after all the work was written;
    seen on a 2-process ``mode=predict``; pytorch/pytorch#179291 describes the race)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def ddp_in_sweep_job() -> Iterator[None]:
    """Around the fit/test of one job of a ``-m`` sweep: Lightning's DDP child processes run this job, not the sweep
    again, and the next job of the sweep starts its own process group. Does nothing outside a sweep.

    Lightning starts each child with this process's ``sys.argv`` plus ``hydra.run.dir=<HydraConfig run.dir>``. In a
    sweep, ``sys.argv`` is the whole sweep (``-m ... seed=1,2``) and ``run.dir`` is not the job's folder, so every
    child started a sweep of its own, in a second sweep folder. Here ``sys.argv`` becomes this job's overrides
    (``seed=1``, without ``-m``) and ``run.dir`` the job's folder. On exit, the process group and the launcher's
    environment variables (``MASTER_PORT``, ``LOCAL_RANK``, ...) are removed: with them the next job would take this
    process for a child and wait for peers that have finished."""
    import sys

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN or "LOCAL_RANK" in os.environ:
        yield
        return
    hydra_cfg = HydraConfig.get()
    keep = [o for o in hydra_cfg.overrides.hydra if not o.lstrip("+~").split("=")[0].startswith(_SWEEP_ONLY)]
    argv = sys.argv
    sys.argv = [argv[0], *hydra_cfg.overrides.task, *keep]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = argv
        end_process_group()
        for key in _DDP_ENV:
            os.environ.pop(key, None)


# ---------------------------------------------------------------------------------------------------- set-up
# config keys holding file paths: relative values are made absolute against the launch directory, once, before
# any DDP process or multirun job starts (DDP children re-run run.py from the same directory and agree)
PATH_KEYS = ("paths.root_dir", "data.root", "data.manifest", "data.demo_dir", "data.shards",
             "data.shards_cache_dir", "model.pretrained", "ckpt_path", "input", "input_audio")


def is_rank_zero() -> bool:
    """This process is rank zero (or the only one): the one that prints and writes run-level files."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


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
        if is_rank_zero():
            log.info("W&B: no API key configured, logging offline (sync later with `wandb sync <run dir>`)")
    os.environ.setdefault("WANDB_SILENT", "true")


def print_config(cfg: DictConfig) -> None:
    """The composed config as a rich tree (rank zero), also saved to <output_dir>/config_tree.log."""
    if not is_rank_zero():
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


def check_callbacks(cfg: DictConfig) -> None:
    """A ``model_checkpoint`` given ``every_n_train_steps`` while it monitors a validation metric would save
    nothing (last.ckpt included) before the first validation, and would stop choosing the best checkpoint at epoch
    ends (Lightning 2.6): refused, naming the step-checkpoint preset that does what was meant.

    Raises:
        RunConfigError: naming the setting and the command to use."""
    checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
    if not checkpoint.get("monitor"):
        return
    for key in ("every_n_train_steps", "train_time_interval"):
        value = checkpoint.get(key)
        if value is not None:
            raise RunConfigError(
                f"callbacks.model_checkpoint.{key}={value} with monitor {checkpoint.get('monitor')}: nothing would "
                f"be saved before the first validation and the best checkpoint would no longer be chosen at epoch "
                f"ends; for last.ckpt every N steps use 'callbacks=[default,step_checkpoint]' "
                f"callbacks.step_checkpoint.every_n_train_steps=N")


def check_ckpt_path(cfg: DictConfig) -> None:
    """Fail before any work when ``ckpt_path`` (resume, test or predict) is missing or not a checkpoint, naming
    the file, or when a resumed run has nothing left to train (:func:`check_resume`). Checkpoints
    are read with ``weights_only=True`` (they may come from anywhere)."""
    path = cfg.get("ckpt_path")
    if path:
        from tvlt.checkpoints import read_checkpoint

        checkpoint = read_checkpoint(path, mmap=True)
        if cfg.get("mode") == "train":
            check_resume(checkpoint, path, cfg.trainer)


def log_failure(err: BaseException) -> None:
    """Why the run failed, with the traceback, into the run's log file (``<output_dir>/<task>.log``, Hydra's file
    handler). The console already gets Hydra's own report of the exception, so it is not printed twice."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "Run failed: %s: %s",
                            (type(err).__name__, err), (type(err), err, err.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
