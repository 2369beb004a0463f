"""LitData shards: build command, equivalence with per-file decoding, settings check, failed clips, pretraining
windows, training jitter, refusal of unpickling indexes."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.build_shards import main
from datamodules.mosei import MoseiDataModule
from datamodules.pretrain import PretrainDataModule
from datamodules.shards import (ShardSettingsError, UnsafeShardError, build_summary, evaluation_positions, open_shards,
                                 read_index)
from datamodules.sampling import uniform_indices

MEDIA = Path(__file__).resolve().parent / "data"

#: JPEG (quality 90) against per-file decoding, in normalized pixel units ([-1, 1], 2/255 per 8-bit level), on the
#: demo clips (noise-textured, the hardest case for JPEG): mean and largest absolute difference. Stated in docs/data.md.
JPEG_MEAN_ABS = 0.03
JPEG_MAX_ABS = 0.5


def batches(dm, split: str = "test") -> list[dict]:
    dm.setup({"test": "test", "valid": "validate", "train": "fit"}[split])
    loader = {"test": dm.test_dataloader, "valid": dm.val_dataloader, "train": dm.train_dataloader}[split]()
    return list(loader)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A tiny demo MOSEI set (2 train, 2 valid, 3 test clips)."""
    root = tmp_path_factory.mktemp("shards_demo")
    MoseiDataModule(demo_dir=str(root / "demo"), demo_clips=(2, 2, 3)).prepare_data()
    return root / "demo"


def demo_common(demo: Path, **kw) -> dict:
    return dict(demo_dir=str(demo), demo_clips=(2, 2, 3), batch_size=3, decode_timeout=None, **kw)


@pytest.mark.parametrize("mode", ["hf", "original"])
def test_lossless_shards_give_the_per_file_evaluation_batches_exactly(tmp_path, demo, mode):
    per_file = MoseiDataModule(processor_mode=mode, **demo_common(demo))
    report = per_file.build_shards("test", str(tmp_path / "s" / "test"), frames="uint8")
    assert report["clips"] == 3 and report["records"] == 3 and report["failed"] == []
    sharded = MoseiDataModule(processor_mode=mode, shards=str(tmp_path / "s"), **demo_common(demo))
    (a,), (b,) = batches(per_file), batches(sharded)
    assert a["ids"] == b["ids"] == ["demo_test_000", "demo_test_001", "demo_test_002"]
    assert torch.equal(a["labels"], b["labels"])
    assert a["pixel_values"].shape == (3, 8, 3, 224, 224)
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["pixel_mask"], b["pixel_mask"])
    assert torch.equal(a["audio_mask"], b["audio_mask"])
    torch.testing.assert_close(a["audio_values"], b["audio_values"], atol=5e-4, rtol=0)  # float16 storage
    assert not torch.equal(a["audio_values"], torch.zeros_like(a["audio_values"]))


def test_jpeg_shards_are_within_the_stated_tolerance_and_smaller(tmp_path, demo):
    per_file = MoseiDataModule(**demo_common(demo))
    for frames in ("jpeg", "uint8"):
        per_file.build_shards("test", str(tmp_path / frames / "test"), frames=frames, jpeg_quality=90)
    (a,) = batches(per_file)
    (b,) = batches(MoseiDataModule(shards=str(tmp_path / "jpeg"), **demo_common(demo)))
    diff = (a["pixel_values"] - b["pixel_values"]).abs()
    assert 0 < float(diff.mean()) <= JPEG_MEAN_ABS and float(diff.max()) <= JPEG_MAX_ABS
    size = {f: sum(p.stat().st_size for p in (tmp_path / f / "test").glob("chunk-*.bin")) for f in ("jpeg", "uint8")}
    assert size["jpeg"] < size["uint8"] / 3, size


