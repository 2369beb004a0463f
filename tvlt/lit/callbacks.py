"""Callbacks: MAE reconstructions drawn next to their inputs, one-line data/model summaries, and Lightning's rich
model summary and progress bar without the figures that mean nothing here."""

from __future__ import annotations

import logging
import re
import signal
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar
from lightning.pytorch.callbacks import ThroughputMonitor as _ThroughputMonitor
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from tvlt.flops import batch_flops
from tvlt.masking import unpatchify_audio, unpatchify_pixels

log = logging.getLogger(__name__)


def _to_unit(x: Tensor) -> Tensor:
    """Processor range [-1, 1] -> [0, 1] for display."""
    return ((x.float() + 1) / 2).clamp(0, 1)


def reconstruction_panels(batch: dict, outputs: dict, config, max_frames: int = 4) -> dict[str, Tensor]:
    """Images of the first sample: rows of (input | masked input | reconstruction with visible patches pasted
    back), for frames (3, rows*H, 3*W) and for the spectrogram (1, 3*128, T) (frequency upwards, time rightwards).
    Masked patches are drawn grey."""
    pv = batch["pixel_values"][:1].float()
    f = min(pv.shape[1], max_frames)
    ppf = config.num_patches_per_frame
    ps = config.image_patch_size
    size = pv.shape[-1]
    pred = unpatchify_pixels(outputs["pixel_logits"][:1, : pv.shape[1] * ppf].float(), pv.shape[1],
                             pv.shape[2], size, ps)
    pmask = outputs["pixel_label_masks"][:1].float()
    pmask_img = unpatchify_pixels(pmask[..., None].expand(-1, -1, ps[0] * ps[1] * pv.shape[2]), pv.shape[1],
                                  pv.shape[2], size, ps)
    grey = torch.zeros_like(pv)
    masked = torch.where(pmask_img > 0, grey, pv)
    recon = torch.where(pmask_img > 0, pred, pv)
    rows = [torch.cat([pv[0, i], masked[0, i], recon[0, i]], dim=-1) for i in range(f)]
    frames = _to_unit(torch.cat(rows, dim=-2))

    av = batch["audio_values"][:1].float()  # (1, 1, T, F)
    aps = config.audio_patch_size
    apred = unpatchify_audio(outputs["audio_logits"][:1].float(), av.shape[1], av.shape[-1], aps)
    amask = outputs["audio_label_masks"][:1].float()
    amask_img = unpatchify_audio(amask[..., None].expand(-1, -1, aps[0] * aps[1] * av.shape[1]), av.shape[1],
                                 av.shape[-1], aps)
    t = min(av.shape[2], apred.shape[2])
    av, apred, amask_img = av[..., :t, :], apred[..., :t, :], amask_img[..., :t, :]
    amasked = torch.where(amask_img > 0, torch.zeros_like(av), av)
    arecon = torch.where(amask_img > 0, apred, av)
    spec = torch.cat([x[0].transpose(-1, -2).flip(-2) for x in (av, amasked, arecon)], dim=-2)  # (1, 3F, T)
    return {"frames": frames, "spectrogram": _to_unit(spec)}


class LogReconstructions(pl.Callback):
    """Every ``every_n_steps`` optimizer steps (rank zero only): save the MAE reconstructions of the batch's first
    sample as PNG under ``<output>/reconstructions/`` and send them to W&B / TensorBoard when those loggers are on.
    Needs a module whose ``training_step`` returns ``pixel_logits``, ``audio_logits`` and the label masks
    (:class:`tvlt.lit.PretrainModule`)."""

    def __init__(self, every_n_steps: int = 500, max_frames: int = 4) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.max_frames = max_frames
        self._last_logged = -1

    @rank_zero_only
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if not isinstance(outputs, dict) or outputs.get("pixel_logits") is None:
            return
        if step % self.every_n_steps or step == self._last_logged:
            return
        self._last_logged = step
        panels = reconstruction_panels(batch, outputs, pl_module.model.config, self.max_frames)
        self.save_png(trainer, panels, step)
        for logger in trainer.loggers:
            name = type(logger).__name__
            if name == "WandbLogger":
                logger.log_image(key="train/reconstructions",
                                 images=[panels["frames"], panels["spectrogram"]],
                                 caption=["frames: input | masked | reconstruction",
                                          "spectrogram: input | masked | reconstruction"], step=step)
            elif name == "TensorBoardLogger":
                logger.experiment.add_image("train/reconstructions/frames", panels["frames"], step)
                logger.experiment.add_image("train/reconstructions/spectrogram", panels["spectrogram"], step)

    @staticmethod
    def save_png(trainer: pl.Trainer, panels: dict[str, Tensor], step: int) -> None:
        from torchvision.utils import save_image

        out = Path(trainer.default_root_dir) / "reconstructions"
        out.mkdir(parents=True, exist_ok=True)
        for name, img in panels.items():
            save_image(img, out / f"step{step:07d}_{name}.png")


