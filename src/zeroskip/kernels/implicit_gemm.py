"""Implicit-GEMM convolution with zero skipping and a fused bias + activation + pool epilogue.

One program computes a BLOCK_M x BLOCK_N tile: BLOCK_M rows by BLOCK_N output channels of one
group. Without a pool a row is an output pixel (flattened n, y, x). With a pool fused (the
paper's PECR) the rows of a block are the conv pixels of BLOCK_M // WIN_P2 whole pooling
windows (WIN_P2 = window area rounded up to a power of 2, unused rows masked): the tile is one
matrix product, and the epilogue applies bias and activation to the fp32 accumulator, reduces
each window's rows to a max or a sum, and stores only the pooled pixels. The conv output never
reaches memory, and a fused layer keeps the parallelism of the plain conv (an earlier version
looped over window positions per pooled pixel and ran 2-4x slower at batch 1 on VGG-19).

The reduction runs over kernel taps (outer) and chunks of BLOCK_K input channels (inner, so
channels_last input is read contiguously). With SKIP it runs only over the chunks flagged
non-zero for the block (kernels/ecr_index.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch.utils.weak import WeakIdKeyDictionary

from ..dispatch import interpreting
from ..geometry import MAX_WINDOW
from . import ecr_index
from .ecr_index import _pixel_rows

_ACT = {None: 0, "relu": 1, "relu6": 2}
_POOL = {None: 0, "max": 1, "avg": 2}


@triton.jit
def _max_keep_nan(a, b):
    return tl.where((a != a) | (a > b), a, b)


@triton.jit
def _conv_kernel(
    # pointers
    x_ptr, w_ptr, b_ptr, y_ptr, flag_ptr,
    # sizes
    C_G, H, W, COUT_G, OH, OW, PH_OUT, PW_OUT, M, KH, KW, NCH,
    # strides (elements)
    sxn, sxc, sxh, sxw, swo, swc, swh, sww, syn, syc, syh, syw, sb,
    # conv geometry
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    # pool geometry (1x1 window, stride 1, no padding when POOL == 0)
    pool_kh, pool_kw, pool_sh, pool_sw, pool_ph, pool_pw,
    # constexpr switches
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, POOL: tl.constexpr, SKIP: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr, NCH_P2: tl.constexpr, WIN_P2: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    mb = tl.program_id(0)
    nb = tl.program_id(1)
    g = tl.program_id(2)
    G = tl.num_programs(2)
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
    x_pix = x_ptr + n.to(tl.int64) * sxn + (g * C_G).to(tl.int64) * sxc
    w_col = w_ptr + cout * swo
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for r in range(0, KH * KW):
        kh = r // KW
        kw = r - kh * KW
        ih = ih0 + kh * dil_h
        iw = iw0 + kw * dil_w
        ok = valid & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a_row = x_pix + (ih * sxh + iw * sxw)
        b_col = w_col + (kh * swh + kw * sww)
        for t in range(0, n_t):
            if SKIP:
                cid = tl.sum(tl.where(rank == t, t_idx, 0), 0)
            else:
                cid = t
            c = cid * BLOCK_K + tl.arange(0, BLOCK_K)
            cm = c < C_G
            a = tl.load(a_row[:, None] + c[None, :] * sxc, mask=ok[:, None] & cm[None, :], other=0.0)
            b = tl.load(b_col[None, :] + c[:, None] * swc, mask=cm[:, None] & omask[None, :], other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)

    # epilogue on the fp32 accumulator: bias, activation, pool, one store
    if HAS_BIAS:
        acc += tl.load(b_ptr + cout * sb, mask=omask, other=0.0).to(tl.float32)[None, :]
    # Written with where, not maximum/minimum: those return the number for NaN inputs on the GPU,
    # and F.relu / F.max_pool2d propagate NaN.
    if ACTIVATION == 1:
        acc = tl.where(acc < 0.0, 0.0, acc)
    elif ACTIVATION == 2:
        acc = tl.where(acc < 0.0, 0.0, tl.where(acc > 6.0, 6.0, acc))
    BP: tl.constexpr = BLOCK_M // WIN_P2
    if POOL == 1:
        acc = tl.where(valid[:, None], acc, float("-inf"))
        res = tl.reduce(tl.reshape(acc, [BP, WIN_P2, BLOCK_N]), 1, _max_keep_nan)
    elif POOL == 2:
        # F.avg_pool2d counts padded positions (count_include_pad=True); floor mode keeps
        # every window inside the padded map, so the divisor is the window area.
        acc = tl.where(valid[:, None], acc, 0.0)
        res = tl.sum(tl.reshape(acc, [BP, WIN_P2, BLOCK_N]), axis=1) / (pool_kh * pool_kw)
    else:
        res = acc
    p = mb * BP + tl.arange(0, BP)
    px = p % PW_OUT
    t2 = p // PW_OUT
    py = t2 % PH_OUT
    n2 = t2 // PH_OUT
    y_off = n2.to(tl.int64)[:, None] * syn + cout[None, :] * syc + (py * syh + px * syw)[:, None]
    tl.store(y_ptr + y_off, res.to(y_ptr.dtype.element_ty), mask=(p < M)[:, None] & omask[None, :])


def _prune(configs, named_args, **kwargs):
    """Drops tiles that cannot hold one pooling window's rows."""
    win = kwargs.get("WIN_P2", named_args.get("WIN_P2", 1))
    kept = [c for c in configs if c.kwargs["BLOCK_M"] >= win]
    return kept or [triton.Config({"BLOCK_M": win, "BLOCK_N": 32, "BLOCK_K": 32}, num_warps=4, num_stages=2)]


