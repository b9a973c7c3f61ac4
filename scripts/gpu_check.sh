#!/usr/bin/env bash
# One GPU session's checks: the test suite on CUDA, compute-sanitizer on the kernels, the fused
# VGG-19 stages under algo=auto, and whole-model VGG-19 latency. Results under $OUT (or /tmp/zs).
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
out=${OUT:-/tmp/zs}; mkdir -p "$out/auto" "$out/model"
data=${1:-.data/paper-data}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch,triton;print('torch',torch.__version__,'triton',triton.__version__,'cudnn',torch.backends.cudnn.version())"
timeout 240 python3 -m pytest tests -q -n 8 --device cuda -p no:cacheprovider -p no:benchmark > "$out/pytest_cuda.log" 2>&1
tail -3 "$out/pytest_cuda.log"
timeout 90 compute-sanitizer --tool memcheck python3 scripts/sanitize_kernels.py 2>&1 | tail -3
timeout 90 python3 -m zeroskip bench --suite vgg19 --ops conv2d_pool --batch 1,32 --dtype fp16 --algo auto \
  --data "$data" --out "$out/auto" > "$out/auto.log" 2>&1
tail -4 "$out/auto.log"
timeout 150 python3 -m zeroskip bench --model vgg19 --batch 1 --dtype fp16,fp32 --out "$out/model" > "$out/model.log" 2>&1
tail -30 "$out/model.log"