@pytest.mark.parametrize("frames", ["jpeg", "uint8"])
def test_frames_finished_on_the_device_give_the_worker_batches_under_a_trainer(tmp_path, demo, frames):
    """``shards_decode="device"``: the loader's batch carries the stored frames (JPEG files or uint8), and the
    datamodule's ``on_before_batch_transfer`` decodes and normalizes them: the step sees exactly the batch of the
    worker path (on the CPU both use the same decoder)."""
    import lightning.pytorch as pl

    MoseiDataModule(**demo_common(demo)).build_shards("test", str(tmp_path / "s" / "test"), frames=frames)
    (worker,) = batches(MoseiDataModule(shards=str(tmp_path / "s"), **demo_common(demo)))
    dm = MoseiDataModule(shards=str(tmp_path / "s"), shards_decode="device", **demo_common(demo))
    (stored,) = batches(dm)
    assert "pixel_values" not in stored
    if frames == "jpeg":
        assert stored["pixel_jpeg"].dtype == torch.uint8 and stored["pixel_jpeg"].dim() == 1
        sizes = stored["pixel_jpeg_bytes"]
        assert sizes.shape == (3, 8) and int(sizes.sum()) == len(stored["pixel_jpeg"])
    else:
        assert stored["pixel_frames"].shape == (3, 8, 3, 224, 224) and stored["pixel_frames"].dtype == torch.uint8
    seen: list[dict] = []

    class Probe(pl.LightningModule):
        def test_step(self, batch, batch_idx):
            seen.append(batch)

    pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False).test(
        Probe(), datamodule=dm, verbose=False)
    (finished,) = seen
    assert finished["ids"] == worker["ids"] and "pixel_jpeg" not in finished and "pixel_frames" not in finished
    for key in ("pixel_values", "pixel_mask", "audio_values", "audio_mask", "labels"):
        assert torch.equal(finished[key], worker[key]), key


@pytest.mark.parametrize("lengths", [(3, 1, 2), (2, 2, 2)])
@pytest.mark.parametrize("vam", [False, True])
def test_finish_frames_pads_and_mixes_as_the_worker_collation(vam, lengths):
    """Clips of 3, 1 and 2 frames: the device path's padding frames hold the processor's padding value, the mask
    covers the real frames, and pretraining's mixed videos follow the same VAM order as the worker path's. Clips
    of 2 frames each: no padding (the decoded values are the batch as they are)."""
    from torchvision.io import encode_jpeg

    from datamodules.collate import TvltCollator
    from datamodules.transform import decode_jpeg_frames
    from tvlt.feature_extraction import TvltFeatureExtractor
    from tvlt.image_processing import TvltImageProcessor

    ip = TvltImageProcessor()
    collate = TvltCollator.from_processors(ip, TvltFeatureExtractor(), vam=vam)
    g = torch.Generator().manual_seed(0)
    clips = [torch.randint(0, 256, (t, 3, 32, 48), dtype=torch.uint8, generator=g) for t in lengths]
    files = [[encode_jpeg(f, quality=90) for f in clip] for clip in clips]

    def items(key: str, make) -> list[dict]:
        return [{"id": str(i), key: make(i), "audio_values": torch.zeros(1, 16, 128), "audio_patches": 8}
                for i in range(3)]

    torch.manual_seed(1)
    worker = collate(items("pixel_values", lambda i: ip.to_values(decode_jpeg_frames(files[i]))))
    lossless = collate(items("frames", lambda i: decode_jpeg_frames(files[i])))["pixel_frames"]
    for i, t in enumerate(lengths):  # uint8 frames as stored, then zeros (the memory is not pre-filled)
        assert torch.equal(lossless[i, :t], decode_jpeg_frames(files[i])) and not lossless[i, t:].any()
    for stored in (lambda i: files[i], lambda i: decode_jpeg_frames(files[i])):  # JPEG, and uint8 as lossless shards
        torch.manual_seed(1)
        finished = collate.finish_frames(collate(items("frames", stored)))
        assert finished["pixel_values"].shape == (3, max(lengths), 3, 32, 48)
        assert torch.equal(finished["pixel_values"], worker["pixel_values"])
        if lengths[1] == 1:
            assert torch.equal(finished["pixel_values"][1, 1:], torch.full((2, 3, 32, 48), ip.padding_value))
        assert finished["pixel_mask"].sum(1).tolist() == [t * 196 for t in lengths]
        if vam:
            assert worker["labels"].tolist().count(0.0) >= 1  # some video was swapped
            assert torch.equal(finished["labels"], worker["labels"])
            assert torch.equal(finished["pixel_values_mixed"], worker["pixel_values_mixed"])
            assert torch.equal(finished["pixel_mask_mixed"], worker["pixel_mask_mixed"])
        else:
            assert "pixel_values_mixed" not in finished and "vam_order" not in finished