def _configs(shapes):
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
            for m, n, k, w, s in shapes]


_KEY = ["C_G", "COUT_G", "M", "KH", "KW", "H", "W", "PRECISION", "POOL", "WIN_P2"]
_PRUNE = {"early_config_prune": _prune}
# Dense tensor-core paths: tiles picked by measurement per layer shape at its first call.
# 16-bit operands take BLOCK_K 64 (one 128-byte row per load); fp32 (TF32 / 3xTF32) BLOCK_K 32,
# fewer stages for its 2x larger tiles; BLOCK_K 16 serves the 3-channel first layers.
_conv_tuned_16 = triton.autotune(configs=_configs([
    (128, 128, 64, 8, 3), (128, 64, 64, 4, 3), (64, 128, 64, 4, 3), (64, 64, 64, 4, 4),
    (128, 128, 32, 8, 4), (128, 64, 32, 4, 4), (64, 64, 32, 4, 4), (32, 64, 64, 4, 3),
    (64, 32, 32, 4, 3), (256, 64, 32, 8, 3), (128, 64, 16, 4, 4), (64, 64, 16, 4, 4),
]), key=_KEY, prune_configs_by=_PRUNE)(_conv_kernel)
_conv_tuned_32 = triton.autotune(configs=_configs([
    (128, 64, 32, 4, 3), (128, 128, 32, 8, 3), (64, 64, 32, 4, 3), (64, 128, 32, 4, 3),
    (32, 64, 32, 4, 3), (64, 32, 32, 4, 2), (128, 64, 16, 4, 3), (64, 64, 16, 4, 3),
    (256, 64, 32, 8, 2), (128, 32, 32, 4, 3),
]), key=_KEY, prune_configs_by=_PRUNE)(_conv_kernel)


@dataclass(frozen=True)
class Config:
    """Tile sizes. BLOCK_M x BLOCK_K is also the unit of zero skipping (see ecr_index)."""
    block_m: int = 64
    block_n: int = 64
    block_k: int = 32
    num_warps: int = 4
    num_stages: int = 3


_SMS = 132  # H100 SXM; only used to keep enough programs in flight


def default_config(spec, dtype, algo) -> Config:
    """Tiles for the zero-skipping algos, whose flags must be built for the same tiles."""
    win = spec.window_rows
    if interpreting():
        # The interpreter costs ~9 ms per program-iteration whatever the block size: big blocks.
        return Config(block_m=max(128, win), block_n=64, block_k=64, num_warps=1, num_stages=1)
    cg, cout_g = spec.in_per_group, spec.out_per_group
    m_total = spec.batch * spec.result_h * spec.result_w * win
    if algo == "ecr":
        # CUDA-core FMA: narrow K keeps the upcast operands in registers (BLOCK_K=64 with fp16
        # upcast spilled and ran 30x slower on VGG-19 features.5).
        block_k, stages = 16, 2
    else:
        block_k = 16 if cg <= 16 else (32 if cg <= 32 or dtype == torch.float32 else 64)
        stages = 3
    block_n = 16
    while block_n < 128 and block_n < cout_g:
        block_n *= 2
    block_m = 128
    while block_m > max(32, win) and triton.cdiv(m_total, block_m) * triton.cdiv(cout_g, block_n) * spec.groups < _SMS:
        block_m //= 2
    while block_n > 32 and triton.cdiv(m_total, block_m) * triton.cdiv(cout_g, block_n) * spec.groups < _SMS:
        block_n //= 2
    num_warps = 8 if block_m * block_n >= 128 * 128 else 4
    return Config(max(block_m, win), block_n, block_k, num_warps, stages)


