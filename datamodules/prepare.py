"""Dataset preparation commands: real datasets into the layouts the datamodules read.

    python -m datamodules.prepare mosei --labels CMU_MOSEI_Labels.csd --videos /data/mosei/raw \\
        --folds cmu_mosei_std_folds.py --out /data/mosei [--workers 4]
    python -m datamodules.prepare folder /data/clips --out /data/clips.csv            # root/{class}/{clip}.mp4
    python -m datamodules.prepare folder /data/clips --labels labels.csv --out /data/clips.csv   # flat folder

``mosei`` cuts every labelled CMU-MOSEI segment out of its full video (frames through
:class:`datamodules.decoding.ClipReader`, written with PyAV: video without audio as H.264, audio as 16 kHz mono
16-bit wav) into the layout :class:`datamodules.mosei.MoseiDataModule` reads, writes the label files with named
columns, and lists the segments that failed with their causes. ``folder`` writes the CSV manifest of
``experiment=classify`` for a folder-per-class tree or a flat folder with a labels file, after reading every clip.
See docs/data.md.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import logging
import math
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datamodules.manifests import SPLIT_NAMES, VIDEO_EXTENSIONS, holdout_splits
from tvlt.labels import EMOTIONS

__all__ = ["main", "prepare_mosei", "prepare_folder", "read_csd_labels", "read_folds", "Segment",
           "SDK_EMOTIONS"]

log = logging.getLogger(__name__)

#: emotion order of the CMU Multimodal SDK's label features (columns 1..6; column 0 is sentiment)
SDK_EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
#: SDK column of each emotion in this project's order (happy, sad, angry, fear, disgust, surprise)
_EMOTION_COLUMNS = tuple(1 + SDK_EMOTIONS.index({"angry": "anger"}.get(e, e)) for e in EMOTIONS)
#: frames per read at most (a cap above any chunk)
_MAX_FRAMES = 36000
AUDIO_RATE = 16000
REPORT = "prepare_failures.csv"


# ---------------------------------------------------------------------------------------------------- CMU-MOSEI
@dataclass(frozen=True)
class Segment:
    """One labelled segment: ``id`` = ``{video}_{index}`` (index: its row in the video's ``intervals``), its time
    span in seconds and its 7 label values in the SDK's order (sentiment, happy, sad, anger, surprise, disgust,
    fear)."""

    id: str
    video: str
    start: float
    end: float
    features: tuple[float, ...]

    def label_rows(self) -> tuple[list[Any], list[Any]]:
        """(``FileName,sentiment_score`` row, ``FileName,sentiment_score,happy,...,surprise`` row)."""
        sentiment = f"{self.features[0]:.4f}"
        emotions = [f"{self.features[c]:.4f}" for c in _EMOTION_COLUMNS]
        return [self.id, sentiment], [self.id, sentiment, *emotions]


def read_csd_labels(path: str | os.PathLike) -> dict[str, list[Segment]]:
    """The segments of a CMU Multimodal SDK label sequence (``CMU_MOSEI_Labels.csd``, HDF5): one top-level group
    (the sequence's name) holding ``data/{video}/intervals`` float (n, 2) seconds and ``data/{video}/features``
    float (n, 7). Returns video id -> segments in interval order.

    Raises:
        ValueError: not such a file, naming it and the first video whose arrays have the wrong shape.
    """
    try:
        import h5py
    except ImportError as e:  # the `prepare` extra
        raise ImportError("reading .csd files needs h5py: pip install -e '.[prepare]'") from e
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"label file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not an HDF5 computational sequence ({e})") from None
    with f:
        groups = [k for k in f.keys() if isinstance(f[k], h5py.Group) and "data" in f[k]]
        if len(groups) != 1:
            raise ValueError(f"{path}: expected one computational sequence group with a 'data' group, found "
                             f"{list(f.keys())}")
        data = f[groups[0]]["data"]
        out: dict[str, list[Segment]] = {}
        for video in sorted(data.keys()):
            intervals, features = np.asarray(data[video]["intervals"]), np.asarray(data[video]["features"])
            if intervals.ndim != 2 or intervals.shape[1] != 2 or features.shape != (len(intervals), 7):
                raise ValueError(f"{path}: video {video}: intervals {intervals.shape} and features {features.shape}"
                                 " must be (n, 2) and (n, 7)")
            out[video] = [Segment(f"{video}_{i}", video, float(a), float(b), tuple(float(v) for v in row))
                          for i, ((a, b), row) in enumerate(zip(intervals, features))]
    return out


def read_folds(path: str | os.PathLike) -> dict[str, list[str]]:
    """Video ids of train/valid/test. Either JSON ``{"train": [...], "valid": [...], "test": [...]}`` or the SDK's
    ``cmu_mosei_std_folds.py`` (``standard_train_fold = [...]``, ``standard_valid_fold``, ``standard_test_fold``,
    read as literals, never executed)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"folds file not found: {path}")
    text = path.read_text()
    if path.suffix == ".json":
        raw = json.loads(text)
    else:
        raw = {}
        for node in ast.parse(text).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                for split in ("train", "valid", "test"):
                    if name == f"standard_{split}_fold":
                        raw[split] = ast.literal_eval(node.value)
    folds = {SPLIT_NAMES.get(str(k).lower(), str(k)): [str(v) for v in vs] for k, vs in raw.items()}
    missing = [s for s in ("train", "valid", "test") if s not in folds]
    if missing:
        raise ValueError(f"{path}: no fold(s) {missing}; give train, valid and test (JSON keys or the SDK's "
                         "standard_{train,valid,test}_fold lists)")
    return {s: folds[s] for s in ("train", "valid", "test")}


