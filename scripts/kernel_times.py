"""Per-kernel GPU time of one zeroskip call on a suite layer (torch.profiler, after warm-up): where
a multi-kernel algo (winograd, winograd4, split-K) spends its time.

PYTHONPATH=src python scripts/kernel_times.py DATA --layers features.21 --batch 32 --algo winograd4 [--fused]
"""
import argparse
from collections import defaultdict

import torch

from zeroskip.bench.run import operands, ours, precision
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.suites import load_suite

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("--suite", default="vgg19")
ap.add_argument("--layers", required=True)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--algo", default="winograd4")
ap.add_argument("--dtype", default="fp32")
ap.add_argument("--fused", action="store_true")
ap.add_argument("--reps", type=int, default=20)
args = ap.parse_args()
op = "conv2d_pool" if args.fused else "conv2d"
with precision(args.dtype):
    for layer in load_suite(args.suite):
        if layer.name not in args.layers.split(",") or (args.fused and not layer.pool_after):
            continue
        x, w, b = operands(layer, realistic_input(layer, args.batch, args.data, device="cuda"), args.dtype)
        fn = ours(op, layer, "relu" if args.fused else None, args.algo)
        for _ in range(3):
            fn(x, w, b)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(args.reps):
                fn(x, w, b)
            torch.cuda.synchronize()
        per = defaultdict(float)
        for e in prof.events():
            if e.device_type == torch.autograd.DeviceType.CUDA:
                per[e.name[:60]] += e.device_time / args.reps
        total = sum(per.values())
        print(f"{args.dtype} b{args.batch} {layer.name} {op} {args.algo}: {total:.1f} us in kernels")
        for name, us in sorted(per.items(), key=lambda kv: -kv[1]):
            print(f"    {us:8.1f} us  {name}")
