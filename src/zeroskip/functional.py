"""The ops: F.conv2d-shaped signatures, argument checks, then one kernel picked by `dispatch`.

conv2d(...)      == act(F.conv2d(...))
conv2d(..., residual=r) == act(F.conv2d(...) + r)   (ResNet's block end; r of the output's shape)
conv2d_pool(...) == pool(act(F.conv2d(...)))   (F.max_pool2d / F.avg_pool2d, floor mode)

Empty calls: an empty batch gives F.conv2d's empty result (then pooled) whatever the algo; zero
input channels, an empty map and an empty weight raise ValueError (F.conv2d returns an empty
(N, 0, H', W') tensor for zero input channels rather than the bias, and raises for the others).

Semantics that differ from cuDNN by design: a zero-skipping algo never multiplies a skipped
zero, so `0 * inf` and `0 * nan` in the weight contribute 0 where cuDNN gives NaN. A NaN or
inf in the *input* is never skipped (it is not zero) and propagates as usual.

Under torch.autocast the ops cast as F.conv2d does (autocast_args), and a residual to the conv's
dtype, so the result keeps it (eager's `conv + r` with an fp32 r would promote to fp32); the kernels are for
inference: they have no backward (see _inference_only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import dispatch
from .geometry import check_activation, check_conv, torch_padding, torch_pool, with_pool
from .kernels import KERNELS, weight_cache

_CASTABLE = (torch.float32, torch.float16, torch.bfloat16)  # autocast leaves float64 alone, as for F.conv2d


def _activate(y, activation):
    if activation == "relu":
        return F.relu(y)
    if activation == "relu6":
        return F.relu6(y)
    return y


def _add_activate(y, residual, activation):
    """act(y + residual) for a y that no one else holds: in place unless autograd records."""
    if torch.is_grad_enabled() and (y.requires_grad or residual.requires_grad):
        return _activate(y + residual, activation)
    y.add_(residual)
    if activation == "relu":
        return y.relu_()
    return F.relu6(y, inplace=True) if activation == "relu6" else y


def _check_residual(residual, input, spec, squeeze):
    """residual must be a tensor of the output's shape, dtype and device (no broadcasting)."""
    if not isinstance(residual, torch.Tensor):
        raise TypeError(f"residual must be a torch.Tensor or None, got {type(residual).__name__}")
    shape = (spec.batch, spec.out_channels, spec.out_h, spec.out_w)[1 if squeeze else 0:]
    if tuple(residual.shape) != shape:
        raise ValueError(f"residual must have the output's shape {shape}, got {tuple(residual.shape)}")
    if residual.dtype != input.dtype:
        raise ValueError(f"residual must have the input's dtype {input.dtype}, got {residual.dtype}")
    if residual.device != input.device:
        raise ValueError(f"residual must be on the input's device {input.device}, got {residual.device}")
    return residual.unsqueeze(0) if squeeze else residual


def autocast_residual(residual, input):
    """residual cast to the (autocast) input's dtype where autocast casts the conv: the result stays in it."""
    if (isinstance(residual, torch.Tensor) and isinstance(input, torch.Tensor) and residual.dtype != input.dtype
            and residual.dtype in _CASTABLE and _autocast_dtype(input.device.type) == input.dtype):
        return residual.to(input.dtype)
    return residual


def _torch_conv(input, weight, bias, spec, activation):
    input, padding = torch_padding(input, spec)
    y = F.conv2d(input, weight, bias, (spec.stride_h, spec.stride_w), padding,
                 (spec.dil_h, spec.dil_w), spec.groups)
    return _activate(y, activation)


def _inference_only(name, algo, *tensors):
    """The kernels have no backward. Where autograd is recording, "auto" takes the torch path and
    an explicit kernel algo raises, rather than returning a tensor that silently has no grad_fn.
    (zeroskip.nn modules call the ops through custom ops whose backward recomputes with PyTorch.)"""
    if name == "torch" or not torch.is_grad_enabled():
        return name
    if not any(t is not None and t.requires_grad for t in tensors):
        return name
    if algo == "auto":
        return "torch"
    raise RuntimeError(
        f"algo={algo!r} has no backward and an argument requires grad: call it under torch.no_grad() or "
        f"torch.inference_mode(), use algo='torch', or use zeroskip.nn modules (they recompute gradients)")


def autocast_args(input, weight, bias):
    """(input, weight, bias) cast as F.conv2d's are under torch.autocast for the input's device: each
    fp32/fp16/bf16 tensor to the autocast dtype. The weight's and bias's casts are cached like their
    packed layouts (kernels/weight_cache.py), so an autocast call runs at the speed of half inputs."""
    dtype = _autocast_dtype(input.device.type)
    if dtype is None:
        return input, weight, bias

    def cast(t, cache):
        if t is None or t.dtype == dtype or t.dtype not in _CASTABLE:
            return t
        # a cast recorded by autograd, or traced by torch.compile, is made fresh each call
        if not cache or torch.compiler.is_compiling() or (torch.is_grad_enabled() and t.requires_grad):
            return t.to(dtype)
        return weight_cache.cached(t, ("autocast", dtype), t.to, dtype)

    return cast(input, False), cast(weight, True), cast(bias, True)


