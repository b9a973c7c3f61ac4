"""Implicit-GEMM convolution with zero skipping and a fused bias + activation + pool epilogue.

One program computes a BLOCK_M x BLOCK_N tile: BLOCK_M rows by BLOCK_N output channels of one
group. Without a pool a row is an output pixel (flattened n, y, x). With a pool fused (the
paper's PECR) the rows of a block are the conv pixels of BLOCK_M // WIN_P2 whole pooling
windows (WIN_P2 = window area rounded up to a power of 2, unused rows masked): the tile is one
matrix product, and the epilogue applies bias and activation to the fp32 accumulator, reduces
each window's rows to a max or a sum, and stores only the pooled pixels. The conv output never
reaches memory, and a fused layer keeps the parallelism of the plain conv (an earlier version
looped over window positions per pooled pixel and ran 2-4x slower at batch 1 on VGG-19).

The reduction is one flat loop over (kernel tap, chunk of BLOCK_K input channels), channels
fastest so channels_last input is read contiguously. With SKIP it runs only over the chunks
flagged non-zero for the block (kernels/ecr_index.py).

Split-K: with SPLIT > 1, SPLIT programs share one tile's iterations and store fp32 partial
tiles (PARTIAL); _split_reduce_kernel sums them and runs the same epilogue. It gives small maps
at batch 1 enough programs for the 132 SMs (host side in kernels/direct.py).
"""
from __future__ import annotations

import triton
import triton.language as tl

from .ecr_index import _pixel_rows
from ..runtime import graph_ms, tuner_cache


@triton.jit
def _max_keep_nan(a, b):
    return tl.where((a != a) | (a > b), a, b)


@triton.jit
def _activate(v, ACTIVATION: tl.constexpr):
    """ACTIVATION 1: relu, 2: relu6. Written with where, not maximum/minimum: those return the
    number for NaN inputs on the GPU, and F.relu propagates NaN."""
    if ACTIVATION == 1:
        v = tl.where(v < 0.0, 0.0, v)
    elif ACTIVATION == 2:
        v = tl.where(v < 0.0, 0.0, tl.where(v > 6.0, 6.0, v))
    return v


@triton.jit
def _tf32_nearest(v):
    """fp32 v rounded to the nearest value TF32 holds (10 mantissa bits; winograd.tf32_nearest on the host)."""
    return ((v.to(tl.uint32, bitcast=True) + 0x1000) & 0xFFFFE000).to(tl.float32, bitcast=True)


@triton.jit
def _dot_3xtf32_running(a, b, b_lo, acc, small):
    """3xTF32 summed in running tensor-core accumulators: a_hi @ b into acc, the two small products
    into small (acc + small at the end). No wait on the tensor core per chunk, but the running sums
    drop low bits, so only for short reductions (RUNNING_MAX_K, winograd_gemm.RUNNING_MAX_C)."""
    a_hi = _tf32_nearest(a)
    small = tl.dot(a - a_hi, b, small, input_precision="tf32")
    small = tl.dot(a_hi, b_lo, small, input_precision="tf32")
    return tl.dot(a_hi, b, acc, input_precision="tf32"), small


@triton.jit
def _dot_3xtf32(a, b, b_lo, acc):
    """acc + a @ (b + b_lo) to fp32 accuracy from three TF32 products: the weight split once on
    the host (launch.split_weight), the input here, rounded to the 10 mantissa bits TF32 reads.
    The chunk's products start from a zero accumulator and are added to acc on the CUDA cores:
    wgmma accumulating into a running sum lost low bits (K = 4608 GEMM on an H100: 9.5e-6..2.9e-5
    normwise error that way, 2.4e-7 this way, as Triton's own tf32x3)."""
    a_hi = _tf32_nearest(a)
    a_lo = a - a_hi
    part = tl.dot(a_lo, b, tl.zeros([a.shape[0], b.shape[1]], dtype=tl.float32), input_precision="tf32")
    part = tl.dot(a_hi, b_lo, part, input_precision="tf32")
    return acc + tl.dot(a_hi, b, part, input_precision="tf32")


