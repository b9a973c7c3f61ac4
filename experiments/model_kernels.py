"""Where a whole model's GPU time goes: kernel time per forward, grouped by kernel name, for the
original model (cuDNN) and the model after convert_, from torch.profiler over eager forwards, next
to the CUDA-graph replay time of each. The gap between replay time and summed kernel time is what
the graph spends between kernels.

    PYTHONPATH=src python3 experiments/model_kernels.py MODEL BATCH DTYPE [PLAN.json]
"""
from __future__ import annotations

import collections
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import zeroskip
from zeroskip.bench.models import build_model, model_input
from zeroskip.bench.timing import measure

STEPS = 20


def kernel_us(fn) -> dict:
    """Kernel name -> (calls per forward, microseconds per forward)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(STEPS):
            fn()
        torch.cuda.synchronize()
    out = collections.defaultdict(lambda: [0, 0.0])
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            key = e.name[:70]
            out[key][0] += 1
            out[key][1] += e.time_range.elapsed_us()
    return {k: (n / STEPS, us / STEPS) for k, (n, us) in out.items()}


def show(label, fn) -> None:
    graph_us = measure(fn, inner=10, reps=20).us
    rows = sorted(kernel_us(fn).items(), key=lambda kv: -kv[1][1])
    total = sum(r[1][1] for r in rows)
    launches = sum(r[1][0] for r in rows)
    print(f"\n== {label}: graph replay {graph_us:.1f} us; kernels {total:.1f} us in {launches:.0f} launches; "
          f"between kernels {graph_us - total:.1f} us")
    for name, (n, us) in rows:
        print(f"{us:9.1f} us {n:5.1f}x  {name}")


def main(name="vgg19", batch=1, dtype="fp16", plan=None):
    torch.manual_seed(0)
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    model = build_model(name)
    x, _ = model_input(name, batch)
    model, x = model.cuda().to(dt).eval(), x.cuda().to(dt)
    if dt != torch.float32:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        show(f"{name} batch {batch} {dtype}: eager", lambda: model(x))
        zeroskip.convert_(model, x, plan=plan)
        show(f"{name} batch {batch} {dtype}: converted", lambda: model(x))


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "vgg19", int(args[1]) if len(args) > 1 else 1, args[2] if len(args) > 2 else "fp16",
         args[3] if len(args) > 3 else None)
