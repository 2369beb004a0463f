"""Shared LightningDataModule machinery: processors, readers, DataLoaders, skip counting and logging."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from datamodules.collate import TvltCollator
from datamodules.datasets import ON_ERROR, ClipDataset
from datamodules.decoding import ClipReader
from datamodules.demo import DemoSpec, demo_is_ready, ensure_demo, no_data_given
from datamodules.manifests import Manifest, Row, build_manifest
from datamodules.skips import SkipLog, SplitLoader
from datamodules.transform import DECODE_ON

__all__ = ["ClipDataModule"]

log = logging.getLogger(__name__)


class ClipDataModule(pl.LightningDataModule):
    """Base class of the TVLT datamodules. Subclasses implement :meth:`_rows` (manifest rows of a split) and set
    ``label_range``/``label_transform``/``vam``.

    Args (common to all datamodules; every one is a key of ``conf/data/*.yaml``):
        batch_size: clips per batch per device (the global batch is batch_size x devices x accumulation).
        num_workers, persistent_workers, pin_memory: passed to every DataLoader (persistent_workers only takes
            effect with num_workers > 0).
        num_frames: frames per clip (8 for MOSEI and retrieval, 4 for pretraining as in the original release).
        processor_mode: ``"hf"`` (Hugging Face port preprocessing) or ``"original"`` (original release).
        image_size: frame side in pixels after the image processor's resize and crop (224, the paper's); must equal
            the model's ``config.image_size`` (the run checks it before training).
        decoder_threads: decord threads per DataLoader worker.
        decode_timeout: seconds before a decode counts as failed (None: no isolation, see decoding.py).
        on_error: ``"raise"`` (default; curated sets fail loudly) or ``"skip"`` (drop failed clips, count them by
            cause in :attr:`skips` and log the counts each pass; a pass over a split in which every clip fails
            raises :class:`NoUsableClipsError`; see :mod:`datamodules.skips`).
        drop_invalid: drop manifest rows that fail validation (missing file, non-finite or out-of-range label)
            with a logged summary, instead of failing at set-up.
        shards: a folder or ``s3://`` URI of LitData shards built by ``python -m datamodules.build_shards`` (one sub-folder
            per split); every split is then read from them, no video is decoded (None: decode the files).
        shards_options: LitData/boto3 storage options for remote shards, e.g. ``{"endpoint_url": ...}`` for an
            S3-compatible server (None: the environment's, e.g. ``AWS_ENDPOINT_URL``).
        shards_cache_dir: local folder for chunks streamed from remote shards (None: LitData's default).
        shards_decode: where frames read from shards are decoded and normalized: ``"worker"`` (in the DataLoader
            workers) or ``"device"`` (workers pass the stored JPEG files or uint8 frames on, and each batch is
            decoded and normalized on the training device in :meth:`on_before_batch_transfer`: nvJPEG on a GPU,
            so that the workers neither decode nor normalize; see :class:`datamodules.shards.RecordToItem`).
    """

    label_range: tuple[float, float] | None = None
    vam: bool = False
    vam_negative_prob: float = 0.5  # with ``vam``: the collator's share of swapped videos (tvlt.matching)
    # what ``root`` is, for messages that tell the user what to pass (``data.root=<...>``)
    root_description: str = "data folder"
    # data sources, set by subclasses: neither root nor manifest means the embedded demo dataset in demo_dir
    root: str | None = None
    manifest_path: str | None = None
    demo_dir: str = "data/demo/mosei"
    demo_spec: DemoSpec = DemoSpec()
    splits: dict[str, str] = {"fit": "train", "validate": "valid", "test": "test"}
    # splits that may be absent (no shard folder for them means no such split)
    optional_splits: tuple[str, ...] = ()

    def __init__(
        self,
        batch_size: int = 8,
        num_workers: int = 0,
        persistent_workers: bool = False,
        pin_memory: bool = False,
        num_frames: int = 8,
        processor_mode: str = "hf",
        image_size: int = 224,
        decoder_threads: int = 1,
        decode_timeout: float | None = 30.0,
        on_error: str = "raise",
        drop_invalid: bool = False,
        shards: str | None = None,
        shards_options: dict[str, Any] | None = None,
        shards_cache_dir: str | None = None,
        shards_decode: str = "worker",
    ) -> None:
        super().__init__()
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers
        self.pin_memory = pin_memory
        self.num_frames = num_frames
        self.processor_mode = processor_mode
        self.on_error = on_error
        self.drop_invalid = drop_invalid
        self.shards = None if shards is None else str(shards)
        self.shards_options = dict(shards_options) if shards_options else None
        self.shards_cache_dir = shards_cache_dir
        if shards_decode not in DECODE_ON:
            raise ValueError(f"shards_decode must be one of {DECODE_ON}, got {shards_decode!r}")
        self.shards_decode = shards_decode
        if shards_decode == "device" and self.shards is None:
            log.warning("%s: shards_decode=device applies to data.shards only; these clips are decoded from files "
                        "in the workers", type(self).__name__)
        self._shard_train_loader: Any = None  # the train ShardLoader, whose position is saved with checkpoints
        self._shard_resume: dict[str, Any] | None = None  # a restored position not yet handed to a loader
        self.decoder_threads = decoder_threads
        self.decode_timeout = decode_timeout
        self.reader = ClipReader(num_frames=num_frames, decoder_threads=decoder_threads, decode_timeout=decode_timeout)
        from tvlt.feature_extraction import TvltFeatureExtractor
        from tvlt.image_processing import TvltImageProcessor

        self.image_processor = TvltImageProcessor(mode=processor_mode, num_frames=num_frames,
                                                  size={"shortest_edge": int(image_size)},
                                                  crop_size={"height": int(image_size), "width": int(image_size)})
        self.feature_extractor = TvltFeatureExtractor(mode=processor_mode)
        self.manifests: dict[str, Manifest] = {}
        self.datasets: dict[str, ClipDataset] = {}
        self.skips = SkipLog(type(self).__name__, self._current_trainer)  # a bound method: spawned workers pickle it

    # ------------------------------------------------------------------------------------------- demo data
    @property
    def uses_demo(self) -> bool:
        """True when none of ``root``, ``manifest``, ``shards`` is given: the embedded demo dataset is used."""
        return no_data_given(self.root, self.manifest_path, self.shards)

    def prepare_data(self) -> None:
        """Generate the demo dataset ``demo_spec`` (rank zero only, as Lightning calls it) when no data is given."""
        if self.uses_demo:
            ensure_demo(self.demo_dir, self.demo_spec)

    def _ensure_demo(self) -> None:
        """Direct use without a Trainer (no prepare_data call): generate the demo dataset on demand."""
        if self.uses_demo and not demo_is_ready(self.demo_dir):
            self.prepare_data()

    # ----------------------------------------------------------------------------------------- manifests
    def _rows(self, split: str) -> list[Row]:
        raise NotImplementedError

    def _dataset(self, split: str, manifest: Manifest) -> ClipDataset:
        return ClipDataset(manifest, self.reader, self.image_processor, self.feature_extractor,
                           on_error=self.on_error, **self._dataset_options(split))

    def _dataset_options(self, split: str) -> dict[str, Any]:
        """The split's :class:`ClipDataset` options (sampling, windows, labels); subclasses define them."""
        raise NotImplementedError

    def manifest(self, split: str) -> Manifest:
        """The validated manifest of ``split`` (built once)."""
        if split not in self.manifests:
            self.manifests[split] = build_manifest(
                self._rows(split), f"{type(self).__name__}[{split}]", self.label_range, True, self.drop_invalid
            )
        return self.manifests[split]

    @staticmethod
    def stage_splits(stage: str | None) -> list[str]:
        """The splits a Lightning stage reads (``fit``: train and valid; None: all)."""
        wanted = {"fit": ["train", "valid"], "validate": ["valid"], "test": ["test"], "predict": ["test"]}
        return wanted.get(stage, ["train", "valid", "test"]) if stage else ["train", "valid", "test"]

    def check_sources(self, stage: str | None = None) -> None:
        """Build and validate the manifests of the splits ``stage`` reads, without decoding any clip: a root that
        does not exist, a missing label file or an invalid row fails here, before a model is built. The manifests
        are kept for :meth:`setup`. The embedded demo dataset is not checked (it is generated in prepare_data).

        With ``shards`` the splits' shard indexes are checked instead (no manifest is needed: the raw data may be
        elsewhere): each must exist (an optional split may be absent), be safe to open, and record this run's
        settings.

        Raises:
            ManifestError: naming the folder or file, and the line of each bad row.
            FileNotFoundError, ShardSettingsError, UnsafeShardError: a shard index missing, built with other
                settings, or declaring an unpickling field format.
        """
        if self.uses_demo:
            return
        if self.shards is not None:
            from datamodules.shards import check_shards

            for split in self.stage_splits(stage):
                try:
                    check_shards(self._shard_uri(split), self.shard_settings(), self.shards_options)
                except FileNotFoundError:
                    if split not in self.optional_splits:
                        raise
            return
        for split in self.stage_splits(stage):
            if self._has_split(split):
                self.manifest(split)

    def setup(self, stage: str | None = None) -> None:
        self._ensure_demo()
        for split in self.stage_splits(stage):
            if split in self.datasets:
                continue
            if self.shards is not None:
                dataset = self._shard_dataset(split)
                if dataset is not None:
                    self.datasets[split] = dataset
                continue
            if not self._has_split(split):
                continue
            self.datasets[split] = self._dataset(split, self.manifest(split))
        log.info(
            "%s: split sizes %s",
            type(self).__name__,
            ", ".join(f"{s}={len(d)}" for s, d in self.datasets.items()),
        )

    def _has_split(self, split: str) -> bool:
        return True

    def _source_split(self, split: str) -> str:
        """The split whose clips ``split`` reads (retrieval validates on the test list)."""
        return split

    # ----------------------------------------------------------------------------------------- shards
    def shard_settings(self) -> dict[str, Any]:
        """Settings shards must have been built with to serve this datamodule (checked when they are opened)."""
        ip = self.image_processor
        return {
            "num_frames": self.num_frames,
            "candidates": 2 * self.num_frames,
            "processor_mode": self.processor_mode,
            "frame_size": [ip.crop_size["height"], ip.crop_size["width"]],
            "mel_bins": int(self.feature_extractor.feature_size),
            **self._shard_extra_settings(),
        }

    def _shard_extra_settings(self) -> dict[str, Any]:
        return {}

    def shard_window(self) -> float | None:
        """Window length (s) long videos are cut into when shards are built (None: one record per clip)."""
        return None

    def shard_splits(self) -> list[str]:
        """The split folders ``python -m datamodules.build_shards`` writes for this datamodule."""
        out: list[str] = []
        for split in ("train", "valid", "test"):
            if self._has_split(split) and self._source_split(split) not in out:
                out.append(self._source_split(split))
        return out

    def build_shards(self, split: str, out: str, **kwargs: Any) -> dict[str, Any]:
        """Build the shards of ``split`` into ``out`` (see :func:`datamodules.shards.build_shards`, which takes
        ``frames``, ``jpeg_quality``, ``workers``, ``chunk_bytes``, ``storage_options``); returns the build report."""
        from datamodules.shards import build_shards

        reader = ClipReader(num_frames=2 * self.num_frames, decoder_threads=self.decoder_threads,
                            decode_timeout=self.decode_timeout)
        settings = {"datamodule": type(self).__name__, "split": split, **self.shard_settings()}
        return build_shards(self.manifest(split), out, reader, self.image_processor, self.feature_extractor,
                            settings, window_seconds=self.shard_window(), **kwargs)

    def _shard_dataset(self, split: str, evaluation: bool = False) -> Any:
        """The split's :class:`datamodules.shards.ShardDataset` (None for a missing optional split, and with
        ``evaluation`` for any missing split of a folder that has shards). ``evaluation``: in order, uniform frames,
        as :meth:`evaluation_loader`.

        Raises:
            FileNotFoundError: no index for a split that must exist (naming the location and the build command).
        """
        from datamodules.shards import RecordToItem, open_shards

        uri = self._shard_uri(split)
        options = self._dataset_options(split)
        training = split == "train" and options.get("sampling") == "random" and not evaluation
        shuffle = split == "train" and not evaluation
        transform = RecordToItem(self.num_frames, training, self.image_processor, options.get("label_transform"),
                                 decode=self.shards_decode)
        try:
            dataset = open_shards(uri, self.shard_settings(), transform, shuffle=shuffle,
                                  drop_last=None if shuffle else False, storage_options=self.shards_options,
                                  cache_dir=self.shards_cache_dir)
        except FileNotFoundError:
            if split in self.optional_splits or (evaluation and self._some_shards_exist()):
                log.info("%s: no %s shards at %s: no such split", type(self).__name__, split, uri)
                return None
            raise
        return dataset

    def _shard_uri(self, split: str) -> str:
        """Where ``split``'s shards are: ``{shards}/{source split}``."""
        return "/".join([self.shards.rstrip("/"), self._source_split(split)])

    def _some_shards_exist(self) -> bool:
        """Some split of ``shards`` has an index: a missing split is then one the data does not have, not a wrong
        ``shards`` folder (which stays an error naming the folder)."""
        from datamodules.shards import read_index

        for split in ("train", "valid", "test"):
            try:
                read_index(self._shard_uri(split), self.shards_options)
                return True
            except (FileNotFoundError, ValueError):
                continue
        return False

    # ----------------------------------------------------------------------------------------- loaders
    def collator(self) -> TvltCollator:
        return TvltCollator.from_processors(self.image_processor, self.feature_extractor, vam=self.vam,
                                            vam_negative_prob=self.vam_negative_prob)

    def finish_batch(self, batch: Any, device: Any = None) -> Any:
        """A loader's batch -> the batch contract on ``device``: frames read from shards with
        ``shards_decode="device"`` are decoded and normalized there (:meth:`TvltCollator.finish_frames`); any
        other batch is returned as is."""
        if isinstance(batch, dict) and ("pixel_jpeg" in batch or "pixel_frames" in batch):
            return self.collator().finish_frames(batch, device)
        return batch

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        return self.finish_batch(batch, trainer.strategy.root_device if trainer is not None else None)

    def _loader(self, split: str, shuffle: bool) -> DataLoader | list:
        if split not in self.datasets:
            self.setup({"train": "fit", "valid": "validate", "test": "test"}[split])
        if split not in self.datasets:
            return []
        if self.shards is not None:
            from datamodules.shards import ShardLoader

            # shuffling and the split across ranks and workers are the StreamingDataset's; no failed clip is ever
            # a record, so there is nothing for SplitLoader to record
            loader = ShardLoader(
                self.datasets[split],
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                persistent_workers=self.persistent_workers and self.num_workers > 0,
                pin_memory=self.pin_memory,
                collate_fn=self.collator(),
            )
            if split == "train":
                self._shard_train_loader = loader
                loader.pending_state, self._shard_resume = self._shard_resume, None
            return loader
        return self._split_loader(self.datasets[split], split, shuffle=shuffle,
                                  persistent_workers=self.persistent_workers and self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False)

    def evaluation_loader(self, split: str) -> DataLoader | list:
        """A loader over ``split`` ("train", "valid" or "test") prepared as for evaluation (uniform frames, no
        jitter), in manifest order (from ``shards``: the split's record order, each batch carrying
        ``record_index``): what ``mode=predict`` and ``mode=embed`` read. ``[]`` when the data has no such split."""
        if self.shards is not None:  # no failed clip is ever a record: nothing for SplitLoader to record
            from datamodules.shards import ShardLoader

            dataset = self._shard_dataset(split, evaluation=True)
            if dataset is None:
                return []
            return ShardLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                               pin_memory=self.pin_memory, collate_fn=self.collator())
        if not self._has_split(split):
            return []
        self._ensure_demo()
        options = {**self._dataset_options(split), "sampling": "uniform"}
        dataset = ClipDataset(self.manifest(split), self.reader, self.image_processor, self.feature_extractor,
                              on_error=self.on_error, **options)
        return self._split_loader(dataset, split, shuffle=False)

    # ----------------------------------------------------------------------------------------- skip counting
    @property
    def skipped(self) -> dict[str, Counter]:
        """``"{stage} epoch {n}"`` -> cause -> clips skipped (on_error=skip), from :attr:`skips`."""
        return self.skips.counts()

    @property
    def skipped_clips(self) -> list[tuple[str, str, str]]:
        """``("{stage} epoch {n}", id, cause)`` of each skipped clip, from :attr:`skips`."""
        return self.skips.clips

    def _current_trainer(self) -> Any:
        return self.trainer

    def _keep_empty(self) -> bool:
        """A batch without clips still reaches the step under DDP in training, validation and test (see
        :mod:`datamodules.skips`): each of those steps makes a collective call. Prediction makes none."""
        trainer = self.trainer
        return trainer is not None and trainer.world_size > 1 and not trainer.predicting

    def _split_loader(self, dataset: Any, split: str, **kwargs: Any) -> SplitLoader:
        return SplitLoader(dataset, split_name=f"{type(self).__name__}[{split}]", skips=self.skips,
                           keep_empty=self._keep_empty, batch_size=self.batch_size, num_workers=self.num_workers,
                           pin_memory=self.pin_memory, collate_fn=self.collator(), drop_last=False, **kwargs)

    def teardown(self, stage: str) -> None:
        self.skips.flush()

    def state_dict(self) -> dict[str, Any]:
        """Skip counts, and with shards the train loader's position (see :class:`datamodules.shards.ShardLoader`)."""
        state: dict[str, Any] = self.skips.state_dict()
        loader, trainer = self._shard_train_loader, self.trainer
        if loader is not None and trainer is not None and trainer.training:
            state["shard_loader"] = loader.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skips.load_state_dict(state_dict)
        position = state_dict.get("shard_loader")
        if position is not None:
            if self._shard_train_loader is not None:  # built already (estimated_stepping_batches)
                self._shard_train_loader.pending_state = position
            else:
                self._shard_resume = position
