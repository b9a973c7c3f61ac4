"""Block-ECR index lists, built on the device right before the convolution.

For each block of BLOCK_M output pixels (pooled pixels when a pool is fused) and each group, the
list holds the reduction indices k = (kh*KW + kw)*Cg + c whose im2col column has at least one
non-zero in the block, in increasing order, and `count` says how many there are. With
BLOCK_M = 1 this is exactly the paper's ECR index list of one window; a block shares one list so
that the convolution can multiply BLOCK_M x BLOCK_K tiles (register- or tensor-core-blocked)
instead of one window at a time. Values are not copied: the convolution re-reads them from the
input, so the encoding writes only int32 indices.

NaN and inf compare non-zero and are kept; only exact zeros (and padding) are skipped.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _pixel_rows(m, i, j, M, PW_OUT, PH_OUT, OH, OW, pool_sh, pool_sw, pool_ph, pool_pw,
                stride_h, stride_w, pad_h, pad_w):
    """Flattened result pixel m -> batch index, top-left input row/col of its conv window at
    pool-window position (i, j), and whether that conv pixel exists."""
    px = m % PW_OUT
    t = m // PW_OUT
    py = t % PH_OUT
    n = t // PH_OUT
    oy = py * pool_sh - pool_ph + i
    ox = px * pool_sw - pool_pw + j
    valid = (m < M) & (oy >= 0) & (oy < OH) & (ox >= 0) & (ox < OW)
    return n, oy * stride_h - pad_h, ox * stride_w - pad_w, valid


@triton.jit
def _ecr_index_kernel(
    # pointers
    x_ptr, list_ptr, count_ptr,
    # sizes
    C_G, H, W, OH, OW, PH_OUT, PW_OUT, M, K_TOTAL, KW,
    # input strides (elements)
    sxn, sxc, sxh, sxw,
    # conv geometry
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    # pool geometry (1x1 window, stride 1, no padding when no pool is fused)
    pool_kh, pool_kw, pool_sh, pool_sw, pool_ph, pool_pw,
    # constexpr
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    mb = tl.program_id(0)
    g = tl.program_id(1)
    G = tl.num_programs(1)
    m = mb * BLOCK_M + tl.arange(0, BLOCK_M)
    row = (mb * G + g).to(tl.int64)
    total = tl.zeros([], dtype=tl.int32)
    for k0 in range(0, K_TOTAL, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        kmask = k < K_TOTAL
        r = k // C_G
        c = k - r * C_G
        kh = r // KW
        kw = r - kh * KW
        chan = (g * C_G + c).to(tl.int64) * sxc
        flag = tl.zeros([BLOCK_K], dtype=tl.int32)
        for i in range(0, pool_kh):
            for j in range(0, pool_kw):
                n, ih0, iw0, valid = _pixel_rows(m, i, j, M, PW_OUT, PH_OUT, OH, OW, pool_sh, pool_sw,
                                                 pool_ph, pool_pw, stride_h, stride_w, pad_h, pad_w)
                ih = ih0[:, None] + (kh * dil_h)[None, :]
                iw = iw0[:, None] + (kw * dil_w)[None, :]
                mask = valid[:, None] & kmask[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                ptr = x_ptr + n.to(tl.int64)[:, None] * sxn + chan[None, :] + ih * sxh + iw * sxw
                a = tl.load(ptr, mask=mask, other=0.0)
                flag = tl.maximum(flag, tl.max((a != 0).to(tl.int32), axis=0))
        pos = total + tl.cumsum(flag, 0) - 1
        tl.store(list_ptr + row * K_TOTAL + pos, k, mask=flag > 0)
        total += tl.sum(flag, 0)
    tl.store(count_ptr + row, total)


def build(x: torch.Tensor, spec, block_m: int, block_k: int = 64, num_warps: int = 4):
    """Returns (index_list, count): int32 tensors of shape (blocks*groups, K) and (blocks*groups,)."""
    ph_out, pw_out = spec.result_h, spec.result_w
    m_total = spec.batch * ph_out * pw_out
    blocks = triton.cdiv(m_total, block_m)
    k_total = spec.reduction
    index_list = torch.empty((blocks * spec.groups, k_total), dtype=torch.int32, device=x.device)
    count = torch.empty((blocks * spec.groups,), dtype=torch.int32, device=x.device)
    _ecr_index_kernel[(blocks, spec.groups)](
        x, index_list, count,
        spec.in_per_group, spec.height, spec.width, spec.out_h, spec.out_w, ph_out, pw_out,
        m_total, k_total, spec.kernel_w,
        *x.stride(),
        spec.stride_h, spec.stride_w, spec.pad_h, spec.pad_w, spec.dil_h, spec.dil_w,
        spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw,
        BLOCK_M=block_m, BLOCK_K=block_k, num_warps=num_warps,
    )
    return index_list, count
