"""A trained TVLT over a whole dataset: predictions.csv and embeddings.safetensors, in one process and under
2-process DDP (one row per clip, dataset order, no duplicates)."""

from __future__ import annotations

import csv

import pytest
import torch

from test_run import FAST, compose_cfg, demo_dir, demo_overrides, run_cli  # noqa: F401 (fixture)
from tvlt.lit import job
from tvlt.lit.inference import load_embeddings


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, demo_dir):  # noqa: F811
    tmp = tmp_path_factory.mktemp("trained")
    cfg = compose_cfg(tmp, ["experiment=mosei", *FAST, *demo_overrides(demo_dir), "logger=none",
                            "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                            "test=false"])
    job.train(cfg)
    return tmp / "out" / "checkpoints" / "last.ckpt"


def _manifest_ids(demo_dir: str, split: str) -> list[str]:  # noqa: F811
    rows = list(csv.DictReader(open(f"{demo_dir}/labels/label_file_{split}.csv")))
    return [r["FileName"] for r in rows]


def test_predict_writes_one_row_per_clip_with_the_label(tmp_path, checkpoint, demo_dir):  # noqa: F811
    run_cli(["mode=predict", "experiment=mosei", *FAST, *demo_overrides(demo_dir), f"ckpt_path={checkpoint}",
             "predict.split=all", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "run" / "predictions.csv")))
    want = [(s, i) for s in ("train", "valid", "test") for i in _manifest_ids(demo_dir, s)]
    assert [(r["split"], r["id"]) for r in rows] == want  # every clip once, in dataset order
    assert list(rows[0]) == ["id", "split", "sentiment", "label"]
    labels = {r["FileName"]: float(r["sentiment_score"]) for s in ("train", "valid", "test")
              for r in csv.DictReader(open(f"{demo_dir}/labels/label_file_{s}.csv"))}
    assert all(float(r["label"]) == pytest.approx(labels[r["id"]], abs=1e-4) for r in rows)
    assert all(-10 < float(r["sentiment"]) < 10 for r in rows)


def test_predict_from_shards_under_two_ddp_processes_matches_the_files_in_split_order(tmp_path, checkpoint,  # noqa: F811
                                                                                   demo_dir):
    """`data.shards` feeds predict like files do. Lossless shards (uint8 frames, float16 audio within 5e-4) of the
    8 test clips, read by 2 processes with 2 loader workers each and batch 1, so that the workers' batches alternate
    (0, 2, 1, 3 on rank 0): the file still lists the clips in the split's order, each once, with the per-file
    predictions' values (within 2e-3: the audio's float16 storage). Each process predicted its half. The workers
    hand the uint8 frames on and each batch is normalized in the main process (``data.shards_decode=device``, through
    ``SplitData``), which equals the worker path exactly (tests/test_shards.py, JPEG included)."""
    from datamodules.mosei import MoseiDataModule

    dm = MoseiDataModule(demo_dir=demo_dir, num_frames=1, decode_timeout=None)
    assert dm.build_shards("test", str(tmp_path / "shards" / "test"), frames="uint8")["failed"] == []
    run_cli(["mode=predict", "experiment=mosei", *FAST, *demo_overrides(demo_dir), f"ckpt_path={checkpoint}",
             f"hydra.run.dir={tmp_path}/files"], cwd=tmp_path)
    proc = run_cli(["mode=predict", "experiment=mosei", *FAST, f"data.shards={tmp_path}/shards",
                    f"ckpt_path={checkpoint}", "trainer=ddp_cpu", "data.batch_size=1", "data.num_workers=2",
                    "data.shards_decode=device", f"hydra.run.dir={tmp_path}/shards_run"], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    for rank in (0, 1):  # each process read its half (a loader made before the processes started read it all)
        assert f"Process {rank} of 2 predicted 4 row(s)" in out
    # LitData's note on where chunks are cached: once per process, not once per dataset and worker; and no warning
    # that the shard dataset's length may be wrong in several workers (LitData's is exact: the rows above)
    assert out.count("max_cache_size is unset") == 2 and "has `__len__` defined" not in out, out[-3000:]
    files = list(csv.DictReader(open(tmp_path / "files" / "predictions.csv")))
    shards = list(csv.DictReader(open(tmp_path / "shards_run" / "predictions.csv")))
    assert [r["id"] for r in shards] == [r["id"] for r in files] == _manifest_ids(demo_dir, "test")
    assert list(shards[0]) == list(files[0]) == ["id", "split", "sentiment", "label"]
    for column in ("sentiment", "label"):
        torch.testing.assert_close(torch.tensor([float(r[column]) for r in shards]),
                                   torch.tensor([float(r[column]) for r in files]), atol=2e-3, rtol=0)


def test_predict_mistakes_are_one_line_errors_naming_the_setting(tmp_path, checkpoint, demo_dir):  # noqa: F811
    """A wrong shards folder, a split the data lacks and a missing checkpoint: exit 1 with one line that names
    the setting (and, for shards, the location and the build command), no traceback."""
    from datamodules.mosei import MoseiDataModule

    dm = MoseiDataModule(demo_dir=demo_dir, num_frames=1, decode_timeout=None)
    assert dm.build_shards("test", str(tmp_path / "shards" / "test"), frames="uint8")["failed"] == []
    cases = [
        ([f"data.shards={tmp_path}/nowhere", f"ckpt_path={checkpoint}"],
         f"Error: data.shards={tmp_path}/nowhere: no shard index at {tmp_path}/nowhere/test/index.json (build "
         "shards with python -m datamodules.build_shards)"),
        ([f"data.shards={tmp_path}/shards", f"ckpt_path={checkpoint}", "predict.split=train"],
         "Error: predict.split=train: the data has no clips in that split (splits with clips: test; "
         "predict.split=all reads them all)"),
        ([*demo_overrides(demo_dir), f"ckpt_path={tmp_path}/missing.ckpt"],
         f"Error: checkpoint not found: {tmp_path}/missing.ckpt"),
    ]
    for overrides, message in cases:
        proc = run_cli(["mode=predict", "experiment=mosei", *FAST, *overrides, f"hydra.run.dir={tmp_path}/run"],
                       cwd=tmp_path, check=False)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert message in proc.stderr and "Traceback" not in proc.stderr, (message, proc.stderr[-2000:])


def test_embed_writes_pooled_embeddings_that_read_back(tmp_path, checkpoint, demo_dir):  # noqa: F811
    run_cli(["mode=embed", "experiment=mosei", *FAST, *demo_overrides(demo_dir), f"ckpt_path={checkpoint}",
             f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    ids, tensors = load_embeddings(tmp_path / "run" / "embeddings.safetensors")
    assert ids == _manifest_ids(demo_dir, "test")
    hidden = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["config"]["hidden_size"]
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {k: (len(ids), hidden) for k in
                                                              ("embedding", "video", "audio")}
    assert torch.isfinite(tensors["embedding"]).all() and (tmp_path / "run" / "preprocessor_config.json").is_file()


def test_predict_under_two_ddp_processes_has_no_duplicates(tmp_path, checkpoint, demo_dir):  # noqa: F811
    """8 test clips, 3 per batch on 2 processes: the sampler pads 2 repeats; the file has each clip once, in order."""
    run_cli(["mode=predict", "experiment=mosei", *FAST, *demo_overrides(demo_dir), f"ckpt_path={checkpoint}",
             "trainer=ddp_cpu", "data.batch_size=3", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "run" / "predictions.csv")))
    assert [r["id"] for r in rows] == _manifest_ids(demo_dir, "test")


def test_bf16_mixed_predict_on_cpu_agrees_with_fp32(tmp_path, checkpoint, demo_dir):  # noqa: F811
    """`trainer.precision=bf16-mixed` predicts on the CPU. bf16 keeps 8 significant bits (a relative step of
    2^-8, 0.4%) in every matrix product; on this tiny model's scores (|s| < 1) the two precisions agree within
    0.02 (measured: 0.0016 at most)."""
    scores = {}
    for precision in ("32-true", "bf16-mixed"):
        run_cli(["mode=predict", "experiment=mosei", *FAST, *demo_overrides(demo_dir), f"ckpt_path={checkpoint}",
                 f"trainer.precision={precision}", f"hydra.run.dir={tmp_path}/{precision}"], cwd=tmp_path)
        rows = list(csv.DictReader(open(tmp_path / precision / "predictions.csv")))
        scores[precision] = torch.tensor([float(r["sentiment"]) for r in rows])
    assert scores["32-true"].shape == (8,)
    assert scores["32-true"].abs().max() > 0.01  # a real signal to compare, not zeros
    torch.testing.assert_close(scores["bf16-mixed"], scores["32-true"], rtol=0, atol=0.02)


def test_bf16_mixed_fine_tuning_and_evaluation_on_cpu(tmp_path, demo_dir):  # noqa: F811
    """Fit (2 steps), validate and test under `trainer.precision=bf16-mixed` on the CPU: finite losses, the weights
    (and so the checkpoint) stay fp32 as mixed precision keeps them, both steps were taken."""
    run_cli(["experiment=mosei", *FAST, *demo_overrides(demo_dir), "trainer.precision=bf16-mixed", "logger=csv",
             "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
             "trainer.limit_test_batches=1", "export_pretrained=false", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    values = {}
    for path in (tmp_path / "run").glob("csv/version_*/metrics.csv"):
        for row in csv.DictReader(open(path)):
            values.update({k: float(v) for k, v in row.items() if v != ""})
    for key in ("train/loss", "val/loss", "test/loss", "test/mae"):
        assert torch.isfinite(torch.tensor(values[key])), key
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert {t.dtype for t in ckpt["state_dict"].values() if t.is_floating_point()} == {torch.float32}


def test_predict_with_a_retrieval_checkpoint_lists_the_top_k_audios_of_each_video(tmp_path, demo_dir):  # noqa: F811
    """Retrieval over a split: one row per video in manifest order, its top-k audios of the split (distinct ids,
    VAM logits best first) and the rank of its own audio, which agrees with the matches (rank 1 <=> match_1 is the
    video's own clip, when no score ties it)."""
    rows = ["video,audio,split"]
    for split, n in (("train", 4), ("valid", 2), ("test", 5)):
        for i in range(n):
            clip = f"demo_{split}_{i:03d}"
            rows.append(f"{demo_dir}/{split}/video/{clip}.mp4,{demo_dir}/{split}/audio_wav/{clip}.wav,{split}")
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("\n".join(rows) + "\n")
    data = [*FAST, f"data.manifest={manifest}"]
    run_cli(["experiment=retrieval", *data, "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
             "test=false", f"hydra.run.dir={tmp_path}/train"], cwd=tmp_path)
    run_cli(["mode=predict", "experiment=retrieval", *data, f"ckpt_path={tmp_path}/train/checkpoints/last.ckpt",
             "predict.top_k=3", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    out = list(csv.DictReader(open(tmp_path / "run" / "predictions.csv")))
    test_ids = [f"demo_test_{i:03d}" for i in range(5)]  # a manifest without an id column: the file stems
    assert [r["id"] for r in out] == test_ids
    assert list(out[0]) == ["id", "split", "match_1", "match_2", "match_3", "score_1", "score_2", "score_3",
                            "true_rank"]
    for r in out:
        matches = [r[f"match_{k}"] for k in (1, 2, 3)]
        scores = [float(r[f"score_{k}"]) for k in (1, 2, 3)]
        assert len(set(matches)) == 3 and set(matches) <= set(test_ids) and r["split"] == "test"
        assert scores == sorted(scores, reverse=True)
        rank = int(r["true_rank"])
        if len(set(scores)) == 3:  # no ties among the top 3: the own audio's place in them is its rank
            if r["id"] not in matches:
                assert 3 < rank <= 5
            elif (place := matches.index(r["id"]) + 1) < 3:
                assert rank == place  # above the 3rd score: no audio outside the list ties it
            else:
                assert 3 <= rank <= 5  # the 3rd: an audio outside the list may tie it (ties count against)
