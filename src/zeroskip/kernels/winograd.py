"""Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions: 2.25x fewer multiplies than direct.

Each 2x2 block of output pixels (a tile) comes from a 4x4 input patch d. With the transforms
    V = B^T d B   (input, per tile and input channel; additions only)
    U = G g G^T   (weight, per output and input channel; once per weight, on the host, in float64)
    Y = A^T M A   where M[xi] = V[xi] @ U[xi] for each of the 16 positions xi of the 4x4 patch,
the conv is 16 GEMMs of (tiles x C_in) by (C_in x C_out): 16 multiplies per tile where direct
needs 36. The GEMMs run on kernels/winograd_gemm.py's batched GEMM (autotuned tiles, the same
3xTF32 products as the direct kernel, summed in the tensor core up to 512 input channels:
normwise error up to 1.6e-6, see RUNNING_MAX_C there), or, where too few tiles would leave SMs idle,
as the implicit-GEMM kernel's 16-group 1x1 conv with its split-K; the two transforms are the kernels
below, and the output transform also applies bias, activation and a 2x2/2 pool, which covers
exactly one tile.

Why: with TF32 off, cuDNN runs VGG-19's 256/512-channel layers at batch 32 at 75-80 dense
TFLOP/s (features.21: 1509 us for 118 GFLOP, H100), above the 67 TFLOP/s fp32 peak, so it is
not computing them directly; the direct 3xTF32 kernel reached 1.17x of it there.

V and M go through memory (4x the input and output sizes), so this pays only where the GEMMs
dominate: many channels per pixel. Zero skipping does not carry over (a transformed patch is
zero only if the whole 4x4 patch is). The host side both Winograd families share (supports, the
three launches, the GEMM route) is winograd_steps.py; winograd4.py builds F(4x4, 3x3) from it and
from transformed_weight and the jit helpers here.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.utils.weak import WeakIdKeyDictionary

from . import launch, weight_cache, winograd_steps
from .implicit_gemm import _activate, _max_keep_nan, _tf32_nearest
from .launch import ACT, POOL, result, tf32_nearest

_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
# Both transforms' (BLOCK_T, BLOCK_C, num_warps) on a GPU. 32x32 blocks on 8 warps: 4 values per
# thread in each of the 16 patch positions, 78-86 registers. 64x32 on 4 warps needed 255 registers
# and spilled (input transform, sm_90 ptxas; scripts/resource_report.py).
BLOCKS = (32, 32, 8)


def supports(spec, input=None, activation=None) -> str | None:
    """None if F(2x2, 3x3) can run the call, else why not (winograd_steps.supports)."""
    return winograd_steps.supports(spec, 2)


def transformed_weight(weight: torch.Tensor, g_rows=_G, dtype=torch.float32, tf32=False, scaled=False,
                       halves=False):
    """U = G g G^T as a (P C_out, C_in, 1, 1) tensor of `dtype` for the n x 3 matrix G given by g_rows
    (this file's F(2x2) one by default), P = n**2 positions, group xi = n i + j holding U[i, j].
    Computed in float64 and rounded once (with tf32, to the nearest TF32 value: tf32_nearest).
    With scaled, returns (U / scale, scale): each output channel's U divided by the power of 2
    that puts its largest magnitude in [0.5, 1), and those powers (fp32, C_out), so fp16 holds U
    at full precision whatever the weights' magnitude (run_steps). With halves (and scaled, dtype
    fp16), U is the pair (hi, lo) of fp16 tensors: hi = U rounded to fp16, lo = the rest rounded
    to fp16 (22 bits together, as 3xTF32's halves), for the 3xfp16 GEMMs.
    Cached per weight tensor, G, dtype, tf32 and halves in kernels/weight_cache.py, beside
    kernels.launch.packed_weight's packings, so the GEMM's own packing of U is cached too."""
    key = ("winograd", g_rows, dtype, tf32, scaled, halves)
    return weight_cache.cached(weight, key, _transform, weight, g_rows, dtype, tf32, scaled, halves)


def _transform(weight, g_rows, dtype, tf32, scaled, halves):
    g = torch.tensor(g_rows, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ik,ockl,jl->ijoc", g, weight.detach().double(), g)
    if scaled:
        top = u.abs().amax(dim=(0, 1, 3))
        # non-finite or all-zero channels keep scale 1, so inf and NaN reach the output as they are
        e = torch.where(torch.isfinite(top) & (top > 0), torch.floor(torch.log2(top)) + 1, 0.0)
        u = u / torch.exp2(e)[None, None, :, None]
    u = u.reshape(len(g_rows) ** 2 * weight.shape[0], weight.shape[1], 1, 1)
    if halves:
        hi = u.to(dtype).contiguous()
        u = (hi, (u - hi.double()).to(dtype).contiguous())
    else:
        u = u.to(dtype).contiguous()
    if tf32:
        u = tf32_nearest(u)
    if scaled:
        u = (u, torch.exp2(e).to(torch.float32))
    return u




def clear_transformed_weights() -> None:
    """Forgets every cached weight transform (with the packed weights beside them) and V-scale hint."""
    weight_cache.clear()
    _HINT.clear()


launch.on_clear(clear_transformed_weights)


@triton.jit
def _bt(d0, d1, d2, d3):
    """One row or column of B^T d B."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@triton.jit
def _at(m0, m1, m2, m3):
    """One row or column of A^T M A."""
    return m0 + m1 + m2, m1 - m2 - m3


@triton.jit
def _patch_row(x_ptr, base, ih, iw0, H, W, sxh, sxw, ok):
    """Row ih of the 4x4 patches, transformed along the row (d B)."""
    rok = ok & ((ih >= 0) & (ih < H))[:, None]
    p = x_ptr + base + (ih * sxh)[:, None]
    d0 = tl.load(p + (iw0 * sxw)[:, None], mask=rok & ((iw0 >= 0) & (iw0 < W))[:, None], other=0.0)
    d1 = tl.load(p + ((iw0 + 1) * sxw)[:, None], mask=rok & ((iw0 + 1 >= 0) & (iw0 + 1 < W))[:, None], other=0.0)
    d2 = tl.load(p + ((iw0 + 2) * sxw)[:, None], mask=rok & ((iw0 + 2 >= 0) & (iw0 + 2 < W))[:, None], other=0.0)
    d3 = tl.load(p + ((iw0 + 3) * sxw)[:, None], mask=rok & ((iw0 + 3 >= 0) & (iw0 + 3 < W))[:, None], other=0.0)
    return _bt(d0.to(tl.float32), d1.to(tl.float32), d2.to(tl.float32), d3.to(tl.float32))


@triton.jit
def _tf32(v, ROUND: tl.constexpr):
    """v rounded to the nearest TF32 value (10 mantissa bits) with ROUND. With TF32 on, the tensor
    core drops those bits of the fp32 V and U it reads; rounding them first halves that error and
    removes its bias. Winograd F(4x4) conv + relu + pool, 256/512 channels, float64 emulation:
    normwise 1.3e-3 truncated, 1.1e-3 rounded (direct TF32: 7.4e-4)."""
    if ROUND:
        v = _tf32_nearest(v)
    return v


@triton.jit
def scale_of(a, LOG2_V: tl.constexpr):
    """The power of 2 s that puts a finite a > 0 in [2**LOG2_V, 2**(LOG2_V + 1)); 1 where a is 0,
    inf or NaN. An exponent computation, so every program that sees the same a gets the same s: the
    input transform multiplies V by it, the output transform divides A^T M A by it."""
    e = ((a.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127  # floor(log2 a) for normal a
    k = tl.minimum(tl.maximum(127 + LOG2_V - e, 1), 254)
    return tl.where((a > 0) & (a < float("inf")), (k << 23).to(tl.float32, bitcast=True), 1.0)


# V's scale, checked rather than measured first (winograd4's input transform). The first pass scales
# V by scale_of(hint * 2**HEADROOM, LOG2_V) (first_scale), where the hint is the largest finite |x| that the layer's
# previous call saw, and takes this call's largest finite |x| on the way; the second pass keeps V if
# that scale lies within [s / 2**DROP, s] of the scale s the measured value asks for (so |V| stays
# under the same bound as with s, and loses at most DROP bits of fp16's range at the bottom), and
# otherwise writes V again with s. The input then goes through memory once, where a separate
# finite-max pass read it twice: that pass took 16.9 / 10.8 / 4.3 us of bf16 VGG-19 features.16 /
# .25 / .34 + pool at batch 32 (192.5 / 123.5 / 45.5 us in all; H200, scripts/kernel_times.py).
# Same run against the pass (benchmarks/winograd4-v-scale-hint-ab-h200.txt): 191.7 -> 181.0,
# 122.9 -> 118.8, 46.2 -> 45.5 us; at batch 1 14.8 -> 14.2, 14.7 -> 14.2, 14.2 -> 13.7. A call
# whose hint misses pays a second transform (features.16: 240.9 us when every call misses). Calls
# on other streams share the hint: a first pass whose programs read two values of it is caught by
# the second pass like a miss (winograd4._input_transform_kernel).
HEADROOM = 2
DROP = 6


@triton.jit
def first_scale(hint, LOG2_V: tl.constexpr):
    """The first pass's scale: scale_of a value HEADROOM = 2 binades above the hint."""
    return scale_of(hint * 4.0, LOG2_V)


@triton.jit
def scale_fits(first, s):
    """Whether the first pass's scale lies within [s / 2**DROP, s], DROP = 6."""
    return (first <= s) & (first * 64.0 >= s)


def amax_hint(weight: torch.Tensor) -> torch.Tensor:
    """The one-element fp32 tensor on weight's device where the layer's calls leave the largest
    finite |x| they saw (0 before the first): a hint for the next call's V scale, never trusted."""
    hint = _HINT.get(weight)
    if hint is None:
        hint = _HINT[weight] = torch.zeros(1, dtype=torch.float32, device=weight.device)
    return hint


_HINT = WeakIdKeyDictionary()


@triton.jit
def _put(v_ptr, vlo_ptr, off, v, ok, ROUND: tl.constexpr, SPLIT: tl.constexpr):
    """One element of V per lane: TF32-rounded with ROUND; with SPLIT as two fp16 halves, hi = v
    rounded to fp16 at v_ptr and the rest rounded to fp16 at vlo_ptr (22 bits together, for the
    3xfp16 GEMMs; v is scaled so |v| < 2**16, within fp16's 65504)."""
    if SPLIT:
        hi = v.to(tl.float16)
        tl.store(v_ptr + off, hi, mask=ok)
        tl.store(vlo_ptr + off, (v - hi.to(tl.float32)).to(tl.float16), mask=ok)
    else:
        tl.store(v_ptr + off, _tf32(v, ROUND), mask=ok)


@triton.jit
def _store_row(v_ptr, row, C, i: tl.constexpr, v0, v1, v2, v3, ok, ROUND: tl.constexpr):
    tl.store(v_ptr + row + (4 * i + 0) * C, _tf32(v0, ROUND), mask=ok)
    tl.store(v_ptr + row + (4 * i + 1) * C, _tf32(v1, ROUND), mask=ok)
    tl.store(v_ptr + row + (4 * i + 2) * C, _tf32(v2, ROUND), mask=ok)
    tl.store(v_ptr + row + (4 * i + 3) * C, _tf32(v3, ROUND), mask=ok)


@triton.jit
def _tiles(T, NC, TH, TW, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's BLOCK_T tiles (index, image, tile row and column) and BLOCK_C channels.
    The compiler walks channels across a warp's lanes on both sides of a transform: contiguous on
    the V/M side, one channel plane per lane on the NCHW side, where the L1 serves a thread's
    neighbouring columns. Blocks laid out [channels, tiles], which made the NCHW side walk tiles
    with a shared-memory transpose in between, ran the transforms slower (VGG-19 features.21,
    batch 32, H200: output 162 us against 119, input 68 against 60; BENCHMARKS.md)."""
    return _tiles_at(tl.program_id(0), tl.program_id(1), T, NC, TH, TW, BLOCK_T, BLOCK_C)


@triton.jit
def _tiles_at(bt, bc, T, NC, TH, TW, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """_tiles for block (bt, bc) of the [tiles, channels] grid."""
    t = bt * BLOCK_T + tl.arange(0, BLOCK_T)
    c = bc * BLOCK_C + tl.arange(0, BLOCK_C)
    ok = (t < T)[:, None] & (c < NC)[None, :]
    return t, c, ok, t // (TW * TH), (t // TW) % TH, t % TW


@triton.jit
def _input_transform_kernel(x_ptr, v_ptr, C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, TH: tl.constexpr,
                            TW: tl.constexpr, T, sxn: tl.constexpr, sxc: tl.constexpr, sxh: tl.constexpr,
                            sxw: tl.constexpr, pad_h: tl.constexpr, pad_w: tl.constexpr, ROUND: tl.constexpr,
                            st_ptr, hint_ptr, SCALED: tl.constexpr, LOG2_V: tl.constexpr, vlo_ptr,
                            SPLIT: tl.constexpr, CHECK: tl.constexpr, BLOCK_T: tl.constexpr,
                            BLOCK_C: tl.constexpr):
    """V[t, 4 i + j, c] = (B^T d B)[i, j] of tile t's 4x4 patch in channel c (zeros outside the map),
    rounded to TF32 with ROUND. (The scaling and splitting arguments are winograd4's; run_steps sets
    SCALED and SPLIT only there.)"""
    t, c, ok, n, ty, tx = _tiles(T, C, TH, TW, BLOCK_T, BLOCK_C)
    ih0 = 2 * ty - pad_h
    iw0 = 2 * tx - pad_w
    base = n.to(tl.int64)[:, None] * sxn + (c * sxc)[None, :]
    h00, h01, h02, h03 = _patch_row(x_ptr, base, ih0, iw0, H, W, sxh, sxw, ok)
    h10, h11, h12, h13 = _patch_row(x_ptr, base, ih0 + 1, iw0, H, W, sxh, sxw, ok)
    h20, h21, h22, h23 = _patch_row(x_ptr, base, ih0 + 2, iw0, H, W, sxh, sxw, ok)
    h30, h31, h32, h33 = _patch_row(x_ptr, base, ih0 + 3, iw0, H, W, sxh, sxw, ok)
    v00, v10, v20, v30 = _bt(h00, h10, h20, h30)
    v01, v11, v21, v31 = _bt(h01, h11, h21, h31)
    v02, v12, v22, v32 = _bt(h02, h12, h22, h32)
    v03, v13, v23, v33 = _bt(h03, h13, h23, h33)
    row = t.to(tl.int64)[:, None] * (16 * C) + c[None, :]
    _store_row(v_ptr, row, C, 0, v00, v01, v02, v03, ok, ROUND)
    _store_row(v_ptr, row, C, 1, v10, v11, v12, v13, ok, ROUND)
    _store_row(v_ptr, row, C, 2, v20, v21, v22, v23, ok, ROUND)
    _store_row(v_ptr, row, C, 3, v30, v31, v32, v33, ok, ROUND)


@triton.jit
def _m_row(m_ptr, row, COUT, i: tl.constexpr, ok):
    """Row i of M, transformed along the row (M A)."""
    m0 = tl.load(m_ptr + row + (4 * i + 0) * COUT, mask=ok, other=0.0).to(tl.float32)
    m1 = tl.load(m_ptr + row + (4 * i + 1) * COUT, mask=ok, other=0.0).to(tl.float32)
    m2 = tl.load(m_ptr + row + (4 * i + 2) * COUT, mask=ok, other=0.0).to(tl.float32)
    m3 = tl.load(m_ptr + row + (4 * i + 3) * COUT, mask=ok, other=0.0).to(tl.float32)
    return _at(m0, m1, m2, m3)


@triton.jit
def _store_pair(y_ptr, p, a, b, ok):
    """a at p and b at p + 1 (NCHW, p even) as one 8-byte (fp32) store per thread."""
    pair = tl.join(a, b).to(y_ptr.dtype.element_ty)
    tl.store(p[:, :, None] + tl.arange(0, 2)[None, None, :], pair, mask=ok[:, :, None])


@triton.jit
def _output_transform_kernel(m_ptr, b_ptr, y_ptr, COUT: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
                             TH: tl.constexpr, TW: tl.constexpr, T, syn: tl.constexpr, syc: tl.constexpr,
                             syh: tl.constexpr, syw: tl.constexpr, sb: tl.constexpr,
                             HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, POOL: tl.constexpr,
                             st_ptr, ws_ptr, SCALED: tl.constexpr, LOG2_V: tl.constexpr,
                             BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """y = act(A^T M A + bias) for tile t's 2x2 outputs, or their max/mean with POOL (1 max, 2 avg).
    (The scaling arguments are winograd4's.)"""
    t, o, ok, n, ty, tx = _tiles(T, COUT, TH, TW, BLOCK_T, BLOCK_C)
    row = t.to(tl.int64)[:, None] * (16 * COUT) + o[None, :]
    s00, s01 = _m_row(m_ptr, row, COUT, 0, ok)
    s10, s11 = _m_row(m_ptr, row, COUT, 1, ok)
    s20, s21 = _m_row(m_ptr, row, COUT, 2, ok)
    s30, s31 = _m_row(m_ptr, row, COUT, 3, ok)
    y00, y10 = _at(s00, s10, s20, s30)
    y01, y11 = _at(s01, s11, s21, s31)
    if HAS_BIAS:
        bias = tl.load(b_ptr + o * sb, mask=o < COUT, other=0.0).to(tl.float32)[None, :]
    else:
        bias = tl.zeros([1, BLOCK_C], dtype=tl.float32)
    y00 = _activate(y00 + bias, ACTIVATION)
    y01 = _activate(y01 + bias, ACTIVATION)
    y10 = _activate(y10 + bias, ACTIVATION)
    y11 = _activate(y11 + bias, ACTIVATION)
    out = y_ptr + n.to(tl.int64)[:, None] * syn + (o * syc)[None, :]
    if POOL == 0:
        oy = 2 * ty
        ox = 2 * tx
        p = out + (oy * syh + ox * syw)[:, None]
        ty_ok = (oy + 1 < OH)[:, None]
        dt = y_ptr.dtype.element_ty
        if (syw == 1) & (OW % 2 == 0):
            # NCHW, whole tiles across the map: a tile row as one vector store. A warp's lanes
            # walk channels, so each store touches 32 sectors: one write per sector, not two.
            _store_pair(y_ptr, p, y00, y01, ok)
            _store_pair(y_ptr, p + syh, y10, y11, ok & ty_ok)
        else:
            tx_ok = (ox + 1 < OW)[:, None]
            tl.store(p, y00.to(dt), mask=ok)
            tl.store(p + syw, y01.to(dt), mask=ok & tx_ok)
            tl.store(p + syh, y10.to(dt), mask=ok & ty_ok)
            tl.store(p + syh + syw, y11.to(dt), mask=ok & ty_ok & tx_ok)
    else:
        # A floor-mode 2x2/2 pool covers exactly the tiles that lie wholly inside the map.
        if POOL == 1:
            res = _max_keep_nan(_max_keep_nan(y00, y01), _max_keep_nan(y10, y11))
        else:
            res = (y00 + y01 + y10 + y11) * 0.25
        keep = ok & ((2 * ty + 1 < OH) & (2 * tx + 1 < OW))[:, None]
        tl.store(out + (ty * syh + tx * syw)[:, None], res.to(y_ptr.dtype.element_ty), mask=keep)


def conv(x, weight, bias, spec, activation, algo="winograd"):
    """Runs the three steps (winograd_steps.run_steps) into a new output in x's memory format."""
    y = result(x, spec)
    return winograd_steps.run_steps(algo, 2, _input_transform_kernel, _output_transform_kernel, BLOCKS,
                                    transformed_weight, amax_hint, x, weight, bias, spec, ACT[activation],
                                    POOL[spec.pool], y)
