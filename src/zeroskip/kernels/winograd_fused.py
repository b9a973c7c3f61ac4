"""Winograd F(2x2, 3x3)'s GEMMs for fp16/bf16 with the input transform in their loads: with
winograd.py's output transform, which also sums their split-K partials, two launches instead of three.

Each of the 16 positions of B^T d B is a signed sum of four input values (B^T has two non-zeros
per row), so the GEMM program of position p builds its A tile from four masked loads of the input
(in L2 at small batch) instead of reading V: no input transform launch and no V in memory.
Where few tiles leave SMs idle (batch 1 on 14x14 maps: 49 tiles, 128 programs of 64x64), the
reduction over input channels splits over PARTS programs writing fp32 partials, which the output
transform adds: no reduction launch either. V is rounded to the input's dtype before its product,
as the three-launch path rounds it (winograd.py), so overflow behaves the same.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import runtime
from ..runtime import graph_ms, tuner_cache
from . import launch
from .implicit_gemm import _configs


@triton.jit
def _pair(i):
    """Row i of B^T as (a, b, sign): row i of B^T d is d[a] + sign d[b] (winograd._bt)."""
    a = tl.where(i == 3, 1, i)
    b = tl.where(i == 3, 3, tl.where(i == 2, 1, 2))
    return a, b, tl.where(i == 1, 1.0, -1.0)


@triton.jit
def _load(x_ptr, base, ih, iw, H, W, sxh, sxw, cof, ok):
    inside = ok & ((ih >= 0) & (ih < H) & (iw >= 0) & (iw < W))[:, None]
    return tl.load(x_ptr + base + (ih * sxh + iw * sxw)[:, None] + cof, mask=inside, other=0.0).to(tl.float32)


@triton.jit
def _fused_gemm_kernel(x_ptr, u_ptr, m_ptr, C: tl.constexpr, H, W, TH, TW, T, sxn, sxc, sxh, sxw, pad_h, pad_w,
                       CO: tl.constexpr, PARTS: tl.constexpr, UPCAST: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """M[s, t, p, o] = sum over split s's channels c of V[t, p, c] U[p, o, c], V built here."""
    p = tl.program_id(2) // PARTS
    s = tl.program_id(2) % PARTS
    ra, rb, si = _pair(p // 4)
    ca, cb, sj = _pair(p % 4)
    t = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    kk = tl.arange(0, BLOCK_K)
    tok = t < T
    n, ty, tx = t // (TW * TH), (t // TW) % TH, t % TW
    ih0 = 2 * ty - pad_h
    iw0 = 2 * tx - pad_w
    base = (n.to(tl.int64) * sxn)[:, None]
    b_off = ((p * CO + cols).to(tl.int64) * C)[None, :] + kk[:, None]
    cmask = cols < CO
    KS: tl.constexpr = ((C + PARTS - 1) // PARTS + BLOCK_K - 1) // BLOCK_K * BLOCK_K  # channels per split
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(s * KS, s * KS + KS, BLOCK_K):
        kmask = (kk + k0) < C
        ok = tok[:, None] & kmask[None, :]
        cof = ((kk + k0) * sxc)[None, :]
        # the same sums in the same order as winograd._input_transform_kernel: along the row, then down
        h_a = (_load(x_ptr, base, ih0 + ra, iw0 + ca, H, W, sxh, sxw, cof, ok)
               + sj * _load(x_ptr, base, ih0 + ra, iw0 + cb, H, W, sxh, sxw, cof, ok))
        h_b = (_load(x_ptr, base, ih0 + rb, iw0 + ca, H, W, sxh, sxw, cof, ok)
               + sj * _load(x_ptr, base, ih0 + rb, iw0 + cb, H, W, sxh, sxw, cof, ok))
        a = (h_a + si * h_b).to(x_ptr.dtype.element_ty)
        b = tl.load(u_ptr + b_off + k0, mask=kmask[:, None] & cmask[None, :], other=0.0)
        if UPCAST:  # the interpreter's bf16 dot is wrong
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc)
    out = m_ptr + s.to(tl.int64) * T * (16 * CO) + (t.to(tl.int64) * (16 * CO) + p * CO)[:, None] + cols[None, :]
    tl.store(out, acc.to(m_ptr.dtype.element_ty), mask=tok[:, None] & cmask[None, :])


_tuned = triton.autotune(configs=_configs([
    (64, 64, 64, 4, 3), (32, 64, 64, 4, 3), (64, 128, 64, 4, 3), (128, 64, 64, 4, 3),
]), key=["T", "C", "CO", "PARTS", "sxc"], do_bench=graph_ms, **tuner_cache())(_fused_gemm_kernel)


def split_for(tiles: int, c: int, cout: int, sms: int) -> int:
    """Programs over the input channels: doubled while 64x64 blocks leave fewer than two programs
    per SM and each split keeps at least 128 channels (two 64-wide chunks to pipeline)."""
    split, blocks = 1, triton.cdiv(tiles, 64) * triton.cdiv(cout, 64) * 16
    while blocks * split < 2 * sms and c >= 256 * split and split < 8:
        split *= 2
    return split


def gemm(x, u, spec, split=None):
    """M as (split, tiles, 16 C_out) partials from x (fp16 or bf16) and U (winograd.transformed_weight in
    x's dtype); split: the split-K factor, split_for's by default. Returns (M, split)."""
    th, tw = triton.cdiv(spec.out_h, 2), triton.cdiv(spec.out_w, 2)
    t = spec.batch * th * tw
    c, cout = spec.in_channels, spec.out_channels
    if split is None:
        split = split_for(t, c, cout, runtime.sm_count(x.device))
    elif not isinstance(split, int) or split < 1:
        raise ValueError(f"split must be a positive int, got {split!r}")
    # M as the three-launch path keeps it (fp16 for fp16 input, fp32 for bf16); fp32 partials
    m_dtype = x.dtype if x.dtype == torch.float16 and split == 1 else torch.float32
    m = launch._empty((split, t, 16 * cout), m_dtype, x.device, torch.contiguous_format)
    args = (x, u, m, c, spec.height, spec.width, th, tw, t, *x.stride(), spec.pad_h, spec.pad_w, cout, split)
    if runtime.interpreting():  # ~9 ms per program whatever its size: big blocks, one config
        _fused_gemm_kernel[(triton.cdiv(t, 64), triton.cdiv(cout, 64), 16 * split)](
            *args, UPCAST=x.dtype == torch.bfloat16, BLOCK_M=64, BLOCK_N=64, BLOCK_K=64, num_warps=1,
            num_stages=1)
    else:
        grid = lambda meta: (triton.cdiv(t, meta["BLOCK_M"]), triton.cdiv(cout, meta["BLOCK_N"]), 16 * split)  # noqa: E731
        _tuned[grid](*args, UPCAST=False)
    return m, split
