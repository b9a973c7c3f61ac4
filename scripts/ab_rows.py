"""Same-run A/B of kernels/rows.py (input rows shared across output rows) against the direct
kernel (algo="igemm"), `auto` and cuDNN on VGG-19 layers at realistic sparsity, 16-bit,
channels_last; every side graph-replayed in the same run and checked against float64 first.

PYTHONPATH=src python scripts/ab_rows.py DATA 32,1 [--dtype bf16] [--layers features.2,features.7]
    [--plain] [--configs]

--plain: the conv alone (no relu, no pool); default: conv + relu + 2x2 max pool.
--configs: also every rows tile config alone (R, SEG, BLOCK_N, BLOCK_K, warps, stages).
"""
import argparse
import math

import torch

from zeroskip.bench.run import baseline, operands, ours, precision, rel_error
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.suites import load_suite
from zeroskip.bench.timing import measure_same
from zeroskip.geometry import check_conv, with_pool
from zeroskip.kernels import rows
from zeroskip.kernels.launch import packed_weight

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("batches")
ap.add_argument("--dtype", default="bf16", choices=("fp16", "bf16"))
ap.add_argument("--layers", default="features.2,features.7")
ap.add_argument("--plain", action="store_true")
ap.add_argument("--configs", action="store_true")
args = ap.parse_args()
op = "conv2d" if args.plain else "conv2d_pool"
act = None if args.plain else "relu"
geo = lambda r: math.exp(sum(map(math.log, r)) / len(r))  # noqa: E731


def rows_fn(layer, config=None):
    def fn(x, w, b):
        spec = check_conv(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)
        if not args.plain:
            spec = with_pool(spec, "max", 2, 2, 0)
        y = torch.empty((spec.batch, spec.out_channels, spec.result_h, spec.result_w), dtype=x.dtype, device=x.device,
                        memory_format=torch.channels_last)
        return rows.conv(x, packed_weight(w), b, y, spec, 0 if args.plain else 1, config=config)
    return fn


layers = [l for l in load_suite("vgg19") if l.name in args.layers.split(",")]
with precision(args.dtype):
    for batch in [int(b) for b in args.batches.split(",")]:
        ratios = {}
        for layer in layers:
            x, w, b = operands(layer, realistic_input(layer, batch, args.data, device="cuda"), args.dtype)
            fns = {"igemm": ours(op, layer, act, "igemm"), "auto": ours(op, layer, act, "auto"), "rows": rows_fn(layer)}
            if args.configs:
                fns.update({"x".join(map(str, c)): rows_fn(layer, c) for c in rows.TILES
                            if c[2] <= max(64, layer.out_channels)})
            ref_fn = baseline(op, layer, act)
            ref = ref_fn(x.double(), w.double(), b.double())
            names, errs, callables = [], [], []
            for name, f in fns.items():
                try:
                    errs.append(rel_error(f(x, w, b), ref))
                except Exception as e:  # a config that does not fit (shared memory)
                    print(f"  {name}: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
                    continue
                names.append(name)
                callables.append(lambda f=f: f(x, w, b))
            t = [m.us for m in measure_same(lambda: ref_fn(x, w, b), *callables)]
            line = f"{args.dtype} b{batch} {layer.name:12s} {op:11s} cudnn {t[0]:7.1f}"
            for name, ta, e in zip(names, t[1:], errs):
                ratios.setdefault(name, []).append(t[0] / ta)
                line += f"  {name} {ta:7.1f} ({t[0] / ta:.2f}x, err {e:.1e})"
            print(line, flush=True)
        print(f"{args.dtype} b{batch} geomean over cuDNN: " + ", ".join(f"{a} {geo(r):.2f}x" for a, r in ratios.items()
                                                                        if len(r) == len(layers)), flush=True)
for key, cfg in rows._tuned.cache.items():
    print("rows tuned", key[:5], cfg)
