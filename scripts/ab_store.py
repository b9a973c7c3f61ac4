"""Same-run A/B of the epilogue's NCHW store hint (implicit_gemm.out_vec): the dense kernel with
OUT_VEC as computed against OUT_VEC = 1 (no hint), on a suite's convs and fused stages at
realistic sparsity, beside cuDNN; fp32 (TF32 off), NCHW. The unhinted side is tuned first and
the hinted side reuses its tiles (the autotune key does not hold OUT_VEC).

PYTHONPATH=src python scripts/ab_store.py DATA 1,32 [--suite vgg19] [--layers features.10,...] [--algo igemm]
"""
import argparse

from zeroskip.bench.run import baseline, operands, ours, precision, rel_error
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.suites import load_suite
from zeroskip.bench.timing import measure_same
from zeroskip.kernels import implicit_gemm

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("batches")
ap.add_argument("--suite", default="vgg19")
ap.add_argument("--layers")
ap.add_argument("--algo", default="igemm")
args = ap.parse_args()
computed = implicit_gemm.out_vec
layers = [l for l in load_suite(args.suite) if not args.layers or l.name in args.layers.split(",")]
with precision("fp32"):
    for batch in [int(b) for b in args.batches.split(",")]:
        for layer in layers:
            for op in ("conv2d", "conv2d_pool") if layer.pool_after else ("conv2d",):
                act = "relu" if op == "conv2d_pool" else None
                x, w, b = operands(layer, realistic_input(layer, batch, args.data, device="cuda"), "fp32", "nchw")
                base, mine = baseline(op, layer, act), ours(op, layer, act, args.algo)

                def run(vec_fn):
                    implicit_gemm.out_vec = vec_fn
                    try:
                        return mine(x, w, b)
                    finally:
                        implicit_gemm.out_vec = computed

                plain = lambda: run(lambda y: 1)  # noqa: E731
                hinted = lambda: run(computed)  # noqa: E731
                ref = base(x.double(), w.double(), b.double())
                err = max(rel_error(plain(), ref), rel_error(hinted(), ref))
                t = [m.us for m in measure_same(lambda: base(x, w, b), plain, hinted)]
                print(f"b{batch} {layer.name:12s} {op:11s} vec {computed(hinted()):d}  cudnn {t[0]:8.1f}  "
                      f"no hint {t[1]:8.1f} ({t[0] / t[1]:.2f}x)  hint {t[2]:8.1f} ({t[0] / t[2]:.2f}x)  "
                      f"hint/no hint {t[1] / t[2]:.3f}  err {err:.1e}", flush=True)
