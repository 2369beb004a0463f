"""Datamodules: manifest validation, worker-safe storage, collation, skip counting, real-media acceptance (shards:
tests/test_shards.py)."""

from __future__ import annotations

import gc
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.collate import TvltCollator
from datamodules.decoding import ClipDecodeError
from datamodules.demo import write_mp4
from datamodules.manifests import ManifestError, PackedStrings, Row, build_manifest, csv_manifest, mosei_original
from datamodules.mosei import MoseiDataModule
from datamodules.skips import NoUsableClipsError, Skipped
from datamodules.pretrain import PretrainDataModule
from datamodules.retrieval import RetrievalDataModule
from tvlt.labels import EMOTIONS
from tvlt.matching import vam_negatives

MEDIA = Path(__file__).resolve().parent / "data"  # real clips shipped with the tests (tests/data/README.md)


def media(name: str) -> Path:
    path = MEDIA / name
    if not path.is_file():
        raise FileNotFoundError(f"test media missing: {path}")
    return path


def small_clip(path: Path, n: int = 8, seed: int = 0, audio_seconds: float | None = None) -> None:
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    audio = None
    if audio_seconds:
        t = np.arange(int(audio_seconds * 44100)) / 44100
        audio = (0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
    write_mp4(path, video, 8, audio=audio)


def mosei_layout(root: Path, clips: dict[str, list[tuple[str, str]]], emotion_rows=None) -> Path:
    """A MOSEI-layout folder; ``clips[split]`` = [(id, sentiment text)]; every listed clip gets a video + wav."""
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for split, rows in clips.items():
        (root / split / "video").mkdir(parents=True, exist_ok=True)
        (root / split / "audio_wav").mkdir(parents=True, exist_ok=True)
        lines = ["FileName,sentiment_score"] + [f"{cid},{score}" for cid, score in rows]
        (root / "labels" / f"label_file_{split}.csv").write_text("\n".join(lines) + "\n")
        for i, (cid, _) in enumerate(rows):
            small_clip(root / split / "video" / f"{cid}.mp4", seed=i)
            sf.write(root / split / "audio_wav" / f"{cid}.wav", np.zeros(16000, np.float32) + 0.01, 16000)
    return root


# ------------------------------------------------------------------------------------------------ manifests


def test_manifest_validation_names_file_and_line_of_each_problem(tmp_path):
    rows = [("a", "1.5"), ("b", "nan"), ("c", "3.5"), ("d", "-0.5"), ("e", "abc")]
    root = mosei_layout(tmp_path / "m", {"train": rows})
    os.remove(root / "train" / "video" / "d.mp4")
    dm = MoseiDataModule(root=str(root), batch_size=2)
    with pytest.raises(ManifestError) as e:
        dm.manifest("train")
    text = str(e.value)
    csv_path = root / "labels" / "label_file_train.csv"
    assert "4 invalid row(s) of 5" in text
    assert f"{csv_path} line 6 (e): label 'abc' is not a number" in text  # the original text, not "nan"
    assert f"{csv_path} line 3 (b): label nan is not finite" in text
    assert f"{csv_path} line 4 (c): label 3.5 outside [-3, 3]" in text
    assert f"{csv_path} line 5 (d): video file not found: {root / 'train' / 'video' / 'd.mp4'}" in text


def test_drop_invalid_drops_rows_with_a_summary(tmp_path, caplog):
    root = mosei_layout(tmp_path / "m", {"train": [("a", "1.5"), ("b", "nan"), ("c", "-3.01"), ("d", "-0.5")]})
    os.remove(root / "train" / "audio_wav" / "d.wav")
    dm = MoseiDataModule(root=str(root), drop_invalid=True)
    with caplog.at_level(logging.WARNING, logger="datamodules.manifests"):
        manifest = dm.manifest("train")
    assert [manifest.ids[i] for i in range(len(manifest))] == ["a"]
    assert manifest.labels.tolist() == [1.5]
    assert dict(manifest.dropped) == {"non_finite_label": 1, "label_out_of_range": 1, "missing_file": 1}
    assert "dropped 3 of 4 rows (label_out_of_range=1, missing_file=1, non_finite_label=1)" in caplog.text


def test_emotion_labels_named_or_positional_columns_and_range(tmp_path):
    root = mosei_layout(tmp_path / "m", {"valid": [("a", "0"), ("b", "0")]})
    (root / "labels_emotion").mkdir()
    path = root / "labels_emotion" / "label_file_valid.csv"
    # positional: the release's loader takes the columns from the fourth on
    path.write_text("FileName,x,y,e1,e2,e3,e4,e5,e6\na,0,0,1.0,0,0,0.333,0,0\nb,0,0,0,2,0,0,0,3\n")
    rows = mosei_original(root, "valid", "emotion")
    assert [r.labels for r in rows] == [[1.0, 0, 0, 0.333, 0, 0], [0, 2.0, 0, 0, 0, 3.0]]
    dm = MoseiDataModule(root=str(root), task="emotion", batch_size=2, decode_timeout=None)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["labels"].tolist() == [[1, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 1]]
    path.write_text("FileName," + ",".join(EMOTIONS) + "\na,0,0,3.2,0,0,0\nb,0,0,0,0,0,0\n")
    with pytest.raises(ManifestError, match=r"line 2 \(a\): label \[0, 0, 3.2, 0, 0, 0\] outside \[0, 3\]"):
        MoseiDataModule(root=str(root), task="emotion").manifest("valid")
    path.write_text("FileName," + ",".join(EMOTIONS) + "\na,0,0,0,0,0,0\nb,0,0,x1,0,0,0\n")
    with pytest.raises(ManifestError, match=r"line 3 \(b\): label 'x1' \(column angry\) is not a number"):
        MoseiDataModule(root=str(root), task="emotion").manifest("valid")


def test_missing_root_is_named_as_such(tmp_path):
    missing = tmp_path / "nonexistent"
    with pytest.raises(ManifestError, match=f"CMU-MOSEI root folder does not exist: {missing}$"):
        MoseiDataModule(root=str(missing)).manifest("train")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ManifestError, match=f"CMU-MOSEI root is not a folder: {tmp_path / 'file'}$"):
        MoseiDataModule(root=str(tmp_path / "file")).manifest("train")
    with pytest.raises(ManifestError, match=f"MSR-VTT root folder does not exist: {missing}$"):
        RetrievalDataModule(root=str(missing)).manifest("train")
    with pytest.raises(ManifestError, match=f"video folder not found: {missing}$"):
        PretrainDataModule(root=str(missing)).setup("fit")


