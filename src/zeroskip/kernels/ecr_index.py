"""Block-ECR flags, built on the device right before the convolution.

The paper's ECR stores, per convolution window, the kernel indices whose input value is
non-zero. On tensor cores (and in register-blocked FMA) one multiplies tiles, not single
values, so the unit of skipping here is a tile: for each block of BLOCK_M rows (result pixels,
or the conv pixels of whole pooling windows when a pool is fused) and each chunk of BLOCK_K
input channels of a group, one int8 flag says whether any input value that the block's windows read from that chunk is non-zero. The
convolution walks only the flagged chunks, compacting the list in registers. Values are never
copied: the convolution re-reads them from the input, so the encoding writes one byte per
(block, chunk) and reads the input once per kernel tap.

NaN and inf compare non-zero and are kept; only exact zeros (and padding) are skipped.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _pixel_rows(mb, M, PW_OUT, PH_OUT, OH, OW, pool_kh, pool_kw, pool_sh, pool_sw, pool_ph, pool_pw,
                stride_h, stride_w, pad_h, pad_w, BLOCK_M: tl.constexpr, WIN_P2: tl.constexpr):
    """Row r of block mb is conv pixel r % WIN_P2 of the pooling window of result pixel
    mb * (BLOCK_M // WIN_P2) + r // WIN_P2 (flattened n, y, x); without a pool WIN_P2 == 1 and
    rows are result pixels. Returns each row's batch index, the top-left input row/col of its
    conv window, and whether that conv pixel exists (inside the map and the window)."""
    r = tl.arange(0, BLOCK_M)
    p = mb * (BLOCK_M // WIN_P2) + r // WIN_P2
    w = r % WIN_P2
    i = w // pool_kw
    px = p % PW_OUT
    t = p // PW_OUT
    py = t % PH_OUT
    n = t // PH_OUT
    oy = py * pool_sh - pool_ph + i
    ox = px * pool_sw - pool_pw + (w - i * pool_kw)
    valid = (p < M) & (w < pool_kh * pool_kw) & (oy >= 0) & (oy < OH) & (ox >= 0) & (ox < OW)
    return n, oy * stride_h - pad_h, ox * stride_w - pad_w, valid


@triton.jit
def _chunk_flags_kernel(
    # pointers
    x_ptr, flag_ptr,
    # sizes
    C_G, H, W, OH, OW, PH_OUT, PW_OUT, M, KH, KW,
    # input strides (elements)
    sxn, sxc, sxh, sxw,
    # conv geometry
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    # pool geometry (1x1 window, stride 1, no padding when no pool is fused)
    pool_kh, pool_kw, pool_sh, pool_sw, pool_ph, pool_pw,
    # constexpr
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, WIN_P2: tl.constexpr,
):
    mb = tl.program_id(0)
    g = tl.program_id(1)
    t = tl.program_id(2)
    G = tl.num_programs(1)
    NCH = tl.num_programs(2)
    c = t * BLOCK_K + tl.arange(0, BLOCK_K)
    chan = (g * C_G + c).to(tl.int64) * sxc
    cmask = c < C_G
    hit = tl.zeros([BLOCK_K], dtype=tl.int32)
    n, ih0, iw0, valid = _pixel_rows(mb, M, PW_OUT, PH_OUT, OH, OW, pool_kh, pool_kw, pool_sh, pool_sw,
                                     pool_ph, pool_pw, stride_h, stride_w, pad_h, pad_w, BLOCK_M, WIN_P2)
    x_pix = x_ptr + n.to(tl.int64) * sxn
    for r in range(0, KH * KW):
        kh = r // KW
        ih = ih0 + kh * dil_h
        iw = iw0 + (r - kh * KW) * dil_w
        ok = valid & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(x_pix[:, None] + (ih * sxh + iw * sxw)[:, None] + chan[None, :],
                    mask=ok[:, None] & cmask[None, :], other=0.0)
        hit = tl.maximum(hit, tl.max((a != 0).to(tl.int32), axis=0))
    tl.store(flag_ptr + (mb * G + g).to(tl.int64) * NCH + t, tl.max(hit, 0).to(tl.int8))


def chunk_flags(x: torch.Tensor, spec, block_m: int, block_k: int, num_warps: int = 4) -> torch.Tensor:
    """int8 flags of shape (blocks * groups, chunks): 1 where the chunk has a non-zero."""
    m_total = spec.batch * spec.result_h * spec.result_w
    win = spec.window_rows
    blocks = triton.cdiv(m_total, block_m // win)
    chunks = triton.cdiv(spec.in_per_group, block_k)
    flags = torch.empty((blocks * spec.groups, chunks), dtype=torch.int8, device=x.device)
    _chunk_flags_kernel[(blocks, spec.groups, chunks)](
        x, flags,
        spec.in_per_group, spec.height, spec.width, spec.out_h, spec.out_w, spec.result_h,
        spec.result_w, m_total, spec.kernel_h, spec.kernel_w,
        *x.stride(),
        spec.stride_h, spec.stride_w, spec.pad_h, spec.pad_w, spec.dil_h, spec.dil_w,
        spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw,
        BLOCK_M=block_m, BLOCK_K=block_k, WIN_P2=win, num_warps=num_warps,
    )
    return flags
