"""Metric functions on hand-computed cases, degenerate inputs, and the DDP gather with sampler padding."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tvlt.metrics import (
    EMOTIONS,
    EmotionMetrics,
    SentimentMetrics,
    emotion_scores,
    retrieval_scores,
    sample_keys,
    sentiment_scores,
)

LABELS = torch.tensor([-1.0, 0.0, 0.0, 2.0])
PREDS = torch.tensor([-0.5, 0.3, -0.2, 1.0])


def test_sentiment_hand_computed():
    s = sentiment_scores(PREDS, LABELS)
    # negative vs non-negative: labels>=0 [F,T,T,T], preds>=0 [F,T,F,T] -> 3 of 4 agree
    assert s["acc2_nonneg"] == pytest.approx(0.75)
    # class "negative": TP=1 FP=1 FN=0 -> F1 2/3 (support 1); class "non-negative": TP=2 FP=0 FN=1 -> 4/5 (support 3)
    # weighted: (1*2/3 + 3*4/5) / 4 = 23/30
    assert s["f1_nonneg"] == pytest.approx(23 / 30)
    # zeros excluded: labels [-1, 2] vs preds [-0.5, 1.0] -> both right
    assert s["acc2_pos"] == pytest.approx(1.0)
    assert s["f1_pos"] == pytest.approx(1.0)
    # rounded preds (half to even): [-0.5 -> 0, 0.3 -> 0, -0.2 -> 0, 1.0 -> 1] vs [-1, 0, 0, 2] -> 2 of 4
    assert s["acc7"] == pytest.approx(0.5)
    assert s["acc5"] == pytest.approx(0.5)
    # |errors| = 0.5, 0.3, 0.2, 1.0 -> mean 0.5
    assert s["mae"] == pytest.approx(0.5)
    # centred x = [-.65, .15, -.35, .85], y = [-1.25, -.25, -.25, 1.75]; sum xy 2.35, sum x^2 1.29, sum y^2 4.75
    assert s["pearson"] == pytest.approx(2.35 / math.sqrt(1.29 * 4.75))


def test_acc7_acc5_clip_then_round_half_to_even():
    # 2.5 -> 2 (half to even, not 3); -0.5 -> 0; 1.5 -> 2; 3.7 clipped to 3 (acc7) or 2 (acc5)
    s = sentiment_scores(torch.tensor([2.5, -0.5, 1.5, 3.7]), torch.tensor([2.0, 0.0, 2.0, 3.0]))
    assert s["acc7"] == pytest.approx(1.0)
    assert s["acc5"] == pytest.approx(1.0)  # label 3 is clipped to 2 as well
    # 0.5 -> 0 and 2.5 -> 2 with half-to-even; labels 1 and 3 would match only with half-away-from-zero
    s = sentiment_scores(torch.tensor([0.5, 2.5]), torch.tensor([1.0, 3.0]))
    assert s["acc7"] == 0.0


def test_sentiment_degenerate_cases_are_nan_with_warning():
    with pytest.warns(UserWarning, match="every label is zero"):
        s = sentiment_scores(torch.tensor([0.5, -0.5]), torch.zeros(2))
    assert math.isnan(s["acc2_pos"]) and math.isnan(s["f1_pos"])
    assert s["acc2_nonneg"] == pytest.approx(0.5)  # still defined
    with pytest.warns(UserWarning, match="constant"):
        s = sentiment_scores(torch.full((4,), 0.7), LABELS)
    assert math.isnan(s["pearson"])
    # a constant prediction still has a defined weighted F1: class "negative" F1 0 (support 1), "non-neg" 6/7 (3)
    assert s["f1_nonneg"] == pytest.approx(3 * (6 / 7) / 4)


def test_emotion_hand_computed():
    labels = torch.tensor(
        [  # happy sad angry fear disgust surprise
            [1, 1, 0, 1, 0, 1],
            [1, 0, 0, 1, 1, 0],
            [0, 0, 0, 1, 0, 1],
            [0, 0, 0, 1, 1, 0],
        ],
        dtype=torch.float,
    )
    logits = torch.tensor(
        [
            [2.0, 1.0, -1.0, 1.0, -1.0, -1.0],
            [-1.0, 1.0, -1.0, 1.0, 1.0, 1.0],
            [-3.0, -1.0, -1.0, 1.0, -1.0, -1.0],
            [0.0, -1.0, -1.0, 1.0, 1.0, 1.0],  # logit 0 counts as present (p >= 0.5)
        ]
    )
    with pytest.warns(UserWarning):
        s = emotion_scores(logits, labels)
    # happy: pred [1,0,0,1] vs [1,1,0,0]: TP1 FN1 TN1 FP1 -> TPR .5 TNR .5, F1 2/4, acc 2/4
    assert (s["wacc_happy"], s["f1_happy"], s["acc_happy"]) == pytest.approx((0.5, 0.5, 0.5))
    # sad: pred [1,1,0,0] vs [1,0,0,0]: TP1 FP1 TN2 -> TPR 1 TNR 2/3 -> wacc 5/6, F1 2/3, acc 3/4
    assert (s["wacc_sad"], s["f1_sad"], s["acc_sad"]) == pytest.approx((5 / 6, 2 / 3, 0.75))
    # angry never present nor predicted: wacc and F1 undefined, acc 1
    assert math.isnan(s["wacc_angry"]) and math.isnan(s["f1_angry"]) and s["acc_angry"] == 1.0
    # fear always present and predicted: TNR undefined -> wacc nan; F1 1
    assert math.isnan(s["wacc_fear"]) and s["f1_fear"] == 1.0
    assert (s["wacc_disgust"], s["f1_disgust"], s["acc_disgust"]) == pytest.approx((1.0, 1.0, 1.0))
    assert (s["wacc_surprise"], s["f1_surprise"], s["acc_surprise"]) == pytest.approx((0.0, 0.0, 0.0))
    # macro means skip nan classes: wacc (.5 + 5/6 + 1 + 0)/4 = 7/12; F1 (.5 + 2/3 + 1 + 1 + 0)/5 = 19/30;
    # acc (.5 + .75 + 1 + 1 + 1 + 0)/6 = 17/24
    assert s["wacc"] == pytest.approx(7 / 12)
    assert s["f1"] == pytest.approx(19 / 30)
    assert s["acc"] == pytest.approx(17 / 24)


def test_emotion_shape_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        emotion_scores(torch.zeros(3, 5), torch.zeros(3, 5))


def test_retrieval_hand_computed():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.8, 0.7, 0.2], [0.3, 0.6, 0.1]])
    r = retrieval_scores(scores, ks=(1, 2, 10))
    # video rows: ranks of the diagonal: row0 1, row1 2 (0.8 > 0.7), row2 3 -> R@1 1/3, R@2 2/3, medr 2
    assert r["v2a_r1"] == pytest.approx(1 / 3)
    assert r["v2a_r2"] == pytest.approx(2 / 3)
    assert r["v2a_r10"] == 1.0
    assert r["v2a_medr"] == 2.0
    # audio columns: col0 [.9,.8,.3] rank 1; col1 [.1,.7,.6] rank 1; col2 [.5,.2,.1] rank 3 -> R@1 2/3, medr 1
    assert r["a2v_r1"] == pytest.approx(2 / 3)
    assert r["a2v_r2"] == pytest.approx(2 / 3)
    assert r["a2v_medr"] == 1.0
    assert r["rsum"] == pytest.approx(1 / 3 + 2 / 3 + 1 + 2 / 3 + 2 / 3 + 1)


def test_retrieval_ties_count_against_the_match():
    r = retrieval_scores(torch.ones(4, 4))
    assert r["v2a_r1"] == 0.0 and r["a2v_r1"] == 0.0
    assert r["v2a_medr"] == 4.0  # a constant scorer ranks every true pair last


def test_metric_drops_padded_duplicates():
    m = SentimentMetrics()
    m.update(PREDS[:2], LABELS[:2], ["a", "b"])
    m.update(PREDS[2:], LABELS[2:], ["c", "d"])
    m.update(PREDS[:1], LABELS[:1], ["a"])  # what a padded DistributedSampler repeats
    out = m.compute()
    assert m.num_samples == 4
    assert out["acc2_nonneg"].item() == pytest.approx(0.75)
    assert out["mae"].item() == pytest.approx(0.5)


def test_emotion_metric_accumulates():
    m = EmotionMetrics()
    labels = torch.eye(6)
    m.update(torch.where(labels > 0, 1.0, -1.0), labels, [str(i) for i in range(6)])
    out = m.compute()
    assert set(f"wacc_{e}" for e in EMOTIONS) <= set(out)
    assert out["wacc"].item() == 1.0 and out["f1"].item() == 1.0


def test_sample_keys_are_stable_and_distinct():
    k = sample_keys(["clip_1", "clip_2", "clip_1"])
    assert k.dtype == torch.int64 and k[0] == k[2] and k[0] != k[1] and (k >= 0).all()
    assert sample_keys(["clip_1"]).item() == k[0].item()  # no per-process salt (unlike hash())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        m = SentimentMetrics()
        # DistributedSampler with 4 samples is not padded; with 3 it would pad rank 1 with sample "a" (index 0)
        if rank == 0:
            m.update(PREDS[[0, 2]], LABELS[[0, 2]], ["a", "c"])
        else:
            m.update(PREDS[[1, 0]], LABELS[[1, 0]], ["b", "a"])  # "a" is the padding repeat
        out = m.compute()
        if rank == 0:
            torch.save({k: v.item() for k, v in out.items()}, out_path)
    finally:
        dist.destroy_process_group()


def test_metric_gathers_across_two_processes_without_duplicates(tmp_path):
    out_path = str(tmp_path / "scores.pt")
    # fork: the children share the imported torch (spawn would re-import it in each, ~10 s on 2 cores)
    mp.start_processes(_ddp_worker, args=(_free_port(), out_path), nprocs=2, join=True, start_method="fork")
    got = torch.load(out_path, weights_only=True)
    # distinct samples a, b, c: preds [-0.5, 0.3, -0.2] vs labels [-1, 0, 0]
    want = sentiment_scores(PREDS[:3], LABELS[:3])
    assert got["acc2_nonneg"] == pytest.approx(want["acc2_nonneg"]) == pytest.approx(2 / 3)
    assert got["mae"] == pytest.approx((0.5 + 0.3 + 0.2) / 3)


def test_emotion_order_has_one_owner():
    """The six emotions' order is a contract (label columns, logits, metrics, predictions.csv): one definition,
    imported everywhere, and the SDK's other order mapped onto it."""
    import datamodules
    import datamodules.demo
    import datamodules.manifests
    import datamodules.mosei
    import datamodules.prepare
    import tvlt.lit.sentiment
    import tvlt.metrics
    from tvlt.labels import EMOTIONS

    assert EMOTIONS == ("happy", "sad", "angry", "fear", "disgust", "surprise")
    for module in (datamodules, datamodules.demo, datamodules.manifests, datamodules.mosei, datamodules.prepare,
                   tvlt.lit.sentiment, tvlt.metrics):
        assert module.EMOTIONS is EMOTIONS, module.__name__
    # SDK columns 1..6: happy, sad, anger, surprise, disgust, fear
    assert datamodules.prepare._EMOTION_COLUMNS == (1, 2, 3, 6, 5, 4)