@triton.jit
def _base_offsets(n, g, C_G, sxn, sxc, cout, swo, BIG: tl.constexpr):
    """Each row's image-and-group offset into x and each output channel's offset into the weight.
    They stay int32 unless the tensors need 64 bits: a block's BLOCK_M row offsets are live
    through the whole loop, and 64-bit pointers for them cost registers the tiles need."""
    if BIG:
        x_row = n.to(tl.int64) * sxn + (g * C_G).to(tl.int64) * sxc
        w_col = cout * swo
    else:
        x_row = n * sxn + g * C_G * sxc
        w_col = cout.to(tl.int32) * swo
    return x_row, w_col


@triton.jit
def _conv_kernel(
    # pointers
    x_ptr, w_ptr, wlo_ptr, b_ptr, y_ptr, flag_ptr, ws_ptr, r_ptr,
    # sizes (SPLIT programs share one tile's reduction; WS_ROWS: workspace rows per split). A
    # layer's own sizes, strides and geometry are compile-time constants, as torch.compile's conv
    # template bakes them in: the divisions and products of the index math fold, which took
    # VGG-19's fp16 conv + relu + pool stages from 1.34x to 1.79x of cuDNN at batch 32 and from
    # 2.13x to 2.94x at batch 1 (same-run A/B, H200, benchmarks/vgg19-constexpr-tma-ab-h200.txt).
    # The cost is one compile per layer shape. The batch-dependent sizes (M, NCH, SPLIT, WS_ROWS)
    # stay arguments.
    C_G: tl.constexpr, H: tl.constexpr, W: tl.constexpr, COUT_G: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
    PH_OUT: tl.constexpr, PW_OUT: tl.constexpr, M, KH: tl.constexpr, KW: tl.constexpr, NCH, SPLIT, WS_ROWS,
    # strides (elements)
    sxn: tl.constexpr, sxc: tl.constexpr, sxh: tl.constexpr, sxw: tl.constexpr, swo: tl.constexpr, swc: tl.constexpr,
    swh: tl.constexpr, sww: tl.constexpr, syn: tl.constexpr, syc: tl.constexpr, syh: tl.constexpr, syw: tl.constexpr,
    sb: tl.constexpr, srn: tl.constexpr, src: tl.constexpr, srh: tl.constexpr, srw: tl.constexpr,
    # conv geometry
    stride_h: tl.constexpr, stride_w: tl.constexpr, pad_h: tl.constexpr, pad_w: tl.constexpr, dil_h: tl.constexpr,
    dil_w: tl.constexpr,
    # pool geometry (1x1 window, stride 1, no padding when POOL == 0)
    pool_kh: tl.constexpr, pool_kw: tl.constexpr, pool_sh: tl.constexpr, pool_sw: tl.constexpr, pool_ph: tl.constexpr,
    pool_pw: tl.constexpr,
    # constexpr switches
    HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, RES_VEC: tl.constexpr, ACTIVATION: tl.constexpr,
    POOL: tl.constexpr, SKIP: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, BIG: tl.constexpr, NCH_P2: tl.constexpr, WIN_P2: tl.constexpr,
    OUT_VEC: tl.constexpr, PARTIAL: tl.constexpr, RUNNING: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    mb = tl.program_id(0)
    nb = tl.program_id(1)
    g = tl.program_id(2) // SPLIT
    s = tl.program_id(2) - g * SPLIT
    G = tl.num_programs(2) // SPLIT
    o = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    omask = o < COUT_G
    cout = (g * COUT_G + o).to(tl.int64)
    if SKIP:
        # Compact this block's flagged chunks in registers: the t-th flagged chunk is the one
        # whose running count is t. No index list goes through memory.
        t_idx = tl.arange(0, NCH_P2)
        f = tl.load(flag_ptr + (mb * G + g).to(tl.int64) * NCH + t_idx, mask=t_idx < NCH, other=0)
        f = f.to(tl.int32)
        rank = tl.where(f > 0, tl.cumsum(f, 0) - 1, -1)
        n_t = tl.sum(f, 0)
    else:
        n_t = tl.cdiv(C_G, BLOCK_K)

    n, ih0, iw0, valid = _pixel_rows(mb, M, PW_OUT, PH_OUT, OH, OW, pool_kh, pool_kw, pool_sh, pool_sw,
                                     pool_ph, pool_pw, stride_h, stride_w, pad_h, pad_w, BLOCK_M, WIN_P2)
    x_row, w_col = _base_offsets(n, g, C_G, sxn, sxc, cout, swo, BIG)
    kc = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    small = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)  # RUNNING's sum of the two small products
    # One flat loop over (tap, chunk) rather than two nested ones: Triton software-pipelines only
    # the innermost loop, and with BLOCK_K = 64 a VGG layer's chunk loop has 1-8 iterations. On an
    # H100 at batch 1 this took fp16 VGG-19 features.0-5 from 1.03-1.20x to 1.49-1.67x of cuDNN.
    # Split-K: program s of SPLIT takes its share of the (tap, chunk) iterations.
    per = tl.cdiv(KH * KW * n_t, SPLIT)
    for it in range(s * per, tl.minimum(KH * KW * n_t, s * per + per)):
        r = it // n_t
        t = it - r * n_t
        kh = r // KW
        kw = r - kh * KW
        ih = ih0 + kh * dil_h
        iw = iw0 + kw * dil_w
        ok = valid & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        if SKIP:
            cid = tl.sum(tl.where(rank == t, t_idx, 0), 0)
        else:
            cid = t
        c = cid * BLOCK_K + kc
        cm = c < C_G
        a_off = (x_row + ih * sxh + iw * sxw)[:, None] + (c * sxc)[None, :]
        b_off = (w_col + (kh * swh + kw * sww))[None, :] + (c * swc)[:, None]
        a = tl.load(x_ptr + a_off, mask=ok[:, None] & cm[None, :], other=0.0)
        b = tl.load(w_ptr + b_off, mask=cm[:, None] & omask[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        if PRECISION == "3xtf32":
            b_lo = tl.load(wlo_ptr + b_off, mask=cm[:, None] & omask[None, :], other=0.0)
            if RUNNING:  # short reductions only (RUNNING_MAX_K)
                acc, small = _dot_3xtf32_running(a, b, b_lo, acc, small)
            else:
                acc = _dot_3xtf32(a, b, b_lo, acc)
        else:
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
    if RUNNING:
        acc = acc + small

    if PARTIAL:
        # fp32 partial sums of this split, reduced and finished by _split_reduce_kernel
        rows = (s * WS_ROWS + mb * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
        tl.store(ws_ptr + rows[:, None] * (G * COUT_G) + cout[None, :], acc, mask=omask[None, :])
    else:
        _epilogue(acc, valid, mb, cout, omask, b_ptr, r_ptr, y_ptr, M, PH_OUT, PW_OUT, syn, syc, syh, syw, sb,
                  srn, src, srh, srw, pool_kh, pool_kw, HAS_BIAS, HAS_RES, RES_VEC, ACTIVATION, POOL, WIN_P2,
                  OUT_VEC, BLOCK_M)


def out_vec(y) -> int:
    """OUT_VEC for the epilogue's store into y (N, C, PH, PW): the largest power of 2, up to 8,
    such that every aligned group of that many consecutive result pixels (flattened n, y, x) lies
    at consecutive addresses starting at a multiple of it; 1 when pixels are not contiguous (as in
    channels_last, where output channels are)."""
    n, _, ph, pw = y.shape
    sn, _, sh, sw = y.stride()
    if sw != 1 and pw > 1:
        return 1
    run = pw if sh != pw and ph > 1 else (ph * pw if sn != ph * pw and n > 1 else n * ph * pw)
    vec = 1
    while vec < 8 and run % (2 * vec) == 0 and (ph == 1 or sh % (2 * vec) == 0) and (n == 1 or sn % (2 * vec) == 0):
        vec *= 2
    return vec


@triton.jit
def _epilogue(acc, valid, mb, cout, omask, b_ptr, r_ptr, y_ptr, M, PH_OUT, PW_OUT, syn, syc, syh, syw, sb,
              srn, src, srh, srw, pool_kh, pool_kw, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr,
              RES_VEC: tl.constexpr, ACTIVATION: tl.constexpr, POOL: tl.constexpr, WIN_P2: tl.constexpr,
              OUT_VEC: tl.constexpr, BLOCK_M: tl.constexpr):
    """Bias, residual, activation and pool on the fp32 accumulator, then the one store of the result."""
    BP: tl.constexpr = BLOCK_M // WIN_P2
    BN: tl.constexpr = acc.shape[1]
    p = mb * BP + tl.arange(0, BP)
    px = p % PW_OUT
    t2 = p // PW_OUT
    py = t2 % PH_OUT
    n2 = t2 // PH_OUT
    if HAS_BIAS:
        acc += tl.load(b_ptr + cout * sb, mask=omask, other=0.0).to(tl.float32)[None, :]
    if HAS_RES:
        # act(conv + r), as ResNet's block end: r read once, here (the host allows it without a pool only)
        tl.static_assert(POOL == 0)
        rpix = n2.to(tl.int64) * srn + py.to(tl.int64) * srh + px.to(tl.int64) * srw
        if RES_VEC > 1 and BP >= RES_VEC:
            rpix = tl.max_contiguous(tl.multiple_of(rpix, RES_VEC), RES_VEC)
        r = tl.load(r_ptr + rpix[:, None] + cout[None, :] * src, mask=(p < M)[:, None] & omask[None, :], other=0.0)
        acc += r.to(tl.float32)
    acc = _activate(acc, ACTIVATION)
    if POOL == 1:
        acc = tl.where(valid[:, None], acc, float("-inf"))
        res = tl.reduce(tl.reshape(acc, [BP, WIN_P2, BN]), 1, _max_keep_nan)
    elif POOL == 2:
        # F.avg_pool2d counts padded positions (count_include_pad=True); floor mode keeps
        # every window inside the padded map, so the divisor is the window area.
        acc = tl.where(valid[:, None], acc, 0.0)
        res = tl.sum(tl.reshape(acc, [BP, WIN_P2, BN]), axis=1) / (pool_kh * pool_kw)
    else:
        res = acc
    pix = n2.to(tl.int64) * syn + py * syh + px * syw
    if OUT_VEC > 1 and BP >= OUT_VEC:
        # NCHW: tell the compiler that consecutive rows are consecutive addresses (out_vec), so the
        # store walks pixels across a warp. Otherwise it walks output channels, one channel plane
        # per lane: 32 sectors per warp store, which bounded VGG-19 features.0 (fp32, 64 outputs per
        # pixel, 27 products each) at 23 us (batch 1) and 632 us (batch 32) on an H200.
        pix = tl.max_contiguous(tl.multiple_of(pix, OUT_VEC), OUT_VEC)
    y_off = pix[:, None] + cout[None, :] * syc
    tl.store(y_ptr + y_off, res.to(y_ptr.dtype.element_ty), mask=(p < M)[:, None] & omask[None, :])


@triton.jit
def _split_reduce_kernel(
    ws_ptr, b_ptr, y_ptr, r_ptr,
    COUT_G, OH, OW, PH_OUT, PW_OUT, M, SPLIT, WS_ROWS,
    syn, syc, syh, syw, sb, srn, src, srh, srw,
    stride_h, stride_w, pad_h, pad_w,
    pool_kh, pool_kw, pool_sh, pool_sw, pool_ph, pool_pw,
    HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, RES_VEC: tl.constexpr, ACTIVATION: tl.constexpr,
    POOL: tl.constexpr, WIN_P2: tl.constexpr, OUT_VEC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Sums the SPLIT partial tiles of one (row block, channel block, group), then the epilogue."""
    mb = tl.program_id(0)
    nb = tl.program_id(1)
    g = tl.program_id(2)
    G = tl.num_programs(2)
    o = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    omask = o < COUT_G
    cout = (g * COUT_G + o).to(tl.int64)
    rows = (mb * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for s in range(0, SPLIT):
        acc += tl.load(ws_ptr + (s * WS_ROWS + rows)[:, None] * (G * COUT_G) + cout[None, :], mask=omask[None, :])
    _, _, _, valid = _pixel_rows(mb, M, PW_OUT, PH_OUT, OH, OW, pool_kh, pool_kw, pool_sh, pool_sw,
                                 pool_ph, pool_pw, stride_h, stride_w, pad_h, pad_w, BLOCK_M, WIN_P2)
    _epilogue(acc, valid, mb, cout, omask, b_ptr, r_ptr, y_ptr, M, PH_OUT, PW_OUT, syn, syc, syh, syw, sb,
              srn, src, srh, srw, pool_kh, pool_kw, HAS_BIAS, HAS_RES, RES_VEC, ACTIVATION, POOL, WIN_P2,
              OUT_VEC, BLOCK_M)


def _prune(configs, named_args, **kwargs):
    """Drops tiles that cannot hold one pooling window's rows."""
    win = kwargs.get("WIN_P2", named_args.get("WIN_P2", 1))
    kept = [c for c in configs if c.kwargs["BLOCK_M"] >= win]
    return kept or [triton.Config({"BLOCK_M": win, "BLOCK_N": 32, "BLOCK_K": 32}, num_warps=4, num_stages=2)]


# 3xTF32 sums in running tensor-core accumulators (winograd_gemm.RUNNING_MAX_C says why) on the
# dense path, for reductions (channels x taps) up to this long. VGG-19 at batch 32 (H100, same run,
# benchmarks/vgg19-fp32-igemm-running-ab-h100.txt): features.2 (K 576) 1515.9 -> 1358.8 us,
# features.5 766.1 -> 628.7; normwise error 1.5e-7 -> 1.3e-6. Longer reductions lose more low bits
# that way (4608: 9.5e-6..2.9e-5, _dot_3xtf32) and keep the per-chunk sums.
RUNNING_MAX_K = 576


def _configs(shapes):
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
            for m, n, k, w, s in shapes]


# Tiles are tuned per shape and layout (sxc is 1 for channels_last input); Triton adds the dtypes.
_KEY = ["C_G", "COUT_G", "M", "KH", "KW", "H", "W", "stride_h", "stride_w", "sxc", "PRECISION", "POOL", "WIN_P2",
        "HAS_RES"]
_TUNE = dict(key=_KEY, prune_configs_by={"early_config_prune": _prune}, do_bench=graph_ms, **tuner_cache())
# Dense tensor-core paths: tiles picked by measurement (CUDA-graph replays, runtime.graph_ms)
# per layer shape at its first call.
# 16-bit operands take BLOCK_K 64 (one 128-byte row per load); fp32 (TF32 / 3xTF32) BLOCK_K 32,
# fewer stages for its 2x larger tiles; BLOCK_K 16 serves the 3-channel first layers.
# 3xtf32's per-chunk accumulator rules out 256-wide fp32 tiles (they spill). 128x64x32 on 4 warps
# spills too (544 bytes of stack, sm_90 ptxas) yet is what the tuner keeps for the Winograd GEMMs:
# adding spill-free 128x64 tiles on 8 warps and BLOCK_K 64 ones moved no VGG-19 fp32 layer by more
# than 0.5% at batch 1 or 32 (H200, scripts/ab_algos.py --base --tiles), so they are not listed.
# Likewise for 16-bit: the tiles torch.compile's conv templates win with at batch 32 (256x128x64,
# 128x256x64, 256x64x64, 128x128x128 on 8 warps; spill-free with a fused pool) moved VGG-19's
# fp16 fused stages by 0-1.8% (H200, batch 1 and 32).
_conv_tuned_16 = triton.autotune(configs=_configs([
    (128, 128, 64, 8, 3), (128, 64, 64, 4, 3), (64, 128, 64, 4, 3), (64, 64, 64, 4, 4),
    (128, 128, 32, 8, 4), (128, 64, 32, 4, 4), (64, 64, 32, 4, 4), (32, 64, 64, 4, 3),
    (64, 32, 32, 4, 3), (256, 64, 32, 8, 3), (128, 64, 16, 4, 4), (64, 64, 16, 4, 4),
]), **_TUNE)(_conv_kernel)
_conv_tuned_32 = triton.autotune(configs=_configs([
    (128, 64, 32, 4, 3), (128, 128, 32, 8, 3), (64, 64, 32, 4, 3), (64, 128, 32, 4, 3),
    (32, 64, 32, 4, 3), (64, 32, 32, 4, 2), (128, 64, 16, 4, 3), (64, 64, 16, 4, 3),
    (256, 64, 32, 8, 2), (128, 32, 32, 4, 3), (128, 128, 32, 8, 4),
]), **_TUNE)(_conv_kernel)
# Plain TF32 (one product per chunk) keeps no per-chunk accumulator, so the 256-wide tiles that
# 3xtf32 spills on fit here: its own list, 3xtf32's and those, keeps them out of 3xtf32's tuning
# time. With them VGG-19's TF32 conv + relu + pool stages went from 1.36x to 1.50x of cuDNN at
# batch 32 (features.25 1.04x -> 1.29x), unchanged at batch 1 (H200, same run,
# benchmarks/vgg19-tf32-tiles-ab-h200.txt).
_conv_tuned_tf32 = triton.autotune(configs=_conv_tuned_32.configs + _configs([
    (128, 256, 32, 8, 3), (256, 128, 32, 8, 3), (128, 64, 32, 4, 4), (64, 128, 32, 4, 4), (64, 64, 32, 4, 4),
    (128, 128, 64, 8, 2),
]), **_TUNE)(_conv_kernel)
