"""Clip decoding: shapes, masks and named errors on generated edge-case clips and the real media in tests/data."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from datamodules.collate import TvltCollator
from datamodules.datasets import ClipDataset
from datamodules.decoding import ClipDecodeError, ClipReader
from datamodules.demo import write_mp4
from datamodules.manifests import Row, build_manifest
from datamodules.sampling import random_window_indices, uniform_indices
from tvlt.feature_extraction import TvltFeatureExtractor
from tvlt.image_processing import TvltImageProcessor

MEDIA = Path(__file__).resolve().parent / "data"  # real clips shipped with the tests (tests/data/README.md)
SR = 44100


def media(name: str) -> Path:
    path = MEDIA / name
    if not path.is_file():
        raise FileNotFoundError(f"test media missing: {path}")
    return path


def frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def tone(seconds: float, rate: int = SR, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    y = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([y] * channels).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    out = {}

    def make(name: str, video: np.ndarray, fps: float, audio=None, rate=SR, **kw) -> None:
        out[name] = d / f"{name}.mp4"
        write_mp4(out[name], video, fps, audio=audio, audio_rate=rate, **kw)

    make("normal", frames(20), 10, tone(2.0))  # 2 s
    make("short", frames(3), 10, tone(0.3))  # fewer frames than num_frames
    make("tiny", frames(2), 10, tone(0.2))  # 0.2 s
    make("silent_video", frames(10), 10)  # no audio stream
    make("stereo48k", frames(10), 10, tone(1.0, 48000, 2), rate=48000)
    make("portrait", frames(6, 96, 48), 10, tone(0.6))
    make("gray", frames(6)[..., 0], 10, tone(0.6))
    make("faststart", frames(30), 10, tone(3.0), faststart=True)
    data = out["faststart"].read_bytes()  # index first: the first half still plays
    out["cut_faststart"] = d / "cut_faststart.mp4"
    out["cut_faststart"].write_bytes(data[: len(data) // 2])
    make("index_last", frames(30), 10, tone(3.0))  # index (moov) last: cut short, nothing can be found
    data = out["index_last"].read_bytes()
    out["truncated"] = d / "truncated.mp4"
    out["truncated"].write_bytes(data[: len(data) // 2])
    corrupt = bytearray(out["normal"].read_bytes())
    rng = np.random.default_rng(0)
    corrupt[len(corrupt) // 3 : len(corrupt) // 3 + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    out["corrupt"] = d / "corrupt.mp4"
    out["corrupt"].write_bytes(bytes(corrupt))
    out["empty"] = d / "empty.mp4"
    out["empty"].write_bytes(b"")
    out["garbage"] = d / "garbage.mp4"
    out["garbage"].write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    out["wav48k_stereo"] = d / "stereo.wav"
    left, right = tone(1.0, 48000)[0], tone(1.0, 48000, freq=1000.0)[0] * 0.5
    sf.write(out["wav48k_stereo"], np.stack([left, right], axis=1), 48000, subtype="FLOAT")
    out["wav_silent_video"] = d / "silent_video.wav"
    sf.write(out["wav_silent_video"], tone(1.0, 16000)[0], 16000, subtype="FLOAT")
    return out


@pytest.fixture(scope="module")
def reader() -> ClipReader:
    return ClipReader(num_frames=8, decode_timeout=30.0)


@pytest.fixture(scope="module")
def processors():
    return TvltImageProcessor(), TvltFeatureExtractor()


def process(clip, processors):
    ip, fe = processors
    pv = ip(clip.frames, return_tensors="pt")
    au = fe(clip.waveform, sampling_rate=clip.sampling_rate, return_tensors="pt")
    return pv, au


# ------------------------------------------------------------------------------------------------ sampling


def test_uniform_indices_match_the_original_rule_and_never_exceed_the_clip():
    assert uniform_indices(149, 8).indices.tolist() == [0, 18, 37, 55, 74, 93, 111, 130]
    assert uniform_indices(3, 8).indices.tolist() == [0, 1, 2]
    assert uniform_indices(1, 8).indices.tolist() == [0]
    with pytest.raises(ValueError, match="at least one decodable frame"):
        uniform_indices(0, 8)


def test_random_windows_stay_inside_the_clip_and_are_sorted_and_unique():
    for n, window in [(5, None), (8, 4), (100, 30), (1753, 447), (9, 9)]:
        for seed in range(30):
            s = random_window_indices(n, 8, window, np.random.default_rng(seed))
            idx = s.indices
            assert 0 <= s.first <= idx.min() and idx.max() < s.stop <= n
            assert np.all(np.diff(idx) > 0)
            assert len(idx) == min(8, n if window is None else min(window, n))


# ------------------------------------------------------------------------------------------------ good clips


def test_normal_clip_shapes_window_and_audio_length(clips, reader, processors):
    clip = reader.read(clips["normal"], "container")
    assert clip.frames.shape == (8, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.indices.tolist() == [0, 2, 5, 7, 10, 12, 15, 17]
    assert (clip.start, round(clip.end, 4)) == (0.0, 2.0)
    assert clip.waveform.dtype == np.float32 and clip.waveform.shape == (88200,)
    pv, au = process(clip, processors)
    assert pv["pixel_values"].shape == (1, 8, 3, 224, 224)
    assert int(pv["pixel_mask"].sum()) == 8 * 196
    # hf extractor: 88200 // 512 = 172 frames -> padded to 176 = 11 patches x 8 frequency patches
    assert au["audio_values"].shape == (1, 1, 176, 128) and int(au["audio_mask"].sum()) == 88


def test_clip_shorter_than_num_frames_gives_its_frames_once_and_a_matching_mask(clips, reader, processors):
    clip = reader.read(clips["short"], "container")
    assert clip.frames.shape[0] == 3 and clip.indices.tolist() == [0, 1, 2]
    collate = TvltCollator(196, 0.0, 0.0)
    long_clip = reader.read(clips["normal"], "container")
    items = []
    for c in (clip, long_clip):
        pv, au = process(c, processors)
        items.append({"id": "x", "pixel_values": pv["pixel_values"][0], "audio_values": au["audio_values"][0],
                      "audio_patches": int(au["audio_mask"].sum())})  # fmt: skip
    batch = collate(items)
    assert batch["pixel_values"].shape == (2, 8, 3, 224, 224)
    assert batch["pixel_mask"].sum(1).tolist() == [3 * 196, 8 * 196]
    assert batch["pixel_mask"][0, : 3 * 196].all() and not batch["pixel_mask"][0, 3 * 196 :].any()
    assert torch.all(batch["pixel_values"][0, 3:] == 0.0)


def test_tiny_clip_of_0_2_s(clips, reader, processors):
    clip = reader.read(clips["tiny"], "container")
    assert clip.frames.shape[0] == 2
    assert clip.waveform.shape == (8820,)  # 0.2 s at 44.1 kHz
    _, au = process(clip, processors)
    # 8820 // 512 = 17 frames -> 2 time patches
    assert au["audio_values"].shape == (1, 1, 32, 128) and int(au["audio_mask"].sum()) == 16


def test_too_little_audio_is_a_named_error(clips):
    strict = ClipReader(num_frames=8, decode_timeout=None, min_audio_samples=10_000)
    with pytest.raises(ClipDecodeError, match="audio too short") as e:
        strict.read(clips["tiny"], "container")
    assert e.value.cause == "audio_too_short" and str(clips["tiny"]) in str(e.value)


def test_video_without_audio_stream(clips, reader):
    with pytest.raises(ClipDecodeError) as e:
        reader.read(clips["silent_video"], "container")
    assert e.value.cause == "no_audio_stream" and e.value.path == str(clips["silent_video"])
    assert "no audio stream" in str(e.value)
    clip = reader.read(clips["silent_video"], clips["wav_silent_video"])  # a sidecar wav works
    assert clip.frames.shape[0] == 8 and clip.waveform.shape == (44100,)
    assert reader.read(clips["silent_video"], None).waveform is None


def test_requested_audio_stream_index_missing(clips, reader):
    with pytest.raises(ClipDecodeError, match="audio stream 1 requested, file has 1") as e:
        reader.read(clips["normal"], "container", audio_stream=1)
    assert e.value.cause == "no_audio_stream"


def test_stereo_48k_is_mixed_to_mono_and_resampled_to_44_1k(clips, reader):
    clip = reader.read(clips["silent_video"], clips["wav48k_stereo"])
    assert clip.sampling_rate == SR and clip.waveform.shape == (44100,)
    left, right = tone(1.0, 48000)[0], tone(1.0, 48000, freq=1000.0)[0] * 0.5
    expected = AF.resample(torch.from_numpy((left + right) / 2), 48000, SR).numpy()
    np.testing.assert_allclose(clip.waveform, expected, atol=1e-5)
    container = reader.read(clips["stereo48k"], "container")  # AAC stereo 48 kHz in the mp4
    assert container.waveform.shape == (44100,)
    rms = float(np.sqrt(np.mean(container.waveform[4410:-4410] ** 2)))
    assert abs(rms - 0.5 / np.sqrt(2)) < 0.03  # both channels carry the same 0.5-amplitude tone


def test_portrait_and_grayscale_clips(clips, reader, processors):
    portrait = reader.read(clips["portrait"], "container")
    assert portrait.frames.shape == (6, 96, 48, 3)
    pv, _ = process(portrait, processors)
    assert pv["pixel_values"].shape == (1, 6, 3, 224, 224) and int(pv["pixel_mask"].sum()) == 6 * 196
    gray = reader.read(clips["gray"], "container")
    assert gray.frames.shape == (6, 48, 64, 3)
    assert np.array_equal(gray.frames[..., 0], gray.frames[..., 1])
    assert np.array_equal(gray.frames[..., 0], gray.frames[..., 2])
    pv, _ = process(gray, processors)
    assert pv["pixel_values"].shape == (1, 6, 3, 224, 224)


# ------------------------------------------------------------------------------------------------ bad files


@pytest.mark.parametrize(
    "name, cause",
    [("empty", "empty_file"), ("truncated", "truncated"), ("corrupt", "undecodable"), ("garbage", "undecodable")],
)
def test_bad_files_raise_named_errors(clips, reader, name, cause):
    with pytest.raises(ClipDecodeError) as e:
        reader.read(clips[name], None)
    assert e.value.cause == cause
    assert str(e.value).startswith(f"{clips[name]}: {cause.replace('_', ' ')}")


def test_a_file_cut_short_is_truncated_with_what_its_header_says(clips, reader):
    with pytest.raises(ClipDecodeError) as e:
        reader.read(clips["truncated"], None)
    # the mdat box announces more bytes than the file has: the index after it was never written
    assert e.value.cause == "truncated" and re.search(r"box 'mdat' at byte \d+ announces \d+ bytes", str(e.value))


def test_a_file_cut_short_after_its_index_plays_the_frames_it_holds(clips, reader, caplog):
    with caplog.at_level("WARNING", logger="datamodules.decoding"):
        clip = reader.read(clips["cut_faststart"], None)
    assert 5 < clip.num_decodable < 30 and clip.frames.shape[0] == 8 and clip.indices.max() < clip.num_decodable
    assert f"{clips['cut_faststart']} is cut short" in caplog.text


def test_missing_video_and_missing_sidecar(clips, reader, tmp_path):
    with pytest.raises(ClipDecodeError, match="missing file") as e:
        reader.read(tmp_path / "nope.mp4", None)
    assert e.value.path == str(tmp_path / "nope.mp4")
    with pytest.raises(ClipDecodeError) as e:
        reader.read(clips["normal"], tmp_path / "nope.wav")
    assert e.value.cause == "missing_file" and e.value.path == str(tmp_path / "nope.wav")


def test_a_hanging_decode_times_out_and_the_next_decode_works(clips, tmp_path):
    fifo = tmp_path / "hang.mp4"
    os.mkfifo(fifo)  # opening a FIFO without a writer blocks forever: a real hang inside the decoder
    reader = ClipReader(num_frames=8, decode_timeout=1.5)
    with pytest.raises(ClipDecodeError, match="timeout") as e:
        reader.read(fifo, None)
    assert e.value.cause == "timeout" and e.value.path == str(fifo)
    assert reader.read(clips["normal"], "container").frames.shape[0] == 8


def test_skip_mode_counts_each_cause(clips, reader, processors):
    names = ["normal", "empty", "truncated", "corrupt", "silent_video", "short"]
    rows = [Row(n, str(clips[n]), "container", 0.5, "m.csv", i + 2) for i, n in enumerate(names)]
    manifest = build_manifest(rows, "edge", (-3, 3))
    ip, fe = processors
    ds = ClipDataset(manifest, reader, ip, fe, on_error="skip", label_transform=torch.tensor)
    batch = TvltCollator(196, 0.0, 0.0)([ds[i] for i in range(len(ds))])
    assert batch["ids"] == ["normal", "short"]
    assert sorted(batch["skipped"]) == sorted(
        [("empty", "empty_file"), ("truncated", "truncated"), ("corrupt", "undecodable"),
         ("silent_video", "no_audio_stream")]
    )  # fmt: skip
    assert batch["labels"].tolist() == [0.5, 0.5]
    raising = ClipDataset(manifest, reader, ip, fe, on_error="raise")
    with pytest.raises(ClipDecodeError, match="empty file"):
        raising[1]


# ------------------------------------------------------------------------------------------------ real media


def test_truncated_download_keeps_the_frames_it_holds(reader, tmp_path):
    # Like the release's mg7Q4o9bNN0.mp4, whose header claims 12,633 frames (421 s) and which holds 1,753 (58 s): a
    # faststart copy of the real cut (index first, 150 frames announced), cut short after 60 % of its bytes.
    data = media("mg7Q4o9bNN0_7s-12s.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    clip = reader.read(cut, "container", mode="random", window_seconds=2.0, seed=3)
    assert 60 < clip.num_decodable < 150
    assert clip.indices.max() < clip.num_decodable and clip.frames.shape == (8, 360, 480, 3)
    assert clip.end - clip.start == pytest.approx(2.0, abs=0.05)
    assert clip.waveform.shape[0] == pytest.approx(2.0 * SR, abs=0.05 * SR)


def test_mosei_sample_with_sidecar_wav_matches_the_reference_shapes(reader):
    clip = reader.read(media("K0m1tO3Ybyc_2.mp4"), media("K0m1tO3Ybyc_2.wav"))
    assert clip.frames.shape == (8, 126, 126, 3) and clip.num_decodable == 149
    assert clip.waveform.shape == (217455,)  # 78,895 samples at 16 kHz -> 44.1 kHz
    original = TvltFeatureExtractor(mode="original")(clip.waveform, sampling_rate=SR, return_tensors="pt")
    assert original["audio_values"].shape == (1, 1, 432, 128)  # the original release's notebook value


def test_decode_process_is_recycled_after_a_number_of_decodes(clips, monkeypatch):
    import datamodules.decoding as decoding

    monkeypatch.setattr(decoding, "RECYCLE_AFTER", 2)
    reader = ClipReader(num_frames=8, decode_timeout=30.0)
    pids = []
    for _ in range(3):
        assert reader.read(clips["tiny"], "container").frames.shape[0] == 2
        pids.append(decoding._isolated().proc.pid)
    assert pids[0] == pids[1] != pids[2]
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # the old helper was killed and reaped


def test_uniform_frame_rule_has_one_owner():
    """The decoder's evaluation frames and the image processor's subsampling are the same function."""
    import datamodules.sampling
    import tvlt.image_processing
    from tvlt.frames import uniform_frame_indices

    assert uniform_frame_indices(20, 8).tolist() == [0, 2, 5, 7, 10, 12, 15, 17]  # floor(k * 20 / 8)
    assert uniform_frame_indices(2, 8).tolist() == [0, 1] and uniform_frame_indices(0, 8).tolist() == []
    with pytest.raises(ValueError, match="num_frames >= 1, got 5 and 0"):
        uniform_frame_indices(5, 0)
    assert datamodules.sampling.uniform_frame_indices is tvlt.image_processing.uniform_frame_indices
