"""Implicit GEMM whose reduction runs over (input channel, kernel tap) pairs: for few channels.

The main kernel (implicit_gemm.py) reduces over (tap, chunk of BLOCK_K input channels), so a
layer with 3 input channels pads each tap's chunk from 3 to 16: VGG-19 features.0 multiplies 144
columns to use 27. Here column k of the (never materialised) im2col matrix is one (channel,
kh, kw) triple, as in a contiguous weight's last three dimensions, and the columns are gathered
BLOCK_K at a time: 32 columns for those 27. The tuner also tries a tap gather (TAPS > 0): column k
is (tap k // CP, channel k % CP), CP the power of 2 at or above the channels, so bounds and masks are
computed once per (pixel, tap) rather than per column; ResNet-50's 7x7/s2 stem conv (3 channels as
4) at batch 32 in fp16 took 109.9 us with it against 122.6 us (H100,
benchmarks/stem-probe-fp16-h100-1207.txt).

Such layers do little arithmetic per byte written (27 multiply-adds per output at features.0),
so the gather and the store set the time. Products follow the main kernel's precision rules
(launch.precision): fp16/bf16 natively, fp32 as TF32 under torch.backends.cudnn.allow_tf32,
else as 3xTF32 (fp32 accuracy). Exact fp32 on the CUDA cores (input_precision "ieee", Triton's
FMA dot) ran VGG-19 features.0 at batch 32 in 632 us against cuDNN's 630 (H200): one 8-warp
program per SM, its gather, products and store one after the other. Bias, activation and any
pool are fused as in the main kernel (its _epilogue and row layout), or, where a fused pool
recomputes conv outputs (launch.POOL_AFTER_RECOMPUTE), run after the conv if that measures faster.
No zero skipping.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import runtime
from ..geometry import MAX_WINDOW, pool_recompute, without_pool
from ..runtime import graph_ms, tuner_cache
from . import implicit_gemm as ig, pool, split_k
from .ecr_index import _pixel_rows
from .implicit_gemm import _base_offsets, _dot_3xtf32, _epilogue, _prune
from .launch import ACT, POOL, POOL_AFTER_RECOMPUTE, channels_last, packed_weight, precision, result, span


@triton.jit
def _product(a, w_ptr, wlo_ptr, b_off, b_ok, acc, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """acc + a @ (the weight tile at b_off), at the call's precision (3xtf32 also reads the low part)."""
    b = tl.load(w_ptr + b_off, mask=b_ok, other=0.0)
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if PRECISION == "3xtf32":
        b_lo = tl.load(wlo_ptr + b_off, mask=b_ok, other=0.0)
        acc = _dot_3xtf32(a, b, b_lo, acc)
    else:
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    return acc


