"""fp32 with TF32 off, VGG-19's convs at realistic sparsity, one run per batch: cuDNN (NCHW, its
faster fp32 layout), ours on NCHW input, and ours after copying the input to channels_last (the
copy is timed). Every side is graph-replayed in the same run (bench.timing.measure_same).

PYTHONPATH=src python experiments/fp32_layouts.py DATA 1,32
"""
import math
import sys

import torch
import torch.nn.functional as F

import zeroskip
from zeroskip.bench.suites import load_suite
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.timing import measure_same
data = sys.argv[1]; batches = [int(b) for b in sys.argv[2].split(",")]
torch.backends.cudnn.benchmark = True; torch.backends.cudnn.allow_tf32 = False
for batch in batches:
    r1, r2 = [], []
    for layer in load_suite("vgg19"):
        x = realistic_input(layer, batch, data, device="cuda")
        w = torch.randn(layer.out_channels, layer.in_channels, 3, 3, device="cuda") * (2 / layer.in_channels / 9) ** 0.5
        b = torch.randn(layer.out_channels, device="cuda") * 0.01
        f_cud = lambda: F.conv2d(x, w, b, 1, 1)
        f_n = lambda: zeroskip.conv2d(x, w, b, padding=1, algo="igemm")
        f_c = lambda: zeroskip.conv2d(x.contiguous(memory_format=torch.channels_last), w, b, padding=1, algo="igemm")
        ref = F.conv2d(x.double(), w.double(), b.double(), 1, 1)
        e = max(float((f(). double() - ref).norm() / ref.norm()) for f in (f_n, f_c))
        t = [m.us for m in measure_same(f_cud, f_n, f_c)]
        r1.append(t[0] / t[1]); r2.append(t[0] / t[2])
        print(f"b{batch} {layer.name:12s} cudnn {t[0]:8.1f} ours_nchw {t[1]:8.1f} ours_via_cl {t[2]:8.1f}  {t[0]/t[1]:.2f}x {t[0]/t[2]:.2f}x err {e:.1e}", flush=True)
    g = lambda r: math.exp(sum(map(math.log, r)) / len(r))
    print(f"b{batch} geomean nchw {g(r1):.2f}x via_cl {g(r2):.2f}x; without features.0 {g(r1[1:]):.2f}x {g(r2[1:]):.2f}x", flush=True)
