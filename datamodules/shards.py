"""LitData shards: decode and preprocess every clip once, then train from chunked, indexed shards on local disk or
object storage (``s3://``, ``gs://``), split across ranks and DataLoader workers, resumable mid-epoch.

Build (the project's own reader and processors, in parallel with ``litdata.optimize``)::

    python -m datamodules.build_shards --datamodule mosei --root /data/mosei --out /data/mosei_shards --workers 8
    python -m datamodules.build_shards --datamodule pretrain --manifest videos.csv --out s3://bucket/howto100m --workers 32

and train with ``data.shards=/data/mosei_shards`` (or the ``s3://`` URI). Each split is a folder ``{out}/{split}``
holding LitData's ``index.json`` and ``chunk-*.bin`` files, and ``build_report.json`` (records written, failed clips
with their cause). One record per clip (per window of ``window_seconds`` for pretraining videos; a video shorter
than a window is one record), with these fields (all of LitData formats that never unpickle, see
:data:`SAFE_FORMATS`):

- ``id`` (str): the clip id, ``{id}@{k}`` for window k of a pretraining video;
- ``labels``: float32 (K,) the manifest's label row (K = 0 without labels);
- ``frames``: uint8, the ``2 x num_frames`` candidate frames at the model resolution (the image processor's resize
  and crop applied; its rescale and normalization, exact on uint8, run at load time): concatenated JPEG files
  (``frames="jpeg"``) or raw (N, H, W, 3) (``frames="uint8"``, lossless); ``frame_bytes``: int64 (N,) bytes per frame;
- ``frame_index``: int64 (N,) index of each candidate among the clip's presented frames, ``num_decodable``: how
  many it presents; ``frame_times``: float64 (N,) presentation times (s); ``start``, ``end``: the window (s);
  ``fps``: average frame rate (Hz);
- ``audio``: float16 (Ta, 128) the feature extractor's log-mel of the window (values in [-1, 1]; float16 keeps them
  to within 5e-4), ``audio_patches`` (int): real audio patches.

The candidates are ``uniform_indices(span, 2 x num_frames)`` of the window's frames; the evaluation frames
``uniform_indices(span, num_frames)`` are a subset of them (see :func:`evaluation_positions`), so evaluation from
lossless shards equals per-file decoding exactly. Training picks one candidate in each of ``num_frames`` equal
segments at random (temporal jitter).

The settings (frames, candidates, processor mode, resolution, frame encoding, window, task) are stored in
``index.json`` under ``"tvlt"``; opening shards with other settings is an error naming the setting. Opening an index
whose ``data_format`` names a format outside :data:`SAFE_FORMATS` (``pickle`` among them) is refused before any
record is read.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from litdata import StreamingDataLoader, StreamingDataset

from datamodules.decoding import ClipDecodeError, ClipReader
from datamodules.manifests import Manifest
from datamodules.sampling import random_window_indices, uniform_indices
from datamodules.transform import DECODE_ON, ClipTransform, decode_jpeg_frames, jpeg_files

__all__ = ["SAFE_FORMATS", "ShardAccessError", "ShardSettingsError", "UnsafeShardError", "build_shards", "check_shards", "open_shards"]

log = logging.getLogger(__name__)
VERSION = 1
#: LitData ``data_format`` names (before any ``:``) these shards use; none of them unpickles.
SAFE_FORMATS = frozenset({"str", "int", "float", "numpy", "no_header_numpy"})
FRAME_ENCODINGS = ("jpeg", "uint8")


class UnsafeShardError(ValueError):
    """A shard index declares a field format that could run code when read (e.g. ``pickle``)."""


class ShardAccessError(OSError):
    """Object storage refused or could not be reached while reading a shard index (endpoint, credentials, bucket)."""


class ShardSettingsError(ValueError):
    """Shards built with other settings than the run's (frames, processor mode, resolution, ...)."""


