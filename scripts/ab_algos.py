"""Same-run A/B of zeroskip algos against cuDNN on a suite's convs (or its conv + relu + pool
stages with --fused) at realistic sparsity; every side graph-replayed in the same run
(bench.timing.measure_same), at the precision --dtype names (fp32 = TF32 off on both sides).

PYTHONPATH=src python scripts/ab_algos.py DATA 1,32 [--suite vgg19] [--dtype fp32] [--algos igemm,winograd]
    [--fused] [--layers features.0,features.2] [--layout nchw|channels_last] [--base DIR] [--tiles]

--base DIR: another copy of the package (DIR holds its __init__.py, e.g. `git archive REV src/zeroskip`
unpacked): each algo is timed from it too, as base:ALGO, in the same run.
"""
import argparse
import importlib.util
import math
import sys
from pathlib import Path

from zeroskip.bench.run import DTYPES, baseline, operands, ours, precision, rel_error
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.suites import load_suite
from zeroskip.bench.timing import measure_same

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("batches")
ap.add_argument("--suite", default="vgg19")
ap.add_argument("--dtype", default="fp32", choices=tuple(DTYPES))
ap.add_argument("--algos", default="igemm,winograd")
ap.add_argument("--fused", action="store_true")
ap.add_argument("--layers", help="comma list of layer names (default: all but the first of vgg19, all of others)")
ap.add_argument("--layout", default="auto", choices=("auto", "nchw", "channels_last"))
ap.add_argument("--base")
ap.add_argument("--tiles", action="store_true", help="print the tiles the fp32 autotuner chose, per key")
args = ap.parse_args()
algos = args.algos.split(",")


def load_base(path):
    """The other copy as package zeroskip_base (its modules import each other relatively)."""
    spec = importlib.util.spec_from_file_location("zeroskip_base", Path(path) / "__init__.py",
                                                  submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["zeroskip_base"] = module
    spec.loader.exec_module(module)
    return module


base = load_base(args.base) if args.base else None

geo = lambda r: math.exp(sum(map(math.log, r)) / len(r))  # noqa: E731
layers = load_suite(args.suite)
if args.layers:
    layers = [l for l in layers if l.name in args.layers.split(",")]
elif args.suite == "vgg19":
    layers = layers[1:]
op = "conv2d_pool" if args.fused else "conv2d"
with precision(args.dtype):
    for batch in [int(b) for b in args.batches.split(",")]:
        ratios = {a: [] for a in algos + ([f"base:{a}" for a in algos] if base is not None else [])}
        for layer in layers:
            if args.fused and not layer.pool_after:
                continue
            x, w, b = operands(layer, realistic_input(layer, batch, args.data, device="cuda"), args.dtype, args.layout)
            ref_fn = baseline(op, layer, "relu" if args.fused else None)
            fns = {a: ours(op, layer, "relu" if args.fused else None, a) for a in algos}
            if base is not None:
                fns.update({f"base:{a}": ours(op, layer, "relu" if args.fused else None, a, base) for a in algos})
            ref = ref_fn(x.double(), w.double(), b.double())
            err = [rel_error(fns[a](x, w, b), ref) for a in ratios]
            t = [m.us for m in measure_same(lambda: ref_fn(x, w, b), *[lambda a=a: fns[a](x, w, b) for a in ratios])]
            line = f"{args.dtype} b{batch} {layer.name:22s} cudnn {t[0]:8.1f}"
            for a, ta, e in zip(ratios, t[1:], err):
                ratios[a].append(t[0] / ta)
                line += f"  {a} {ta:8.1f} ({t[0] / ta:.2f}x, err {e:.1e})"
            print(line, flush=True)
        if any(ratios.values()):
            print(f"{args.dtype} b{batch} {args.suite} {op} geomean over cuDNN: "
                  + ", ".join(f"{a} {geo(r):.2f}x" for a, r in ratios.items()), flush=True)
if args.tiles:
    from zeroskip.kernels import implicit_gemm
    for key, config in implicit_gemm._conv_tuned_32.cache.items():
        print("tiles", key, config, flush=True)
