"""Times every candidate algo on one exact call and picks the winner: what a plan entry records.

Above the ops (it calls them), beside zeroskip.plan (which only holds the results). convert_ runs
it on each converted layer's real input; by hand:

    from zeroskip.measure import measure
    algo, times_us = measure("conv2d", x, w, b, padding=1, activation="relu")
"""
from __future__ import annotations

import itertools

import torch

from . import library
from .accuracy import rel_err, tolerance
from .bench import timing
from .geometry import check_activation
from .plan import ALGOS, spec_of
from .runtime import COPIES, weight_copies
from .runtime import l2_bytes as _l2_bytes

# Every algo; one that cannot run a call (the Winograd ones off 3x3 stride 1) is dropped for it.
CANDIDATES = ("torch", "cudnn", "igemm", "winograd", "winograd4", "im2col", "depthwise", "ecr_tc", "ecr")
# Not timed by convert_ in fp16/bf16: slower than cuDNN on every 16-bit layer measured on H100/H200
# (HED's real maps up to 92% zeros: ecr_tc 1.6-4x and ecr 7-20x behind; VGG-19 sweeps to 99%
# zeros: ecr_tc <= 0.82x cuDNN; ResNet-50), and each costs compiles.
SLOW_IN_16_BIT = ("ecr_tc", "ecr")
# im2col in fp16/bf16 beyond this many input channels per group: it won no such layer of ResNet-50
# (batch 1 and 32) or VGG-19 (batch 1) on an H100 (benchmarks/model-resnet50-*-h100-1206-layers.csv),
# at best 2% behind igemm, and it tunes 9 tile configs per layer shape.
IM2COL_MAX_CHANNELS = 16
# Winograd F(2x2) in fp16/bf16 beyond this batch: it won none of the 58 timings of 3x3 layers at
# batch 32 (ResNet-50, VGG-19, GoogLeNet; H100 and H200, benchmarks/model-*-b32-*-layers.csv), where
# F(4x4), igemm or cuDNN was faster, and it costs compiles; at batch 1 it won 53 of 152.
WINOGRAD2_MAX_BATCH = 31


def candidates_for(input, weight, activation) -> tuple:
    """The candidates convert_ times for a call: CANDIDATES, less cudnn without a ReLU (it fuses
    nothing else) and, in fp16/bf16, less SLOW_IN_16_BIT, im2col above IM2COL_MAX_CHANNELS and winograd
    above WINOGRAD2_MAX_BATCH.
    A depthwise call (one input channel per group, several groups) times torch, cudnn and depthwise
    only: the GEMM kernels' tiles hold 16-128 output channels of one group, here there is one;
    depthwise is left out where a group has more than one input channel (it cannot run those)."""
    drop = set() if activation == "relu" else {"cudnn"}
    if weight.shape[1] == 1 and input.shape[-3] > 1:
        drop.update(set(CANDIDATES) - {"torch", "cudnn", "depthwise"})
    elif weight.shape[1] > 1:
        drop.add("depthwise")
    if input.dtype in (torch.float16, torch.bfloat16):
        drop.update(SLOW_IN_16_BIT)
        if weight.shape[1] > IM2COL_MAX_CHANNELS:
            drop.add("im2col")
        if input.dim() == 4 and input.shape[0] > WINOGRAD2_MAX_BATCH:
            drop.add("winograd")
    return tuple(c for c in CANDIDATES if c not in drop)


def pick(times_us: dict, margin: float = 0.03) -> str:
    """"torch" unless another candidate is faster by more than `margin` (a fraction of torch's
    time); without a torch time, the fastest; "torch" when nothing was timed (strings are drops)."""
    ok = {name: t for name, t in times_us.items() if not isinstance(t, str)}
    if not ok:
        return "torch"
    best = min(ok, key=ok.get)
    if "torch" in ok and not ok[best] < ok["torch"] * (1 - margin):
        return "torch"
    return best


def _require_cuda(input) -> None:
    if input.device.type != "cuda":
        raise RuntimeError(f"measure times kernels on a CUDA GPU; got input on {input.device} "
                           f"(CPU-interpreter times say nothing about GPU speed)")


def measure(op, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
            activation=None, pool=None, pool_size=2, pool_stride=None, pool_padding=0, residual=None,
            candidates=CANDIDATES, margin=0.03):
    """Times each candidate algo on this exact call; returns (winner, times_us). op "conv2d_residual"
    is conv2d with `residual` (the algos without it in their epilogue add it after the conv).

    Every candidate's output is first checked against the torch path (normwise relative error
    <= accuracy.tolerance of the input's precision); one that fails or raises is not timed, its
    times_us value says why. The rest are timed by bench.timing.measure_same (CUDA graphs, all the
    same way; the calls cycle through copies of the weight, weight_copies) and the winner is
    `pick(times_us, margin)`: "torch" unless beaten by more than the margin.
    """
    if (op == "conv2d_residual") != (residual is not None):
        raise ValueError(f"residual must be given for op='conv2d_residual' and None otherwise; got op={op!r}")
    spec_of(op, input, weight, bias, stride, padding, dilation, groups, pool=pool,
            pool_size=pool_size, pool_stride=pool_stride, pool_padding=pool_padding)
    check_activation(activation)
    if isinstance(candidates, str) or not candidates or any(c not in ALGOS for c in candidates):
        raise ValueError(f"candidates must be a non-empty sequence of {ALGOS}, got {candidates!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise ValueError(f"margin must be a number in [0, 1), got {margin!r}")
    _require_cuda(input)
    conv = dict(activation=activation)
    if op != "conv2d_pool":
        fn = library.conv2d
        if residual is not None:
            conv.update(residual=residual)
    else:
        fn = library.conv2d_pool
        conv.update(pool=pool, pool_size=pool_size, pool_stride=pool_stride, pool_padding=pool_padding)

    def call(algo, w=weight):
        return fn(input, w, bias, stride, padding, dilation, groups, algo=algo, **conv)

    times, passed = {}, []
    with torch.no_grad():
        ref, tol = call("torch"), tolerance(input.dtype)
        for name in dict.fromkeys(candidates):
            try:
                err = rel_err(call(name), ref)
            except Exception as exc:  # a candidate that cannot run this call is dropped, not fatal
                times[name] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                continue
            if err <= tol:
                passed.append(name)
            else:
                times[name] = f"rel_err {err:.3g} > tolerance {tol:.3g}"
        weights = weight_copies(weight, _l2_bytes(input.device))
        for name in passed:  # each copy's derived weights (packed, transformed) made before timing
            for w in weights[1:]:
                call(name, w)
        timed = timing.measure_same(*[Rotating(call, name, weights) for name in passed],
                                    inner=COPIES) if passed else []
    times.update({name: t.us for name, t in zip(passed, timed)})
    return pick(times, margin), {name: times[name] for name in dict.fromkeys(candidates)}


class Rotating:
    """call(algo, w) with the next of weights each time it is called."""

    def __init__(self, call, algo: str, weights: list):
        self.algo = algo
        self._call = call
        self._cycle = itertools.cycle(weights)

    def __call__(self):
        return self._call(self.algo, next(self._cycle))
