"""Raw clip decoding: probe with PyAV, frames with decord, audio window from a sidecar file or the container.

This module imports neither torch nor the rest of the package, so it can run cheaply in the isolated decode process
that :class:`datamodules.decoding.ClipReader` starts (decord can hang in native code while holding the GIL, see
dmlc/decord#269, #373, #375; only a separate process that can be killed makes such a hang a bounded failure).

The output is what the file holds: uint8 RGB frames at the stored resolution and float32 audio at the stored rate
and channel count, cut to the frames' time window. Mono mixing and resampling to 44.1 kHz happen in
:mod:`datamodules.decoding` with torchaudio.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import sys
from dataclasses import dataclass

import numpy as np

from datamodules.sampling import sample_frames

__all__ = ["ClipDecodeError", "CAUSES", "RawRequest", "RawClip", "read_raw", "serve"]

#: Failure causes, the keys of the skip counters.
CAUSES = (
    "missing_file",  # the video or the sidecar audio file does not exist
    "empty_file",  # a zero-byte file
    "no_video_stream",  # the container has no video stream
    "no_audio_stream",  # audio from the container was requested and it has no (such) audio stream
    "truncated",  # the file ends before the data its header announces
    "undecodable",  # any other demuxer or decoder failure (corrupt data, unknown format)
    "timeout",  # decoding did not finish within decode_timeout seconds
    "audio_too_short",  # the audio in the clip's time window is shorter than the minimum
)


class ClipDecodeError(RuntimeError):
    """A clip could not be read. ``path`` is the offending file, ``cause`` one of :data:`CAUSES`."""

    def __init__(self, path: str, cause: str, detail: str = "") -> None:
        if cause not in CAUSES:
            raise ValueError(f"unknown decode failure cause {cause!r}")
        self.path, self.cause, self.detail = str(path), cause, detail
        super().__init__(f"{path}: {cause.replace('_', ' ')}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):
        return (ClipDecodeError, (self.path, self.cause, self.detail))


@dataclass(frozen=True)
class RawRequest:
    """What to read. ``audio`` is ``None`` (no audio), ``"container"`` (the video file's audio stream number
    ``audio_stream``) or the path of a sidecar wav/flac."""

    video: str
    audio: str | None
    num_frames: int
    mode: str = "uniform"  # "uniform" | "random"
    window_seconds: float | None = None
    jitter: bool = True
    seed: int | None = None
    decoder_threads: int = 1
    audio_stream: int = 0


@dataclass
class RawClip:
    frames: np.ndarray  # uint8 (T, H, W, 3) RGB
    indices: np.ndarray  # int64 (T,) decoded frame indices
    num_decodable: int  # frames that can be decoded (<= the header's count)
    fps: float
    start: float  # seconds, window start relative to the first frame
    end: float  # seconds, window end (exclusive)
    audio: np.ndarray | None  # float32 (C, N) at audio_rate, cut to [start, end)
    audio_rate: int | None


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise ClipDecodeError(path, "missing_file")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ClipDecodeError(path, "empty_file")


def probe(path: str) -> tuple[int, int, float, float, bool]:
    """Open ``path`` with PyAV without decoding: (decodable frame count, header frame count, fps, video start in s,
    has audio).

    The count is the number of non-empty video packets actually present in the file (one per frame for the codecs
    decord reads), which is what a decoder can reach; headers can over-report it (the shared HowTo100M sample
    claims 12,633 frames and holds 1,753) or a truncated file can end early.
    """
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ClipDecodeError(path, "no_video_stream")
            stream = container.streams.video[0]
            header = int(stream.frames or 0)
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            has_audio = bool(container.streams.audio)
            packets = sum(1 for p in container.demux(stream) if p.size > 0)
    except ClipDecodeError:
        raise
    except av.error.FFmpegError as e:
        raise ClipDecodeError(path, "undecodable", _short(e)) from None
    if packets == 0:
        raise ClipDecodeError(path, "truncated" if header > 0 else "undecodable", "no video packets")
    return packets, header, fps, start, has_audio


def read_raw(req: RawRequest) -> RawClip:
    """Decode the frames chosen by the request's sampling and the audio of their time window."""
    import decord

    _check_file(req.video)
    if req.audio not in (None, "container"):
        _check_file(req.audio)
    packets, header, fps_probe, video_start, has_audio = probe(req.video)
    if req.audio == "container" and not has_audio:
        raise ClipDecodeError(req.video, "no_audio_stream", "audio from the container was requested")
    try:
        vr = decord.VideoReader(req.video, ctx=decord.cpu(0), num_threads=req.decoder_threads)
        n = min(len(vr), packets)
        fps = float(vr.get_avg_fps()) or fps_probe
        window = None if req.window_seconds is None else max(1, int(round(req.window_seconds * fps)))
        sample = sample_frames(n, req.num_frames, req.mode, window, req.seed, req.jitter)
        ts = vr.get_frame_timestamp([0, sample.first, sample.stop - 1])
        try:
            frames = vr.get_batch(sample.indices.tolist()).asnumpy()
        except decord.DECORDError as e:
            # decord 0.6.0 returns 4-channel rows for some frame widths (48, 72, ...) and then fails to copy them
            # ("The size must exactly match"); PyAV decodes those files correctly.
            if "size must exactly match" not in str(e):
                raise
            frames = _pyav_frames(req.video, sample.indices)
    except decord.DECORDError as e:
        message = str(e)
        cause = "truncated" if "partial file" in message or packets < header else "undecodable"
        raise ClipDecodeError(req.video, cause, _short(message)) from None
    finally:
        vr = None  # release the reader (and its decoding threads) before reading audio
    if frames.ndim != 4 or frames.shape[0] != len(sample.indices) or frames.shape[-1] != 3:
        raise ClipDecodeError(req.video, "undecodable", f"decoder returned frames of shape {frames.shape}")
    start, end = float(ts[1, 0] - ts[0, 0]), float(ts[2, 1] - ts[0, 0])
    audio, rate = None, None
    if req.audio == "container":
        audio, rate = _container_audio(req.video, req.audio_stream, video_start + start, video_start + end)
    elif req.audio is not None:
        audio, rate = _sidecar_audio(req.audio, start, end)
    return RawClip(frames, sample.indices, n, fps, start, end, audio, rate)


