"""Same-run A/B of fp32-accurate (TF32 off) dot methods on VGG-19's convs at realistic sparsity,
cuDNN beside them, every side graph-replayed in the same run (bench.timing.measure_same):
  3xtf32  three TF32 products, the weight split on the host, the input in the kernel
  tf32x3  Triton's built-in split of both operands in every iteration
(A third method, three fp16 products of power-of-2-scaled fp16 halves, ran 0.40-1.93x of cuDNN
against 3xtf32's 1.17-3.55x and was removed: benchmarks/vgg19-fp32-3xfp16-ab.txt.)
With --fused, the five conv + relu + 2x2 max-pool stages against cuDNN conv -> relu -> pool.

PYTHONPATH=src python scripts/ab_precision.py DATA 1,32 [--layout channels_last] [--methods 3xtf32,tf32x3] [--fused]
"""
import argparse
import math

import torch
import torch.nn.functional as F

import zeroskip
from zeroskip.bench.run import operands
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.suites import load_suite
from zeroskip.bench.timing import measure_same
from zeroskip.kernels import launch

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("batches")
ap.add_argument("--layout", default="nchw", choices=("nchw", "channels_last"))
ap.add_argument("--methods", default="3xtf32,tf32x3")
ap.add_argument("--fused", action="store_true")
args = ap.parse_args()
methods = args.methods.split(",")
torch.backends.cudnn.benchmark = True
torch.backends.cudnn.allow_tf32 = False
own = launch.precision


def ours(fn, method):
    launch.precision = lambda algo, dtype: own(algo, dtype) if own(algo, dtype) == "ieee" else method
    try:
        return fn()
    finally:
        launch.precision = own


geo = lambda r: math.exp(sum(map(math.log, r)) / len(r))  # noqa: E731
for batch in [int(b) for b in args.batches.split(",")]:
    ratios = {m: [] for m in methods}
    for layer in load_suite("vgg19")[1:]:  # features.0 (3 channels) stays on cuDNN under auto
        if args.fused and not layer.pool_after:
            continue
        x, w, b = operands(layer, realistic_input(layer, batch, args.data, device="cuda"), "fp32", args.layout)
        if args.fused:
            ref_fn = lambda x, w, b: F.max_pool2d(F.relu(F.conv2d(x, w, b, 1, 1)), 2)  # noqa: E731
            fn = lambda: zeroskip.conv2d_pool(x, w, b, padding=1, algo="igemm")  # noqa: E731
        else:
            ref_fn = lambda x, w, b: F.conv2d(x, w, b, 1, 1)  # noqa: E731
            fn = lambda: zeroskip.conv2d(x, w, b, padding=1, algo="igemm")  # noqa: E731
        ref = ref_fn(x.double(), w.double(), b.double())
        err = [float((ours(fn, m).double() - ref).norm() / ref.norm()) for m in methods]
        t = [m.us for m in measure_same(lambda: ref_fn(x, w, b), *[lambda m=m: ours(fn, m) for m in methods])]
        line = f"b{batch} {layer.name:12s} cudnn {t[0]:8.1f}"
        for m, tm, e in zip(methods, t[1:], err):
            ratios[m].append(t[0] / tm)
            line += f"  {m} {tm:8.1f} ({t[0] / tm:.2f}x, err {e:.1e})"
        print(line, flush=True)
    print(f"b{batch} {'fused' if args.fused else 'conv'} geomean over cuDNN: "
          + ", ".join(f"{m} {geo(r):.2f}x" for m, r in ratios.items()), flush=True)
