"""Skip-on-error (``data.on_error=skip``): one mechanism, one record.

1. :class:`datamodules.datasets.ClipDataset` returns a :class:`Skipped` marker (id, cause, message) for a clip that
   failed to decode, instead of raising :class:`datamodules.decoding.ClipDecodeError`.
2. :class:`datamodules.collate.TvltCollator` drops the markers and lists them in ``batch["skipped"]`` ((id, cause)
   pairs); a batch whose every clip failed is ``{"ids": [], "skipped": [...]}``.
3. :class:`SplitLoader`, in the process that iterates (any ``num_workers``), pops ``skipped`` into the
   datamodule's :class:`SkipLog` (the one count: stage and epoch, id, cause of each clip), logs the counts by cause
   at the end of each pass, fails a pass in which every clip was skipped (:class:`NoUsableClipsError`), and drops
   batches without clips, except in training with several processes (DDP): there the empty batch ``{"ids": []}``
   reaches ``TvltLitModule.training_step``, which takes a zero-weight step or skips with every process, so the
   processes' collectives stay paired. Nothing after the loader ever sees a marker or ``None``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable

from torch.utils.data import DataLoader

__all__ = ["NoUsableClipsError", "SkipLog", "Skipped", "SplitLoader"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    """A sample that failed to load in ``on_error="skip"`` mode: its id, the decode error's cause (one of
    :data:`datamodules.decoding.CAUSES`) and message."""

    id: str
    cause: str
    message: str = ""


class NoUsableClipsError(RuntimeError):
    """A complete pass over a split (an epoch of it) in ``on_error="skip"`` mode in which every clip failed.

    Attributes: ``split`` (e.g. ``"PretrainDataModule[train]"``) and ``counts`` (cause -> clips skipped).
    """

    def __init__(self, split: str, counts: Counter, first: tuple[str, str] | None = None) -> None:
        self.split = split
        self.counts = Counter(counts)
        total = sum(self.counts.values())
        causes = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        example = f"; first: {first[0]} ({first[1]})" if first else ""
        super().__init__(
            f"{split}: all {total} clip(s) of this pass over the split failed to load and were skipped "
            f"(on_error=skip): {causes}{example}. Nothing was trained or evaluated on this split; fix or remove the "
            f"files (on_error=raise reports the first failure with its full message)"
        )


class SkipLog:
    """The record of every skipped clip: ``clips`` lists ``(when, id, cause)`` once per skip, ``when`` being
    ``"{stage} epoch {n}"`` from the trainer (``"None"`` without one); counts are derived from it.

    Args:
        owner: named in the log lines (the datamodule's class name).
        trainer: returns the running ``Trainer`` or None (read when a clip is added or counts are logged).
    """

    def __init__(self, owner: str, trainer: Callable[[], Any] = lambda: None) -> None:
        self.owner = owner
        self.trainer = trainer
        self.clips: list[tuple[str, str, str]] = []
        self._logged = 0  # clips[:_logged] are in the log already

    def when(self) -> str:
        trainer = self.trainer()
        if trainer is None:
            return "None"
        return f"{trainer.state.stage.value if trainer.state.stage else 'run'} epoch {trainer.current_epoch}"

    def add(self, skipped: Iterable[tuple[str, str]]) -> None:
        """Record (id, cause) pairs under the current stage and epoch."""
        when = self.when()
        self.clips.extend((when, str(clip_id), str(cause)) for clip_id, cause in skipped)

    def counts(self, start: int = 0) -> dict[str, Counter]:
        """when -> cause -> clips, over ``clips[start:]``."""
        out: dict[str, Counter] = {}
        for when, _, cause in self.clips[start:]:
            out.setdefault(when, Counter())[cause] += 1
        return out

    def flush(self) -> None:
        """Log the clips added since the last flush, per stage and epoch: a warning, and ``data/skipped_{stage}``
        (clips) to the trainer's loggers."""
        pending, self._logged = self.counts(self._logged), len(self.clips)
        trainer = self.trainer()
        for when, counts in pending.items():
            total = sum(counts.values())
            causes = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            log.warning("%s: skipped %d clip(s) in %s: %s", self.owner, total, when, causes)
            if trainer is not None:
                for logger in trainer.loggers:
                    logger.log_metrics({f"data/skipped_{when.split(' ')[0]}": float(total)}, step=trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_clips": [list(c) for c in self.clips]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clips = [(str(w), str(i), str(c)) for w, i, c in state.get("skipped_clips", [])]
        # checkpoints written before the record held ids stored counts only ({when: {cause: n}})
        for when, counts in state.get("skipped", {}).items():
            self.clips += [(str(when), "", str(cause)) for cause, n in counts.items() for _ in range(int(n))]
        self._logged = len(self.clips)


class SplitLoader(DataLoader):
    """A DataLoader that records the collator's skipped clips in a :class:`SkipLog`, drops batches without clips
    and fails a complete pass in which every clip was skipped.

    Without the last check a split whose every clip fails would "train" for all its epochs on nothing and exit
    successfully. When a pass ends with skipped clips and no delivered clip, :class:`NoUsableClipsError` names the
    split and the pass's skips by cause. A pass that is stopped early (``limit_*_batches``, the sanity check,
    ``max_steps``) is not judged. With several processes (DDP) each judges its own shard.

    Args:
        split_name: named in the error, e.g. ``"MoseiDataModule[train]"``.
        skips: the datamodule's record (None: a private one).
        keep_empty: returns True where a batch without clips must still be delivered (training under DDP, where
            every process must take each step); otherwise such batches are dropped.
        other arguments: as ``DataLoader``.
    """

    def __init__(self, *args: Any, split_name: str = "", skips: SkipLog | None = None,
                 keep_empty: Callable[[], bool] = lambda: False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.split_name = split_name
        self.skips = skips if skips is not None else SkipLog(split_name)
        self.keep_empty = keep_empty

    def __iter__(self) -> Any:
        # Lightning stops after len(loader) batches without exhausting the iterator, so the last batch is judged
        # when it arrives (before it is yielded), not at StopIteration.
        try:
            expected = len(self)
        except TypeError:  # an iterable-style dataset without a length: judged at exhaustion only
            expected = -1
        start, delivered = len(self.skips.clips), 0
        for n, batch in enumerate(super().__iter__(), start=1):
            self.skips.add(batch.pop("skipped", ()))
            delivered += len(batch["ids"])
            if n == expected:
                self._end_pass(start, delivered)
            if batch["ids"] or self.keep_empty():
                yield batch
        self._end_pass(start, delivered)

    def _end_pass(self, start: int, delivered: int) -> None:
        self.skips.flush()
        if delivered:
            return
        this_pass = self.skips.clips[start:]
        if this_pass:
            first = (this_pass[0][1], this_pass[0][2])
            raise NoUsableClipsError(self.split_name, Counter(c for _, _, c in this_pass), first)
