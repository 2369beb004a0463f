"""The demo: the embedded datasets every experiment runs on when no data is given, and the switch to the
experiment's demo preset.

One home for the concept: when the demo is used (:func:`no_data_given`, for a datamodule and for a composed config),
which set a datamodule reads (its ``demo_spec``: :class:`DemoSpec` or :class:`ClassesDemoSpec`), how that set is made
(:func:`ensure_demo`), and the switch of ``experiment=X`` to its ``demo_preset`` (:func:`apply_demo_preset`).

The sets are generated locally and deterministically (no download): a small CMU-MOSEI-layout set (below; sentiment,
emotion and pretraining read it) and a K-class set (:func:`make_demo_classes`; ``experiment=classify`` reads it, and
retrieval reads its clips as video-audio pairs, each class drawn in the frames and sounded in the audio).

Layout (the original release's processed MOSEI layout, see docs/data.md)::

    root/{train,valid,test}/video/{id}.mp4        H.264 (libx264, yuv420p), ``size`` x ``size``, ``fps`` fps, no audio
    root/{train,valid,test}/audio_wav/{id}.wav    16 kHz mono 16-bit PCM (MOSEI ships float32; PCM keeps the
                                                  bytes deterministic: libsndfile stamps float wavs with the time)
    root/labels/label_file_{split}.csv            FileName,sentiment_score
    root/labels_emotion/label_file_{split}.csv    FileName,sentiment_score,sentiment_class,happy,sad,angry,fear,
                                                  disgust,surprise (intensities in [0, 3])

Learnable from either modality alone:
- sentiment: the score's sign sets the frame's hue (warm for >= 0, cool for < 0) and the audio's base tone (660 Hz
  for >= 0, 220 Hz for < 0); its magnitude sets brightness and loudness. A moving noise texture and background noise
  keep the task from being a constant lookup.
- emotion k (order happy, sad, angry, fear, disgust, surprise) is present iff its intensity > 0; present emotions
  light cell k of a 6-cell strip at the bottom of the frame and add a partial tone at ``1000 + 350 k`` Hz.

Determinism: every value comes from ``numpy.random.default_rng(seed)`` and x264 runs single-threaded, so the same
arguments give the same bytes (checked in tests/test_demo.py) with the same PyAV/libx264 build, and always the
same decoded content.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tvlt.labels import EMOTIONS

__all__ = ["ClassesDemoSpec", "DATA_SOURCES", "DEMO_CLASSES", "DemoSpec", "apply_demo_preset", "ensure_demo",
           "ensure_demo_classes", "ensure_demo_mosei", "ensure_generated", "make_demo_classes", "make_demo_mosei",
           "Mp4Writer", "no_data_given", "write_mp4"]

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
_MARKER = "DEMO_DONE.json"


@dataclass(frozen=True)
class DemoSpec:
    seed: int = 0
    num_train: int = 32
    num_valid: int = 8
    num_test: int = 8
    seconds: float = 2.0
    size: int = 64
    fps: int = 8
    audio_rate: int = 16000
    version: int = 1  # bump when the generator changes

    def count(self, split: str) -> int:
        return {"train": self.num_train, "valid": self.num_valid, "test": self.num_test}[split]


#: the data-source arguments of every datamodule (keys of ``conf/data``): all None means the embedded demo data
DATA_SOURCES = ("root", "manifest", "shards")


def no_data_given(root: object = None, manifest: object = None, shards: object = None) -> bool:
    """True when none of the data sources is given: the embedded demo dataset is used (the datamodule's
    ``uses_demo``, and the condition of :func:`apply_demo_preset`)."""
    return root is None and manifest is None and shards is None


def apply_demo_preset(cfg: Any) -> Any:
    """The composed run config ``cfg`` (a DictConfig), switched to its demo preset when no data is given.

    With ``data.root``, ``data.manifest`` and ``data.shards`` null (:func:`no_data_given`), an experiment that names
    a ``demo_preset`` is re-composed as that preset (``experiment=<demo_preset>``), keeping every command-line
    override, and a warning says so and names the data the real experiment needs. The full-size schedule
    (TVLT-base, effective batch 128, tens of epochs) would take days on a CPU and means nothing on the demo's few
    dozen clips. Not in ``mode=predict`` / ``mode=embed``, whose model comes from the checkpoint. The switched
    config records the experiment it came from as ``demo_from``. Must run inside a Hydra application (the
    overrides and the config name are Hydra's)."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_class
    from omegaconf import OmegaConf, open_dict

    preset = cfg.get("demo_preset")
    data = cfg.get("data") or {}
    if (not preset or not no_data_given(**{k: data.get(k) for k in DATA_SOURCES})
            or cfg.get("mode") in ("predict", "embed")):
        return cfg
    overrides = [o for o in HydraConfig.get().overrides.task if not o.split("=")[0].lstrip("+~") == "experiment"]
    if _rank_zero():
        what = getattr(get_class(cfg.data._target_), "root_description", "data folder")
        log.warning("No data.root given: using the embedded demo dataset with the demo preset experiment=%s "
                    "(demo-size model, short schedule). Pass data.root=<%s> for the real experiment.",
                    preset, what)
    new = compose(config_name=HydraConfig.get().job.config_name, overrides=[f"experiment={preset}", *overrides])
    with open_dict(new):
        new.demo_from = OmegaConf.select(cfg, "task_name")
    return new


def _rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def ensure_demo(root: str | os.PathLike, spec: "DemoSpec") -> Path:
    """Make the demo set ``spec`` describes under ``root`` unless it is already there: the CMU-MOSEI-layout set for
    a :class:`DemoSpec`, the folder-per-class set for a :class:`ClassesDemoSpec` (see :func:`ensure_generated`)."""
    if isinstance(spec, ClassesDemoSpec):
        return ensure_demo_classes(root, spec)
    return ensure_demo_mosei(root, spec)


def demo_is_ready(root: str | os.PathLike) -> bool:
    """True when ``root`` holds a complete demo set (its marker file is written last)."""
    return (Path(root) / _MARKER).is_file()


def ensure_demo_mosei(root: str | os.PathLike, spec: DemoSpec | None = None) -> Path:
    """Make the MOSEI demo set under ``root`` unless an identical one (same :class:`DemoSpec`) is already there;
    see :func:`ensure_generated`."""
    return ensure_generated(root, spec or DemoSpec(), make_demo_mosei, "CMU-MOSEI layout")


def ensure_demo_classes(root: str | os.PathLike, spec: "ClassesDemoSpec | None" = None) -> Path:
    """Make the classification demo set under ``root`` unless an identical one is already there; see
    :func:`make_demo_classes` and :func:`ensure_generated`."""
    return ensure_generated(root, spec or ClassesDemoSpec(), make_demo_classes, "classification: a folder per class")


def ensure_generated(root: str | os.PathLike, spec, make, what: str) -> Path:
    """Make a generated set with ``make(folder, spec)`` under ``root`` unless an identical one (same spec) is
    already there; ``what`` names its layout in the log lines.

    Generation writes into a temporary sibling directory and renames it, so an interrupted run never leaves a
    half-made set that looks complete. A demo set of the same kind made with another spec (seed, clip counts) is
    replaced; a set of the other kind and any other non-empty directory at ``root`` are left alone.

    Raises:
        FileExistsError: ``root`` is a non-empty directory that is not a demo set, or the other kind of demo set
            (e.g. the CMU-MOSEI-layout set where retrieval's class set is asked for); never deleted.
    """
    root = Path(root).resolve()
    marker = root / _MARKER
    made = json.loads(marker.read_text()) if marker.is_file() else None
    if made == asdict(spec):
        log.info("Using the embedded demo dataset (%s) at %s", what, root)
        return root
    if root.is_dir() and made is None and any(root.iterdir()):
        raise FileExistsError(
            f"demo_dir {root} is a non-empty directory without a demo marker ({_MARKER}); refusing to overwrite it. "
            "Point data.demo_dir at an empty or new folder, or pass data.root for real data."
        )
    if made is not None and ("num_classes" in made) != isinstance(spec, ClassesDemoSpec):
        raise FileExistsError(
            f"demo_dir {root} holds another kind of demo set than the {what} one this datamodule reads; refusing to "
            "replace it. Point data.demo_dir at another folder (each datamodule's default has its own)."
        )
    log.warning(
        "No data root given: generating the embedded demo dataset (%s, %d/%d/%d synthetic clips) into %s",
        what, spec.num_train, spec.num_valid, spec.num_test, root,
    )
    tmp = root.with_name(root.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    make(tmp, spec)
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(root)
    return root


def make_demo_mosei(root: str | os.PathLike, spec: DemoSpec) -> None:
    """Write the whole demo set into ``root`` (which is created)."""
    import soundfile as sf

    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    for split in SPLITS:
        (root / split / "video").mkdir(parents=True, exist_ok=True)
        (root / split / "audio_wav").mkdir(parents=True, exist_ok=True)
        rows = []
        n = spec.count(split)
        # Balanced signs: half non-negative, half negative, shuffled.
        signs = rng.permutation(np.where(np.arange(n) < (n + 1) // 2, 1.0, -1.0))
        for i in range(n):
            clip_id = f"demo_{split}_{i:03d}"
            score = float(np.round(signs[i] * rng.uniform(0.4, 3.0), 4))
            emotions = _emotions(score, rng)
            frames = _frames(score, emotions, spec, rng)
            audio = _audio(score, emotions, spec, rng)
            write_mp4(root / split / "video" / f"{clip_id}.mp4", frames, spec.fps)
            sf.write(root / split / "audio_wav" / f"{clip_id}.wav", audio, spec.audio_rate, subtype="PCM_16")
            rows.append((clip_id, score, emotions))
        _write_labels(root, split, rows)
    (root / _MARKER).write_text(json.dumps(asdict(spec)))


def _emotions(score: float, rng: np.random.Generator) -> np.ndarray:
    """Six intensities in [0, 3] (multiples of 1/3 as in MOSEI): happy follows positive, sad negative sentiment."""
    present = rng.random(6) < 0.3
    present[0] = score >= 0 and rng.random() < 0.8
    present[1] = score < 0 and rng.random() < 0.8
    intensity = np.round(rng.uniform(1, 9, size=6)) / 3.0
    return np.where(present, intensity, 0.0).round(4)


def _frames(score: float, emotions: np.ndarray, spec: DemoSpec, rng: np.random.Generator) -> np.ndarray:
    t, s = int(round(spec.seconds * spec.fps)), spec.size
    warm, cool = np.array([230.0, 150.0, 40.0]), np.array([40.0, 90.0, 230.0])
    base = (warm if score >= 0 else cool) * (0.35 + 0.65 * abs(score) / 3.0)
    noise = rng.normal(0.0, 18.0, size=(t, s, s, 1))
    phase = np.cos(np.arange(t) / max(t, 1) * 2 * np.pi)[:, None, None, None]
    ramp = np.linspace(-20, 20, s)[None, None, :, None] * phase
    frames = base[None, None, None, :] + noise + ramp
    strip = s // 6
    y0 = s - max(strip, 4)
    for k, value in enumerate(emotions):
        frames[:, y0:, k * strip : (k + 1) * strip, :] = 255.0 if value > 0 else 0.0
    return np.clip(frames, 0, 255).astype(np.uint8)


def _audio(score: float, emotions: np.ndarray, spec: DemoSpec, rng: np.random.Generator) -> np.ndarray:
    n = int(round(spec.seconds * spec.audio_rate))
    time = np.arange(n) / spec.audio_rate
    base = 660.0 if score >= 0 else 220.0
    y = (0.1 + 0.25 * abs(score) / 3.0) * np.sin(2 * np.pi * base * time)
    for k, value in enumerate(emotions):
        if value > 0:
            y += 0.05 * np.sin(2 * np.pi * (1000.0 + 350.0 * k) * time)
    y += rng.normal(0.0, 0.01, size=n)
    return y.astype(np.float32)


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    audio_rate: int = 44100,
    crf: int = 18,
    faststart: bool = False,
) -> None:
    """Encode a clip with PyAV: single-threaded libx264 video and optional AAC audio (see :class:`Mp4Writer`).

    Args:
        frames: uint8 (T, H, W, 3) RGB, or (T, H, W) grayscale (encoded as gray); yuv420p needs even H and W.
        audio: float32 (C, N) in [-1, 1] with C in {1, 2}, or None for a video without audio stream.
        faststart: put the index (moov) first, as streaming files do; cutting such a file gives a truncated file
            whose header over-reports the frame count.
    """
    channels = 0 if audio is None else audio.shape[0]
    with Mp4Writer(path, fps, crf, faststart, audio_channels=channels, audio_rate=audio_rate) as writer:
        writer.write(frames)
        if audio is not None:
            writer.write_audio(audio)


class Mp4Writer:
    """An H.264 (single-threaded libx264, so the bytes are deterministic) mp4 written chunk by chunk, for clips too
    long to hold in memory at once; optional AAC audio, given whole after the frames.

    Args:
        fps: frame rate (an int or a ``fractions.Fraction``, e.g. 30000/1001).
        audio_channels: 0 (no audio stream), 1 or 2; audio_rate: its sampling rate in Hz.

    ``write(frames)`` takes uint8 (T, H, W, 3) RGB or (T, H, W) gray chunks of one size; ``write_audio(audio)``
    float32 (C, N) in [-1, 1]; leaving the ``with`` block flushes the encoders and closes the file.
    """

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 18, faststart: bool = False,
                 audio_channels: int = 0, audio_rate: int = 44100) -> None:
        import av

        options = {"movflags": "faststart"} if faststart else {}
        self.container = av.open(str(path), "w", options=options)
        self.fps, self.crf = fps, crf
        self.audio_channels, self.audio_rate = audio_channels, audio_rate
        self.stream = self.audio_stream = None
        self.gray = False
        self._flushed = False  # the video encoder's buffered frames have been written

    def _open_streams(self, frames: np.ndarray) -> None:
        self.gray = frames.ndim == 3
        self.stream = self.container.add_stream("libx264", rate=self.fps)
        self.stream.height, self.stream.width = frames.shape[1], frames.shape[2]
        self.stream.pix_fmt = "gray" if self.gray else "yuv420p"
        self.stream.options = {"preset": "ultrafast", "crf": str(self.crf)}
        self.stream.codec_context.thread_count = 1
        if self.audio_channels:
            self.audio_stream = self.container.add_stream("aac", rate=self.audio_rate)
            self.audio_stream.layout = "stereo" if self.audio_channels == 2 else "mono"

    def write(self, frames: np.ndarray) -> None:
        import av

        if self.stream is None:
            self._open_streams(frames)
        for frame in frames:
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="gray" if self.gray else "rgb24")
            for packet in self.stream.encode(image):
                self.container.mux(packet)

    def write_audio(self, audio: np.ndarray) -> None:
        import av

        for packet in self.stream.encode():  # the video is complete: flush it first, as a whole clip is written
            self.container.mux(packet)
        self._flushed = True
        chunk = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio, dtype=np.float32), format="fltp", layout=self.audio_stream.layout.name
        )
        chunk.sample_rate = self.audio_rate
        for packet in self.audio_stream.encode(chunk):
            self.container.mux(packet)
        for packet in self.audio_stream.encode():
            self.container.mux(packet)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None and self.stream is not None and not self._flushed:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()


