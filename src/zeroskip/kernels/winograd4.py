"""Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions: 4x fewer multiplies than direct.

The same three steps as winograd.py's F(2x2, 3x3), with 4x4 output tiles from 6x6 input patches:
V = B^T d B, 36 GEMMs M[xi] = V[xi] @ U[xi] (kernels/winograd_gemm.py, as for F(2x2)),
Y = A^T M A. 36 multiplies per tile of 16 outputs where direct needs 144 (F(2x2): 16 per 4, 2.25x
fewer), and V and M are 36/16 = 2.25x the input and output sizes instead of 4x.

Interpolation points 0, +-3/4, +-3/2 and infinity, not Lavin's 0, +-1, +-2: the transforms' rounding
errors are amplified by their entries, and among the point sets searched (0 and four of +-1/4, 1/3,
1/2, 2/3, 3/4, 1, 3/2, 2, 3, 4; experiments/winograd_points.py) this dyadic one halves the error of
Lavin's in every precision, with the same operation count (normwise, conv + relu + pool,
256 and 512 channels, float64 emulation): TF32 2.5e-3 -> 1.3e-3, fp16 2.8e-3 -> 1.4e-3, bf16
1.8e-2 -> 8.7e-3, fp32 3.4e-7 -> 1.6e-7. With a = 3/4, b = 3/2 (each row of B^T holds the
coefficients of prod(x - p) over the other finite points, in increasing powers of x):
    B^T = [[a2b2, 0, -(a2+b2), 0, 1, 0], [0, -ab2, -b2, a, 1, 0], [0, ab2, -b2, -a, 1, 0],
           [0, -a2b, -a2, b, 1, 0], [0, a2b, -a2, -b, 1, 0], [0, a2b2, 0, -(a2+b2), 0, 1]]
    A^T = [[1, 1, 1, 1, 1, 0], [0, a, -a, b, -b, 0], [0, a2, a2, b2, b2, 0], [0, a3, -a3, b3, -b3, 1]]
(a2 = a**2, ab2 = a b**2 and so on; every entry is exact in binary) and G below, row p = (1, p, p**2)
over the product of (p - q) for the other finite points q. A 4x4 tile holds exactly 2x2 windows of a
2x2/2 pool, which the output transform fuses.

Where it pays (H200, fp32 TF32 off, against F(2x2) in the same run): on maps with many 4x4 tiles,
e.g. VGG-19 features.12 (256 channels, 56x56) at batch 32, 3.71x of cuDNN against 2.39x; on
14x14 maps at batch 1 (16 tiles) it lost, 2.56x against 5.23x (zeroskip/rules.py says where `auto`
takes it).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import runtime
from . import winograd_gemm, winograd_steps
from .implicit_gemm import _activate, _max_keep_nan
from .launch import ACT, POOL, precision, result
from .winograd import _put, _store_pair, _tiles, _tiles_at, amax_hint, first_scale, scale_fits, scale_of, \
    transformed_weight as _transformed

_POINTS = (0.0, 0.75, -0.75, 1.5, -1.5)


def _g_rows(points):
    """G's rows: (1, p, p**2) / prod(p - q) over the other finite points q, then the point at infinity."""
    rows = []
    for p in points:
        f = 1.0
        for q in points:
            f = f * (p - q) if q != p else f
        rows.append((1.0 / f, p / f, p * p / f))
    return tuple(rows) + ((0.0, 0.0, 1.0),)


_G = _g_rows(_POINTS)
# Both transforms' (BLOCK_T, BLOCK_C, num_warps) on a GPU. 16x32 on 8 warps: 2 values per thread
# in each of the 36 patch positions, 80-122 registers, no spills, two blocks per SM (sm_90 ptxas;
# 32x32 took 162-194 registers, 64x32 spilled). From MANY_TILES tiles 8x64 (256-byte V and M rows
# per tile): up to 5% faster at batch 32 (fp32 features.5 657.0 -> 644.9 us, bf16 features.25 +
# pool 159.4 -> 151.4; H100, benchmarks/vgg19-winograd4-blocks-h100.txt); with fewer tiles 16x32
# stayed ahead (features.30 at batch 32, 512 tiles: 161.0 against 164.7 us).
BLOCKS = (8, 64, 8)
FEW_TILES_BLOCKS = (16, 32, 8)  # under MANY_TILES tiles
MANY_TILES = 1024