def test_settings_recorded_in_the_index_and_a_mismatch_names_the_setting(tmp_path, demo):
    MoseiDataModule(**demo_common(demo)).build_shards("test", str(tmp_path / "s" / "test"))
    settings = read_index(str(tmp_path / "s" / "test"))["tvlt"]
    assert settings["num_frames"] == 8 and settings["candidates"] == 16 and settings["processor_mode"] == "hf"
    assert settings["frame_size"] == [224, 224] and settings["frames"] == "jpeg" and settings["task"] == "sentiment"
    with pytest.raises(ShardSettingsError, match=r"built with num_frames=8 \(this run: 4\) \[data.num_frames; build option "
                                                 r"--num-frames\]; rebuild"):
        MoseiDataModule(num_frames=4, shards=str(tmp_path / "s"), **demo_common(demo)).setup("test")
    with pytest.raises(ShardSettingsError, match=r"processor_mode='hf' \(this run: 'original'\)"):
        MoseiDataModule(processor_mode="original", shards=str(tmp_path / "s"), **demo_common(demo)).setup("test")
    with pytest.raises(ShardSettingsError, match=r"task='sentiment' \(this run: 'emotion'\)"):
        MoseiDataModule(task="emotion", shards=str(tmp_path / "s"), **demo_common(demo)).setup("test")
    with pytest.raises(FileNotFoundError, match=f"no shard index at {tmp_path / 's' / 'valid' / 'index.json'}"):
        MoseiDataModule(shards=str(tmp_path / "s"), **demo_common(demo)).setup("validate")


def test_build_command_lists_failed_clips_in_the_report_and_writes_no_record_for_them(tmp_path, capsys):
    from tests.test_datamodules import mosei_layout

    root = mosei_layout(tmp_path / "m", {"train": [("a", "1"), ("b", "2"), ("c", "0")], "valid": [("v", "0")],
                                         "test": [("t", "-1")]})
    (root / "train" / "video" / "b.mp4").write_bytes(b"")
    out = tmp_path / "shards"
    assert main(["--datamodule", "mosei", "--root", str(root), "--out", str(out), "--num-frames", "2"]) == 0
    assert "train: 3 clip(s) -> 2 record(s), 1 clip(s) failed (listed in" in capsys.readouterr().out
    report = json.loads((out / "train" / "build_report.json").read_text())
    assert report["clips"] == 3 and report["records"] == 2
    assert (report["failed_clips"], report["failed_windows"]) == (1, 0)
    assert [(f["id"], f["window"], f["cause"]) for f in report["failed"]] == [("b", None, "empty_file")]
    assert str(root / "train" / "video" / "b.mp4") in report["failed"][0]["message"]
    dm = MoseiDataModule(root=str(root), num_frames=2, batch_size=4, shards=str(out))
    (batch,) = batches(dm, "train")
    assert sorted(batch["ids"]) == ["a", "c"] and sorted(batch["labels"].tolist()) == [0.0, 1.0]
    assert batch["pixel_values"].shape == (2, 2, 3, 224, 224)


