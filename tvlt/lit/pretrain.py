"""Pretraining: masked autoencoding of frames and spectrograms (MAE) plus video-audio matching (VAM).

Loss (paper Sec. 3.3, both references): ``w_vam * BCE(VAM) + w_pixel * MSE(pixel MAE) + w_audio * MSE(audio MAE)``
with all weights 1 by default. Mask ratios (0.75 pixel, 0.15 audio) and the audio mask type (frame-level) are
TvltConfig fields (``model.config.pixel_mask_ratio`` ...). The VAM negatives (``pixel_values_mixed`` with 0/1
``labels``) come from the datamodule's collator (:func:`tvlt.matching.vam_negatives`).

Validation and test run the MAE terms too (``val_mae=True``, the default here; the model alone runs MAE only in
training, as the Hugging Face port). Their masks are drawn from a generator seeded with ``val_mask_seed + batch
index``, inside a forked RNG, so validation losses are reproducible run to run and training randomness is untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from tvlt.lit.base import TvltLitModule
from tvlt.matching import vam_accuracy
from tvlt.modeling import PRETRAINING_TERMS, TvltForPreTraining, pretraining_loss


class PretrainModule(TvltLitModule):
    """Batch: model inputs, ``pixel_values_mixed``/``pixel_mask_mixed`` and ``labels`` (B,) 0/1 for VAM, ``ids``.

    Logs ``{stage}/loss`` and its parts ``vam_loss``, ``mae_pixel_loss``, ``mae_audio_loss`` and ``vam_acc``.
    ``training_step`` also returns the MAE predictions and masks, which
    :class:`tvlt.lit.callbacks.LogReconstructions` draws.
    """

    model_class = TvltForPreTraining
    flop_task = "pretrain"  # tvlt.flops.batch_flops: what ThroughputMonitor logs

    def __init__(self, *args: Any, loss_weights: Mapping[str, float] | None = None, val_mae: bool = True,
                 val_mask_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.val_mae = val_mae
        self.val_mask_seed = val_mask_seed
        unknown = set(loss_weights or {}) - set(PRETRAINING_TERMS)
        if unknown:
            raise ValueError(f"loss_weights: unknown keys {sorted(unknown)}; known: {sorted(PRETRAINING_TERMS)}")
        self.loss_weights = {**dict.fromkeys(PRETRAINING_TERMS, 1.0), **dict(loss_weights or {})}

    def _step(self, batch: Mapping[str, Any], stage: str, batch_idx: int = 0) -> dict[str, Any]:
        c = self.model.config
        inputs = self.model_inputs(batch)
        if c.task_matching:
            inputs.update(labels=batch["labels"], pixel_values_mixed=batch["pixel_values_mixed"],
                          pixel_mask_mixed=batch.get("pixel_mask_mixed"))
        if stage == "train" or not (self.val_mae and c.task_mae):
            out = self.model(**inputs)
        else:
            out = self._seeded_mae_forward(inputs, self.val_mask_seed + batch_idx)
        parts = {"vam": out.matching_loss, "mae_pixel": out.pixel_loss, "mae_audio": out.audio_loss}
        loss = pretraining_loss(parts, self.loss_weights)
        self.check_finite(loss, batch, stage)
        b = len(batch["ids"])
        on_step = stage == "train"
        sync = stage != "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=b, sync_dist=sync, on_step=on_step,
                 on_epoch=True)
        for k, v in parts.items():
            if v is not None:
                self.log(f"{stage}/{k}_loss", v, batch_size=b, sync_dist=sync, on_step=on_step, on_epoch=True)
        if out.matching_logits is not None:
            acc = vam_accuracy(out.matching_logits, batch["labels"])
            self.log(f"{stage}/vam_acc", acc, batch_size=b, sync_dist=sync, on_step=on_step, on_epoch=True)
        return {"loss": loss, "pixel_logits": out.pixel_logits, "audio_logits": out.audio_logits,
                "pixel_label_masks": out.pixel_label_masks, "audio_label_masks": out.audio_label_masks}

    def _seeded_mae_forward(self, inputs: dict[str, Any], seed: int) -> Any:
        """Forward with MAE in eval mode, masks drawn from the RNG seeded with ``seed`` (forked: the global RNG
        state is restored afterwards)."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            torch.manual_seed(seed)
            return self.model(**inputs, compute_mae=True)

    def train_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        out = self._step(batch, "train", batch_idx)
        # detached copies for the reconstruction callback; only the loss keeps its graph
        return {k: (v if k == "loss" or v is None else v.detach()) for k, v in out.items()}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step(batch, "val", batch_idx)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step(batch, "test", batch_idx)
