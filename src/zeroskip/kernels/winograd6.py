"""Winograd F(6x6, 3x3) for 3x3 stride-1 convolutions in fp32: 5.06x fewer multiplies than direct.

The three steps of winograd4.py with 6x6 output tiles from 8x8 input patches: 64 GEMMs per tile of
36 outputs, 1.78 multiplies per output where F(4x4) needs 2.25, and V and M are 64/36 = 1.78x the
input and output sizes instead of 2.25x. On maps that 6 does not divide the edge tiles are partly
wasted: per output, against F(4x4), 18% less GEMM work on 224x224 and 112x112 maps, 9% on 56x56
and 28x28, none on 14x14.

Interpolation points 0, +-1/2, +-1, +-2 and infinity (the best symmetric dyadic set searched with
scripts/winograd_points.py). The transforms' entries reach 32, so it keeps fewer bits than F(4x4):
in a float64 emulation (conv + relu + pool, 128 channels) 6.3e-7 with fp32 operands, against
1.6e-7 for F(4x4); with TF32 operands 4.5e-3, past the 2e-3 TF32 bound. So V, U and M are fp32
whatever the input dtype (fp16/bf16 inputs too), and it is meant for fp32 with TF32 off, where
the GEMMs are three TF32 products (fp32-accurate). With the points a = 1/2, b = 1, c = 2, B^T's
row for a finite point p holds the coefficients of prod(x - q) over the other finite points
(increasing powers), its last row those of prod(x - q) over all of them, and A^T's row i is p**i
(the last column 0 but for the last row). A 6x6 tile holds 3x3 windows of a 2x2/2 pool, which
the output transform fuses.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .implicit_gemm import _activate
from .winograd import _store_pair, _tf32, _tiles, run_steps, supports as _supports, transformed_weight as _transformed
from .winograd4 import _g_rows, _load, _pool

_G = _g_rows((0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0))
# (BLOCK_T, BLOCK_C, num_warps) of both transforms: 8 tiles by 32 channels on 8 warps, one value per
# thread in each of the 64 patch positions.
BLOCKS = (8, 32, 8)


def supports(spec) -> str | None:
    """None if F(6x6, 3x3) can run the call, else why not (winograd.supports' rules, 64 positions)."""
    return _supports(spec, tile=6)


def transformed_weight(weight: torch.Tensor, dtype=torch.float32, tf32=False) -> torch.Tensor:
    """U = G g G^T as a (64 C_out, C_in, 1, 1) tensor, group xi = 8 i + j holding U[i, j] (cached as
    winograd.transformed_weight does)."""
    return _transformed(weight, _G, dtype, tf32)


@triton.jit
def _bt(d0, d1, d2, d3, d4, d5, d6, d7):
    """One row or column of B^T d B. For the pair +-p with the other two points q, r:
    (q2 r2 d2 - (q2 + r2) d4 + d6) +- p (q2 r2 d1 - (q2 + r2) d3 + d5)."""
    ea = 4.0 * d2 - 5.0 * d4 + d6
    oa = 0.5 * (4.0 * d1 - 5.0 * d3 + d5)
    eb = d2 - 4.25 * d4 + d6
    ob = d1 - 4.25 * d3 + d5
    ec = 0.25 * d2 - 1.25 * d4 + d6
    oc = 2.0 * (0.25 * d1 - 1.25 * d3 + d5)
    return (5.25 * (d2 - d4) + d6 - d0, ea + oa, ea - oa, eb + ob, eb - ob, ec + oc, ec - oc,
            5.25 * (d3 - d5) + d7 - d1)


@triton.jit
def _at(m0, m1, m2, m3, m4, m5, m6, m7):
    """One row or column of A^T M A: sums and differences of each pair, weighted by p**i."""
    sa = m1 + m2
    da = m1 - m2
    sb = m3 + m4
    db = m3 - m4
    sc = m5 + m6
    dc = m5 - m6
    return (m0 + sa + sb + sc, 0.5 * da + db + 2.0 * dc, 0.25 * sa + sb + 4.0 * sc, 0.125 * da + db + 8.0 * dc,
            0.0625 * sa + sb + 16.0 * sc, 0.03125 * da + db + 32.0 * dc + m7)


@triton.jit
def _patch_row(x_ptr, base, ih, iw0, H, W, sxh, sxw, ok):
    """Row ih of the 8x8 patches, transformed along the row (d B)."""
    rok = ok & ((ih >= 0) & (ih < H))[:, None]
    p = x_ptr + base + (ih * sxh)[:, None]
    return _bt(_load(p, iw0, W, sxw, rok), _load(p, iw0 + 1, W, sxw, rok), _load(p, iw0 + 2, W, sxw, rok),
               _load(p, iw0 + 3, W, sxw, rok), _load(p, iw0 + 4, W, sxw, rok), _load(p, iw0 + 5, W, sxw, rok),
               _load(p, iw0 + 6, W, sxw, rok), _load(p, iw0 + 7, W, sxw, rok))


@triton.jit
def _store_col(v_ptr, row, C, j: tl.constexpr, h0, h1, h2, h3, h4, h5, h6, h7, ok, ROUND: tl.constexpr):
    """Column j of V = B^T (d B), from column j of the row-transformed patch."""
    v0, v1, v2, v3, v4, v5, v6, v7 = _bt(h0, h1, h2, h3, h4, h5, h6, h7)
    tl.store(v_ptr + row + (0 + j) * C, _tf32(v0, ROUND), mask=ok)
    tl.store(v_ptr + row + (8 + j) * C, _tf32(v1, ROUND), mask=ok)
    tl.store(v_ptr + row + (16 + j) * C, _tf32(v2, ROUND), mask=ok)
    tl.store(v_ptr + row + (24 + j) * C, _tf32(v3, ROUND), mask=ok)
    tl.store(v_ptr + row + (32 + j) * C, _tf32(v4, ROUND), mask=ok)
    tl.store(v_ptr + row + (40 + j) * C, _tf32(v5, ROUND), mask=ok)
    tl.store(v_ptr + row + (48 + j) * C, _tf32(v6, ROUND), mask=ok)
    tl.store(v_ptr + row + (56 + j) * C, _tf32(v7, ROUND), mask=ok)


@triton.jit
def _input_transform_kernel(x_ptr, v_ptr, C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, TH: tl.constexpr,
                            TW: tl.constexpr, T, sxn: tl.constexpr, sxc: tl.constexpr, sxh: tl.constexpr,
                            sxw: tl.constexpr, pad_h: tl.constexpr, pad_w: tl.constexpr, ROUND: tl.constexpr,
                            BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """V[t, 8 i + j, c] = (B^T d B)[i, j] of tile t's 8x8 patch in channel c (zeros outside the map)."""
    t, c, ok, n, ty, tx = _tiles(T, C, TH, TW, BLOCK_T, BLOCK_C)
    ih0 = 6 * ty - pad_h
    iw0 = 6 * tx - pad_w
    base = n.to(tl.int64)[:, None] * sxn + (c * sxc)[None, :]
    h00, h01, h02, h03, h04, h05, h06, h07 = _patch_row(x_ptr, base, ih0, iw0, H, W, sxh, sxw, ok)
    h10, h11, h12, h13, h14, h15, h16, h17 = _patch_row(x_ptr, base, ih0 + 1, iw0, H, W, sxh, sxw, ok)
    h20, h21, h22, h23, h24, h25, h26, h27 = _patch_row(x_ptr, base, ih0 + 2, iw0, H, W, sxh, sxw, ok)
    h30, h31, h32, h33, h34, h35, h36, h37 = _patch_row(x_ptr, base, ih0 + 3, iw0, H, W, sxh, sxw, ok)
    h40, h41, h42, h43, h44, h45, h46, h47 = _patch_row(x_ptr, base, ih0 + 4, iw0, H, W, sxh, sxw, ok)
    h50, h51, h52, h53, h54, h55, h56, h57 = _patch_row(x_ptr, base, ih0 + 5, iw0, H, W, sxh, sxw, ok)
    h60, h61, h62, h63, h64, h65, h66, h67 = _patch_row(x_ptr, base, ih0 + 6, iw0, H, W, sxh, sxw, ok)
    h70, h71, h72, h73, h74, h75, h76, h77 = _patch_row(x_ptr, base, ih0 + 7, iw0, H, W, sxh, sxw, ok)
    row = t.to(tl.int64)[:, None] * (64 * C) + c[None, :]
    _store_col(v_ptr, row, C, 0, h00, h10, h20, h30, h40, h50, h60, h70, ok, ROUND)
    _store_col(v_ptr, row, C, 1, h01, h11, h21, h31, h41, h51, h61, h71, ok, ROUND)
    _store_col(v_ptr, row, C, 2, h02, h12, h22, h32, h42, h52, h62, h72, ok, ROUND)
    _store_col(v_ptr, row, C, 3, h03, h13, h23, h33, h43, h53, h63, h73, ok, ROUND)
    _store_col(v_ptr, row, C, 4, h04, h14, h24, h34, h44, h54, h64, h74, ok, ROUND)
    _store_col(v_ptr, row, C, 5, h05, h15, h25, h35, h45, h55, h65, h75, ok, ROUND)
    _store_col(v_ptr, row, C, 6, h06, h16, h26, h36, h46, h56, h66, h76, ok, ROUND)
    _store_col(v_ptr, row, C, 7, h07, h17, h27, h37, h47, h57, h67, h77, ok, ROUND)


@triton.jit
def _m_row(m_ptr, row, COUT, i: tl.constexpr, ok):
    """Row i of M, transformed along the row (M A)."""
    p = m_ptr + row + (8 * i) * COUT
    return _at(tl.load(p, mask=ok, other=0.0).to(tl.float32), tl.load(p + COUT, mask=ok, other=0.0).to(tl.float32),
               tl.load(p + 2 * COUT, mask=ok, other=0.0).to(tl.float32),
               tl.load(p + 3 * COUT, mask=ok, other=0.0).to(tl.float32),
               tl.load(p + 4 * COUT, mask=ok, other=0.0).to(tl.float32),
               tl.load(p + 5 * COUT, mask=ok, other=0.0).to(tl.float32),
               tl.load(p + 6 * COUT, mask=ok, other=0.0).to(tl.float32),
               tl.load(p + 7 * COUT, mask=ok, other=0.0).to(tl.float32))


@triton.jit
def _out_col(s0, s1, s2, s3, s4, s5, s6, s7, bias, ACTIVATION: tl.constexpr):
    """Column j of act(A^T (M A) + bias): the tile's six outputs in that column, top to bottom."""
    y0, y1, y2, y3, y4, y5 = _at(s0, s1, s2, s3, s4, s5, s6, s7)
    return (_activate(y0 + bias, ACTIVATION), _activate(y1 + bias, ACTIVATION), _activate(y2 + bias, ACTIVATION),
            _activate(y3 + bias, ACTIVATION), _activate(y4 + bias, ACTIVATION), _activate(y5 + bias, ACTIVATION))


@triton.jit
def _store_row(y_ptr, p, ok, y0, y1, y2, y3, y4, y5, syw, ox, OW, PAIRS: tl.constexpr):
    """One output row of a tile: its six pixels that lie inside the map. NCHW with an even width
    (PAIRS): three 8-byte stores, as winograd4 stores its rows (a warp's lanes walk channels)."""
    if PAIRS:
        _store_pair(y_ptr, p, y0, y1, ok)
        _store_pair(y_ptr, p + 2, y2, y3, ok & (ox + 2 < OW)[:, None])
        _store_pair(y_ptr, p + 4, y4, y5, ok & (ox + 4 < OW)[:, None])
    else:
        dt = y_ptr.dtype.element_ty
        tl.store(p, y0.to(dt), mask=ok)
        tl.store(p + syw, y1.to(dt), mask=ok & (ox + 1 < OW)[:, None])
        tl.store(p + 2 * syw, y2.to(dt), mask=ok & (ox + 2 < OW)[:, None])
        tl.store(p + 3 * syw, y3.to(dt), mask=ok & (ox + 3 < OW)[:, None])
        tl.store(p + 4 * syw, y4.to(dt), mask=ok & (ox + 4 < OW)[:, None])
        tl.store(p + 5 * syw, y5.to(dt), mask=ok & (ox + 5 < OW)[:, None])


@triton.jit
def _store_pooled_row(y_ptr, p, ok, top0, top1, top2, top3, top4, top5, bot0, bot1, bot2, bot3, bot4, bot5,
                      syw, px, OW, POOL: tl.constexpr):
    """The three pooled pixels of a tile's conv rows 2a and 2a + 1 (floor mode: a pooled pixel exists
    only where its window's last conv column lies inside the map)."""
    dt = y_ptr.dtype.element_ty
    tl.store(p, _pool(top0, top1, bot0, bot1, POOL).to(dt), mask=ok & (2 * px + 1 < OW)[:, None])
    tl.store(p + syw, _pool(top2, top3, bot2, bot3, POOL).to(dt), mask=ok & (2 * px + 3 < OW)[:, None])
    tl.store(p + 2 * syw, _pool(top4, top5, bot4, bot5, POOL).to(dt), mask=ok & (2 * px + 5 < OW)[:, None])


@triton.jit
def _output_transform_kernel(m_ptr, b_ptr, y_ptr, COUT: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
                             TH: tl.constexpr, TW: tl.constexpr, T, syn: tl.constexpr, syc: tl.constexpr,
                             syh: tl.constexpr, syw: tl.constexpr, sb: tl.constexpr,
                             HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, POOL: tl.constexpr,
                             BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """y = act(A^T M A + bias) for tile t's 6x6 outputs, or its 3x3 windows' max/mean with POOL (1 max, 2 avg)."""
    t, o, ok, n, ty, tx = _tiles(T, COUT, TH, TW, BLOCK_T, BLOCK_C)
    row = t.to(tl.int64)[:, None] * (64 * COUT) + o[None, :]
    s00, s01, s02, s03, s04, s05 = _m_row(m_ptr, row, COUT, 0, ok)
    s10, s11, s12, s13, s14, s15 = _m_row(m_ptr, row, COUT, 1, ok)
    s20, s21, s22, s23, s24, s25 = _m_row(m_ptr, row, COUT, 2, ok)
    s30, s31, s32, s33, s34, s35 = _m_row(m_ptr, row, COUT, 3, ok)
    s40, s41, s42, s43, s44, s45 = _m_row(m_ptr, row, COUT, 4, ok)
    s50, s51, s52, s53, s54, s55 = _m_row(m_ptr, row, COUT, 5, ok)
    s60, s61, s62, s63, s64, s65 = _m_row(m_ptr, row, COUT, 6, ok)
    s70, s71, s72, s73, s74, s75 = _m_row(m_ptr, row, COUT, 7, ok)
    if HAS_BIAS:
        bias = tl.load(b_ptr + o * sb, mask=o < COUT, other=0.0).to(tl.float32)[None, :]
    else:
        bias = tl.zeros([1, BLOCK_C], dtype=tl.float32)
    # y_ab: output pixel (a, b) of the tile
    y00, y10, y20, y30, y40, y50 = _out_col(s00, s10, s20, s30, s40, s50, s60, s70, bias, ACTIVATION)
    y01, y11, y21, y31, y41, y51 = _out_col(s01, s11, s21, s31, s41, s51, s61, s71, bias, ACTIVATION)
    y02, y12, y22, y32, y42, y52 = _out_col(s02, s12, s22, s32, s42, s52, s62, s72, bias, ACTIVATION)
    y03, y13, y23, y33, y43, y53 = _out_col(s03, s13, s23, s33, s43, s53, s63, s73, bias, ACTIVATION)
    y04, y14, y24, y34, y44, y54 = _out_col(s04, s14, s24, s34, s44, s54, s64, s74, bias, ACTIVATION)
    y05, y15, y25, y35, y45, y55 = _out_col(s05, s15, s25, s35, s45, s55, s65, s75, bias, ACTIVATION)
    out = y_ptr + n.to(tl.int64)[:, None] * syn + (o * syc)[None, :]
    if POOL == 0:
        PAIRS: tl.constexpr = (syw == 1) & (OW % 2 == 0)  # tile columns start at 6 tx: pairs stay aligned
        oy = 6 * ty
        ox = 6 * tx
        p = out + (oy * syh + ox * syw)[:, None]
        _store_row(y_ptr, p, ok, y00, y01, y02, y03, y04, y05, syw, ox, OW, PAIRS)
        _store_row(y_ptr, p + syh, ok & (oy + 1 < OH)[:, None], y10, y11, y12, y13, y14, y15, syw, ox, OW, PAIRS)
        _store_row(y_ptr, p + 2 * syh, ok & (oy + 2 < OH)[:, None], y20, y21, y22, y23, y24, y25, syw, ox, OW,
                   PAIRS)
        _store_row(y_ptr, p + 3 * syh, ok & (oy + 3 < OH)[:, None], y30, y31, y32, y33, y34, y35, syw, ox, OW,
                   PAIRS)
        _store_row(y_ptr, p + 4 * syh, ok & (oy + 4 < OH)[:, None], y40, y41, y42, y43, y44, y45, syw, ox, OW,
                   PAIRS)
        _store_row(y_ptr, p + 5 * syh, ok & (oy + 5 < OH)[:, None], y50, y51, y52, y53, y54, y55, syw, ox, OW,
                   PAIRS)
    else:
        # pooled pixel (3 ty + a, 3 tx + b) exists where its window's last conv row and column lie
        # inside the conv output
        py = 3 * ty
        px = 3 * tx
        p = out + (py * syh + px * syw)[:, None]
        _store_pooled_row(y_ptr, p, ok & (2 * py + 1 < OH)[:, None], y00, y01, y02, y03, y04, y05,
                          y10, y11, y12, y13, y14, y15, syw, px, OW, POOL)
        _store_pooled_row(y_ptr, p + syh, ok & (2 * py + 3 < OH)[:, None], y20, y21, y22, y23, y24, y25,
                          y30, y31, y32, y33, y34, y35, syw, px, OW, POOL)
        _store_pooled_row(y_ptr, p + 2 * syh, ok & (2 * py + 5 < OH)[:, None], y40, y41, y42, y43, y44, y45,
                          y50, y51, y52, y53, y54, y55, syw, px, OW, POOL)


def conv(x, weight, bias, spec, activation_code: int, pool_code: int, y, gemm, interpreting=False):
    """Runs the three steps into y (allocated by the caller in its layout). `gemm(v, u, m_dtype)` is the
    implicit-GEMM launch (kernels.launch.conv for a 1x1 conv, groups 64) returning M."""
    return run_steps("winograd6", 6, _input_transform_kernel, _output_transform_kernel, BLOCKS, transformed_weight,
                     x, weight, bias, spec, activation_code, pool_code, y, gemm, interpreting)