def prefer_halves(spec, sms: int) -> bool:
    """fp32, TF32 off: V and U as scaled fp16 halves into three fp16 products (twice the TF32 rate)
    instead of 3xTF32, where that ran faster: from 256 input channels with 512 output channels or
    MANY_TILES tiles, on the batched GEMM kernel (winograd_gemm.prefer; the grouped-conv route takes
    fp32 V). VGG-19 at batch 32: features.21 459.7 -> 355.7 us, .30 161.1 -> 127.7; slower on 128
    channels (features.7 909.3 -> 964.8) and 256 -> 256 on 196 tiles (features.12 at batch 1, 29.0 ->
    30.1) (H100, benchmarks/vgg19-fp32-winograd4-halves-ab-h100.txt)."""
    tiles = spec.batch * triton.cdiv(spec.out_h, 4) * triton.cdiv(spec.out_w, 4)
    return (spec.in_channels >= 256 and (spec.out_channels >= 512 or tiles >= MANY_TILES)
            and winograd_gemm.prefer(tiles, spec.out_channels, 36, sms))


def prefer_fp16_operands(spec) -> bool:
    """TF32 on: V and U as scaled fp16 (TF32's 10 mantissa bits at the fp16 rate, half of V's bytes)
    instead of fp32, where that ran faster: from 512 input channels or 2048 tiles. VGG-19 conv + relu +
    pool, NCHW: at batch 32 features.2 1501.3 -> 1361.2 us, .34 95.7 -> 73.8; at batch 1 features.25
    (49 tiles) 27.8 -> 19.1; slower on features.16 (196 tiles) 17.9 -> 19.5 and .7 (784 tiles) 23.3
    -> 26.6; features.2 (3136 tiles) 45.4 -> 41.8 (H100, benchmarks/vgg19-tf32-nchw-ab-h100.txt)."""
    tiles = spec.batch * triton.cdiv(spec.out_h, 4) * triton.cdiv(spec.out_w, 4)
    return spec.in_channels >= 512 or tiles >= 2048


def supports(spec, input=None, activation=None) -> str | None:
    """None if F(4x4, 3x3) can run the call, else why not (winograd_steps.supports, 36 positions)."""
    return winograd_steps.supports(spec, 4)


def transformed_weight(weight: torch.Tensor, dtype=torch.float32, tf32=False, scaled=False, halves=False):
    """U = G g G^T as a (36 C_out, C_in, 1, 1) tensor of `dtype`, group xi = 6 i + j holding U[i, j]; made in
    float64, rounded once and cached per weight as winograd.transformed_weight does (same cache); with
    scaled, (U scaled per output channel, the scales), and with halves U as a (hi, lo) pair, as there."""
    return _transformed(weight, _G, dtype, tf32, scaled, halves)


@triton.jit
def _bt(d0, d1, d2, d3, d4, d5):
    """One row or column of B^T d B (points 0, +-3/4, +-3/2: a2b2 = 81/64, a2 + b2 = 45/16, ab2 = 27/16,
    b2 = 9/4, a2b = 27/32, a2 = 9/16)."""
    e = d4 - 2.25 * d2
    o = 0.75 * d3 - 1.6875 * d1
    f = d4 - 0.5625 * d2
    u = 1.5 * d3 - 0.84375 * d1
    return (1.265625 * d0 - 2.8125 * d2 + d4, e + o, e - o, f + u, f - u,
            1.265625 * d1 - 2.8125 * d3 + d5)


@triton.jit
def _at(m0, m1, m2, m3, m4, m5):
    """One row or column of A^T M A (a = 3/4, b = 3/2)."""
    p = m1 + m2
    q = m1 - m2
    r = m3 + m4
    s = m3 - m4
    return m0 + p + r, 0.75 * q + 1.5 * s, 0.5625 * p + 2.25 * r, 0.421875 * q + 3.375 * s + m5


