"""How sparse a convolution's input is, measured the ways that predict a zero-skipping speed-up.

``block_skip_fraction`` is the share of (tile of ``block_m`` consecutive output pixels in
flattened (n, oy, ox) order, group, kernel index) pairs whose im2col column is zero for the whole
tile: what a kernel that skips single kernel indices per tile could save at best. The project's
kernels skip coarser units (a chunk of input channels over all taps, see kernels/ecr_index.py), so
they save at most this much; with ``block_m=1`` it is the zero fraction the paper's per-window
ECR skips. The per-window counts are what ECR stores.

``skip_stats`` measures what a tensor-core kernel could skip per output tile: dead channels, empty
(8x8 output tile x 16-channel) blocks, and the bound of per-tile channel compaction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

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


@dataclass(frozen=True)
class SkipStats:
    """What per-tile channel skipping could save on one conv input, one float64 value per image
    (tensors of shape (N,)):

    zero_fraction   exact zeros among the input's elements
    dead_channels   input channels that are zero over the whole image
    blocks_left     (tile x tile output pixels, chunk consecutive input channels) blocks with a
                    non-zero in the tile's receptive field: what a kernel skipping whole blocks
                    must still compute
    compaction      share of the dense work left when each output tile multiplies only the input
                    channels live in its receptive field, their count rounded up to `chunk`, over
                    the channel count rounded up the same way: 1 / compaction bounds the speedup
    Tiles cover the output from its top-left corner; a partial tile at the edge counts as one.
    Channels are chunked across groups as in a dense conv."""
    zero_fraction: torch.Tensor
    dead_channels: torch.Tensor
    blocks_left: torch.Tensor
    compaction: torch.Tensor
    tile: int
    chunk: int

    def __str__(self) -> str:
        return (f"zeros {self.zero_fraction.mean():.1%}, dead channels {self.dead_channels.mean():.1%}, "
                f"{self.tile}x{self.tile} x {self.chunk}-channel blocks left {self.blocks_left.mean():.2f}, "
                f"compaction {self.compaction.mean():.2f}")


def skip_stats(input, kernel_size, stride=1, padding=0, dilation=1, tile: int = 8, chunk: int = 16) -> SkipStats:
    """SkipStats of ``input`` (N, C, H, W) for a conv with this geometry (integers or pairs)."""
    for name, value in (("tile", tile), ("chunk", chunk)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(input, torch.Tensor) or input.dim() != 4:
        raise ValueError(f"input must be an (N, C, H, W) tensor, got {getattr(input, 'shape', type(input))}")

    def two(v):
        return (v, v) if isinstance(v, int) else tuple(v)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = two(kernel_size), two(stride), two(padding), two(dilation)
    n, c = input.shape[:2]
    nonzero = input != 0
    # any non-zero in each output pixel's window, per channel, then per output tile
    field = F.max_pool2d(F.pad(nonzero.float(), (pw, pw, ph, ph)), (kh, kw), (sh, sw), dilation=(dh, dw))
    live = F.max_pool2d(field, tile, tile, ceil_mode=True) > 0  # (N, C, tiles_y, tiles_x)
    padded = -(-c // chunk) * chunk
    blocks = F.pad(live, (0, 0, 0, 0, 0, padded - c)).reshape(n, padded // chunk, chunk, -1).any(2)
    work = torch.ceil(live.sum(1).double() / chunk) * chunk / padded
    return SkipStats(
        zero_fraction=1.0 - nonzero.flatten(1).double().mean(1),
        dead_channels=(~nonzero.flatten(2).any(2)).double().mean(1),
        blocks_left=blocks.flatten(1).double().mean(1),
        compaction=work.flatten(1).mean(1),
        tile=tile, chunk=chunk)