# ------------------------------------------------------------------------------------------------ classification
#: class names of the classification demo, in class-index order (the first ``num_classes`` are used)
DEMO_CLASSES = ("drum", "flute", "horn", "organ", "piano", "violin", "whistle", "zither")
_CLASS_HUES = np.array([[230, 60, 40], [50, 200, 60], [40, 80, 230], [220, 200, 40], [200, 60, 200],
                        [40, 200, 210], [240, 140, 40], [150, 150, 150]], dtype=np.float64)


@dataclass(frozen=True)
class ClassesDemoSpec(DemoSpec):
    """The classification demo: ``num_classes`` classes, ``num_train``/``num_valid``/``num_test`` clips per split
    (spread evenly over the classes); the other fields as :class:`DemoSpec`. ``fill``: the class hue covers the
    whole frame instead of a drifting square (retrieval's pairs: a strong class signal in every patch, see
    :func:`make_demo_classes`)."""

    num_train: int = 64
    num_valid: int = 16
    num_test: int = 16
    num_classes: int = 4
    fill: bool = False

    @property
    def classes(self) -> list[str]:
        if not 2 <= self.num_classes <= len(DEMO_CLASSES):
            raise ValueError(f"the classification demo has 2 to {len(DEMO_CLASSES)} classes, got {self.num_classes}")
        return list(DEMO_CLASSES[: self.num_classes])