@triton.jit
def _load(p, iw, W, sxw, rok):
    """Column iw of one patch row, as fp32 (zero outside the map)."""
    return tl.load(p + (iw * sxw)[:, None], mask=rok & ((iw >= 0) & (iw < W))[:, None], other=0.0).to(tl.float32)


@triton.jit
def _finite_key(d):
    """|d| + 2**-126 as int32 bits (as ordered as |d| itself); inf and NaN come out negative, so an
    integer max skips them: three integer operations per value, where abs, a compare and a select
    on floats took four."""
    return (d.to(tl.int32, bitcast=True) & 0x7FFFFFFF) + 0x00800000


@triton.jit
def _patch_row(x_ptr, base, ih, iw0, H, W, sxh, sxw, ok):
    """Row ih of the 6x6 patches, transformed along the row (d B), and each lane's largest finite
    |d| as a _finite_key (which the compiler drops where unused)."""
    rok = ok & ((ih >= 0) & (ih < H))[:, None]
    p = x_ptr + base + (ih * sxh)[:, None]
    d0, d1, d2 = _load(p, iw0, W, sxw, rok), _load(p, iw0 + 1, W, sxw, rok), _load(p, iw0 + 2, W, sxw, rok)
    d3, d4, d5 = _load(p, iw0 + 3, W, sxw, rok), _load(p, iw0 + 4, W, sxw, rok), _load(p, iw0 + 5, W, sxw, rok)
    b0, b1, b2, b3, b4, b5 = _bt(d0, d1, d2, d3, d4, d5)
    m = tl.maximum(tl.maximum(tl.maximum(_finite_key(d0), _finite_key(d1)), tl.maximum(_finite_key(d2), _finite_key(d3))),
                   tl.maximum(_finite_key(d4), _finite_key(d5)))
    return b0, b1, b2, b3, b4, b5, m


@triton.jit
def _store_col(v_ptr, vlo_ptr, row, C, j: tl.constexpr, h0, h1, h2, h3, h4, h5, ok, ROUND: tl.constexpr, s,
               SCALED: tl.constexpr, SPLIT: tl.constexpr):
    """Column j of V = B^T (d B), from column j of the row-transformed patch (TF32-rounded with ROUND,
    times the power of 2 s with SCALED, as fp16 halves with SPLIT: winograd._put)."""
    v0, v1, v2, v3, v4, v5 = _bt(h0, h1, h2, h3, h4, h5)
    if SCALED:
        v0, v1, v2, v3, v4, v5 = v0 * s, v1 * s, v2 * s, v3 * s, v4 * s, v5 * s
    _put(v_ptr, vlo_ptr, row + (0 + j) * C, v0, ok, ROUND, SPLIT)
    _put(v_ptr, vlo_ptr, row + (6 + j) * C, v1, ok, ROUND, SPLIT)
    _put(v_ptr, vlo_ptr, row + (12 + j) * C, v2, ok, ROUND, SPLIT)
    _put(v_ptr, vlo_ptr, row + (18 + j) * C, v3, ok, ROUND, SPLIT)
    _put(v_ptr, vlo_ptr, row + (24 + j) * C, v4, ok, ROUND, SPLIT)
    _put(v_ptr, vlo_ptr, row + (30 + j) * C, v5, ok, ROUND, SPLIT)


