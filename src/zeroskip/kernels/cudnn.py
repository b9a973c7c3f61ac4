"""cuDNN's own fused conv + bias + ReLU (+ residual add) kernels, through PyTorch's
torch.cudnn_convolution_relu / torch.cudnn_convolution_add_relu: one kernel where F.conv2d, its
bias add, the residual add and the ReLU take up to four. On ResNet-50's convs at batch 1 in fp16 and
bf16 that is 1.3x-2.7x faster than F.conv2d followed by the ops (3.4 us against 8.3 us for a 1x1
64->256 conv on 56x56), 1.3x-3.1x at batch 32 (H100, benchmarks/cudnn-fused-probe-h100.txt); in
fp32 (TF32 off) 0.74x-1.99x. Products follow torch.backends.cudnn.allow_tf32 as F.conv2d's do.
A pool after the conv runs as PyTorch's or kernels/pool.py's, the faster (pool.after). ReLU only
(cuDNN fuses no other activation here); CUDA only.
"""
from __future__ import annotations

import torch

from ..geometry import torch_padding
from . import pool
from .launch import channels_last

RESIDUAL = True


def supports(spec, input, activation) -> str | None:
    """ReLU only, on CUDA tensors (input None: the geometry alone, which is always supported)."""
    if activation != "relu":
        return f"cuDNN fuses ReLU only, got activation={activation!r}"
    if input is not None and input.device.type != "cuda":
        return f"it runs cuDNN and needs a CUDA tensor, got input on {input.device}"
    return None


def conv(x, weight, bias, spec, activation, algo="cudnn", residual=None):
    """relu(conv(x) + bias [+ residual]) by one cuDNN call, then spec's pool; the output in x's
    memory format (cuDNN picks one from the input's and the weight's)."""
    why = supports(spec, x, activation)
    if why is not None:
        raise ValueError(f"algo={algo!r} cannot run this call: {why} (use algo='torch')")
    fmt = torch.channels_last if channels_last(x) else torch.contiguous_format
    if residual is not None:  # a view or another layout: dense in the output's layout first (a copy)
        residual = residual.contiguous(memory_format=fmt)
    xp, padding = torch_padding(x, spec)
    geometry = ((spec.stride_h, spec.stride_w), padding, (spec.dil_h, spec.dil_w), spec.groups)
    try:
        if residual is None:
            y = torch.cudnn_convolution_relu(xp, weight, bias, *geometry)
        else:
            y = torch.cudnn_convolution_add_relu(xp, weight, residual, 1.0, bias, *geometry)
    except RuntimeError as exc:  # no fused cuDNN engine for this call
        raise RuntimeError(f"algo={algo!r}: cuDNN could not run this fused conv "
                           f"({(str(exc).splitlines() or [''])[0]}); use algo='torch'") from exc
    if spec.pool:
        y = pool.after(y, spec)
    return y if y.is_contiguous(memory_format=fmt) else y.contiguous(memory_format=fmt)