class Summaries(pl.Callback):
    """One line about the data (split sizes, demo or not, skipped clips) and one about the model (parameters,
    loaded checkpoint), printed at the start of fit and test (rank zero)."""

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(trainer, pl_module, "fit")

    @rank_zero_only
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(trainer, pl_module, "test")

    @rank_zero_only
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the validation loader is set up by now (sanity check or the fit loop's start)
        if trainer.fast_dev_run or sum(trainer.num_val_batches or []) > 0:
            return
        cb = trainer.checkpoint_callback
        monitor = getattr(cb, "monitor", None)
        what = f"`monitor: {monitor}` is never computed, so no best checkpoint can be chosen" if monitor else \
            "nothing is validated"
        log.warning("No validation data (no validation split, or limit_val_batches=0): %s; the run keeps and "
                    "exports the last weights (last.ckpt). Give the data a validation split for model selection.",
                    what)
        if monitor:  # ModelCheckpoint would repeat this notice at every save
            warnings.filterwarnings("ignore", message=rf"`ModelCheckpoint\(monitor={re.escape(repr(monitor))}\)` "
                                    "could not find the monitored key")

    @staticmethod
    def data_summary(datamodule: Any) -> str:
        if datamodule is None:
            return "Data: (no datamodule)"
        name = type(datamodule).__name__
        datasets = getattr(datamodule, "datasets", None) or {}
        sizes = ", ".join(f"{split} {len(ds)}" for split, ds in datasets.items()) or "sizes unknown"
        shards = getattr(datamodule, "shards", None)
        source = "embedded demo dataset" if getattr(datamodule, "uses_demo", False) else (
            f"shards {shards}" if shards else getattr(datamodule, "root", None)
            or getattr(datamodule, "manifest_path", None) or "")
        skipped = sum(sum(c.values()) for c in (getattr(datamodule, "skipped", None) or {}).values())
        bs = getattr(datamodule, "batch_size", "?")
        return f"Data: {name} ({source}): {sizes} clips; batch size {bs} per device; {skipped} skipped so far"

    def _print(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        lines = [self.data_summary(trainer.datamodule)]
        if hasattr(pl_module, "summary"):
            source = None
            if trainer.ckpt_path and stage == "test":
                source = f"weights from {trainer.ckpt_path}"
            elif trainer.ckpt_path:  # weights restored; optimizer, schedule and loops follow at the train start
                done = getattr(pl_module, "resumed_from", None) or {}
                source = (f"weights resumed from {trainer.ckpt_path} (after {done.get('epochs', '?')} epoch(s), "
                          f"{done.get('global_step', '?')} optimizer step(s); with its optimizer, schedule and "
                          "loop state)")
            lines.append(pl_module.summary(source))
        if stage == "fit":
            accum = trainer.accumulate_grad_batches
            bs = getattr(trainer.datamodule, "batch_size", None)
            if bs:
                lines.append(f"Effective batch: {bs} x {trainer.world_size} device(s) x {accum} accumulated = "
                             f"{bs * trainer.world_size * accum}; precision {trainer.precision}")
        for line in lines:
            log.info(line)  # Hydra's logging shows INFO on the console and in <run>/<task>.log


class ThroughputMonitor(_ThroughputMonitor):
    """Lightning's ``ThroughputMonitor`` fed with this project's FLOP model: logs samples/s, batches/s, FLOP/s and,
    where the peak is known, MFU, per device and in total (``train/device/mfu``, ``train/device/samples_per_sec``, ...,
    every ``log_every_n_steps``).

    Each batch's FLOPs come from :func:`tvlt.flops.batch_flops` on its padded shapes, with the task the
    LightningModule names in ``flop_task`` ("finetune" or "pretrain"; a module without it logs no FLOPs) and a
    training step (3x forward) in training, a forward in evaluation. A module with ``flops_at_eval = False``
    (retrieval, which scores pairs at epoch end) logs no evaluation FLOPs.

    Args:
        peak_flops: the device's peak FLOP/s for MFU where Lightning's table has none (CPUs; GPUs it does not know);
            ignored where the table knows the device and precision.
        window_size: batches in the moving window of the rates (Lightning's default 100).
    """

    def __init__(self, peak_flops: float | None = None, window_size: int = 100) -> None:
        super().__init__(batch_size_fn=_batch_size, window_size=window_size)
        if peak_flops is not None and peak_flops <= 0:
            raise ValueError(f"peak_flops must be a positive FLOP/s figure or null, got {peak_flops}")
        self.peak_flops = peak_flops

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.available_flops is None and self.peak_flops is not None:
            self.available_flops = int(self.peak_flops)
            for throughput in self._throughputs.values():
                throughput.available_flops = self.available_flops

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        pl_module.flops_per_batch = _module_flops(pl_module, batch, training=True)

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        pl_module.flops_per_batch = _module_flops(pl_module, batch, training=False)

    def on_test_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        pl_module.flops_per_batch = _module_flops(pl_module, batch, training=False)

    def on_predict_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                               batch_idx: int, dataloader_idx: int = 0) -> None:
        pl_module.flops_per_batch = _module_flops(pl_module, batch, training=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, *args: Any, **kwargs: Any) -> None:
        if _batch_size(batch):  # a batch whose every clip failed to decode (on_error=skip) did no work
            super().on_train_batch_end(trainer, pl_module, outputs, batch, *args, **kwargs)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, *args: Any, **kwargs: Any) -> None:
        if _batch_size(batch):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, *args, **kwargs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, *args: Any, **kwargs: Any) -> None:
        if _batch_size(batch):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, *args, **kwargs)


