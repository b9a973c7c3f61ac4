"""Zero-skipping convolution by per-tile channel compaction ("compact"), on tensor cores.

After a ReLU most of a map is zero, but hardly any fixed block of pixels x contiguous channels
is all zero, so skipping such blocks (kernels/ecr_index.py) saves nothing on real activations.
Per output tile, though, many channels are zero over the whole receptive field. Pass 1
(kernels/compact_pack.py) lists each tile's live channels per group of GROUP channels and packs
their receptive-field values into P; this kernel then runs, per (tile, block of output channels):

- over the tile's dense groups (every channel live): the implicit GEMM of a dense kernel, A read
  from x, DK channels per step;
- over the packed chunks of its sparse groups: per kernel tap, A = the chunks' P rows shifted by
  the tap, B = the weight rows of those channels (gathered from the packed weight, output channels
  contiguous); runs of KPACK // CHUNK whole chunks make one dot of K = KPACK with no masks, the
  rest one dot per chunk with the weight rows past the count zeroed.

Every loop iteration is one tl.dot, so Triton keeps the wgmma asynchronous and the loads
pipelined (sm_90 PTX: with 3 or 9 taps' dots in one iteration each waited for the tensor core);
the packed loops pipeline deeper than the dense one in proportion to their narrower dots
(compact_config.stages), so that as many bytes are in flight.
The epilogue adds the bias, applies the activation, max-pools 2x2/2 windows (each window's 4
pixels are 4 consecutive tile rows) and stores once. Tiles with few output-channel blocks split
their reduction over SPLIT programs (fp32 partial tiles summed by _reduce_kernel), for small maps
at batch 1. No host sync: P, ids and counts are allocated once per call at their capacity.

Scope (supports()): 3x3 kernels, stride 1, dilation 1, groups 1, any padding; bias;
relu / relu6; an optional 2x2/2 max pool; fp16 and bf16, fp32 at fp32 accuracy (3xTF32) or TF32
when torch.backends.cudnn.allow_tf32 is set (launch.precision). Input NCHW or channels_last; the
result keeps the input's memory format.

Semantics: results equal the same kernel with skipping off (every group dense) up to the order
of summation, except that a skipped channel (all zero over a tile's receptive field) contributes
0 even where its weight is inf or NaN; cuDNN gives NaN there (0 x inf). NaN and inf inputs are
not zero and are never skipped. fp32 with TF32 off splits an inf into inf + NaN (3xTF32, as the
direct kernel): an inf in the input or a multiplied weight gives NaN where cuDNN gives inf.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import runtime
from ..geometry import ACTIVATIONS
from . import compact_pack
from .launch import packed_weight, precision, result
from .compact_config import Config, default_config, fit, stages
from .implicit_gemm import _activate, _dot_3xtf32, _max_keep_nan

_ACT = {None: 0, "relu": 1, "relu6": 2}
DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@triton.jit
def _mma(a, w_ptrs, wlo_ptrs, b_mask, acc, MASK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """acc + a @ (the weight tile at w_ptrs, b_mask applied when MASK), at PRECISION (3xtf32:
    with its low half at wlo_ptrs)."""
    if MASK:
        b = tl.load(w_ptrs, mask=b_mask, other=0.0)
    else:
        b = tl.load(w_ptrs)
    if UPCAST:  # the interpreter's bf16 dot is wrong
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if PRECISION == "3xtf32":
        b_lo = tl.load(wlo_ptrs, mask=b_mask, other=0.0) if MASK else tl.load(wlo_ptrs)
        acc = _dot_3xtf32(a, b, b_lo, acc)
    else:
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    return acc


@triton.jit
def _tile_pixels(TH: tl.constexpr, TW: tl.constexpr, POOL: tl.constexpr):
    """Row m's pixel (ly, lx) in the tile: row-major, or with POOL window by window (rows
    4w..4w+3 are 2x2 window w's pixels, windows row-major over the tile)."""
    m = tl.arange(0, TH * TW)
    if POOL:
        win = m // 4
        ly = 2 * (win // (TW // 2)) + (m % 4) // 2
        lx = 2 * (win % (TW // 2)) + m % 2
    else:
        ly = m // TW
        lx = m % TW
    return ly, lx


@triton.jit
def _epilogue(acc, t, o, b_ptr, y_ptr, OH: tl.constexpr, OW: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
              COUT: tl.constexpr, TY: tl.constexpr, TX: tl.constexpr, syn: tl.constexpr, syc: tl.constexpr,
              syh: tl.constexpr, syw: tl.constexpr, sb: tl.constexpr, HAS_BIAS: tl.constexpr,
              ACTIVATION: tl.constexpr, POOL: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
              BLOCK_N: tl.constexpr):
    """Bias, activation and the 2x2/2 max pool on the fp32 tile, then its one store."""
    omask = o < COUT
    if HAS_BIAS:
        acc += tl.load(b_ptr + o * sb, mask=omask, other=0.0).to(tl.float32)[None, :]
    acc = _activate(acc, ACTIVATION)
    n = t // (TY * TX)
    ty = (t // TX) % TY
    tx = t % TX
    if POOL:
        res = tl.reduce(tl.reshape(acc, [TH * TW // 4, 4, BLOCK_N]), 1, _max_keep_nan)
        win = tl.arange(0, TH * TW // 4)
        py = ty * (TH // 2) + win // (TW // 2)
        px = tx * (TW // 2) + win % (TW // 2)
        ok = (py < PH) & (px < PW)
    else:
        res = acc
        ly, lx = _tile_pixels(TH, TW, POOL)
        py = ty * TH + ly
        px = tx * TW + lx
        ok = (py < OH) & (px < OW)
    y_off = (py * syh + px * syw)[:, None] + (o * syc)[None, :]
    tl.store(y_ptr + n.to(tl.int64) * syn + y_off, res.to(y_ptr.dtype.element_ty), mask=ok[:, None] & omask[None, :])


@triton.jit
def _group_of(u, ends, sizes, gi, NG_P2: tl.constexpr):
    """(group, index within it) of the u-th item of a list that takes sizes[g] items from group g
    in turn (ends: their running sums)."""
    if NG_P2 == 1:
        return u * 0, u
    g = tl.sum((ends <= u).to(tl.int32), 0)
    return g, u - tl.sum(tl.where(gi == g, ends - sizes, 0), 0)


@triton.jit
def _packed_dot(acc, it, ends, sizes, first, cnt, gi, p_tile, ids_tile, rf, o, omask, w_ptr, wlo_ptr,
                swc: tl.constexpr, swo: tl.constexpr, swh: tl.constexpr, sww: tl.constexpr, KW: tl.constexpr,
                RFW: tl.constexpr, RF: tl.constexpr, GROUP: tl.constexpr, CHUNK: tl.constexpr, K: tl.constexpr,
                KK: tl.constexpr, NG_P2: tl.constexpr, MASK_K: tl.constexpr, MASK_N: tl.constexpr,
                PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """acc + one packed step: item it = (step u, kernel tap r) with step u the u-th run of K // CHUNK
    chunks over the groups (sizes[g] runs from group g, starting at its chunk first[g]); A = the
    chunks' P rows shifted by the tap, B = the weight rows of their channels at that tap. MASK_K:
    the run may end past the group's count (B rows there are zeroed; P holds zeros)."""
    u = it // KK
    r = it % KK
    g, local = _group_of(u, ends, sizes, gi, NG_P2)
    chunk0 = tl.sum(tl.where(gi == g, first, 0), 0) + local * (K // CHUNK)
    kk = tl.arange(0, K)
    slot = chunk0 * CHUNK + kk
    shift = (r // KW) * RFW + r % KW
    col = ((g * (GROUP // CHUNK) + chunk0 + kk // CHUNK) * RF + shift) * CHUNK + kk % CHUNK
    a = tl.load(p_tile + (rf * CHUNK)[:, None] + col[None, :])
    if MASK_K:  # ids past the count are unwritten: channel 0 there, its weight rows zeroed
        km = slot < tl.sum(tl.where(gi == g, cnt, 0), 0)
        ch = tl.load(ids_tile + g * GROUP + slot, mask=km, other=0)
        b_mask = km[:, None] & omask[None, :]
    else:
        ch = tl.load(ids_tile + g * GROUP + slot)
        b_mask = omask[None, :]
    b_off = (r // KW) * swh + (r % KW) * sww + (ch * swc)[:, None] + (o * swo)[None, :]
    return _mma(a, w_ptr + b_off, wlo_ptr + b_off, b_mask, acc, MASK_K or MASK_N, PRECISION, UPCAST)


@triton.jit
def _compact_kernel(
    # pointers: input, pass 1's P / ids / counts, packed weight (and its TF32 low half), bias,
    # result, fp32 workspace of partial tiles (SPLIT > 1)
    x_ptr, p_ptr, ids_ptr, cnt_ptr, w_ptr, wlo_ptr, b_ptr, y_ptr, ws_ptr,
    # sizes (compile-time, one build per layer shape, as implicit_gemm)
    C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, COUT: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
    PH: tl.constexpr, PW: tl.constexpr, TY: tl.constexpr, TX: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
    # strides (elements) and padding
    sxn: tl.constexpr, sxc: tl.constexpr, sxh: tl.constexpr, sxw: tl.constexpr, swo: tl.constexpr,
    swc: tl.constexpr, swh: tl.constexpr, sww: tl.constexpr, syn: tl.constexpr, syc: tl.constexpr,
    syh: tl.constexpr, syw: tl.constexpr, sb: tl.constexpr, pad_h: tl.constexpr, pad_w: tl.constexpr,
    # switches
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, POOL: tl.constexpr, SKIP: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr, SPLIT: tl.constexpr,
    # tiles
    TH: tl.constexpr, TW: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr, KPACK: tl.constexpr,
    DK: tl.constexpr, GROUP: tl.constexpr, NG_P2: tl.constexpr,
    # pipeline stages of the packed loops (runs, single chunks; the dense loop takes num_stages)
    STAGES_R: tl.constexpr, STAGES_C: tl.constexpr,
):
    # output-channel blocks vary fastest: the programs that read one tile's P run together
    NB: tl.constexpr = (COUT + BLOCK_N - 1) // BLOCK_N
    NG: tl.constexpr = (C + GROUP - 1) // GROUP
    KK: tl.constexpr = KH * KW
    RFW: tl.constexpr = TW + KW - 1
    RF: tl.constexpr = (TH + KH - 1) * RFW
    NCK: tl.constexpr = KPACK // CHUNK
    MASK_N: tl.constexpr = COUT % BLOCK_N != 0
    pid = tl.program_id(0)
    nb = pid % NB
    s = (pid // NB) % SPLIT
    t = pid // (NB * SPLIT)
    n = t // (TY * TX)
    ty = (t // TX) % TY
    tx = t % TX
    o = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    omask = o < COUT
    ly, lx = _tile_pixels(TH, TW, POOL)
    oy = ty * TH + ly
    ox = tx * TW + lx

    # this tile's work items, each one tl.dot (one dot per loop iteration keeps the tensor core
    # asynchronous and the loads pipelined; several per iteration waited on each): (dense group,
    # DK channels, tap) from x, then (run of NCK whole chunks, tap) and (last chunks, tap) from P
    gi = tl.arange(0, NG_P2)
    size = tl.where(gi < NG, tl.minimum(GROUP, C - gi * GROUP), -1)
    if SKIP:
        cnt = tl.load(cnt_ptr + t * NG + gi, mask=gi < NG, other=0)
    else:
        cnt = size
    dense = ((cnt == size) & (gi < NG)).to(tl.int32)
    drank = tl.where(dense > 0, tl.cumsum(dense, 0) - 1, -1)
    whole = tl.where(dense > 0, 0, cnt // CHUNK)  # chunks with every slot live
    runs = whole // NCK
    tail = tl.where(dense > 0, 0, (cnt + CHUNK - 1) // CHUNK) - runs * NCK
    run_end = tl.cumsum(runs, 0)
    tail_end = tl.cumsum(tail, 0)
    total_d = tl.sum(dense, 0) * (GROUP // DK) * KK
    total_r = tl.sum(runs, 0) * KK
    total = total_d + total_r + tl.sum(tail, 0) * KK
    per = tl.cdiv(total, SPLIT)
    lo = s * per
    hi = tl.minimum(total, lo + per)
    acc = tl.zeros([TH * TW, BLOCK_N], dtype=tl.float32)

    x_img = x_ptr + n.to(tl.int64) * sxn
    kd = tl.arange(0, DK)
    for it in range(lo, tl.minimum(hi, total_d)):
        r = it % KK
        u = it // KK
        g = tl.sum(tl.where(drank == u // (GROUP // DK), gi, 0), 0)
        c = g * GROUP + (u % (GROUP // DK)) * DK + kd
        cm = c < C
        iy = oy + r // KW - pad_h
        ix = ox + r % KW - pad_w
        ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
        a = tl.load(x_img + (iy * sxh + ix * sxw)[:, None] + (c * sxc)[None, :], mask=ok[:, None] & cm[None, :],
                    other=0.0)
        b_off = (r // KW) * swh + (r % KW) * sww + (c * swc)[:, None] + (o * swo)[None, :]
        acc = _mma(a, w_ptr + b_off, wlo_ptr + b_off, cm[:, None] & omask[None, :], acc, True, PRECISION, UPCAST)

    tb = t.to(tl.int64)
    p_tile = p_ptr + tb * (NG * GROUP * RF)
    ids_tile = ids_ptr + tb * (NG * GROUP)
    rf = ly * RFW + lx
    base = total_d
    # runs of NCK whole chunks: no mask on A or B (NCK = 1 too: whole chunks need no mask)
    for it in tl.range(tl.maximum(lo, base) - base, tl.minimum(hi, base + total_r) - base, num_stages=STAGES_R):
        acc = _packed_dot(acc, it, run_end, runs, tl.zeros_like(runs), cnt, gi, p_tile, ids_tile, rf, o, omask,
                          w_ptr, wlo_ptr, swc, swo, swh, sww, KW, RFW, RF, GROUP, CHUNK, KPACK, KK, NG_P2, False,
                          MASK_N, PRECISION, UPCAST)
    base = total_d + total_r
    for it in tl.range(tl.maximum(lo, base) - base, hi - base, num_stages=STAGES_C):  # the rest, a chunk per step
        acc = _packed_dot(acc, it, tail_end, tail, runs * NCK, cnt, gi, p_tile, ids_tile, rf, o, omask, w_ptr,
                          wlo_ptr, swc, swo, swh, sww, KW, RFW, RF, GROUP, CHUNK, CHUNK, KK, NG_P2, True, MASK_N,
                          PRECISION, UPCAST)

    if SPLIT > 1:  # fp32 partial tile, finished by _reduce_kernel
        m = tl.arange(0, TH * TW)
        rows = (s * (tl.num_programs(0) // (NB * SPLIT)) + t).to(tl.int64) * (TH * TW) + m
        tl.store(ws_ptr + rows[:, None] * COUT + o[None, :], acc, mask=omask[None, :])
    else:
        _epilogue(acc, t, o, b_ptr, y_ptr, OH, OW, PH, PW, COUT, TY, TX, syn, syc, syh, syw, sb, HAS_BIAS,
                  ACTIVATION, POOL, TH, TW, BLOCK_N)


@triton.jit
def _reduce_kernel(
    ws_ptr, b_ptr, y_ptr, T,  # workspace (SPLIT, T, TH * TW, COUT) fp32; T tiles
    OH: tl.constexpr, OW: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr, COUT: tl.constexpr,
    TY: tl.constexpr, TX: tl.constexpr, syn: tl.constexpr, syc: tl.constexpr, syh: tl.constexpr,
    syw: tl.constexpr, sb: tl.constexpr,
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, POOL: tl.constexpr, SPLIT: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Sums one tile's SPLIT partial tiles, then the epilogue."""
    NB: tl.constexpr = (COUT + BLOCK_N - 1) // BLOCK_N
    nb = tl.program_id(0) % NB
    t = tl.program_id(0) // NB
    o = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    m = tl.arange(0, TH * TW)
    acc = tl.zeros([TH * TW, BLOCK_N], dtype=tl.float32)
    for s in range(SPLIT):
        rows = (s * T + t).to(tl.int64) * (TH * TW) + m
        acc += tl.load(ws_ptr + rows[:, None] * COUT + o[None, :], mask=(o < COUT)[None, :], other=0.0)
    _epilogue(acc, t, o, b_ptr, y_ptr, OH, OW, PH, PW, COUT, TY, TX, syn, syc, syh, syw, sb, HAS_BIAS,
              ACTIVATION, POOL, TH, TW, BLOCK_N)


def supports(spec, input, activation=None) -> str | None:
    """None when this family computes the call (input: a tensor, a dtype, or None for any dtype),
    else the reason it cannot."""
    dtype = input.dtype if isinstance(input, torch.Tensor) else input
    if dtype is not None and dtype not in DTYPES:
        return f"dtype {dtype} is not float16, bfloat16 or float32"
    geometry = (spec.kernel_h, spec.kernel_w, spec.stride_h, spec.stride_w, spec.dil_h, spec.dil_w, spec.groups)
    if geometry != (3, 3, 1, 1, 1, 1, 1):
        return (f"needs a 3x3 kernel, stride 1, dilation 1, groups 1; got kernel {spec.kernel_h}x{spec.kernel_w}, "
                f"stride {(spec.stride_h, spec.stride_w)}, dilation {(spec.dil_h, spec.dil_w)}, groups {spec.groups}")
    pool = (spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw)
    if spec.pool is not None and (spec.pool != "max" or pool != (2, 2, 2, 2, 0, 0)):
        return (f"fuses only a 2x2 stride-2 unpadded max pool; got pool={spec.pool!r}, size "
                f"{pool[:2]}, stride {pool[2:4]}, padding {pool[4:]}")
    if activation not in ACTIVATIONS:
        return f"activation must be one of {ACTIVATIONS}, got {activation!r}"
    if max(spec.in_channels * spec.height * spec.width, spec.out_channels * spec.out_h * spec.out_w) >= 2**31:
        return "one image's input or output has 2**31 or more elements (32-bit offsets within an image)"
    return None


def conv(x, weight, bias, spec, activation, algo="compact"):
    """The registry's entry (kernels.KERNELS["compact"]): run() with the default config."""
    return run(x, weight, bias, spec, activation)


def run(x, weight, bias, spec, activation, config: Config | None = None, skip: bool = True):
    """[max_pool2d(2, 2)](activation(conv2d(x, weight, bias))) for a checked call (geometry.check_conv,
    with_pool) that supports() accepts. skip=False treats every channel as live (no pass 1): the
    same kernel dense."""
    reason = supports(spec, x, activation)
    if reason is not None:
        raise ValueError(f"algo 'compact' cannot compute this call: {reason}")
    interpreting = runtime.interpreting()
    prec = precision("igemm", x.dtype)
    cfg = fit(config or default_config(spec, x.dtype, interpreting, runtime.sm_count(x.device)), x.dtype,
              prec, runtime.shared_memory(x.device))
    w = packed_weight(weight, split=prec == "3xtf32")
    w, w_lo = w if prec == "3xtf32" else (w, w)
    y = result(x, spec)
    ty, tx = compact_pack.tiles(spec, cfg.th, cfg.tw)
    n_tiles = spec.batch * ty * tx
    if skip:
        p, ids, counts = compact_pack.pack(x, spec, cfg.th, cfg.tw, cfg.group, cfg.chunk, cfg.pack_split,
                                           cfg.pack_warps or None)
    else:
        # unread, but typed as pass 1's outputs: the packed loops compile either way (an fp32 ids
        # placeholder made `w_ptr + ids * swc` a pointer + float, a compile error on sm_90)
        p = y
        ids = counts = torch.empty(1, dtype=torch.int32, device=x.device)
    nb = triton.cdiv(spec.out_channels, cfg.block_n)
    ws = y
    if cfg.split > 1:
        ws = torch.empty((cfg.split, n_tiles, cfg.th * cfg.tw, spec.out_channels), dtype=torch.float32,
                         device=x.device)
    b = bias if bias is not None else y
    sb = bias.stride(0) if bias is not None else 0
    out = (spec.out_h, spec.out_w, spec.pooled_h, spec.pooled_w)
    epilogue = dict(HAS_BIAS=bias is not None, ACTIVATION=_ACT[activation], POOL=spec.pool is not None)
    _compact_kernel[(n_tiles * nb * cfg.split,)](
        x, p, ids, counts, w, w_lo, b, y, ws,
        spec.in_channels, spec.height, spec.width, spec.out_channels, *out, ty, tx, spec.kernel_h, spec.kernel_w,
        *x.stride(), *w.stride(), *y.stride(), sb, spec.pad_h, spec.pad_w,
        **epilogue, SKIP=skip, PRECISION=prec, UPCAST=interpreting and x.dtype == torch.bfloat16, SPLIT=cfg.split,
        TH=cfg.th, TW=cfg.tw, BLOCK_N=cfg.block_n, CHUNK=cfg.chunk, KPACK=cfg.kpack, DK=cfg.dk, GROUP=cfg.group,
        NG_P2=triton.next_power_of_2(triton.cdiv(spec.in_channels, cfg.group)),
        STAGES_R=stages(cfg, cfg.kpack), STAGES_C=stages(cfg, cfg.chunk),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    if cfg.split > 1:
        _reduce_kernel[(n_tiles * nb,)](
            ws, b, y, n_tiles, *out, spec.out_channels, ty, tx, *y.stride(), sb, **epilogue, SPLIT=cfg.split,
            TH=cfg.th, TW=cfg.tw, BLOCK_N=cfg.block_n, num_warps=4)
    return y
