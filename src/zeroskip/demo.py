"""`zeroskip demo`, the default command: a correctness check on the CPU, the VGG-19 table on a GPU."""
from __future__ import annotations

import math
import os

from .commands import _data, _progress


def cpu_demo() -> int:
    """LeNet-5's two conv+ReLU+maxpool stages through the ECR kernel on Triton's CPU interpreter."""
    import torch
    import torch.nn.functional as F

    import zeroskip
    from .bench.run import rel_error
    from .bench.suites import load_suite
    seed = int.from_bytes(os.urandom(4), "little")  # fresh data every run; printed to reproduce one
    gen = torch.Generator().manual_seed(seed)
    x = F.relu(torch.randn(2, 1, 32, 32, generator=gen))  # ReLU-like zeroing: about half zeros
    print(f"zeroskip demo on CPU (Triton interpreter): LeNet-5, batch 2, input zero fraction "
          f"{float((x == 0).float().mean()):.2f}, seed {seed}")
    ours, ref, worst = x, x.double(), 0.0
    for layer in load_suite("lenet5"):
        fan_in = layer.in_channels * layer.kernel[0] * layer.kernel[1]
        w = torch.randn(layer.out_channels, layer.in_channels, *layer.kernel, generator=gen) * math.sqrt(2 / fan_in)
        b = torch.randn(layer.out_channels, generator=gen) * 0.01
        p = layer.pool_after
        try:
            ours = zeroskip.conv2d_pool(ours, w, b, **layer.conv_args(), activation="relu", **layer.pool_args(),
                                        algo="ecr")
        except Exception as exc:
            print(f"  {layer.name}: zeroskip.conv2d_pool(algo='ecr') raised {type(exc).__name__}: {exc}")
            print("FAIL")
            return 1
        ref = F.max_pool2d(F.relu(F.conv2d(ref, w.double(), b.double(), **layer.conv_args())),
                           p["size"], p["stride"], p["padding"])
        err = rel_error(ours, ref)
        worst = max(worst, err)
        print(f"  {layer.name}: conv {layer.in_channels}->{layer.out_channels} {layer.kernel[0]}x{layer.kernel[1]} "
              f"+ relu + maxpool {p['size']}x{p['size']}: output {tuple(ours.shape)}, "
              f"relative error vs float64 {err:.2e}")
    ok = worst <= 1e-5
    print("PASS" if ok else f"FAIL: relative error {worst:.2e} > 1e-05")
    print("Timings need a CUDA GPU: on one, `zeroskip` times the VGG-19 suite against cuDNN.")
    return 0 if ok else 1


def gpu_demo(parser, args) -> int:
    from .bench.run import print_table, run_suite
    data = _data(parser, args.data)
    rows = []
    for dtype in ("fp32", "fp16"):
        rows += run_suite("vgg19", batch=1, dtype=dtype, data=data, progress=_progress(args))
    print_table(rows)
    return 0