# ------------------------------------------------------------------------------------------------ locations
def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _s3_client(storage_options: dict | None) -> Any:
    import boto3

    return boto3.client("s3", **(storage_options or {}))


def _split_uri(uri: str) -> tuple[str, str]:
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket, key


def read_text(uri: str, storage_options: dict | None = None) -> str:
    """The text of a local file or an ``s3://`` object (``storage_options`` as for boto3's client, e.g.
    ``endpoint_url``). Raises FileNotFoundError naming the location when it does not exist, ShardAccessError when
    object storage cannot be reached or refuses (naming the endpoint and the settings that set it)."""
    if not _is_remote(uri):
        path = Path(uri.removeprefix("file://"))
        if not path.is_file():
            raise FileNotFoundError(f"no shard index at {path} (build shards with python -m datamodules.build_shards)")
        return path.read_text()
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri}: only local folders and s3:// URIs are read by this project's shard check")
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _split_uri(uri)
    try:
        client = _s3_client(storage_options)
    except (BotoCoreError, ValueError) as err:  # no such profile, a malformed endpoint
        endpoint = (storage_options or {}).get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
        raise ShardAccessError(_access_message(uri, endpoint, err)) from None
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:  # no such bucket, access denied; or no such key (the split is not there)
        if err.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
            raise ShardAccessError(_access_message(uri, client.meta.endpoint_url, err)) from None
        raise FileNotFoundError(f"no shard index at {uri} (build shards with python -m datamodules.build_shards)") from None
    except BotoCoreError as err:  # nothing listening at the endpoint, no credentials
        raise ShardAccessError(_access_message(uri, client.meta.endpoint_url, err)) from None
    return body.decode("utf-8")


def _access_message(uri: str, endpoint: str, err: Exception) -> str:
    return (f"{uri}: cannot read it from {endpoint} ({type(err).__name__}: {err}); the endpoint is set by "
            f"data.shards_options.endpoint_url or AWS_ENDPOINT_URL, the credentials by AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY")


def write_text(uri: str, text: str, storage_options: dict | None = None) -> None:
    """Write ``text`` to a local file (folders created) or an ``s3://`` object."""
    if not _is_remote(uri):
        path = Path(uri.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    bucket, key = _split_uri(uri)
    _s3_client(storage_options).put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))


def allow_plain_http(storage_options: dict | None) -> None:
    """Let LitData's transfers use an ``http://`` endpoint (a local S3-compatible server).

    Works around LitData 0.2.76: its obstore ``S3Store`` takes the boto3 client's endpoint but fixed client options
    without ``allow_http``, so every chunk upload or download to a plain-HTTP endpoint fails with "BadScheme". When
    the configured endpoint is ``http://``, ``AWS_ALLOW_HTTP=true`` is set (inherited by build and DataLoader
    workers) and LitData's client options gain ``allow_http``; this module applies the latter again when a spawned
    worker imports it.
    """
    endpoint = (storage_options or {}).get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or ""
    if endpoint.startswith("http://") and os.environ.get("AWS_ALLOW_HTTP") is None:
        log.info("shards: endpoint %s is plain HTTP: allowing HTTP for LitData's obstore transfers", endpoint)
        os.environ["AWS_ALLOW_HTTP"] = "true"
    _obstore_http_option()


def _obstore_http_option() -> None:
    if os.environ.get("AWS_ALLOW_HTTP", "").lower() != "true":
        return
    try:
        from litdata.streaming import downloader
    except ImportError:
        return
    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if isinstance(options, dict):
        options["allow_http"] = True


_obstore_http_option()


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


# ------------------------------------------------------------------------------------------------ the index check
def check_index(index: dict[str, Any], where: str) -> None:
    """Refuse an index that declares a field format outside :data:`SAFE_FORMATS`.

    Raises:
        UnsafeShardError: naming the field (from the index's ``data_spec``, else its position) and ``where``.
    """
    config = index.get("config") or {}
    formats = config.get("data_format") or []
    names = _field_names(config.get("data_spec"), len(formats))
    for name, fmt in zip(names, formats):
        if str(fmt).split(":", 1)[0] not in SAFE_FORMATS:
            raise UnsafeShardError(
                f"{where}: field {name!r} declares data format {fmt!r}, which this project never writes and which "
                f"may run code when read (only {sorted(SAFE_FORMATS)} are accepted); refusing to open these shards"
            )


