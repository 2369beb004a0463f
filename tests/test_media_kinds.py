"""Real-world kinds of media: the reader returns the frames and audio a player presents, or a named error.

Every file is made here with PyAV (tests/clipmaker.py). Frames show their own index as a bit pattern, so each
returned frame is checked against the one requested; audio is a ramp whose value is the time, so each window's
audio is checked against the frames' window.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from clipmaker import frame_indices, index_frames, ramp, ramp_time, write_video
from datamodules.decoding import ClipDecodeError, ClipReader

SR = 44100
N = 90  # 3 s at 30 fps
GOP = {"x264-params": "bframes=3:keyint=15:min-keyint=15:scenecut=0"}
OPEN_GOP = {"x264-params": "bframes=3:keyint=15:min-keyint=15:scenecut=0:open-gop=1"}

# name -> (file name, write_video keyword arguments, backend expected, first source frame presented)
KINDS = {
    "h264_closed_gop_bframes": ("a.mp4", dict(options=GOP), "decord", 0),
    "h264_open_gop": ("b.mp4", dict(options=OPEN_GOP), "pyav", 0),
    "mpegts_h264": ("c.ts", dict(options=GOP), "pyav", 0),
    "mpegts_h264_open_gop": ("d.ts", dict(options=OPEN_GOP), "pyav", 0),
    "mpegts_mpeg2": ("e.ts", dict(codec="mpeg2video", max_b_frames=2, gop_size=15), "pyav", 0),
    "avi_mpeg4_bframes": ("f.avi", dict(codec="mpeg4", max_b_frames=2, gop_size=15), "pyav", 0),
    "hevc_bframes": ("g.mp4", dict(codec="libx265", options={"x265-params": "bframes=3:keyint=15:log-level=error"}),
                     "pyav", 0),  # fmt: skip
    "av1": ("h.mp4", dict(codec="libsvtav1", options={"preset": "12"}), "pyav", 0),
    "av1_10bit": ("i.mp4", dict(codec="libsvtav1", pix_fmt="yuv420p10le", options={"preset": "12"}), "pyav", 0),
    "edit_list_drops_10": ("j.mp4", dict(options={"x264-params": "keyint=30:scenecut=0"}, shift_frames=10), "pyav",
                           10),  # fmt: skip
    "matroska_h264": ("k.mkv", dict(options=GOP), "pyav", 0),
}


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("kinds")
    out = {}
    for name, (file, kwargs, _, _) in KINDS.items():
        out[name] = d / file
        write_video(out[name], index_frames(N), **kwargs)
    return out


@pytest.fixture(scope="module")
def reader() -> ClipReader:
    return ClipReader(num_frames=8, decode_timeout=None)


@pytest.mark.parametrize("name", list(KINDS))
def test_returned_frames_are_the_requested_frames(kinds, reader, name):
    _, _, backend, first = KINDS[name]
    every = ClipReader(num_frames=N, decode_timeout=None).read(kinds[name], None)
    assert every.num_decodable == N - first
    assert every.indices.tolist() == list(range(N - first))
    assert frame_indices(every.frames) == list(range(first, N)), "all frames, in presentation order"
    assert every.backend == backend
    assert every.fps == pytest.approx(30.0, rel=1e-3)
    for seed in range(6):  # sparse windows: every frame reached by its own seek, leading B-frames included
        clip = reader.read(kinds[name], None, mode="random", window_seconds=1.0, seed=seed)
        assert frame_indices(clip.frames) == (clip.indices + first).tolist(), f"seed {seed}"
        assert clip.end - clip.start == pytest.approx(1.0, abs=1e-3)  # Matroska keeps milliseconds
    uniform = reader.read(kinds[name], None)
    assert frame_indices(uniform.frames) == (uniform.indices + first).tolist()
    assert uniform.frame_times.tolist() == pytest.approx((uniform.indices / 30.0).tolist(), abs=1e-3)


def test_a_stream_cut_mid_gop_starts_at_its_first_keyframe(tmp_path):
    """MPEG-TS whose first 5 packets (its keyframe among them) were cut away, as broadcast captures start: the 25
    frames before the next keyframe cannot be decoded, so the clip starts at that keyframe (frame 30), as ffmpeg's
    output does."""
    import av

    full, cut = tmp_path / "full.ts", tmp_path / "cut.ts"
    write_video(full, index_frames(N), options={"x264-params": "bframes=0:keyint=30:scenecut=0"})
    with av.open(str(full)) as src, av.open(str(cut), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for k, packet in enumerate(src.demux(src.streams.video[0])):
            if packet.size and k >= 5:
                packet.stream = out
                dst.mux(packet)
    clip = ClipReader(num_frames=N, decode_timeout=None).read(cut, None)
    assert clip.num_decodable == 60 and frame_indices(clip.frames) == list(range(30, 90))


def test_the_pyav_path_is_logged_once_per_reason(kinds, caplog):
    reader = ClipReader(num_frames=8, decode_timeout=None)
    with caplog.at_level("INFO", logger="datamodules.decoding"):
        for _ in range(3):
            reader.read(kinds["av1"], None)
            reader.read(kinds["mpegts_h264"], None)
    lines = [r.getMessage() for r in caplog.records if "Decoding" in r.getMessage()]
    assert sum("decord 0.6 has no AV1 decoder" in line for line in lines) <= 1
    assert sum("mpegts container" in line for line in lines) <= 1


def test_edit_list_audio_follows_the_presented_frames(tmp_path):
    """An MP4 whose edit list drops the first 10 frames (a `-c copy` cut): 80 frames, and the audio window is the
    presented one."""
    path = tmp_path / "cut.mp4"
    write_video(path, index_frames(N), shift_frames=10, options={"x264-params": "keyint=30:scenecut=0"})
    clip = ClipReader(num_frames=8, decode_timeout=None).read(path, None)
    assert clip.num_decodable == 80 and clip.end == pytest.approx(80 / 30)
    assert frame_indices(clip.frames) == (clip.indices + 10).tolist()


@pytest.mark.parametrize("default, count, offset", [(0, N, 0), (1, 40, 1000)])
def test_the_video_stream_ffmpeg_picks_gives_frames_and_count(tmp_path, default, count, offset):
    """Two video streams, 96x64 (90 frames) and 160x128 (40 frames): ffmpeg takes the default-disposition one, then
    the larger picture. Frames and count come from that one stream (decord alone would take the larger one)."""
    path = tmp_path / "two.mp4"
    write_video(path, index_frames(N), second_video=index_frames(40, 128, 160, offset=1000), default_video=default)
    import av

    with av.open(str(path)) as c:
        assert [bool(s.disposition & av.stream.Disposition.default) for s in c.streams.video] == [default == 0,
                                                                                                   default == 1]
    clip = ClipReader(num_frames=8, decode_timeout=None).read(path, None)
    assert clip.num_decodable == count and clip.frames.shape[1:] == ((64, 96, 3) if default == 0 else (128, 160, 3))
    assert frame_indices(clip.frames) == (clip.indices + offset).tolist()
    assert clip.backend == "pyav"


def test_variable_frame_rate_windows_last_their_seconds(tmp_path):
    """2 s at 30 fps, then 30 frames at 1 fps: a 3 s window lasts 3 s (up to the next frame) wherever it falls, and
    the audio covers it."""
    times = [i / 30 for i in range(60)] + [2.0 + k for k in range(30)]
    path = tmp_path / "vfr.mov"  # 16-bit PCM audio, so the ramp reads back to the millisecond
    write_video(path, index_frames(90), times=times, audio=ramp(32.0, SR), audio_codec="pcm_s16le")
    reader = ClipReader(num_frames=8, decode_timeout=None)
    for seed in range(12):
        clip = reader.read(path, "container", mode="random", window_seconds=3.0, seed=seed)
        assert frame_indices(clip.frames) == clip.indices.tolist()
        assert 3.0 - 1e-6 <= clip.end - clip.start < 4.0, (seed, clip.start, clip.end)
        assert clip.frame_times.tolist() == pytest.approx([times[i] for i in clip.indices], abs=1e-3)
        assert clip.waveform.shape[0] == pytest.approx((clip.end - clip.start) * SR, abs=2)
        middle = clip.waveform.shape[0] // 2
        assert ramp_time(float(clip.waveform[middle])) == pytest.approx(clip.start + middle / SR, abs=0.002)


@pytest.mark.parametrize("codec, container", [("pcm_s16le", "mov"), ("aac", "mp4")])
def test_late_audio_is_placed_on_the_timeline_with_leading_silence(tmp_path, codec, container):
    """The audio stream starts 2 s after the video: the window [0, 3) s has 2 s of silence, then the audio at its
    own time (it used to be shifted to t = 0)."""
    path = tmp_path / f"late.{container}"
    write_video(path, index_frames(N), audio=ramp(1.0, SR, start=2.0), audio_start=2.0, audio_codec=codec)
    clip = ClipReader(num_frames=8, decode_timeout=None).read(path, "container")
    assert (clip.start, clip.end) == (0.0, pytest.approx(3.0))
    w = clip.waveform
    assert w.shape[0] == pytest.approx(3.0 * SR, abs=2)
    onset = int(np.flatnonzero(np.abs(w) > 0.05)[0]) / SR
    assert onset == pytest.approx(2.0, abs=0.03)  # AAC's 1024-sample priming starts 23 ms early
    rms = [float(np.sqrt(np.mean(w[int(t * SR) : int((t + 0.1) * SR)] ** 2))) for t in (2.1, 2.4, 2.7)]
    assert min(rms) > 0.3  # sound from then on (AAC cannot keep a ramp's level: onset and loudness only)
    if codec == "pcm_s16le":
        for t in (2.3, 2.5, 2.7):
            assert ramp_time(float(w[int(t * SR)])) == pytest.approx(t, abs=0.002)


def test_rotation_policy_frames_come_out_upright_as_players_show_them(tmp_path):
    """A display matrix rotating 90 degrees counter-clockwise: both backends return the rotated (upright) picture,
    as ffmpeg's autorotation and players do."""
    import av

    source = index_frames(12, 64, 96, offset=100)
    for name, options in (("r.mp4", GOP), ("r_open.mp4", OPEN_GOP)):  # decord, then PyAV
        path = tmp_path / name
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
            stream.options = options
            stream.set_display_rotation(90)
            for image in source:
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        clip = ClipReader(num_frames=4, decode_timeout=None).read(path, None)
        assert clip.frames.shape == (4, 96, 64, 3)
        for frame, i in zip(clip.frames, clip.indices):
            assert np.abs(frame.astype(int) - np.rot90(source[i]).astype(int)).mean() < 4, name


