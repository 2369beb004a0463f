"""Throughput and MFU in the training logs: Lightning's ThroughputMonitor fed with tvlt.flops per batch."""

from __future__ import annotations

import csv

import pytest
import torch

from test_run import FAST, compose_cfg, demo_dir, demo_overrides  # noqa: F401 (demo_dir is a fixture)
from tvlt.lit import job
from tvlt.configuration import TvltConfig
from tvlt.flops import batch_flops, finetune_forward_flops, finetune_step_flops, pretrain_step_flops


def test_batch_flops_follow_the_step_model_on_padded_shapes(tiny_config):
    batch = {"pixel_values": torch.zeros(3, 2, 3, 32, 32), "audio_values": torch.zeros(3, 1, 48, 16)}
    config = tiny_config
    assert batch_flops(config, batch, "finetune", True) == finetune_step_flops(config, 2, 48, 3).total
    assert batch_flops(config, batch, "finetune", False) == finetune_forward_flops(config, 2, 48, 3).total
    assert batch_flops(config, batch, "pretrain", True) == pretrain_step_flops(config, 2, 48, 3).total
    with pytest.raises(ValueError, match="FLOP task must be"):
        batch_flops(config, batch, "retrieval", True)


def test_training_logs_samples_flops_and_mfu_per_second(tmp_path, demo_dir):  # noqa: F811
    peak = 2.0e11
    cfg = compose_cfg(tmp_path, ["experiment=mosei", *FAST, *demo_overrides(demo_dir), "logger=csv",
                                 "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1",
                                 "trainer.log_every_n_steps=1", "callbacks.throughput.window_size=2",
                                 f"callbacks.throughput.peak_flops={peak}", "test=false"])
    job.train(cfg)
    rows = list(csv.DictReader(open(next((tmp_path / "out").rglob("metrics.csv")))))
    logged = [r for r in rows if r.get("train/device/flops_per_sec")]
    assert len(logged) >= 2, "one row per step once the 2-batch window is full"
    # every demo clip has 1 frame and 2 s of audio (172 spectrogram frames, padded to 176): all batches alike,
    # so FLOP/s over samples/s is exactly one batch's FLOPs over its size
    config = TvltConfig(**{**dict(cfg.model.config), "num_labels": 1})
    batch = {"pixel_values": torch.zeros(2, 1, 3, 224, 224), "audio_values": torch.zeros(2, 1, 176, 128)}
    per_sample = batch_flops(config, batch, "finetune", training=True) / 2
    for r in logged:
        flops, samples = float(r["train/device/flops_per_sec"]), float(r["train/device/samples_per_sec"])
        assert flops / samples == pytest.approx(per_sample, rel=1e-6)
        assert float(r["train/device/mfu"]) == pytest.approx(flops / peak, rel=1e-6)
