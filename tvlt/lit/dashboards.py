"""Dashboards a person reads: what each validation looked like, beyond the scalar metrics.

At the end of every validation (rank zero writes; the gathers are collective, so every process takes part):

- sentiment: predicted-vs-true scatter and the 7-class confusion matrix (classes ``round(clip(score, -3, 3))``,
  the Acc-7 classes);
- emotion: a table of precision, recall, F1 and support per emotion (present when the logit is >= 0);
- retrieval: the video-audio similarity matrix of the validation set as an image, with R@1/5/10;
- every task: the clips skipped per cause in each stage and epoch so far (``data.on_error=skip``).

Each figure is a PNG and each table a CSV under ``<run>/dashboards/`` (named by stage and epoch), whatever the
logger; with W&B they are also logged as images and tables (offline runs included), with TensorBoard as images.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from tvlt.metrics import EmotionMetrics, SentimentMetrics, retrieval_scores

__all__ = ["Dashboards", "confusion_7", "emotion_table"]

SENTIMENT_CLASSES = list(range(-3, 4))


def confusion_7(preds: Tensor, labels: Tensor) -> np.ndarray:
    """int64 (7, 7) counts: row = true class, column = predicted class, classes -3..3 (Acc-7's rounding)."""
    true = torch.clamp(labels.flatten(), -3, 3).round().long() + 3
    pred = torch.clamp(preds.flatten(), -3, 3).round().long() + 3
    out = np.zeros((7, 7), np.int64)
    np.add.at(out, (true.numpy(), pred.numpy()), 1)
    return out


def emotion_table(logits: Tensor, labels: Tensor, names: tuple[str, ...]) -> list[list[Any]]:
    """Rows ``[emotion, precision, recall, f1, support]``; present = logit >= 0, label > 0; an undefined ratio
    (no predicted or no true positives) is NaN."""
    pred, true = logits >= 0, labels > 0
    rows = []
    for c, name in enumerate(names):
        tp = int((pred[:, c] & true[:, c]).sum())
        fp, fn = int((pred[:, c] & ~true[:, c]).sum()), int((~pred[:, c] & true[:, c]).sum())
        precision = tp / (tp + fp) if tp + fp else float("nan")
        recall = tp / (tp + fn) if tp + fn else float("nan")
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
        rows.append([name, precision, recall, f1, int(true[:, c].sum())])
    return rows


class Dashboards(pl.Callback):
    """Figures and tables of each validation (see the module docstring). ``max_points`` caps the scatter."""

    def __init__(self, max_points: int = 5000) -> None:
        self.max_points = max_points

    # sentiment and emotion: the metric states, gathered before the module computes and resets them
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = getattr(pl_module, "val_metrics", None)
        if not isinstance(metrics, (SentimentMetrics, EmotionMetrics)):
            return
        preds, target = metrics.gathered()  # collective under DDP: every process calls it
        if not trainer.is_global_zero or preds.numel() == 0:
            return
        preds, target = preds.cpu(), target.cpu()
        if isinstance(metrics, SentimentMetrics):
            self._figure(trainer, "val/sentiment_scatter", _scatter(preds.flatten(), target.flatten(), self.max_points))
            counts = confusion_7(preds, target)
            self._figure(trainer, "val/sentiment_confusion", _confusion_figure(counts))
            self._table(trainer, "val/sentiment_confusion", ["true \\ predicted", *map(str, SENTIMENT_CLASSES)],
                        [[str(c), *row.tolist()] for c, row in zip(SENTIMENT_CLASSES, counts)])
        else:
            self._table(trainer, "val/emotion_precision_recall", ["emotion", "precision", "recall", "f1", "support"],
                        emotion_table(preds, target, metrics.names))

    # retrieval (scored in the module's epoch end) and skipped clips
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        similarity = getattr(pl_module, "last_similarity", None)
        if similarity is not None and similarity.get("stage") == "val":
            self._figure(trainer, "val/similarity", _similarity_figure(similarity["scores"]))
        skipped = getattr(trainer.datamodule, "skipped", None) or {}
        rows = [[when, cause, count] for when, counter in skipped.items() for cause, count in sorted(counter.items())]
        if rows:
            self._table(trainer, "data/skipped", ["stage and epoch", "cause", "clips"], rows)

    # ------------------------------------------------------------------ writing
    def _stem(self, trainer: pl.Trainer, key: str) -> Path:
        out = Path(trainer.default_root_dir) / "dashboards"
        out.mkdir(parents=True, exist_ok=True)
        return out / f"{key.replace('/', '_')}_epoch{trainer.current_epoch:03d}"

    def _figure(self, trainer: pl.Trainer, key: str, png: bytes) -> None:
        from PIL import Image

        path = self._stem(trainer, key).with_suffix(".png")
        path.write_bytes(png)
        for logger in trainer.loggers:
            name = type(logger).__name__
            if name == "WandbLogger":
                logger.log_image(key=key, images=[Image.open(path)], step=trainer.global_step)
            elif name == "TensorBoardLogger":
                image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1)
                logger.experiment.add_image(key, image, trainer.global_step)

    def _table(self, trainer: pl.Trainer, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        with open(self._stem(trainer, key).with_suffix(".csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_table(key=key, columns=columns, data=rows, step=trainer.global_step)


# ---------------------------------------------------------------------- figures (matplotlib, no display)
def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _scatter(preds: Tensor, labels: Tensor, max_points: int) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    keep = slice(0, max_points)
    ax.scatter(labels[keep].numpy(), preds[keep].numpy(), s=8, alpha=0.6)
    ax.plot([-3, 3], [-3, 3], color="gray", linewidth=1)
    ax.set(xlim=(-3.2, 3.2), ylim=(-3.2, 3.2), xlabel="true sentiment", ylabel="predicted sentiment",
           title=f"sentiment, {preds.numel()} clips")
    return _png(fig)


def _confusion_figure(counts: np.ndarray) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(counts, cmap="Blues")
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, str(n), ha="center", va="center", fontsize=8)
    ax.set(xticks=range(7), yticks=range(7), xticklabels=SENTIMENT_CLASSES, yticklabels=SENTIMENT_CLASSES,
           xlabel="predicted class", ylabel="true class", title="sentiment, 7 classes")
    return _png(fig)


def _similarity_figure(scores: Tensor) -> bytes:
    plt = _pyplot()
    r = retrieval_scores(scores)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    im = ax.imshow(scores.float().numpy(), cmap="viridis")
    fig.colorbar(im, ax=ax)
    recall = ", ".join(f"{k} {v:.2f}" for k, v in r.items() if k.startswith("v2a_r"))
    ax.set(xlabel="audio", ylabel="video", title=f"{scores.shape[0]} clips; {recall}")
    return _png(fig)