def test_a_failing_window_is_reported_by_its_id_and_the_other_windows_are_written(tmp_path):
    """A 6 s video whose audio track ends at 2.5 s, cut into 2 s windows: windows 0 and 1 have audio and are written;
    window 2 has none and is reported as ``late@2`` with its cause (the video is not reported as a whole)."""
    from datamodules.demo import write_mp4

    folder = tmp_path / "videos"
    folder.mkdir()
    frames = np.random.default_rng(0).integers(0, 256, (48, 64, 64, 3)).astype(np.uint8)  # 6 s at 8 fps
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(int(2.5 * 16000)) / 16000)
    write_mp4(folder / "late.mp4", frames, 8, audio=tone.astype(np.float32)[None], audio_rate=16000)
    common = dict(root=str(folder), window_seconds=2.0, num_val=0, num_frames=2, batch_size=4, decode_timeout=None)
    report = PretrainDataModule(**common).build_shards("train", str(tmp_path / "s" / "train"), frames="uint8")
    assert report["records"] == 2 and (report["failed_clips"], report["failed_windows"]) == (0, 1)
    assert [(f["id"], f["window"], f["cause"]) for f in report["failed"]] == [("late@2", 2, "audio_too_short")]
    assert build_summary(report) == "1 clip(s) -> 2 record(s), 0 clip(s) failed, 1 more window(s) failed"
    assert "[4.000, 6.000) s" in report["failed"][0]["message"]
    dm = PretrainDataModule(shards=str(tmp_path / "s"), **common)
    (batch,) = batches(dm, "train")
    assert sorted(batch["ids"]) == ["late@0", "late@1"]


