"""The ops as torch custom ops (`torch.ops.zeroskip.conv2d`, `torch.ops.zeroskip.conv2d_pool`,
`torch.ops.zeroskip.linear`).

Why: a custom op is opaque to torch.compile, so Dynamo does not trace into the Triton launch
(and fullgraph=True holds), while `register_fake` tells the compiler the output's shape, dtype,
device and strides without running anything; the same metadata lets CUDA-graph capture and
AOT autograd plan memory. Geometry travels as int lists; activation "" means None; padding
is an int pair unless `padding_str` is "same"/"valid" (the only way an asymmetric 'same' fits
a fixed schema).

Output strides are fixed, whatever the algo: channels_last when the input is channels_last
(and not also plain contiguous), else contiguous. The torch path can pick another layout
(e.g. for a channels_last weight); it is copied into this one so the fake output never lies.

torch.autocast casts in the Python wrappers below (functional.autocast_args), before the op: the
op itself computes in its inputs' dtype, as its fake impl says. Backward is registered (recomputing the conv with PyTorch ops), so a module whose parameters
require grad still compiles without torch.no_grad(); the kernels themselves are forward-only.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import functional
from .geometry import check_activation, check_conv, pair, with_pool


def _padding_args(padding):
    if isinstance(padding, str):
        return [0, 0], padding
    return list(pair(padding, "padding", 0)), ""


def _spec(input, weight, bias, stride, padding, padding_str, dilation, groups):
    x = input.unsqueeze(0) if input.dim() == 3 else input
    return check_conv(x, weight, bias, stride, padding_str or padding, dilation, groups)


def _layout(input, shape):
    """The output's memory format: channels_last iff a 4-D input is (strictly) channels_last."""
    cl = (input.dim() == 4 and input.is_contiguous(memory_format=torch.channels_last)
          and not input.is_contiguous())
    return torch.channels_last if cl else torch.contiguous_format


def _empty(input, spec):
    shape = (spec.batch, spec.out_channels, spec.result_h, spec.result_w)[input.dim() == 3:]
    return torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=_layout(input, shape))


def _dense_strides(shape, memory_format) -> tuple:
    """The strides torch.empty(shape, memory_format=...) gets, without allocating (this runs on
    every eager call; a meta tensor per call cost more than the comparison it served)."""
    order = [1, 3, 2, 0] if memory_format == torch.channels_last else list(range(len(shape)))[::-1]
    strides, step = [0] * len(shape), 1
    for d in order:
        strides[d] = step
        step *= max(shape[d], 1)
    return tuple(strides)


def _fixed_layout(out, input):
    """`out` with exactly the strides `_empty` (and so the fake impl) promises."""
    want = _dense_strides(out.shape, _layout(input, out.shape))
    if out.stride() == want:
        return out
    return torch.empty_strided(out.shape, want, dtype=out.dtype, device=out.device).copy_(out)


@torch.library.custom_op("zeroskip::conv2d", mutates_args=())
def conv2d_op(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int],
              padding: list[int], padding_str: str, dilation: list[int], groups: int,
              activation: str, algo: str, residual: Optional[Tensor] = None) -> Tensor:
    with torch.autocast(input.device.type, enabled=False):  # its torch path must not cast: dtype as the fake says
        out = functional.conv2d_uncast(input, weight, bias, stride, padding_str or padding, dilation, groups,
                                       activation=activation or None, residual=residual, algo=algo)
    return _fixed_layout(out, input)


@conv2d_op.register_fake
def _conv2d_fake(input, weight, bias, stride, padding, padding_str, dilation, groups, activation, algo,
                 residual=None):
    spec = _spec(input, weight, bias, stride, padding, padding_str, dilation, groups)
    check_activation(activation or None)
    if residual is not None:
        functional._check_residual(residual, input, spec, input.dim() == 3)
    return _empty(input, spec)


