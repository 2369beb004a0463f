"""A trained TVLT over a whole dataset: predictions (``mode=predict``) and encoder embeddings (``mode=embed``).

``run.py`` builds the datamodule and the trainer; this module runs ``trainer.predict`` over one split or all of
them, gathers the rows of every process once (DDP: the sampler's padding duplicates dropped, dataset order kept) and
writes, on rank zero:

- ``predictions.csv``: ``id``, ``split``, the task's prediction columns (sentiment: ``sentiment``; emotion:
  ``p_happy`` ... ``p_surprise``; classify: ``prediction`` and ``p_<class>``) and the labels when known
  (``label`` or ``label_<name>``); retrieval: ``match_1`` ... ``match_k`` and ``score_1`` ... (the ``predict.top_k``
  best audios of each video among the split's clips, VAM logits) and ``true_rank`` (the rank of its own audio);
- ``embeddings.safetensors``: ``embedding`` (N, hidden) float32, the pooled encoder output the head reads (CLS, or
  the mean over real tokens with ``use_mean_pooling``), ``video`` and ``audio`` (N, hidden), the mean of each
  modality's real tokens; the ids in the file's metadata; read back with :func:`load_embeddings`;
- ``skipped.csv`` (``data.on_error=skip``): ``id``, ``split``, ``cause`` of each clip that could not be read.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

__all__ = ["Collector", "embed_batch", "gather_rows", "load_embeddings", "prediction_rows", "write_embeddings",
           "write_predictions", "write_skipped"]


@torch.no_grad()
def embed_batch(model: torch.nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
    """Pooled encoder embeddings of a batch: ``embedding`` (B, D) as the head reads it, ``video`` / ``audio``
    (B, D) the mean of each modality's real (unmasked, unpadded) tokens after the final LayerNorm."""
    tvlt = model.tvlt
    pixel_mask, audio_mask = batch.get("pixel_mask"), batch.get("audio_mask")
    enc = tvlt(batch["pixel_values"], batch["audio_values"], pixel_mask, audio_mask, return_dict=True)
    hidden = enc.last_hidden_state
    if hasattr(model, "pool"):
        pooled = model.pool(hidden, pixel_mask, audio_mask)
    else:
        pooled = hidden[:, 0]
    n_pixel = enc.last_pixel_hidden_state.shape[1]
    return {"embedding": pooled.float(),
            "video": _masked_mean(hidden[:, 1:1 + n_pixel], pixel_mask).float(),
            "audio": _masked_mean(hidden[:, 1 + n_pixel:], audio_mask).float()}


def _masked_mean(tokens: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return tokens.mean(dim=1)
    weights = (mask != 0).to(tokens.dtype)[:, :, None]
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def prediction_rows(module: Any, outputs: Mapping[str, Any], labels: Tensor | None) -> list[dict[str, Any]]:
    """One row per sample: the module's prediction columns (``module.prediction_columns``) and the labels."""
    columns = module.prediction_columns(outputs["preds"])
    rows = [{"id": i} for i in outputs["ids"]]
    for name, values in columns.items():
        for row, value in zip(rows, values):
            row[name] = value
    if labels is not None:
        for name, values in module.label_columns(labels).items():
            for row, value in zip(rows, values):
                row[name] = value
    return rows


class SplitData(pl.LightningDataModule):
    """The predict loader of one split of ``datamodule`` (its ``evaluation_loader``), made when Lightning asks for
    it: under DDP, after the process group exists (a shard dataset made before it would see one process and give
    every process the whole split)."""

    def __init__(self, datamodule: Any, split: str) -> None:
        super().__init__()
        self.source, self.split = datamodule, split

    def predict_dataloader(self) -> Any:
        return self.source.evaluation_loader(self.split)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        finish = getattr(self.source, "finish_batch", None)  # shards_decode=device: frames finished on the device
        return finish(batch, self.trainer.strategy.root_device) if finish is not None else batch


class Collector(pl.Callback):
    """Collects one row per sample of ``trainer.predict``: prediction columns (``mode="predict"``) or the embedding
    tensors (``mode="embed"``), with the sample's ``id`` and the ``split`` being read (set it before each split)."""

    def __init__(self, mode: str) -> None:
        self.mode, self.split, self.rows = mode, "", []

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if outputs is None:  # retrieval collects its clips and ranks them at the split's end (retrieval_rows)
            return
        if self.mode == "predict":
            rows = prediction_rows(pl_module, outputs, batch.get("labels"))
        else:
            rows = [{"id": i, **{k: v[j].detach().cpu() for k, v in outputs.items()}}
                    for j, i in enumerate(batch["ids"])]
        if "record_index" in batch:  # read from shards: the split's order travels with each row (see gather_rows)
            for row, index in zip(rows, batch["record_index"]):
                row["record_index"] = index
        self.rows += [{"id": r["id"], "split": self.split, **{k: v for k, v in r.items() if k != "id"}} for r in rows]


def gather_rows(rows: list[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """Every process's rows on every process (a collective under DDP), one per id, in ``order`` (the dataset's
    ids); ids missing from ``order`` follow in the order of their ``(split, record_index)`` (rows read from shards,
    which have no manifest; the index is then dropped from the rows), else in first-seen order."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, rows)
        rows = [row for part in parts for row in part]
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(row["id"], row)  # DistributedSampler pads with repeats of the first samples
    rank = {key: i for i, key in enumerate(order)}
    splits: dict[str, int] = {}
    for row in first.values():
        splits.setdefault(row.get("split", ""), len(splits))
    ordered = sorted(first.values(), key=lambda r: (rank.get(r["id"], len(rank)), splits[r.get("split", "")],
                                                    r.get("record_index", 0)))
    return [{k: v for k, v in r.items() if k != "record_index"} for r in ordered]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_predictions(directory: str | Path, rows: list[dict[str, Any]]) -> Path:
    return _write_csv(Path(directory) / "predictions.csv", rows)


def write_skipped(directory: str | Path, rows: list[dict[str, Any]]) -> Path:
    return _write_csv(Path(directory) / "skipped.csv", rows)


def write_embeddings(directory: str | Path, ids: Sequence[str], tensors: Mapping[str, Tensor],
                     metadata: Mapping[str, str]) -> Path:
    """``embeddings.safetensors`` in ``directory``: ``tensors`` (each (N, D)), ids and ``metadata`` as JSON
    strings in the file's metadata."""
    from safetensors.torch import save_file

    path = Path(directory) / "embeddings.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
              metadata={"ids": json.dumps(list(ids)), **{k: str(v) for k, v in metadata.items()}})
    return path


def load_embeddings(path: str | Path) -> tuple[list[str], dict[str, Tensor]]:
    """Read ``embeddings.safetensors`` written by ``mode=embed``: ``(ids, {"embedding", "video", "audio"})``, row
    ``i`` of each tensor (N, hidden) belonging to ``ids[i]``.

    Raises:
        ValueError: the file has no ``ids`` metadata (not written by ``mode=embed``).
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if "ids" not in meta:
            raise ValueError(f"{path}: no ids in the metadata; not an embeddings file written by mode=embed")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return json.loads(meta["ids"]), tensors
