"""Test clips whose frames show their own index, written with PyAV (the project's own dependency).

Each frame carries its presentation index as a 12-bit pattern of 16x16 black/white blocks (2 rows of 6), which
survives lossy coding at the qualities used here, so a test can read back which frame a decoder returned
(:func:`frame_index`) and compare it with the one it asked for. Audio is a ramp whose value encodes the time, so a
test can read which instant of the timeline an audio window starts at (:func:`ramp_time`).
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

BLOCK, COLS, ROWS = 16, 6, 2
BITS = COLS * ROWS


def index_frames(n: int, height: int = 64, width: int = 96, offset: int = 0) -> np.ndarray:
    """uint8 (n, height, width, 3): frame i shows ``offset + i`` in its top-left 96x32 pixels."""
    assert height >= ROWS * BLOCK and width >= COLS * BLOCK and offset + n < 2**BITS
    out = np.full((n, height, width, 3), 96, np.uint8)
    for i in range(n):
        value = offset + i
        for bit in range(BITS):
            r, c = divmod(bit, COLS)
            out[i, r * BLOCK : (r + 1) * BLOCK, c * BLOCK : (c + 1) * BLOCK] = 255 if (value >> bit) & 1 else 0
    return out


def frame_index(frame: np.ndarray) -> int:
    """The index a frame of :func:`index_frames` shows, read from the block means (frame: (H, W, 3) uint8)."""
    value = 0
    for bit in range(BITS):
        r, c = divmod(bit, COLS)
        block = frame[r * BLOCK + 3 : (r + 1) * BLOCK - 3, c * BLOCK + 3 : (c + 1) * BLOCK - 3]
        value |= int(block.mean() > 128) << bit
    return value


def frame_indices(frames: np.ndarray) -> list[int]:
    return [frame_index(f) for f in frames]


RAMP_SLOPE = 0.05  # the ramp rises by 0.05 per second from -0.9: values stay inside [-1, 1] for 36 s


def ramp(seconds: float, rate: int, start: float = 0.0) -> np.ndarray:
    """float32 (1, N): sample k has value -0.9 + 0.05 * (start + k / rate), a clock written into the waveform."""
    t = start + np.arange(int(round(seconds * rate))) / rate
    return (-0.9 + RAMP_SLOPE * t).astype(np.float32)[None]


def ramp_time(value: float) -> float:
    """The timeline instant (s) at which :func:`ramp` has ``value`` (16-bit PCM resolves it to 1 ms)."""
    return (value + 0.9) / RAMP_SLOPE


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    *,
    codec: str = "libx264",
    fps: int = 30,
    times: list[float] | None = None,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    max_b_frames: int | None = None,
    gop_size: int | None = None,
    container_options: dict[str, str] | None = None,
    audio: np.ndarray | None = None,
    audio_rate: int = 44100,
    audio_start: float = 0.0,
    audio_codec: str = "aac",
    second_video: np.ndarray | None = None,
    default_video: int = 0,
    shift_frames: int = 0,
) -> None:
    """Encode ``frames`` (uint8 (T, H, W, 3)) with PyAV.

    times: presentation time of each frame in seconds (variable frame rate); default ``i / fps``.
    audio: float32 (C, N) placed at ``audio_start`` seconds on the timeline.
    second_video: frames of a second video stream, added after the first (stream order: first, second, audio);
        ``default_video`` (0 or 1) is the one marked with the default disposition.
    shift_frames: timestamps of every packet are moved back by this many frame durations, so the first
        ``shift_frames`` frames lie before t = 0; the MP4 muxer then writes an edit list that drops them, as a
        ``-c copy`` cut does (only for constant ``fps``, with no audio).
    """
    tb = Fraction(1, fps * 1000) if times is not None else Fraction(1, fps)
    with av.open(str(path), "w", options=container_options or {}) as container:
        streams = []
        for video in (frames, second_video):
            if video is None:
                continue
            stream = container.add_stream(codec, rate=fps)
            stream.height, stream.width = video.shape[1], video.shape[2]
            stream.pix_fmt = pix_fmt
            stream.time_base = tb
            stream.codec_context.time_base = tb
            stream.codec_context.thread_count = 1
            if options:
                stream.options = dict(options)
            if max_b_frames is not None:
                stream.codec_context.max_b_frames = max_b_frames
            if gop_size is not None:
                stream.codec_context.gop_size = gop_size
            if second_video is not None:
                default = len(streams) == default_video
                stream.disposition = av.stream.Disposition.default if default else av.stream.Disposition(0)
            streams.append((stream, video))
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream(audio_codec, rate=audio_rate)
            audio_stream.layout = "stereo" if audio.shape[0] == 2 else "mono"
            audio_stream.time_base = Fraction(1, audio_rate)
        for stream, video in streams:
            for i, image in enumerate(video):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = int(round(times[i] / tb)) if times is not None else i
                frame.time_base = tb
                for packet in stream.encode(frame):
                    _mux(container, packet, shift_frames)
            for packet in stream.encode():
                _mux(container, packet, shift_frames)
        if audio_stream is not None:
            fmt = "fltp" if audio_codec == "aac" else "s16"
            data = np.ascontiguousarray(audio, dtype=np.float32)
            if fmt == "s16":
                data = np.ascontiguousarray((np.clip(data, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1))
            chunk = av.AudioFrame.from_ndarray(data, format=fmt, layout=audio_stream.layout.name)
            chunk.sample_rate = audio_rate
            chunk.pts = int(round(audio_start * audio_rate))
            chunk.time_base = Fraction(1, audio_rate)
            for packet in audio_stream.encode(chunk):
                container.mux(packet)
            for packet in audio_stream.encode():
                container.mux(packet)


def _mux(container, packet, shift_frames: int) -> None:
    if shift_frames and packet.pts is not None:
        packet.pts -= shift_frames
        packet.dts -= shift_frames
    container.mux(packet)