def test_coprime_sample_rate_is_resampled_quickly_in_bounded_memory(tmp_path):
    """16001 Hz is co-prime with 44.1 kHz; it used to take 21 s and 12.7 GB for 2 s. Measured in a fresh process,
    through the isolated decoder (so under its timeout), with every other kind read too: peak RSS stays small."""
    wav = tmp_path / "odd.wav"
    sf.write(wav, ramp(2.0, 16001)[0], 16001, subtype="FLOAT")
    video = tmp_path / "v.mp4"
    write_video(video, index_frames(60), options=OPEN_GOP)
    av1 = tmp_path / "v.mkv"
    write_video(av1, index_frames(60), codec="libsvtav1", options={"preset": "12"})
    code = f"""
import json, resource
from datamodules.decoding import ClipReader, _isolated
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = ClipReader(num_frames=8, decode_timeout=20.0)
clip = r.read({str(video)!r}, {str(wav)!r})
r.read({str(av1)!r}, None)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
status = open(f"/proc/{{_isolated().proc.pid}}/status").read()  # the decode process's peak resident set
helper = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
print(json.dumps({{"n": int(clip.waveform.shape[0]), "mid": float(clip.waveform[44100]), "grown_mb": grown / 1024,
                  "helper_mb": helper / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert abs(result["n"] - 2 * SR) <= 2
    assert ramp_time(result["mid"]) == pytest.approx(1.0, abs=0.01)
    # the decode process (PyAV, decord, numpy) and the reader's own growth (resampling) stay far below a GB
    assert result["helper_mb"] < 300 and result["grown_mb"] < 200, result


@pytest.mark.parametrize("bad, detail", [(1e17, "sample magnitude 1e\\+17"), (np.nan, "NaN or infinite")])
def test_audio_that_cannot_be_a_waveform_is_a_named_error(tmp_path, bad, detail):
    wav = tmp_path / "broken.wav"
    audio = np.stack([ramp(1.0, SR)[0], np.full(SR, bad, np.float32)], axis=1)  # one broken channel
    sf.write(wav, audio, SR, subtype="FLOAT")
    video = tmp_path / "v.mp4"
    write_video(video, index_frames(30))
    with pytest.raises(ClipDecodeError, match=detail) as e:
        ClipReader(num_frames=8, decode_timeout=None).read(video, wav)
    assert e.value.cause == "invalid_audio" and e.value.path == str(wav)


@pytest.mark.parametrize("name", ["mg7Q4o9bNN0_7s-12s.mp4", "K0m1tO3Ybyc_2.mp4"])
def test_both_backends_give_identical_pixels_on_real_clips(media_dir, name):
    """Where decord is exact, PyAV's frames are bit-identical to it (same YUV->RGB conversion), so a dataset whose
    files take different backends is preprocessed alike."""
    from datamodules._rawdecode import _pyav_frames, index_video

    path = str(media_dir / name)
    clip = ClipReader(num_frames=8, decode_timeout=None).read(path, None)
    assert clip.backend == "decord"
    pyav = _pyav_frames(path, index_video(path), clip.indices, threads=1)
    np.testing.assert_array_equal(pyav, clip.frames)
