"""tvlt/flops.py: hand-computed FLOP counts on a tiny config, scaling rules, and an exact cross-check against
torch.utils.flop_counter.FlopCounterMode on this project's models and the reference (transformers 4.40.2).

Tiny config (FLOP_CONFIG below): 32x32 frames in 8x8 patches -> 16 patches per frame, 2 frames -> 32 video
tokens; spectrogram 16 mel bins in 4x4 patches -> 4 frequency patches; 20 audio frames -> ceil(20/4) = 5 time
patches -> 20 audio tokens. Encoder width d = 32, MLP i = 64, 2 layers; decoder width 16, MLP 32, 2 layers.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import TINY_CONFIG
from bench import gpu  # the repo root is on sys.path under `python -m pytest` (make test)
from tvlt import flops
from tvlt import TvltConfig, TvltForAudioVisualClassification, TvltForPreTraining, TvltModel

FLOP_CONFIG = dict(TINY_CONFIG, num_labels=1, loss_type="regression", attn_implementation="eager")
FRAMES, AUDIO_FRAMES = 2, 20

# Patch embeddings (every patch, before masking): video 2*32 tokens*(3*8*8=192)*32 = 393,216;
# audio 2*20*(1*4*4=16)*32 = 20,480 -> 413,696.
PATCH = 393_216 + 20_480
# Unmasked encoder, L = 1 + 32 + 20 = 53, per layer:
#   projections 2*53*32*96 (qkv) + 2*53*32*32 (out) = 325,632 + 108,544 = 434,176
#   attention   2*53*53*32 (QK^T) + 2*53*53*32 (AV) = 4*2809*32 = 359,552
#   mlp         2*53*32*64 + 2*53*64*32 = 434,176
# two layers -> 868,352 / 719,104 / 868,352; total with patches 2,869,504.
ENCODER = {"patch_embed": PATCH, "projections": 868_352, "attention": 719_104, "mlp": 868_352, "heads": 0,
           "total": 2_869_504}
# Masked encoder (ratios 0.75 / 0.15): kept int(32*0.25) = 8 video, int(20*0.85) = 17 audio, L = 26:
#   per layer 8*26*32^2 = 212,992 + 4*26^2*32 = 86,528 + 4*26*32*64 = 212,992 = 512,512; x2 = 1,025,024;
#   + patches 413,696 = 1,438,720.
ENCODER_MASKED = 1_438_720
# Decoder (d 16, i 32, 2 layers), video stream 32 tokens: 8*32*256 + 4*32^2*16 + 4*32*16*32 = 3*65,536 = 196,608
# per layer; audio stream 20 tokens: 8*20*256 = 40,960 + 4*400*16 = 25,600 + 4*20*16*32 = 40,960 = 107,520.
# Two layers: 393,216 + 215,040 = 608,256. Heads: encoder_to_decoder 2*(8+17)*32*16 = 25,600; pixel head
# 2*32*16*192 = 196,608; audio head 2*20*16*16 = 10,240 -> 232,448. Decoder total 840,704.
DECODER = 840_704
# VAM head: pooler 2*32*32 = 2,048 + fc 2*32*1 = 64 -> 2,112. Classifier: 2*32*64 = 4,096 + 2*64*1 = 128 -> 4,224.
MATCHING, CLASSIFIER = 2_112, 4_224
# This project's fine-tuning and VAM passes compute only CLS in the last layer (q = 1 row, keys/values on 53):
#   projections 2*1*32*32 (q) + 2*53*32*64 (k, v) + 2*1*32*32 (out) = 2,048 + 217,088 + 2,048 = 221,184
#   attention   2*1*53*32 + 2*1*53*32 = 6,784;  mlp 2*1*32*64 + 2*1*64*32 = 8,192  -> 236,160
# so the encoder is 413,696 + 1,227,904 (one full layer) + 236,160 = 1,877,760.
ENCODER_CLS = 1_877_760
PRETRAIN_FORWARD = ENCODER_CLS + MATCHING + ENCODER_MASKED + DECODER  # 4,159,296
PRETRAIN_FORWARD_FULL = ENCODER["total"] + MATCHING + ENCODER_MASKED + DECODER  # 5,151,040 (reference)
# Steps: 3x forward, patch embeddings 2x (no input gradient): fine-tuning 3*(1,877,760 + 4,224) - 413,696;
# pretraining 3*4,159,296 - 2*413,696 (two encoder passes). Reference: full last layer.
FINETUNE_STEP = 3 * (ENCODER_CLS + CLASSIFIER) - PATCH  # 5,232,256
FINETUNE_STEP_FULL = 3 * (ENCODER["total"] + CLASSIFIER) - PATCH  # 8,207,488
PRETRAIN_STEP = 3 * PRETRAIN_FORWARD - 2 * PATCH  # 11,650,496
PRETRAIN_STEP_FULL = 3 * PRETRAIN_FORWARD_FULL - 2 * PATCH  # 14,625,728


@pytest.fixture(scope="module")
def config() -> TvltConfig:
    return TvltConfig(**FLOP_CONFIG)


def test_token_counts_by_hand(config):
    tokens = flops.token_counts(config, FRAMES, AUDIO_FRAMES)
    assert (tokens.pixel, tokens.audio, tokens.sequence) == (32, 20, 53)
    masked = flops.token_counts(config, FRAMES, AUDIO_FRAMES, 0.75, 0.15)
    assert (masked.pixel_kept, masked.audio_kept, masked.sequence) == (8, 17, 26)
    # 17 audio frames still make 5 time patches (padded to a multiple of 4)
    assert flops.token_counts(config, FRAMES, 17).audio == 20
    # TVLT-base: 8 frames x 196 + 512/16 * 8 = 1568 + 256, plus CLS
    assert flops.token_counts(TvltConfig(), 8, 512).sequence == 1825


def test_audio_frames_for_seconds():
    # floor(N / 512) at 44.1 kHz: 441,000 / 512 = 861.3; 882,000 / 512 = 1722.7
    assert [flops.audio_frames_for_seconds(s) for s in (1, 5, 10, 20)] == [86, 430, 861, 1722]


def test_encoder_forward_by_hand(config):
    assert flops.encoder_forward_flops(config, FRAMES, AUDIO_FRAMES).as_dict() == ENCODER
    assert flops.encoder_forward_flops(config, FRAMES, AUDIO_FRAMES, 0.75, 0.15).total == ENCODER_MASKED
    assert flops.encoder_forward_flops(config, FRAMES, AUDIO_FRAMES, batch=3).total == 3 * ENCODER["total"]


def test_decoder_pretrain_and_steps_by_hand(config):
    assert flops.decoder_forward_flops(config, FRAMES, AUDIO_FRAMES).total == DECODER
    assert flops.encoder_forward_flops(config, FRAMES, AUDIO_FRAMES, cls_only_last_layer=True).total == ENCODER_CLS
    assert flops.pretrain_forward_flops(config, FRAMES, AUDIO_FRAMES).total == PRETRAIN_FORWARD == 4_159_296
    assert flops.finetune_step_flops(config, FRAMES, AUDIO_FRAMES).total == FINETUNE_STEP == 5_232_256
    assert flops.pretrain_step_flops(config, FRAMES, AUDIO_FRAMES).total == PRETRAIN_STEP == 11_650_496
    full = {"cls_only_last_layer": False}
    assert flops.pretrain_forward_flops(config, FRAMES, AUDIO_FRAMES, **full).total == PRETRAIN_FORWARD_FULL
    assert flops.finetune_step_flops(config, FRAMES, AUDIO_FRAMES, **full).total == FINETUNE_STEP_FULL == 8_207_488
    assert flops.pretrain_step_flops(config, FRAMES, AUDIO_FRAMES, **full).total == PRETRAIN_STEP_FULL
    assert PRETRAIN_STEP_FULL == 14_625_728
    # switching a task off removes its passes
    no_mae = TvltConfig(**{**FLOP_CONFIG, "task_mae": False})
    assert flops.pretrain_forward_flops(no_mae, FRAMES, AUDIO_FRAMES).total == ENCODER_CLS + MATCHING


def test_tvlt_base_totals():
    # L = 1825, d = 768, i = 3072, 12 layers: per layer 24*L*d^2 + 4*L^2*d = 25,834,291,200 + 10,231,680,000;
    # patches 2*1568*768*768 + 2*256*256*768 = 1,849,688,064 + 100,663,296.
    expected = 12 * (24 * 1825 * 768**2 + 4 * 1825**2 * 768) + 1_849_688_064 + 100_663_296
    assert flops.encoder_forward_flops(TvltConfig(), 8, 512).total == expected == 434_742_005_760


def test_scaling_rules(config):
    one = flops.layer_flops(100, 32, 64)
    two = flops.layer_flops(200, 32, 64)
    assert two.attention == 4 * one.attention  # quadratic in tokens: doubling tokens more than doubles it
    assert two.mlp == 2 * one.mlp and two.projections == 2 * one.projections  # linear
    # more frames: attention grows faster than the MLP
    small = flops.encoder_forward_flops(config, 1, AUDIO_FRAMES)
    big = flops.encoder_forward_flops(config, 2, AUDIO_FRAMES)
    assert big.attention / small.attention > big.mlp / small.mlp > 1
    # crossovers for TVLT-base: attention = MLP at L = i = 3072, = all linear layers at L = 2d + i = 4608
    assert flops.attention_crossover_tokens(768, 3072) == (3072, 4608)
    at = flops.layer_flops(3072, 768, 3072)
    assert at.attention == at.mlp
    at = flops.layer_flops(4608, 768, 3072)
    assert at.attention == at.mlp + at.projections


def test_bad_sizes_rejected(config):
    with pytest.raises(ValueError, match="num_frames"):
        flops.token_counts(config, 0, 20)
    with pytest.raises(ValueError, match="pixel_mask_ratio"):
        flops.token_counts(config, 1, 20, pixel_mask_ratio=1.0)
    with pytest.raises(ValueError, match="positive"):
        flops.model_flop_utilization(1e12, 0.0, 1e12)
    assert flops.model_flop_utilization(2e12, 2.0, 1e12) == pytest.approx(1.0)


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, FRAMES, 3, 32, 32, generator=gen), torch.randn(1, 1, AUDIO_FRAMES, 16, generator=gen)


def test_agrees_with_flop_counter_on_this_project(config):
    # eager attention: FlopCounterMode has no formula for the CPU flash-attention kernel behind SDPA
    torch.manual_seed(0)
    pixel, audio = _inputs()
    model = TvltModel(config)
    assert _counted(lambda: model(pixel, audio)) == ENCODER["total"]
    assert _counted(lambda: model(pixel, audio, mask_pixel=True, mask_audio=True)) == ENCODER_MASKED
    label = torch.ones(1, 1)
    classifier = TvltForAudioVisualClassification(config)
    assert _counted(lambda: classifier(pixel, audio, labels=label).loss.backward()) == FINETUNE_STEP
    pretrain = TvltForPreTraining(config).train()
    assert _counted(lambda: pretrain(pixel, audio, labels=label, pixel_values_mixed=pixel)) == PRETRAIN_FORWARD
    assert _counted(lambda: pretrain(pixel, audio, labels=label, pixel_values_mixed=pixel).loss.backward()) \
        == PRETRAIN_STEP


def test_agrees_with_flop_counter_on_the_reference():
    import transformers

    kwargs = {k: v for k, v in FLOP_CONFIG.items() if k != "attn_implementation"}
    torch.manual_seed(0)
    pixel, audio = _inputs()
    label = torch.ones(1, 1)
    ref = transformers.TvltModel(transformers.TvltConfig(**kwargs)).eval()
    assert _counted(lambda: ref(pixel, audio)) == ENCODER["total"]
    ref_classifier = transformers.TvltForAudioVisualClassification(transformers.TvltConfig(**kwargs))
    assert _counted(lambda: ref_classifier(pixel, audio, labels=label).loss.backward()) == FINETUNE_STEP_FULL
    ref_pretrain = transformers.TvltForPreTraining(transformers.TvltConfig(**kwargs)).train()
    out = lambda: ref_pretrain(pixel, audio, labels=label, pixel_values_mixed=pixel)  # noqa: E731
    assert _counted(out) == PRETRAIN_FORWARD_FULL
    assert _counted(lambda: out().loss.backward()) == PRETRAIN_STEP_FULL


def test_gpu_script_smoke_on_cpu(capsys):
    # bench/gpu.py's tiny CPU path: one step per case, and the shard measures on 4 clips with 1 worker (frames
    # decoded on the CPU); its FLOPs per step come from the FLOP model; every figure in the one table
    results, data = gpu.main(["--device", "cpu", "--tiny", "--steps", "1", "--warmup", "0", "--peak-flops", "1e12"])
    config = TvltConfig(**gpu.TINY, num_frames=8, num_labels=1)
    assert [(r.case, r.mode) for r in results] == [("fine-tuning", "eager"), ("pretraining", "eager")]
    assert [d.case for d in data] == ["shards build", "shards, CPU JPEG decoding, 1 worker",
                                      "shards, JPEG decoding on cpu, 1 worker"]
    assert all(d.clips_per_s > 0 for d in data)
    out = capsys.readouterr().out
    # 4 clips x 16 JPEG candidates, the same decoder on both sides
    assert "JPEG decoding on cpu vs the CPU's (libjpeg-turbo), 64 frames: pixels differ by 0.000 levels of 255 " \
           "on average, 0 at most (normalized values: 0.0000 at most)" in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(results) + len(data)  # header + one row per figure
    assert results[0].flops_per_step == flops.finetune_step_flops(config, 8, 20, batch=4).total
    assert results[1].flops_per_step == flops.pretrain_step_flops(config, 8, 20, batch=4).total
    for r in results:
        assert r.samples_per_s == pytest.approx(r.batch / r.step_s)
        assert r.mfu == pytest.approx(r.flops_per_step / r.step_s / 1e12)


# ------------------------------------------------------------------------- bench_scaling's measuring helpers
def test_peak_memory_counter_resets_between_calls():
    from bench.bench_scaling import peak_rss_delta_mb, reset_peak_rss

    before = reset_peak_rss()
    big = torch.ones(50 * 2**20)  # 200 MiB, every page written
    grown = peak_rss_delta_mb(before)
    del big
    before = reset_peak_rss()  # freed memory handed back, peak counter reset to the current RSS
    small = torch.ones(2**20)  # 4 MiB
    after_reset = peak_rss_delta_mb(before)
    del small
    assert 190 < grown < 260
    assert after_reset < 40  # without the reset the 200 MiB peak would still show


def test_quadratic_crossover_recovers_the_fitted_length():
    from bench.bench_scaling import quadratic_crossover

    # time = 2e-4 L + 5e-8 L^2: the L^2 term equals the L term at L = 2e-4 / 5e-8 = 4000
    points = [{"tokens": n, "cases": {"forward": {"ours": {"median_s": 2e-4 * n + 5e-8 * n * n}}}}
              for n in (453, 1041, 1825, 3393)]
    assert quadratic_crossover({"points": points}, "forward", "ours") == pytest.approx(4000, rel=1e-6)
    assert quadratic_crossover({"points": points}, "forward", "reference") is None  # not measured