def _field_names(data_spec: Any, count: int) -> list[str]:
    fallback = [f"#{i}" for i in range(count)]
    try:
        spec = json.loads(data_spec)[1]
        names = [str(n) for n in json.loads(spec["context"])]
    except (TypeError, ValueError, KeyError, IndexError):
        return fallback
    return names if len(names) == count else fallback


def read_index(uri: str, storage_options: dict | None = None) -> dict[str, Any]:
    """The checked ``index.json`` of the split at ``uri`` (see :func:`check_index`)."""
    where = _join(uri, "index.json")
    try:
        index = json.loads(read_text(where, storage_options))
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not a JSON shard index ({e})") from None
    check_index(index, where)
    return index


#: recorded setting -> (the run's setting, the build command's option) that sets it
SETTING_SOURCES = {
    "num_frames": ("data.num_frames", "--num-frames"),
    "processor_mode": ("data.processor_mode", "--processor-mode"),
    "frame_size": ("data.image_size", "--image-size"),
    "task": ("data.task", "--task"),
    "window_seconds": ("data.window_seconds", "--window-seconds"),
}


def check_settings(recorded: dict[str, Any] | None, wanted: dict[str, Any], where: str) -> None:
    """Raise :class:`ShardSettingsError` naming each setting whose recorded value differs from the wanted one, with
    the run setting and the build option that set it (``candidates`` follows ``num_frames`` and is named only on its
    own)."""
    if not recorded or recorded.get("version") != VERSION:
        raise ShardSettingsError(f"{where}: no TVLT shard settings of version {VERSION} (rebuild the shards)")
    differ = [k for k, v in wanted.items() if recorded.get(k) != v]
    if "num_frames" in differ and "candidates" in differ:
        differ.remove("candidates")
    wrong = []
    for k in differ:
        source = SETTING_SOURCES.get(k)
        hint = f" [{source[0]}; build option {source[1]}]" if source else ""
        wrong.append(f"{k}={recorded.get(k)!r} (this run: {wanted[k]!r}){hint}")
    if wrong:
        raise ShardSettingsError(
            f"{where}: the shards were built with {', '.join(wrong)}; rebuild them with these options or change the "
            f"run's settings to match"
        )


# ------------------------------------------------------------------------------------------------ reading
def stored_frames(frames: np.ndarray, frame_bytes: np.ndarray, positions: np.ndarray) -> Any:
    """The record's frames at ``positions`` as stored: uint8 (T, 3, H, W) (a view of lossless (N, H, W, 3) pixels),
    or a list of T JPEG files (1-D uint8 tensors) when ``frames`` holds JPEG files back to back, ``frame_bytes[i]``
    bytes each."""
    frames = np.asarray(frames)
    if frames.ndim == 4:
        return torch.from_numpy(frames[positions]).permute(0, 3, 1, 2)
    return jpeg_files(frames, frame_bytes, positions)