def test_training_picks_one_jittered_candidate_per_segment_evaluation_the_uniform_ones():
    # the evaluation frames of a span are among its 2T uniform candidates, for every span
    for span in range(1, 60):
        for t in (1, 2, 4, 8):
            candidates = uniform_indices(span, 2 * t).indices
            assert np.array_equal(candidates[evaluation_positions(len(candidates), t)],
                                  uniform_indices(span, t).indices), (span, t)
    from datamodules.shards import RecordToItem
    from tvlt.image_processing import TvltImageProcessor

    record = {"frame_bytes": np.zeros(8, np.int64)}
    train = RecordToItem(4, True, TvltImageProcessor())
    torch.manual_seed(0)
    picks = {tuple(train.positions(record)) for _ in range(200)}
    assert all(len(p) == 4 and [x // 2 for x in p] == [0, 1, 2, 3] for p in picks)  # one per segment of 2
    assert len(picks) == 16  # every combination occurs
    assert RecordToItem(4, False, TvltImageProcessor()).positions(record).tolist() == [0, 2, 4, 6]


def test_pretraining_videos_are_cut_into_windows_and_batches_carry_vam_pairs(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        os.symlink(MEDIA / "mg7Q4o9bNN0_7s-12s.mp4", folder / name)  # 5 s, 30 fps, audio in the container
    common = dict(root=str(folder), window_seconds=2.0, num_val=0, batch_size=4, decode_timeout=None)
    report = PretrainDataModule(**common).build_shards("train", str(tmp_path / "s" / "train"), frames="uint8")
    assert report["records"] == 4  # two whole 2 s windows per 5 s video
    dm = PretrainDataModule(shards=str(tmp_path / "s"), **common)
    dm.setup("fit")
    assert dm.val_dataloader() == []  # no valid shards: an optional split
    dm.check_sources("test")  # nor is there a test split (the build writes none): a run's final test reads nothing
    dm.setup("test")
    assert dm.test_dataloader() == []
    (batch,) = list(dm.train_dataloader())
    assert sorted(batch["ids"]) == ["a@0", "a@1", "b@0", "b@1"]
    # 2 s window = 60 frames -> 88,200 samples -> 172 mel frames -> padded 176 = 11 x 8 patches
    assert batch["audio_values"].shape == (4, 1, 176, 128) and batch["audio_mask"].sum(1).tolist() == [88] * 4
    assert batch["pixel_values"].shape == (4, 4, 3, 224, 224) and batch["pixel_values_mixed"].shape == (4, 4, 3, 224, 224)
    assert set(batch["labels"].tolist()) <= {0.0, 1.0}
    # the windows' frames come from the per-file reader's spans
    from datamodules.decoding import ClipReader

    clip = ClipReader(num_frames=8, decode_timeout=None).read(folder / "a.mp4", mode="span", span=(2.0, 4.0))
    assert clip.indices.tolist() == [60, 67, 75, 82, 90, 97, 105, 112]
    assert 1.99 < clip.start < 2.01 and 3.99 < clip.end < 4.01


def test_a_crafted_index_declaring_an_unpickling_format_is_refused_before_any_record_is_read(tmp_path):
    from functools import partial

    from litdata import StreamingDataset, optimize

    marker = tmp_path / "pwned"
    out = tmp_path / "crafted" / "test"
    # a shard whose "labels" field is a pickle that creates a file when unpickled
    previous = multiprocessing.get_start_method(allow_none=True)
    optimize(fn=partial(_crafted_record, str(marker)), inputs=[0, 1], output_dir=str(out), num_workers=1, chunk_bytes="1MB",
             verbose=False, start_method="spawn")
    multiprocessing.set_start_method(previous, force=True)
    index = json.loads((out / "index.json").read_text())
    assert "pickle" in index["config"]["data_format"]
    index["tvlt"] = {"version": 1}
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(UnsafeShardError, match=rf"{out / 'index.json'}: field 'labels' declares data format 'pickle'"):
        MoseiDataModule(shards=str(out.parent), batch_size=2).setup("test")
    with pytest.raises(UnsafeShardError, match="field 'labels'"):
        open_shards(str(out), {})
    assert not marker.exists()
    StreamingDataset(str(out))[0]  # what the check prevents: LitData itself unpickles the field
    assert marker.exists()
    index["config"]["data_format"] = ["str", "graph:pickle"]
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(UnsafeShardError, match="field 'labels' declares data format 'graph:pickle'"):
        read_index(str(out))


class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _crafted_record(marker: str, i: int) -> dict:
    return {"id": f"c{i}", "labels": _Exploit(marker)}


# ------------------------------------------------------------------------------------------------ object storage
@pytest.fixture
def s3_server(monkeypatch):
    """A local S3-compatible server (moto) on 127.0.0.1 and an ephemeral port, started and stopped here; returns
    its endpoint URL. Credentials are dummies, so nothing can reach a real account."""
    from moto.server import ThreadedMotoServer

    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_shards_written_to_and_read_from_s3_with_a_custom_endpoint(tmp_path, demo, s3_server):
    import boto3

    options = {"endpoint_url": s3_server}
    client = boto3.client("s3", **options)
    client.create_bucket(Bucket="tvlt")
    per_file = MoseiDataModule(**demo_common(demo))
    report = per_file.build_shards("test", "s3://tvlt/mosei/test", frames="uint8", storage_options=options)
    assert report["records"] == 3
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="tvlt", Prefix="mosei/test/")["Contents"]}
    assert {"mosei/test/index.json", "mosei/test/build_report.json"} <= keys and any("chunk-" in k for k in keys)
    remote = MoseiDataModule(shards="s3://tvlt/mosei", shards_options=options, shards_cache_dir=str(tmp_path / "c"),
                             **demo_common(demo))
    (a,), (b,) = batches(per_file), batches(remote)
    assert a["ids"] == b["ids"] and torch.equal(a["pixel_values"], b["pixel_values"])
    assert list((tmp_path / "c").rglob("chunk-*.bin"))  # streamed through the local cache folder
    with pytest.raises(FileNotFoundError, match="no shard index at s3://tvlt/mosei/valid/index.json"):
        MoseiDataModule(shards="s3://tvlt/mosei", shards_options=options, **demo_common(demo)).setup("validate")
    # a bucket that is not there, and an endpoint where nothing listens: one line naming the location, the
    # endpoint and the settings that set it (botocore's own error was a 115-line traceback)
    from tvlt.lit.runs import RunConfigError, check_data

    closed = {"endpoint_url": "http://127.0.0.1:9"}  # the discard port: refused at once
    for uri, opts, cause in (("s3://nobucket/mosei", options, "NoSuchBucket"),
                             ("s3://tvlt/mosei", closed, "EndpointConnectionError")):
        with pytest.raises(RunConfigError) as info:
            check_data(MoseiDataModule(shards=uri, shards_options=opts, **demo_common(demo)), "test")
        message = str(info.value)
        assert message.startswith(f"data.shards={uri}: {uri}/test/index.json: cannot read it from "
                                  f"{opts['endpoint_url']} ({cause}") and "\n" not in message, message
        assert message.endswith("the endpoint is set by data.shards_options.endpoint_url or AWS_ENDPOINT_URL, the "
                                "credentials by AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), message


# ------------------------------------------------------------------------------------------------ several processes
def _ddp_rank(rank: int, world: int, init_file: str, shards: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        dm = MoseiDataModule(num_frames=2, batch_size=2, num_workers=2, shards=shards)
        dm.setup("fit")
        dm.setup("test")
        seen = {split: [i for batch in loader for i in batch["ids"]]
                for split, loader in (("train", dm.train_dataloader()), ("test", dm.test_dataloader()))}
        Path(out, f"rank{rank}.json").write_text(json.dumps(seen))
    finally:
        dist.destroy_process_group()


TRAIN_IDS = [f"tr{i}" for i in range(8)]
TEST_IDS = [f"te{i}" for i in range(5)]


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory) -> Path:
    """Shards of 8 train and 5 test clips (2 frames each; valid = a copy of test), built once for this module."""
    import shutil

    from tests.test_datamodules import mosei_layout

    tmp = tmp_path_factory.mktemp("small_shards")
    root = mosei_layout(tmp / "m", {"train": [(i, "0") for i in TRAIN_IDS], "test": [(i, "1") for i in TEST_IDS]})
    dm = MoseiDataModule(root=str(root), num_frames=2, decode_timeout=None)
    for split in ("train", "test"):
        assert dm.build_shards(split, str(tmp / "s" / split), frames="uint8")["failed"] == []
    shutil.copytree(tmp / "s" / "test", tmp / "s" / "valid")  # setup("fit") opens valid too
    return tmp / "s"


def test_a_shards_run_checks_the_shard_indexes_up_front_without_the_raw_data(tmp_path, small_shards):
    """With data.shards the set-up check reads the splits' shard indexes, not manifests (the raw clips may be on
    another machine), and a setting the shards were not built with is one line naming the run setting and the build
    option (tvlt.lit.runs.check_data)."""
    from tvlt.lit.runs import RunConfigError, check_data

    absent = str(tmp_path / "no_raw_data")
    MoseiDataModule(num_frames=2, shards=str(small_shards), demo_dir=absent).check_sources("fit")
    with pytest.raises(RunConfigError) as info:
        check_data(MoseiDataModule(num_frames=4, shards=str(small_shards), demo_dir=absent), "fit")
    message = str(info.value)
    assert message.startswith(f"data.shards={small_shards}: {small_shards}/train/index.json: the shards were built "
                              "with num_frames=2 (this run: 4) [data.num_frames; build option --num-frames]"), message
    assert "candidates" not in message and "\n" not in message


def test_two_gloo_processes_with_two_workers_each_read_disjoint_parts_covering_the_split(tmp_path, small_shards):
    torch.multiprocessing.spawn(_ddp_rank, args=(2, str(tmp_path / "init"), str(small_shards), str(tmp_path)),
                                nprocs=2, join=True)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for split, ids_all in (("train", TRAIN_IDS), ("test", TEST_IDS)):
        ids = [i for rank in seen for i in rank[split]]
        assert all(rank[split] for rank in seen), (split, seen)  # both ranks read something
        assert len(ids) == len(set(ids)), (split, seen)  # disjoint, no repeats
        assert sorted(ids) == sorted(ids_all), (split, seen)  # together: the whole split, once


# ------------------------------------------------------------------------------------------------ resume
def _resume_job(shards: str, ckpt_dir: str, log_path: str, kill_at: int, ckpt_path: str | None,
                workers: int = 2) -> None:
    """One training run on the shards (batch 1, ``workers`` loader workers, checkpoint every 3 steps); SIGKILLs
    itself after step ``kill_at`` (0: never). Each training step appends its global step and ids to ``log_path``."""
    import signal

    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    class IdModel(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def _log(self, record: dict) -> None:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

        def on_train_start(self) -> None:
            state = self.trainer.optimizers[0].state.get(self.w, {})
            self._log({"start": self.global_step, "adam_step": float(state.get("step", 0))})

        def training_step(self, batch, batch_idx):
            self._log({"step": self.global_step, "ids": batch["ids"]})
            return ((batch["pixel_values"].mean() * self.w - 1) ** 2).sum()

        def on_train_batch_end(self, outputs, batch, batch_idx) -> None:  # runs after ModelCheckpoint's hook
            if kill_at and self.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        def configure_optimizers(self):
            optimizer = torch.optim.Adam(self.parameters(), lr=0.01)
            total = self.trainer.estimated_stepping_batches  # as the cosine schedule does (Lightning issue 20550)
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / (total + 1))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    dm = MoseiDataModule(num_frames=2, batch_size=1, num_workers=workers, persistent_workers=False, shards=shards)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_top_k=-1, save_last=True)],
    )  # fmt: skip
    trainer.fit(IdModel(), datamodule=dm, ckpt_path=ckpt_path)


