"""Same-run A/B of the fp32-accurate (TF32 off) dot: "3xtf32" (weight split on the host, the
default) against Triton's built-in "tf32x3", with cuDNN beside them, on VGG-19's convs at
realistic sparsity. Every side is graph-replayed in the same run (bench.timing.measure_same).

PYTHONPATH=src python scripts/ab_precision.py DATA 1,32 [nchw|channels_last]
"""
import math
import sys

import torch
import torch.nn.functional as F

import zeroskip
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.suites import load_suite
from zeroskip.bench.timing import measure_same
from zeroskip.kernels import launch

data, batches = sys.argv[1], [int(b) for b in sys.argv[2].split(",")]
fmt = torch.channels_last if sys.argv[3:] == ["channels_last"] else torch.contiguous_format
torch.backends.cudnn.benchmark = True
torch.backends.cudnn.allow_tf32 = False
own = launch.precision


def builtin(algo, dtype):
    p = own(algo, dtype)
    return "tf32x3" if p == "3xtf32" else p


def ours(x, w, b, prec):
    launch.precision = prec
    try:
        return zeroskip.conv2d(x, w, b, padding=1, algo="igemm")
    finally:
        launch.precision = own


geo = lambda r: math.exp(sum(map(math.log, r)) / len(r))  # noqa: E731
for batch in batches:
    r_new, r_old = [], []
    for layer in load_suite("vgg19")[1:]:  # features.0 (3 channels) stays on cuDNN under auto
        x = realistic_input(layer, batch, data, device="cuda").contiguous(memory_format=fmt)
        w = (torch.randn(layer.out_channels, layer.in_channels, 3, 3, device="cuda")
             * (2 / layer.in_channels / 9) ** 0.5).contiguous(memory_format=fmt)
        b = torch.randn(layer.out_channels, device="cuda") * 0.01
        ref = F.conv2d(x.double(), w.double(), b.double(), 1, 1)
        err = [float((ours(x, w, b, p).double() - ref).norm() / ref.norm()) for p in (own, builtin)]
        t = [m.us for m in measure_same(lambda: F.conv2d(x, w, b, 1, 1), lambda: ours(x, w, b, own),
                                        lambda: ours(x, w, b, builtin))]
        r_new.append(t[0] / t[1])
        r_old.append(t[0] / t[2])
        print(f"b{batch} {layer.name:12s} cudnn {t[0]:8.1f}  3xtf32 {t[1]:8.1f} ({t[0] / t[1]:.2f}x, err {err[0]:.1e})"
              f"  tf32x3 {t[2]:8.1f} ({t[0] / t[2]:.2f}x, err {err[1]:.1e})", flush=True)
    print(f"b{batch} geomean over cuDNN: 3xtf32 {geo(r_new):.2f}x, tf32x3 {geo(r_old):.2f}x", flush=True)
