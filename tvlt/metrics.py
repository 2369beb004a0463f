"""Evaluation metrics for CMU-MOSEI sentiment, CMU-MOSEI emotion, classification of your own labels and
video-audio retrieval.

Two layers:

* plain functions (``sentiment_scores``, ``emotion_scores``, ``classification_scores``, ``retrieval_scores``) that
  take whole tensors and return ``dict[str, float]``; they are what the tests check by hand;
* ``torchmetrics.Metric`` wrappers (``SentimentMetrics``, ``EmotionMetrics``, ``ClassificationMetrics``) that
  accumulate predictions across steps and processes. Under DDP, Lightning's ``DistributedSampler`` pads the last
  shard by repeating samples; the wrappers therefore keep a 64-bit key per sample (a hash of its id) and drop
  repeated keys after the gather, so every sample is counted exactly once.

Degenerate inputs (no non-zero labels, a constant prediction or label, an emotion that never occurs) give ``nan``
for the affected figure together with a ``UserWarning``; they never raise.

Conventions (the MOSEI literature, e.g. MulT / MISA evaluation code, which the original TVLT release does not have:
it reports only ``acc2_nonneg``):

* ``acc2_nonneg``: negative vs non-negative, over all samples, ``pred >= 0`` against ``label >= 0`` (the original
  TVLT release's only metric);
* ``acc2_pos``: negative vs positive, zero labels excluded, ``pred > 0`` against ``label > 0``;
* ``f1_nonneg`` / ``f1_pos``: F1 of the same binary splits, averaged over both classes weighted by support
  (``average="weighted"`` as in the literature); each class's F1 is ``2TP / (2TP + FP + FN)``;
* ``acc7`` / ``acc5``: predictions and labels clipped to [-3, 3] / [-2, 2], then rounded half to even
  (``torch.round``), then compared;
* ``mae`` and ``pearson`` (Pearson correlation of the raw scores).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_stat_scores,
    multilabel_average_precision,
    multilabel_stat_scores,
)

from tvlt.labels import EMOTIONS

NAN = float("nan")


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def _ratio(num: float, den: float, what: str) -> float:
    if den == 0:
        _warn(f"{what} is undefined (division by zero); reported as nan")
        return NAN
    return num / den


# --------------------------------------------------------------------------------------------------------------------
# sentiment
# --------------------------------------------------------------------------------------------------------------------


def _weighted_binary_f1(pred: Tensor, target: Tensor, what: str) -> float:
    """Support-weighted mean over classes {False, True} of ``2TP / (2TP + FP + FN)``. ``pred``/``target``: bool (N,)."""
    n = target.numel()
    if n == 0:
        _warn(f"{what}: no samples; reported as nan")
        return NAN
    total = 0.0
    for cls in (False, True):
        p, t = pred == cls, target == cls
        tp = (p & t).sum().item()
        fp = (p & ~t).sum().item()
        fn = (~p & t).sum().item()
        support = t.sum().item()
        if support:
            total += support * (2 * tp / (2 * tp + fp + fn))
    return total / n


def pearson(x: Tensor, y: Tensor, what: str = "pearson") -> float:
    """Pearson correlation of two (N,) tensors; nan (with a warning) when either is constant or N < 2."""
    x, y = x.double(), y.double()
    if x.numel() < 2:
        _warn(f"{what}: fewer than 2 samples; reported as nan")
        return NAN
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt((xc * xc).sum().item() * (yc * yc).sum().item())
    if den == 0:
        _warn(f"{what}: predictions or labels are constant; reported as nan")
        return NAN
    return (xc * yc).sum().item() / den


def _acc_k(pred: Tensor, target: Tensor, bound: float) -> float:
    p = torch.round(pred.clamp(-bound, bound))  # torch.round rounds half to even
    t = torch.round(target.clamp(-bound, bound))
    return (p == t).double().mean().item()


def sentiment_scores(preds: Tensor, labels: Tensor) -> dict[str, float]:
    """MOSEI sentiment metrics of regression outputs.

    Args:
        preds: (N,) predicted scores (any real value; the model regresses the [-3, 3] label).
        labels: (N,) gold sentiment scores in [-3, 3].

    Returns:
        ``acc2_nonneg, f1_nonneg, acc2_pos, f1_pos, acc7, acc5, mae, pearson`` (see the module docstring).
    """
    preds, labels = preds.detach().double().flatten().cpu(), labels.detach().double().flatten().cpu()
    if preds.shape != labels.shape:
        raise ValueError(f"preds {tuple(preds.shape)} and labels {tuple(labels.shape)} differ in size")
    if preds.numel() == 0:
        _warn("sentiment metrics on 0 samples; all reported as nan")
        return dict.fromkeys(("acc2_nonneg", "f1_nonneg", "acc2_pos", "f1_pos", "acc7", "acc5", "mae", "pearson"), NAN)
    out: dict[str, float] = {}
    p_nn, t_nn = preds >= 0, labels >= 0
    out["acc2_nonneg"] = (p_nn == t_nn).double().mean().item()
    out["f1_nonneg"] = _weighted_binary_f1(p_nn, t_nn, "f1_nonneg")
    nonzero = labels != 0
    if nonzero.any():
        p_pos, t_pos = preds[nonzero] > 0, labels[nonzero] > 0
        out["acc2_pos"] = (p_pos == t_pos).double().mean().item()
        out["f1_pos"] = _weighted_binary_f1(p_pos, t_pos, "f1_pos")
    else:
        _warn("acc2_pos / f1_pos: every label is zero, nothing to score; reported as nan")
        out["acc2_pos"] = out["f1_pos"] = NAN
    out["acc7"] = _acc_k(preds, labels, 3.0)
    out["acc5"] = _acc_k(preds, labels, 2.0)
    out["mae"] = (preds - labels).abs().mean().item()
    out["pearson"] = pearson(preds, labels)
    return out


# --------------------------------------------------------------------------------------------------------------------
# emotion
# --------------------------------------------------------------------------------------------------------------------


def emotion_scores(logits: Tensor, labels: Tensor, names: Sequence[str] = EMOTIONS) -> dict[str, float]:
    """Multi-label emotion metrics. A class is predicted present when its logit is >= 0 (probability >= 0.5), as in
    the original release; a label counts as present when > 0.

    Args:
        logits: (N, C) logits. labels: (N, C) 0/1 (or intensities; > 0 means present). names: C class names.

    Returns:
        For each class ``c``: ``wacc_c`` ((TPR + TNR) / 2), ``f1_c`` (positive-class F1, 2TP / (2TP + FP + FN)),
        ``acc_c``; and their means over classes ``wacc``, ``f1``, ``acc``. A per-class value that is undefined
        (no positives or no negatives for wacc; no positives predicted or present for f1) is nan with a warning; the
        macro means skip nan classes (nan only if all are).
    """
    logits, labels = logits.detach().cpu(), labels.detach().cpu()
    if logits.ndim != 2 or logits.shape != labels.shape or logits.shape[1] != len(names):
        raise ValueError(
            f"emotion logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must both be (N, {len(names)})"
        )
    pred, gold = logits >= 0, labels > 0
    out: dict[str, float] = {}
    per: dict[str, list[float]] = {"wacc": [], "f1": [], "acc": []}
    for c, name in enumerate(names):
        p, t = pred[:, c], gold[:, c]
        tp, tn = (p & t).sum().item(), (~p & ~t).sum().item()
        fp, fn = (p & ~t).sum().item(), (~p & t).sum().item()
        tpr = _ratio(tp, tp + fn, f"TPR of {name!r} (no positive labels)")
        tnr = _ratio(tn, tn + fp, f"TNR of {name!r} (no negative labels)")
        vals = {
            "wacc": (tpr + tnr) / 2,
            "f1": _ratio(2 * tp, 2 * tp + fp + fn, f"F1 of {name!r} (never present nor predicted)"),
            "acc": _ratio(tp + tn, tp + tn + fp + fn, f"accuracy of {name!r} (no samples)"),
        }
        for key, v in vals.items():
            out[f"{key}_{name}"] = v
            per[key].append(v)
    for key, vals in per.items():
        finite = [v for v in vals if not math.isnan(v)]
        out[key] = sum(finite) / len(finite) if finite else NAN
    return out


# --------------------------------------------------------------------------------------------------------------------
# classification of your own labels (experiment=classify)
# --------------------------------------------------------------------------------------------------------------------


def metric_key(name: str) -> str:
    """A class name as part of a logged metric key: ``/`` (the stage separator) and spaces become ``_``."""
    return str(name).replace("/", "_").replace(" ", "_")


def _nanmean(values: Tensor, what: str) -> float:
    finite = values[~torch.isnan(values)]
    if finite.numel() < values.numel():
        _warn(f"{what}: undefined for {values.numel() - finite.numel()} class(es), averaged over the others")
    return finite.mean().item() if finite.numel() else NAN


def _weighted(values: Tensor, support: Tensor) -> float:
    """Support-weighted mean over the classes that occur (their per-class value is always defined)."""
    keep = support > 0
    return ((values[keep] * support[keep]).sum() / support[keep].sum()).item() if keep.any() else NAN


def classification_scores(logits: Tensor, labels: Tensor, names: Sequence[str], multilabel: bool = False,
                          top_k: Sequence[int] = (5,)) -> dict[str, float]:
    """Metrics of a K-class classifier (torchmetrics' functional classification metrics).

    Args:
        logits: (N, K) logits. names: the K class names, in the order of the logits' columns.
        labels: single-label: (N,) class indices (any dtype holding integers); multi-label: (N, K) 0/1.
        multilabel: multi-label task (a class is predicted present when its logit >= 0, probability >= 0.5).
        top_k: single-label only: ``acc_top{k}`` for each k < K (k >= K would always be 1).

    Returns:
        Single-label: ``acc`` (top-1 accuracy over samples), ``acc_top{k}``, ``f1_macro`` (mean of per-class F1),
        ``f1_weighted`` (per-class F1 weighted by each class's support), and per class ``precision_<c>``,
        ``recall_<c>``, ``f1_<c>``. Multi-label: ``map`` (mean over classes of the average precision of the
        probabilities), ``ap_<c>``, ``exact_match`` (all K decisions right), ``f1_macro``, ``f1_weighted``
        (weighted by positives), per class ``precision_<c>``, ``recall_<c>``, ``f1_<c>``. A per-class value that is
        undefined (precision of a class never predicted, recall/AP of a class that never occurs) is nan; means
        skip nan classes with a warning (nan only when all are).
    """
    k = len(names)
    logits = logits.detach().float().cpu()
    if logits.ndim != 2 or logits.shape[1] != k:
        raise ValueError(f"classification logits must be (N, {k}) for classes {list(names)}, got {tuple(logits.shape)}")
    out: dict[str, float] = {}
    if logits.shape[0] == 0:
        _warn("classification metrics on 0 samples; reported as nan")
        keys = ["map", "exact_match"] if multilabel else ["acc", *(f"acc_top{t}" for t in top_k if t < k)]
        per = ["ap", "precision", "recall", "f1"] if multilabel else ["precision", "recall", "f1"]
        return dict.fromkeys([*keys, "f1_macro", "f1_weighted", *(f"{m}_{metric_key(c)}" for m in per
                                                                     for c in names)], NAN)
    if multilabel:
        target = (labels.detach().cpu() > 0).long()
        if target.shape != logits.shape:
            raise ValueError(f"multi-label labels {tuple(target.shape)} must match the logits {tuple(logits.shape)}")
        probs, present = torch.sigmoid(logits), (logits >= 0).long()  # decisions as in emotion_scores
        stats = multilabel_stat_scores(present, target, num_labels=k, average="none")
        with warnings.catch_warnings():  # torchmetrics' "no positive samples" warning: reported as nan below
            warnings.simplefilter("ignore", UserWarning)
            ap = multilabel_average_precision(probs, target, num_labels=k, average="none")
        ap = torch.where(target.sum(0) > 0, ap, torch.full_like(ap, NAN))
        out["map"] = _nanmean(ap, "map")
        out["exact_match"] = (present == target).all(1).double().mean().item()
    else:
        target = labels.detach().cpu().reshape(-1).long()
        if target.shape[0] != logits.shape[0]:
            raise ValueError(f"{target.shape[0]} labels for {logits.shape[0]} logits")
        if target.numel() and (target.min() < 0 or target.max() >= k):
            raise ValueError(f"class indices must lie in [0, {k}), got {target.min().item()}..{target.max().item()}")
        out["acc"] = (logits.argmax(1) == target).double().mean().item()
        for t in top_k:
            if t < k:
                out[f"acc_top{t}"] = multiclass_accuracy(logits, target, num_classes=k, average="micro",
                                                         top_k=int(t)).item()
        stats = multiclass_stat_scores(logits, target, num_classes=k, average="none")
    tp, fp, fn, support = (stats[:, i].double() for i in (0, 1, 3, 4))
    precision, recall, f1 = tp / (tp + fp), tp / support, 2 * tp / (2 * tp + fp + fn)  # 0 / 0 = nan: undefined
    out["f1_macro"] = _nanmean(f1, "f1_macro")
    out["f1_weighted"] = _weighted(f1, support)
    for c, name in enumerate(names):
        key = metric_key(name)
        if multilabel:
            out[f"ap_{key}"] = ap[c].item()
        out[f"precision_{key}"] = precision[c].item()
        out[f"recall_{key}"] = recall[c].item()
        out[f"f1_{key}"] = f1[c].item()
    return out


# --------------------------------------------------------------------------------------------------------------------
# retrieval
# --------------------------------------------------------------------------------------------------------------------


def true_pair_ranks(scores: Tensor) -> Tensor:
    """1-based rank of the diagonal entry in each row of a square (N, N) score matrix, higher score = better.
    Ties count against the match (rank = number of entries >= the match's score), so a constant scorer gets rank N,
    not 1."""
    diag = scores.diagonal().unsqueeze(1)
    return (scores >= diag).sum(dim=1)


def retrieval_scores(scores: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K and median rank in both directions from a full similarity matrix.

    Args:
        scores: (N, N) with ``scores[i, j]`` the matching score of video ``i`` with audio ``j``; the true pairs are on
            the diagonal. Pass the matrix gathered over all processes.

    Returns:
        ``v2a_r1, v2a_r5, v2a_r10, v2a_medr`` (video query, audios ranked) and the same with ``a2v_``;
        ``rsum`` = sum of all R@K (a single figure to monitor).
    """
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"retrieval scores must be a square (N, N) matrix, got {tuple(scores.shape)}")
    scores = scores.detach().double().cpu()
    out: dict[str, float] = {}
    if scores.shape[0] == 0:
        _warn("retrieval metrics on 0 pairs; reported as nan")
    rsum = 0.0
    for direction, mat in (("v2a", scores), ("a2v", scores.T)):
        ranks = true_pair_ranks(mat).double()
        for k in ks:
            r = (ranks <= k).double().mean().item() if ranks.numel() else NAN
            out[f"{direction}_r{k}"] = r
            rsum += r
        out[f"{direction}_medr"] = torch.quantile(ranks, 0.5).item() if ranks.numel() else NAN
    out["rsum"] = rsum
    return out


# --------------------------------------------------------------------------------------------------------------------
# DDP-safe accumulators
# --------------------------------------------------------------------------------------------------------------------


def sample_keys(ids: Sequence[str], device: torch.device | str = "cpu") -> Tensor:
    """Stable 63-bit integer keys of sample ids (blake2b), identical on every process, so that gathered predictions
    can be de-duplicated. (N,) int64."""
    keys = [int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "little") >> 1 for i in ids]
    return torch.tensor(keys, dtype=torch.int64, device=device)


def _first_occurrence(keys: Tensor) -> Tensor:
    """Indices of the first occurrence of each distinct key, in input order."""
    if keys.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=keys.device)
    _, inverse = torch.unique(keys, return_inverse=True)
    n = keys.numel()
    first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.long, device=keys.device)
    first.scatter_reduce_(0, inverse, torch.arange(n, device=keys.device), reduce="amin")
    return first.sort().values


