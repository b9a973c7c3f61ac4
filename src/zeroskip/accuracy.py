"""Normwise relative error and the error each precision may have: the one definition that the plan's
accuracy check, convert_'s model check, the benchmark rows and the tests use.
"""
from __future__ import annotations

import torch

# Per call, against a float64 reference: fp32 is fp32-accurate (3xTF32 or exact products), TF32
# reads 10 mantissa bits, fp16 / bf16 round the output.
TOLERANCE = {"fp64": 1e-9, "fp32": 1e-5, "tf32": 2e-3, "fp16": 1e-2, "bf16": 1e-2}
# Per converted model against the original (errors add up over layers): convert_'s check.
MODEL_TOLERANCE = {"fp64": 1e-9, "fp32": 1e-4, "tf32": 1e-2, "fp16": 3e-2, "bf16": 3e-2}
_NAMES = {torch.float64: "fp64", torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def precision(dtype: torch.dtype, tf32: bool | None = None) -> str:
    """"fp32", "tf32", "fp16", "bf16" (or "fp64"): fp32 is "tf32" where TF32 is on (tf32 None:
    torch.backends.cudnn.allow_tf32, the switch F.conv2d and the kernels follow)."""
    if dtype not in _NAMES:
        raise ValueError(f"no precision name for dtype {dtype}")
    if dtype == torch.float32:
        on = torch.backends.cudnn.allow_tf32 if tf32 is None else tf32
        return "tf32" if on else "fp32"
    return _NAMES[dtype]


def tolerance(dtype: torch.dtype, tf32: bool | None = None) -> float:
    """The normwise relative error one call may have in this precision (TOLERANCE)."""
    return TOLERANCE[precision(dtype, tf32)]


def model_tolerance(dtype: torch.dtype, tf32: bool) -> float:
    """convert_'s bound for a whole model's output in this precision (MODEL_TOLERANCE); other
    floating types (e.g. fp8) get the 16-bit one."""
    return MODEL_TOLERANCE[precision(dtype, tf32)] if dtype in _NAMES else MODEL_TOLERANCE["fp16"]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 (the absolute ||out - ref|| where ref is all zero)."""
    ref = ref.detach().double()
    diff = torch.linalg.vector_norm(out.detach().double().to(ref.device) - ref)
    norm = torch.linalg.vector_norm(ref)
    return float(diff / norm) if norm > 0 else float(diff)
