#!/usr/bin/env bash
# Issue 5 on a CUDA GPU: five models at bf16, channels-last, batch 256, eager and compiled (ResNet-50 also with
# CUDA graphs and max-autotune, over batch sizes, and training), appended to results/bench-<gpu>.csv; then
# the plots and the timm-loop comparison. Each step appends whole rows, so a stopped run keeps what it did.
#   bash benchmarks/gpu_sweep.sh            (about 10-20 minutes on one H100, most of it compiling)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
BENCH=".venv/bin/cnncost bench --device cuda --dtype bf16 --channels-last"
gpu=$($PY -c "import re, torch; print(re.sub(r'[^a-z0-9]+', '-', torch.cuda.get_device_name().lower()).strip('-'))")
out=results/bench-$gpu.csv
models="resnet50 resnext50_32x4d densenet121 efficientnet_b0 vgg16"

$BENCH $models --batch 256 --out "$out"
$BENCH $models --batch 256 --compile --out "$out"
$BENCH resnet50 --batch 256 --cuda-graphs --out "$out"
$BENCH resnet50 --batch 256 --compile --compile-mode max-autotune --out "$out"
$BENCH resnet50 efficientnet_b0 --batch 1,8,32,128,256,512 --out "$out"
$BENCH resnet50 efficientnet_b0 --batch 256 --mode train --out "$out"
$BENCH resnet50 efficientnet_b0 --batch 256 --mode train --compile --out "$out"
.venv/bin/cnncost plot "$out"
$PY benchmarks/bench_vs_timm_loop.py --device cuda | tee "results/bench-$gpu-vs-timm.txt"
.venv/bin/cnncost train-cost resnet50 --epochs 90 --csv "$out" | tee "results/train-cost-resnet50-$gpu.txt"
