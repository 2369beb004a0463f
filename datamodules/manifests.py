"""Manifests: which clips make a split, where their files are, their labels; validation; worker-safe storage.

Layouts read here:
- the original release's processed CMU-MOSEI layout (:func:`mosei_original`);
- a plain CSV manifest with a ``split`` column (:func:`csv_manifest`);
- classification: a CSV with a ``label`` column of class names or one 0/1 column per class
  (:func:`manifest_classes`, :func:`class_labels`), or a folder per class (:func:`class_folders`);
- a folder of videos or a CSV of videos for pretraining (:func:`video_folder`, :func:`csv_manifest`);
- MSR-VTT in the frozen-in-time layout for retrieval (:func:`msrvtt`).

Storage: a :class:`Manifest` keeps its strings in one bytes buffer plus offsets (:class:`PackedStrings`) and its
labels in one float32 array, so DataLoader workers forked from the main process read them without touching
per-row Python objects: reference counting on millions of small ``str``/``dict`` objects would otherwise copy the
pages they live in into every worker, and memory would grow with epochs (pytorch/pytorch#13246).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tvlt.labels import EMOTIONS

__all__ = [
    "ManifestError",
    "PackedStrings",
    "Manifest",
    "Row",
    "build_manifest",
    "mosei_original",
    "csv_manifest",
    "manifest_classes",
    "class_labels",
    "class_folders",
    "holdout_splits",
    "video_folder",
    "msrvtt",
    "SENTIMENT_RANGE",
    "EMOTION_RANGE",
    "VIDEO_EXTENSIONS",
    "SPLIT_NAMES",
]

log = logging.getLogger(__name__)

SENTIMENT_RANGE = (-3.0, 3.0)  # CMU-MOSEI sentiment score
EMOTION_RANGE = (0.0, 3.0)  # CMU-MOSEI emotion intensities
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
CONTAINER = "container"  # audio column value: take the audio from the video file itself
#: accepted values of a CSV manifest's ``split`` column (case-insensitive) -> the split they name
SPLIT_NAMES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid", "test": "test"}


class ManifestError(ValueError):
    """A manifest problem; the message names the file and the line of each offending row."""


class PackedStrings:
    """An immutable sequence of str stored as one uint8 buffer and int64 offsets (no per-item Python objects)."""

    def __init__(self, items: Sequence[str]) -> None:
        encoded = [s.encode("utf-8") for s in items]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self._offsets[1:])
        self._buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self._buffer[self._offsets[i] : self._offsets[i + 1]].tobytes().decode("utf-8")

    def select(self, keep: np.ndarray) -> "PackedStrings":
        return PackedStrings([self[int(i)] for i in keep])

    @property
    def nbytes(self) -> int:
        return self._buffer.nbytes + self._offsets.nbytes


@dataclass
class Row:
    """One manifest row before packing. ``line`` is its line in ``source`` (header = line 1), for error messages."""

    id: str
    video: str
    audio: str | None  # sidecar path, "container", or None (no audio)
    labels: Sequence[float] | float | None = None
    source: str = ""
    line: int = 0
    problem: str | None = None  # a problem found while reading the row (e.g. a label that is not a number)


@dataclass
class Manifest:
    """A split's clips: ``ids``, ``videos``, ``audios`` (sidecar path, ``"container"`` or ``""`` = none) and
    ``labels`` float32 (N,) / (N, K) or None."""

    ids: PackedStrings
    videos: PackedStrings
    audios: PackedStrings
    labels: np.ndarray | None = None
    name: str = ""
    dropped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.ids)

    def audio(self, i: int) -> str | None:
        value = self.audios[i]
        return value or None


def build_manifest(
    rows: list[Row],
    name: str,
    label_range: tuple[float, float] | None = None,
    check_files: bool = True,
    drop_invalid: bool = False,
) -> Manifest:
    """Validate rows (files exist, labels finite and within ``label_range``) and pack them.

    Raises:
        ManifestError: listing every problem as ``source line N (id): problem`` unless ``drop_invalid``, in which
            case the offending rows are dropped and a summary by problem kind is logged.
    """
    if not rows:
        raise ManifestError(f"{name}: no rows (its source lists no clip for this split)")
    problems: list[tuple[Row, str, str]] = []  # (row, kind, message)
    for row in rows:
        kind_msg = _check_row(row, label_range, check_files)
        if kind_msg is not None:
            problems.append((row, *kind_msg))
    bad = {id(r) for r, _, _ in problems}
    dropped = Counter(kind for _, kind, _ in problems)
    if problems and not drop_invalid:
        shown = "\n".join(f"  {r.source} line {r.line} ({r.id}): {msg}" for r, _, msg in problems[:25])
        more = f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""
        raise ManifestError(
            f"{name}: {len(problems)} invalid row(s) of {len(rows)} (set drop_invalid: true to drop them)\n"
            f"{shown}{more}"
        )
    if problems:
        log.warning(
            "%s: dropped %d of %d rows (%s); first: %s line %d (%s): %s",
            name, len(problems), len(rows), ", ".join(f"{k}={v}" for k, v in sorted(dropped.items())),
            problems[0][0].source, problems[0][0].line, problems[0][0].id, problems[0][2],
        )
    kept = [r for r in rows if id(r) not in bad]
    if not kept:
        first = problems[0]
        raise ManifestError(
            f"{name}: no usable rows: all {len(rows)} row(s) are invalid and were dropped "
            f"({', '.join(f'{k}={v}' for k, v in sorted(dropped.items()))}); "
            f"first: {first[0].source} line {first[0].line} ({first[0].id}): {first[2]}"
        )
    labels = None
    if kept[0].labels is not None:
        labels = np.asarray([r.labels for r in kept], dtype=np.float32)
    return Manifest(
        ids=PackedStrings([r.id for r in kept]),
        videos=PackedStrings([r.video for r in kept]),
        audios=PackedStrings([r.audio or "" for r in kept]),
        labels=labels,
        name=name,
        dropped=dropped,
    )


def _check_row(row: Row, label_range: tuple[float, float] | None, check_files: bool) -> tuple[str, str] | None:
    if row.problem is not None:
        return "non_numeric_label", row.problem
    if row.labels is not None:
        values = np.atleast_1d(np.asarray(row.labels, dtype=np.float64))
        if not np.all(np.isfinite(values)):
            return "non_finite_label", f"label {_fmt(values)} is not finite"
        if label_range is not None and (values.min() < label_range[0] or values.max() > label_range[1]):
            return "label_out_of_range", f"label {_fmt(values)} outside [{label_range[0]:g}, {label_range[1]:g}]"
    if check_files:
        if not os.path.isfile(row.video):
            return "missing_file", f"video file not found: {row.video}"
        if row.audio not in (None, CONTAINER) and not os.path.isfile(row.audio):
            return "missing_file", f"audio file not found: {row.audio}"
    return None


def _fmt(values: np.ndarray) -> str:
    return str(values[0]) if values.size == 1 else "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _labels(rec: dict[str, str], columns: Sequence[str]) -> tuple[list[float], str | None]:
    """The float values of ``columns`` in ``rec`` and the problem with the first that is not a number (None if
    all parse). Unparsable values become NaN; the problem text quotes the original value."""
    values, problem = [], None
    for column in columns:
        text = rec.get(column)
        try:
            values.append(float(text))
        except (TypeError, ValueError):
            values.append(math.nan)
            if problem is None:
                where = "" if len(columns) == 1 else f" (column {column})"
                problem = f"label {text!r}{where} is not a number"
    return values, problem


def _require_root(root: Path, what: str) -> None:
    if not root.exists():
        raise ManifestError(f"{what} root folder does not exist: {root}")
    if not root.is_dir():
        raise ManifestError(f"{what} root is not a folder: {root}")


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    if not path.is_file():
        raise ManifestError(f"manifest file not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise ManifestError(f"{path}: empty manifest (no header line)")
        rows = [(reader.line_num, dict(r)) for r in reader]
    return list(reader.fieldnames), rows


def _require(columns: list[str], needed: Sequence[str], path: Path) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; found {columns}")


# ------------------------------------------------------------------------------------------------ CMU-MOSEI


def mosei_original(root: str | os.PathLike, split: str, task: str = "sentiment") -> list[Row]:
    """Rows of the original release's processed layout.

    ``{root}/{split}/video/{id}.mp4``, ``{root}/{split}/audio_wav/{id}.wav``; sentiment labels from
    ``labels/label_file_{split}.csv`` (``FileName,sentiment_score``); emotion intensities from
    ``labels_emotion/label_file_{split}.csv``: the columns named happy..surprise when present, else the six columns
    from the fourth on (the release's loader reads ``iloc[:, 3:]``). ``split`` is train, valid or test.
    """
    root = Path(root)
    if split not in ("train", "valid", "test"):
        raise ValueError(f"MOSEI split must be train, valid or test, got {split!r}")
    _require_root(root, "CMU-MOSEI")
    if task == "sentiment":
        path = root / "labels" / f"label_file_{split}.csv"
        columns, records = _read_csv(path)
        _require(columns, ["FileName", "sentiment_score"], path)
        label_columns = ["sentiment_score"]
    elif task == "emotion":
        path = root / "labels_emotion" / f"label_file_{split}.csv"
        columns, records = _read_csv(path)
        _require(columns, ["FileName"], path)
        if all(e in columns for e in EMOTIONS):
            label_columns = list(EMOTIONS)
        elif len(columns) >= 9:
            label_columns = columns[3:9]
        else:
            raise ManifestError(f"{path}: expected the six emotion columns {EMOTIONS} or >= 9 columns, got {columns}")
    else:
        raise ValueError(f"task must be 'sentiment' or 'emotion', got {task!r}")
    rows = []
    for line, rec in records:
        clip = rec["FileName"].strip()
        values, problem = _labels(rec, label_columns)
        rows.append(
            Row(
                id=clip,
                video=str(root / split / "video" / f"{clip}.mp4"),
                audio=str(root / split / "audio_wav" / f"{clip}.wav"),
                labels=values[0] if task == "sentiment" else values,
                source=str(path),
                line=line,
                problem=problem,
            )
        )
    return rows


# ------------------------------------------------------------------------------------------------ plain CSV


def csv_manifest(
    path: str | os.PathLike,
    split: str | None = None,
    label_columns: Sequence[str] | None = None,
    default_audio: str | None = CONTAINER,
    labels_of: Callable[[dict[str, str]], tuple[Any, str | None]] | None = None,
) -> list[Row]:
    """Rows of a CSV with columns ``video`` (required), ``audio`` (optional: a wav/flac path, ``container``, or
    empty for ``default_audio``), ``id`` (optional, default: the video's file stem), ``split`` (optional; when
    ``split`` is given only matching rows are kept) and ``label_columns``. Relative paths are relative to the CSV's
    folder.

    ``split`` values (case-insensitive): ``train``; ``valid`` (also ``val``, ``validation``, ``dev``); ``test``
    (see :data:`SPLIT_NAMES`). Any other value, an empty one included, raises :class:`ManifestError` listing the rows,
    so that a typo (``trian``) cannot silently empty a split.

    ``labels_of``: instead of float ``label_columns``, a function of the row's record returning (labels, problem
    or None), e.g. class names -> class index (:func:`class_labels`)."""
    path = Path(path)
    columns, records = _read_csv(path)
    _require(columns, ["video", *(label_columns or [])], path)
    if split is not None and "split" not in columns:
        raise ManifestError(f"{path}: a 'split' column is needed to select split {split!r}; found {columns}")
    if "split" in columns:
        _check_splits(path, records)
    base = path.parent
    rows = []
    for line, rec in records:
        if split is not None and SPLIT_NAMES[rec["split"].strip().lower()] != SPLIT_NAMES.get(split, split):
            continue
        video = _resolve(base, rec["video"])
        audio_text = (rec.get("audio") or "").strip()
        if not audio_text:
            audio = default_audio
        else:
            audio = CONTAINER if audio_text == CONTAINER else _resolve(base, audio_text)
        labels, problem = None, None
        if labels_of is not None:
            labels, problem = labels_of(rec)
        elif label_columns:
            values, problem = _labels(rec, label_columns)
            labels = values[0] if len(values) == 1 else values
        clip = (rec.get("id") or "").strip() or Path(video).stem
        rows.append(Row(clip, video, audio, labels, str(path), line, problem))
    return rows


def _check_splits(path: Path, records: list[tuple[int, dict[str, str]]]) -> None:
    bad = [(line, rec["split"]) for line, rec in records if (rec["split"] or "").strip().lower() not in SPLIT_NAMES]
    if bad:
        shown = "\n".join(f"  {path} line {line}: split {value!r}" for line, value in bad[:25])
        more = f"\n  ... and {len(bad) - 25} more" if len(bad) > 25 else ""
        raise ManifestError(
            f"{path}: {len(bad)} row(s) with an unrecognised split value (accepted: train; valid, val, validation, "
            f"dev; test)\n{shown}{more}"
        )


def _resolve(base: Path, text: str) -> str:
    p = Path(text.strip()).expanduser()
    return str(p if p.is_absolute() else base / p)


# ------------------------------------------------------------------------------------------------ classification

#: columns of a classification manifest that are not classes
MANIFEST_COLUMNS = ("video", "audio", "split", "id")


def manifest_classes(path: str | os.PathLike, classes: Sequence[str] | None = None) -> tuple[list[str], bool]:
    """Class names of a classification CSV and whether it is multi-label.

    Single-label: a ``label`` column holding class names; the classes are its distinct values sorted (or
    ``classes``, whose order then fixes the class indices). Multi-label: no ``label`` column; every column other
    than video, audio, split and id is a class holding 0/1, in the CSV's column order (or the ``classes`` named).

    Raises:
        ManifestError: no class column, an empty label column, or ``classes`` naming a column that is not there.
    """
    path = Path(path)
    columns, records = _read_csv(path)
    _require(columns, ["video"], path)
    if "label" in columns:
        found = sorted({(rec.get("label") or "").strip() for _, rec in records} - {""})
        if not found:
            raise ManifestError(f"{path}: the 'label' column holds no class name")
        return (list(classes) if classes else found), False
    candidates = [c for c in columns if c not in MANIFEST_COLUMNS]
    if not candidates:
        raise ManifestError(f"{path}: no class column: give a 'label' column of class names (single-label) or one "
                            f"0/1 column per class (multi-label); found {columns}")
    if classes:
        missing = [c for c in classes if c not in candidates]
        if missing:
            raise ManifestError(f"{path}: class column(s) {missing} not found; class columns: {candidates}")
        return list(classes), True
    return candidates, True


def class_labels(classes: Sequence[str], multilabel: bool) -> Callable[[dict[str, str]], tuple[Any, str | None]]:
    """A ``labels_of`` for :func:`csv_manifest`: single-label, the ``label`` column's class name -> its index (a
    float, as manifests store labels); multi-label, the class columns -> a 0/1 vector. The problem text names the
    value and the column."""
    index = {name: i for i, name in enumerate(classes)}

    def single(rec: dict[str, str]) -> tuple[Any, str | None]:
        name = (rec.get("label") or "").strip()
        if name not in index:
            return math.nan, f"label {name!r} is not one of the classes {list(classes)}"
        return float(index[name]), None

    def multi(rec: dict[str, str]) -> tuple[Any, str | None]:
        values, problem = [], None
        for name in classes:
            text = (rec.get(name) or "").strip()
            value = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0}.get(text)
            if value is None:
                value = math.nan
                problem = problem or f"column {name}: {text!r} is not 0 or 1"
            values.append(value)
        return values, problem

    return multi if multilabel else single


def class_folders(root: str | os.PathLike, split: str, classes: Sequence[str] | None = None,
                  val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> tuple[list[Row], list[str]]:
    """Rows of ``split`` of a folder-per-class tree, audio from the video's own stream, label = class index (float).

    Two layouts: ``root/{train,valid,test}/{class}/{clip}`` (split folders), or ``root/{class}/{clip}``, whose clips
    are split by :func:`holdout_splits` (``val_fraction``, ``test_fraction``, ``seed``). Classes are the class
    folders sorted (of ``root/train`` with split folders) unless ``classes`` fixes them. Videos are the files with
    an extension of :data:`VIDEO_EXTENSIONS`; ids are ``{class}/{file stem}``. Returns (rows, classes)."""
    root = Path(root)
    _require_root(root, "class folder")
    split = SPLIT_NAMES.get(split, split)
    with_splits = (root / "train").is_dir()
    top = root / split if with_splits else root
    names = classes or _subfolders(root / "train" if with_splits else root)
    if not names:
        raise ManifestError(f"{root}: no class folders (expected {root}/<class>/<clip>.mp4 or "
                            f"{root}/train/<class>/<clip>.mp4)")
    rows = []
    for k, name in enumerate(names):
        folder = top / name
        videos = sorted(p for p in folder.glob("*") if p.suffix.lower() in VIDEO_EXTENSIONS) if folder.is_dir() else []
        # ids carry the class: cat/001.mp4 and dog/001.mp4 are two clips
        rows += [Row(f"{name}/{p.stem}", str(p), CONTAINER, float(k), str(folder), 0) for p in videos]
    if not with_splits:
        assigned = holdout_splits([int(r.labels) for r in rows], val_fraction, test_fraction, seed)
        rows = [r for r, s in zip(rows, assigned) if s == split]
    return rows, list(names)


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if folder.is_dir() else []


def holdout_splits(labels: Sequence[int], val_fraction: float = 0.1, test_fraction: float = 0.1,
                   seed: int = 0) -> list[str]:
    """A train/valid/test split per item, stratified by class: within each class (in the given order) a seeded
    permutation puts ``round(n * test_fraction)`` items in test and ``round(n * val_fraction)`` in valid, at least
    one each when the fraction is positive and the class has 3 or more items; the rest train."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be in [0, 1) with a "
                         "sum below 1")
    rng = np.random.default_rng(seed)
    out = ["train"] * len(labels)
    by_class: dict[int, list[int]] = {}
    for i, k in enumerate(labels):
        by_class.setdefault(int(k), []).append(i)
    for k in sorted(by_class):
        items = [by_class[k][j] for j in rng.permutation(len(by_class[k]))]
        n = len(items)

        def count(fraction: float) -> int:
            return max(int(round(n * fraction)), 1 if fraction > 0 and n >= 3 else 0)

        n_test, n_val = count(test_fraction), count(val_fraction)
        for j, i in enumerate(items):
            out[i] = "test" if j < n_test else "valid" if j < n_test + n_val else "train"
    return out


# ------------------------------------------------------------------------------------------------ pretraining


def video_folder(root: str | os.PathLike) -> list[Row]:
    """Every video under ``root`` (recursively, sorted), audio from the container (HowTo100M/YTTemporal style)."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"video folder not found: {root}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    return [Row(p.stem, str(p), CONTAINER, None, str(root), 0) for p in paths]


# ------------------------------------------------------------------------------------------------ retrieval


def msrvtt(root: str | os.PathLike, split: str, cut: str = "miech") -> list[Row]:
    """MSR-VTT in the frozen-in-time layout: ids from ``high-quality/structured-symlinks/{split}_list_{cut}.txt``
    (one id per line), videos at ``videos/all/{id}.mp4``, audio from the same mp4. ``split``: train or test."""
    root = Path(root)
    _require_root(root, "MSR-VTT")
    path = root / "high-quality" / "structured-symlinks" / f"{split}_list_{cut}.txt"
    if not path.is_file():
        raise ManifestError(f"MSR-VTT split list not found: {path}")
    rows = []
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        clip = text.strip()
        if clip:
            rows.append(Row(clip, str(root / "videos" / "all" / f"{clip}.mp4"), CONTAINER, None, str(path), line))
    return rows
