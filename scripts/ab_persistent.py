"""Same-run A/B of the dense direct conv ('igemm', one program per tile, or split-K where measured
faster) against its persistent form (kernels/persistent.py) and cuDNN, on a suite's conv + relu +
pool stages (or convs) at realistic sparsity, every side graph-replayed in the same run.

PYTHONPATH=src python scripts/ab_persistent.py DATA 32,1 [--dtype bf16] [--layers features.2,features.7]
    [--layout channels_last] [--plain]
"""
import argparse
import math

import torch

from zeroskip.bench.run import baseline, operands, ours, precision, rel_error
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.suites import load_suite
from zeroskip.bench.timing import measure_same
from zeroskip.geometry import check_conv, with_pool
from zeroskip.kernels import launch, persistent

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("batches")
ap.add_argument("--suite", default="vgg19")
ap.add_argument("--dtype", default="bf16")
ap.add_argument("--layers", default="features.2,features.7")
ap.add_argument("--layout", default="channels_last")
ap.add_argument("--plain", action="store_true", help="the convs alone, no relu + pool")
args = ap.parse_args()
op = "conv2d" if args.plain else "conv2d_pool"
act = None if args.plain else "relu"


def persistent_fn(layer):
    def run(x, w, b):
        spec = check_conv(x, w, b, *[layer.conv_args()[k] for k in ("stride", "padding", "dilation", "groups")])
        if not args.plain:
            p = layer.pool_after
            spec = with_pool(spec, "max", p["size"], p["stride"], p["padding"])
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        y = torch.empty((spec.batch, spec.out_channels, spec.result_h, spec.result_w), dtype=x.dtype,
                        device=x.device, memory_format=fmt)
        prec = launch.precision("igemm", x.dtype)
        wp = launch.packed_weight(w, k_major=prec != "ieee" and spec.in_per_group >= 16)
        launch._Launch(launch.tf32_input(x, prec, spec), wp, wp, b, y, spec, act, "igemm", prec, True).persistent()
        return y
    return run


geo = lambda r: math.exp(sum(map(math.log, r)) / len(r))  # noqa: E731
layers = [l for l in load_suite(args.suite) if l.name in args.layers.split(",")]
with precision(args.dtype):
    for batch in [int(b) for b in args.batches.split(",")]:
        ratios = {"igemm": [], "persistent": []}
        for layer in layers:
            x, w, b = operands(layer, realistic_input(layer, batch, args.data, device="cuda"), args.dtype, args.layout)
            ref_fn = baseline(op, layer, act)
            fns = {"igemm": ours(op, layer, act, "igemm"), "persistent": persistent_fn(layer)}
            ref = ref_fn(x.double(), w.double(), b.double())
            err = [rel_error(f(x, w, b), ref) for f in fns.values()]
            t = [m.us for m in measure_same(lambda: ref_fn(x, w, b), *[lambda f=f: f(x, w, b) for f in fns.values()])]
            line = f"{args.dtype} b{batch} {layer.name:14s} cudnn {t[0]:8.1f}"
            for a, ta, e in zip(fns, t[1:], err):
                ratios[a].append(t[0] / ta)
                line += f"  {a} {ta:8.1f} ({t[0] / ta:.2f}x, err {e:.1e})"
            kernel = persistent._tuned_16 if x.dtype != torch.float32 else persistent._tuned_tf32
            print(line + f"  [{kernel.best_config}]", flush=True)
        print(f"{args.dtype} b{batch} {op} geomean over cuDNN: " + ", ".join(f"{a} {geo(r):.2f}x" for a, r in ratios.items()),
              flush=True)
