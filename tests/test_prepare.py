"""python -m datamodules.prepare: CMU-MOSEI segments cut from a synthetic SDK label file (.csd, written with h5py
in the SDK's structure) and generated videos, re-runs that skip finished segments, planted failures; the classify
manifest of a folder tree and of a flat folder with a labels file. Also ClipReader's span mode that cutting uses."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FPS = 10


def gray_video(path: Path, seconds: float, audio: bool = True) -> None:
    """Frame i is uniformly gray at level 8 * i (so a cut's first frame tells where it starts); a 440 Hz tone."""
    from datamodules.demo import write_mp4

    n = int(seconds * FPS)
    frames = np.repeat((np.arange(n, dtype=np.uint8) * 8)[:, None, None, None], 32, axis=1)
    frames = np.ascontiguousarray(np.broadcast_to(frames, (n, 32, 32, 3)))
    tone = None
    if audio:
        t = np.arange(int(seconds * 16000)) / 16000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    write_mp4(path, frames, FPS, audio=tone, audio_rate=16000)


def levels(path: Path) -> list[int]:
    """The gray level of every frame of a video, as multiples of 8 (its frame index in gray_video)."""
    from datamodules.decoding import ClipReader

    clip = ClipReader(num_frames=1000, decode_timeout=None).read(path, audio=None)
    return [int(round(f.mean() / 8)) for f in clip.frames]


def test_span_reads_the_frames_and_audio_of_a_time_window(tmp_path):
    from datamodules.decoding import ClipDecodeError, ClipReader

    video = tmp_path / "v.mp4"
    gray_video(video, 3.0)
    clip = ClipReader(num_frames=1000, decode_timeout=None, sampling_rate=16000).read(
        video, audio="container", mode="span", span=(1.0, 2.0))
    assert clip.indices.tolist() == list(range(10, 20))
    assert [int(round(f.mean() / 8)) for f in clip.frames] == list(range(10, 20))
    assert (clip.start, clip.end) == pytest.approx((1.0, 2.0))
    assert abs(len(clip.waveform) - 16000) <= 160  # the window's second of audio (AAC priming aside)
    few = ClipReader(num_frames=4, decode_timeout=None).read(video, audio=None, mode="span", span=(1.0, 2.0))
    assert few.indices.tolist() == [10, 12, 15, 17]  # uniform among the span's frames
    with pytest.raises(ClipDecodeError, match=r"outside clip \(span \[5.000, 6.000\) s holds no frame") as e:
        ClipReader(num_frames=8, decode_timeout=None).read(video, audio=None, mode="span", span=(5.0, 6.0))
    assert e.value.cause == "outside_clip"


def write_csd(path: Path, videos: dict[str, tuple[list, list]]) -> None:
    """The CMU Multimodal SDK's computational sequence layout: <name>/data/<video>/{intervals, features},
    <name>/metadata."""
    import h5py

    with h5py.File(path, "w") as f:
        root = f.create_group("All Labels")
        data = root.create_group("data")
        for video, (intervals, features) in videos.items():
            g = data.create_group(video)
            g.create_dataset("intervals", data=np.asarray(intervals, dtype=np.float64))
            g.create_dataset("features", data=np.asarray(features, dtype=np.float32))
        root.create_group("metadata").attrs["root name"] = "All Labels"


#           sentiment, happy, sad, anger, surprise, disgust, fear (the SDK's order)
LABEL_A0 = [1.5, 2.0, 0.0, 0.0, 0.5, 0.0, 0.0]
LABEL_A1 = [-1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.5]
LABEL_B0 = [0.5, 0.5, 0.0, 0.0, 0.0, 1.0, 0.0]


def mosei_sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    raw = tmp_path / "raw"
    raw.mkdir()
    gray_video(raw / "vidA.mp4", 3.0)
    gray_video(raw / "vidB.mp4", 2.0)
    (raw / "vidF.mp4").write_bytes(os.urandom(4096))  # planted: not a video
    other = [0.0] * 7
    labels = tmp_path / "CMU_MOSEI_Labels.csd"
    write_csd(labels, {
        "vidA": ([[0.0, 1.0], [1.5, 2.5], [10.0, 11.0]], [LABEL_A0, LABEL_A1, other]),  # the third: outside
        "vidB": ([[0.5, 1.5], [2.0, 1.0]], [LABEL_B0, other]),  # the second: end before start
        "vidC": ([[0.0, 1.0]], [other]),  # planted: no video file
        "vidE": ([[0.0, 1.0]], [other]),  # in no fold
        "vidF": ([[0.0, 1.0]], [other]),
    })
    folds = tmp_path / "cmu_mosei_std_folds.py"  # the SDK's format, read as literals
    folds.write_text("standard_train_fold = ['vidA', 'vidC']\nstandard_valid_fold = ['vidB']\n"
                     "standard_test_fold = ['vidD', 'vidF']\n")
    return labels, raw, folds


def prepare(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "datamodules.prepare", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_prepare_mosei_cuts_labels_and_reports_then_skips_on_rerun(tmp_path):
    labels, raw, folds = mosei_sources(tmp_path)
    out = tmp_path / "mosei"
    args = ["mosei", f"--labels={labels}", f"--videos={raw}", f"--folds={folds}", f"--out={out}", "--workers=2",
            "--decode-timeout=60"]
    proc = prepare(*args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # failures: non-zero exit
    assert (f"{out}: cut 3 segment(s), 0 already done, 5 failed (bad_interval=1, missing_video=1, no_labels=1, "
            f"outside_video=1, undecodable=1; see {out / 'prepare_failures.csv'}); 1 labelled video(s) in no fold"
            ) in proc.stdout, proc.stdout + proc.stderr[-3000:]

    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "emotion_manifest.csv", "labels/label_file_test.csv", "labels/label_file_train.csv", "labels/label_file_valid.csv",
        "labels_emotion/label_file_test.csv", "labels_emotion/label_file_train.csv",
        "labels_emotion/label_file_valid.csv", "prepare_failures.csv",
        "train/audio_wav/vidA_0.wav", "train/audio_wav/vidA_1.wav", "train/video/vidA_0.mp4",
        "train/video/vidA_1.mp4", "valid/audio_wav/vidB_0.wav", "valid/video/vidB_0.mp4"]
    # the frames of each interval (gray level = source frame index), video without audio, 16 kHz mono wav
    assert levels(out / "train" / "video" / "vidA_0.mp4") == list(range(0, 10))
    assert levels(out / "train" / "video" / "vidA_1.mp4") == list(range(15, 25))
    assert levels(out / "valid" / "video" / "vidB_0.mp4") == list(range(5, 15))
    import av
    import soundfile as sf

    with av.open(str(out / "train" / "video" / "vidA_1.mp4")) as c:
        assert [s.type for s in c.streams] == ["video"] and c.streams.video[0].codec_context.name == "h264"
    info = sf.info(str(out / "train" / "audio_wav" / "vidA_1.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert abs(info.frames - 16000) <= 160
    # label files: named columns in this project's emotion order (anger -> angry, from the SDK's order)
    assert read_rows(out / "labels" / "label_file_train.csv") == [
        ["FileName", "sentiment_score"], ["vidA_0", "1.5000"], ["vidA_1", "-1.0000"]]
    assert read_rows(out / "labels_emotion" / "label_file_train.csv") == [
        ["FileName", "sentiment_score", "happy", "sad", "angry", "fear", "disgust", "surprise"],
        ["vidA_0", "1.5000", "2.0000", "0.0000", "0.0000", "0.0000", "0.0000", "0.5000"],
        ["vidA_1", "-1.0000", "0.0000", "1.0000", "2.0000", "1.5000", "0.0000", "0.0000"]]
    assert read_rows(out / "labels_emotion" / "label_file_valid.csv")[1] == [
        "vidB_0", "0.5000", "0.5000", "0.0000", "0.0000", "0.0000", "1.0000", "0.0000"]
    assert read_rows(out / "labels" / "label_file_test.csv") == [["FileName", "sentiment_score"]]
    # the emotions as 0/1 classes (intensity > 0) for experiment=classify
    assert read_rows(out / "emotion_manifest.csv") == [
        ["id", "video", "audio", "split", "happy", "sad", "angry", "fear", "disgust", "surprise"],
        ["vidA_0", "train/video/vidA_0.mp4", "train/audio_wav/vidA_0.wav", "train", "1", "0", "0", "0", "0", "1"],
        ["vidA_1", "train/video/vidA_1.mp4", "train/audio_wav/vidA_1.wav", "train", "0", "1", "1", "1", "0", "0"],
        ["vidB_0", "valid/video/vidB_0.mp4", "valid/audio_wav/vidB_0.wav", "valid", "1", "0", "0", "0", "1", "0"]]
    report = {r[0]: r[1:4] for r in read_rows(out / "prepare_failures.csv")[1:]}
    assert report == {"vidA_2": ["train", "vidA", "outside_video"], "vidC_0": ["train", "vidC", "missing_video"],
                      "vidB_1": ["valid", "vidB", "bad_interval"], "vidD": ["test", "vidD", "no_labels"],
                      "vidF_0": ["test", "vidF", "undecodable"]}

    # a re-run skips the finished segments (files untouched) and reports the same failures
    from datamodules.prepare import prepare_mosei

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    again = prepare_mosei(labels, raw, folds, out, workers=1, decode_timeout=None)
    assert (again["done"], again["skipped"], sum(again["failed"].values())) == (0, 3, 5)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == stamps
    assert len(read_rows(out / "labels" / "label_file_train.csv")) == 3

    # the result is what experiment=mosei reads
    from datamodules.mosei import MoseiDataModule

    dm = MoseiDataModule(root=str(out), task="emotion", num_frames=2, decode_timeout=None, batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert sorted(batch["ids"]) == ["vidA_0", "vidA_1"] and batch["labels"].shape == (2, 6)
    from datamodules.classify import ClassifyDataModule

    dm = ClassifyDataModule(manifest=str(out / "emotion_manifest.csv"), num_frames=1)
    assert dm.model_arguments() == {"classes": ["happy", "sad", "angry", "fear", "disgust", "surprise"],
                                    "multilabel": True}
    assert dm.label_counts("train")[0].tolist() == [1, 1, 1, 1, 0, 1]


def test_prepare_folder_writes_the_manifest_and_lists_problems(tmp_path):
    from datamodules.demo import ClassesDemoSpec, make_demo_classes

    tree = tmp_path / "tree"
    make_demo_classes(tree, ClassesDemoSpec(num_classes=2, num_train=6, num_valid=0, num_test=0, seconds=1.0,
                                            size=32))
    root = tree / "train"  # root/{class}/{clip}.mp4 without split folders
    (root / "drum" / "notes.txt").write_text("not a clip")
    (root / "flute" / "broken.mp4").write_bytes(b"\x00" * 100)
    gray_video(root / "flute" / "silent.mp4", 1.0, audio=False)
    out = tmp_path / "clips.csv"
    proc = prepare("folder", str(root), f"--out={out}", "--val-fraction=0.34", "--test-fraction=0.34",
                   cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{out}: 6 clip(s) of 2 class(es) ['drum', 'flute'] (train 2, valid 2, test 2); 3 problem(s)" \
        in proc.stdout, proc.stdout + proc.stderr
    assert f"{root / 'drum' / 'notes.txt'}: not a video file" in proc.stderr
    assert f"{root / 'flute' / 'broken.mp4'}: empty_file" in proc.stderr or \
        f"{root / 'flute' / 'broken.mp4'}: undecodable" in proc.stderr
    assert f"{root / 'flute' / 'silent.mp4'}: no_audio_stream" in proc.stderr
    rows = read_rows(out)
    assert rows[0] == ["id", "video", "split", "label"] and len(rows) == 7
    assert all(r[0] == f"{r[3]}/{Path(r[1]).stem}" and r[1].startswith(f"tree/train/{r[3]}/") for r in rows[1:])
    assert sorted((r[3], r[2]) for r in rows[1:]) == sorted(
        [(c, s) for c in ("drum", "flute") for s in ("test", "train", "valid")])
    # the manifest trains as is: experiment=classify reads it
    from datamodules.classify import ClassifyDataModule

    dm = ClassifyDataModule(manifest=str(out), num_frames=1, decode_timeout=None)
    assert dm.model_arguments() == {"classes": ["drum", "flute"], "multilabel": False}
    assert len(dm.manifest("train")) == 2

    # a flat folder with a labels file (multi-label columns); a listed file that is missing, an unlisted video
    flat = tmp_path / "flat"
    flat.mkdir()
    videos = sorted(root.rglob("*_train_*.mp4"))
    for i, v in enumerate(videos[:4]):
        (flat / f"c{i}.mp4").symlink_to(v)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,music,speech\nc0.mp4,1,0\nc1.mp4,0,1\nc2.mp4,1,1\ngone.mp4,1,0\n")
    out2 = tmp_path / "tags.csv"
    from datamodules.prepare import prepare_folder

    result = prepare_folder(flat, out2, labels, val_fraction=0.0, test_fraction=0.0)
    assert result["problems"] == [(str(flat / "c3.mp4"), f"video without a label in {labels}"),
                                  (str(flat / "gone.mp4"), f"listed in {labels} line 5 but not found")]
    assert read_rows(out2) == [["id", "video", "split", "music", "speech"], ["c0", "flat/c0.mp4", "train", "1", "0"],
                               ["c1", "flat/c1.mp4", "train", "0", "1"], ["c2", "flat/c2.mp4", "train", "1", "1"]]


def test_prepare_mosei_on_the_real_howto100m_clip(tmp_path, media_dir):
    """A real H.264 + AAC (44.1 kHz) video: two overlapping segments, every frame of each and its audio."""
    import av
    import soundfile as sf

    from datamodules.prepare import prepare_mosei

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "mg7Q4o9bNN0.mp4").symlink_to(media_dir / "mg7Q4o9bNN0_7s-12s.mp4")  # 150 frames at 30 fps
    labels = tmp_path / "labels.csd"
    write_csd(labels, {"mg7Q4o9bNN0": ([[0.5, 2.5], [2.0, 4.9]], [LABEL_A0, LABEL_A1])})
    folds = tmp_path / "folds.json"
    folds.write_text('{"train": ["mg7Q4o9bNN0"], "valid": [], "test": []}')
    summary = prepare_mosei(labels, raw, folds, tmp_path / "out", decode_timeout=None)
    assert (summary["done"], summary["failures"]) == (2, [])
    for i, (frames, seconds) in enumerate([(60, 2.0), (87, 2.9)]):
        with av.open(str(tmp_path / "out" / "train" / "video" / f"mg7Q4o9bNN0_{i}.mp4")) as c:
            stream = c.streams.video[0]
            assert (stream.width, stream.height, len(c.streams.audio)) == (480, 360, 0)
            assert sum(1 for _ in c.decode(stream)) == frames
        info = sf.info(str(tmp_path / "out" / "train" / "audio_wav" / f"mg7Q4o9bNN0_{i}.wav"))
        assert (info.samplerate, info.channels) == (16000, 1) and info.duration == pytest.approx(seconds, abs=0.01)
    # frames read and encoded 0.7 s at a time (5 chunks for the second segment) give the same bytes
    chunked = prepare_mosei(labels, raw, folds, tmp_path / "chunked", decode_timeout=None, chunk_seconds=0.7)
    assert chunked["done"] == 2
    for i in (0, 1):
        name = Path("train") / "video" / f"mg7Q4o9bNN0_{i}.mp4"
        assert (tmp_path / "chunked" / name).read_bytes() == (tmp_path / "out" / name).read_bytes()
