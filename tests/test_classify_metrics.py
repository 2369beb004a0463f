"""Classification metrics (experiment=classify) on a fixed prediction set whose every value is computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from tvlt.metrics import ClassificationMetrics, classification_scores

NAMES = ["cat", "dog", "bird"]
# single-label: 7 samples, argmax [0, 1, 2, 1, 2, 1, 2] against labels [0, 0, 1, 1, 2, 2, 2]
LOGITS = torch.tensor([[3.0, 1, 0], [1, 2, 0], [0, 1, 3], [0, 3, 1], [1, 0, 2], [1, 2, 0], [0, 0, 5]])
LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 2])
# multi-label: decisions (logit >= 0) [[1,0,1], [0,1,0], [1,0,0], [0,1,1]] against the labels below
ML_LOGITS = torch.tensor([[2.0, -1, 0.5], [-1, 1, -2], [1, -1, -1], [-2, 2, 1]])
ML_LABELS = torch.tensor([[1.0, 0, 1], [0, 1, 1], [0, 0, 1], [1, 1, 0]])


def test_single_label_hand_computed():
    s = classification_scores(LOGITS, LABELS, NAMES, top_k=(2, 5))
    assert s["acc"] == pytest.approx(4 / 7)  # samples 0, 3, 4, 6
    assert s["acc_top2"] == pytest.approx(6 / 7)  # only sample 5 (label 2; top-2 {1, 0}) misses
    assert "acc_top5" not in s  # k >= K classes would always be 1
    # cat: predicted once (right), 2 labels -> P 1, R 1/2; dog: predicted 3 times, 1 right of 2 -> P 1/3, R 1/2;
    # bird: predicted 3 times, 2 right of 3 -> P 2/3, R 2/3
    want = {"cat": (1.0, 0.5, 2 / 3), "dog": (1 / 3, 0.5, 0.4), "bird": (2 / 3, 2 / 3, 2 / 3)}
    for name, (p, r, f1) in want.items():
        assert (s[f"precision_{name}"], s[f"recall_{name}"], s[f"f1_{name}"]) == pytest.approx((p, r, f1))
    assert s["f1_macro"] == pytest.approx((2 / 3 + 0.4 + 2 / 3) / 3)
    assert s["f1_weighted"] == pytest.approx((2 * 2 / 3 + 2 * 0.4 + 3 * 2 / 3) / 7)  # supports 2, 2, 3


def test_multi_label_hand_computed():
    s = classification_scores(ML_LOGITS, ML_LABELS, ["a", "b", "c"], multilabel=True)
    assert s["exact_match"] == pytest.approx(1 / 4)  # only sample 0 has all three right
    # a: scores ranked s0(+) s2(-) s1(-) s3(+) -> AP (1 + 2/4) / 2; b: both positives ranked first -> 1;
    # c: s3(-) s0(+) s2(+) s1(+) -> AP (1/2 + 2/3 + 3/4) / 3
    ap = {"a": 0.75, "b": 1.0, "c": (1 / 2 + 2 / 3 + 3 / 4) / 3}
    for name, value in ap.items():
        assert s[f"ap_{name}"] == pytest.approx(value)
    assert s["map"] == pytest.approx(sum(ap.values()) / 3)
    # a: TP 1 FP 1 FN 1; b: all right; c: TP 1 FP 1 FN 2 -> F1 2/5
    assert (s["precision_a"], s["recall_a"], s["f1_a"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (s["precision_b"], s["recall_b"], s["f1_b"]) == pytest.approx((1.0, 1.0, 1.0))
    assert (s["precision_c"], s["recall_c"], s["f1_c"]) == pytest.approx((0.5, 1 / 3, 0.4))
    assert s["f1_macro"] == pytest.approx((0.5 + 1 + 0.4) / 3)
    assert s["f1_weighted"] == pytest.approx((2 * 0.5 + 2 * 1 + 3 * 0.4) / 7)  # positives 2, 2, 3


def test_undefined_per_class_values_are_nan_and_means_skip_them():
    logits = torch.tensor([[2.0, 0, 0], [2.0, 0, 0]])
    with pytest.warns(UserWarning, match="f1_macro"):
        s = classification_scores(logits, torch.tensor([0, 1]), NAMES)
    assert math.isnan(s["precision_dog"]) and math.isnan(s["recall_bird"])  # never predicted / never present
    assert s["precision_cat"] == 0.5 and s["f1_dog"] == 0.0
    assert s["f1_macro"] == pytest.approx((2 / 3 + 0.0) / 2)  # bird: never present nor predicted, skipped
    with pytest.raises(ValueError, match=r"must be \(N, 3\)"):
        classification_scores(torch.zeros(2, 4), torch.tensor([0, 1]), NAMES)


def test_metric_accumulates_and_drops_padded_duplicates():
    metric = ClassificationMetrics(NAMES, top_k=(2,))
    ids = [f"s{i}" for i in range(7)]
    metric.update(LOGITS[:4], LABELS[:4], ids[:4])
    metric.update(LOGITS[4:], LABELS[4:], ids[4:])
    metric.update(LOGITS[:1], LABELS[:1], ids[:1])  # DistributedSampler padding repeats a sample
    out = metric.compute()
    assert out["num_samples"] == 7 and float(out["acc"]) == pytest.approx(4 / 7)
    assert float(out["acc_top2"]) == pytest.approx(6 / 7)


def test_multi_label_logit_zero_counts_as_present():
    s = classification_scores(torch.tensor([[0.0, -0.1]]), torch.tensor([[1.0, 0.0]]), ["a", "b"], multilabel=True)
    assert s["exact_match"] == 1.0 and s["recall_a"] == 1.0 and math.isnan(s["precision_b"])
