"""VGG's classifier layers (25088 -> 4096 -> 4096 -> 1000, ReLU after the first two) at small batch:
F.linear + ReLU (cuBLAS and a separate ReLU kernel) against kernels/linear.py in each tile config and
as `linear` picks, each layer alone and the three in a row; every side graph-replayed in one run
(bench.timing.measure_same), with the weights cycling through copies (runtime.weight_copies) as in a
model, where they come from memory; error against float64. Weights read at the GPU's peak bandwidth
would take bytes / peak: printed beside the times.

    PYTHONPATH=src python3 experiments/linear_probe.py [BATCHES] [DTYPES]   (defaults 1,8,32  fp16,bf16)
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from zeroskip.bench.timing import measure_same
from zeroskip.kernels import linear
from zeroskip.runtime import l2_bytes, weight_copies

DT = {"fp16": torch.float16, "bf16": torch.bfloat16}
LAYERS = [(25088, 4096, "relu"), (4096, 4096, "relu"), (4096, 1000, None)]


def rel(a, b):
    return ((a.double() - b).norm() / b.norm()).item()


def main(batches=(1, 8, 32), dtypes=("fp16", "bf16")):
    props = torch.cuda.get_device_properties(0)
    print(f"{props.name}, torch {torch.__version__}")
    for dtype in dtypes:
        dt = DT[dtype]
        for batch in batches:
            g = torch.Generator(device="cuda").manual_seed(0)
            params = [((torch.randn(n, k, device="cuda", generator=g) / k ** 0.5).to(dt),
                       (torch.randn(n, device="cuda", generator=g) * 0.1).to(dt), act) for k, n, act in LAYERS]
            x0 = torch.randn(batch, LAYERS[0][0], device="cuda", generator=g).to(dt)
            for i, (w, b, act) in enumerate(params):
                x = x0 if i == 0 else torch.relu(torch.randn(batch, w.shape[1], device="cuda", generator=g)).to(dt)
                ref = F.linear(x.double(), w.double(), b.double())
                ref = ref.clamp(min=0) if act else ref
                copies = weight_copies(w, l2_bytes(w.device))
                fns = {"torch": _cycling(lambda w_, x=x, b=b, a=act: linear.torch_linear(x, w_, b, a), copies)}
                for cfg in linear.CONFIGS:
                    fns[str(cfg)] = _cycling(lambda w_, x=x, b=b, a=act, c=cfg: linear.run(x, w_, b, a, c), copies)
                fns["picked"] = _cycling(lambda w_, x=x, b=b, a=act: linear.linear(x, w_, b, a), copies)
                with torch.no_grad():
                    errs = {name: rel(fn(), ref) for name, fn in fns.items()}
                    times = measure_same(*fns.values(), inner=len(copies))
                ideal = w.numel() * w.element_size() / 4.8e12 * 1e6 if "H200" in props.name else \
                    w.numel() * w.element_size() / 3.35e12 * 1e6
                print(f"\n{dtype} batch {batch} fc{i + 1} {w.shape[1]}->{w.shape[0]} {act or ''}: "
                      f"weight read at peak {ideal:.1f} us")
                for (name, t), err in zip(zip(fns, times), errs.values()):
                    print(f"  {name:>18} {t.us:8.1f} us  err {err:.1e}  {t.method}")


def _cycling(fn, copies):
    state = {"i": 0}

    def call():
        w = copies[state["i"] % len(copies)]
        state["i"] += 1
        return fn(w)
    return call


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*(tuple(int(v) for v in args[0].split(",")),) if args else (),
         *((tuple(args[1].split(",")),) if len(args) > 1 else ()))
