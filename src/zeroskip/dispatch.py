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
from .geometry import KERNEL_DTYPES

KERNEL_ALGOS = ("ecr", "ecr_tc", "igemm")
ALGOS = ("auto", "torch") + KERNEL_ALGOS


def interpreting() -> bool:
    """Triton's CPU interpreter is on (it must be set before any kernel is defined)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def kernels_can_run(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and interpreting())


def _vgg_style_fused(input, spec) -> bool:
    """fp16 3x3/s1 conv + 2x2/s2 max-pool on 64..256 channels (any batch) or 512 (batch 1): the
    fused dense kernel ran 1.55x-2.28x of cuDNN conv -> relu -> max_pool2d on the five VGG-19
    stages at batch 1 and 1.18x-1.88x on the first three at batch 32 (H100, 2026-11-25,
    BENCHMARKS.md); at 512 channels and batch 32 it tied (0.97x-1.03x), so cuDNN keeps those.
    Other shapes and dtypes stay on cuDNN until measured."""
    return (spec.pool == "max" and input.dtype == torch.float16 and spec.groups == 1
            and (spec.in_channels <= 256 or spec.batch == 1)
            and (spec.kernel_h, spec.kernel_w, spec.stride_h, spec.stride_w, spec.dil_h, spec.dil_w) == (3, 3, 1, 1, 1, 1)
            and (spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw) == (2, 2, 2, 2, 0, 0)
            and spec.in_channels >= 64)


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
        if input.device.type == "cpu":
            return "ecr"
        # Measured on an H100 (BENCHMARKS.md): the kernels beat cuDNN on some layers and lose on
        # others, so without a measurement for this layer the pick is cuDNN, except the one
        # family measured faster everywhere it was tried.
        op = "conv2d_pool" if spec.pool else "conv2d"
        return plan.lookup(op, spec, input, activation) or ("igemm" if _vgg_style_fused(input, spec) else "torch")
    if input.dtype not in KERNEL_DTYPES:
        raise TypeError(f"algo={algo!r} supports dtypes {KERNEL_DTYPES}, got input dtype {input.dtype}")
    if not kernels_can_run(input.device):
        raise RuntimeError(
            f"algo={algo!r} needs a CUDA tensor (or TRITON_INTERPRET=1 set before importing zeroskip "
            f"to run the kernels on the CPU interpreter); got input on {input.device}")
    return algo
