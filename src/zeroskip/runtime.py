"""What the kernels and the `auto` rules ask of the machine: device queries (SMs, memory bandwidth,
GPU class), whether the kernels run on Triton's CPU interpreter, and the CUDA-graph timing the tile
tuners measure with. Imports nothing else of zeroskip, and not triton until a tuner asks for it.
"""
from __future__ import annotations

import functools
import inspect
import math
import os
import statistics
import sys

import torch

H100_SMS = 132                 # where no GPU is queried (the CPU interpreter, tests)
H100_BYTES_PER_S = 3.35e12     # an H100 SXM's DRAM bandwidth, likewise


def _index(device) -> int:
    device = torch.device(device)
    return device.index if device.index is not None else torch.cuda.current_device()


@functools.lru_cache(maxsize=None)
def _device_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device) -> int:
    """Streaming multiprocessors of a CUDA device (132 on an H100 SXM); H100_SMS elsewhere."""
    return _device_sms(_index(device)) if torch.device(device).type == "cuda" else H100_SMS


@functools.lru_cache(maxsize=None)
def shared_memory(device) -> int | None:
    """Shared memory one program may use on the device (232448 bytes on an H100 / H200); None off
    the GPU (the interpreter has no limit)."""
    if torch.device(device).type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    return getattr(props, "shared_memory_per_block_optin", 0) or 232448


def _device_bandwidth(index: int) -> float:
    props = torch.cuda.get_device_properties(index)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    return 2.0 * clock_khz * 1e3 * bus_bits / 8 if clock_khz and bus_bits else H100_BYTES_PER_S


def memory_bandwidth(device) -> float:
    """Peak DRAM bytes per second of a CUDA device from its memory clock and bus width (double data
    rate: 3.35e12 on an H100 SXM, 4.8e12 on an H200); H100_BYTES_PER_S elsewhere or where torch
    does not report them."""
    return _device_bandwidth(_index(device)) if torch.device(device).type == "cuda" else H100_BYTES_PER_S


@functools.lru_cache(maxsize=None)
def _capability(index: int) -> tuple:
    return torch.cuda.get_device_capability(index)


def gpu_class(device) -> str:
    """The GPU family `auto`'s rules are written for: "hopper" for compute capability 9.0 (H100,
    H200), "sm_XY" for other CUDA GPUs (e.g. "sm_80" for an A100), "cpu" off the GPU."""
    if torch.device(device).type != "cuda":
        return "cpu"
    major, minor = _capability(_index(device))
    return "hopper" if (major, minor) == (9, 0) else f"sm_{major}{minor}"


# Triton fixes, for each kernel when it is defined (when a zeroskip.kernels module is imported),
# whether it runs on the CPU interpreter. None until a defined kernel has been seen.
_defined_interpreted = None
_modules_seen = 0


def _kernels_interpreted():
    """Whether the kernels defined so far run on the interpreter; None if none is defined yet."""
    global _defined_interpreted, _modules_seen
    if _defined_interpreted is None and len(sys.modules) != _modules_seen:
        _modules_seen = len(sys.modules)
        for name, module in list(sys.modules.items()):
            if not name.startswith("zeroskip.kernels.") or module is None:
                continue
            for value in list(vars(module).values()):
                kind = type(value).__name__
                if kind in ("JITFunction", "InterpretedFunction"):
                    _defined_interpreted = kind == "InterpretedFunction"
                    return _defined_interpreted
    return _defined_interpreted


def interpreting() -> bool:
    """Whether the kernels run on Triton's CPU interpreter (TRITON_INTERPRET=1 when they were defined).
    Raises RuntimeError where TRITON_INTERPRET changed since: Triton decided it for each kernel at
    import, and a kernel defined for the GPU fails deep inside Triton on CPU tensors."""
    now = os.environ.get("TRITON_INTERPRET") == "1"
    then = _kernels_interpreted()
    if then is not None and then != now:
        raise RuntimeError(
            f"TRITON_INTERPRET is {os.environ.get('TRITON_INTERPRET')!r} now, but zeroskip's kernels were "
            f"imported {'with' if then else 'without'} TRITON_INTERPRET=1: Triton fixes that when a kernel is "
            f"defined. Set TRITON_INTERPRET=1 before importing zeroskip (or unset it), or start a new process.")
    if now and interpreter_problem():
        raise RuntimeError(interpreter_problem())
    return now


