"""Raw clip decoding: index with PyAV, frames with decord where it is exact (else PyAV), audio on the same timeline.

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
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from datamodules.sampling import sample_frames

__all__ = ["ClipDecodeError", "CAUSES", "RawRequest", "RawClip", "VideoIndex", "index_video", "read_raw", "serve"]

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
    "invalid_audio",  # the audio holds non-finite samples or magnitudes no waveform has
    "outside_clip",  # the requested time span holds no frame of the clip
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
    mode: str = "uniform"  # "uniform" | "random" | "span"
    window_seconds: float | None = None
    jitter: bool = True
    seed: int | None = None
    decoder_threads: int = 1
    audio_stream: int = 0
    span: tuple[float, float] | None = None  # mode "span": (start, end) seconds from the first presented frame


@dataclass
class RawClip:
    frames: np.ndarray  # uint8 (T, H, W, 3) RGB, upright
    indices: np.ndarray  # int64 (T,) indices of the returned frames among the presented frames
    num_decodable: int  # frames a player presents (<= the header's count)
    fps: float  # average rate of the presented frames
    start: float  # seconds, window start relative to the first presented frame
    end: float  # seconds, window end (exclusive)
    audio: np.ndarray | None  # float32 (C, N) at audio_rate, cut to [start, end)
    audio_rate: int | None
    frame_times: np.ndarray | None = None  # float64 (T,) presentation times of the frames, relative like start
    backend: str = "decord"  # "decord" or "pyav": which decoder produced the frames
    backend_reason: str = ""  # why PyAV was used ("" with decord)
    truncated: str = ""  # why the file is known to be cut short ("" if it is not)


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise ClipDecodeError(path, "missing_file")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ClipDecodeError(path, "empty_file")


# ----------------------------------------------------------------------------------------------------------------
# The presentation index of a video: which frames a player shows, when, and where decoding each one must start.

#: Containers in which decord's random access was found frame-accurate (given the per-file checks of
#: :func:`index_video`). In MPEG-TS, AVI and MPEG-PS it returns other frames than the requested ones.
DECORD_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"})
#: Frames decoded past the last requested one before a seek counts as missed (the H.264/HEVC reorder depth is <= 16).
_REORDER_SLACK = 32
_INDEX_CACHE: OrderedDict = OrderedDict()
#: Frames indexed in the per-process cache at most (24 bytes each: about 50 MB), oldest files evicted first.
_INDEX_CACHE_FRAMES = 2_000_000
_INDEX_CACHED_FRAMES = 0


@dataclass(frozen=True)
class VideoIndex:
    """The frames a player presents from the video stream FFmpeg picks, in presentation order.

    ``pts`` (int64 (n,), stream time base) and ``times`` (float64 (n,), seconds on the container timeline) are
    increasing; ``seek[i]`` is the timestamp to seek to so that decoding forward reaches frame ``i`` correctly (the
    decode timestamp of the last keyframe before it in decode order that is not presented after it, so open-GOP
    leading frames are decoded from the previous keyframe). ``end_time`` is when the last frame stops being shown.
    Frames that an edit list drops are not part of the index. ``decord_reason`` is empty when decord reads this file
    frame-accurately, else why it does not. With ``exact_pts`` False (timestamps missing or repeated) frames are
    counted in decoder output order instead, and reached by decoding from the start.
    """

    stream: int
    pts: np.ndarray
    seek: np.ndarray
    times: np.ndarray
    end_time: float
    header_frames: int
    audio_streams: int
    decord_reason: str
    exact_pts: bool = True
    truncated: str = ""  # why the file is known to be cut short ("" if it is not)

    @property
    def n(self) -> int:
        return len(self.pts)

    @property
    def fps(self) -> float:
        """Average frame rate over the presented frames (Hz)."""
        span = self.end_time - float(self.times[0])
        return self.n / span if span > 0 else 0.0


def _pick_video_stream(container, path: str):
    """The video stream ffmpeg's automatic selection takes: the default-disposition one first, then the largest
    picture; cover art (attached pictures) only when nothing else is there."""
    import av

    attached = av.stream.Disposition.attached_pic
    default = av.stream.Disposition.default
    videos = list(container.streams.video)
    if not videos:
        raise ClipDecodeError(path, "no_video_stream")

    def score(s) -> int:
        if s.disposition & attached:
            return 1
        return s.codec_context.width * s.codec_context.height + 5_000_000 * bool(s.disposition & default)

    return max(videos, key=score)  # max keeps the first of equal scores, as ffmpeg does


def index_video(path: str) -> VideoIndex:
    """Demux (without decoding) the video stream of ``path`` into a :class:`VideoIndex`; cached per process by path,
    size and modification time.

    Raises:
        ClipDecodeError: ``no_video_stream``, ``truncated`` (the container's own sizes say the file is cut short),
            ``undecodable``.
    """
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key in _INDEX_CACHE:
        _INDEX_CACHE.move_to_end(key)
        return _INDEX_CACHE[key]
    global _INDEX_CACHED_FRAMES
    index = _build_index(path)
    _INDEX_CACHE[key] = index
    _INDEX_CACHED_FRAMES += index.n
    while len(_INDEX_CACHE) > 1 and _INDEX_CACHED_FRAMES > _INDEX_CACHE_FRAMES:
        _INDEX_CACHED_FRAMES -= _INDEX_CACHE.popitem(last=False)[1].n
    return index


def _build_index(path: str) -> VideoIndex:
    import av

    cut = truncation(path)
    packets = []  # decode order: (pts, dts, keyframe, discarded, duration)
    try:
        with av.open(path) as container:
            stream = _pick_video_stream(container, path)
            stream_index = stream.index
            format_name = container.format.name
            fmt = set(format_name.split(","))
            n_video = sum(1 for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic)
            codec = stream.codec_context.name
            header = int(stream.frames or 0)
            rate = stream.average_rate or stream.guessed_rate
            time_base = float(stream.time_base)
            audio_streams = len(container.streams.audio)
            try:
                for p in container.demux(stream):
                    if p.size > 0:
                        packets.append((p.pts, p.dts, p.is_keyframe, p.is_discard, p.duration))
            except av.error.FFmpegError as e:
                if not packets:
                    raise
                cut = cut or f"demuxing stopped early: {_short(e, 120)}"
    except ClipDecodeError:
        raise
    except av.error.FFmpegError as e:
        if cut:
            raise ClipDecodeError(path, "truncated", cut) from None
        raise ClipDecodeError(path, "undecodable", _short(e)) from None
    presented = [p for p in packets if not p[3]]
    if not presented:
        raise ClipDecodeError(path, "truncated" if (cut or header) else "undecodable", "no video frames in the file")
    if header > len(presented) + sum(p[3] for p in packets) and not cut:
        cut = f"its header announces {header} frames, it holds {len(packets)}"
    fallback_fps = float(rate) if rate else 25.0
    pts = [p[0] for p in presented]
    exact = None not in pts and len(set(pts)) == len(pts)
    if not exact:
        return _index_by_decoding(path, stream_index, fallback_fps, header, audio_streams, cut)

    seek_of: dict[int, int] = {}
    keys: list[tuple[int, int]] = []  # (pts, seek timestamp) of the keyframes seen so far, decode order
    leading = orphans = 0
    for p_pts, p_dts, key, discarded, _ in packets:
        if key and p_pts is not None:
            keys.append((p_pts, p_dts if p_dts is not None else p_pts))
        if discarded or p_pts is None:
            continue
        if keys and p_pts < keys[-1][0]:
            leading += 1
        seek_ts = next((s for k, s in reversed(keys) if k <= p_pts), None)
        if seek_ts is None:  # before the first keyframe (a stream cut mid-GOP): no decoder can present it
            orphans += 1
            continue
        seek_of[p_pts] = seek_ts
    if not seek_of:
        raise ClipDecodeError(path, "undecodable", "no keyframe: no frame of the video can be decoded")
    presented = [p for p in presented if p[0] in seek_of]
    order = sorted(range(len(presented)), key=lambda i: presented[i][0])
    pts_arr = np.array([presented[i][0] for i in order], np.int64)
    seek = np.array([seek_of[int(t)] for t in pts_arr], np.int64)
    times = pts_arr * time_base
    last = presented[order[-1]]
    if last[4]:
        duration = last[4] * time_base
    elif len(times) > 1:
        duration = float(np.median(np.diff(times)))
    else:
        duration = 1.0 / fallback_fps
    reason = ""
    if not fmt & DECORD_FORMATS:
        reason = f"{format_name} container: decord seeks to other frames than requested in it"
    elif n_video > 1:
        reason = f"{n_video} video streams: the count and frames must come from the one ffmpeg picks"
    elif len(presented) + orphans < len(packets):
        reason = f"an edit list drops {len(packets) - len(presented) - orphans} frames, which decord would return"
    elif orphans:
        reason = f"{orphans} frames precede the first keyframe, which decord would return"
    elif leading:
        reason = f"open GOP ({leading} frames precede their keyframe), where decord's seeks land on other frames"
    elif codec == "av1":
        reason = "decord 0.6 has no AV1 decoder"
    return VideoIndex(
        stream_index, pts_arr, seek, times, float(times[-1] + duration), header, audio_streams, reason, True, cut
    )


def _index_by_decoding(path, stream_index, fps, header, audio_streams, cut) -> VideoIndex:
    """Index a stream whose packets lack usable timestamps by decoding it once: frames in decoder output order,
    times from the decoder's best-effort timestamps (or ``i / fps``)."""
    import av

    times = []
    try:
        with av.open(path) as container:
            stream = _stream(container, stream_index)
            for k, frame in enumerate(container.decode(stream)):
                times.append(frame.time if frame.time is not None else k / fps)
    except av.error.FFmpegError as e:
        if not times:
            raise ClipDecodeError(path, "truncated" if cut else "undecodable", _short(e)) from None
        cut = cut or f"decoding stopped early: {_short(e, 120)}"
    if not times:
        raise ClipDecodeError(path, "undecodable", "no video frame could be decoded")
    t = np.maximum.accumulate(np.asarray(times, np.float64))  # best-effort times can repeat; keep them monotonic
    n = len(t)
    end = float(t[-1] + (np.median(np.diff(t)) if n > 1 and np.median(np.diff(t)) > 0 else 1.0 / fps))
    reason = "timestamps are missing or repeated: frames are counted from the start"
    idx = np.arange(n, dtype=np.int64)
    return VideoIndex(stream_index, idx, idx, t, end, header, audio_streams, reason, False, cut)


def truncation(path: str) -> str:
    """Why the container's own size fields say ``path`` is cut short, or "" (ISO-BMFF boxes and RIFF/AVI only)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] == b"RIFF" and len(head) >= 8:
            declared = 8 + struct.unpack("<I", head[4:8])[0]
            return f"its RIFF header announces {declared} bytes, the file has {size}" if declared > size else ""
        if head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"styp", b"pnot"):
            return ""
        offset = 0
        while offset + 8 <= size:
            f.seek(offset)
            box = f.read(16)
            length, kind = struct.unpack(">I", box[:4])[0], box[4:8].decode("latin-1")
            if length == 1 and len(box) == 16:
                length = struct.unpack(">Q", box[8:16])[0]
            elif length == 0:  # the box runs to the end of the file
                return ""
            if length < 8:
                return ""  # not a box structure we can follow
            if offset + length > size:
                return f"box '{kind}' at byte {offset} announces {length} bytes, the file ends after {size - offset}"
            offset += length
    return ""


# ----------------------------------------------------------------------------------------------------------------
# Reading a clip.


def read_raw(req: RawRequest) -> RawClip:
    """Decode the frames chosen by the request's sampling and the audio of their time window."""
    _check_file(req.video)
    if req.audio not in (None, "container"):
        _check_file(req.audio)
    index = index_video(req.video)
    if req.audio == "container" and index.audio_streams == 0:
        raise ClipDecodeError(req.video, "no_audio_stream", "audio from the container was requested")
    try:
        sample = sample_frames(index.times, index.end_time, req.num_frames, req.mode, req.window_seconds, req.seed,
                               req.jitter, req.span)  # fmt: skip
    except ValueError as e:
        if req.mode != "span":
            raise
        raise ClipDecodeError(req.video, "outside_clip", str(e)) from None
    frames, backend, reason = _read_frames(req, index, sample.indices)
    if frames.ndim != 4 or frames.shape[0] != len(sample.indices) or frames.shape[-1] != 3:
        raise ClipDecodeError(req.video, "undecodable", f"decoder returned frames of shape {frames.shape}")
    t0 = float(index.times[0])
    start = float(index.times[sample.first]) - t0
    end = (float(index.times[sample.stop]) if sample.stop < index.n else index.end_time) - t0
    audio, rate = None, None
    if req.audio == "container":
        audio, rate = _container_audio(req.video, req.audio_stream, t0 + start, t0 + end)
    elif req.audio is not None:
        audio, rate = _sidecar_audio(req.audio, start, end)
    return RawClip(
        frames, sample.indices, index.n, index.fps, start, end, audio, rate,
        frame_times=index.times[sample.indices] - t0, backend=backend, backend_reason=reason,
        truncated=index.truncated,
    )  # fmt: skip


class _NotAccurate(Exception):
    """decord cannot be trusted for this file; the message says why."""


def _read_frames(req: RawRequest, index: VideoIndex, positions: np.ndarray) -> tuple[np.ndarray, str, str]:
    """Frames ``positions`` (sorted presentation indices) as uint8 (T, H, W, 3) RGB, upright as players show them;
    with the backend used and why decord was not."""
    reason = index.decord_reason
    if not reason:
        try:
            return _decord_frames(req.video, index, positions, req.decoder_threads), "decord", ""
        except _NotAccurate as e:
            reason = str(e)
    return _pyav_frames(req.video, index, positions, req.decoder_threads), "pyav", reason


def _decord_frames(path: str, index: VideoIndex, positions: np.ndarray, threads: int) -> np.ndarray:
    import decord

    vr = None
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
        if len(vr) < index.n:
            raise _NotAccurate(f"decord counts {len(vr)} frames where the demuxer finds {index.n}")
        ts = np.asarray(vr.get_frame_timestamp(np.arange(index.n).tolist()))[:, 0]
        tolerance = 0.25 / max(index.fps, 1e-3)
        if np.abs((ts - ts[0]) - (index.times - index.times[0])).max() > tolerance:
            raise _NotAccurate("decord's frame times differ from the demuxer's presentation times")
        return vr.get_batch(positions.tolist()).asnumpy()
    except decord.DECORDError as e:
        # e.g. "cannot find video stream" for codecs it lacks, or, for some frame widths (48, 72, ...), 4-channel
        # rows that it then fails to copy ("The size must exactly match"). PyAV decides the cause, if any.
        raise _NotAccurate(f"decord failed: {_short(e, 160)}") from None
    finally:
        vr = None  # release the reader (and its decoding threads) before anything else is read


def _pyav_frames(path: str, index: VideoIndex, positions: np.ndarray, threads: int) -> np.ndarray:
    """Exact frames with PyAV: for each group of requested frames that start decoding at the same keyframe, seek to
    that keyframe and decode forward, matching frames by presentation timestamp; if a seek misses, decode from the
    start."""
    import av

    got: dict[int, np.ndarray] = {}
    try:
        with av.open(path) as container:
            stream = _stream(container, index.stream)
            stream.codec_context.thread_count = max(1, threads)
            if index.exact_pts:
                groups: list[list[int]] = []
                for p in positions.tolist():
                    if groups and index.seek[p] == index.seek[groups[-1][0]]:
                        groups[-1].append(p)
                    else:
                        groups.append([p])
                for group in groups:
                    container.seek(int(index.seek[group[0]]), stream=stream, backward=True, any_frame=False)
                    if not _decode_forward(container, stream, index, group, got):
                        break  # the seek missed a frame: decode everything from the start below
            if len(got) < len(positions):
                container.seek(0, stream=stream, backward=True, any_frame=False)  # rewinds any demuxer to its start
                _decode_forward(container, stream, index, positions.tolist(), got, from_start=True)
    except av.error.FFmpegError as e:
        cause = "truncated" if index.truncated else "undecodable"
        raise ClipDecodeError(path, cause, _short(e)) from None
    if len(got) < len(positions):
        detail = f"decoded {len(got)} of the {len(positions)} requested frames"
        cause = "truncated" if index.truncated else "undecodable"
        raise ClipDecodeError(path, cause, detail + (f"; {index.truncated}" if index.truncated else ""))
    return np.stack([got[p] for p in positions.tolist()])


def _decode_forward(container, stream, index: VideoIndex, wanted: list[int], got: dict, from_start=False) -> bool:
    """Decode from the container's current position until the frames ``wanted`` are in ``got`` (or, unless
    ``from_start``, until ``_REORDER_SLACK`` frames past the last one show that they will not come); True when all
    came."""
    # frames are matched by presentation timestamp, or by output position where timestamps are unusable
    targets = {(int(index.pts[p]) if index.exact_pts else p): p for p in wanted if p not in got}
    if not targets:
        return True
    last = max(targets)
    past = 0
    for k, frame in enumerate(container.decode(stream)):
        key = k if not index.exact_pts else frame.pts
        if key in targets:
            got[targets.pop(key)] = _upright_rgb(frame)
            if not targets:
                return True
        elif key is not None and key > last:
            past += 1
            if past > _REORDER_SLACK and not from_start:
                return False
    return not targets


def _stream(container, index: int):
    """The stream whose container index is ``index``."""
    return next(s for s in container.streams if s.index == index)


def _upright_rgb(frame) -> np.ndarray:
    """uint8 (H, W, 3) RGB, rotated as the stream's display matrix says (as ffmpeg and decord present it)."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = int(round((frame.rotation or 0) / 90)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


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
    """Audio stream ``index`` of ``path`` over [start, end) seconds of the container's presentation timeline, as
    float32 (C, N): where the stream starts after ``start`` (late audio), the gap is leading silence, as a player
    plays it."""
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
    skip = int(round((start - first_time) * rate))
    stop = max(skip, int(round((end - first_time) * rate)))
    if skip < 0:  # the stream starts after the window does: silence until it starts
        lead = np.zeros((audio.shape[0], min(-skip, stop - skip)), np.float32)
        return np.ascontiguousarray(np.concatenate([lead, audio[:, : max(0, stop)]], axis=1)), rate
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