def _find_video(folder: Path, video: str) -> Path | None:
    for ext in VIDEO_EXTENSIONS:
        p = folder / f"{video}{ext}"
        if p.is_file():
            return p
    return None


def _cut_video(job: tuple[str, str | None, str, list[Segment], float | None, float]) -> list[tuple[str, str, str]]:
    """Cut the segments of one full video (one worker per video, so its frame index is built once). Returns
    (segment id, status, detail) per segment: status ``done``, ``skipped`` (already there) or a failure cause."""
    import soundfile as sf

    from datamodules.decoding import ClipDecodeError, ClipReader

    split, source, out, segments, timeout, chunk_seconds = job
    out_dir = Path(out) / split
    results = []
    # the audio of a span is read with one frame (its window is the span's); the frames chunk by chunk
    audio_reader = ClipReader(num_frames=1, decode_timeout=timeout, sampling_rate=AUDIO_RATE, min_audio_samples=1)
    frame_reader = ClipReader(num_frames=_MAX_FRAMES, decode_timeout=timeout)
    for seg in segments:
        mp4, wav = out_dir / "video" / f"{seg.id}.mp4", out_dir / "audio_wav" / f"{seg.id}.wav"
        if mp4.is_file() and wav.is_file():
            results.append((seg.id, "skipped", ""))
            continue
        if source is None:
            results.append((seg.id, "missing_video", f"no {seg.video}.{{{','.join(e[1:] for e in VIDEO_EXTENSIONS)}}}"
                                                      " in the videos folder"))
            continue
        if not (math.isfinite(seg.start) and math.isfinite(seg.end) and seg.end > seg.start >= 0):
            results.append((seg.id, "bad_interval", f"interval [{seg.start:g}, {seg.end:g}] s"))
            continue
        if not all(math.isfinite(v) for v in seg.features):
            results.append((seg.id, "bad_label", f"label values {list(seg.features)} are not all finite"))
            continue
        for path in (mp4, wav):
            path.parent.mkdir(parents=True, exist_ok=True)
        # written under temporary names and renamed, so an interrupted run never leaves a file that looks finished
        tmp_wav, tmp_mp4 = wav.with_name(f".{wav.name}.tmp.wav"), mp4.with_name(f".{mp4.name}.tmp.mp4")
        try:
            clip = audio_reader.read(source, audio="container", mode="span", span=(seg.start, seg.end))
            fps = Fraction(clip.fps if clip.fps > 0 else 30.0).limit_denominator(1001)
            count = _write_frames(frame_reader, source, seg, tmp_mp4, fps, chunk_seconds)
        except ClipDecodeError as e:
            tmp_mp4.unlink(missing_ok=True)
            cause = "outside_video" if e.cause == "outside_clip" else e.cause
            results.append((seg.id, cause, e.detail or str(e)))
            continue
        sf.write(tmp_wav, clip.waveform, AUDIO_RATE, subtype="PCM_16")
        os.replace(tmp_wav, wav)
        os.replace(tmp_mp4, mp4)
        results.append((seg.id, "done", f"{count} frames, {len(clip.waveform) / AUDIO_RATE:.2f} s audio"))
    return results