def _autocast_dtype(device: str):
    """The dtype autocast casts to on this device type, None where it is off."""
    try:
        return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    except RuntimeError:  # a device type without autocast
        return None


def _unbatched(input):
    if isinstance(input, torch.Tensor) and input.dim() == 3:
        return input.unsqueeze(0), True
    if isinstance(input, torch.Tensor) and input.dim() != 4:
        raise ValueError(f"input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {tuple(input.shape)}")
    return input, False


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           activation=None, residual=None, algo="auto"):
    """act(F.conv2d(input, weight, bias, stride, padding, dilation, groups) + residual).

    activation: None, "relu" or "relu6".  residual: None or a tensor of the output's shape, dtype
    and device, added before the activation (the direct kernels read it in their epilogue).
    algo: see `zeroskip.ALGOS`; "auto" picks one.
    """
    if isinstance(input, torch.Tensor) and isinstance(weight, torch.Tensor):
        input, weight, bias = autocast_args(input, weight, bias)
        residual = autocast_residual(residual, input)
    return conv2d_uncast(input, weight, bias, stride, padding, dilation, groups, activation=activation,
                         residual=residual, algo=algo)


def conv2d_uncast(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                  activation=None, residual=None, algo="auto"):
    """conv2d without autocast's casts (the custom op's body: its output dtype is its input's)."""
    input, squeeze = _unbatched(input)
    spec = check_conv(input, weight, bias, stride, padding, dilation, groups)
    check_activation(activation)
    if residual is not None:
        residual = _check_residual(residual, input, spec, squeeze)
    name = _inference_only(dispatch.choose(algo, input, spec, activation), algo, input, weight, bias, residual)
    if residual is None:
        if name == "torch" or spec.batch == 0:  # an empty batch: F.conv2d's empty result, no launch
            out = _torch_conv(input, weight, bias, spec, activation)
        else:
            out = KERNELS[name].conv(input, weight, bias, spec, activation, name)
    elif name != "torch" and spec.batch > 0 and getattr(KERNELS[name], "RESIDUAL", False):
        out = KERNELS[name].conv(input, weight, bias, spec, activation, name, residual=residual)
    else:  # a family without the residual in its epilogue: added after the conv
        if name == "torch" or spec.batch == 0:
            out = _torch_conv(input, weight, bias, spec, None)
        else:
            out = KERNELS[name].conv(input, weight, bias, spec, None, name)
        out = _add_activate(out, residual, activation)
    return out.squeeze(0) if squeeze else out


def conv2d_pool(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                activation="relu", pool="max", pool_size=2, pool_stride=None, pool_padding=0,
                algo="auto"):
    """pool(act(F.conv2d(...))), in one kernel where the algo fuses the pool: the conv output never
    goes to memory. Where fused tiles would recompute conv outputs (overlapping windows, e.g. 3x3/2),
    im2col and igemm also time the conv alone followed by its pool (kernels/pool.after) and keep the
    faster; "cudnn" always pools after its conv.

    pool: "max" or "avg" (F.max_pool2d / F.avg_pool2d semantics, floor mode, avg counts padding).
    pool_stride None means pool_size. Overlapping and non-tiling windows are allowed.
    """
    if isinstance(input, torch.Tensor) and isinstance(weight, torch.Tensor):
        input, weight, bias = autocast_args(input, weight, bias)
    return conv2d_pool_uncast(input, weight, bias, stride, padding, dilation, groups, activation=activation,
                              pool=pool, pool_size=pool_size, pool_stride=pool_stride,
                              pool_padding=pool_padding, algo=algo)


def conv2d_pool_uncast(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                       activation="relu", pool="max", pool_size=2, pool_stride=None, pool_padding=0,
                       algo="auto"):
    """conv2d_pool without autocast's casts (the custom op's body)."""
    input, squeeze = _unbatched(input)
    spec = check_conv(input, weight, bias, stride, padding, dilation, groups)
    check_activation(activation)
    spec = with_pool(spec, pool, pool_size, pool_stride, pool_padding)
    name = _inference_only(dispatch.choose(algo, input, spec, activation), algo, input, weight, bias)
    if name == "torch" or spec.batch == 0:
        out = torch_pool(_torch_conv(input, weight, bias, spec, activation), spec)
    else:
        out = KERNELS[name].conv(input, weight, bias, spec, activation, name)
    return out.squeeze(0) if squeeze else out