class _DedupMetric(Metric):
    """Accumulates (preds, target, key) rows; ``dist_reduce_fx="cat"`` gathers them from every process, and rows with
    a repeated key (DistributedSampler padding) are dropped before scoring."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("keys", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor, ids: Sequence[str]) -> None:  # type: ignore[override]
        if len(ids) != preds.shape[0] or target.shape[0] != preds.shape[0]:
            raise ValueError(f"{len(ids)} ids for {preds.shape[0]} predictions and {target.shape[0]} labels")
        self.preds.append(preds.detach().float())
        self.target.append(target.detach().float())
        self.keys.append(sample_keys(ids, device=preds.device))

    def _gathered(self) -> tuple[Tensor, Tensor]:
        def cat(x):
            return torch.cat(x) if isinstance(x, list) else x

        if isinstance(self.preds, list) and not self.preds:
            return torch.zeros(0), torch.zeros(0)
        preds, target, keys = cat(self.preds), cat(self.target), cat(self.keys)
        keep = _first_occurrence(keys)
        return preds[keep], target[keep]

    def gathered(self) -> tuple[Tensor, Tensor]:
        """(preds, target) of every distinct sample seen so far by every process, without changing the state: a
        collective under DDP, so every process must call it (the dashboards use it before ``compute``)."""
        with self.sync_context(should_unsync=True):
            return self._gathered()

    @property
    def num_samples(self) -> int:
        """Distinct samples seen so far (after the gather when called inside ``compute``)."""
        return int(self._gathered()[0].shape[0])


class SentimentMetrics(_DedupMetric):
    """``update(preds (B,), labels (B,), ids)``; ``compute()`` -> :func:`sentiment_scores` as a dict of tensors,
    plus ``num_samples`` (distinct samples scored)."""

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        preds, target = self._gathered()
        out = {k: torch.tensor(v) for k, v in sentiment_scores(preds.flatten(), target.flatten()).items()}
        out["num_samples"] = torch.tensor(float(preds.shape[0]))
        return out


class EmotionMetrics(_DedupMetric):
    """``update(logits (B, 6), labels (B, 6), ids)``; ``compute()`` -> :func:`emotion_scores` as a dict of tensors."""

    def __init__(self, names: Sequence[str] = EMOTIONS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.names = tuple(names)

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        preds, target = self._gathered()
        if preds.numel() == 0:
            preds = target = torch.zeros(0, len(self.names))
        out = {k: torch.tensor(v) for k, v in emotion_scores(preds, target, self.names).items()}
        out["num_samples"] = torch.tensor(float(preds.shape[0]))
        return out


class ClassificationMetrics(_DedupMetric):
    """``update(logits (B, K), labels (B,) class indices or (B, K) 0/1, ids)``; ``compute()`` ->
    :func:`classification_scores` as a dict of tensors, plus ``num_samples``."""

    def __init__(self, names: Sequence[str], multilabel: bool = False, top_k: Sequence[int] = (5,),
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.names, self.multilabel, self.top_k = tuple(names), bool(multilabel), tuple(top_k)

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        preds, target = self._gathered()
        if preds.numel() == 0:
            preds = torch.zeros(0, len(self.names))
            target = torch.zeros(0, len(self.names)) if self.multilabel else torch.zeros(0)
        scores = classification_scores(preds, target, self.names, self.multilabel, self.top_k)
        out = {k: torch.tensor(v) for k, v in scores.items()}
        out["num_samples"] = torch.tensor(float(preds.shape[0]))
        return out
