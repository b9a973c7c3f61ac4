"""Depthwise convs (one input channel per group: MobileNet's 3x3 stride 1 and 2), bias, residual and
activation fused: one kernel where F.conv2d followed by the bias/BN and ReLU6 takes two or three.

A depthwise conv does KH*KW multiply-adds per output: no reduction for a tensor core to share, so
each program computes a (pixels x channels) tile with fp32 FMAs on the CUDA cores, tap by tap. In
channels_last a tap's loads run along the channels (coalesced); NCHW input is read through its
strides (correct, not tuned). Products are fp32 whatever the input dtype, so fp32 is exact fp32
(TF32 plays no part). Output channel c reads input channel c // multiplier. No pool.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .. import runtime
from ..runtime import graph_ms, tuner_cache
from .implicit_gemm import _activate
from .launch import ACT, result, span

RESIDUAL = True


@triton.jit
def _depthwise_kernel(
    x_ptr, w_ptr, b_ptr, r_ptr, y_ptr, M, C_OUT, H, W, OH, OW,
    sxn, sxc, sxh, sxw, swo, swh, sww, sb, srn, src, srh, srw, syn, syc, syh, syw,
    KH: tl.constexpr, KW: tl.constexpr, MULT: tl.constexpr, stride_h: tl.constexpr, stride_w: tl.constexpr,
    pad_h: tl.constexpr, pad_w: tl.constexpr, dil_h: tl.constexpr, dil_w: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, ACTIVATION: tl.constexpr, BIG: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    pmask, cmask = p < M, c < C_OUT
    if BIG:
        p, c = p.to(tl.int64), c.to(tl.int64)
    ow = p % OW
    t = p // OW
    oh = t % OH
    n = t // OH
    ci = c // MULT
    x_pix = n * sxn
    x_chan = (ci * sxc)[None, :]
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for kh in tl.static_range(KH):
        ih = oh * stride_h - pad_h + kh * dil_h
        for kw in tl.static_range(KW):
            iw = ow * stride_w - pad_w + kw * dil_w
            ok = pmask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            xv = tl.load(x_ptr + (x_pix + ih * sxh + iw * sxw)[:, None] + x_chan,
                         mask=ok[:, None] & cmask[None, :], other=0.0)
            wv = tl.load(w_ptr + c * swo + kh * swh + kw * sww, mask=cmask, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    mask = pmask[:, None] & cmask[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + c * sb, mask=cmask, other=0.0).to(tl.float32)[None, :]
    if HAS_RES:
        r = tl.load(r_ptr + (n * srn + oh * srh + ow * srw)[:, None] + (c * src)[None, :], mask=mask, other=0.0)
        acc += r.to(tl.float32)
    acc = _activate(acc, ACTIVATION)
    y_off = (n * syn + oh * syh + ow * syw)[:, None] + (c * syc)[None, :]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask)


# (pixels, channels, warps): channel tiles of 32-128 elements so one tap's load is one or a few
# 128-byte lines per pixel in channels_last; the tuner keys on the channel count and map size.
_depthwise_tuned = triton.autotune(configs=[
    triton.Config({"BLOCK_P": bp, "BLOCK_C": bc}, num_warps=w)
    for bp, bc, w in [(32, 64, 4), (64, 64, 4), (128, 32, 4), (16, 128, 4), (64, 128, 8), (128, 64, 8),
                      (8, 128, 2)]
], key=["M", "C_OUT", "OH", "OW", "sxc"], do_bench=graph_ms, **tuner_cache())(_depthwise_kernel)


def supports(spec, input, activation) -> str | None:
    """One input channel per group (depthwise, any channel multiplier), no pool."""
    if spec.in_per_group != 1:
        return (f"needs one input channel per group (depthwise), got {spec.in_per_group} "
                f"(in_channels {spec.in_channels}, groups {spec.groups})")
    if spec.pool:
        return f"fuses no pool, got pool={spec.pool!r}"
    return None


def conv(x, weight, bias, spec, activation, algo="depthwise", residual=None, tiles=None):
    """act(depthwise conv(x) + bias [+ residual]) into a new output in x's memory format. tiles =
    (BLOCK_P, BLOCK_C, num_warps) fixes the launch; without it the tiles are tuned (the interpreter:
    64x64, untuned, since it costs ~9 ms per program whatever its size)."""
    why = supports(spec, x, activation)
    if why is not None:
        raise ValueError(f"algo={algo!r} cannot run this call: {why} (use algo='torch')")
    y = result(x, spec)
    m_total = spec.batch * spec.out_h * spec.out_w
    r = residual if residual is not None else y
    big = max(span(x), span(y), span(weight), span(r)) >= 2**31
    args = (x, weight, bias if bias is not None else y, r, y, m_total, spec.out_channels, spec.height, spec.width,
            spec.out_h, spec.out_w, *x.stride(), weight.stride(0), weight.stride(2), weight.stride(3),
            bias.stride(0) if bias is not None else 0, *r.stride(), *y.stride())
    switches = dict(KH=spec.kernel_h, KW=spec.kernel_w, MULT=spec.out_per_group, stride_h=spec.stride_h,
                    stride_w=spec.stride_w, pad_h=spec.pad_h, pad_w=spec.pad_w, dil_h=spec.dil_h, dil_w=spec.dil_w,
                    HAS_BIAS=bias is not None, HAS_RES=residual is not None, ACTIVATION=ACT[activation], BIG=big)
    if tiles is None and runtime.interpreting():
        tiles = (64, 64, 4)
    if tiles is not None:
        bp, bc, warps = tiles
        grid = (triton.cdiv(m_total, bp), triton.cdiv(spec.out_channels, bc))
        _depthwise_kernel[grid](*args, **switches, BLOCK_P=bp, BLOCK_C=bc, num_warps=warps)
        return y
    grid = lambda meta: (triton.cdiv(m_total, meta["BLOCK_P"]),  # noqa: E731
                         triton.cdiv(spec.out_channels, meta["BLOCK_C"]))
    _depthwise_tuned[grid](*args, **switches)
    return y
