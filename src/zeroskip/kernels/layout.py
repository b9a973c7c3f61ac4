"""NCHW -> channels_last copy of an input, for the kernels that read input channels contiguously.

One program moves a BLOCK_C x BLOCK_P block (channels x pixels of one image): loaded with pixels
contiguous, stored with channels contiguous; the compiler turns the block around in shared
memory. On VGG-19's fp32 inputs at batch 32 this moves 2.9-3.0 TB/s (read + write bytes; 274.9 us
for 32 x 64 x 224 x 224) where torch's `x.contiguous(memory_format=torch.channels_last)` moved
1.1-1.5 TB/s (535.6 us), too slow to pay on the 128-channel layers (H100, graph-replayed,
benchmarks/vgg19-tf32-nchw-copy-ab-h100.txt). Other blocks were within 3.1% at batch 32; 64 x 32 ran
0-0.6 us faster at batch 1 and was not measured end to end.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _to_channels_last_kernel(
    x_ptr, y_ptr,                          # pointers: NCHW input, channels_last output
    C, HW,                                 # sizes: channels, pixels per image
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    base = tl.program_id(2).to(tl.int64) * C * HW  # one image; int64 past 2**31 elements in all
    ok = (c[:, None] < C) & (p[None, :] < HW)
    block = tl.load(x_ptr + base + c[:, None] * HW + p[None, :], mask=ok)
    tl.store(y_ptr + base + p[None, :] * C + c[:, None], block, mask=ok)


def to_channels_last(x: torch.Tensor, interpreting: bool = False, blocks=(64, 64, 4)) -> torch.Tensor:
    """A channels_last copy of a contiguous (NCHW) 4-D tensor, same values, dtype and device.
    blocks: (BLOCK_C, BLOCK_P, num_warps)."""
    if x.dim() != 4 or not x.is_contiguous():
        raise ValueError(f"x must be a contiguous 4-D tensor, got shape {tuple(x.shape)} strides {x.stride()}")
    n, c, h, w = x.shape
    y = torch.empty_like(x, memory_format=torch.channels_last)
    if x.numel() == 0:
        return y
    # The CPU interpreter costs ~9 ms per program whatever its size: big blocks there.
    block_c, block_p, warps = (64, 256, 1) if interpreting else blocks
    grid = (triton.cdiv(h * w, block_p), triton.cdiv(c, block_c), n)
    if c * h * w >= 2**31 or max(grid[1:]) > 65535:  # past the kernel's int32 image index or grid
        y.copy_(x)
        return y
    _to_channels_last_kernel[grid](x, y, c, h * w, BLOCK_C=block_c, BLOCK_P=block_p, num_warps=warps)
    return y
