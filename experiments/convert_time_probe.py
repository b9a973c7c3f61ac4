"""Where convert_'s wall time goes on one model: per measured layer, the Triton kernels the measuring
process compiled itself (over 0.3 s: not loaded from the workers' cache) or loaded, and what each
compile worker reported (errors included).

    PYTHONPATH=src python3 experiments/convert_time_probe.py [MODEL] [BATCH] [DTYPE]
"""
from __future__ import annotations

import collections
import sys
import time

import triton.compiler as tcompiler
import triton.compiler.compiler as tcompiler_mod
import triton.runtime.jit as tjit

EVENTS = []  # (kernel name, seconds) per compile-or-load in this process
_compile = tcompiler_mod.compile


def _timed_compile(src, *args, **kwargs):
    start = time.perf_counter()
    try:
        return _compile(src, *args, **kwargs)
    finally:
        EVENTS.append((getattr(getattr(src, "fn", None), "__name__", "?"), time.perf_counter() - start))


# before zeroskip defines its kernels; Triton 3.6 looks compile up in triton.compiler, 3.8 in its jit module
tcompiler.compile = tcompiler_mod.compile = _timed_compile
if hasattr(tjit, "compile"):
    tjit.compile = _timed_compile

import torch  # noqa: E402

import zeroskip  # noqa: E402
from zeroskip import convert as zconvert  # noqa: E402
from zeroskip import measure as zmeasure  # noqa: E402
from zeroskip import warm as zwarm  # noqa: E402
from zeroskip.bench.models import build_model, model_input  # noqa: E402

SLOW_S = 0.3


def main(name="resnet50", batch=32, dtype="fp16"):
    torch.manual_seed(0)
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    model = build_model(name)
    x, _ = model_input(name, batch)
    model, x = model.cuda().to(dt).eval(), x.cuda().to(dt)
    if dt != torch.float32:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    start = time.perf_counter()
    with torch.no_grad():
        model(x)
    torch.cuda.synchronize()
    print(f"first eager run (CUDA/cuDNN start-up): {time.perf_counter() - start:.1f} s")

    warm_log = []
    _warm = zwarm.warm

    def warm(jobs, *args, **kwargs):
        jobs = list(jobs)
        began = time.perf_counter()
        out = _warm(jobs, *args, **kwargs)
        warm_log.append((jobs, out, time.perf_counter() - began))
        return out
    zwarm.warm = warm

    rows = []
    _measure = zmeasure.measure

    def measure(op, x, w, *args, **kwargs):
        n0, began = len(EVENTS), time.perf_counter()
        out = _measure(op, x, w, *args, **kwargs)
        ev = EVENTS[n0:]
        slow = [(k, s) for k, s in ev if s > SLOW_S]
        rows.append((op, tuple(x.shape), tuple(w.shape), out[0], time.perf_counter() - began, len(ev),
                     sum(s for _, s in ev), len(slow), collections.Counter(k for k, _ in slow)))
        return out
    zmeasure.measure = measure

    phases = {}
    for fn_name in ("_copy", "_run_eval", "_capture"):
        original = getattr(zconvert, fn_name)

        def timed(*a, _f=original, _n=fn_name, **k):
            began = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                phases[_n] = phases.get(_n, 0.0) + time.perf_counter() - began
        setattr(zconvert, fn_name, timed)

    n_before = len(EVENTS)
    start = time.perf_counter()
    zeroskip.convert_(model, x)
    total = time.perf_counter() - start
    report = model.zeroskip_report
    print(f"convert_ {total:.1f} s; phases {report.get('seconds')}; pieces "
          + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    print(f"kernels compiled or loaded in this process: {len(EVENTS) - n_before}, "
          f"{sum(s for _, s in EVENTS[n_before:]):.1f} s; over {SLOW_S} s: "
          f"{sum(1 for _, s in EVENTS[n_before:] if s > SLOW_S)}")
    for jobs, out, secs in warm_log:
        errors = [(j[0], j[1][0][1], r) for j, r in zip(jobs, out)
                  if len(r) < len(j[-1]) or any(e and "cannot run this call" not in e for _, e in r)]
        print(f"warm: {len(jobs)} jobs, {sum(len(j[-1]) for j in jobs)} tasks in {secs:.1f} s; jobs with a "
              f"missing result or an unexpected error: {len(errors)}")
        for op, shape, r in errors:
            print(f"  {op} {shape}: {r or 'no result (worker died or was stopped)'}")
    print("op, input, weight, winner, seconds, kernels loaded/compiled, their seconds, compiles over 0.3 s")
    for op, xs, ws, algo, secs, n, ksecs, nslow, which in rows:
        print(f"  {op:16s} {'x'.join(map(str, xs)):16s} {'x'.join(map(str, ws)):14s} {algo:9s} {secs:6.2f} "
              f"{n:4d} {ksecs:6.2f} {nslow:3d} {dict(which)}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "resnet50", int(args[1]) if len(args) > 1 else 32, args[2] if len(args) > 2 else "fp16")