def decode_frames(frames: np.ndarray, frame_bytes: np.ndarray, positions: np.ndarray,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """The record's frames at ``positions`` (see :func:`stored_frames`) as uint8 (T, 3, H, W) on ``device``; JPEG
    files are decoded there (nvJPEG on a CUDA device, see :func:`datamodules.transform.decode_jpeg_frames`)."""
    stored = stored_frames(frames, frame_bytes, positions)
    return stored.to(device) if isinstance(stored, torch.Tensor) else decode_jpeg_frames(stored, device)


def evaluation_positions(candidates: int, num_frames: int) -> np.ndarray:
    """Positions of the evaluation frames among a record's candidates (int64 (T,)).

    The candidates are ``uniform_indices(span, 2T)`` of the window's ``span`` frames and the evaluation frames
    ``uniform_indices(span, T)``: for ``span >= 2T`` these are the even candidates (floor(2k span / 2T) =
    floor(k span / T)); for a shorter window the candidates are all its frames. Both cases are
    ``uniform_indices(candidates, T)``, so the span need not be stored.
    """
    return uniform_indices(candidates, num_frames).indices


class RecordToItem:
    """LitData transform: one shard record -> the item :class:`datamodules.collate.TvltCollator` takes (``id``,
    ``pixel_values`` float32 (T, 3, H, W), ``audio_values`` float32 (1, Ta, 128), ``audio_patches``, ``labels``):
    the read half of :class:`datamodules.transform.ClipTransform` (frame choice, then its value step).

    Args:
        num_frames: frames per clip (T). training: pick one candidate per segment at random; else the uniform ones.
        image_processor: the run's processor (its rescale and normalization are applied).
        label_transform: maps the float32 label row to the item's labels (None: no labels).
        decode: ``"worker"``: the item carries ``pixel_values`` (frames decoded and normalized here, in the
            DataLoader worker); ``"device"``: it carries ``frames`` instead, the chosen frames as stored (a list
            of T JPEG files, or uint8 (T, 3, H, W) from lossless shards), which
            :meth:`datamodules.collate.TvltCollator.finish_frames` decodes and normalizes for the whole batch on
            the training device (nvJPEG on a GPU), so that workers do no pixel work.
    """

    def __init__(self, num_frames: int, training: bool, image_processor: Any,
                 label_transform: Callable[[np.ndarray], torch.Tensor] | None = None, decode: str = "worker") -> None:
        if decode not in DECODE_ON:
            raise ValueError(f"decode must be one of {DECODE_ON}, got {decode!r}")
        self.num_frames = num_frames
        self.training = training
        self.decode = decode
        # the audio was extracted when the shards were built: no feature extractor is needed here
        self.transform = ClipTransform(image_processor, None, label_transform)

    def positions(self, record: dict[str, Any]) -> np.ndarray:
        """Positions among the record's candidates of the frames to use (int64 (T,))."""
        count = len(record["frame_bytes"])
        if self.training:
            # torch's RNG is seeded per DataLoader worker and epoch (as in ClipDataset), numpy's would be shared
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            return random_window_indices(count, self.num_frames, None, rng).indices
        return evaluation_positions(count, self.num_frames)

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        chosen = (record["frames"], record["frame_bytes"], self.positions(record))
        # float16 on disk (within 5e-4 of the extractor's values); the channel axis was dropped to store (Ta, 128)
        audio = torch.from_numpy(np.asarray(record["audio"])).to(torch.float32)[None]
        labels = np.asarray(record["labels"])
        if self.decode == "device":
            return self.transform.item(record["id"], None, audio, record["audio_patches"], labels,
                                       frames=stored_frames(*chosen))
        return self.transform.item(record["id"], self.transform.pixels(decode_frames(*chosen)), audio,
                                   record["audio_patches"], labels)


class ShardDataset(StreamingDataset):
    """LitData's ``StreamingDataset`` whose items (dicts) also carry ``record_index``: the record's place in the
    split (LitData's global sample index). Under DDP and with several workers each process reads its own chunks,
    so this is what puts predictions back in the split's order (:func:`tvlt.lit.inference.gather_rows`)."""

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        if isinstance(item, dict) and hasattr(index, "chunk_index"):
            item["record_index"] = int(index.index)
        elif isinstance(item, dict) and isinstance(index, int):
            item["record_index"] = index
        return item


def check_shards(uri: str, wanted: dict[str, Any], storage_options: dict | None = None) -> dict[str, Any]:
    """The split's index at ``uri``, checked: safe to open (:func:`check_index`) and built with the ``wanted``
    settings (:func:`check_settings`). Raises FileNotFoundError, UnsafeShardError or ShardSettingsError."""
    index = read_index(uri, storage_options)
    check_settings(index.get("tvlt"), wanted, _join(uri, "index.json"))
    return index


def open_shards(uri: str, wanted: dict[str, Any], transform: RecordToItem | Callable | None = None,
                shuffle: bool = False, drop_last: bool | None = False, seed: int = 42,
                storage_options: dict | None = None, cache_dir: str | None = None) -> Any:
    """A :class:`ShardDataset` over the split at ``uri``, after :func:`check_shards`.

    Args:
        wanted: settings the run needs (e.g. ``num_frames``, ``processor_mode``, ``frame_size``); a mismatch raises
            :class:`ShardSettingsError`.
        transform: record -> item (see :class:`RecordToItem`); shuffle, drop_last, seed: as LitData's.
        cache_dir: local folder for chunks streamed from remote shards (None: LitData's default,
            ``~/.lightning/chunks`` or ``$LITDATA_CACHE_DIR``).
    """
    check_shards(uri, wanted, storage_options)
    allow_plain_http(storage_options)
    return ShardDataset(uri, cache_dir=cache_dir, shuffle=shuffle, drop_last=drop_last, seed=seed,
                            transform=transform, storage_options=storage_options or {})


class ShardLoader(StreamingDataLoader):
    """LitData's ``StreamingDataLoader`` with a position that survives a restart mid-epoch.

    Lightning does not reliably hand a loader's state back on resume: the fit loop may not restore it (LitData issue
    775), and a ``trainer.estimated_stepping_batches`` call (the cosine schedule's, when ``total_steps`` is null)
    builds the train loader before the checkpoint is read, after which the saved state is never applied (Lightning
    issue 20550). The datamodule therefore keeps the loader's ``state_dict()`` in its own state (saved with every
    checkpoint) and hands it back through :attr:`pending_state`, which is applied when the next iteration starts,
    whenever the loader was built. Lightning does not fetch ahead from a loader with a length (this one has one), so
    at a checkpoint the loader has yielded exactly the batches trained on.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending_state: dict[str, Any] | None = None

    def __iter__(self) -> Any:
        if self.pending_state is not None:
            state, self.pending_state = self.pending_state, None
            self.load_state_dict(state)
        yield from super().__iter__()


def shard_settings(uri: str, storage_options: dict | None = None) -> dict[str, Any]:
    """The settings recorded in the split's index (after the index check)."""
    return read_index(uri, storage_options).get("tvlt") or {}


# ------------------------------------------------------------------------------------------------ building
class ClipToRecords:
    """``litdata.optimize`` function: manifest row -> shard records (one per clip, or one per window).

    Failed clips yield nothing; their cause is appended as a JSON line to ``{report_dir}/failed-{pid}.jsonl``. Cut
    into windows, a video whose first window fails is reported by its id; a later window that fails (e.g. the audio
    ends early) is reported as ``{id}@{k}`` and the video's other windows are written.

    Args:
        manifest: the split's clips; reader: reads ``2 x num_frames`` frames (its ``num_frames``).
        image_processor, feature_extractor: the run's processors (geometry only is applied to frames).
        frames: ``"jpeg"`` or ``"uint8"``; jpeg_quality: 1-100.
        window_seconds: cut each video into windows of this length (None: one record per clip).
    """

    def __init__(self, manifest: Manifest, reader: ClipReader, image_processor: Any, feature_extractor: Any,
                 report_dir: str, frames: str = "jpeg", jpeg_quality: int = 90,
                 window_seconds: float | None = None) -> None:
        self.manifest = manifest
        self.reader = reader
        self.transform = ClipTransform(image_processor, feature_extractor)
        self.num_frames = reader.num_frames // 2
        self.report_dir = report_dir
        self.frames = frames
        self.jpeg_quality = jpeg_quality
        self.window_seconds = window_seconds

    def __call__(self, row: int) -> Any:
        video, audio = self.manifest.videos[row], self.manifest.audio(row)
        clip_id = self.manifest.ids[row]
        labels = np.zeros(0, np.float32)
        if self.manifest.labels is not None:
            labels = np.asarray(self.manifest.labels[row], dtype=np.float32).reshape(-1)
        if self.window_seconds is None:
            try:
                yield self._record(clip_id, labels, self.reader.read(video, audio, mode="uniform"))
            except ClipDecodeError as e:
                self._fail(clip_id, None, video, e)
            return
        try:
            first = self.reader.read(video, audio, mode="span", span=(0.0, self.window_seconds))
        except ClipDecodeError as e:  # nothing of the video is usable (or its first window is not)
            self._fail(clip_id, None, video, e)
            return
        windows = max(1, int(first.num_decodable / first.fps / self.window_seconds + 1e-6))
        yield self._record(f"{clip_id}@0", labels, first)
        for k in range(1, windows):
            # a window that fails (audio that ends early, a damaged stretch) is reported by its own id; the
            # video's other windows are still written
            try:
                clip = self.reader.read(video, audio, mode="span",
                                        span=(k * self.window_seconds, (k + 1) * self.window_seconds))
            except ClipDecodeError as e:
                self._fail(f"{clip_id}@{k}", k, video, e)
                continue
            yield self._record(f"{clip_id}@{k}", labels, clip)

    def _fail(self, record_id: str, window: int | None, video: str, error: ClipDecodeError) -> None:
        line = json.dumps({"id": record_id, "window": window, "video": video, "cause": error.cause,
                           "message": str(error)})
        with open(os.path.join(self.report_dir, f"failed-{os.getpid()}.jsonl"), "a") as f:
            f.write(line + "\n")

    def _record(self, clip_id: str, labels: np.ndarray, clip: Any) -> dict[str, Any]:
        # geometry per group: the evaluation frames alone (as per-file decoding processes them: the original mode's
        # dark-border crop depends on the frames processed together), then the other candidates
        count = len(clip.indices)
        out = torch.empty(0)
        eval_pos = evaluation_positions(count, self.num_frames)
        for group in (eval_pos, np.setdiff1d(np.arange(count), eval_pos)):
            if len(group) == 0:
                continue
            done = self.transform.frames(clip.frames[group])  # uint8 (n, 3, h, w)
            if out.numel() == 0:
                out = torch.empty((count, *done.shape[1:]), dtype=torch.uint8)
            out[torch.from_numpy(group)] = done
        frames, frame_bytes = self._encode(out)
        audio_values, audio_patches = self.transform.audio(clip.waveform, clip.sampling_rate)
        times = clip.frame_times if clip.frame_times is not None else clip.indices / clip.fps
        return {
            "id": clip_id,
            "labels": labels,
            "frames": frames,
            "frame_bytes": frame_bytes,
            "frame_index": np.asarray(clip.indices, dtype=np.int64),
            "frame_times": np.asarray(times, dtype=np.float64),
            "num_decodable": int(clip.num_decodable),
            "start": float(clip.start),
            "end": float(clip.end),
            "fps": float(clip.fps),
            "audio": audio_values[0].to(torch.float16).numpy(),
            "audio_patches": audio_patches,
        }

    def _encode(self, frames: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, 3, H, W) -> (uint8 bytes, int64 (N,) bytes per frame)."""
        if self.frames == "uint8":
            raw = frames.permute(0, 2, 3, 1).contiguous().numpy()
            return raw, np.full(len(raw), raw[0].size, np.int64)
        from torchvision.io import encode_jpeg

        files = [encode_jpeg(f, quality=self.jpeg_quality) for f in frames]
        return torch.cat(files).numpy(), np.array([len(f) for f in files], np.int64)


def build_shards(
    manifest: Manifest,
    out: str,
    reader: ClipReader,
    image_processor: Any,
    feature_extractor: Any,
    settings: dict[str, Any],
    frames: str = "jpeg",
    jpeg_quality: int = 90,
    window_seconds: float | None = None,
    workers: int = 1,
    chunk_bytes: str = "64MB",
    storage_options: dict | None = None,
) -> dict[str, Any]:
    """Write the shards of one split to ``out`` (a folder or ``s3://`` URI) and return the build report
    (``clips``, ``records``, ``failed_clips``: clips of which no record was written, ``failed_windows``:
    pretraining windows that failed while the video's others were written, ``failed``: one entry per failure,
    ``{id, window, video, cause, message}``, ``window`` None for a whole clip, else the window's index ``k`` of the
    record id ``{id}@{k}``), also written to ``{out}/build_report.json``.

    ``reader`` reads ``2 x num_frames`` candidates; ``settings`` (recorded in the index) must name what the training
    side checks (see :meth:`ClipDataModule.shard_settings`).
    """
    from litdata import optimize

    if frames not in FRAME_ENCODINGS:
        raise ValueError(f"frames must be one of {FRAME_ENCODINGS}, got {frames!r}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    with tempfile.TemporaryDirectory(prefix="tvlt-shards-") as report_dir:
        fn = ClipToRecords(manifest, reader, image_processor, feature_extractor, report_dir, frames, jpeg_quality,
                           window_seconds)
        failed: list[dict[str, Any]] = []
        # LitData sets the process-wide start method; spawned workers (a fork after the caller started threads can
        # deadlock), and the caller's setting restored afterwards
        previous = multiprocessing.get_start_method(allow_none=True)
        allow_plain_http(storage_options)
        try:
            optimize(fn=fn, inputs=list(range(len(manifest))), output_dir=out, chunk_bytes=chunk_bytes,
                     num_workers=max(1, workers), reorder_files=False, mode="overwrite", verbose=False,
                     storage_options=storage_options or {}, start_method="spawn")
        except Exception as e:  # noqa: BLE001 - LitData raises RuntimeError/ValueError when no record was written
            failed = _failures(report_dir)
            if failed and sum(f["window"] is None for f in failed) == len(manifest):
                raise RuntimeError(f"{out}: every one of the {len(manifest)} clips failed; first: "
                                   f"{failed[0]['message']}") from e
            raise
        finally:
            multiprocessing.set_start_method(previous, force=True)
        failed = _failures(report_dir)
    index = read_index(out, storage_options)
    index["tvlt"] = {"version": VERSION, **settings, "frames": frames,
                     "jpeg_quality": jpeg_quality if frames == "jpeg" else None}
    write_text(_join(out, "index.json"), json.dumps(index), storage_options)
    records = sum(int(c.get("chunk_size", 0)) for c in index.get("chunks", []))
    failed_clips = sum(f["window"] is None for f in failed)
    report = {"clips": len(manifest), "records": records, "failed_clips": failed_clips,
              "failed_windows": len(failed) - failed_clips, "failed": failed, "settings": index["tvlt"]}
    write_text(_join(out, "build_report.json"), json.dumps(report, indent=1), storage_options)
    log.info("shards: %s in %s", build_summary(report), out)
    for f in failed:
        log.warning("shards: skipped %s (%s): %s", f["id"], f["cause"], f["message"])
    return report


def build_summary(report: dict[str, Any]) -> str:
    """One line of a build report: clips read, records written, clips and windows that failed."""
    line = f"{report['clips']} clip(s) -> {report['records']} record(s), {report['failed_clips']} clip(s) failed"
    return line + (f", {report['failed_windows']} more window(s) failed" if report["failed_windows"] else "")


def _failures(report_dir: str) -> list[dict[str, Any]]:
    failed = []
    for path in sorted(Path(report_dir).glob("failed-*.jsonl")):
        failed += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(failed, key=lambda f: f["id"])


if __name__ == "__main__":
    sys.exit("the shard builder's command is `python -m datamodules.build_shards` (this module only reads and writes "
             "shards; the command builds datamodules, which read shards)")
