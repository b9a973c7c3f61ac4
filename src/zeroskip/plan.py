"""Per-layer algo choice by measurement, stored as a plan.

No kernel here beats cuDNN on every layer (BENCHMARKS.md), so algo="auto" runs cuDNN unless a plan
says otherwise. A plan entry is one exact call: op, full geometry (batch and pooling included),
dtype, the TF32 switch (fp32 only), activation and whether the input is channels_last; it holds
the fastest algo and every candidate's time. Timings only hold for the GPU and software that made
them, so a plan file carries its environment (GPU name, torch, triton, cuDNN versions) and is
ignored, with a warning, where that differs.

    import zeroskip
    from zeroskip import plan as zplan

    # Measure every converted layer on its real input; plan.json is reused (not re-measured) later.
    model = zeroskip.convert_(model.cuda().eval(), x.cuda(), plan="plan.json")
    print(model.zeroskip_report["layers"])          # name, op, shape, sparsity, algo, times_us

    # Or by hand: time one call, record it, and let algo="auto" follow the plan.
    algo, times_us = zplan.measure("conv2d", x, w, b, padding=1, activation="relu")
    plan = zplan.Plan.load("plan.json")
    with zplan.use(plan):
        y = zeroskip.conv2d(x, w, b, padding=1, activation="relu")  # algo="auto"
"""
from __future__ import annotations

import contextlib
import functools

import torch

from .geometry import ConvSpec, check_activation, check_conv, with_pool
from .plan_file import FORMAT, Plan, _algos, environment  # noqa: F401  (part of zeroskip.plan's API)

OPS = ("conv2d", "conv2d_pool")
# Every kernel algo; one that cannot run a call (the Winograd ones off 3x3 stride 1) is dropped for it.
CANDIDATES = ("torch", "igemm", "winograd", "winograd4", "im2col", "ecr_tc", "ecr")
_active = None


def spec_of(op, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
            pool=None, pool_size=2, pool_stride=None, pool_padding=0) -> ConvSpec:
    """The checked geometry of a zeroskip.conv2d (pool None) or conv2d_pool (pool given) call."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if (op == "conv2d_pool") != (pool is not None):
        raise ValueError(f"pool must be given for op='conv2d_pool' and None for op='conv2d'; "
                         f"got op={op!r}, pool={pool!r}")
    x = input.unsqueeze(0) if isinstance(input, torch.Tensor) and input.dim() == 3 else input
    spec = check_conv(x, weight, bias, stride, padding, dilation, groups)
    return spec if pool is None else with_pool(spec, pool, pool_size, pool_stride, pool_padding)


def make_key(op, spec: ConvSpec, input, activation) -> tuple:
    """The plan key of one call, from flags and metadata only (no device work, no sync)."""
    dtype = input.dtype
    tf32 = dtype == torch.float32 and bool(torch.backends.cudnn.allow_tf32)
    channels_last = input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous()
    return (op, spec, dtype, tf32, activation, channels_last)


def set_active(plan: Plan | None) -> None:
    """Makes `plan` the one algo="auto" consults (None: no plan). Process-wide, not per thread."""
    global _active
    if plan is not None and not isinstance(plan, Plan):
        raise TypeError(f"plan must be a Plan or None, got {type(plan).__name__}")
    _active = plan


def active() -> Plan | None:
    return _active


@contextlib.contextmanager
def use(plan: Plan | None):
    """`with use(plan):` makes `plan` active inside the block, then restores the previous one."""
    previous = _active
    set_active(plan)
    try:
        yield plan
    finally:
        set_active(previous)


def lookup(op, spec: ConvSpec, input, activation):
    """The active plan's algo for this call, or None (no active plan, or no entry)."""
    if _active is None:
        return None
    return _active.algo(make_key(op, spec, input, activation))


def tolerance(dtype: torch.dtype) -> float:
    """Normwise relative error a candidate may have against the torch path."""
    if dtype in (torch.float16, torch.bfloat16):
        return 1e-2
    return 2e-3 if dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else 1e-5


def _rel_err(out, ref) -> float:
    ref, out = ref.double(), out.double()
    scale = ref.norm()
    diff = (out - ref).norm()
    return (diff / scale if scale > 0 else diff).item()


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
            activation=None, pool=None, pool_size=2, pool_stride=None, pool_padding=0,
            candidates=CANDIDATES, margin=0.03):
    """Times each candidate algo on this exact call; returns (winner, times_us).

    Every candidate's output is first checked against the torch path (normwise relative error
    <= tolerance(dtype)); one that fails or raises is not timed, its times_us value says why.
    The rest are timed by bench.timing.measure_same (CUDA graphs, all the same way) and the
    winner is `pick(times_us, margin)`: "torch" unless beaten by more than the margin.
    """
    spec_of(op, input, weight, bias, stride, padding, dilation, groups, pool=pool,
            pool_size=pool_size, pool_stride=pool_stride, pool_padding=pool_padding)
    check_activation(activation)
    if isinstance(candidates, str) or not candidates or any(c not in _algos() for c in candidates):
        raise ValueError(f"candidates must be a non-empty sequence of {_algos()}, got {candidates!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise ValueError(f"margin must be a number in [0, 1), got {margin!r}")
    _require_cuda(input)
    from . import library
    from .bench import timing
    conv = dict(activation=activation)
    if op == "conv2d":
        fn = library.conv2d
    else:
        fn = library.conv2d_pool
        conv.update(pool=pool, pool_size=pool_size, pool_stride=pool_stride, pool_padding=pool_padding)

    def call(algo):
        return fn(input, weight, bias, stride, padding, dilation, groups, algo=algo, **conv)

    times, passed = {}, []
    with torch.no_grad():
        ref, tol = call("torch"), tolerance(input.dtype)
        for name in dict.fromkeys(candidates):
            try:
                err = _rel_err(call(name), ref)
            except Exception as exc:  # a candidate that cannot run this call is dropped, not fatal
                times[name] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                continue
            if err <= tol:
                passed.append(name)
            else:
                times[name] = f"rel_err {err:.3g} > tolerance {tol:.3g}"
        timed = timing.measure_same(*[functools.partial(call, name) for name in passed]) if passed else []
    times.update({name: t.us for name, t in zip(passed, timed)})
    return pick(times, margin), {name: times[name] for name in dict.fromkeys(candidates)}
