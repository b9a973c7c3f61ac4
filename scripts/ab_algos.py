"""Same-run A/B of zeroskip algos against cuDNN on VGG-19's convs (or its five conv + relu +
2x2 max-pool stages with --fused) at realistic sparsity; every side graph-replayed in the same
run (bench.timing.measure_same), fp32 with TF32 off unless --tf32.

PYTHONPATH=src python scripts/ab_algos.py DATA 1,32 [--algos igemm,winograd] [--fused] [--layout channels_last]
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

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("batches")
ap.add_argument("--algos", default="igemm,winograd")
ap.add_argument("--fused", action="store_true")
ap.add_argument("--tf32", action="store_true")
ap.add_argument("--layers", help="comma list of layer names (default all but features.0)")
ap.add_argument("--layout", default="nchw", choices=("nchw", "channels_last"))
args = ap.parse_args()
algos = args.algos.split(",")
torch.backends.cudnn.benchmark = True
torch.backends.cudnn.allow_tf32 = args.tf32
torch.backends.cuda.matmul.allow_tf32 = args.tf32

geo = lambda r: math.exp(sum(map(math.log, r)) / len(r))  # noqa: E731
layers = [l for l in load_suite("vgg19")[1:] if not args.layers or l.name in args.layers.split(",")]
for batch in [int(b) for b in args.batches.split(",")]:
    ratios = {a: [] for a in algos}
    for layer in layers:
        if args.fused and not layer.pool_after:
            continue
        x, w, b = operands(layer, realistic_input(layer, batch, args.data, device="cuda"), "fp32", args.layout)
        if args.fused:
            ref_fn = lambda x, w, b: F.max_pool2d(F.relu(F.conv2d(x, w, b, 1, 1)), 2)  # noqa: E731
            fn = lambda a: zeroskip.conv2d_pool(x, w, b, padding=1, algo=a)  # noqa: E731
        else:
            ref_fn = lambda x, w, b: F.conv2d(x, w, b, 1, 1)  # noqa: E731
            fn = lambda a: zeroskip.conv2d(x, w, b, padding=1, algo=a)  # noqa: E731
        ref = ref_fn(x.double(), w.double(), b.double())
        err = [float((fn(a).double() - ref).norm() / ref.norm()) for a in algos]
        t = [m.us for m in measure_same(lambda: ref_fn(x, w, b), *[lambda a=a: fn(a) for a in algos])]
        line = f"b{batch} {layer.name:12s} cudnn {t[0]:8.1f}"
        for a, ta, e in zip(algos, t[1:], err):
            ratios[a].append(t[0] / ta)
            line += f"  {a} {ta:8.1f} ({t[0] / ta:.2f}x, err {e:.1e})"
        print(line, flush=True)
    print(f"b{batch} {'fused' if args.fused else 'conv'} geomean over cuDNN: "
          + ", ".join(f"{a} {geo(r):.2f}x" for a, r in ratios.items()), flush=True)
