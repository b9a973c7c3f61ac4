"""Cost of a V scale that misses its hint every call (winograd.HEADROOM): F(4x4) fused VGG-19 stages
at batch 32, the same input twice per timed call against two inputs 2**12 apart, so each call's
hint comes from the other and V is written twice.

PYTHONPATH=src python3 experiments/hint_miss.py DATA bf16 auto     # DTYPE: bf16 | tf32 | fp32; LAYOUT: auto | nchw | channels_last
"""
import sys

from zeroskip.bench.run import operands, ours, precision
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.suites import load_suite
from zeroskip.bench.timing import measure_same
data, dtype, layout = sys.argv[1], sys.argv[2], sys.argv[3]
with precision(dtype):
    for layer in load_suite("vgg19"):
        if layer.name not in ("features.16", "features.25", "features.34") or not layer.pool_after:
            continue
        x, w, b = operands(layer, realistic_input(layer, 32, data, device="cuda"), dtype, layout)
        x2 = x * 4096
        fn = ours("conv2d_pool", layer, "relu", "winograd4")
        t = measure_same(lambda: (fn(x, w, b), fn(x, w, b)), lambda: (fn(x, w, b), fn(x2, w, b)))
        print(f"{dtype} b32 {layer.name} per call: hint kept {t[0].us / 2:.1f} us, missed every call {t[1].us / 2:.1f} us", flush=True)