def _write_frames(reader, source: str, seg: Segment, path: Path, fps: Fraction, chunk_seconds: float) -> int:
    """Every frame shown during the segment, read ``chunk_seconds`` at a time and encoded as it comes (a long HD
    segment never sits in memory whole). Returns the number of frames."""
    from datamodules.decoding import ClipDecodeError
    from datamodules.demo import Mp4Writer

    count, t = 0, seg.start
    with Mp4Writer(path, fps) as writer:
        while t < seg.end:
            stop = min(t + chunk_seconds, seg.end)
            try:
                frames = reader.read(source, audio=None, mode="span", span=(t, stop)).frames
                writer.write(frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2])  # yuv420p: even
                count += len(frames)
            except ClipDecodeError as e:
                if e.cause != "outside_clip":  # else no frame in this chunk: the segment ends after the video
                    raise
            t = stop
    return count


def prepare_mosei(labels: str | os.PathLike, videos: str | os.PathLike, folds: str | os.PathLike,
                  out: str | os.PathLike, workers: int = 1, decode_timeout: float | None = 300.0,
                  chunk_seconds: float = 10.0) -> dict[str, Any]:
    """Cut every labelled segment of the fold videos into ``out`` in the original release's processed layout::

        out/{train,valid,test}/video/{id}.mp4        the segment's frames, H.264, no audio, the source's frame rate
        out/{train,valid,test}/audio_wav/{id}.wav    its audio, 16 kHz mono 16-bit PCM
        out/labels/label_file_{split}.csv            FileName,sentiment_score
        out/labels_emotion/label_file_{split}.csv    FileName,sentiment_score,happy,sad,angry,fear,disgust,surprise
        out/emotion_manifest.csv                     id,video,audio,split,happy,...,surprise: 0/1 (intensity > 0),
                                                     the manifest of experiment=classify (multi-label)
        out/prepare_failures.csv                     id,split,video,cause,detail of each segment that failed

    Segments whose two files exist are skipped (re-running finishes an interrupted run). Label files list every
    segment whose files exist. Failure causes: ``missing_video``, ``outside_video`` (no frame in the interval),
    ``bad_interval``, ``bad_label``, or a :data:`datamodules.decoding.CAUSES` decode failure. Fold videos absent
    from the label file are reported as ``no_labels``; label-file videos in no fold are counted, not cut.

    Frames are read and encoded ``chunk_seconds`` at a time (memory: one chunk of decoded frames per worker).
    ``decode_timeout`` applies to each read (seconds; None: no limit).

    Returns a summary: ``{"done", "skipped", "failed": Counter of causes, "not_in_folds", "failures": [...]}``.
    """
    out = Path(out)
    segments = read_csd_labels(labels)
    fold_ids = read_folds(folds)
    videos = Path(videos)
    if not videos.is_dir():
        raise ValueError(f"videos folder not found: {videos}")
    jobs, failures = [], []
    for split, ids in fold_ids.items():
        for video in ids:
            if video not in segments:
                failures.append((video, split, video, "no_labels", "the label file has no segment of this video"))
                continue
            source = _find_video(videos, video)
            jobs.append((split, None if source is None else str(source), str(out), segments[video], decode_timeout,
                         chunk_seconds))
    in_folds = {v for ids in fold_ids.values() for v in ids}
    not_in_folds = sum(1 for v in segments if v not in in_folds)
    status: dict[str, tuple[str, str]] = {}
    split_of = {seg.id: job[0] for job in jobs for seg in job[3]}
    video_of = {seg.id: seg.video for job in jobs for seg in job[3]}
    with ProcessPoolExecutor(max_workers=max(1, workers)) if workers > 1 else _Serial() as pool:
        for results in pool.map(_cut_video, jobs):
            for seg_id, state, detail in results:
                status[seg_id] = (state, detail)
    for seg_id, (state, detail) in status.items():
        if state not in ("done", "skipped"):
            failures.append((seg_id, split_of[seg_id], video_of[seg_id], state, detail))
    _write_labels(out, jobs, status)
    failures.sort(key=lambda r: (r[1], r[0]))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / REPORT, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "split", "video", "cause", "detail"])
        w.writerows(failures)
    counts = Counter(state for state, _ in status.values())
    return {"done": counts["done"], "skipped": counts["skipped"], "failed": Counter(r[3] for r in failures),
            "not_in_folds": not_in_folds, "failures": failures}


