"""What every TVLT LightningModule shares: building the model from a config, loading a pretrained checkpoint,
the optimizer and schedule, the non-finite-loss guard, and exporting weights with ``save_pretrained``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from tvlt.checkpoints import load_checkpoint, read_checkpoint
from tvlt.configuration import TvltConfig
from tvlt.lit.optim import param_groups, warmup_cosine

log = logging.getLogger(__name__)

MODEL_INPUTS = ("pixel_values", "audio_values", "pixel_mask", "audio_mask")


class NonFiniteLossError(FloatingPointError):
    """A training or evaluation loss was NaN or infinite; the message names the batch's sample ids."""


class TvltLitModule(pl.LightningModule):
    """Base class. Subclasses set the model class and the task's config fields and implement the steps.

    Args:
        config: TvltConfig fields on top of the spec's defaults (``{}`` = TVLT-base). Task fields (num_labels,
            loss_type, task_mae, ...) are set by the subclass.
        optimizer: a partial optimizer (``_partial_: true`` in Hydra) called with the parameter groups. Its one
            source is ``model.optimizer`` in ``conf/model/tvlt_base.yaml`` (the original release's AdamW); None
            (e.g. a module loaded for inference) makes :meth:`configure_optimizers` raise ``ValueError``.
        scheduler: ``{warmup_steps, total_steps, min_lr_ratio}`` of :func:`tvlt.lit.optim.warmup_cosine`, stepped
            per optimizer step; ``total_steps: null`` = the trainer's estimated optimizer steps; ``None`` = constant.
        pretrained: a checkpoint to start from, any format :func:`tvlt.checkpoints.load_checkpoint` reads.
        exclude_no_decay: no weight decay for what the model's ``no_weight_decay()`` names (biases, norms,
            embedding tables and tokens).
        compile: compile the TVLT model with ``torch.compile`` (``nn.Module.compile``: in place, so state-dict keys,
            checkpoints and ``save_pretrained`` exports are unchanged). The first steps pay the compilation time.
    """

    model_class: type[nn.Module]
    _schedule_total: int | None = None  # the schedule's horizon in optimizer steps, saved in checkpoints

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        pretrained: str | None = None,
        exclude_no_decay: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        # the optimizer factory is code, not data: kept out of the checkpoint so it loads with weights_only=True
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.optimizer_factory = optimizer
        fields = {**dict(config or {}), **self.task_config_fields()}
        # the library config stores unknown keys (the port's policy); a run's YAML must not: a typo is an error
        TvltConfig.check_known_keys(fields, "model.config")
        self.model = self.model_class(TvltConfig(**fields))
        self.loaded_checkpoint: str | None = None
        # set when a run resumes from a Lightning checkpoint (on_load_checkpoint): what the checkpoint had done
        self.resumed_from: dict[str, Any] | None = None
        if pretrained:
            self.load_pretrained(pretrained)
        if compile:
            self.model.compile()

    # ---------------------------------------------------------------- subclass hooks
    def task_config_fields(self) -> dict[str, Any]:
        """TvltConfig fields the task fixes (e.g. num_labels); override."""
        return {}

    # ---------------------------------------------------------------- model
    def load_pretrained(self, path: str) -> None:
        report = load_checkpoint(self.model, path)
        self.loaded_checkpoint = str(path)
        log.info("Loaded pretrained weights from %s: %s", path, report)

    def model_inputs(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        return {k: batch[k] for k in MODEL_INPUTS if batch.get(k) is not None}

    def summary(self, source: str | None = None) -> str:
        """One line: model class, parameters, and where the weights come from (``source``, e.g. the checkpoint a
        run resumes from; by default the pretrained checkpoint, or random initialisation)."""
        n = sum(p.numel() for p in self.model.parameters())
        c = self.model.config
        if source is None:
            source = f"loaded from {self.loaded_checkpoint}" if self.loaded_checkpoint else "randomly initialised"
        return (f"Model: {type(self.model).__name__} (hidden {c.hidden_size} x {c.num_hidden_layers} layers), "
                f"{n / 1e6:.2f} M parameters, {source}")

    def export_pretrained(self, directory: str | Path) -> Path:
        """``save_pretrained`` of the wrapped model: ``config.json`` + ``model.safetensors``."""
        directory = Path(directory)
        self.model.save_pretrained(directory)
        return directory

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # which module class to rebuild in predict mode (looked up in tvlt.lit only, never imported by name)
        checkpoint["tvlt_module"] = type(self).__name__
        # how clips were turned into tensors (TvltProcessor.to_dict, the export's preprocessor_config.json), so
        # predict mode prepares a clip the same way
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if hasattr(datamodule, "image_processor") and hasattr(datamodule, "feature_extractor"):
            from tvlt.processing import TvltProcessor

            processor = TvltProcessor(datamodule.image_processor, datamodule.feature_extractor)
            checkpoint["tvlt_processor"] = processor.to_dict()
        # what the learning-rate schedule was sized with, so a resumed run can say what changed
        if self._trainer is not None:
            checkpoint["tvlt_schedule"] = {"total_steps": self._schedule_total,
                                           "world_size": int(self.trainer.world_size),
                                           "accumulate_grad_batches": int(self.trainer.accumulate_grad_batches)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # called when fit/test restores ckpt_path, before configure_optimizers: the schedule needs it (resume)
        from tvlt.lit.runs import finished_epochs, unfinished_epoch_batches

        self.resumed_from = {"global_step": int(checkpoint.get("global_step", 0)),
                             "epochs": finished_epochs(checkpoint),
                             "epoch_batches": unfinished_epoch_batches(checkpoint),
                             "schedule": dict(checkpoint.get("tvlt_schedule") or {})}

    # ---------------------------------------------------------------- guards and logging
    def check_finite(self, loss: Tensor, batch: Mapping[str, Any], stage: str) -> None:
        """Stop the run on a NaN/inf loss, naming the samples. Under DDP every rank takes the same decision (one
        all-reduce of a flag), so no rank is left waiting in a collective."""
        bad = not bool(torch.isfinite(loss.detach()).all())
        any_bad = bad
        trainer = self._trainer  # None when the module is used without a Trainer
        if trainer is not None and trainer.world_size > 1:
            any_bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if any_bad:
            where = f"{stage} step {self.global_step}, epoch {self.current_epoch}"
            if bad:
                raise NonFiniteLossError(
                    f"non-finite {stage} loss ({loss.detach().float().cpu().tolist()}) at {where}; "
                    f"samples: {list(batch.get('ids', []))}")
            raise NonFiniteLossError(f"non-finite {stage} loss on another process at {where}")

    def empty_eval_batch(self, batch: Mapping[str, Any], stage: str) -> bool:
        """True for an evaluation batch without clips (every clip failed to load, ``data.on_error=skip``), which the
        loaders deliver only under DDP: the process still joins the step's one collective (the finite-loss check,
        with a zero loss), so that the processes' collectives stay paired, and the step ends there."""
        if batch["ids"]:
            return False
        self.check_finite(torch.zeros((), device=self.device), batch, stage)
        return True

    # ---------------------------------------------------------------- training step
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Any:
        """The task's :meth:`train_step`, or nothing to learn from: a batch whose every clip failed to load
        (``data.on_error=skip``) is ``{"ids": []}``; the datamodules' loaders deliver it only under DDP (see
        :mod:`datamodules.skips`), and a step without DDP skips it too.

        Under DDP the processes decide together (one all-reduce of a flag per step): if none has data, all skip the
        step; otherwise a process without data takes a zero-weight step (:meth:`zero_weight_step`), so that every
        process makes the same collective calls and optimizer steps. A process that skipped alone left the others
        waiting in a collective forever (a hang)."""
        empty = not batch["ids"]
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            if not trainer.strategy.reduce_boolean_decision(not empty, all=False):
                return None
            if empty:
                return self.zero_weight_step()
        elif empty:
            return None
        return self.train_step(batch, batch_idx)

    def train_step(self, batch: Mapping[str, Any], batch_idx: int) -> Any:
        """The task's training step on a batch with data (the loss, or a dict with ``loss``); override."""
        raise NotImplementedError

    def zero_weight_step(self) -> Tensor:
        """A loss of exactly 0 with a zero gradient for every trainable parameter (so DDP's gradient all-reduce has
        this process's share), after the same non-finite check (a collective) as a real step."""
        # (p * 0).sum(), not p.sum() * 0: the gradient then has the parameter's layout, as DDP's buckets expect
        loss = torch.stack([(p * 0.0).sum() for p in self.parameters() if p.requires_grad]).sum()
        self.check_finite(loss, {"ids": []}, "train")
        return loss

    def log_metrics(self, metrics: Mapping[str, Tensor | float], stage: str) -> None:
        values = {f"{stage}/{k}": float(v) for k, v in metrics.items()}
        self.log_dict(values, sync_dist=True)

    # ---------------------------------------------------------------- optimization
    def configure_optimizers(self) -> dict[str, Any]:
        if self.optimizer_factory is None:
            raise ValueError(f"{type(self).__name__} has no optimizer to train with: pass optimizer=<a partial "
                             "optimizer> (run.py passes model.optimizer of conf/model/tvlt_base.yaml)")
        groups = param_groups(self.model, bool(self.hparams.get("exclude_no_decay")))
        optimizer = self.optimizer_factory(groups)
        sched = self.hparams.get("scheduler")
        if not sched:
            return {"optimizer": optimizer}
        total = sched.get("total_steps") or self.run_optimizer_steps()
        if not math.isfinite(total) or total <= 0:
            raise ValueError("scheduler.total_steps is unset and the trainer has no finite length (max_steps or "
                             "max_epochs); set model.scheduler.total_steps")
        warmup = int(sched.get("warmup_steps", 0))
        if warmup >= total:
            new = max(1, total // 10)
            log.warning("scheduler: warmup_steps %d >= total optimizer steps %d; using %d warm-up steps",
                        warmup, total, new)
            warmup = new
        self._schedule_total = int(total)
        scheduler = warmup_cosine(optimizer, warmup, int(total), float(sched.get("min_lr_ratio", 0.0)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def on_train_start(self) -> None:
        # A resumed run restores the learning rate its optimizer had; with a re-sized schedule (run_optimizer_steps)
        # the first resumed step takes the new schedule's value at the saved step instead.
        if self.resumed_from is None:
            return
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, LambdaLR):
                for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs,
                                               scheduler.lr_lambdas):
                    group["lr"] = base * factor(scheduler.last_epoch)

    def run_optimizer_steps(self) -> float:
        """Optimizer steps of the whole run, the horizon of a schedule with ``total_steps: null``.

        Lightning's ``estimated_stepping_batches`` assumes every epoch runs under the current devices and gradient
        accumulation. A resumed run trained its first epochs under the checkpoint's settings: its horizon is the
        optimizer steps already done plus the remaining epochs' steps under the current settings (after a checkpoint
        from the middle of an epoch, that epoch's remaining batches first), so the schedule
        continues at the saved step (with the old estimate, resuming on twice the devices or with twice the
        accumulation put the saved step past the end: learning rate 0 for the whole resumed run). A warning names
        a changed setting and the new horizon."""
        trainer = self.trainer
        estimate = trainer.estimated_stepping_batches
        resumed = self.resumed_from
        if (not resumed or resumed.get("epochs") is None or not math.isfinite(estimate)
                or trainer.max_epochs in (None, -1)):
            return estimate
        per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        done = resumed["global_step"]
        # a checkpoint from the middle of an epoch: the resumed run first finishes that epoch's remaining batches
        # (Lightning steps the optimizer at every accumulate_grad_batches-th batch of an epoch and at its last batch:
        # the steps left are the epoch's steps less those its first in_epoch batches took)
        in_epoch = resumed.get("epoch_batches", 0)
        rest = 0 if in_epoch >= trainer.num_training_batches else per_epoch - in_epoch // trainer.accumulate_grad_batches
        started = resumed["epochs"] + (1 if in_epoch else 0)
        total = done + (rest if in_epoch else 0) + per_epoch * max(0, int(trainer.max_epochs) - started)
        if trainer.max_steps not in (None, -1):
            total = min(total, int(trainer.max_steps))
        saved = resumed["schedule"]
        now = {"world_size": trainer.world_size, "accumulate_grad_batches": trainer.accumulate_grad_batches}
        names = {"world_size": "processes (trainer.devices x trainer.num_nodes)",
                 "accumulate_grad_batches": "trainer.accumulate_grad_batches"}
        changed = [f"{names[k]} {saved[k]} -> {now[k]}" for k in now if k in saved and saved[k] != now[k]]
        if (changed or saved.get("total_steps") not in (None, total)) and trainer.is_global_zero:
            log.warning("Resuming at optimizer step %d%s: the learning-rate schedule continues from that step and "
                        "now ends at optimizer step %d (it was sized for %s).", done,
                        f" with {', '.join(changed)}" if changed else "", total,
                        saved.get("total_steps", "an unknown number of steps"))
        return total


class HeadTaskModule(TvltLitModule):
    """The steps shared by the tasks whose head reads the pooled token (sentiment, emotion, classify): a forward to
    logits, the model's own loss (:meth:`TvltForAudioVisualClassification.compute_loss` of the ``loss_type`` the
    task sets in :meth:`task_config_fields`), and ``val|test`` metrics objects (``self.val_metrics``,
    ``self.test_metrics``, created by the subclass) updated with ``predictions(logits)`` and computed, logged and
    reset at the end of each evaluation epoch. Batch: the model inputs, ``labels``, ``ids``."""

    flop_task = "finetune"  # tvlt.flops.batch_flops: what ThroughputMonitor logs
    val_metrics: Any
    test_metrics: Any

    def loss_options(self) -> dict[str, Any]:
        """Keyword arguments of ``compute_loss`` beyond logits and labels (class weights, smoothing); override."""
        return {}

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The model's loss of ``config.loss_type``, computed in float32 (so a bf16 model's loss is not rounded)."""
        return self.model.compute_loss(logits.float(), labels, **self.loss_options())

    def predictions(self, logits: Tensor) -> Tensor:
        """What the metrics score (default: the logits)."""
        return logits

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        return self.model(**self.model_inputs(batch)).logits

    def _shared_step(self, batch: Mapping[str, Any], stage: str) -> tuple[Tensor, Tensor]:
        logits = self(batch)
        loss = self.loss(logits, batch["labels"])
        self.check_finite(loss, batch, stage)
        return loss, logits

    def train_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss, _ = self._shared_step(batch, "train")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["ids"]))
        return loss

    def _eval_step(self, batch: Mapping[str, Any], stage: str, metrics: Any) -> None:
        if self.empty_eval_batch(batch, stage):
            return
        loss, logits = self._shared_step(batch, stage)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch["ids"]))
        metrics.update(self.predictions(logits).detach().float(), batch["labels"].detach(), batch["ids"])

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_metrics)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_metrics)

    def on_validation_epoch_end(self) -> None:
        self.log_metrics(self.val_metrics.compute(), "val")
        self.val_metrics.reset()

    def on_test_epoch_end(self) -> None:
        self.log_metrics(self.test_metrics.compute(), "test")
        self.test_metrics.reset()


def load_lit_checkpoint(path: str | Path, map_location: str = "cpu") -> TvltLitModule:
    """Rebuild a TVLT LightningModule from a checkpoint written by this project's training (``last.ckpt`` or the
    best one) for inference. Read with ``weights_only=True``; the module class must be one of ``tvlt.lit``'s.

    Raises:
        CheckpointError: missing, corrupt, or refused by ``weights_only=True`` (the message names the file).
        ValueError: the file is not such a checkpoint (the message says what is missing).
    """
    import tvlt.lit as lit

    ckpt = read_checkpoint(path, map_location=map_location)
    name = ckpt.get("tvlt_module") if isinstance(ckpt, dict) else None
    if name is None or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a TVLT Lightning checkpoint (no 'tvlt_module' / 'state_dict' entry)")
    cls = getattr(lit, name, None)
    if not (isinstance(cls, type) and issubclass(cls, TvltLitModule)):
        raise ValueError(f"{path}: unknown module class {name!r}")
    hparams = dict(ckpt.get("hyper_parameters") or {})
    hparams["pretrained"] = None  # the weights come from the checkpoint
    module = cls(**hparams)
    module.load_state_dict(ckpt["state_dict"])
    module.loaded_checkpoint = str(path)
    module.processor_settings = dict(ckpt.get("tvlt_processor") or {})
    module.data_settings = dict(ckpt.get("tvlt_data") or {})  # checkpoints written before tvlt_processor
    return module.eval()