@torch.library.custom_op("zeroskip::conv2d_pool", mutates_args=())
def conv2d_pool_op(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int],
                   padding: list[int], padding_str: str, dilation: list[int], groups: int,
                   activation: str, pool: str, pool_size: list[int], pool_stride: list[int],
                   pool_padding: list[int], algo: str) -> Tensor:
    with torch.autocast(input.device.type, enabled=False):
        out = functional.conv2d_pool_uncast(input, weight, bias, stride, padding_str or padding, dilation,
                                            groups, activation=activation or None, pool=pool,
                                            pool_size=pool_size, pool_stride=pool_stride,
                                            pool_padding=pool_padding, algo=algo)
    return _fixed_layout(out, input)


@conv2d_pool_op.register_fake
def _conv2d_pool_fake(input, weight, bias, stride, padding, padding_str, dilation, groups,
                      activation, pool, pool_size, pool_stride, pool_padding, algo):
    spec = _spec(input, weight, bias, stride, padding, padding_str, dilation, groups)
    check_activation(activation or None)
    return _empty(input, with_pool(spec, pool, pool_size, pool_stride, pool_padding))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:3])
    ctx.args = inputs[3:]


def _setup_conv2d_context(ctx, inputs, output):
    """conv2d's inputs end with the residual (None or a tensor): it is kept for the pre-activation."""
    residual = inputs[10] if len(inputs) > 10 else None
    ctx.save_for_backward(*inputs[:3], residual)
    ctx.args = inputs[3:10]


def _backward(ctx, grad, pool=None):
    """Gradients of pool(act(conv(x) + residual)) by PyTorch ops, recomputing the pre-activation;
    the residual's gradient is the one reaching the pre-activation."""
    x, w, b, *rest = ctx.saved_tensors
    r = rest[0] if rest else None
    stride, padding, padding_str, dilation, groups, activation = ctx.args[:6]
    squeeze = x.dim() == 3
    if squeeze:
        x, grad = x.unsqueeze(0), grad.unsqueeze(0)
    spec = check_conv(x, w, b, stride, padding_str or padding, dilation, groups)
    # Same input padding as geometry.torch_padding: asymmetric 'same' pads bottom/right more.
    bottom = (spec.out_h - 1) * spec.stride_h + spec.dil_h * (spec.kernel_h - 1) + 1 - spec.height - spec.pad_h
    right = (spec.out_w - 1) * spec.stride_w + spec.dil_w * (spec.kernel_w - 1) + 1 - spec.width - spec.pad_w
    xp = F.pad(x, (spec.pad_w, max(right, 0), spec.pad_h, max(bottom, 0)))
    conv = dict(stride=[spec.stride_h, spec.stride_w], padding=[0, 0], dilation=[spec.dil_h, spec.dil_w])
    if activation or pool:
        z = F.conv2d(xp, w, b, groups=groups, **conv)
        if r is not None:
            z = z + (r.unsqueeze(0) if squeeze else r)
        if pool:
            y = functional._activate(z, activation or None)
            k, s, p = pool
            if ctx.args[6] == "max":
                idx = F.max_pool2d(y, k, s, p, return_indices=True)[1]
                grad = torch.ops.aten.max_pool2d_with_indices_backward(grad, y, k, s, p, [1, 1], False, idx)
            else:
                grad = torch.ops.aten.avg_pool2d_backward(grad, y, k, s, p, False, True, None)
        if activation == "relu":
            grad = torch.where(z > 0, grad, 0)
        elif activation == "relu6":
            grad = torch.where((z > 0) & (z < 6), grad, 0)
    need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], b is not None and ctx.needs_input_grad[2]]
    gx, gw, gb = torch.ops.aten.convolution_backward(
        grad, xp, w, None if b is None else [w.shape[0]], conv["stride"], conv["padding"],
        conv["dilation"], False, [0, 0], groups, need)
    if gx is not None:
        gx = gx[:, :, spec.pad_h:spec.pad_h + spec.height, spec.pad_w:spec.pad_w + spec.width]
        gx = gx.squeeze(0) if squeeze else gx
    gr = None
    if r is not None and ctx.needs_input_grad[-1]:
        gr = (grad.squeeze(0) if squeeze else grad).to(r.dtype)
    return gx, gw, gb, gr