class _Serial:
    """``ProcessPoolExecutor``'s ``map`` in this process (``--workers 1``)."""

    def __enter__(self) -> "_Serial":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    @staticmethod
    def map(fn, items):
        return map(fn, items)


def _write_labels(out: Path, jobs: list, status: dict[str, tuple[str, str]]) -> None:
    """The label files of the processed layout, and ``emotion_manifest.csv``: the emotions as 0/1 classes
    (intensity > 0, as :class:`datamodules.mosei.MoseiDataModule` binarises them) for ``experiment=classify``."""
    presence = []
    for split in ("train", "valid", "test"):
        rows = [seg.label_rows() for job in jobs if job[0] == split for seg in job[3]
                if status.get(seg.id, ("",))[0] in ("done", "skipped")]
        for folder, header, index in (("labels", ["FileName", "sentiment_score"], 0),
                                      ("labels_emotion", ["FileName", "sentiment_score", *EMOTIONS], 1)):
            (out / folder).mkdir(parents=True, exist_ok=True)
            with open(out / folder / f"label_file_{split}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(r[index] for r in rows)
        presence += [[r[1][0], f"{split}/video/{r[1][0]}.mp4", f"{split}/audio_wav/{r[1][0]}.wav", split,
                      *(int(float(v) > 0) for v in r[1][2:])] for r in rows]
    with open(out / "emotion_manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "video", "audio", "split", *EMOTIONS])
        w.writerows(presence)


# ---------------------------------------------------------------------------------------------------- folder
def _check_clip(path: str) -> str | None:
    """None when the clip decodes with an audio stream (one frame and its audio), else the problem."""
    from datamodules.decoding import ClipDecodeError, ClipReader

    try:
        ClipReader(num_frames=1, decode_timeout=None).read(path, audio="container")
    except ClipDecodeError as e:
        return f"{e.cause}: {e.detail}" if e.detail else e.cause
    return None


def prepare_folder(root: str | os.PathLike, out: str | os.PathLike, labels: str | os.PathLike | None = None,
                   val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
                   workers: int = 1) -> dict[str, Any]:
    """Write the ``experiment=classify`` manifest (``id,video,split,label`` or ``id,video,split,<class>,...``; paths
    relative to the manifest's folder; ids ``{class}/{file stem}`` or the labels file's path without extension, so
    ``cat/001.mp4`` and ``dog/001.mp4`` stay two clips) for ``root``:

    - a folder per class, ``root/{class}/{clip}`` or ``root/{train,valid,test}/{class}/{clip}``;
    - with ``labels``: a flat folder and a CSV ``file,label`` (class name) or ``file,<class 1>,<class 2>,...``
      (0/1 per class: multi-label), ``file`` relative to ``root``.

    Without split folders each class is split by :func:`datamodules.manifests.holdout_splits`. Every clip is read
    (one frame and its audio track); clips that fail, files without a label, labels without a file and files that
    are not videos are listed as problems (``(file, problem)``) and left out of the manifest.

    Returns ``{"rows": [...], "classes": [...], "problems": [(file, problem), ...]}``.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise ValueError(f"clip folder not found: {root}")
    problems: list[tuple[str, str]] = []
    items: list[dict[str, Any]] = []  # {"path", "split" (or None), "label" (class name) or class columns}
    if labels is None:
        with_splits = all((root / s).is_dir() for s in ("train", "valid", "test"))
        tops = [(root / s, s) for s in ("train", "valid", "test")] if with_splits else [(root, None)]
        classes = sorted({p.name for top, _ in tops for p in top.iterdir() if p.is_dir()})
        if not classes:
            raise ValueError(f"{root}: no class folders (expected {root}/<class>/<clip>.mp4)")
        for top, split in tops:
            for path in sorted(p for p in top.rglob("*") if p.is_file()):
                rel = path.relative_to(top)
                if len(rel.parts) != 2:
                    problems.append((str(path), "not inside a class folder"))
                elif path.suffix.lower() not in VIDEO_EXTENSIONS:
                    problems.append((str(path), f"not a video file (extensions {', '.join(VIDEO_EXTENSIONS)})"))
                else:
                    items.append({"path": path, "split": split, "label": rel.parts[0],
                                  "id": f"{rel.parts[0]}/{path.stem}"})
        multilabel = False
    else:
        items, classes, multilabel = _labelled_files(root, Path(labels), problems)
    checked = _map(_check_clip, [str(it["path"]) for it in items], workers)
    good = []
    for it, problem in zip(items, checked):
        if problem is None:
            good.append(it)
        else:
            problems.append((str(it["path"]), problem))
    if any(it["split"] is None for it in good):
        index = {c: i for i, c in enumerate(classes)}
        keys = [index[it["label"]] if not multilabel else 0 for it in good]
        for it, split in zip(good, holdout_splits(keys, val_fraction, test_fraction, seed)):
            it["split"] = split
    out.parent.mkdir(parents=True, exist_ok=True)
    header = ["id", "video", "split", *(classes if multilabel else ["label"])]
    rows = []
    for it in good:
        video = os.path.relpath(it["path"], out.parent)
        row = {"id": it["id"], "video": video, "split": it["split"]}
        row.update({c: it[c] for c in classes} if multilabel else {"label": it["label"]})
        rows.append(row)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return {"rows": rows, "classes": classes, "problems": sorted(problems)}


def _labelled_files(root: Path, labels: Path, problems: list) -> tuple[list[dict], list[str], bool]:
    if not labels.is_file():
        raise ValueError(f"labels file not found: {labels}")
    with open(labels, newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        records = [(reader.line_num, r) for r in reader]
    if "file" not in columns:
        raise ValueError(f"{labels}: needs a 'file' column and a 'label' column or one 0/1 column per class; "
                         f"found {columns}")
    multilabel = "label" not in columns
    classes = [c for c in columns if c not in ("file", "split")] if multilabel else \
        sorted({(r.get("label") or "").strip() for _, r in records} - {""})
    if not classes:
        raise ValueError(f"{labels}: no class column / no class name")
    items, listed = [], set()
    for line, rec in records:
        name = (rec.get("file") or "").strip()
        path = root / name
        listed.add(path.resolve())
        where = f"{labels} line {line}"
        if not path.is_file():
            problems.append((str(path), f"listed in {where} but not found"))
            continue
        split = (rec.get("split") or "").strip().lower() or None
        if split is not None and split not in SPLIT_NAMES:
            problems.append((str(path), f"{where}: split {split!r} is not train, valid or test"))
            continue
        item: dict[str, Any] = {"path": path, "split": SPLIT_NAMES.get(split) if split else None,
                                "id": str(Path(name).with_suffix(""))}
        if multilabel:
            values = {c: (rec.get(c) or "").strip() for c in classes}
            bad = [c for c, v in values.items() if v not in ("0", "1")]
            if bad:
                problems.append((str(path), f"{where}: column {bad[0]}: {values[bad[0]]!r} is not 0 or 1"))
                continue
            item.update({c: int(v) for c, v in values.items()})
        else:
            label = (rec.get("label") or "").strip()
            if not label:
                problems.append((str(path), f"{where}: empty label"))
                continue
            item["label"] = label
        items.append(item)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS):
        if path.resolve() not in listed:
            problems.append((str(path), f"video without a label in {labels}"))
    return items, classes, multilabel


def _map(fn, items: Sequence[Any], workers: int) -> list[Any]:
    if workers > 1 and len(items) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fn, items, chunksize=8))
    return [fn(it) for it in items]


# ---------------------------------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules.prepare", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mosei", help="cut CMU-MOSEI segments into the MoseiDataModule layout")
    m.add_argument("--labels", required=True, help="the SDK's CMU_MOSEI_Labels.csd (HDF5)")
    m.add_argument("--videos", required=True, help="folder of the full videos, {video id}.mp4")
    m.add_argument("--folds", required=True, help="the SDK's cmu_mosei_std_folds.py or a JSON {train, valid, test}")
    m.add_argument("--out", required=True, help="output folder (data.root of experiment=mosei)")
    m.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="parallel videos")
    m.add_argument("--decode-timeout", type=float, default=300.0, help="seconds per read (0: no limit)")
    m.add_argument("--chunk-seconds", type=float, default=10.0, help="seconds of frames decoded at a time")
    f = sub.add_parser("folder", help="write the experiment=classify manifest of a folder of clips")
    f.add_argument("root", help="root/{class}/{clip}, root/{train,valid,test}/{class}/{clip}, or a flat folder")
    f.add_argument("--labels", help="flat folder: CSV with file,label (or file + one 0/1 column per class)")
    f.add_argument("--out", required=True, help="the manifest CSV to write")
    f.add_argument("--val-fraction", type=float, default=0.1)
    f.add_argument("--test-fraction", type=float, default=0.1)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--workers", type=int, default=1, help="parallel clip checks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "mosei":
        s = prepare_mosei(args.labels, args.videos, args.folds, args.out, args.workers,
                          args.decode_timeout or None, args.chunk_seconds)
        failed = sum(s["failed"].values())
        print(f"{args.out}: cut {s['done']} segment(s), {s['skipped']} already done, {failed} failed"
              + (f" ({', '.join(f'{k}={v}' for k, v in sorted(s['failed'].items()))}; see "
                 f"{Path(args.out) / REPORT})" if failed else "")
              + (f"; {s['not_in_folds']} labelled video(s) in no fold" if s["not_in_folds"] else ""))
        for seg_id, split, video, cause, detail in s["failures"][:20]:
            print(f"  {split} {seg_id}: {cause} ({detail})", file=sys.stderr)
        return 1 if failed else 0
    s = prepare_folder(args.root, args.out, args.labels, args.val_fraction, args.test_fraction, args.seed,
                       args.workers)
    splits = Counter(r["split"] for r in s["rows"])
    print(f"{args.out}: {len(s['rows'])} clip(s) of {len(s['classes'])} class(es) {s['classes']} "
          f"(train {splits['train']}, valid {splits['valid']}, test {splits['test']}); {len(s['problems'])} problem(s)")
    for path, problem in s["problems"]:
        print(f"  {path}: {problem}", file=sys.stderr)
    return 1 if s["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
