"""cuDNN's own normwise error against float64 on VGG-19's conv + relu + pool stages and their convs, TF32 on.

PYTHONPATH=src python3 experiments/cudnn_error.py DATA"""
import sys
from zeroskip.bench.run import baseline, operands, precision, rel_error
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.suites import load_suite
data = sys.argv[1]
for batch in (1, 32):
    for layout in ("nchw", "channels_last"):
        with precision("tf32"):
            for layer in load_suite("vgg19"):
                if not layer.pool_after:
                    continue
                x = realistic_input(layer, batch, data=data, device="cuda")
                x, w, b = operands(layer, x, "tf32", layout)
                base = baseline("conv2d_pool", layer, "relu")
                conv = baseline("conv2d", layer, None)
                e = rel_error(base(x, w, b), base(x.double(), w.double(), b.double()))
                ec = rel_error(conv(x, w, b), conv(x.double(), w.double(), b.double()))
                print(f"cudnn tf32 b{batch} {layout:13s} {layer.name:12s} fused err {e:.2e}  conv err {ec:.2e}", flush=True)
