"""GPU time of one call, with launch overhead taken out the same way for every side.

`measure` captures `inner` calls of fn in a CUDA graph and times `reps` replays between CUDA events:
the result is device time per call, free of Python and launch costs, whatever fn does inside
(encoding, workspace allocation: those belong to fn and are timed). If fn cannot be captured (a host
sync, an uncapturable library call) it falls back to triton.testing.do_bench, which times eager
launches and flushes L2 between calls; callers comparing two functions should time both the same
way (`measure(..., graph=False)` forces the fallback).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

from ..runtime import graph_time


@dataclass(frozen=True)
class Timing:
    us: float     # median microseconds per call
    method: str   # "cuda_graph" or "do_bench"
    reason: str = ""  # why the graph was not used, if it was not


def _bench_time(fn) -> float:
    import torch
    from triton.testing import do_bench
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    return do_bench(fn, return_mode="median") * 1000.0


def measure(fn, inner: int = 20, reps: int = 30, graph: bool = True) -> Timing:
    """Median GPU microseconds per call of fn(), by CUDA-graph replay or, failing that, do_bench."""
    import torch
    if graph:
        try:
            return Timing(graph_time(fn, inner, reps), "cuda_graph")
        except Exception as exc:  # capture failed: leave the stream usable, then fall back
            with contextlib.suppress(Exception):
                torch.cuda.synchronize()
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            return Timing(_bench_time(fn), "do_bench", reason)
    return Timing(_bench_time(fn), "do_bench", "graph timing not requested")


def measure_same(*fns, inner: int = 20, reps: int = 30) -> list[Timing]:
    """Times every fn by the same method: CUDA graphs if all can be captured, else do_bench for all."""
    first = [measure(fn, inner, reps) for fn in fns]
    if all(t.method == "cuda_graph" for t in first):
        return first
    reason = "; ".join(t.reason for t in first if t.method != "cuda_graph")
    return [Timing(measure(fn, graph=False).us, "do_bench", reason) for fn in fns]


def gpu_time_us(fn, inner: int = 20, reps: int = 30) -> float:
    """Median GPU microseconds per call of fn(); warns when CUDA-graph capture failed and
    triton.testing.do_bench was used instead."""
    t = measure(fn, inner, reps)
    if t.method != "cuda_graph":
        warnings.warn(f"CUDA graph capture failed ({t.reason}); timed with triton do_bench instead",
                      RuntimeWarning, stacklevel=2)
    return t.us
