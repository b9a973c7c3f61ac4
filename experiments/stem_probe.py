"""The few-channel first convs of real CNNs, each way zeroskip can run them, beside cuDNN: ResNet-50's
and GoogLeNet's 7x7/s2 stem (3 -> 64) with ReLU and ResNet's 3x3/s2/p1 max pool after it, and
VGG's 3x3 (3 -> 64) with ReLU. Per algo the pool is fused in the kernel (conv2d_pool) or run by
F.max_pool2d after the kernel's conv + ReLU ("+pool"). Inputs are randn (a first layer's input is dense);
every side graph-replayed in one run; error against float64.

    PYTHONPATH=src python3 experiments/stem_probe.py [BATCHES] [DTYPES] [ALGOS] [BASE]
    (defaults 1,32  fp16  cudnn,im2col,igemm); BASE: another copy of the package (the folder of its
    __init__.py, e.g. `git archive REV src/zeroskip` unpacked), whose algos are timed as base:ALGO
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import zeroskip
from zeroskip.bench.timing import measure_same

DT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# name, (cin, cout, kernel, stride, padding), pool (size, stride, padding) or None
SHAPES = [("7x7/s2 + pool 3/2/1", (3, 64, 7, 2, 3), (3, 2, 1)),
          ("7x7/s2", (3, 64, 7, 2, 3), None),
          ("3x3/s1", (3, 64, 3, 1, 1), None)]


def load_base(folder):
    path = Path(folder)
    spec = importlib.util.spec_from_file_location("zeroskip_base", path / "__init__.py",
                                                  submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["zeroskip_base"] = module
    spec.loader.exec_module(module)
    return module


def rel(a, b):
    return ((a.double() - b).norm() / b.norm()).item()


def main(batches=(1, 32), dtypes=("fp16",), algos=("cudnn", "im2col", "igemm"), base=None):
    packages = {"": zeroskip, **({"base:": load_base(base)} if base else {})}
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    for dtype in dtypes:
        dt = DT[dtype]
        for batch in batches:
            for label, (cin, cout, k, s, p), pool in SHAPES:
                g = torch.Generator(device="cuda").manual_seed(0)
                x = torch.randn(batch, cin, 224, 224, device="cuda", generator=g)
                w = torch.randn(cout, cin, k, k, device="cuda", generator=g) / (cin * k * k) ** 0.5
                b = torch.randn(cout, device="cuda", generator=g) * 0.1
                ref = F.relu(F.conv2d(x.double(), w.double(), b.double(), s, p))
                if pool:
                    ref = F.max_pool2d(ref, *pool)
                x, w, b = x.to(dt), w.to(dt), b.to(dt)
                if dt != torch.float32:
                    x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)

                def torch_fn():
                    y = F.relu(F.conv2d(x, w, b, s, p))
                    return F.max_pool2d(y, *pool) if pool else y
                fns = {"torch": torch_fn}
                for (tag, zs), a in ((t, a) for t in packages.items() for a in algos):
                    if pool:
                        fns[tag + a] = lambda a=a, zs=zs: zs.conv2d_pool(x, w, b, s, p, activation="relu", pool="max",
                                                                         pool_size=pool[0], pool_stride=pool[1],
                                                                         pool_padding=pool[2], algo=a)
                        fns[tag + a + "+pool"] = lambda a=a, zs=zs: F.max_pool2d(
                            zs.conv2d(x, w, b, s, p, activation="relu", algo=a), *pool)
                    else:
                        fns[tag + a] = lambda a=a, zs=zs: zs.conv2d(x, w, b, s, p, activation="relu", algo=a)
                with torch.no_grad():
                    errs = {}
                    for name in list(fns):
                        try:
                            errs[name] = rel(fns[name](), ref)
                        except Exception as exc:  # an algo that cannot run the call
                            print(f"  {name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                            del fns[name]
                    times = [t.us for t in measure_same(*fns.values(), inner=10, reps=30)]
                base = times[0]
                print(f"{dtype} b{batch} {label:20s} " + "  ".join(
                    f"{n} {t:7.1f} us ({base / t:.2f}x, err {errs[n]:.1e})" for n, t in zip(fns, times)), flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(tuple(int(v) for v in (a[0] if a else "1,32").split(",")), tuple((a[1] if len(a) > 1 else "fp16").split(",")),
         tuple((a[2] if len(a) > 2 else "cudnn,im2col,igemm").split(",")), a[3] if len(a) > 3 else None)
