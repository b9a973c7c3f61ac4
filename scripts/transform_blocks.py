"""Same-run timing of F(4x4) layers under several transform block shapes (winograd4.BLOCKS and
FEW_TILES_BLOCKS: BLOCK_T tiles x BLOCK_C channels on num_warps), the GEMMs unchanged, so the differences are the
input and output transforms'.

PYTHONPATH=src python scripts/transform_blocks.py DATA --layers features.5,features.21 --batch 32
    [--blocks 16x32x8,32x32x8] [--dtype fp32] [--fused]
"""
import argparse

from zeroskip.bench.run import operands, ours, precision
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.suites import load_suite
from zeroskip.bench.timing import measure_same
from zeroskip.kernels import winograd4

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("--suite", default="vgg19")
ap.add_argument("--layers", required=True)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--dtype", default="fp32")
ap.add_argument("--fused", action="store_true")
ap.add_argument("--blocks", default="16x32x8,32x32x8,16x64x8,8x64x8,32x16x4,16x32x4,64x16x8,16x16x4")
args = ap.parse_args()
candidates = [tuple(int(v) for v in b.split("x")) for b in args.blocks.split(",")]
op = "conv2d_pool" if args.fused else "conv2d"
with precision(args.dtype):
    for layer in load_suite(args.suite):
        if layer.name not in args.layers.split(",") or (args.fused and not layer.pool_after):
            continue
        x, w, b = operands(layer, realistic_input(layer, args.batch, args.data, device="cuda"), args.dtype)
        fn = ours(op, layer, "relu" if args.fused else None, "winograd4")

        def run(blocks):
            winograd4.BLOCKS = winograd4.FEW_TILES_BLOCKS = blocks
            return fn(x, w, b)
        times = [m.us for m in measure_same(*[lambda c=c: run(c) for c in candidates])]
        best = min(times)
        print(f"{args.dtype} b{args.batch} {layer.name:12s} " + "  ".join(
            f"{'x'.join(map(str, c))} {t:7.1f}{'*' if t == best else ' '}" for c, t in zip(candidates, times)), flush=True)