@triton.jit
def _transform(x_ptr, v_ptr, vlo_ptr, bt, bc, C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, TH: tl.constexpr,
               TW: tl.constexpr, T, sxn: tl.constexpr, sxc: tl.constexpr, sxh: tl.constexpr, sxw: tl.constexpr,
               pad_h: tl.constexpr, pad_w: tl.constexpr, ROUND: tl.constexpr, s, SCALED: tl.constexpr,
               SPLIT: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """V of block (bt, bc) of the [tiles, channels] grid; returns the largest finite |x| it read."""
    t, c, ok, n, ty, tx = _tiles_at(bt, bc, T, C, TH, TW, BLOCK_T, BLOCK_C)
    ih0 = 4 * ty - pad_h
    iw0 = 4 * tx - pad_w
    base = n.to(tl.int64)[:, None] * sxn + (c * sxc)[None, :]
    h00, h01, h02, h03, h04, h05, m0 = _patch_row(x_ptr, base, ih0, iw0, H, W, sxh, sxw, ok)
    h10, h11, h12, h13, h14, h15, m1 = _patch_row(x_ptr, base, ih0 + 1, iw0, H, W, sxh, sxw, ok)
    h20, h21, h22, h23, h24, h25, m2 = _patch_row(x_ptr, base, ih0 + 2, iw0, H, W, sxh, sxw, ok)
    h30, h31, h32, h33, h34, h35, m3 = _patch_row(x_ptr, base, ih0 + 3, iw0, H, W, sxh, sxw, ok)
    h40, h41, h42, h43, h44, h45, m4 = _patch_row(x_ptr, base, ih0 + 4, iw0, H, W, sxh, sxw, ok)
    h50, h51, h52, h53, h54, h55, m5 = _patch_row(x_ptr, base, ih0 + 5, iw0, H, W, sxh, sxw, ok)
    row = t.to(tl.int64)[:, None] * (36 * C) + c[None, :]
    _store_col(v_ptr, vlo_ptr, row, C, 0, h00, h10, h20, h30, h40, h50, ok, ROUND, s, SCALED, SPLIT)
    _store_col(v_ptr, vlo_ptr, row, C, 1, h01, h11, h21, h31, h41, h51, ok, ROUND, s, SCALED, SPLIT)
    _store_col(v_ptr, vlo_ptr, row, C, 2, h02, h12, h22, h32, h42, h52, ok, ROUND, s, SCALED, SPLIT)
    _store_col(v_ptr, vlo_ptr, row, C, 3, h03, h13, h23, h33, h43, h53, ok, ROUND, s, SCALED, SPLIT)
    _store_col(v_ptr, vlo_ptr, row, C, 4, h04, h14, h24, h34, h44, h54, ok, ROUND, s, SCALED, SPLIT)
    _store_col(v_ptr, vlo_ptr, row, C, 5, h05, h15, h25, h35, h45, h55, ok, ROUND, s, SCALED, SPLIT)
    m = tl.max(tl.max(tl.maximum(tl.maximum(tl.maximum(m0, m1), tl.maximum(m2, m3)), tl.maximum(m4, m5)), axis=1), axis=0)
    # back from the key; 0 where nothing read was finite
    return tl.maximum(m - 0x00800000, 0).to(tl.float32, bitcast=True)


@triton.jit
def _input_transform_kernel(x_ptr, v_ptr, C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, TH: tl.constexpr,
                            TW: tl.constexpr, T, sxn: tl.constexpr, sxc: tl.constexpr, sxh: tl.constexpr,
                            sxw: tl.constexpr, pad_h: tl.constexpr, pad_w: tl.constexpr, ROUND: tl.constexpr,
                            st_ptr, hint_ptr, SCALED: tl.constexpr, LOG2_V: tl.constexpr, vlo_ptr,
                            SPLIT: tl.constexpr, CHECK: tl.constexpr, BLOCK_T: tl.constexpr,
                            BLOCK_C: tl.constexpr):
    """V[t, 6 i + j, c] = (B^T d B)[i, j] of tile t's 6x6 patch in channel c (zeros outside the map),
    rounded to TF32 with ROUND; with SPLIT as fp16 halves, hi at v_ptr and lo at vlo_ptr.
    With SCALED, V is times a power of 2 in two passes (winograd.HEADROOM says why), st_ptr holding
    four fp32 zeros at the start. The first (CHECK False, one program per block) scales by the
    hint's scale and raises st_ptr[0] to the largest finite |x| it read, st_ptr[1] to that scale and
    st_ptr[2] to its inverse: a call on another stream may rewrite the hint meanwhile, and the two
    maxima show whether every program read the same one. The second (CHECK True, a few programs)
    keeps V if they did and the scale is within DROP bits under the one st_ptr[0] asks for, else its
    programs write every block again with the latter; it leaves the scale V has at st_ptr[3] and
    st_ptr[0] as the next call's hint."""
    if CHECK:
        a = tl.load(st_ptr)
        first = tl.load(st_ptr + 1)
        same = first * tl.load(st_ptr + 2) == 1.0  # powers of 2: max s * max 1/s is 1 only if all agree
        s = scale_of(a, LOG2_V)
        keep = (a == 0.0) | (same & scale_fits(first, s))
        pid = tl.program_id(0)
        tl.store(st_ptr + 3, tl.where(keep, first, s), mask=pid == 0)
        tl.store(hint_ptr, a, mask=(pid == 0) & (a > 0.0))
        nt = tl.cdiv(T, BLOCK_T)
        blocks = nt * tl.cdiv(C, BLOCK_C)
        for blk in range(tl.where(keep, blocks, pid), blocks, tl.num_programs(0)):
            _transform(x_ptr, v_ptr, vlo_ptr, blk % nt, blk // nt, C, H, W, TH, TW, T, sxn, sxc, sxh, sxw,
                       pad_h, pad_w, ROUND, s, SCALED, SPLIT, BLOCK_T, BLOCK_C)
    else:
        if SCALED:
            s = first_scale(tl.load(hint_ptr), LOG2_V)
        else:
            s = 1.0
        a = _transform(x_ptr, v_ptr, vlo_ptr, tl.program_id(0), tl.program_id(1), C, H, W, TH, TW, T, sxn, sxc,
                       sxh, sxw, pad_h, pad_w, ROUND, s, SCALED, SPLIT, BLOCK_T, BLOCK_C)
        if SCALED:
            # relaxed: the next kernel reads them; nothing in this one waits on the order
            tl.atomic_max(st_ptr, a, sem="relaxed")
            tl.atomic_max(st_ptr + 1, s, sem="relaxed")
            tl.atomic_max(st_ptr + 2, 1.0 / s, sem="relaxed")


@triton.jit
def _m_row(m_ptr, row, COUT, i: tl.constexpr, ok):
    """Row i of M, transformed along the row (M A)."""
    p = m_ptr + row + (6 * i) * COUT
    m0 = tl.load(p, mask=ok, other=0.0).to(tl.float32)
    m1 = tl.load(p + COUT, mask=ok, other=0.0).to(tl.float32)
    m2 = tl.load(p + 2 * COUT, mask=ok, other=0.0).to(tl.float32)
    m3 = tl.load(p + 3 * COUT, mask=ok, other=0.0).to(tl.float32)
    m4 = tl.load(p + 4 * COUT, mask=ok, other=0.0).to(tl.float32)
    m5 = tl.load(p + 5 * COUT, mask=ok, other=0.0).to(tl.float32)
    return _at(m0, m1, m2, m3, m4, m5)


@triton.jit
def _finish(y, f, bias, ACTIVATION: tl.constexpr, SCALED: tl.constexpr):
    if SCALED:
        y = y * f
    return _activate(y + bias, ACTIVATION)


@triton.jit
def _store_row(y_ptr, p, ok, y0, y1, y2, y3, syw, ox, OW, VEC: tl.constexpr):
    """One output row of a tile: its four pixels that lie inside the map. NCHW rows go out as
    vectors (VEC 4: one 16-byte store per thread and row, OW a multiple of 4; VEC 2: two 8-byte
    ones, OW even): the lanes of a warp walk channels, so each store touches 32 sectors, and four
    4-byte stores into one sector cost four sector writes. VGG-19 features.12 and .21 at batch 32
    (fp32, H200): 692 -> 646 and 556 -> 520 us."""
    dt = y_ptr.dtype.element_ty
    if VEC == 4:
        # join stacks on a new last axis, so this is [..., j, i] = y_(2 j + i): y0..y3 in order
        row = tl.reshape(tl.join(tl.join(y0, y2), tl.join(y1, y3)), [y0.shape[0], y0.shape[1], 4])
        tl.store(p[:, :, None] + tl.arange(0, 4)[None, None, :], row.to(dt), mask=ok[:, :, None])
    elif VEC == 2:
        _store_pair(y_ptr, p, y0, y1, ok)
        _store_pair(y_ptr, p + 2, y2, y3, ok & (ox + 2 < OW)[:, None])
    else:
        tl.store(p, y0.to(dt), mask=ok)
        tl.store(p + syw, y1.to(dt), mask=ok & (ox + 1 < OW)[:, None])
        tl.store(p + 2 * syw, y2.to(dt), mask=ok & (ox + 2 < OW)[:, None])
        tl.store(p + 3 * syw, y3.to(dt), mask=ok & (ox + 3 < OW)[:, None])


@triton.jit
def _pool(y00, y01, y10, y11, POOL: tl.constexpr):
    """One 2x2 window: max (POOL 1, NaN kept) or mean (POOL 2)."""
    if POOL == 1:
        return _max_keep_nan(_max_keep_nan(y00, y01), _max_keep_nan(y10, y11))
    else:
        return (y00 + y01 + y10 + y11) * 0.25


@triton.jit
def _output_transform_kernel(m_ptr, b_ptr, y_ptr, COUT: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
                             TH: tl.constexpr, TW: tl.constexpr, T, syn: tl.constexpr, syc: tl.constexpr,
                             syh: tl.constexpr, syw: tl.constexpr, sb: tl.constexpr,
                             HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, POOL: tl.constexpr,
                             st_ptr, ws_ptr, SCALED: tl.constexpr, LOG2_V: tl.constexpr,
                             BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """y = act(A^T M A + bias) for tile t's 4x4 outputs, or its 2x2 windows' max/mean with POOL (1 max, 2 avg).
    With SCALED, M was made from V and U scaled by powers of 2 (the input transform's, st_ptr[3], and U's per
    output channel, ws_ptr): A^T M A is scaled back before the bias."""
    t, o, ok, n, ty, tx = _tiles(T, COUT, TH, TW, BLOCK_T, BLOCK_C)
    row = t.to(tl.int64)[:, None] * (36 * COUT) + o[None, :]
    s00, s01, s02, s03 = _m_row(m_ptr, row, COUT, 0, ok)
    s10, s11, s12, s13 = _m_row(m_ptr, row, COUT, 1, ok)
    s20, s21, s22, s23 = _m_row(m_ptr, row, COUT, 2, ok)
    s30, s31, s32, s33 = _m_row(m_ptr, row, COUT, 3, ok)
    s40, s41, s42, s43 = _m_row(m_ptr, row, COUT, 4, ok)
    s50, s51, s52, s53 = _m_row(m_ptr, row, COUT, 5, ok)
    if HAS_BIAS:
        bias = tl.load(b_ptr + o * sb, mask=o < COUT, other=0.0).to(tl.float32)[None, :]
    else:
        bias = tl.zeros([1, BLOCK_C], dtype=tl.float32)
    if SCALED:
        f = tl.load(ws_ptr + o, mask=o < COUT, other=1.0)[None, :] / tl.load(st_ptr + 3)
    else:
        f = 1.0
    # y_ab: output pixel (a, b) of the tile
    y00, y10, y20, y30 = _at(s00, s10, s20, s30, s40, s50)
    y01, y11, y21, y31 = _at(s01, s11, s21, s31, s41, s51)
    y02, y12, y22, y32 = _at(s02, s12, s22, s32, s42, s52)
    y03, y13, y23, y33 = _at(s03, s13, s23, s33, s43, s53)
    y00, y01, y02, y03 = (_finish(y00, f, bias, ACTIVATION, SCALED), _finish(y01, f, bias, ACTIVATION, SCALED),
                          _finish(y02, f, bias, ACTIVATION, SCALED), _finish(y03, f, bias, ACTIVATION, SCALED))
    y10, y11, y12, y13 = (_finish(y10, f, bias, ACTIVATION, SCALED), _finish(y11, f, bias, ACTIVATION, SCALED),
                          _finish(y12, f, bias, ACTIVATION, SCALED), _finish(y13, f, bias, ACTIVATION, SCALED))
    y20, y21, y22, y23 = (_finish(y20, f, bias, ACTIVATION, SCALED), _finish(y21, f, bias, ACTIVATION, SCALED),
                          _finish(y22, f, bias, ACTIVATION, SCALED), _finish(y23, f, bias, ACTIVATION, SCALED))
    y30, y31, y32, y33 = (_finish(y30, f, bias, ACTIVATION, SCALED), _finish(y31, f, bias, ACTIVATION, SCALED),
                          _finish(y32, f, bias, ACTIVATION, SCALED), _finish(y33, f, bias, ACTIVATION, SCALED))
    out = y_ptr + n.to(tl.int64)[:, None] * syn + (o * syc)[None, :]
    # NCHW: a tile's pixels in a row are contiguous, and aligned to 4 (2) where 4 (2) divides OW
    VEC: tl.constexpr = 1 if syw != 1 else (4 if OW % 4 == 0 else (2 if OW % 2 == 0 else 1))
    if POOL == 0:
        oy = 4 * ty
        ox = 4 * tx
        p = out + (oy * syh + ox * syw)[:, None]
        _store_row(y_ptr, p, ok, y00, y01, y02, y03, syw, ox, OW, VEC)
        _store_row(y_ptr, p + syh, ok & (oy + 1 < OH)[:, None], y10, y11, y12, y13, syw, ox, OW, VEC)
        _store_row(y_ptr, p + 2 * syh, ok & (oy + 2 < OH)[:, None], y20, y21, y22, y23, syw, ox, OW, VEC)
        _store_row(y_ptr, p + 3 * syh, ok & (oy + 3 < OH)[:, None], y30, y31, y32, y33, syw, ox, OW, VEC)
    else:
        # Floor mode: pooled pixel (2 ty + a, 2 tx + b) exists only where its window's last conv row
        # (4 ty + 2 a + 1) and column lie inside the conv output.
        py = 2 * ty
        px = 2 * tx
        p = out + (py * syh + px * syw)[:, None]
        top = ok & (2 * py + 1 < OH)[:, None]
        bottom = ok & (2 * py + 3 < OH)[:, None]
        dt = y_ptr.dtype.element_ty
        a = _pool(y00, y01, y10, y11, POOL)
        b = _pool(y02, y03, y12, y13, POOL)
        c = _pool(y20, y21, y30, y31, POOL)
        d = _pool(y22, y23, y32, y33, POOL)
        if VEC == 4:  # both pooled pixels of a tile row exist: one vector store
            _store_pair(y_ptr, p, a, b, top)
            _store_pair(y_ptr, p + syh, c, d, bottom)
        else:
            left = (2 * px + 1 < OW)[:, None]
            right = (2 * px + 3 < OW)[:, None]
            tl.store(p, a.to(dt), mask=top & left)
            tl.store(p + syw, b.to(dt), mask=top & right)
            tl.store(p + syh, c.to(dt), mask=bottom & left)
            tl.store(p + syh + syw, d.to(dt), mask=bottom & right)


def conv(x, weight, bias, spec, activation, algo="winograd4"):
    """Runs the three steps (winograd_steps.run_steps) into a new output in x's memory format, the
    GEMMs on fp16 halves or fp16 operands where prefer_halves / prefer_fp16_operands say so."""
    prec = precision("igemm", x.dtype)
    halves = prec == "3xtf32" and prefer_halves(spec, runtime.sm_count(x.device))
    fp16_operands = prec == "tf32" and prefer_fp16_operands(spec)
    tiles = spec.batch * triton.cdiv(spec.out_h, 4) * triton.cdiv(spec.out_w, 4)
    blocks = BLOCKS if tiles >= MANY_TILES else FEW_TILES_BLOCKS
    return winograd_steps.run_steps(algo, 4, _input_transform_kernel, _output_transform_kernel, blocks,
                                    transformed_weight, amax_hint, x, weight, bias, spec, ACT[activation],
                                    POOL[spec.pool], result(x, spec), halves, fp16_operands)
