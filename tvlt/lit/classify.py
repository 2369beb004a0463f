"""Classification of your own clips and labels (``experiment=classify``): single-label (cross-entropy, optional
class weights and label smoothing) or multi-label (BCE per class, optional ``pos_weight``).

The class names travel with the model: they are hyperparameters of the module (so in every checkpoint), printed by
``run.py mode=predict``, and written as ``id2label``/``label2id`` into the exported ``config.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tvlt.lit.base import HeadTaskModule
from tvlt.metrics import ClassificationMetrics
from tvlt.modeling import TvltForAudioVisualClassification

log = logging.getLogger(__name__)

#: ``class_weights`` value: each class weighted by n / (K * count) from the training split's labels
BALANCED = "balanced"
#: ``pos_weight`` value: each class's positive term weighted by negatives / positives in the training split
AUTO = "auto"


class ClassificationModule(HeadTaskModule):
    """K-class audio-visual classifier. Batch: the model inputs, ``labels`` int64 (B,) class indices (single-label)
    or float32 (B, K) 0/1 (multi-label), ``ids``.

    Args:
        classes: the K class names in logit order (run.py takes them from the datamodule's ``model_arguments``).
        multilabel: BCE per class instead of cross-entropy over classes.
        class_weights: single-label: None, a list of K weights, or ``"balanced"`` (n / (K * count_c) over the
            training split, so each class weighs the same in total).
        label_smoothing: single-label: cross-entropy label smoothing in [0, 1).
        pos_weight: multi-label: None, a list of K weights, or ``"auto"`` (negatives / positives of each class in the
            training split: the usual fix for rare labels such as most MOSEI emotions).
        top_k: the ``acc_top{k}`` metrics to report (those with k < K).
        **kwargs: :class:`tvlt.lit.base.TvltLitModule` arguments (config, optimizer, scheduler, pretrained, ...).

    Logs ``train/loss``, ``val|test/loss`` and :func:`tvlt.metrics.classification_scores` per epoch.
    ``predict_step`` returns ``{"ids", "preds" (B, K) probabilities}`` (softmax or sigmoid).
    """

    model_class = TvltForAudioVisualClassification
    task = "classify"

    def __init__(self, classes: Sequence[str], multilabel: bool = False,
                 class_weights: Sequence[float] | str | None = None, label_smoothing: float = 0.0,
                 pos_weight: Sequence[float] | str | None = None, top_k: Sequence[int] = (5,),
                 *args: Any, **kwargs: Any) -> None:
        names = [str(c) for c in (classes or [])]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"classes must be >= 2 distinct names, got {names}")
        if multilabel and (class_weights is not None or label_smoothing):
            raise ValueError("class_weights and label_smoothing are single-label options; use pos_weight "
                             "for a multi-label task")
        if not multilabel and pos_weight is not None:
            raise ValueError("pos_weight is a multi-label option; use class_weights for a single-label task")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        # read by task_config_fields during the base constructor
        self.class_names = names
        self.multilabel = bool(multilabel)
        super().__init__(*args, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.top_k = tuple(int(k) for k in top_k)
        weights = pos_weight if multilabel else class_weights
        self.weight_rule = weights if isinstance(weights, str) else None
        if self.weight_rule not in (None, BALANCED if not multilabel else AUTO):
            raise ValueError(f"{'pos_weight' if multilabel else 'class_weights'}: {weights!r} is not a list of "
                             f"{len(names)} numbers, null or {BALANCED if not multilabel else AUTO!r}")
        fixed = None if weights is None or isinstance(weights, str) else self._checked(weights)
        self.register_buffer("loss_weight", fixed, persistent=False)  # (K,) or None
        self.val_metrics = ClassificationMetrics(names, self.multilabel, self.top_k)
        self.test_metrics = ClassificationMetrics(names, self.multilabel, self.top_k)

    def _checked(self, weights: Sequence[float]) -> Tensor:
        t = torch.as_tensor([float(w) for w in weights], dtype=torch.float32)
        if t.numel() != len(self.class_names) or not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise ValueError(f"loss weights must be {len(self.class_names)} finite non-negative numbers (one per "
                             f"class {self.class_names}), got {list(weights)}")
        return t

    def task_config_fields(self) -> dict[str, Any]:
        loss_type = "multi_label_classification" if self.multilabel else "classification"
        return {"num_labels": len(self.class_names), "loss_type": loss_type}

    # ------------------------------------------------------------------ loss weights from the training split
    def setup(self, stage: str) -> None:
        if self.weight_rule is None or self.loss_weight is not None:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "label_counts"):
            raise ValueError(f"{self.weight_rule!r} loss weights need a datamodule with a training split "
                             "(label_counts)")
        positives, n = datamodule.label_counts("train")
        pos = torch.as_tensor(positives, dtype=torch.float32)
        if self.multilabel:  # negatives / positives; a class never present keeps weight 1
            weight = torch.where(pos > 0, (n - pos) / pos.clamp(min=1), torch.ones_like(pos))
        else:  # n / (K * count); a class absent from training keeps weight 1
            weight = torch.where(pos > 0, n / (len(pos) * pos.clamp(min=1)), torch.ones_like(pos))
        self.loss_weight = weight.to(self.device)
        log.info("%s loss weights from the training split (%d clips): %s",
                 "pos_weight" if self.multilabel else "class", n,
                 ", ".join(f"{c} {w:.3g}" for c, w in zip(self.class_names, weight.tolist())))

    # ------------------------------------------------------------------ task definition
    def loss_options(self) -> dict[str, Any]:
        weight = self.loss_weight
        if self.multilabel:
            return {"pos_weight": weight}
        return {"class_weight": weight, "label_smoothing": self.label_smoothing}

    # ------------------------------------------------------------------ inference
    def predict_step(self, batch: Mapping[str, Any], batch_idx: int = 0) -> dict[str, Any]:
        logits = self(batch).float()
        probs = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)
        return {"ids": list(batch.get("ids", [])), "preds": probs}

    def prediction_columns(self, preds: Tensor) -> dict[str, list]:
        """Columns of ``predictions.csv``: ``prediction`` (the class, or the classes with probability >= 0.5 joined
        by ';' when multi-label), then ``p_<class>`` for every class."""
        if self.multilabel:
            chosen = [";".join(n for n, p in zip(self.class_names, row) if p >= 0.5) for row in preds.tolist()]
        else:
            chosen = [self.class_names[i] for i in preds.argmax(dim=-1).tolist()]
        return {"prediction": chosen, **{f"p_{n}": preds[:, i].tolist() for i, n in enumerate(self.class_names)}}

    def label_columns(self, labels: Tensor) -> dict[str, list]:
        if labels.ndim == 1:
            return {"label": [self.class_names[int(i)] for i in labels.tolist()]}
        return {f"label_{n}": labels[:, i].tolist() for i, n in enumerate(self.class_names)}

    def describe(self, preds: Tensor, shown: int = 5) -> list[str]:
        """One line per sample: the predicted class (single-label) or classes with probability >= 0.5
        (multi-label), then the ``shown`` most probable classes with their probabilities."""
        out = []
        for row in preds.tolist():
            order = sorted(range(len(row)), key=lambda i: -row[i])
            probs = ", ".join(f"{self.class_names[i]} {row[i]:.2f}" for i in order[:shown])
            if self.multilabel:
                present = [self.class_names[i] for i in order if row[i] >= 0.5] or ["none"]
                out.append(f"classes: {', '.join(present)} (probabilities: {probs})")
            else:
                out.append(f"class {self.class_names[order[0]]} (probabilities: {probs})")
        return out

    def export_pretrained(self, directory: str | Path) -> Path:
        """``save_pretrained`` plus the class names as Hugging Face configs carry them: ``id2label`` ({"0": name})
        and ``label2id`` ({name: 0}) in ``config.json``."""
        directory = super().export_pretrained(directory)
        path = directory / "config.json"
        config = json.loads(path.read_text())
        config["id2label"] = {str(i): name for i, name in enumerate(self.class_names)}
        config["label2id"] = {name: i for i, name in enumerate(self.class_names)}
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return directory
