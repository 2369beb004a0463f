"""Video-audio retrieval with the VAM (matching) head.

Training: BCE of the matching head on true pairs and on negatives made in the batch by
:func:`tvlt.matching.vam_negatives`, the pretraining collator's rule (each sample's video is swapped for another
clip's with probability ``vam_negative_prob``, 0.5). Only the encoder and the matching head are built
(``task_mae=False``), so DDP has no unused parameters.

Evaluation: every video of the split is scored against every audio of the split (sigmoid-free VAM logits; the
ranking is the same), giving the full (N, N) matrix on which :func:`tvlt.metrics.retrieval_scores` computes
R@1/5/10 and median rank in both directions. Under DDP, audios are gathered from all processes, each process
scores its own videos against all audios, and the rows are gathered and de-duplicated by sample id (the
DistributedSampler's padding repeats samples). Clips are kept on the CPU in float16 between the steps and the epoch
end (pixel values are in [-1, 1]: float16 keeps them to within 5e-4, well under one 8-bit level, 7.8e-3).
``max_eval_clips`` caps N for quick validation (the original release ranked only 10 videos per GPU); test always
uses every clip unless it is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from tvlt.lit.base import TvltLitModule
from tvlt.matching import vam_accuracy, vam_negatives
from tvlt.metrics import retrieval_scores, sample_keys, true_pair_ranks
from tvlt.modeling import TvltForPreTraining


def _frames_of(pixel_mask: Tensor, patches_per_frame: int) -> int:
    return max(1, int(pixel_mask.sum().item()) // patches_per_frame)


class RetrievalModule(TvltLitModule):
    """Batch: model inputs and ``ids``; no labels (the pairs are the clips themselves).

    Args (beyond :class:`TvltLitModule`): ``score_batch_size`` pairs per forward pass at evaluation,
    ``max_eval_clips`` (None = all), ``vam_negative_prob`` the training negatives' share (0.5).
    """

    model_class = TvltForPreTraining
    flop_task = "pretrain"  # tvlt.flops.batch_flops, with the config's tasks (VAM only here)
    flops_at_eval = False  # evaluation scores every video-audio pair at epoch end, not per batch

    def __init__(self, *args: Any, score_batch_size: int = 16, max_eval_clips: int | None = None,
                 vam_negative_prob: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.score_batch_size = score_batch_size
        self.max_eval_clips = max_eval_clips
        self.vam_negative_prob = vam_negative_prob
        self._clips: list[dict[str, Any]] = []

    def task_config_fields(self) -> dict[str, Any]:
        return {"task_matching": True, "task_mae": False}

    # ------------------------------------------------------------------ training
    def train_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        pv, pm = batch["pixel_values"], batch.get("pixel_mask")
        b = pv.shape[0]
        order, labels = vam_negatives(b, self.vam_negative_prob)
        order, labels = order.to(pv.device), labels.to(pv.device)
        out = self.model(**self.model_inputs(batch), labels=labels, pixel_values_mixed=pv[order],
                         pixel_mask_mixed=None if pm is None else pm[order])
        loss = out.matching_loss
        self.check_finite(loss, batch, "train")
        acc = vam_accuracy(out.matching_logits, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log("train/vam_acc", acc, batch_size=b)
        return loss

    # ------------------------------------------------------------------ evaluation
    def _collect(self, batch: Mapping[str, Any]) -> None:
        ppf = self.model.config.num_patches_per_frame
        fpp = self.model.config.num_freq_patches
        pt = self.model.config.audio_patch_size[0]
        for i, sample_id in enumerate(batch["ids"]):
            pm = batch["pixel_mask"][i] if batch.get("pixel_mask") is not None else None
            am = batch["audio_mask"][i] if batch.get("audio_mask") is not None else None
            frames = _frames_of(pm, ppf) if pm is not None else batch["pixel_values"].shape[1]
            time = (max(1, int(am.sum().item()) // fpp) * pt) if am is not None else batch["audio_values"].shape[2]
            self._clips.append({
                "id": str(sample_id),
                "video": batch["pixel_values"][i, :frames].detach().to("cpu", torch.float16),
                "audio": batch["audio_values"][i, :, :time].detach().to("cpu", torch.float16),
            })

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._collect(batch)

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")

    def _evaluate(self, stage: str) -> None:
        scores, ids = self._similarity(stage, self.max_eval_clips)
        self.log_metrics({**retrieval_scores(scores), "num_samples": float(len(ids))}, stage)

    def _similarity(self, stage: str, cap: int | None) -> tuple[Tensor, list[str]]:
        """The (N videos, N audios) VAM logits of the clips collected since the last call, over every process, and
        their ids (the same order on both axes; kept in ``last_similarity`` for tvlt.lit.dashboards)."""
        clips, self._clips = self._clips, []
        # local de-duplication, then optional cap (same ids kept on every process: sorted by key)
        uniq = {c["id"]: c for c in clips}
        audios = _all_gather_objects([(k, c["audio"]) for k, c in uniq.items()])
        audio_by_id = dict(audios)
        audio_ids = sorted(audio_by_id, key=lambda s: int(sample_keys([s])[0]))
        if cap:
            audio_ids = audio_ids[:cap]
        wanted = set(audio_ids)
        rows = []
        for vid, clip in uniq.items():
            if vid in wanted:
                rows.append((vid, self._score_row(clip["video"], [audio_by_id[a] for a in audio_ids]).cpu()))
        all_rows = dict(_all_gather_objects(rows))
        if len(audio_ids) < 2:
            raise ValueError(f"retrieval {stage}: {len(audio_ids)} clip(s); at least 2 are needed to rank")
        scores = torch.stack([all_rows[v] for v in audio_ids])  # (N videos, N audios), same order
        self.last_similarity = {"stage": stage, "scores": scores, "ids": audio_ids}
        return scores, audio_ids

    # ------------------------------------------------------------------ prediction (mode=predict over a split)
    def predict_step(self, batch: Mapping[str, Any], batch_idx: int = 0, dataloader_idx: int = 0) -> None:
        self._collect(batch)

    def on_predict_epoch_end(self) -> None:
        self._similarity("predict", None)  # every clip of the split: each video ranked against all its audios

    def retrieval_rows(self, top_k: int) -> list[dict[str, Any]]:
        """Rows of ``predictions.csv`` for the last predicted split, one per video: its ``top_k`` best audios
        (``match_1`` ... ids, ``score_1`` ... VAM logits, best first) and ``true_rank``, the rank of its own audio
        (1 = best; ties count against it, as in :func:`tvlt.metrics.retrieval_scores`)."""
        if top_k < 1:
            raise ValueError(f"predict.top_k must be at least 1, got {top_k}")
        sim = self.last_similarity
        scores, ids = sim["scores"], sim["ids"]
        values, index = scores.topk(min(top_k, len(ids)), dim=1)
        true_rank = true_pair_ranks(scores)
        rows = []
        for i, vid in enumerate(ids):
            row: dict[str, Any] = {"id": vid}
            row.update({f"match_{k + 1}": ids[j] for k, j in enumerate(index[i].tolist())})
            row.update({f"score_{k + 1}": v for k, v in enumerate(values[i].tolist())})
            row["true_rank"] = int(true_rank[i])
            rows.append(row)
        return rows

    @torch.no_grad()
    def _score_row(self, video: Tensor, audios: list[Tensor]) -> Tensor:
        """VAM logits of one video (T, 3, H, W) against each audio (1, Ta, F) -> (N,)."""
        c = self.model.config
        dtype = next(self.model.parameters()).dtype
        v = video.to(self.device, dtype)
        pixel_mask = torch.ones(1, v.shape[0] * c.num_patches_per_frame, dtype=torch.long, device=self.device)
        out = []
        for start in range(0, len(audios), self.score_batch_size):
            chunk = audios[start: start + self.score_batch_size]
            n = len(chunk)
            t_max = max(a.shape[1] for a in chunk)
            av = torch.zeros(n, chunk[0].shape[0], t_max, chunk[0].shape[2], dtype=dtype, device=self.device)
            am = torch.zeros(n, t_max // c.audio_patch_size[0] * c.num_freq_patches, dtype=torch.long,
                             device=self.device)
            for j, a in enumerate(chunk):
                av[j, :, : a.shape[1]] = a.to(self.device, dtype)
                am[j, : a.shape[1] // c.audio_patch_size[0] * c.num_freq_patches] = 1
            enc = self.model.tvlt(v[None].expand(n, -1, -1, -1, -1), av, pixel_mask.expand(n, -1), am, return_dict=True)
            out.append(self.model.matching_head(enc.last_hidden_state).view(-1).float())
        return torch.cat(out)


def _all_gather_objects(items: list) -> list:
    """Concatenation of ``items`` from every process (CPU objects; works with gloo and NCCL)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    gathered: list[list] = [None] * dist.get_world_size()  # type: ignore[list-item]
    dist.all_gather_object(gathered, items)
    return [x for part in gathered for x in part]