def _pyav_frames(path: str, indices: np.ndarray) -> np.ndarray:
    """Frames ``indices`` (sorted, in decode order) as uint8 RGB (T, H, W, 3), by decoding from the start."""
    import av

    wanted = set(int(i) for i in indices)
    out = []
    try:
        with av.open(path) as container:
            for k, frame in enumerate(container.decode(video=0)):
                if k in wanted:
                    out.append(frame.to_ndarray(format="rgb24"))
                if k >= indices[-1]:
                    break
    except av.error.FFmpegError as e:
        raise ClipDecodeError(path, "undecodable", _short(e)) from None
    if len(out) != len(indices):
        raise ClipDecodeError(path, "truncated", f"decoded {len(out)} of the {len(indices)} requested frames")
    return np.stack(out)


def _sidecar_audio(path: str, start: float, end: float) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            first = min(int(round(start * rate)), f.frames)
            stop = min(int(round(end * rate)), f.frames)
            f.seek(first)
            data = f.read(stop - first, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise ClipDecodeError(path, "undecodable", _short(e)) from None
    return np.ascontiguousarray(data.T), rate


def _container_audio(path: str, index: int, start: float, end: float) -> tuple[np.ndarray, int]:
    """Audio stream ``index`` of ``path`` over [start, end) seconds (container timeline), as float32 (C, N)."""
    import av

    try:
        with av.open(path) as container:
            if index >= len(container.streams.audio):
                raise ClipDecodeError(
                    path, "no_audio_stream", f"audio stream {index} requested, file has {len(container.streams.audio)}"
                )
            stream = container.streams.audio[index]
            rate = int(stream.rate)
            to_planar = av.AudioResampler(format="fltp")  # format conversion only: same layout and rate
            if start > 1.0:
                container.seek(int(max(0.0, start - 0.5) / stream.time_base), stream=stream, backward=True)
            chunks, first_time = [], None
            for frame in container.decode(stream):
                if frame.time is not None and frame.time >= end:
                    break
                for planar in to_planar.resample(frame):
                    if first_time is None:
                        first_time = frame.time if frame.time is not None else 0.0
                    chunks.append(planar.to_ndarray())
    except ClipDecodeError:
        raise
    except av.error.FFmpegError as e:
        raise ClipDecodeError(path, "undecodable", f"audio stream: {_short(e)}") from None
    if not chunks:
        return np.zeros((1, 0), np.float32), rate
    audio = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    skip = max(0, int(round((start - first_time) * rate)))
    stop = max(skip, int(round((end - first_time) * rate)))
    return np.ascontiguousarray(audio[:, skip:stop]), rate


def _short(e: object, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "..."


# ----------------------------------------------------------------------------------------------------------------
# Isolated decode process: length-prefixed pickles over two pipes.

_HEADER = struct.Struct("<Q")


def send(fd: int, obj: object) -> None:
    data = pickle.dumps(obj, protocol=5)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def recv(fd: int, deadline: float | None = None) -> object:
    """Read one message; raise TimeoutError past ``deadline`` (time.monotonic()) and EOFError on a closed pipe."""
    header = _read_exact(fd, _HEADER.size, deadline)
    return pickle.loads(_read_exact(fd, _HEADER.unpack(header)[0], deadline))


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    import time

    buf = bytearray()
    while len(buf) < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(size - len(buf), 1 << 22))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def serve(in_fd: int, out_fd: int) -> None:
    """Child main loop: answer each RawRequest with ("ok", RawClip) or ("error", ClipDecodeError)."""
    send(out_fd, "ready")
    while True:
        try:
            req = recv(in_fd)
        except EOFError:  # the parent closed the pipe or exited
            return
        try:
            reply = ("ok", read_raw(req))
        except ClipDecodeError as e:
            reply = ("error", e)
        except Exception as e:  # noqa: BLE001 - any other failure of a third-party decoder is reported, not fatal
            reply = ("error", ClipDecodeError(req.video, "undecodable", f"{type(e).__name__}: {_short(e)}"))
        send(out_fd, reply)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
