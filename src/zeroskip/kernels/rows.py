"""3x3 stride-1 convolution (+ bias, activation, 2x2/2 max pool) that loads each input row once
for several output rows.

The direct kernel (implicit_gemm.py) loads one [pixels, channels] input tile per kernel tap: nine
loads of nearly the same pixels per output tile, all from L2. Here a program computes R output
rows of SEG pixels each. For a column tap kw and a chunk of channels it loads the R + 2 input rows
those outputs read (shifted by kw) and multiplies each into the accumulators of the up to three
output rows that use it: (R + 2) / (3 R) of the direct kernel's input loads, half at R = 4. The
weight tile of each tap is also shared by R rows of SEG pixels.

Output tiles are SEG pixels wide; a row whose width is not a multiple of SEG computes masked
pixels in its last tile (VGG-19's 224 and 112 with SEG 64: 12.5%).

It is one of the dense path's measured options (direct.py's Option "rows", split_k.pick): the first call of a
layer shape times it against the direct kernel's tuned tiles and keeps the faster. On VGG-19
(H200, bf16, same run, benchmarks/rows-ab-h200.txt) it wins on features.2 (64 channels,
224x224): conv + relu + pool 371.6 -> 294.7 us at batch 32
(fp16 364.1 -> 306.0), 13.0 -> 11.4 at batch 1; the conv alone 335.0 -> 296.1 at batch 32. On
features.7 (128 channels) the direct kernel's 128x128 tiles stay ahead (238.8 against 264.9 us).

Input channels_last, 16-bit; the weight packed with output channels contiguous
(launch.packed_weight); groups 1.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..geometry import ACTIVATIONS
from .implicit_gemm import _activate, _max_keep_nan
from ..runtime import graph_ms, tuner_cache


@triton.jit
def _strip(row_ptr, iy, ix, c, H: tl.constexpr, W: tl.constexpr, C: tl.constexpr, sxh: tl.constexpr,
           sxw: tl.constexpr, sxc: tl.constexpr, UPCAST: tl.constexpr):
    """Input row iy at columns ix, channels c: [SEG, BLOCK_K], zeros outside the map."""
    ok = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    a = tl.load(row_ptr + (iy * sxh + ix * sxw)[:, None] + (c * sxc)[None, :], mask=ok[:, None] & (c < C)[None, :],
                other=0.0)
    if UPCAST:  # the interpreter's bf16 dot is wrong
        a = a.to(tl.float32)
    return a


@triton.jit
def _tap(w_ptr, kh: tl.constexpr, kw, c, o, C: tl.constexpr, COUT: tl.constexpr, swc: tl.constexpr,
         swh: tl.constexpr, sww: tl.constexpr, UPCAST: tl.constexpr):
    b = tl.load(w_ptr + (kh * swh + kw * sww) + (c * swc)[:, None] + o[None, :],
                mask=(c < C)[:, None] & (o < COUT)[None, :], other=0.0)
    if UPCAST:
        b = b.to(tl.float32)
    return b


@triton.jit
def _finish(acc, bias, ACTIVATION: tl.constexpr):
    return _activate(acc + bias[None, :], ACTIVATION)


@triton.jit
def _store_row(y_ptr, acc0, acc1, yy, x0, o, OH: tl.constexpr, OW: tl.constexpr, PH: tl.constexpr,
               PW: tl.constexpr, COUT: tl.constexpr,
               syh: tl.constexpr, syw: tl.constexpr, syc: tl.constexpr, POOL: tl.constexpr, SEG: tl.constexpr,
               BLOCK_N: tl.constexpr):
    """Stores output rows yy and yy + 1 (acc0, acc1), or with POOL their 2x2/2 max-pooled row yy // 2."""
    if POOL:
        v = _max_keep_nan(acc0, acc1)
        v = tl.reduce(tl.reshape(v, [SEG // 2, 2, BLOCK_N]), 1, _max_keep_nan)
        px = x0 // 2 + tl.arange(0, SEG // 2)
        ok = (px < PW)[:, None] & (o < COUT)[None, :] & (yy // 2 < PH)
        tl.store(y_ptr + (yy // 2) * syh + (px * syw)[:, None] + (o * syc)[None, :],
                 v.to(y_ptr.dtype.element_ty), mask=ok)
    else:
        px = x0 + tl.arange(0, SEG)
        ok = (px < OW)[:, None] & (o < COUT)[None, :]
        tl.store(y_ptr + yy * syh + (px * syw)[:, None] + (o * syc)[None, :],
                 acc0.to(y_ptr.dtype.element_ty), mask=ok & (yy < OH))
        tl.store(y_ptr + (yy + 1) * syh + (px * syw)[:, None] + (o * syc)[None, :],
                 acc1.to(y_ptr.dtype.element_ty), mask=ok & (yy + 1 < OH))


@triton.jit
def _rows_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, N,  # N (the batch) only keys the tile choice
    C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, COUT: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
    PH: tl.constexpr, PW: tl.constexpr, sxn: tl.constexpr, sxc: tl.constexpr, sxh: tl.constexpr, sxw: tl.constexpr,
    swc: tl.constexpr, swh: tl.constexpr, sww: tl.constexpr,
    syn: tl.constexpr, syc: tl.constexpr, syh: tl.constexpr, syw: tl.constexpr, sb: tl.constexpr,
    pad_h: tl.constexpr, pad_w: tl.constexpr,
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, POOL: tl.constexpr, UPCAST: tl.constexpr,
    R: tl.constexpr, SEG: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    tl.static_assert(R == 2 or R == 4, "R: 2 or 4 output rows per program (the accumulators are written out)")
    SEGS: tl.constexpr = (OW + SEG - 1) // SEG
    BANDS: tl.constexpr = (OH + R - 1) // R
    # output-channel blocks vary fastest: the programs that read the same input rows run together
    NB: tl.constexpr = (COUT + BLOCK_N - 1) // BLOCK_N
    pid = tl.program_id(0)
    nb = pid % NB
    t = pid // NB
    seg = t % SEGS
    t = t // SEGS
    band = t % BANDS
    n = t // BANDS
    o = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    x0 = seg * SEG
    y0 = band * R
    row_ptr = x_ptr + n.to(tl.int64) * sxn
    kc = tl.arange(0, BLOCK_K)
    i = tl.arange(0, SEG)
    acc0 = tl.zeros([SEG, BLOCK_N], dtype=tl.float32)
    acc1 = tl.zeros([SEG, BLOCK_N], dtype=tl.float32)
    acc2 = tl.zeros([SEG, BLOCK_N], dtype=tl.float32)
    acc3 = tl.zeros([SEG, BLOCK_N], dtype=tl.float32)
    NCH: tl.constexpr = (C + BLOCK_K - 1) // BLOCK_K
    iy = y0 - pad_h
    for it in range(3 * NCH):
        kw = it // NCH
        c = (it - kw * NCH) * BLOCK_K + kc
        ix = x0 + i + kw - pad_w
        w0 = _tap(w_ptr, 0, kw, c, o, C, COUT, swc, swh, sww, UPCAST)
        w1 = _tap(w_ptr, 1, kw, c, o, C, COUT, swc, swh, sww, UPCAST)
        w2 = _tap(w_ptr, 2, kw, c, o, C, COUT, swc, swh, sww, UPCAST)
        a0 = _strip(row_ptr, iy, ix, c, H, W, C, sxh, sxw, sxc, UPCAST)
        a1 = _strip(row_ptr, iy + 1, ix, c, H, W, C, sxh, sxw, sxc, UPCAST)
        a2 = _strip(row_ptr, iy + 2, ix, c, H, W, C, sxh, sxw, sxc, UPCAST)
        a3 = _strip(row_ptr, iy + 3, ix, c, H, W, C, sxh, sxw, sxc, UPCAST)
        acc0 = tl.dot(a0, w0, acc0)
        acc0 = tl.dot(a1, w1, acc0)
        acc0 = tl.dot(a2, w2, acc0)
        acc1 = tl.dot(a1, w0, acc1)
        acc1 = tl.dot(a2, w1, acc1)
        acc1 = tl.dot(a3, w2, acc1)
        if R == 4:
            a4 = _strip(row_ptr, iy + 4, ix, c, H, W, C, sxh, sxw, sxc, UPCAST)
            a5 = _strip(row_ptr, iy + 5, ix, c, H, W, C, sxh, sxw, sxc, UPCAST)
            acc2 = tl.dot(a2, w0, acc2)
            acc2 = tl.dot(a3, w1, acc2)
            acc2 = tl.dot(a4, w2, acc2)
            acc3 = tl.dot(a3, w0, acc3)
            acc3 = tl.dot(a4, w1, acc3)
            acc3 = tl.dot(a5, w2, acc3)
    if HAS_BIAS:
        bias = tl.load(b_ptr + o * sb, mask=o < COUT, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BLOCK_N], dtype=tl.float32)
    out_ptr = y_ptr + n.to(tl.int64) * syn
    _store_row(out_ptr, _finish(acc0, bias, ACTIVATION), _finish(acc1, bias, ACTIVATION), y0, x0, o, OH, OW,
               PH, PW, COUT, syh, syw, syc, POOL, SEG, BLOCK_N)
    if R == 4:
        _store_row(out_ptr, _finish(acc2, bias, ACTIVATION), _finish(acc3, bias, ACTIVATION), y0 + 2, x0, o, OH,
                   OW, PH, PW, COUT, syh, syw, syc, POOL, SEG, BLOCK_N)


def _configs(shapes):
    return [triton.Config({"R": r, "SEG": s, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=st)
            for r, s, n, k, w, st in shapes]


# (R, SEG, BLOCK_N, BLOCK_K, warps, stages). Each config alone, bf16 conv + relu + pool (H200, same
# run, benchmarks/rows-ab-h200.txt), features.2 / .7 at batch 32: 4x64x64x32 on 2 stages 285.8 /
# 261.5 us, on 3 stages 312.2 / 282.8, on 4 stages 418.9 / 368.6; 2x64x64x32 358.2 / 312.9;
# 2x64x128x32 on 2 stages - / 275.4; at batch 1 4x64x64x32 on 3 stages 11.4 us (features.2) and
# 2x64x64x32 11.6 (features.7) were fastest. 8 warps lost everywhere. SEG 64 on 8 warps ran 2.4-4.7x
# slower: Triton 3.6 gives the accumulators of its 64-row dots two wgmma layouts
# (warpsPerCTA [4, 2] and [8, 1]) and converts them through shared memory in every iteration (4-8
# convert_layout ops inside the loop in the sm_90 TTGIR, none on 4 warps).
# SEG 128 on 8 warps has no such conversion and still lost (387.3 / 337.0). BLOCK_N 32 and BLOCK_K 16
# lost too (433.3 and 328.3 on features.2).
TILES = ((4, 64, 64, 32, 4, 2), (4, 64, 64, 32, 4, 3), (2, 64, 64, 32, 4, 3), (2, 64, 128, 32, 4, 2))
_tuned = triton.autotune(configs=_configs(TILES), key=["N", "C", "COUT", "H", "W", "POOL"], do_bench=graph_ms,
                         **tuner_cache())(_rows_kernel)


def supports(spec, x: torch.Tensor, activation) -> str | None:
    """None if this kernel runs the call: 16-bit channels_last input, a 3x3 stride-1 undilated
    ungrouped conv, no pool or a 2x2/2 max pool without padding, an activation it knows."""
    pool = (spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw)
    if x.dtype not in (torch.float16, torch.bfloat16) or not x.is_contiguous(memory_format=torch.channels_last):
        return f"input {x.dtype}, strides {x.stride()}: it needs 16-bit channels_last input"
    if (spec.kernel_h, spec.kernel_w, spec.stride_h, spec.stride_w, spec.dil_h, spec.dil_w, spec.groups) != (
            3, 3, 1, 1, 1, 1, 1):
        return "it needs a 3x3 kernel, stride 1, dilation 1, groups=1"
    if spec.pool is not None and not (spec.pool == "max" and pool == (2, 2, 2, 2, 0, 0)):
        return "it fuses only a 2x2/2 max pool without padding"
    if activation not in ACTIVATIONS:
        return f"activation {activation!r}"
    return None


def conv(x, w, bias, y, spec, activation: int, interpreting: bool = False, config=None):
    """y = [max_pool2d(2, 2)](activation(conv2d(x, w) + bias)) for a call it supports(); w packed
    (launch.packed_weight, output channels contiguous); y allocated by the caller, any layout.
    activation: 0 none, 1 relu, 2 relu6. config: (R, SEG, BLOCK_N, BLOCK_K, warps, stages), else
    tuned per layer shape."""
    b = bias if bias is not None else y
    args = (x, w, b, y, spec.batch, spec.in_channels, spec.height, spec.width, spec.out_channels, spec.out_h, spec.out_w,
            spec.pooled_h, spec.pooled_w, *x.stride(), *w.stride()[1:], *y.stride(),
            bias.stride(0) if bias is not None else 0, spec.pad_h, spec.pad_w)
    flags = dict(HAS_BIAS=bias is not None, ACTIVATION=activation, POOL=spec.pool is not None,
                 UPCAST=interpreting and x.dtype == torch.bfloat16)
    programs = lambda r, seg, bn: (spec.batch * triton.cdiv(spec.out_h, r) * triton.cdiv(spec.out_w, seg)  # noqa: E731
                                   * triton.cdiv(spec.out_channels, bn),)
    if interpreting or config is not None:
        r, seg, bn, bk, warps, stages = config or (4, 64, 64, 64, 1, 1)
        _rows_kernel[programs(r, seg, bn)](*args, **flags, R=r, SEG=seg, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps,
                                           num_stages=stages)
        return y
    _tuned[lambda meta: programs(meta["R"], meta["SEG"], meta["BLOCK_N"])](*args, **flags)
    return y
