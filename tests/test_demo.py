"""The embedded demo dataset: layout, determinism, labels learnable from each modality, made on first use."""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules.decoding import ClipReader
from datamodules.demo import DemoSpec, ensure_demo_mosei
from datamodules.mosei import MoseiDataModule
from tvlt.labels import EMOTIONS

SPEC = DemoSpec(seed=3, num_train=6, num_valid=2, num_test=2)


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return ensure_demo_mosei(tmp_path_factory.mktemp("demo") / "mosei", SPEC)


def read_labels(root: Path, split: str) -> tuple[list[dict], list[dict]]:
    with open(root / "labels" / f"label_file_{split}.csv") as f:
        sentiment = list(csv.DictReader(f))
    with open(root / "labels_emotion" / f"label_file_{split}.csv") as f:
        emotion = list(csv.DictReader(f))
    return sentiment, emotion


def test_layout_is_the_original_mosei_layout(demo):
    for split, n in (("train", 6), ("valid", 2), ("test", 2)):
        sentiment, emotion = read_labels(demo, split)
        assert len(sentiment) == n and list(sentiment[0]) == ["FileName", "sentiment_score"]
        assert list(emotion[0])[3:] == list(EMOTIONS)
        for row in sentiment:
            assert (demo / split / "video" / f"{row['FileName']}.mp4").is_file()
            info = sf.info(demo / split / "audio_wav" / f"{row['FileName']}.wav")
            assert (info.samplerate, info.channels, info.frames) == (16000, 1, 32000)
            assert -3 <= float(row["sentiment_score"]) <= 3
    scores = [float(r["sentiment_score"]) for r in read_labels(demo, "train")[0]]
    assert sum(s >= 0 for s in scores) == 3  # balanced signs


def test_same_seed_gives_the_same_bytes_and_another_seed_differs(demo, tmp_path):
    again = ensure_demo_mosei(tmp_path / "again", SPEC)
    assert digest(again) == digest(demo)
    other = ensure_demo_mosei(tmp_path / "other", DemoSpec(seed=4, num_train=6, num_valid=2, num_test=2))
    assert digest(other) != digest(demo)


def test_sentiment_and_emotions_are_visible_in_frames_and_audible_in_audio(demo):
    reader = ClipReader(num_frames=8, decode_timeout=None)
    sentiment, emotion = read_labels(demo, "train")
    for srow, erow in zip(sentiment, emotion):
        cid, score = srow["FileName"], float(srow["sentiment_score"])
        clip = reader.read(demo / "train" / "video" / f"{cid}.mp4", demo / "train" / "audio_wav" / f"{cid}.wav")
        top = clip.frames[:, :48].astype(np.float64)
        warm = top[..., 0].mean() > top[..., 2].mean()  # red > blue: non-negative sentiment
        assert warm == (score >= 0), cid
        spectrum = np.abs(np.fft.rfft(clip.waveform))
        freqs = np.fft.rfftfreq(len(clip.waveform), 1 / clip.sampling_rate)
        low = spectrum[(freqs > 200) & (freqs < 240)].max()
        high = spectrum[(freqs > 640) & (freqs < 680)].max()
        assert (high > low) == (score >= 0), cid
        strip = clip.frames[:, -6:].astype(np.float64).mean(axis=(0, 1, 3))  # the 6-cell emotion strip
        cells = [strip[k * 10 : (k + 1) * 10].mean() > 127 for k in range(6)]
        assert cells == [float(erow[e]) > 0 for e in EMOTIONS], cid


def test_mosei_datamodule_makes_the_demo_on_first_use_and_logs_it(tmp_path, caplog):
    demo_dir = tmp_path / "data" / "demo" / "mosei"
    dm = MoseiDataModule(demo_dir=str(demo_dir), demo_clips=(2, 1, 1), batch_size=2, decode_timeout=None)
    with caplog.at_level(logging.INFO):
        dm.prepare_data()
        dm.setup("fit")
    assert "generating the embedded demo dataset (CMU-MOSEI layout, 2/1/1 synthetic clips)" in caplog.text
    assert {s: len(d) for s, d in dm.datasets.items()} == {"train": 2, "valid": 1}
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixel_values"].shape == (2, 8, 3, 224, 224)
    assert batch["audio_values"].shape == (2, 1, 176, 128) and batch["audio_mask"].sum(1).tolist() == [88, 88]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        MoseiDataModule(demo_dir=str(demo_dir), demo_clips=(2, 1, 1)).prepare_data()
    assert "Using the embedded demo dataset (CMU-MOSEI layout)" in caplog.text and "generating" not in caplog.text


def test_demo_dir_that_is_not_a_demo_set_is_never_deleted(tmp_path):
    """A mistaken data.demo_dir pointing at real data must not be wiped by demo generation."""
    precious = tmp_path / "my_data"
    precious.mkdir()
    (precious / "keep.txt").write_text("real data")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        ensure_demo_mosei(precious)
    assert (precious / "keep.txt").read_text() == "real data"