@pytest.mark.parametrize("workers", [(2, 2), (2, 1)], ids=["same_workers", "2_then_1_worker"])
def test_sigkill_mid_epoch_and_resume_from_last_ckpt_sees_each_record_once(tmp_path, small_shards, workers):
    """Killed mid-epoch and resumed from last.ckpt, also with another number of loader workers (LitData's elastic
    resume): the records trained before the checkpoint plus those after are exactly one epoch."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]

    def job(kill_at: int, ckpt_path: str | None) -> subprocess.CompletedProcess:
        code = (f"from tests.test_shards import _resume_job; _resume_job({str(small_shards)!r}, "
                f"{str(tmp_path / 'ckpt')!r}, {str(tmp_path / 'log.jsonl')!r}, {kill_at}, {ckpt_path!r}, "
                f"{workers[0] if ckpt_path is None else workers[1]})")
        return subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300)

    first = job(5, None)
    assert first.returncode == -9, first.stderr[-3000:]  # killed after step 5; last checkpoint at step 3
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 3
    before = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    (tmp_path / "log.jsonl").unlink()
    second = job(0, str(tmp_path / "ckpt" / "last.ckpt"))
    assert second.returncode == 0, second.stderr[-3000:]
    after = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert before[0] == {"start": 0, "adam_step": 0.0}
    assert [r["step"] for r in before if "step" in r] == [0, 1, 2, 3, 4]
    assert after[0] == {"start": 3, "adam_step": 3.0}  # the optimizer's step count continues
    steps = [r for r in after if "step" in r]
    assert [r["step"] for r in steps] == [3, 4, 5, 6, 7]
    trained = [i for r in before if "step" in r and r["step"] < 3 for i in r["ids"]] + [i for r in steps for i in r["ids"]]
    assert sorted(trained) == sorted(TRAIN_IDS), (before, after)  # one epoch: no repeats, no gaps