def test_csv_split_values_unrecognised_are_reported_with_lines_aliases_accepted(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("video,split,sentiment_score\na.mp4,train,0\nb.mp4,trian,0\nc.mp4,test,0\nd.mp4,,1\n")
    with pytest.raises(ManifestError) as e:
        csv_manifest(path, split="train", label_columns=["sentiment_score"])
    assert str(e.value) == (
        f"{path}: 2 row(s) with an unrecognised split value (accepted: train; valid, val, validation, dev; test)\n"
        f"  {path} line 3: split 'trian'\n  {path} line 5: split ''"
    )
    with pytest.raises(ManifestError, match="line 3: split 'trian'"):  # also without selecting a split (pretraining)
        PretrainDataModule(manifest=str(path)).setup("fit")
    path.write_text("video,split\na.mp4,Train\nb.mp4,val\nc.mp4,dev\nd.mp4,VALID\ne.mp4,validation\nf.mp4,test\n")
    assert [r.id for r in csv_manifest(path, split="valid")] == ["b", "c", "d", "e"]
    assert [r.id for r in csv_manifest(path, split="train")] == ["a"]


def test_empty_splits_fail_at_setup_naming_the_split_and_causes(tmp_path):
    for i in range(2):
        small_clip(tmp_path / f"v{i}.mp4", seed=i, audio_seconds=1.0)
    (tmp_path / "m.csv").write_text("video,split\nv0.mp4,valid\nv1.mp4,valid\n")
    with pytest.raises(ManifestError, match=r"^PretrainDataModule\[train\]: no rows \(its source lists no clip"):
        PretrainDataModule(manifest=str(tmp_path / "m.csv")).setup("fit")
    (tmp_path / "m.csv").write_text("video,split\nv0.mp4,train\ngone.mp4,train\nv1.mp4,test\n")
    os.remove(tmp_path / "v0.mp4")
    with pytest.raises(ManifestError) as e:
        RetrievalDataModule(manifest=str(tmp_path / "m.csv"), drop_invalid=True).setup("fit")
    assert str(e.value) == (
        "RetrievalDataModule[train]: no usable rows: all 2 row(s) are invalid and were dropped (missing_file=2); "
        f"first: {tmp_path / 'm.csv'} line 2 (v0): video file not found: {tmp_path / 'v0.mp4'}"
    )


def test_manifest_storage_is_a_fixed_number_of_numpy_buffers():
    def manifest(n: int):
        rows = [Row(f"clip_é{i}", f"/v/{i}.mp4", "container", float(i % 3), "m.csv", i + 2) for i in range(n)]
        return build_manifest(rows, "m", None, check_files=False)

    small, large = manifest(10), manifest(5000)
    assert large.ids[4321] == "clip_é4321" and large.videos[-1] == "/v/4999.mp4" and large.audio(7) == "container"
    for m in (small, large):
        for strings in (m.ids, m.videos, m.audios):
            assert all(isinstance(v, np.ndarray) for v in vars(strings).values())
        assert isinstance(m.labels, np.ndarray) and m.labels.dtype == np.float32
    # Per-row Python objects would make the referents grow with the row count (copy-on-read in workers).
    assert len(gc.get_referents(*vars(large.ids).values())) == len(gc.get_referents(*vars(small.ids).values()))
    assert large.ids.nbytes < 5000 * 24  # ~ the UTF-8 text plus one int64 offset per row
    assert pickle.loads(pickle.dumps(large.videos))[123] == "/v/123.mp4"
    assert PackedStrings([])._buffer.size == 0


# ------------------------------------------------------------------------------------------------ collation


def _item(cid: str, frames: int, spec_rows: int, patches: int, label=None) -> dict:
    return {
        "id": cid,
        "pixel_values": torch.full((frames, 3, 4, 4), 0.5),
        "audio_values": torch.ones(1, spec_rows, 128),
        "audio_patches": patches,
        "labels": None if label is None else torch.tensor(label),
    }


def test_collate_pads_to_batch_max_with_masks_from_lengths():
    collate = TvltCollator(patches_per_frame=196, pixel_padding_value=-1.0, audio_padding_value=-1.0)
    batch = collate([_item("a", 2, 16, 8, 1.0), Skipped("bad", "truncated"), _item("b", 3, 48, 16, -2.0)])
    assert batch["ids"] == ["a", "b"] and batch["skipped"] == [("bad", "truncated")]
    assert batch["pixel_values"].shape == (2, 3, 3, 4, 4)
    assert torch.all(batch["pixel_values"][0, 2] == -1.0) and torch.all(batch["pixel_values"][0, :2] == 0.5)
    assert batch["pixel_mask"].dtype == torch.int64 and batch["pixel_mask"].sum(1).tolist() == [392, 588]
    assert batch["audio_values"].shape == (2, 1, 48, 128) and torch.all(batch["audio_values"][0, 0, 16:] == -1.0)
    assert batch["audio_mask"].shape == (2, 24) and batch["audio_mask"].sum(1).tolist() == [8, 16]
    assert batch["audio_mask"][1, :16].all() and not batch["audio_mask"][1, 16:].any()
    with pytest.raises(ValueError, match="audio item 0 claims 32 patches, its spectrogram holds 16"):
        collate([_item("c", 1, 32, 32)])
    assert batch["labels"].tolist() == [1.0, -2.0]
    assert collate([Skipped("x", "timeout")]) == {"ids": [], "skipped": [("x", "timeout")]}


class _CollateInWorker(TvltCollator):
    """Records, where the batch is made, whether its tensors were allocated in shared memory."""

    def __call__(self, items):
        batch = super().__call__(items)
        batch["shared"] = {k: batch[k].is_shared() for k in ("pixel_values", "audio_values")}
        return batch


def test_a_worker_collates_into_shared_memory_with_the_same_values():
    # a worker's batch is allocated in shared memory, as torch's default_collate does: otherwise the worker copies
    # it there once more to send it; padding is written explicitly (the memory is not pre-filled)
    items = [_item("a", 2, 16, 8, 1.0), _item("b", 3, 48, 16, -2.0), _item("c", 1, 32, 8, 0.0)]
    collate = _CollateInWorker(patches_per_frame=196, pixel_padding_value=-1.0, audio_padding_value=-1.0)
    in_process = collate(items)
    assert in_process["shared"] == {"pixel_values": False, "audio_values": False}
    loader = torch.utils.data.DataLoader(items, batch_size=3, num_workers=1, collate_fn=collate)
    (batch,) = list(loader)
    assert batch["shared"] == {"pixel_values": True, "audio_values": True}
    for key in ("pixel_values", "pixel_mask", "audio_values", "audio_mask", "labels"):
        assert torch.equal(batch[key], in_process[key]), key
    assert torch.all(batch["pixel_values"][2, 1:] == -1.0) and torch.all(batch["audio_values"][0, 0, 16:] == -1.0)


def test_vam_negatives_swap_about_half_for_another_clip():
    torch.manual_seed(0)
    total, negatives = 0, 0
    for _ in range(200):
        order, labels = vam_negatives(6)
        assert labels.tolist() == [float(j == i) for i, j in enumerate(order.tolist())]
        total, negatives = total + 6, negatives + int((labels == 0).sum())
    assert 0.4 < negatives / total < 0.6
    order, labels = vam_negatives(1, negative_prob=1.0)
    assert order.tolist() == [0] and labels.tolist() == [1.0]  # no other clip to pair with
    with pytest.raises(ValueError, match=r"vam_negative_prob must lie in \[0, 1\], got 1.5"):
        vam_negatives(4, 1.5)


def _vam_items() -> list[dict]:
    """Four clips whose frames hold their index (clip i: i + 1 frames of value i), 16 audio frames each."""
    return [{**_item(f"c{i}", i + 1, 16, 8), "pixel_values": torch.full((i + 1, 3, 4, 4), float(i))}
            for i in range(4)]


def test_vam_collation_pairs_each_audio_with_the_video_the_order_names():
    items = _vam_items()
    collate = TvltCollator(patches_per_frame=2, pixel_padding_value=-1.0, audio_padding_value=-1.0, vam=True,
                           vam_negative_prob=1.0)
    # every sample a negative: two clips can only swap
    torch.manual_seed(0)
    pair = collate(items[:2])
    assert pair["labels"].tolist() == [0.0, 0.0]
    assert pair["pixel_values_mixed"][:, 0, 0, 0, 0].tolist() == [1.0, 0.0]
    assert pair["pixel_mask_mixed"].sum(1).tolist() == [4, 2] and pair["pixel_mask"].sum(1).tolist() == [2, 4]
    # four clips: one cycle through all of them, so no audio keeps its own video and each video is used once
    for seed in range(5):
        torch.manual_seed(seed)
        batch = collate(items)
        order = batch["pixel_values_mixed"][:, 0, 0, 0, 0].long().tolist()
        assert batch["labels"].tolist() == [0.0] * 4 and sorted(order) == [0, 1, 2, 3]
        assert all(j != i for i, j in enumerate(order))
        i = 0
        for _ in range(3):
            i = order[i]
            assert i != 0  # back at clip 0 only after four steps: a single cycle
        assert batch["pixel_mask_mixed"].sum(1).tolist() == [2 * (j + 1) for j in order]
        assert torch.equal(batch["pixel_values"], collate.pad_frames([it["pixel_values"] for it in items])[0])
    # no negatives: the mixed video is the clip's own
    same = TvltCollator(patches_per_frame=2, pixel_padding_value=-1.0, audio_padding_value=-1.0, vam=True,
                        vam_negative_prob=0.0)(items)
    assert same["labels"].tolist() == [1.0] * 4 and torch.equal(same["pixel_values_mixed"], same["pixel_values"])
    with pytest.raises(ValueError, match="vam_negative_prob must lie in"):
        TvltCollator(patches_per_frame=2, pixel_padding_value=-1.0, audio_padding_value=-1.0, vam_negative_prob=-0.1)


def test_pretraining_batches_carry_negatives():
    """The pretraining datamodule's collator swaps about half of the videos (a collator with negative
    probability 0 trains VAM on positives only and fails here)."""
    collate = PretrainDataModule(root="videos", num_frames=1).collator()
    assert collate.vam and collate.vam_negative_prob == 0.5
    torch.manual_seed(0)
    labels = torch.cat([collate(_vam_items())["labels"] for _ in range(50)])
    assert 0.35 < float((labels == 0).float().mean()) < 0.65


# ------------------------------------------------------------------------------------------------ skip counting


def test_on_error_skip_counts_by_cause_and_logs_each_epoch(tmp_path, caplog):
    splits = {"train": [("a", "1"), ("b", "2"), ("c", "-1"), ("d", "0")], "valid": [("v", "0")]}
    root = mosei_layout(tmp_path / "m", splits)
    (root / "train" / "video" / "b.mp4").write_bytes(b"")
    (root / "train" / "video" / "c.mp4").write_bytes(b"not a video at all" * 100)
    dm = MoseiDataModule(root=str(root), batch_size=2, on_error="skip", decode_timeout=None, train_jitter=False)
    dm.setup("fit")
    loader = dm._loader("train", shuffle=False)
    with caplog.at_level(logging.WARNING, logger="datamodules.skips"):
        batches = list(loader)
        dm.teardown("fit")
    assert [b["ids"] for b in batches] == [["a"], ["d"]] and all("skipped" not in b for b in batches)
    assert dict(dm.skipped["None"]) == {"empty_file": 1, "undecodable": 1}
    assert dm.skipped_clips == [("None", "b", "empty_file"), ("None", "c", "undecodable")]
    assert caplog.text.count("skipped 2 clip(s) in None: empty_file=1, undecodable=1") == 1  # logged once
    restored = MoseiDataModule(root=str(root))
    restored.load_state_dict(dm.state_dict())
    assert restored.skipped_clips == dm.skipped_clips and restored.skipped == dm.skipped
    restored.load_state_dict({"skipped": {"train epoch 0": {"timeout": 2}}})  # a checkpoint from before the record
    assert dict(restored.skipped["train epoch 0"]) == {"timeout": 2}
    raising = MoseiDataModule(root=str(root), batch_size=2, decode_timeout=None, train_jitter=False)
    raising.setup("fit")
    with pytest.raises(ClipDecodeError, match="b.mp4: empty file"):
        list(raising._loader("train", shuffle=False))


def test_a_batch_without_clips_is_dropped_except_where_every_process_must_step(tmp_path):
    root = mosei_layout(tmp_path / "m", {"train": [("a", "1"), ("b", "2")], "valid": [("v", "0")]})
    (root / "train" / "video" / "b.mp4").write_bytes(b"")
    dm = MoseiDataModule(root=str(root), batch_size=1, on_error="skip", decode_timeout=None, train_jitter=False)
    dm.setup("fit")
    assert [b["ids"] for b in dm._loader("train", shuffle=False)] == [["a"]]
    dm._keep_empty = lambda: True  # what training under DDP answers
    assert [b["ids"] for b in dm._loader("train", shuffle=False)] == [["a"], []]
    assert [c[1:] for c in dm.skipped_clips] == [("b", "empty_file")] * 2  # once per pass


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_pass_where_every_clip_is_skipped_raises_with_counts(tmp_path, num_workers):
    splits = {"train": [("a", "1"), ("b", "2"), ("c", "-1")], "valid": [("v", "0")]}
    root = mosei_layout(tmp_path / "m", splits)
    for name in ("a", "b"):
        (root / "train" / "video" / f"{name}.mp4").write_bytes(b"")
    (root / "train" / "video" / "c.mp4").write_bytes(b"not a video at all" * 100)
    dm = MoseiDataModule(
        root=str(root), batch_size=2, on_error="skip", decode_timeout=None, train_jitter=False, num_workers=num_workers
    )
    dm.setup("fit")
    with pytest.raises(NoUsableClipsError) as e:
        list(dm._loader("train", shuffle=False))  # the train loader in manifest order: "first" is a
    assert e.value.split == "MoseiDataModule[train]" and dict(e.value.counts) == {"empty_file": 2, "undecodable": 1}
    assert str(e.value).startswith(
        "MoseiDataModule[train]: all 3 clip(s) of this pass over the split failed to load and were skipped "
        "(on_error=skip): empty_file=2, undecodable=1; first: a (empty_file)."
    )
    assert [b["ids"] for b in dm.val_dataloader()] == [["v"]]  # a usable split passes


def test_all_failed_epoch_fails_the_fit_under_a_trainer(tmp_path):
    """The QA case: a folder holding only a video without an audio stream must fail the run, not "succeed"."""
    import lightning.pytorch as pl

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return ((batch["pixel_values"].mean() * self.w - 1) ** 2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    (tmp_path / "videos").mkdir()
    small_clip(tmp_path / "videos" / "silent.mp4")  # no audio stream
    dm = PretrainDataModule(
        root=str(tmp_path / "videos"), batch_size=4, num_workers=1, decode_timeout=None, on_error="skip"
    )  # conf/data/pretrain.yaml's on_error
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    with pytest.raises(NoUsableClipsError, match=r"PretrainDataModule\[train\]: all 1 clip\(s\) .* no_audio_stream=1"):
        trainer.fit(Tiny(), datamodule=dm)
    assert trainer.current_epoch == 0  # failed in the first epoch


# ------------------------------------------------------------------------------------------------ acceptance


def test_real_mosei_sample_loads_through_mosei_datamodule(tmp_path):
    root = tmp_path / "mosei"
    for split in ("train", "valid", "test"):
        (root / split / "video").mkdir(parents=True)
        (root / split / "audio_wav").mkdir(parents=True)
        os.symlink(media("K0m1tO3Ybyc_2.mp4"), root / split / "video" / "K0m1tO3Ybyc_2.mp4")
        os.symlink(media("K0m1tO3Ybyc_2.wav"), root / split / "audio_wav" / "K0m1tO3Ybyc_2.wav")
    (root / "labels").mkdir()
    for split in ("train", "valid", "test"):
        (root / "labels" / f"label_file_{split}.csv").write_text("FileName,sentiment_score\nK0m1tO3Ybyc_2,0.6667\n")
    dm = MoseiDataModule(root=str(root), batch_size=1)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["ids"] == ["K0m1tO3Ybyc_2"]
    assert batch["pixel_values"].shape == (1, 8, 3, 224, 224) and batch["pixel_mask"].sum() == 1568
    # 78,895 samples at 16 kHz -> 217,455 at 44.1 kHz -> 424 frames (hf) -> padded to 432 = 27 x 8 patches
    assert batch["audio_values"].shape == (1, 1, 432, 128) and batch["audio_mask"].shape == (1, 216)
    assert int(batch["audio_mask"].sum()) == 216
    assert batch["labels"].tolist() == [pytest.approx(0.6667)]


def test_real_howto100m_cut_loads_through_pretrain_datamodule_with_container_audio(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        os.symlink(media("mg7Q4o9bNN0_7s-12s.mp4"), folder / name)
    dm = PretrainDataModule(root=str(folder), batch_size=2, num_workers=1, window_seconds=4.0)
    dm.setup("fit")
    assert dm.val_dataloader() == []  # two clips: no validation hold-out (at most a tenth)
    batch = next(iter(dm.train_dataloader()))  # one forked worker with its own decode process
    assert sorted(batch["ids"]) == ["a", "b"]
    assert batch["pixel_values"].shape == (2, 4, 3, 224, 224) and batch["pixel_mask"].sum(1).tolist() == [784, 784]
    # 4 s window = 120 frames at 30 fps -> 176,400 samples -> 344 frames -> padded 352 = 22 x 8 patches
    assert batch["audio_values"].shape == (2, 1, 352, 128) and batch["audio_mask"].sum(1).tolist() == [176, 176]
    assert batch["pixel_values_mixed"].shape == (2, 4, 3, 224, 224) and batch["pixel_mask_mixed"].shape == (2, 784)
    assert set(batch["labels"].tolist()) <= {0.0, 1.0}
    for i, label in enumerate(batch["labels"].tolist()):
        if label == 1.0:
            assert torch.equal(batch["pixel_values_mixed"][i], batch["pixel_values"][i])
        else:
            assert torch.equal(batch["pixel_values_mixed"][i], batch["pixel_values"][1 - i])


def test_retrieval_csv_manifest_batches_have_no_labels(tmp_path):
    for i in range(3):
        small_clip(tmp_path / f"v{i}.mp4", seed=i, audio_seconds=1.0)
    (tmp_path / "m.csv").write_text("video,split\nv0.mp4,train\nv1.mp4,train\nv2.mp4,test\n")
    dm = RetrievalDataModule(manifest=str(tmp_path / "m.csv"), batch_size=2, decode_timeout=None)
    dm.setup("fit")
    assert {s: len(d) for s, d in dm.datasets.items()} == {"train": 2, "valid": 1}
    batch = next(iter(dm.val_dataloader()))
    assert batch["ids"] == ["v2"] and "labels" not in batch
    assert batch["pixel_values"].shape == (1, 8, 3, 224, 224) and batch["audio_values"].shape == (1, 1, 96, 128)


def test_msrvtt_layout_rows_and_shards_command(tmp_path):
    root = tmp_path / "msrvtt"
    (root / "videos" / "all").mkdir(parents=True)
    lists = root / "high-quality" / "structured-symlinks"
    lists.mkdir(parents=True)
    for i in range(3):
        small_clip(root / "videos" / "all" / f"video{i}.mp4", seed=i, audio_seconds=1.0)
    (lists / "train_list_miech.txt").write_text("video0\nvideo1\n")
    (lists / "test_list_miech.txt").write_text("video2\n")
    dm = RetrievalDataModule(root=str(root), batch_size=2, decode_timeout=None)
    assert [dm.manifest("valid").ids[0], dm.manifest("valid").audio(0)] == ["video2", "container"]
    from datamodules.build_shards import main
    from datamodules.shards import read_index

    assert main(["--datamodule", "retrieval", "--root", str(root), "--out", str(tmp_path / "c")]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["test", "train"]  # valid reads the test list
    sharded = RetrievalDataModule(batch_size=2, shards=str(tmp_path / "c"))
    sharded.setup("fit")
    batch = next(iter(sharded.val_dataloader()))  # validation reads the test split's shards
    assert batch["ids"] == ["video2"] and batch["pixel_values"].shape == (1, 8, 3, 224, 224) and "labels" not in batch
    assert read_index(str(tmp_path / "c" / "train"))["tvlt"]["num_frames"] == 8


def test_skip_counts_are_logged_each_epoch_under_a_trainer(tmp_path, caplog):
    import lightning.pytorch as pl

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.steps = 0

        def training_step(self, batch, batch_idx):
            self.steps += 1
            return ((batch["pixel_values"].mean() * self.w - 1) ** 2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    splits = {"train": [("a", "1"), ("b", "2"), ("c", "0")], "valid": [("v", "0")]}
    root = mosei_layout(tmp_path / "m", splits)
    (root / "train" / "video" / "b.mp4").write_bytes(b"")
    dm = MoseiDataModule(root=str(root), batch_size=1, on_error="skip", decode_timeout=None)
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    model = Tiny()
    with caplog.at_level(logging.WARNING, logger="datamodules.skips"):
        trainer.fit(model, datamodule=dm)
    assert model.steps == 4  # the all-failed batch (b alone) is dropped by the loader in both epochs
    assert "skipped 1 clip(s) in train epoch 0: empty_file=1" in caplog.text
    assert "skipped 1 clip(s) in train epoch 1: empty_file=1" in caplog.text


# ------------------------------------------------------------------------------------------------ the clip transform


@pytest.mark.parametrize("mode", ["hf", "original"])
def test_one_clip_through_the_transform_and_collator_is_the_processors_output(mode):
    """What predict feeds the model for one clip equals the HF-port processors' own output, values and masks."""
    from datamodules.decoding import ClipReader
    from datamodules.transform import ClipTransform
    from tvlt.feature_extraction import TvltFeatureExtractor
    from tvlt.image_processing import TvltImageProcessor

    clip = ClipReader(num_frames=8, decode_timeout=None).read(media("K0m1tO3Ybyc_2.mp4"), media("K0m1tO3Ybyc_2.wav"))
    ip, fe = TvltImageProcessor(mode=mode, num_frames=8), TvltFeatureExtractor(mode=mode)
    item = ClipTransform(ip, fe, torch.tensor)(clip, "K0m1tO3Ybyc_2", np.array([0.6667], np.float32))
    assert item["pixel_values"].shape == (8, 3, 224, 224) and item["labels"].tolist() == [pytest.approx(0.6667)]
    batch = TvltCollator.from_processors(ip, fe)([item])
    pixels = ip(clip.frames, return_tensors="pt", num_frames=8)
    audio = fe(clip.waveform, sampling_rate=clip.sampling_rate, return_tensors="pt")
    assert torch.equal(batch["pixel_values"], pixels["pixel_values"])
    assert torch.equal(batch["pixel_mask"], pixels["pixel_mask"]) and int(batch["pixel_mask"].sum()) == 8 * 196
    assert torch.equal(batch["audio_values"], audio["audio_values"])
    assert torch.equal(batch["audio_mask"], audio["audio_mask"].long()) and batch["ids"] == ["K0m1tO3Ybyc_2"]
