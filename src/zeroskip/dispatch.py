"""Picks the kernel for one call.

Algos (every name public; zeroskip.kernels.KERNELS maps each kernel to the module that runs it):
  "torch"     PyTorch: F.conv2d (cuDNN on CUDA), then activation and pooling as separate ops.
  "ecr"       zero-skipping implicit GEMM in exact fp32 on CUDA cores (fp16/bf16 upcast), whatever
              torch.backends.cudnn.allow_tf32 says; the paper's ECR index built per tile on the fly.
  "ecr_tc"    the same zero skipping, products on tensor cores: fp16/bf16 natively, fp32 as TF32
              where torch.backends.cudnn.allow_tf32 is on (as F.conv2d), else as 3xTF32 (fp32-accurate).
  "igemm"     the same kernel with skipping off (dense implicit GEMM), precision as "ecr_tc".
  "winograd"  Winograd F(2x2, 3x3) for 3x3 stride-1 convs (groups 1, no pool or a 2x2/2 pool).
  "winograd4" Winograd F(4x4, 3x3), same scope, 4x fewer products; loses more bits than "winograd".
  "im2col"    implicit GEMM over (channel, tap) columns, for layers with few input channels.
  "depthwise" one input channel per group (MobileNet's depthwise convs), fp32 FMAs on CUDA cores.
  "auto"      the first of:
                "torch" where no kernel can run (not CUDA nor the CPU interpreter, a dtype other than
                  fp32/fp16/bf16, a pool window past MAX_WINDOW, an image past int32 indexing);
                "ecr" on the CPU interpreter;
                the plan's measured algo for this exact call (zeroskip.plan), if it has one;
                the first row of zeroskip/rules.py that holds for the call on this GPU class;
                "torch".
explain(...) says which of these decided a call, and which rule.
"""
from __future__ import annotations

import functools
import warnings

import torch

from . import plan as zplan
from . import runtime
from .accuracy import precision
from .geometry import KERNEL_DTYPES, MAX_WINDOW
from .kernels import KERNELS
from .rules import RULES, features, first_match

ALGOS = ("auto", "torch") + tuple(KERNELS)
FAST_MEMORY = 4e12  # bytes/s: an H200 (4.8e12), not an H100 (3.35e12)
_warned_cpu = False


def kernels_can_run(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and runtime.interpreting())


def offsets_fit(input, spec) -> bool:
    """The kernels index within one image in int32 (batch and group offsets are int64): the
    farthest element of one input image and of one output image must lie below 2**31."""
    span = sum((n - 1) * abs(st) for n, st in zip(input.shape[1:], input.stride()[1:]))
    return span < 2**31 and spec.out_channels * spec.result_h * spec.result_w < 2**31


def _warn_cpu() -> None:
    global _warned_cpu
    if not _warned_cpu:
        _warned_cpu = True
        warnings.warn("zeroskip's kernels need a CUDA GPU, or TRITON_INTERPRET=1 set before importing "
                      "zeroskip for the CPU interpreter; algo='auto' runs PyTorch (F.conv2d) on this CPU "
                      "input instead", UserWarning, stacklevel=4)


@functools.lru_cache(maxsize=4096)
def _rule(spec, prec, nchw, channels_last, activation, gpu, fast_memory):
    """The first rule of gpu's table for the call; kernels' supports() see the geometry only."""
    f = features(spec, prec, nchw, channels_last, activation, fast_memory)
    return first_match(RULES[gpu], f, lambda algo: KERNELS[algo].supports(spec, None, activation) is None)


def decide(input, spec, activation=None, plan=None) -> tuple:
    """(algo, reason, rule) of algo="auto" for the call: reason is "no kernel", "interpreter",
    "plan", "rule", "no rule" or "no rules for this GPU"; rule is the rules.Rule that matched, or None.
    plan None: the one zeroskip.plan.use() made current, if any."""
    if not (input.dtype in KERNEL_DTYPES and kernels_can_run(input.device)):
        if input.device.type == "cpu" and input.dtype in KERNEL_DTYPES:
            _warn_cpu()
        return "torch", "no kernel", None
    if spec.window_rows > MAX_WINDOW or not offsets_fit(input, spec):
        return "torch", "no kernel", None
    if input.device.type == "cpu":
        return "ecr", "interpreter", None
    plan = zplan.current() if plan is None else plan
    found = zplan.lookup(plan, "conv2d_pool" if spec.pool else "conv2d", spec, input, activation)
    if found is not None:
        return found, "plan", None
    gpu = runtime.gpu_class(input.device)
    if gpu not in RULES:
        return "torch", "no rules for this GPU", None
    rule = _rule(spec, precision(input.dtype), input.is_contiguous(),
                 input.is_contiguous(memory_format=torch.channels_last), activation, gpu,
                 runtime.memory_bandwidth(input.device) >= FAST_MEMORY)
    return (rule.algo, "rule", rule) if rule is not None else ("torch", "no rule", None)


def explain(input, spec, activation=None, plan=None) -> str:
    """Why algo="auto" runs what it runs for this call, in a line: the rule and its evidence."""
    algo, reason, rule = decide(input, spec, activation, plan)
    if rule is not None:
        gpu = runtime.gpu_class(input.device)
        return f"{algo}: rules.RULES[{gpu!r}][{RULES[gpu].index(rule)}]: {rule}"
    detail = {"no kernel": "no kernel can run this call here", "interpreter": "the CPU interpreter",
              "plan": "the plan's measured choice for this call",
              "no rule": "no rule of this GPU class holds: cuDNN",
              "no rules for this GPU": f"no rules for GPU class {runtime.gpu_class(input.device)!r}: cuDNN"}
    return f"{algo}: {detail[reason]}"


def choose(algo, input: torch.Tensor, spec, activation=None, plan=None) -> str:
    """Returns the algo to run; raises for unknown names and for kernels that cannot run here.
    Cheap on every call: the rule is cached per call shape, the plan key built from metadata."""
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    if algo == "torch":
        return "torch"
    if algo == "auto":
        return decide(input, spec, activation, plan)[0]
    if input.dtype not in KERNEL_DTYPES:
        raise TypeError(f"algo={algo!r} supports dtypes {KERNEL_DTYPES}, got input dtype {input.dtype}")
    if not offsets_fit(input, spec):
        raise ValueError(f"input of shape {tuple(input.shape)} and strides {input.stride()} spans 2**31 or more "
                         f"elements per image; algo={algo!r} indexes images in int32 (use algo='torch')")
    why = KERNELS[algo].supports(spec, input, activation)
    if why is not None:
        raise ValueError(f"algo={algo!r} cannot run this call: {why} (use algo='auto' or 'torch')")
    if not kernels_can_run(input.device):
        raise RuntimeError(
            f"algo={algo!r} needs a CUDA tensor (or TRITON_INTERPRET=1 set before importing zeroskip "
            f"to run the kernels on the CPU interpreter); got input on {input.device}")
    return algo
