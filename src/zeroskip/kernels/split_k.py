"""Split-K for layers with too few output tiles to fill the GPU.

At batch 1 the deep VGG-19 layers have 196 or 784 output pixels: 8-56 tiles of 64x64 or more
for 132 SMs, so each SM runs one tile through a 72-iteration reduction whose load latency
nothing hides (30 us against cuDNN's 14 us in fp16, H100). Splitting the reduction over
SPLIT programs multiplies the programs; the fp32 partial tiles go to a workspace that a second
kernel sums before the epilogue. Whether a split wins, and which, is measured once per call
shape against the autotuned dense kernel, as the autotuner measures tiles.

Both measure by CUDA-graph replay (graph_ms): triton's default do_bench times eager launches
after an L2 flush, which on these 9-30 us kernels ranked tiles wrongly (it preferred a tile that
replays in 10.1 us over one that replays in 8.8 us on VGG-19 features.5 in fp16, and a dense
31.9 us launch over a 22.9 us split on features.21; H100), and layers at inference read an
input the previous layer has just written, i.e. from L2.
"""
from __future__ import annotations

import functools
import inspect

import torch
import triton

H100_SMS = 132  # used where no GPU is queried (the CPU interpreter, tests)
H100_BYTES_PER_S = 3.35e12
_CHOSEN: dict = {}


@functools.lru_cache(maxsize=None)
def _device_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device) -> int:
    """Streaming multiprocessors of a CUDA device (132 on an H100 SXM); H100_SMS elsewhere."""
    device = torch.device(device)
    if device.type != "cuda":
        return H100_SMS
    return _device_sms(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _device_bandwidth(index: int) -> float:
    props = torch.cuda.get_device_properties(index)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    return 2.0 * clock_khz * 1e3 * bus_bits / 8 if clock_khz and bus_bits else H100_BYTES_PER_S


def memory_bandwidth(device) -> float:
    """Peak DRAM bytes per second of a CUDA device from its memory clock and bus width (double
    data rate: 3.35e12 on an H100 SXM, 4.8e12 on an H200); H100_BYTES_PER_S elsewhere or where
    torch does not report them."""
    device = torch.device(device)
    if device.type != "cuda":
        return H100_BYTES_PER_S
    return _device_bandwidth(device.index if device.index is not None else torch.cuda.current_device())


def candidates(spec, dtype, config_type, sms: int = H100_SMS) -> list:
    """(Config, split) pairs worth measuring: only where even 64x64 tiles leave SMs idle."""
    win = spec.window_rows
    m_total = spec.batch * spec.result_h * spec.result_w
    block_k, stages = (32, 3) if dtype == torch.float32 else (64, 4)
    iters = spec.kernel_h * spec.kernel_w * triton.cdiv(spec.in_per_group, block_k)
    out = []
    for bm, bn in ((64, 64), (128, 64), (64, 128)):
        if bm < win:
            continue
        tiles = triton.cdiv(m_total, bm // win) * triton.cdiv(spec.out_per_group, bn) * spec.groups
        if tiles >= 2 * sms:
            continue
        for split in (2, 4, 8, 16):
            # each split keeps >= 4 iterations (room to pipeline), and at most 4 waves of programs
            if iters < 4 * split or tiles * split > 4 * sms:
                break
            out.append((config_type(bm, bn, block_k, 4, stages), split))
    return out


def pick(key, dense, options):
    """The fastest of dense() and each (config, split, fn) of options(), measured once per key.

    Returns None for dense, else (config, split); config may name another kernel (launch.ROWS).
    Nothing is measured during CUDA-graph capture (the dense kernel runs and the choice is left for
    a later eager call)."""
    if key in _CHOSEN:
        return _CHOSEN[key]
    options = options()
    if not options:
        _CHOSEN[key] = None
        return None
    if torch.cuda.is_current_stream_capturing():
        return None
    dense()  # autotunes the dense tiles first, outside the timing
    best_ms, best = graph_ms(dense), None
    for cfg, split, fn in options:
        fn()  # a kernel that tunes its own tiles does so here, outside the timing
        ms = graph_ms(fn)
        if ms < best_ms:
            best_ms, best = ms, (cfg, split)
    _CHOSEN[key] = best
    return best


# The tile tuners keep their choice per layer shape on disk, in Triton's cache (keyed by Triton's
# version, the GPU architecture, the kernel's source and the tuning key), so a later process does
# not time about a dozen tiles again; their compiled binaries are in Triton's disk cache anyway.
# Not every Triton has the switch.
DISK_CACHE = {"cache_results": True} if "cache_results" in inspect.signature(triton.autotune).parameters else {}


def graph_ms(fn, quantiles=None):
    """Median milliseconds per call of fn over CUDA-graph replays (10 calls per graph, 10 replays).
    With quantiles (the autotuner's do_bench signature) the median is repeated per quantile."""
    from ..bench.timing import graph_time
    ms = graph_time(fn, inner=10, reps=10) / 1000.0
    return [ms] * len(quantiles) if quantiles else ms


def choices() -> list:
    """(key, choice) of every pick made so far, oldest first."""
    return list(_CHOSEN.items())


def clear() -> None:
    """Forgets every measured choice."""
    _CHOSEN.clear()
