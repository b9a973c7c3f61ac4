"""Picks the kernel for one call.

Algos (every name here is public and documented in the README):
  "torch"   PyTorch: F.conv2d (cuDNN on CUDA), then activation and pooling as separate ops.
  "ecr"     Zero-skipping implicit GEMM in exact fp32 on CUDA cores: per block of output pixels,
            the kernel indices whose input column holds a non-zero (the paper's ECR index lists,
            built on the fly) are the only ones multiplied. fp16/bf16 inputs are upcast; always
            fp32-accurate, whatever torch.backends.cudnn.allow_tf32 says.
  "ecr_tc"  The same zero skipping, products on tensor cores: fp16/bf16 natively, fp32 as TF32
            when torch.backends.cudnn.allow_tf32 is on (as F.conv2d), else as 3xTF32 (fp32-accurate).
  "igemm"   The same kernel with skipping off (dense implicit GEMM), tensor-core precision as "ecr_tc".
  "auto"    On CUDA, the active plan's measured choice for this exact call (zeroskip.plan: op,
            geometry with batch and pooling, dtype, TF32 switch, activation, channels_last) when
            it has an entry; else "igemm" for fp16 VGG-style conv+pool (measured faster, see
            _vgg_style_fused) and "torch" for everything else (no kernel here beats cuDNN on every
            layer, see BENCHMARKS.md); "ecr" on the CPU interpreter; "torch" wherever kernels
            cannot run.
"""
from __future__ import annotations

import os

import torch

from . import plan
from .geometry import KERNEL_DTYPES, MAX_WINDOW

KERNEL_ALGOS = ("ecr", "ecr_tc", "igemm")
ALGOS = ("auto", "torch") + KERNEL_ALGOS


def interpreting() -> bool:
    """Triton's CPU interpreter is on (it must be set before any kernel is defined)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def kernels_can_run(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and interpreting())


def _vgg_style_fused(input, spec, activation) -> bool:
    """fp16 channels_last 3x3/s1/p1 conv + relu + 2x2/s2 max-pool, 64..512 input channels, where
    measured: the fused dense kernel ran 1.55x-2.28x of cuDNN conv -> relu -> max_pool2d on the
    five VGG-19 stages at batch 1 and 1.18x-1.88x on the three stages of 64..256 channels at
    batch 32 (H100, 2026-11-25, BENCHMARKS.md); at 512 channels and batch 32 it tied (0.97x and
    1.02x), so those stay on cuDNN. Every other shape, dtype and layout stays on cuDNN until
    measured (zeroskip.plan)."""
    geometry = (spec.kernel_h, spec.kernel_w, spec.stride_h, spec.stride_w, spec.pad_h, spec.pad_w,
                spec.dil_h, spec.dil_w, spec.groups)
    pool = (spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw)
    return (spec.pool == "max" and activation == "relu" and input.dtype == torch.float16
            and geometry == (3, 3, 1, 1, 1, 1, 1, 1, 1) and pool == (2, 2, 2, 2, 0, 0)
            and (64 <= spec.in_channels <= 256 or (spec.in_channels == 512 and spec.batch == 1))
            and spec.out_h == spec.height and spec.out_w == spec.width
            and input.is_contiguous(memory_format=torch.channels_last))


def offsets_fit(input, spec) -> bool:
    """The kernels index within one image in int32 (batch and group offsets are int64): the
    farthest element of one input image and of one output image must lie below 2**31."""
    span = sum((n - 1) * abs(st) for n, st in zip(input.shape[1:], input.stride()[1:]))
    return span < 2**31 and spec.out_channels * spec.result_h * spec.result_w < 2**31


def choose(algo, input: torch.Tensor, spec, activation=None) -> str:
    """Returns the algo to run; raises for unknown names and for kernels that cannot run here.

    Cheap on every call: the plan key is built from spec, dtype and flags (no allocation, no sync).
    """
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    if algo == "torch":
        return "torch"
    runnable = kernels_can_run(input.device) and input.dtype in KERNEL_DTYPES
    if algo == "auto":
        if not runnable:
            return "torch"
        if spec.window_rows > MAX_WINDOW or not offsets_fit(input, spec):
            return "torch"  # too large a pool window, or an image past int32 indexing
        if input.device.type == "cpu":
            return "ecr"
        # Measured on an H100 (BENCHMARKS.md): the kernels beat cuDNN on some layers and lose on
        # others, so without a measurement for this layer the pick is cuDNN, except the one
        # family measured faster everywhere it was tried.
        op = "conv2d_pool" if spec.pool else "conv2d"
        return plan.lookup(op, spec, input, activation) or ("igemm" if _vgg_style_fused(input, spec, activation) else "torch")
    if input.dtype not in KERNEL_DTYPES:
        raise TypeError(f"algo={algo!r} supports dtypes {KERNEL_DTYPES}, got input dtype {input.dtype}")
    if not offsets_fit(input, spec):
        raise ValueError(f"input of shape {tuple(input.shape)} and strides {input.stride()} spans 2**31 or more "
                         f"elements per image; algo={algo!r} indexes images in int32 (use algo='torch')")
    if not kernels_can_run(input.device):
        raise RuntimeError(
            f"algo={algo!r} needs a CUDA tensor (or TRITON_INTERPRET=1 set before importing zeroskip "
            f"to run the kernels on the CPU interpreter); got input on {input.device}")
    return algo
