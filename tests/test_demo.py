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


def test_a_demo_set_of_another_kind_is_never_replaced(demo, tmp_path):
    """Retrieval reads the class set: a demo_dir holding the MOSEI-layout set (what retrieval read before) is refused,
    not regenerated under the other datamodules' feet."""
    from datamodules.demo import ClassesDemoSpec, ensure_demo

    before = digest(demo)
    with pytest.raises(FileExistsError, match="another kind of demo set"):
        ensure_demo(demo, ClassesDemoSpec(num_train=4, num_valid=4, num_test=4))
    assert digest(demo) == before


def test_retrieval_demo_pairs_share_their_class_in_frames_and_audio(tmp_path):
    """The retrieval demo's pairs carry their class in both modalities (what the model can match): each test clip
    has its class's tone (300 * 1.5**k Hz, within the generator's 4 % jitter) and its class's hue, and no labels."""
    from datamodules.demo import _CLASS_HUES
    from datamodules.retrieval import RetrievalDataModule

    dm = RetrievalDataModule(demo_dir=str(tmp_path / "retrieval"), demo_clips=(4, 4, 8), decode_timeout=None)
    dm.prepare_data()
    manifest = dm.manifest("test")
    assert manifest.labels is None
    ids = list(manifest.ids)
    assert len(ids) == 8 and sorted({i.split("/")[0] for i in ids}) == ["drum", "flute", "horn", "organ"]
    reader = ClipReader(num_frames=2, decode_timeout=None)
    for clip_id in ids:
        k = ["drum", "flute", "horn", "organ"].index(clip_id.split("/")[0])
        clip = reader.read(tmp_path / "retrieval" / "test" / f"{clip_id}.mp4", audio="container")
        spectrum = np.abs(np.fft.rfft(clip.waveform))
        peak = np.fft.rfftfreq(len(clip.waveform), 1 / clip.sampling_rate)[spectrum.argmax()]
        assert abs(peak / (300.0 * 1.5**k) - 1) < 0.05, (clip_id, peak)
        # the square: the pixels farthest from the grey background are of the class hue (colour jitter 20 per channel)
        pixels = clip.frames[0].reshape(-1, 3).astype(np.float64)
        far = pixels[np.abs(pixels - 110.0).sum(1) > np.quantile(np.abs(pixels - 110.0).sum(1), 0.95)]
        nearest = np.linalg.norm(_CLASS_HUES[:4] - far.mean(0), axis=1).argmin()
        assert nearest == k, (clip_id, far.mean(0))
