"""Argument checks and output-size arithmetic shared by the ops, the kernels and the formats.

Every error names the argument and the value it got, so a user can find the bad call.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

ACTIVATIONS = (None, "relu", "relu6")
POOLS = ("max", "avg")
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_WINDOW = 256  # pool window positions one fused kernel tile holds (16x16)


def pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum, as a pair."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        items = tuple(value)
    else:
        items = (value, value)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return items


@dataclass(frozen=True)
class ConvSpec:
    """The geometry of one convolution (and of the pooling that may follow it).

    pad_h/pad_w are the top/left paddings; out_h/out_w already account for any
    asymmetric padding ("same" with an even kernel pads more at the bottom/right).
    Without pooling, pool_* describe the identity pool (1x1 window, stride 1).
    """
    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    groups: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    dil_h: int
    dil_w: int
    out_h: int
    out_w: int
    pool: str | None = None
    pool_kh: int = 1
    pool_kw: int = 1
    pool_sh: int = 1
    pool_sw: int = 1
    pool_ph: int = 0
    pool_pw: int = 0
    pooled_h: int = 0
    pooled_w: int = 0

    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def reduction(self) -> int:
        """Length of one window's dot product: channels per group x kernel area."""
        return self.in_per_group * self.kernel_h * self.kernel_w

    @property
    def result_h(self) -> int:
        return self.pooled_h if self.pool else self.out_h

    @property
    def result_w(self) -> int:
        return self.pooled_w if self.pool else self.out_w

    @property
    def window_rows(self) -> int:
        """Rows one result pixel takes in a fused kernel tile: the pool window's area rounded up
        to a power of 2 (1 without a pool)."""
        return 1 << (self.pool_kh * self.pool_kw - 1).bit_length() if self.pool else 1

    @property
    def flops(self) -> int:
        """Dense multiply-add count x 2 of the convolution (pooling not counted)."""
        return 2 * self.batch * self.out_channels * self.out_h * self.out_w * self.reduction


