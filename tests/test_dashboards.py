"""Dashboards: hand-computed confusion and precision/recall, and every artifact in an offline W&B run."""

from __future__ import annotations

import csv
import json
import os

import pytest
import torch

from test_run import FAST, compose_cfg, demo_dir, demo_overrides  # noqa: F401 (demo_dir is a fixture)
from tvlt.lit import job, runs
from tvlt.lit.dashboards import confusion_7, emotion_table


def test_confusion_of_the_7_sentiment_classes_by_hand():
    preds = torch.tensor([2.6, -0.4, 0.49, -3.7, 1.5])  # classes 3, 0, 0, -3, 2 (round half to even: 1.5 -> 2)
    labels = torch.tensor([3.0, 0.2, -1.0, -2.6, 1.6])  # classes 3, 0, -1, -3, 2
    counts = confusion_7(preds, labels)
    assert counts.sum() == 5 and counts.trace() == 4
    assert counts[6, 6] == counts[3, 3] == counts[0, 0] == counts[5, 5] == 1  # rows: true -3..3 at 0..6
    assert counts[2, 3] == 1  # true -1 predicted 0


def test_emotion_precision_recall_by_hand():
    logits = torch.tensor([[1.0, -1.0], [2.0, 0.5], [-0.5, 0.0], [-2.0, -3.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    rows = emotion_table(logits, labels, ("happy", "sad"))
    # happy: predicted {0, 1}, true {0, 2}: tp 1, fp 1, fn 1; sad: predicted {1, 2}, true {1}: tp 1, fp 1, fn 0
    assert rows[0] == ["happy", 0.5, 0.5, 0.5, 2]
    assert rows[1] == ["sad", 0.5, 1.0, pytest.approx(2 / 3), 1]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    for key in {k for k in os.environ if k.startswith("WANDB_")} | {"WANDB_MODE", "WANDB_SILENT"}:
        monkeypatch.setenv(key, "")  # recorded, so what runs.configure_wandb sets is undone after the test
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no W&B key -> offline


def _train(tmp_path, experiment, demo_dir, extra=()):
    cfg = compose_cfg(tmp_path, [f"experiment={experiment}", *FAST, *demo_overrides(demo_dir, experiment),
                                 "logger=[csv,wandb]",
                                 "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                                 "trainer.limit_val_batches=2", "test=false", *extra])
    runs.configure_wandb(cfg)
    job.train(cfg)
    out = tmp_path / "out"
    media = next((out / "wandb").glob("offline-run-*")) / "files" / "media"
    return out / "dashboards", media


def _table_rows(media, name: str) -> int:
    tables = list(media.rglob(f"{name}*.table.json"))
    assert tables, sorted(p.name for p in media.rglob("*"))
    return len(json.loads(tables[0].read_text())["data"])


def test_sentiment_dashboards_in_the_run_and_in_offline_wandb(tmp_path, demo_dir, offline_wandb):  # noqa: F811
    dashboards, media = _train(tmp_path, "mosei", demo_dir)
    assert (dashboards / "val_sentiment_scatter_epoch000.png").stat().st_size > 1000
    assert (dashboards / "val_sentiment_confusion_epoch000.png").is_file()
    rows = list(csv.reader(open(dashboards / "val_sentiment_confusion_epoch000.csv")))
    assert rows[0][1:] == ["-3", "-2", "-1", "0", "1", "2", "3"] and len(rows) == 8
    assert sum(int(x) for row in rows[1:] for x in row[1:]) == 4  # 2 validation batches of 2 clips
    pngs = sorted(p.name for p in (media / "images" / "val").glob("*.png"))
    assert any(n.startswith("sentiment_scatter") for n in pngs) and any(n.startswith("sentiment_confusion")
                                                                        for n in pngs)
    assert _table_rows(media / "table", "sentiment_confusion") == 7


def test_emotion_and_retrieval_dashboards(tmp_path, demo_dir, offline_wandb):  # noqa: F811
    dashboards, media = _train(tmp_path / "emotion", "mosei_emotion", demo_dir)
    rows = list(csv.reader(open(dashboards / "val_emotion_precision_recall_epoch000.csv")))
    assert rows[0] == ["emotion", "precision", "recall", "f1", "support"]
    assert [r[0] for r in rows[1:]] == ["happy", "sad", "angry", "fear", "disgust", "surprise"]
    assert _table_rows(media / "table", "emotion_precision_recall") == 6
    dashboards, media = _train(tmp_path / "retrieval", "retrieval", demo_dir)
    assert (dashboards / "val_similarity_epoch000.png").is_file()
    assert any(p.name.startswith("similarity") for p in (media / "images" / "val").glob("*.png"))