@triton.jit
def _im2col_kernel(
    # pointers
    x_ptr, w_ptr, wlo_ptr, b_ptr, y_ptr,
    # sizes: the layer's own as compile-time constants, as in implicit_gemm._conv_kernel; M (batch) stays an argument
    C_G: tl.constexpr, H: tl.constexpr, W: tl.constexpr, COUT_G: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
    PH_OUT: tl.constexpr, PW_OUT: tl.constexpr, M, KH: tl.constexpr, KW: tl.constexpr,
    # strides (elements)
    sxn: tl.constexpr, sxc: tl.constexpr, sxh: tl.constexpr, sxw: tl.constexpr, swo: tl.constexpr, swc: tl.constexpr,
    swh: tl.constexpr, sww: tl.constexpr, syn: tl.constexpr, syc: tl.constexpr, syh: tl.constexpr, syw: tl.constexpr,
    sb: tl.constexpr,
    # conv geometry
    stride_h: tl.constexpr, stride_w: tl.constexpr, pad_h: tl.constexpr, pad_w: tl.constexpr, dil_h: tl.constexpr,
    dil_w: tl.constexpr,
    # pool geometry (1x1 window, stride 1, no padding when POOL == 0)
    pool_kh: tl.constexpr, pool_kw: tl.constexpr, pool_sh: tl.constexpr, pool_sw: tl.constexpr, pool_ph: tl.constexpr,
    pool_pw: tl.constexpr,
    # constexpr switches
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, POOL: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr, BIG: tl.constexpr, WIN_P2: tl.constexpr, OUT_VEC: tl.constexpr, CP: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, TAPS: tl.constexpr,
):
    mb = tl.program_id(0)
    nb = tl.program_id(1)
    g = tl.program_id(2)
    o = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    omask = o < COUT_G
    cout = (g * COUT_G + o).to(tl.int64)
    n, ih0, iw0, valid = _pixel_rows(mb, M, PW_OUT, PH_OUT, OH, OW, pool_kh, pool_kw, pool_sh, pool_sw,
                                     pool_ph, pool_pw, stride_h, stride_w, pad_h, pad_w, BLOCK_M, WIN_P2)
    x_row, w_col = _base_offsets(n, g, C_G, sxn, sxc, cout, swo, BIG)
    taps = KH * KW
    k_total = C_G * taps
    kk = tl.arange(0, BLOCK_K)
    # Offsets split into a per-row and a per-column part, added only at the load: the 2-D gather
    # state is what fills the registers here.
    row = x_row + ih0 * sxh + iw0 * sxw
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    if TAPS > 0:
        # column k = (tap k // CP, channel k % CP), CP >= C_G: bounds and masks per (row, tap), not
        # per (row, column), and a tap's channels side by side (contiguous in channels_last)
        tt = tl.arange(0, TAPS)
        cc = tl.arange(0, CP)
        cmask = cc < C_G
        jt = kk // CP
        jc = kk - jt * CP
        for t0 in range(0, taps, TAPS):
            t = t0 + tt
            kh = t // KW
            dh = kh * dil_h
            dw = (t - kh * KW) * dil_w
            ih = ih0[:, None] + dh[None, :]
            iw = iw0[:, None] + dw[None, :]
            ok = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W) & (valid[:, None] & (t < taps)[None, :])
            off = row[:, None] + (dh * sxh + dw * sxw)[None, :]
            a = tl.load(x_ptr + (off[:, :, None] + (cc * sxc)[None, None, :]),
                        mask=ok[:, :, None] & cmask[None, None, :], other=0.0)
            a = tl.reshape(a, [BLOCK_M, BLOCK_K])
            k_t = t0 + jt
            k_h = k_t // KW
            b_off = w_col[None, :] + (jc * swc + k_h * swh + (k_t - k_h * KW) * sww)[:, None]
            b_ok = ((k_t < taps) & (jc < C_G))[:, None] & omask[None, :]
            acc = _product(a, w_ptr, wlo_ptr, b_off, b_ok, acc, UPCAST, PRECISION)
    else:
        for k0 in range(0, k_total, BLOCK_K):
            k = k0 + kk
            kmask = k < k_total
            c = k // taps
            r = k - c * taps
            kh = r // KW
            kw = r - kh * KW
            dh = kh * dil_h
            dw = kw * dil_w
            ih = ih0[:, None] + dh[None, :]
            iw = iw0[:, None] + dw[None, :]
            ok = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W) & (valid[:, None] & kmask[None, :])
            a = tl.load(x_ptr + (row[:, None] + (c * sxc + dh * sxh + dw * sxw)[None, :]), mask=ok, other=0.0)
            b_off = w_col[None, :] + (c * swc + kh * swh + kw * sww)[:, None]
            acc = _product(a, w_ptr, wlo_ptr, b_off, kmask[:, None] & omask[None, :], acc, UPCAST, PRECISION)
    _epilogue(acc, valid, mb, cout, omask, b_ptr, y_ptr, y_ptr, M, PH_OUT, PW_OUT, syn, syc, syh, syw, sb,
              0, 0, 0, 0, pool_kh, pool_kw, HAS_BIAS, False, 1, ACTIVATION, POOL, WIN_P2, OUT_VEC, BLOCK_M)


_KEY = ["C_G", "COUT_G", "M", "KH", "KW", "H", "W", "stride_h", "stride_w", "sxc", "PRECISION", "POOL", "WIN_P2"]


def _prune_tiles(configs, named_args, **kwargs):
    """_prune's, with each tap-gather config's TAPS (1 marks one) set to BLOCK_K // CP taps per
    chunk; dropped where a chunk cannot hold one tap's CP channels."""
    cp = kwargs.get("CP", named_args.get("CP"))
    kept = []
    for c in _prune(configs, named_args, **kwargs):
        if c.kwargs.get("TAPS", 0):
            if c.kwargs["BLOCK_K"] < cp:
                continue
            c = triton.Config({**c.kwargs, "TAPS": c.kwargs["BLOCK_K"] // cp}, num_warps=c.num_warps,
                              num_stages=c.num_stages)
        kept.append(c)
    return kept


# Tiles measured per layer shape at its first call by CUDA-graph replays (runtime.graph_ms), as
# the main kernel's. 128x64 tiles on 8 warps: on 4 warps the gather's 2-D offsets and masks beside
# the accumulators spilled on sm_90 (ptxas: 368 bytes in 3xtf32, 24 in fp16; none on 8 warps).
# The tap-gather configs (TAPS=1) bound-check each (row, tap) once for its CP channels.
_im2col_tuned = triton.autotune(configs=[
    triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "TAPS": t}, num_warps=w, num_stages=s)
    for m, n, k, w, s, t in [(128, 64, 32, 8, 2, 0), (128, 64, 32, 8, 3, 0), (64, 128, 32, 8, 2, 0),
                             (128, 64, 16, 8, 2, 0), (256, 64, 32, 8, 2, 0), (64, 64, 32, 4, 2, 0),
                             (64, 64, 16, 4, 2, 0), (64, 32, 32, 4, 2, 0), (32, 64, 32, 4, 2, 0),
                             (128, 64, 32, 8, 2, 1), (128, 64, 32, 4, 2, 1), (64, 64, 32, 4, 2, 1),
                             (128, 64, 64, 8, 2, 1), (256, 64, 32, 8, 2, 1)]
], key=_KEY, prune_configs_by={"early_config_prune": _prune_tiles}, do_bench=graph_ms, **tuner_cache())(_im2col_kernel)
# The interpreter's one launch: (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, tap gather); tests set the last.
INTERPRETER_TILES = (128, 64, 32, 1, 1)
# The interpreter measures nothing: an overlapping pool stays fused unless a test sets this.
INTERPRETER_POOL_AFTER = False


