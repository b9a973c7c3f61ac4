"""Split-K for layers with too few output tiles to fill the GPU, and the dense path's first-call
measurement of its options.

At batch 1 the deep VGG-19 layers have 196 or 784 output pixels: 8-56 tiles of 64x64 or more
for 132 SMs, so each SM runs one tile through a 72-iteration reduction whose load latency
nothing hides (30 us against cuDNN's 14 us in fp16, H100). Splitting the reduction over
SPLIT programs multiplies the programs; the fp32 partial tiles go to a workspace that a second
kernel sums before the epilogue. Whether a split (or kernels/rows.py) wins, and which, is measured
once per call shape against the autotuned direct kernel, by CUDA-graph replay (runtime.graph_ms),
as the autotuner measures tiles.
"""
from __future__ import annotations

import torch
import triton

from ..runtime import H100_SMS, graph_ms

_CHOSEN: dict = {}


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
    """The fastest of dense() and each (option, fn) of options(), measured once per key.

    Returns None for dense, else the option (any label the caller chose). Nothing is measured during
    CUDA-graph capture (the dense kernel runs and the choice is left for a later eager call)."""
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
    for option, fn in options:
        fn()  # a kernel that tunes its own tiles does so here, outside the timing
        ms = graph_ms(fn)
        if ms < best_ms:
            best_ms, best = ms, option
    _CHOSEN[key] = best
    return best


def chosen(key):
    """The choice pick made for key: None for dense or where nothing was measured yet."""
    return _CHOSEN.get(key)


def measured():
    """The keys pick has decided (a view: membership tests cost a dict lookup)."""
    return _CHOSEN.keys()


def choices() -> list:
    """(key, choice) of every pick made so far, oldest first."""
    return list(_CHOSEN.items())


def clear() -> None:
    """Forgets every measured choice."""
    _CHOSEN.clear()
