"""GPU readiness, measured: samples per second, model FLOP utilization (MFU) and peak memory of TVLT training
steps in bf16-mixed, eager and compiled, and the clips per second the shard loader feeds, in one table.

    bash bench/gpu.sh                                   # TVLT-base, fine-tuning B=32 and pretraining B=32
    bash bench/gpu.sh --peak-flops 312e12               # e.g. A100 dense bf16
    python -m bench.gpu --device cpu --tiny             # smoke check of the script itself (no GPU needed)

Each case builds the model on one device, draws synthetic inputs there once (the model step alone is timed: no
data loading), runs ``--warmup`` steps, then times ``--steps`` steps (``torch.cuda.synchronize`` around the
timed block). A step is forward + loss + backward + AdamW (fused on CUDA) under ``torch.autocast(bfloat16)``
with fp32 weights, which is what Lightning's ``precision="bf16-mixed"`` does.

- fine-tuning: TvltForAudioVisualClassification, 1 label, MSE (the MOSEI sentiment set-up);
- pretraining: TvltForPreTraining, VAM (half the pairs mismatched by rolling the video over the batch) + MAE.

Modes: ``eager`` and ``compiled`` (``torch.compile`` of the model; the compilation happens in the warm-up steps).
Attention: ``--attn sdpa`` (default: PyTorch picks its flash kernel for bf16 on CUDA) or ``eager``.

Data (unless ``--no-data``): shards of ``--data-clips`` copies of the benchmarks' 10 s 640x480 clip are built in a
temporary folder (16 JPEG candidates q90 + float16 log-mel, as ``python -m datamodules.build_shards``), then read
through LitData's loader as evaluation reads them (the 8 uniform frames), batch = the fine-tuning batch, in
``--data-workers`` N worker processes: (a) JPEG decoded and normalized on the CPU in the workers; (b) the workers
hand the JPEG files on and each batch is decoded (nvJPEG via torchvision's ``decode_jpeg``) and normalized on the
device (``data.shards_decode=device``, the datamodule's ``on_before_batch_transfer``). Each is clips/s, median of
``--data-repeats`` epochs after a warm-up epoch. Before them, a line gives how far the device's JPEG decoder (nvJPEG)
rounds from the CPU's (libjpeg-turbo) on every frame of the shards, in pixel levels and in normalized values.

MFU = FLOPs per step from :mod:`tvlt.flops` (matmuls only, training step = 3x forward; this project's work,
whose last encoder layer computes only CLS in the fine-tuning and VAM passes) / step time / peak.
The default peak, 989e12 FLOP/s, is the dense (no sparsity) bf16 tensor-core peak of an H100 SXM, which the H200
shares; pass ``--peak-flops`` for other parts (A100: 312e12, L4: 121e12, RTX 4090: 165e12).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import random_inputs
from tvlt import flops as flop_model
from tvlt import TvltConfig, TvltForAudioVisualClassification, TvltForPreTraining

H100_BF16_DENSE = 989e12

TINY = dict(image_size=32, image_patch_size=[8, 8], spectrogram_length=64, frequency_length=16,
            audio_patch_size=[4, 4], hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1,
            decoder_num_attention_heads=2, decoder_intermediate_size=32)


@dataclass
class Result:
    case: str
    mode: str
    batch: int
    step_s: float
    samples_per_s: float
    flops_per_step: float
    achieved_flops: float
    mfu: float
    peak_memory_gb: float | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(case: str, config: TvltConfig, batch: int, frames: int, audio_frames: int, device: torch.device,
             steps: int, warmup: int, peak_flops: float, compile_model: bool) -> Result:
    """Time ``steps`` bf16-mixed training steps of ``case`` ("fine-tuning" or "pretraining")."""
    torch.manual_seed(0)
    model_cls = TvltForAudioVisualClassification if case == "fine-tuning" else TvltForPreTraining
    model = model_cls(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    forward = torch.compile(model) if compile_model else model
    pixel, audio = (x.to(device) for x in random_inputs(batch, frames, audio_frames, config.image_size,
                                                          config.frequency_length))
    if case == "fine-tuning":
        kwargs = {"labels": torch.rand(batch, 1, device=device) * 6 - 3}
        step_flops = flop_model.finetune_step_flops(config, frames, audio_frames, batch).total
    else:
        labels = (torch.arange(batch, device=device) % 2).float()[:, None]  # 1 = matched pair
        mixed = torch.where(labels[:, :, None, None, None].bool(), pixel, pixel.roll(1, dims=0))
        kwargs = {"labels": labels, "pixel_values_mixed": mixed}
        step_flops = flop_model.pretrain_step_flops(config, frames, audio_frames, batch).total

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = forward(pixel, audio, **kwargs).loss
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    step_s = (time.perf_counter() - start) / steps
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    achieved = step_flops / step_s
    return Result(case, "compiled" if compile_model else "eager", batch, step_s, batch / step_s, step_flops, achieved,
                  achieved / peak_flops, memory)


@dataclass
class DataResult:
    case: str
    clips_per_s: float
    notes: str


def data_rates(clips: int, workers: list[int], batch: int, device: torch.device, repeats: int) -> list[DataResult]:
    """Clips per second from shards (see the module's docstring), per worker count: CPU JPEG decoding in the
    loader's workers, and the frames decoded and normalized per batch on ``device`` (``data.shards_decode=device``,
    the worker only reads; the device's work is synchronized in each batch's timing)."""
    from litdata import StreamingDataLoader

    from bench.bench_data import FinishedBatches, loader_rate, make_clip
    from datamodules.collate import TvltCollator
    from datamodules.decoding import ClipReader
    from datamodules.manifests import Row, build_manifest
    from datamodules.shards import RecordToItem, build_shards, open_shards
    from tvlt.feature_extraction import TvltFeatureExtractor
    from tvlt.image_processing import TvltImageProcessor

    ip, fe = TvltImageProcessor(), TvltFeatureExtractor()
    collate = TvltCollator.from_processors(ip, fe)
    settings = {"num_frames": 8, "processor_mode": "hf"}
    results = []
    with tempfile.TemporaryDirectory(prefix="tvlt-gpu-bench-") as tmp:
        video = Path(tmp) / "clip10s.mp4"
        make_clip(video)
        rows = [Row(f"clip{i}", str(video), "container", None, "bench", i) for i in range(clips)]
        out = str(Path(tmp) / "shards")
        build_workers = max(1, min(8, (os.cpu_count() or 2) // 2))
        start = time.perf_counter()
        build_shards(build_manifest(rows, "bench"), out, ClipReader(num_frames=16, decode_timeout=None), ip, fe,
                     settings, workers=build_workers)
        results.append(DataResult("shards build", clips / (time.perf_counter() - start),
                                  f"{build_workers} build worker{'s' if build_workers != 1 else ''}: decode + resize + JPEG + log-mel"))
        mean, levels, values, frames = decoder_difference(out, ip, device)
        print(f"JPEG decoding on {device.type} vs the CPU's (libjpeg-turbo), {frames} frames: pixels differ by "
              f"{mean:.3f} levels of 255 on average, {levels} at most (normalized values: {values:.4f} at most)",
              flush=True)
        for n in workers:
            dataset = open_shards(out, settings, RecordToItem(8, False, ip))
            loader = StreamingDataLoader(dataset, batch_size=batch, num_workers=n, persistent_workers=n > 0,
                                         collate_fn=collate)
            results.append(DataResult(f"shards, CPU JPEG decoding, {n} worker{'s' if n != 1 else ''}", loader_rate(loader, repeats),
                                      f"8 frames decoded + normalized per clip, batch {batch}"))
        for n in workers:  # the frames left to the device: data.shards_decode=device, as a training run reads
            dataset = open_shards(out, settings, RecordToItem(8, False, ip, decode="device"))
            loader = StreamingDataLoader(dataset, batch_size=batch, num_workers=n, persistent_workers=n > 0,
                                         collate_fn=collate)
            finished = FinishedBatches(loader, collate, device)
            results.append(DataResult(f"shards, JPEG decoding on {device.type}, {n} worker{'s' if n != 1 else ''}",
                                      loader_rate(finished, repeats),
                                      f"data.shards_decode=device: 8 frames per clip decoded + normalized per batch on "
                                      f"the device (finish_frames), batch {batch}"))
    return results


def decoder_difference(shards: str, image_processor, device: torch.device) -> tuple[float, int, float, int]:
    """Every JPEG frame of the shards at ``shards``, decoded on ``device`` and on the CPU: the mean and max absolute
    difference in pixel levels (0-255), the max absolute difference of the values ``image_processor`` normalizes
    them to, and the frame count. The JPEG standard leaves the inverse DCT's rounding to the decoder, so nvJPEG and
    libjpeg-turbo may differ by a few levels; on the CPU both sides are the same decoder (all 0)."""
    from datamodules.shards import open_shards
    from datamodules.transform import decode_jpeg_frames, jpeg_files

    dataset = open_shards(shards, {})
    total, levels, values, count, pixels = 0.0, 0, 0.0, 0, 0
    for i in range(len(dataset)):
        record = dataset[i]
        files = jpeg_files(record["frames"], record["frame_bytes"])
        cpu, other = decode_jpeg_frames(files), decode_jpeg_frames(files, device).cpu()
        diff = (other.int() - cpu.int()).abs()
        total, levels, count, pixels = total + float(diff.sum()), max(levels, int(diff.max())), count + len(files), \
            pixels + diff.numel()
        values = max(values, float((image_processor.to_values(other) - image_processor.to_values(cpu)).abs().max()))
    return total / pixels, levels, values, count


def print_table(results: list[Result], data: list[DataResult]) -> None:
    """One markdown table of every figure."""
    print("\n| measure | mode | batch | samples/s or clips/s | ms/step | TFLOP/s | MFU | peak memory |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        memory = f"{r.peak_memory_gb:.1f} GiB" if r.peak_memory_gb is not None else "-"
        print(f"| {r.case} | {r.mode} | {r.batch} | {r.samples_per_s:.1f} samples/s | {r.step_s * 1e3:.1f} | "
              f"{r.achieved_flops / 1e12:.4g} | {100 * r.mfu:.3g}% | {memory} |")
    for d in data:
        print(f"| {d.case} | - | - | {d.clips_per_s:.1f} clips/s | - | - | - | - |")
    for d in data:
        print(f"- {d.case}: {d.notes}")


def main(argv: list[str] | None = None) -> tuple[list[Result], list[DataResult]]:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny model and inputs (smoke check, e.g. on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="fine-tuning batch (default 32; tiny 4)")
    parser.add_argument("--pretrain-batch", type=int, default=None, help="pretraining batch (default 32; tiny 4)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--audio-frames", type=int, default=None, help="spectrogram frames (default 512; tiny 20)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20; tiny 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; tiny 1)")
    parser.add_argument("--peak-flops", type=float, default=H100_BF16_DENSE,
                        help="device peak FLOP/s for MFU (default 989e12: H100/H200 dense bf16)")
    parser.add_argument("--cases", nargs="+", default=["fine-tuning", "pretraining"],
                        choices=["fine-tuning", "pretraining"])
    parser.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    parser.add_argument("--modes", nargs="+", choices=["eager", "compiled"], default=None,
                        help="eager and/or torch.compile'd model (default: both on CUDA, eager on the CPU)")
    parser.add_argument("--no-data", action="store_true", help="skip the shard loading measures")
    parser.add_argument("--data-clips", type=int, default=None, help="clips in the shards (default 64; tiny 4)")
    parser.add_argument("--data-workers", type=int, nargs="+", default=None,
                        help="loader worker counts (default 4 8 16, capped at the CPU count; tiny 1)")
    parser.add_argument("--data-repeats", type=int, default=None, help="timed epochs (default 3; tiny 1)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available here; use --device cpu (with --tiny for a quick smoke check)")
    tiny = args.tiny
    overrides = dict(TINY) if tiny else {}
    config = TvltConfig(**overrides, num_frames=max(8, args.frames), num_labels=1, loss_type="regression",
                        attn_implementation=args.attn)
    audio_frames = args.audio_frames or (20 if tiny else 512)
    steps = args.steps or (2 if tiny else 20)
    warmup = args.warmup if args.warmup is not None else (1 if tiny else 5)
    batches = {"fine-tuning": args.batch or (4 if tiny else 32),
               "pretraining": args.pretrain_batch or (4 if tiny else 32)}
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({torch.get_num_threads()} threads)"
    modes = args.modes or (["eager", "compiled"] if device.type == "cuda" else ["eager"])
    tokens = flop_model.token_counts(config, args.frames, audio_frames)
    print(f"device: {name}; torch {torch.__version__}; bf16-mixed (autocast bf16, fp32 weights, AdamW); "
          f"attention {args.attn}; modes {', '.join(modes)}")
    print(f"model: {'tiny' if tiny else 'TVLT-base'} (d {config.hidden_size}, {config.num_hidden_layers} layers); "
          f"input {args.frames} frames {config.image_size}^2 + {audio_frames} audio frames "
          f"-> {tokens.sequence} encoder tokens; {warmup} warm-up + {steps} timed steps")
    print(f"peak for MFU: {args.peak_flops:.3g} FLOP/s"
          + (" (default: H100/H200 dense bf16; pass --peak-flops for other devices)"
             if args.peak_flops == H100_BF16_DENSE else " (--peak-flops)"))
    results = []
    for mode in modes:
        for case in args.cases:
            r = run_case(case, config, batches[case], args.frames, audio_frames, device, steps, warmup,
                         args.peak_flops, mode == "compiled")
            memory = f", peak memory {r.peak_memory_gb:.1f} GiB" if r.peak_memory_gb is not None else ""
            print(f"{case:12s} {mode:8s} batch {r.batch:3d}: {r.step_s * 1e3:8.1f} ms/step, "
                  f"{r.samples_per_s:8.1f} samples/s, {r.flops_per_step / 1e12:.4g} TFLOP/step, "
                  f"{r.achieved_flops / 1e12:.4g} TFLOP/s achieved, MFU {100 * r.mfu:.3g}%{memory}", flush=True)
            results.append(r)
    data = []
    if not args.no_data:
        cpus = os.cpu_count() or 1
        workers = args.data_workers or ([1] if tiny else sorted({min(n, cpus) for n in (4, 8, 16)}))
        data = data_rates(args.data_clips or (4 if tiny else 64), workers, batches["fine-tuning"], device,
                          args.data_repeats or (1 if tiny else 3))
    print_table(results, data)
    return results, data


if __name__ == "__main__":
    main()