def supports(spec, input, activation) -> str | None:
    """Every geometry and activation; a pool window of at most MAX_WINDOW positions (one tile's rows)."""
    if spec.window_rows > MAX_WINDOW:
        return (f"pool_size {(spec.pool_kh, spec.pool_kw)} has {spec.pool_kh * spec.pool_kw} positions; "
                f"it fuses windows of at most {MAX_WINDOW}")
    return None


def conv(x, weight, bias, spec, activation, algo="im2col"):
    """Launches the kernel for a checked call into a new output in x's memory format. Its columns
    run (channel, kh, kw) as a contiguous weight's do: the weight as it is, split for 3xtf32 (cached
    like the packed weights)."""
    why = supports(spec, x, activation)
    if why is not None:
        raise ValueError(f"algo={algo!r} cannot run this call: {why} (use algo='torch')")
    prec = precision("im2col", x.dtype)
    w, w_lo = packed_weight(weight, k_major=True, split=True) if prec == "3xtf32" else (weight, weight)
    # the interpreter costs ~9 ms per program-iteration whatever the block: big blocks, one config;
    # its bf16 dot is wrong, so bf16 is upcast there
    interpreting = runtime.interpreting()
    bm, bn, bk, warps, taps = INTERPRETER_TILES
    tiles = (max(bm, spec.window_rows), bn, bk, warps, taps) if interpreting else None

    def fused():
        y = result(x, spec)
        big = max(span(x), span(y), span(weight)) >= 2**31
        return _launch(x, w, w_lo, bias, y, spec, ACT[activation], POOL[spec.pool], prec, big, tiles,
                       upcast=interpreting and x.dtype == torch.bfloat16)
    if pool_recompute(spec) >= POOL_AFTER_RECOMPUTE:
        after = lambda: pool.after(conv(x, weight, bias, without_pool(spec), activation, algo), spec)  # noqa: E731
        key = ("im2col", spec, x.dtype, prec, channels_last(x), x.device.index, activation, bias is not None)
        if (INTERPRETER_POOL_AFTER if interpreting else
                split_k.pick(key, fused, lambda: [("pool after", after)]) is not None):
            return after()
    return fused()


def _launch(x, w, w_lo, b, y, spec, activation_code: int, pool_code: int, prec: str, big: bool, tiles=None,
            upcast=False):
    """Runs the kernel into y (allocated by the caller in its layout); b may be None, w_lo is read
    only for prec "3xtf32". tiles = (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, tap gather) fixes the
    launch (the tap gather only where BLOCK_K holds CP channels); without it the tiles are autotuned."""
    win = spec.window_rows
    m_total = spec.batch * spec.result_h * spec.result_w
    args = (x, w, w_lo, b if b is not None else y, y,
            spec.in_per_group, spec.height, spec.width, spec.out_per_group, spec.out_h, spec.out_w,
            spec.result_h, spec.result_w, m_total, spec.kernel_h, spec.kernel_w,
            *x.stride(), *w.stride(), *y.stride(), b.stride(0) if b is not None else 0,
            spec.stride_h, spec.stride_w, spec.pad_h, spec.pad_w, spec.dil_h, spec.dil_w,
            spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw)
    switches = dict(HAS_BIAS=b is not None, ACTIVATION=activation_code, POOL=pool_code, PRECISION=prec,
                    UPCAST=upcast, BIG=big, WIN_P2=win, OUT_VEC=ig.out_vec(y),
                    CP=triton.next_power_of_2(spec.in_per_group))
    if tiles is not None:
        bm, bn, bk, warps, taps = tiles
        taps = bk // switches["CP"] if taps and bk >= switches["CP"] else 0
        grid = (triton.cdiv(m_total, bm // win), triton.cdiv(spec.out_per_group, bn), spec.groups)
        _im2col_kernel[grid](*args, **switches, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, TAPS=taps, num_warps=warps,
                             num_stages=2)
        return y
    grid = lambda meta: (triton.cdiv(m_total, meta["BLOCK_M"] // win),  # noqa: E731
                         triton.cdiv(spec.out_per_group, meta["BLOCK_N"]), spec.groups)
    _im2col_tuned[grid](*args, **switches)
    return y