def make_demo_classes(root: str | os.PathLike, spec: ClassesDemoSpec) -> None:
    """Write ``root/{train,valid,test}/{class}/{class}_{split}_{i:03d}.mp4``: H.264 video with an AAC audio track
    (the folder-per-class layout, audio in the container).

    Class k is carried by both modalities, each blurred by noise: a square of hue k (plus colour jitter) drifting
    over a noisy background, and a tone of ``300 * 1.5**k`` Hz (plus pitch jitter of a few percent, a random
    amplitude and background noise)."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    classes = spec.classes
    for split in SPLITS:
        n = spec.count(split)
        labels = rng.permutation(np.arange(n) % spec.num_classes)
        for i, k in enumerate(labels):
            folder = root / split / classes[k]
            folder.mkdir(parents=True, exist_ok=True)
            frames = _class_frames(int(k), spec, rng)
            audio = _class_audio(int(k), spec, rng)
            write_mp4(folder / f"{classes[k]}_{split}_{i:03d}.mp4", frames, spec.fps, audio=audio[None],
                      audio_rate=spec.audio_rate)
    (root / _MARKER).write_text(json.dumps(asdict(spec)))


def _class_frames(k: int, spec: ClassesDemoSpec, rng: np.random.Generator) -> np.ndarray:
    """uint8 (T, size, size, 3): a drifting square of class hue k on a noisy grey background."""
    t, s = int(round(spec.seconds * spec.fps)), spec.size
    frames = 110.0 + rng.normal(0.0, 25.0, size=(t, s, s, 3))
    colour = _CLASS_HUES[k] + rng.normal(0.0, 20.0, size=3)
    side = int(rng.integers(s // 3, s // 2))
    x0, y0 = rng.integers(0, s - side, size=2)
    vx, vy = rng.integers(-2, 3, size=2)
    for j in range(t):
        x = int(np.clip(x0 + vx * j, 0, s - side))
        y = int(np.clip(y0 + vy * j, 0, s - side))
        frames[j, y : y + side, x : x + side] = colour + rng.normal(0.0, 10.0, size=(side, side, 3))
    if spec.fill:
        frames = frames - 110.0 + colour
    return np.clip(frames, 0, 255).astype(np.uint8)


def _class_audio(k: int, spec: ClassesDemoSpec, rng: np.random.Generator) -> np.ndarray:
    """float32 (N,) at ``audio_rate``: a tone of ``300 * 1.5**k`` Hz (jittered by a few percent) over noise."""
    n = int(round(spec.seconds * spec.audio_rate))
    time = np.arange(n) / spec.audio_rate
    freq = 300.0 * 1.5**k * (1.0 + rng.uniform(-0.04, 0.04))
    y = rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * freq * time + rng.uniform(0, 2 * np.pi))
    y += rng.normal(0.0, 0.03, size=n)
    return np.clip(y, -1, 1).astype(np.float32)


def _write_labels(root: Path, split: str, rows: list[tuple[str, float, np.ndarray]]) -> None:
    (root / "labels").mkdir(exist_ok=True)
    (root / "labels_emotion").mkdir(exist_ok=True)
    with open(root / "labels" / f"label_file_{split}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "sentiment_score"])
        for clip_id, score, _ in rows:
            w.writerow([clip_id, f"{score:.4f}"])
    with open(root / "labels_emotion" / f"label_file_{split}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "sentiment_score", "sentiment_class", *EMOTIONS])
        for clip_id, score, emotions in rows:
            w.writerow([clip_id, f"{score:.4f}", int(score >= 0), *(f"{e:.4f}" for e in emotions)])