@functools.lru_cache(maxsize=None)
def interpreter_problem() -> str:
    """Why Triton's CPU interpreter cannot run zeroskip's kernels here, or '' where it can.
    Triton <= 3.6 turns a loop bound into int(array of shape (1,)), which numpy >= 2.4 refuses
    (triton-lang/triton#9171): every kernel with a runtime loop bound fails deep inside Triton."""
    import numpy
    import triton
    from triton.runtime import interpreter

    if tuple(int(p) for p in numpy.__version__.split(".")[:2]) < (2, 4):
        return ""
    if "int(self.handle.data))" not in inspect.getsource(interpreter):
        return ""
    return (f"Triton {triton.__version__}'s CPU interpreter (TRITON_INTERPRET=1) fails with numpy "
            f"{numpy.__version__}: install numpy<2.4 (pip install 'numpy<2.4', as requirements.txt pins) "
            f"or a Triton with the fix for triton-lang/triton#9171.")


def graph_time(fn, inner: int, reps: int, slow_us: float | None = None) -> float:
    """Median GPU microseconds per call of fn() over `reps` replays of a CUDA graph of `inner`
    calls (after 3 warm-up calls on a side stream). With slow_us, a fn whose last two warm-up calls
    took more than that each is timed with SLOW_INNER calls and SLOW_REPS replays at most. Raises if
    fn cannot be captured."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    marks = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    with torch.cuda.stream(side):
        fn()  # a first call may compile or tune: left out of the estimate
        marks[0].record()
        fn()
        fn()
        marks[1].record()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    if slow_us is not None and marks[0].elapsed_time(marks[1]) * 1000.0 / 2 > slow_us:
        inner, reps = min(inner, SLOW_INNER), min(reps, SLOW_REPS)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(inner):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends):
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    per_call = [s.elapsed_time(e) * 1000.0 / inner for s, e in zip(starts, ends)]
    del graph
    return statistics.median(per_call)


# The tuners time calls slower than SLOW_US by SLOW_REPS replays of SLOW_INNER calls (15 calls, not
# 100): ResNet-50's batch-32 stem (52 tiles of 150-1000 us each) measured in 2.8 s instead of 7.9 s,
# the same winners (H100, benchmarks/convert-time-probe-resnet50-b32-h100-1207-slow.txt).
SLOW_US, SLOW_INNER, SLOW_REPS = 200.0, 3, 5


def graph_ms(fn, quantiles=None):
    """Median milliseconds per call of fn over CUDA-graph replays (10 calls per graph, 10 replays;
    fewer for calls over SLOW_US), the tile tuners' timer. Triton's default do_bench times eager
    launches after an L2 flush, which on these 9-30 us kernels ranked tiles wrongly (a 10.1 us tile
    over an 8.8 us one on VGG-19 features.5, fp16, H100), and a layer at inference reads what the
    previous one just wrote, from L2.
    With quantiles (the autotuner's do_bench signature) the median is repeated per quantile. In
    zeroskip.warm's workers (warm_worker()) fn runs once, which compiles it, and 0 is returned."""
    if warm_worker():
        fn()
        ms = 0.0
    else:
        ms = graph_time(fn, inner=10, reps=10, slow_us=SLOW_US) / 1000.0
    return [ms] * len(quantiles) if quantiles else ms


def warm_worker() -> bool:
    """Whether this process is one of zeroskip.warm's compile workers ($ZEROSKIP_WARM_WORKER is "1"):
    they only fill Triton's cache, so nothing there is timed (tile and option picks are left to the
    process that measures) and no tuned choice is kept."""
    return os.environ.get("ZEROSKIP_WARM_WORKER") == "1"


@functools.lru_cache(maxsize=None)
def _tuner_cache() -> tuple:
    import triton
    if warm_worker():
        return ()
    return (("cache_results", True),) if "cache_results" in inspect.signature(triton.autotune).parameters else ()


def tuner_cache() -> dict:
    """triton.autotune options that keep each tuned choice on disk, in Triton's cache (keyed by
    Triton's version, the GPU architecture, the kernel's source and the tuning key), so a later
    process does not time a dozen tiles again. Empty where this Triton lacks the switch, or in a
    warm worker."""
    return dict(_tuner_cache())


# Timed calls cycle through this many copies of a layer's weight at most (measure: the graph's
# calls per replay).
COPIES = 20


def weight_copies(weight, l2_bytes: int) -> list:
    """The weight and copies of it, up to COPIES, until they hold twice l2_bytes: timed calls
    cycle through them. In a whole model a layer's weights come from memory (the other layers'
    weights and maps evict them); timing one call over and over would keep them in L2 and favour
    kernels that read more weight bytes (Winograd's transformed weights are 16/9 or 4x the raw)."""
    n = min(COPIES, math.ceil(2 * l2_bytes / max(1, weight.numel() * weight.element_size())))
    return [weight] + [weight.clone() for _ in range(n - 1)]


def l2_bytes(device) -> int:
    return getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 << 20)