def _conv2d_backward(ctx, grad):
    gx, gw, gb, gr = _backward(ctx, grad)
    return (gx, gw, gb) + (None,) * 7 + (gr,)


def _conv2d_pool_backward(ctx, grad):
    return _backward(ctx, grad, pool=ctx.args[7:10])[:3] + (None,) * 11


conv2d_op.register_autograd(_conv2d_backward, setup_context=_setup_conv2d_context)
conv2d_pool_op.register_autograd(_conv2d_pool_backward, setup_context=_setup_context)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           activation=None, residual=None, algo="auto"):
    """zeroskip.conv2d through the custom op (same arguments, same result, autocast included)."""
    input, weight, bias = functional.autocast_args(input, weight, bias)
    residual = functional.autocast_residual(residual, input)
    if residual is not None and not isinstance(residual, torch.Tensor):  # before the op's schema refuses it
        raise TypeError(f"residual must be a torch.Tensor or None, got {type(residual).__name__}")
    pad, pad_str = _padding_args(padding)
    return torch.ops.zeroskip.conv2d(input, weight, bias, list(pair(stride, "stride", 1)), pad, pad_str,
                                     list(pair(dilation, "dilation", 1)), groups,
                                     check_activation(activation) or "", algo, residual)


def conv2d_pool(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                activation="relu", pool="max", pool_size=2, pool_stride=None, pool_padding=0,
                algo="auto"):
    """zeroskip.conv2d_pool through the custom op (same arguments, same result, autocast included)."""
    input, weight, bias = functional.autocast_args(input, weight, bias)
    pad, pad_str = _padding_args(padding)
    size = list(pair(pool_size, "pool_size", 1))
    step = size if pool_stride is None else list(pair(pool_stride, "pool_stride", 1))
    return torch.ops.zeroskip.conv2d_pool(
        input, weight, bias, list(pair(stride, "stride", 1)), pad, pad_str,
        list(pair(dilation, "dilation", 1)), groups, check_activation(activation) or "", pool,
        size, step, list(pair(pool_padding, "pool_padding", 0)), algo)


@torch.library.custom_op("zeroskip::linear", mutates_args=())
def linear_op(input: Tensor, weight: Tensor, bias: Optional[Tensor], activation: str) -> Tensor:
    from .kernels import linear as kernel
    with torch.autocast(input.device.type, enabled=False):
        return kernel.linear(input, weight, bias, activation or None).contiguous()


@linear_op.register_fake
def _linear_fake(input, weight, bias, activation):
    check_activation(activation or None)
    return input.new_empty((*input.shape[:-1], weight.shape[0]))


def _setup_linear_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:3])
    ctx.activation = inputs[3]


def _linear_backward(ctx, grad):
    x, w, b = ctx.saved_tensors
    if ctx.activation:
        z = F.linear(x, w, b)
        keep = (z > 0) & (z < 6) if ctx.activation == "relu6" else z > 0
        grad = torch.where(keep, grad, 0)
    gx = grad @ w if ctx.needs_input_grad[0] else None
    flat = grad.reshape(-1, grad.shape[-1])
    gw = flat.t() @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
    gb = flat.sum(0) if b is not None and ctx.needs_input_grad[2] else None
    return gx, gw, gb, None


linear_op.register_autograd(_linear_backward, setup_context=_setup_linear_context)


def linear(input, weight, bias=None, *, activation=None):
    """act(F.linear(input, weight, bias)) through the custom op: kernels/linear.py where it was measured
    faster (fp16/bf16, small batch), F.linear elsewhere; autocast casts as F.linear's."""
    input, weight, bias = functional.autocast_args(input, weight, bias)
    return torch.ops.zeroskip.linear(input, weight, bias, check_activation(activation) or "")
