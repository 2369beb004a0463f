#!/usr/bin/env bash
# TVLT on one GPU, measured: samples/s, model FLOP utilization (MFU) and peak memory in bf16-mixed for
# fine-tuning (batch 32) and pretraining (MAE + VAM, batch 32), TVLT-base, 8 frames + 512 audio frames, eager and
# compiled; clips/s from LitData shards (JPEG decoded in N loader workers on the CPU, or per batch on the GPU with nvJPEG). One table.
#
#   bash bench/gpu.sh                          # MFU against 989e12 FLOP/s (H100/H200 dense bf16)
#   bash bench/gpu.sh --peak-flops 312e12      # another device's dense bf16 peak (A100: 312e12)
#   bash bench/gpu.sh --modes eager --no-data   # the model steps alone, eager
#   bash bench/gpu.sh --device cpu --tiny      # smoke check without a GPU
#
# Every argument goes to `python -m bench.gpu` (see its --help). Uses .venv/bin/python when present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec "$PY" -m bench.gpu "$@"
