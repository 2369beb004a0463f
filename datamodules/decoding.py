"""Clip reader: the frames and audio a player presents, audio mono and resampled to 44.1 kHz, cut to the frames' window.

Data flow: file -> :class:`ClipReader` -> :class:`Clip` (uint8 frames, float32 mono waveform at 44.1 kHz) -> the
``tvlt`` processors. Nothing here resizes or normalizes: that is the processors' job.

What "presents" means (what ``ffmpeg -i FILE`` decodes): the video stream ffmpeg picks; edit lists applied (frames
they drop are not frames of the clip); frames in presentation order, counted from what the file really holds (not
the header's claim); windows in seconds measured on the frames' timestamps (variable frame rates included); audio
placed on the same timeline (leading silence where its stream starts late); frames upright as the display matrix
says. The frames come from decord where it is exact for the file (MP4/MOV with one video stream, no frame-dropping
edit list, no open GOP, frame table matching the demuxer's), else from PyAV, which seeks to the keyframe each frame
needs and decodes forward, matching frames by timestamp; each worker logs once which backend it used and why. See
:mod:`datamodules._rawdecode`.

Failures raise :class:`ClipDecodeError` naming the path and one of :data:`CAUSES` (missing file, empty file, no
video stream, requested audio stream missing, truncated, undecodable, timeout, audio too short, invalid audio); a
dummy tensor is never returned; a ``span`` outside the video is cause ``outside_clip``.

Timeouts: decord can spin forever in native code while holding the GIL (dmlc/decord#269, #373, #375), which neither
a thread nor a signal can interrupt. With ``decode_timeout`` set (the default, 30 s) each decode therefore runs in a
long-lived helper process (one per DataLoader worker, started on first use: an interpreter start and imports); a
decode that does not answer in time kills that process, raises ``ClipDecodeError(cause="timeout")``, and the next
decode starts a fresh one.
``decode_timeout=None`` decodes in the calling process (no copy of the frames between processes, no hang protection;
the BENCHMARKS.md data rows "isolated" and "in-process decode" compare the two).

The helper process is also restarted every :data:`RECYCLE_AFTER` decodes: decord leaks native memory per opened
file (dmlc/decord#1, #208, #218), which a fresh process returns to the system.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import logging

import numpy as np
import torch

from datamodules._rawdecode import CAUSES, ClipDecodeError, RawClip, RawRequest, read_raw, recv, send
from tvlt.audio import check_waveform, resample

__all__ = ["Clip", "ClipReader", "ClipDecodeError", "CAUSES", "TARGET_SAMPLING_RATE"]

#: TVLT's audio rate (both references: 44.1 kHz, hop 512, 128 mel bins).
TARGET_SAMPLING_RATE = 44100
#: Decodes after which the isolated decode process is replaced (bounds decord's native leaks; each restart costs an
#: interpreter start and imports, so it is not done after every decode).
RECYCLE_AFTER = 1000


@dataclass
class Clip:
    """One decoded clip.

    frames: uint8 (T, H, W, 3) RGB at the stored resolution, upright, 1 <= T <= num_frames.
    waveform: float32 (N,) mono at ``sampling_rate`` Hz covering [start, end) seconds of the clip, or None.
    indices: int64 (T,) indices of the frames among the presented frames; num_decodable: frames the file really
        presents. fps: their average rate (Hz). start, end: the window in seconds from the first presented frame;
        frame_times: float64 (T,) each frame's presentation time on that clock.
    backend: "decord" or "pyav", the decoder that produced the frames.
    """

    frames: np.ndarray
    waveform: np.ndarray | None
    sampling_rate: int
    indices: np.ndarray
    num_decodable: int
    fps: float
    start: float
    end: float
    frame_times: np.ndarray | None = None
    backend: str = "decord"


class ClipReader:
    """Reads ``num_frames`` frames and the matching audio window of a video.

    Args:
        num_frames: frames per clip (8 for MOSEI/retrieval, 4 for pretraining in the original release). Clips with
            fewer decodable frames give all of them (T < num_frames), never repeated or out-of-range indices.
        decoder_threads: decord decoding threads per reader (per DataLoader worker). 1 scales best with workers.
        decode_timeout: seconds before a decode counts as failed (cause "timeout"); None decodes in-process
            without protection against decoder hangs.
        min_audio_samples: minimum mono samples at 44.1 kHz in the window (default 2048 = one STFT window, below
            which the log-mel has no complete frame); fewer raise cause "audio_too_short".
        sampling_rate: output audio rate in Hz (44.1 kHz for TVLT).
    """

    def __init__(
        self,
        num_frames: int = 8,
        decoder_threads: int = 1,
        decode_timeout: float | None = 30.0,
        min_audio_samples: int = 2048,
        sampling_rate: int = TARGET_SAMPLING_RATE,
    ) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if decode_timeout is not None and decode_timeout <= 0:
            raise ValueError(f"decode_timeout must be positive or None, got {decode_timeout}")
        self.num_frames = num_frames
        self.decoder_threads = decoder_threads
        self.decode_timeout = decode_timeout
        self.min_audio_samples = min_audio_samples
        self.sampling_rate = sampling_rate

    def read(
        self,
        video: str | os.PathLike,
        audio: str | os.PathLike | None = "container",
        mode: str = "uniform",
        window_seconds: float | None = None,
        jitter: bool = True,
        seed: int | None = None,
        audio_stream: int = 0,
        span: tuple[float, float] | None = None,
    ) -> Clip:
        """Decode one clip.

        Args:
            video: the video file (any container/codec FFmpeg in decord reads).
            audio: ``"container"`` for the video's own audio stream ``audio_stream``, a wav/flac path, or None.
            mode: ``"uniform"`` (evaluation: ``num_frames`` frames over the whole clip) or ``"random"`` (training:
                a random window of ``window_seconds`` (whole clip if None) with per-segment jitter, seeded by
                ``seed``), or ``"span"``: the frames shown during ``span`` = (start, end) seconds from the first
                presented frame, all of them up to ``num_frames`` (else ``num_frames`` uniformly among them), with
                the audio of the same window (cutting a segment out of a longer video).

        Raises:
            ClipDecodeError: with ``.path`` and ``.cause`` (see :data:`CAUSES`).
        """
        audio_arg = None if audio is None else ("container" if audio == "container" else str(audio))
        req = RawRequest(
            video=str(video),
            audio=audio_arg,
            num_frames=self.num_frames,
            mode=mode,
            window_seconds=window_seconds,
            jitter=jitter,
            seed=seed,
            decoder_threads=self.decoder_threads,
            audio_stream=audio_stream,
            span=None if span is None else (float(span[0]), float(span[1])),
        )
        raw = read_raw(req) if self.decode_timeout is None else _isolated().read(req, self.decode_timeout)
        return self._finish(raw, req)

    def _finish(self, raw: RawClip, req: RawRequest) -> Clip:
        _log_once(raw, req.video)
        waveform = None
        if raw.audio is not None:
            source = req.video if req.audio == "container" else req.audio
            waveform = to_mono(raw.audio, raw.audio_rate, source, self.sampling_rate)
            if waveform.shape[0] < self.min_audio_samples:
                raise ClipDecodeError(
                    source,
                    "audio_too_short",
                    f"{waveform.shape[0]} samples at {self.sampling_rate} Hz in [{raw.start:.3f}, {raw.end:.3f}) s, "
                    f"need {self.min_audio_samples}",
                )
        return Clip(
            raw.frames, waveform, self.sampling_rate, raw.indices, raw.num_decodable, raw.fps, raw.start, raw.end,
            raw.frame_times, raw.backend,
        )  # fmt: skip


def to_mono(audio: np.ndarray, rate: int, source: str, target: int = TARGET_SAMPLING_RATE) -> np.ndarray:
    """float32 (C, N) at ``rate`` -> float32 (N',) mono at ``target`` (channel mean, then :func:`tvlt.audio.resample`).

    Raises:
        ClipDecodeError: cause ``invalid_audio`` naming ``source`` when the samples are not a waveform
            (:func:`tvlt.audio.check_waveform`).
    """
    samples = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if samples.numel():
        try:
            check_waveform(samples, str(source))
        except ValueError as e:
            raise ClipDecodeError(source, "invalid_audio", str(e).removeprefix(f"{source}: ")) from None
    mono = samples.mean(dim=0)
    if rate != target and mono.numel() > 0:
        mono = resample(mono, int(rate), int(target))
    return mono.numpy()


_LOGGED: set[tuple[str, str]] = set()
log = logging.getLogger(__name__)


def _log_once(raw: RawClip, path: str) -> None:
    """Log, once per process (DataLoader worker) and reason, that PyAV decoded a file and why; and each file that is
    cut short."""
    if raw.backend != "decord" and (raw.backend, raw.backend_reason) not in _LOGGED:
        _LOGGED.add((raw.backend, raw.backend_reason))
        log.info("Decoding %s with %s: %s (logged once per worker and reason)", path, raw.backend, raw.backend_reason)
    if raw.truncated and ("truncated", path) not in _LOGGED:
        _LOGGED.add(("truncated", path))
        log.warning("%s is cut short (%s): using the %d frames it holds", path, raw.truncated, raw.num_decodable)


class _IsolatedDecoder:
    """A helper process that runs :func:`datamodules._rawdecode.read_raw`; restarted after a timeout or crash."""

    STARTUP_TIMEOUT = 120.0

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.proc: subprocess.Popen | None = None
        self.to_child = self.from_child = -1
        self.decodes = 0

    def read(self, req: RawRequest, timeout: float) -> RawClip:
        if self.proc is None or self.proc.poll() is not None or self.decodes >= RECYCLE_AFTER:
            self._start()
        self.decodes += 1
        send(self.to_child, req)
        try:
            status, payload = recv(self.from_child, time.monotonic() + timeout)
        except TimeoutError:
            self.stop()
            detail = f"no result within {timeout:g} s; decoder process killed"
            raise ClipDecodeError(req.video, "timeout", detail) from None
        except EOFError:
            code = self.proc.wait() if self.proc is not None else None
            self.stop()
            raise ClipDecodeError(req.video, "undecodable", f"decoder process died (exit code {code})") from None
        if status == "error":
            raise payload
        return payload

    def _start(self) -> None:
        self.stop()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        package_parent = str(Path(__file__).resolve().parents[1])
        code = (
            "import sys; sys.path.insert(0, sys.argv[3]); "
            "from datamodules._rawdecode import serve; serve(int(sys.argv[1]), int(sys.argv[2]))"
        )
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(req_r), str(rep_w), package_parent],
            pass_fds=(req_r, rep_w),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        os.close(req_r)
        os.close(rep_w)
        self.to_child, self.from_child = req_w, rep_r
        self.decodes = 0
        try:
            ready = recv(self.from_child, time.monotonic() + self.STARTUP_TIMEOUT)
        except (TimeoutError, EOFError):
            self.stop()
            raise RuntimeError("the isolated decode process did not start (python -c datamodules._rawdecode)") from None
        if ready != "ready":
            self.stop()
            raise RuntimeError(f"the isolated decode process sent {ready!r} instead of 'ready'")

    def stop(self) -> None:
        for fd in (self.to_child, self.from_child):
            if fd >= 0:
                os.close(fd)
        self.to_child = self.from_child = -1
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __del__(self) -> None:
        if self.pid == os.getpid():
            try:
                self.stop()
            except OSError:
                # Best-effort cleanup during garbage collection or interpreter exit: the pipe fds may already be
                # closed (EBADF) or the child already reaped (ProcessLookupError, an OSError). Nothing can handle an
                # exception raised from __del__, and nothing leaks when stop() fails here: the child exits by itself
                # on EOF of its request pipe (serve() in _rawdecode.py), which the OS closes when this process exits.
                pass


_DECODER: _IsolatedDecoder | None = None


def _isolated() -> _IsolatedDecoder:
    """The process-wide decode helper. A forked DataLoader worker drops the one it inherited (its pipes belong to
    the parent's helper) without touching it, and starts its own."""
    global _DECODER
    if _DECODER is not None and _DECODER.pid != os.getpid():
        for fd in (_DECODER.to_child, _DECODER.from_child):
            if fd >= 0:
                os.close(fd)
        _DECODER.proc = None  # not ours to kill or wait for
        _DECODER.to_child = _DECODER.from_child = -1
        _DECODER = None
    if _DECODER is None:
        _DECODER = _IsolatedDecoder()
    return _DECODER
