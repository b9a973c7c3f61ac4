"""Max and average pooling of a channels_last conv output, for the families that pool after their
conv: cudnn, and the "pool after" option of im2col and igemm (launch.POOL_AFTER_RECOMPUTE).
PyTorch's channels_last max pool took about 117 us of ResNet-50's stem at batch 32 in fp16 (3x3/2/1
over 32x64x112x112, 51 MB read) and 19 us at batch 1, where reading the map once takes about 17 us
(H100, benchmarks/stem-probe-fp16-h100-1207.txt). This kernel reads each window's taps for a block
of pixels x channels, channels contiguous: the stem with cuDNN's conv ran 116.5 us against 194.6 at
batch 32 (H200, benchmarks/model-resnet50-b32-fp16-h200-1207-first-layers.csv). `after` measures it
against PyTorch's at a call shape's first call and keeps the faster (split_k.pick). Semantics of
F.max_pool2d / F.avg_pool2d in floor mode: NaN propagates through max, avg divides by the window's
area (padding counted).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import runtime
from ..geometry import torch_pool
from . import split_k
from .implicit_gemm import _max_keep_nan
from .launch import channels_last

# The interpreter measures nothing: it runs PyTorch's pool unless a test sets this.
INTERPRETER_KERNEL = False


@triton.jit
def _pool_kernel(x_ptr, y_ptr, C, H, W, PH, PW, M, sxn, sxc, sxh, sxw, syn, syc, syh, syw,
                 KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PAD_H: tl.constexpr,
                 PAD_W: tl.constexpr, MAX: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    pmask = p < M
    cmask = c < C
    pw = p % PW
    t = p // PW
    ph = t % PH
    n = (t // PH).to(tl.int64)
    ih0 = ph * SH - PAD_H
    iw0 = pw * SW - PAD_W
    x_row = n * sxn
    if MAX:
        acc = tl.full([BLOCK_P, BLOCK_C], float("-inf"), tl.float32)
    else:
        acc = tl.zeros([BLOCK_P, BLOCK_C], tl.float32)
    for i in tl.static_range(KH):
        for j in tl.static_range(KW):
            ih = ih0 + i
            iw = iw0 + j
            ok = pmask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            off = x_row + ih.to(tl.int64) * sxh + iw.to(tl.int64) * sxw
            v = tl.load(x_ptr + (off[:, None] + (c * sxc)[None, :]), mask=ok[:, None] & cmask[None, :],
                        other=float("-inf") if MAX else 0.0).to(tl.float32)
            if MAX:
                acc = _max_keep_nan(acc, v)
            else:
                acc = acc + v
    if not MAX:
        acc = acc / (KH * KW)
    out = n * syn + ph.to(tl.int64) * syh + pw.to(tl.int64) * syw
    tl.store(y_ptr + (out[:, None] + (c * syc)[None, :]), acc.to(y_ptr.dtype.element_ty),
             mask=pmask[:, None] & cmask[None, :])


def pool(y: torch.Tensor, spec) -> torch.Tensor:
    """spec's pool of the conv output y (N, C, out_h, out_w), by this kernel, into a new tensor in
    y's memory format."""
    n, c, h, w = y.shape
    out = torch.empty((n, c, spec.pooled_h, spec.pooled_w), dtype=y.dtype, device=y.device,
                      memory_format=torch.channels_last if channels_last(y) else torch.contiguous_format)
    m = n * spec.pooled_h * spec.pooled_w
    if m == 0 or c == 0:
        return out
    block_c = min(128, triton.next_power_of_2(c))
    block_p = 64 if runtime.interpreting() else max(16, 4096 // block_c)
    grid = (triton.cdiv(m, block_p), triton.cdiv(c, block_c))
    _pool_kernel[grid](y, out, c, h, w, spec.pooled_h, spec.pooled_w, m, *y.stride(), *out.stride(),
                       spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw,
                       spec.pool == "max", block_p, block_c, num_warps=4)
    return out


def after(y: torch.Tensor, spec) -> torch.Tensor:
    """spec's pool of y: this kernel or PyTorch's, the faster at the first call of this shape on a
    GPU. PyTorch's where y is not channels_last (its NCHW pools were not measured slow)."""
    if not channels_last(y):
        return torch_pool(y, spec)
    if runtime.interpreting() or y.device.type != "cuda":
        return pool(y, spec) if INTERPRETER_KERNEL else torch_pool(y, spec)
    key = ("pool", spec, y.dtype, y.device.index)
    choice = split_k.pick(key, lambda: torch_pool(y, spec), lambda: [("pool kernel", lambda: pool(y, spec))])
    return torch_pool(y, spec) if choice is None else pool(y, spec)
