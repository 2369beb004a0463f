"""CMU-MOSEI fine-tuning: sentiment (regression of the [-3, 3] score, MSE) and emotion (6 binary labels, BCE).

Head and losses as in the original release (REFERENCE.md B.6): the classifier MLP on the pooled encoder output;
MSE against the raw score for sentiment (``loss_type="regression"``), BCE-with-logits per emotion
(``"multi_label_classification"``), both computed by the model's ``compute_loss``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from tvlt.lit.base import HeadTaskModule
from tvlt.labels import EMOTIONS
from tvlt.metrics import EmotionMetrics, SentimentMetrics
from tvlt.modeling import TvltForAudioVisualClassification


class SentimentModule(HeadTaskModule):
    """MOSEI sentiment. Batch: the model inputs, ``labels`` (B,) float in [-3, 3], ``ids`` (B sample ids).

    Logs ``train/loss``; ``val|test/loss`` and the metrics of :func:`tvlt.metrics.sentiment_scores`
    (``acc2_nonneg``, ``acc2_pos``, ``f1_*``, ``acc7``, ``acc5``, ``mae``, ``pearson``) per epoch.
    ``predict_step`` returns ``{"ids", "preds" (B,)}``.
    """

    model_class = TvltForAudioVisualClassification
    task = "sentiment"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.val_metrics = self.make_metrics()
        self.test_metrics = self.make_metrics()

    def task_config_fields(self) -> dict[str, Any]:
        return {"num_labels": 1, "loss_type": "regression"}

    def make_metrics(self):
        return SentimentMetrics()

    # ------------------------------------------------------------------ task definition
    def predictions(self, logits: Tensor) -> Tensor:
        """(B, 1) -> (B,) sentiment scores."""
        return logits[:, 0]

    # ------------------------------------------------------------------ inference
    def predict_step(self, batch: Mapping[str, Any], batch_idx: int = 0) -> dict[str, Any]:
        return {"ids": list(batch.get("ids", [])), "preds": self.predictions(self(batch)).float()}

    def prediction_columns(self, preds: Tensor) -> dict[str, list]:
        """Columns of ``predictions.csv`` (tvlt.lit.inference): the score per sample."""
        return {"sentiment": preds.reshape(-1).tolist()}

    def label_columns(self, labels: Tensor) -> dict[str, list]:
        return {"label": labels.reshape(-1).tolist()}

    def describe(self, preds: Tensor) -> list[str]:
        """Human-readable predictions, one string per sample."""
        out = []
        for s in preds.tolist():
            polarity = "positive" if s > 0 else "negative" if s < 0 else "neutral"
            out.append(f"sentiment {s:+.3f} ({polarity}; scale -3 .. +3)")
        return out


class EmotionModule(SentimentModule):
    """MOSEI emotion: 6 binary labels (happy, sad, angry, fear, disgust, surprise), BCE-with-logits per emotion.
    Batch ``labels``: (B, 6) float 0/1. Metrics: :func:`tvlt.metrics.emotion_scores` (weighted accuracy, F1 and
    accuracy per emotion and their macro means). ``predict_step`` returns ``preds`` (B, 6) probabilities."""

    task = "emotion"

    def task_config_fields(self) -> dict[str, Any]:
        return {"num_labels": len(EMOTIONS), "loss_type": "multi_label_classification"}

    def make_metrics(self):
        return EmotionMetrics()

    def predictions(self, logits: Tensor) -> Tensor:
        return logits

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int = 0) -> dict[str, Any]:
        return {"ids": list(batch.get("ids", [])), "preds": torch.sigmoid(self(batch).float())}

    def prediction_columns(self, preds: Tensor) -> dict[str, list]:
        """Columns of ``predictions.csv``: the probability of each emotion."""
        return {f"p_{name}": preds[:, i].tolist() for i, name in enumerate(EMOTIONS)}

    def label_columns(self, labels: Tensor) -> dict[str, list]:
        return {f"label_{name}": labels[:, i].tolist() for i, name in enumerate(EMOTIONS)}

    def describe(self, preds: Tensor) -> list[str]:
        out = []
        for row in preds.tolist():
            present = [name for name, p in zip(EMOTIONS, row) if p >= 0.5] or ["none"]
            probs = ", ".join(f"{name} {p:.2f}" for name, p in zip(EMOTIONS, row))
            out.append(f"emotions: {', '.join(present)} (probabilities: {probs})")
        return out
