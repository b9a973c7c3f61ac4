"""A target for Nsight Compute: one call of ours on each chosen VGG-19 conv + relu + pool stage, after
three warm-up calls (autotuning included), between cudaProfilerStart and cudaProfilerStop.

ncu --clock-control none --profile-from-start off --kernel-name regex:_conv_kernel \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy \
    python3 scripts/ncu_target.py DATA features.2 32 fp16 igemm      # DATA LAYERS BATCH DTYPE ALGO
"""
import sys

import torch

from zeroskip.bench.run import operands, ours, precision
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.suites import load_suite
data, layers, batch, dtype, algo = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4], sys.argv[5]
with precision(dtype):
    for layer in load_suite("vgg19"):
        if layer.name not in layers or not layer.pool_after:
            continue
        x, w, b = operands(layer, realistic_input(layer, batch, data, device="cuda"), dtype)
        fn = ours("conv2d_pool", layer, "relu", algo)
        for _ in range(3):
            fn(x, w, b)
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStart()
        fn(x, w, b)
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStop()
        print("done", layer.name, flush=True)
