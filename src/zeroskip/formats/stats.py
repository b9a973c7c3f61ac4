"""How sparse a convolution's input is, measured the ways that predict a zero-skipping speed-up.

``block_skip_fraction`` is the share of (tile of ``block_m`` consecutive output pixels in
flattened (n, oy, ox) order, group, kernel index) pairs whose im2col column is zero for the whole
tile: what a kernel that skips single kernel indices per tile could save at best. The project's
kernels skip coarser units (a chunk of input channels over all taps, see kernels/ecr_index.py), so
they save at most this much; with ``block_m=1`` it is the zero fraction the paper's per-window
ECR skips. The per-window counts are what ECR stores.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import ecr as _ecr


@dataclass(frozen=True)
class SparsityStats:
    """Input sparsity of one convolution.

    Input fractions count the pixels that some window reads (all of them unless the stride skips
    pixels): ``zero_fraction`` over all channels, ``channel_zero_fraction`` per input channel.
    Window counts are non-zeros per im2col row out of ``window_size`` = Cg*kH*kW entries."""
    zero_fraction: float
    channel_zero_fraction: tuple[float, ...]
    nnz_per_window_mean: float
    nnz_per_window_min: int
    nnz_per_window_max: int
    window_size: int
    block_m: int
    block_skip_fraction: float

    def __str__(self) -> str:
        ch = self.channel_zero_fraction
        return "\n".join([
            f"input zeros        {self.zero_fraction:.1%} (per channel {min(ch):.1%} .. {max(ch):.1%})",
            f"non-zeros / window {self.nnz_per_window_mean:.2f} of {self.window_size} "
            f"(min {self.nnz_per_window_min}, max {self.nnz_per_window_max})",
            f"skippable columns  {self.block_skip_fraction:.1%} of (block of {self.block_m} pixels, k) pairs",
        ])


def _covered(spec, device) -> torch.Tensor:
    """(H, W) bool: the pixels that some window reads."""
    def axis(size, out, stride, pad, kernel, dil):
        hit = (torch.arange(out, device=device) * stride - pad)[:, None] \
            + torch.arange(kernel, device=device) * dil
        hit = hit[(hit >= 0) & (hit < size)]
        mask = torch.zeros(size, dtype=torch.bool, device=device)
        mask[hit] = True
        return mask
    s = spec
    rows = axis(s.height, s.out_h, s.stride_h, s.pad_h, s.kernel_h, s.dil_h)
    cols = axis(s.width, s.out_w, s.stride_w, s.pad_w, s.kernel_w, s.dil_w)
    return rows[:, None] & cols[None, :]


def ecr_stats(ecr: "_ecr.ECR", block_m: int = 64) -> SparsityStats:
    """The statistics of an encoded input."""
    if isinstance(block_m, bool) or not isinstance(block_m, int) or block_m < 1:
        raise ValueError(f"block_m must be a positive int, got {block_m!r}")
    s = ecr.spec
    device = ecr.values.device
    covered = _covered(s, device)
    nonzero = (_ecr.to_feature_map(ecr) != 0) & covered
    per_channel = nonzero.sum((0, 2, 3)).double() / (s.batch * covered.sum()).double()
    counts = ecr.counts()

    # Mark every (tile, group, k) that holds a stored value; the rest are skipped.
    area = s.out_h * s.out_w
    tiles = -(-s.batch * area // block_m)
    r = ecr.row_of()
    n, g, pos = r // (s.groups * area), (r // area) % s.groups, r % area
    tile = (n * area + pos) // block_m
    busy = torch.zeros(s.groups * tiles * s.reduction, dtype=torch.bool, device=device)
    busy[(g * tiles + tile) * s.reduction + ecr.kernel_index.long()] = True

    return SparsityStats(
        zero_fraction=1.0 - per_channel.mean().item(),
        channel_zero_fraction=tuple((1.0 - per_channel).tolist()),
        nnz_per_window_mean=counts.double().mean().item(),
        nnz_per_window_min=int(counts.min().item()),
        nnz_per_window_max=int(counts.max().item()),
        window_size=s.reduction,
        block_m=block_m,
        block_skip_fraction=1.0 - busy.double().mean().item(),
    )


def sparsity_stats(input, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                   block_m: int = 64) -> SparsityStats:
    """The statistics of ``input`` (N, C, H, W) for a conv with the given geometry."""
    if isinstance(block_m, bool) or not isinstance(block_m, int) or block_m < 1:
        raise ValueError(f"block_m must be a positive int, got {block_m!r}")
    return ecr_stats(_ecr.encode(input, kernel_size, stride, padding, dilation, groups), block_m)