def _batch_size(batch: Any) -> int:
    """Samples in a collated batch (0 for None or a batch without pixel_values)."""
    if not isinstance(batch, dict) or "pixel_values" not in batch:
        return 0
    return int(batch["pixel_values"].shape[0])


def _module_flops(pl_module: pl.LightningModule, batch: Any, training: bool) -> int | None:
    task = getattr(pl_module, "flop_task", None)
    if task is None or not _batch_size(batch) or (not training and not getattr(pl_module, "flops_at_eval", True)):
        return None
    return batch_flops(pl_module.model.config, batch, task, training)


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary (same arguments) without the FLOPs column and total when no FLOPs were
    counted: Lightning counts them only for a module with an ``example_input_array`` (the TVLT modules have none,
    their inputs depend on the data), and would print ``Total FLOPs: 0``."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int,
                  **summarize_kwargs: Any) -> None:
        if total_flops:
            RichModelSummary.summarize(summary_data, total_parameters, trainable_parameters, model_size,
                                       total_training_modes, total_flops, **summarize_kwargs)
            return
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_formatted_model_size,
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        for name, _ in columns:
            table.add_column(name, style="dim" if name == " " else None,
                             justify="right" if name in ("Params", "Params per Device") else "left")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        console.print(f"[bold]Trainable params[/]: {get_human_readable_count(int(trainable_parameters))}   "
                      f"[bold]Non-trainable params[/]: {get_human_readable_count(int(frozen))}   "
                      f"[bold]Total params[/]: {get_human_readable_count(int(total_parameters))}   "
                      f"[bold]Size (MB)[/]: {get_formatted_model_size(model_size)}   "
                      f"[bold]Modules in train / eval mode[/]: {total_training_modes['train']} / "
                      f"{total_training_modes['eval']}")


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar (same arguments) without ``v_num``: the last four characters of the
    logger's version (a W&B run id gives e.g. ``amma``, the CSV logger ``0.000``); the run folder names the run."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class SlurmRequeue(pl.Callback):
    """SLURM preemption and requeue at a step boundary, in place of Lightning's handler for the requeue signal.

    Lightning's handler (``SLURMEnvironment(auto_requeue=True)``, ``SIGUSR1`` by default) saves the HPC checkpoint
    inside the signal handler, wherever each rank happens to be: between an optimizer step and the progress counters
    that count it (the resumed run then applies that step twice), or in a collective of its own while the other
    ranks are in a gradient all-reduce. Found by the cluster test: a preempted job ended with other weights than the
    same job left alone.

    Here the signal only sets a flag. At the end of each optimizer step every rank learns whether any rank got it
    (one all-reduce of one number, as Lightning does for SIGTERM); then all ranks save
    ``<default_root_dir>/hpc_ckpt_<n>.ckpt`` together (the file Lightning resumes from when the job starts again),
    global rank zero runs ``scontrol requeue <job>``, and every rank ends with Lightning's ``SIGTERMException``, as it
    would on the SIGTERM that follows the requeue. Saving waits for the end of the epoch when the step is the epoch's
    last or a validation follows it: Lightning skips a validation that was due after the saved step when it resumes.
    Resuming then repeats nothing and skips nothing; a resume mid-epoch draws the epoch's remaining batches from a
    fresh loader unless the loader keeps its position (LitData shards do), so the run is the same run only when the
    save falls on an epoch end or the data is sharded.

    Active in fit under SLURM with ``auto_requeue`` (the default); outside fit (test, predict) the signal is logged
    and ignored: training is over and its checkpoints are on disk. When ``scontrol requeue`` fails the run goes on.
    """

    def __init__(self) -> None:
        self._requested = False
        self._signal: int | None = None
        self._previous: Any = None
        self._stage: str | None = None

    # ------------------------------------------------------------------------------------------------ the signal
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from lightning.fabric.plugins.environments import SLURMEnvironment

        env = trainer._accelerator_connector.cluster_environment  # what Lightning's own signal connector reads
        if not (isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal is not None):
            return
        # installed before the trainer registers its handlers (after the setup hooks): finding a handler for the
        # requeue signal, Lightning does not install its own
        self._signal, self._stage, self._requested = int(env.requeue_signal), stage, False
        self._previous = signal.signal(self._signal, self._on_signal)
        if trainer.is_global_zero:
            log.info("SLURM requeue on %s: checkpoint and requeue at the next optimizer-step boundary",
                     signal.Signals(self._signal).name)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stage != "fit":
            log.warning("Requeue signal %d during %s: ignored (training is over; its checkpoints are on disk)",
                        signum, self._stage)
            return
        log.info("Requeue signal %d received (this process): checkpoint and requeue at the next optimizer-step "
                 "boundary", signum)
        self._requested = True

    def _restore(self) -> None:
        if self._signal is not None:
            signal.signal(self._signal, self._previous)
            self._signal = None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()

    # ------------------------------------------------------------------------------------------- the safe points
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._signal is None:
            return
        done = batch_idx + 1
        if done % trainer.accumulate_grad_batches and done < trainer.num_training_batches:
            return  # mid accumulation: the gradients so far would be lost
        if done >= trainer.num_training_batches or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch's last step: wait for the epoch end (after its validation)
        if trainer.enable_validation and _validates_after(trainer, batch_idx):
            return  # the same, for a validation within the epoch: the next step's end comes after it
        self._maybe_requeue(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._signal is not None:
            self._maybe_requeue(trainer)

    def _maybe_requeue(self, trainer: pl.Trainer) -> None:
        # every rank reaches this point at the same step, so the all-reduce pairs up
        if not trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            return
        self._requested = False
        path = trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)
        trainer.save_checkpoint(path)  # every rank: the strategy gathers what it shards and rank zero writes
        ok = self._requeue() if trainer.is_global_zero else False
        if not trainer.strategy.broadcast(ok, src=0):
            log.warning("Saved %s, but the requeue failed: training goes on", path)
            return
        if trainer.is_global_zero:
            log.info("Saved %s and requeued the job: this attempt ends here (global step %d)", path,
                     trainer.global_step)
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        raise SIGTERMException()

    @staticmethod
    def _requeue() -> bool:
        import os
        import subprocess

        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        if result.returncode:
            log.warning("scontrol requeue %s failed (exit %d): %s", job, result.returncode, result.stderr.strip())
        return result.returncode == 0


def _validates_after(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether Lightning validates after this training batch (``val_check_interval`` within an epoch)."""
    every = trainer.val_check_batch
    if not isinstance(every, int) or every <= 0:
        return False
    if trainer.check_val_every_n_epoch is None:  # val_check_interval counted over the whole run
        return (trainer.fit_loop.epoch_loop.total_batch_idx + 1) % every == 0
    return (batch_idx + 1) % every == 0
