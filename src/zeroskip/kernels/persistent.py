"""The dense direct conv as a persistent kernel: a fixed grid of programs, each walking tiles.

implicit_gemm._conv_kernel runs one program per output tile. On VGG-19's first stages at batch
32 a tile's reduction is short (features.2: 9 taps of 64 channels, 9 iterations of a 128x64x64
product) so each program fills and drains its 3-stage load pipeline around little work, and the
loads of its tile wait on L2 latency with nothing else in flight (ncu: 0.54 issued warps per
cycle, 18.8% occupancy, no unit saturated; benchmarks/direct-kernel-ncu-h200.txt). Here the
tile loop and the reduction loop are flattened into one software-pipelined loop
(tl.range(flatten=True)), so the next tile's first loads are issued while the current one's
products and epilogue run.

Same math, epilogue and layouts as the conv kernel; dense only (no zero skipping, no split-K)
and one product per chunk (16-bit operands or TF32).
"""
from __future__ import annotations

import triton
import triton.language as tl

from .ecr_index import _pixel_rows
from .implicit_gemm import _base_offsets, _epilogue
from .split_k import DISK_CACHE, graph_ms


@triton.jit
def _conv_persistent_kernel(
    # pointers
    x_ptr, w_ptr, b_ptr, y_ptr,
    # sizes: compile-time constants as in _conv_kernel, but M (batch-dependent)
    C_G: tl.constexpr, H: tl.constexpr, W: tl.constexpr, COUT_G: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
    PH_OUT: tl.constexpr, PW_OUT: tl.constexpr, M, KH: tl.constexpr, KW: tl.constexpr, G: tl.constexpr,
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
    UPCAST: tl.constexpr, BIG: tl.constexpr, WIN_P2: tl.constexpr, OUT_VEC: tl.constexpr, PER_SM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    NB: tl.constexpr = (COUT_G + BLOCK_N - 1) // BLOCK_N
    N_T: tl.constexpr = (C_G + BLOCK_K - 1) // BLOCK_K
    K_ITERS: tl.constexpr = KH * KW * N_T
    tiles = tl.cdiv(M, BLOCK_M // WIN_P2) * (NB * G)
    kc = tl.arange(0, BLOCK_K)
    # Output-channel blocks and groups fastest: programs running at the same time share input rows in L2.
    for tile in tl.range(tl.program_id(0), tiles, tl.num_programs(0), flatten=True):
        nb = tile % NB
        g = (tile // NB) % G
        mb = tile // (NB * G)
        o = nb * BLOCK_N + tl.arange(0, BLOCK_N)
        omask = o < COUT_G
        cout = (g * COUT_G + o).to(tl.int64)
        n, ih0, iw0, valid = _pixel_rows(mb, M, PW_OUT, PH_OUT, OH, OW, pool_kh, pool_kw, pool_sh, pool_sw,
                                         pool_ph, pool_pw, stride_h, stride_w, pad_h, pad_w, BLOCK_M, WIN_P2)
        x_row, w_col = _base_offsets(n, g, C_G, sxn, sxc, cout, swo, BIG)
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for it in range(K_ITERS):
            r = it // N_T
            t = it - r * N_T
            kh = r // KW
            kw = r - kh * KW
            ih = ih0 + kh * dil_h
            iw = iw0 + kw * dil_w
            ok = valid & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            c = t * BLOCK_K + kc
            cm = c < C_G
            a_off = (x_row + ih * sxh + iw * sxw)[:, None] + (c * sxc)[None, :]
            b_off = (w_col + (kh * swh + kw * sww))[None, :] + (c * swc)[:, None]
            a = tl.load(x_ptr + a_off, mask=ok[:, None] & cm[None, :], other=0.0)
            b = tl.load(w_ptr + b_off, mask=cm[:, None] & omask[None, :], other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
        _epilogue(acc, valid, mb, cout, omask, b_ptr, y_ptr, M, PH_OUT, PW_OUT, syn, syc, syh, syw, sb,
                  pool_kh, pool_kw, HAS_BIAS, ACTIVATION, POOL, WIN_P2, OUT_VEC, BLOCK_M)


def _configs(shapes):
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "PER_SM": p}, num_warps=w, num_stages=s)
            for m, n, k, w, s, p in shapes]


def _prune(configs, named_args, **kwargs):
    win = kwargs.get("WIN_P2", named_args.get("WIN_P2", 1))
    return [c for c in configs if c.kwargs["BLOCK_M"] >= win] or configs[:1]


_KEY = ["C_G", "COUT_G", "M", "KH", "KW", "H", "W", "stride_h", "stride_w", "sxc", "PRECISION", "POOL", "WIN_P2"]
_TUNE = dict(key=_KEY, prune_configs_by={"early_config_prune": _prune}, do_bench=graph_ms, **DISK_CACHE)
# (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages, programs per SM)
_tuned_16 = triton.autotune(configs=_configs([
    (128, 64, 64, 4, 3, 2), (128, 64, 64, 4, 3, 3), (128, 64, 64, 4, 4, 2), (128, 128, 64, 8, 3, 1),
    (128, 128, 64, 8, 3, 2), (256, 64, 64, 8, 3, 1), (256, 128, 64, 8, 3, 1), (64, 64, 64, 4, 4, 4),
]), **_TUNE)(_conv_persistent_kernel)
_tuned_tf32 = triton.autotune(configs=_configs([
    (128, 64, 32, 4, 3, 2), (128, 128, 32, 8, 3, 1), (128, 128, 32, 8, 3, 2), (256, 64, 32, 8, 3, 1),
    (128, 256, 32, 8, 3, 1), (64, 64, 32, 4, 4, 4),
]), **_TUNE)(_conv_persistent_kernel)
