"""A trained TVLT over a whole dataset: predictions.csv and embeddings.safetensors, in one process and under
2-process DDP (one row per clip, dataset order, no duplicates)."""

from __future__ import annotations

import csv

import pytest
import torch

from test_run import FAST, REPO, compose_cfg, demo_dir, demo_overrides, run_cli  # noqa: F401 (fixture)
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