def _padding(padding, kernel, dilation, stride):
    """Returns (top, left, total_h, total_w) for an int, pair, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            return total[0] // 2, total[1] // 2, total[0], total[1]
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    ph, pw = pair(padding, "padding", 0)
    return ph, pw, 2 * ph, 2 * pw


def check_conv(input, weight, bias, stride, padding, dilation, groups) -> ConvSpec:
    """Validates a conv2d call the way F.conv2d would, with errors that name the argument."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if input.dim() != 4:
        raise ValueError(f"input must be 4-D (N, C, H, W), got shape {tuple(input.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {tuple(weight.shape)}")
    if not input.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor, got dtype {input.dtype}")
    if weight.dtype != input.dtype:
        raise TypeError(f"weight dtype {weight.dtype} does not match input dtype {input.dtype}")
    if weight.device != input.device:
        raise ValueError(f"weight is on {weight.device} but input is on {input.device}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    n, c, h, w = input.shape
    cout, cin_g, kh, kw = weight.shape
    if c % groups:
        raise ValueError(f"input channels {c} are not divisible by groups={groups}")
    if cout % groups:
        raise ValueError(f"weight out-channels {cout} are not divisible by groups={groups}")
    if cin_g * groups != c:
        raise ValueError(
            f"weight expects {cin_g} channels per group x groups={groups} = {cin_g * groups} "
            f"input channels, but input has {c}")
    if min(kh, kw) < 1 or cout < 1:
        raise ValueError(f"weight shape {tuple(weight.shape)} has an empty dimension")
    # An empty batch is fine (an empty result, as F.conv2d's). Zero input channels are refused: each
    # output would be its bias alone, but F.conv2d returns an empty (N, 0, H', W') tensor there.
    if c < 1:
        raise ValueError(f"input has 0 channels (shape {tuple(input.shape)}): at least one is needed "
                         f"(F.conv2d returns an empty (N, 0, H', W') tensor here, not the bias)")
    if min(h, w) < 1:
        raise ValueError(f"input height and width must be >= 1, got shape {tuple(input.shape)}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if bias.shape != (cout,):
            raise ValueError(f"bias must have shape ({cout},), got {tuple(bias.shape)}")
        if bias.dtype != input.dtype:
            raise TypeError(f"bias dtype {bias.dtype} does not match input dtype {input.dtype}")
        if bias.device != input.device:
            raise ValueError(f"bias is on {bias.device} but input is on {input.device}")
    sh, sw = pair(stride, "stride", 1)
    dh, dw = pair(dilation, "dilation", 1)
    ph, pw, th, tw = _padding(padding, (kh, kw), (dh, dw), (sh, sw))
    oh = (h + th - dh * (kh - 1) - 1) // sh + 1
    ow = (w + tw - dw * (kw - 1) - 1) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(
            f"output size would be {oh}x{ow}: input {h}x{w}, kernel {kh}x{kw}, stride {(sh, sw)}, "
            f"padding {padding!r}, dilation {(dh, dw)}")
    return ConvSpec(n, c, h, w, cout, groups, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)


def check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation


def with_pool(spec: ConvSpec, pool, pool_size, pool_stride, pool_padding) -> ConvSpec:
    """Adds F.max_pool2d / F.avg_pool2d geometry (floor mode) to a conv spec."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    pkh, pkw = pair(pool_size, "pool_size", 1)
    psh, psw = pair(pool_size if pool_stride is None else pool_stride, "pool_stride", 1)
    pph, ppw = pair(pool_padding, "pool_padding", 0)
    if 2 * pph > pkh or 2 * ppw > pkw:
        raise ValueError(f"pool_padding must be at most half of pool_size {(pkh, pkw)}, got {pool_padding!r}")
    qh = (spec.out_h + 2 * pph - pkh) // psh + 1
    qw = (spec.out_w + 2 * ppw - pkw) // psw + 1
    if qh < 1 or qw < 1:
        raise ValueError(
            f"pooled size would be {qh}x{qw}: conv output {spec.out_h}x{spec.out_w}, pool_size {(pkh, pkw)}, "
            f"pool_stride {(psh, psw)}, pool_padding {(pph, ppw)}")
    from dataclasses import replace
    return replace(spec, pool=pool, pool_kh=pkh, pool_kw=pkw, pool_sh=psh, pool_sw=psw,
                   pool_ph=pph, pool_pw=ppw, pooled_h=qh, pooled_w=qw)


def without_pool(spec: ConvSpec) -> ConvSpec:
    """spec's convolution alone (the identity pool)."""
    from dataclasses import replace
    return replace(spec, pool=None, pool_kh=1, pool_kw=1, pool_sh=1, pool_sw=1, pool_ph=0, pool_pw=0,
                   pooled_h=0, pooled_w=0)


def pool_recompute(spec: ConvSpec) -> float:
    """Conv outputs a fused-pool kernel computes per conv output: its tile rows (window_rows per
    pooled pixel) over the conv map. 1.0 for VGG's 2x2/2 pool; 4.0 for ResNet's 3x3/2 pool after
    its 112x112 stem (overlapping windows, 9 rows padded to 16)."""
    return spec.window_rows * spec.pooled_h * spec.pooled_w / (spec.out_h * spec.out_w) if spec.pool else 1.0


def torch_padding(input, spec):
    """(input, padding) for torch's convs, which take symmetric padding only: asymmetric 'same'
    pads the input's bottom/right first. Fewer rows than the top padding at the bottom is fine:
    the convs' floor drops them."""
    th = (spec.out_h - 1) * spec.stride_h + spec.dil_h * (spec.kernel_h - 1) + 1 - spec.height
    tw = (spec.out_w - 1) * spec.stride_w + spec.dil_w * (spec.kernel_w - 1) + 1 - spec.width
    bottom, right = max(th - spec.pad_h, 0), max(tw - spec.pad_w, 0)
    if bottom > spec.pad_h or right > spec.pad_w:
        return F.pad(input, (spec.pad_w, right, spec.pad_h, bottom)), (0, 0)
    return input, (spec.pad_h, spec.pad_w)


def torch_pool(y, spec):
    """spec's pool (F.max_pool2d / F.avg_pool2d) of y."""
    k, s, p = (spec.pool_kh, spec.pool_kw), (spec.pool_sh, spec.pool_sw), (spec.pool_ph, spec.pool_pw)
    if spec.pool == "max":
        return F.max_pool2d(y, k, s, p)
    return F.avg_pool2d(y, k, s, p)