def precision(algo: str, dtype: torch.dtype) -> str:
    """Dot precision for fp32 operands (ignored for fp16/bf16, which always accumulate in fp32)."""
    if algo == "ecr" or dtype != torch.float32:
        return "ieee"
    # fp32 follows cuDNN's switch as F.conv2d does; TF32 off still needs fp32 accuracy: 3xTF32.
    return "tf32" if torch.backends.cudnn.allow_tf32 else "tf32x3"


def packed_weight(weight: torch.Tensor) -> torch.Tensor:
    """The weight as a (C_out, C_in/g, kH, kW) view of (kH, kW, C_in/g, C_out) memory.

    Output channels contiguous make the kernel's weight tile loads coalesced. Packing is done
    once per weight tensor and reused while the tensor is unchanged, the way inference engines
    prepare weights at load time; inputs are never cached. "Unchanged" means the same version
    counter (in-place ops and load_state_dict bump it) and the same storage (`p.data = t` swaps
    it). An in-place edit through `.data` bypasses both: call clear_packed_weights() after one.
    """
    if weight.stride(0) == 1:
        return weight
    try:
        stamp = (weight._version, weight.data_ptr())
    except RuntimeError:  # inference-mode tensors have no version counter: pack every call
        return weight.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)
    hit = _PACKED.get(weight)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    packed = weight.detach().permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)
    _PACKED[weight] = (stamp, packed)
    return packed


def clear_packed_weights() -> None:
    """Forgets every packed weight (needed only after in-place edits through `.data`)."""
    _PACKED.clear()


# Keyed by tensor identity (tensors compare elementwise, so a plain WeakKeyDictionary cannot hold them).
_PACKED = WeakIdKeyDictionary()


def _empty(shape, like, memory_format):
    # One place that allocates the result, so tests can poison it and see unwritten elements.
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=memory_format)


def conv(x, weight, bias, spec, activation, algo, config: Config | None = None, skip: bool | None = None):
    """Launches the kernels for a checked call. Output keeps the input's memory format."""
    skip = (algo != "igemm") if skip is None else skip
    win = spec.window_rows
    if win > MAX_WINDOW:
        raise ValueError(f"pool_size {(spec.pool_kh, spec.pool_kw)} has {spec.pool_kh * spec.pool_kw} positions; "
                         f"algo={algo!r} fuses windows of at most {MAX_WINDOW} (use algo='torch')")
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    y = _empty((spec.batch, spec.out_channels, spec.result_h, spec.result_w), x, fmt)
    m_total = spec.batch * spec.result_h * spec.result_w
    w = packed_weight(weight)
    args = (
        spec.in_per_group, spec.height, spec.width, spec.out_per_group, spec.out_h, spec.out_w,
        spec.result_h, spec.result_w, m_total, spec.kernel_h, spec.kernel_w,
    )
    geometry = (
        *x.stride(), *w.stride(), *y.stride(), bias.stride(0) if bias is not None else 0,
        spec.stride_h, spec.stride_w, spec.pad_h, spec.pad_w, spec.dil_h, spec.dil_w,
        spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw,
    )
    switches = dict(HAS_BIAS=bias is not None, ACTIVATION=_ACT[activation], POOL=_POOL[spec.pool],
                    PRECISION=precision(algo, x.dtype), WIN_P2=win,
                    UPCAST=algo == "ecr" or (interpreting() and x.dtype == torch.bfloat16))
    b = bias if bias is not None else y
    if not skip and config is None and not interpreting() and algo != "ecr":
        grid = lambda meta: (triton.cdiv(m_total, meta["BLOCK_M"] // win),  # noqa: E731
                             triton.cdiv(spec.out_per_group, meta["BLOCK_N"]), spec.groups)
        # NCH (flags row length) is unused without SKIP: the kernel counts chunks from C_G.
        tuned = _conv_tuned_32 if x.dtype == torch.float32 else _conv_tuned_16
        tuned[grid](x, w, b, y, y, *args, 0, *geometry, SKIP=False, NCH_P2=1, **switches)
        return y
    cfg = config or default_config(spec, x.dtype, algo)
    chunks = triton.cdiv(spec.in_per_group, cfg.block_k)
    flags = ecr_index.chunk_flags(x, spec, cfg.block_m, cfg.block_k) if skip else y
    grid = (triton.cdiv(m_total, cfg.block_m // win), triton.cdiv(spec.out_per_group, cfg.block_n), spec.groups)
    _conv_kernel[grid](
        x, w, b, y, flags, *args, chunks, *geometry, SKIP=skip, NCH_P2=triton.next_power_of_2(chunks),
        **switches, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return y
