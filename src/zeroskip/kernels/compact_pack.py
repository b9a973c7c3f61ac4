"""Pass 1 of the "compact" convolution (kernels/compact.py): per output tile, the input channels
that are live in its receptive field, and their values packed for the tensor cores.

An output tile is TH x TW conv pixels of one image; its receptive field is the
(TH + KH - 1) x (TW + KW - 1) input box that its windows read (padding reads nothing). A channel is
live for a tile when that box holds a non-zero value of it (NaN and inf count as non-zero; only
exact zeros are dead). Channels are taken in groups of GROUP; one program handles one
(tile, group):

- counts[tile, group]: how many of the group's channels are live;
- a group whose channels are all live is "dense": nothing else is written, and the main kernel
  reads those channels from x itself, as a dense kernel does (a dense input costs this pass's read
  of x on top of the dense conv);
- otherwise the live channel ids, ascending, go to ids[tile, group * GROUP + slot], and their
  receptive-field values to P[tile, chunk, rf pixel, lane], slot = chunk * CHUNK + lane counted
  from the group's first chunk. A chunk of CHUNK live channels is one [RF, CHUNK] block, so the
  main kernel's A tile of any kernel tap is TH x TW of its rows, CHUNK contiguous values each.
  The last chunk's slots past the count hold zeros; ids there are left unwritten.

P's capacity is every channel of every tile (tiles x C x RF elements, (TH+2)(TW+2)/(TH TW) of the
input, 1.56x at 8x8); only live channels of sparse groups are written.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


@triton.jit
def _pack_kernel(
    # pointers: the input; outputs P (packed values), ids (live channels), counts
    x_ptr, p_ptr, ids_ptr, cnt_ptr,
    # sizes: input, tiles per image along y and x
    C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, TY: tl.constexpr, TX: tl.constexpr,
    # input strides (elements) and padding
    sxn: tl.constexpr, sxc: tl.constexpr, sxh: tl.constexpr, sxw: tl.constexpr,
    pad_h: tl.constexpr, pad_w: tl.constexpr,
    # tile geometry
    KH: tl.constexpr, KW: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, RF_P2: tl.constexpr,
    GROUP: tl.constexpr, CHUNK: tl.constexpr,
):
    t = tl.program_id(0)
    g = tl.program_id(1)
    NG: tl.constexpr = (C + GROUP - 1) // GROUP
    RFW: tl.constexpr = TW + KW - 1
    RF: tl.constexpr = (TH + KH - 1) * RFW
    n = t // (TY * TX)
    ty = (t // TX) % TY
    tx = t % TX
    q = tl.arange(0, RF_P2)
    iy = ty * TH - pad_h + q // RFW
    ix = tx * TW - pad_w + q % RFW
    inside = (q < RF) & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    c = g * GROUP + tl.arange(0, GROUP)
    cm = c < C
    v = tl.load(x_ptr + n.to(tl.int64) * sxn + (iy * sxh + ix * sxw)[:, None] + (c * sxc)[None, :],
                mask=inside[:, None] & cm[None, :], other=0.0)
    live = tl.max((v != 0).to(tl.int32), axis=0)  # NaN != 0: a NaN keeps its channel live
    count = tl.sum(live, 0)
    tl.store(cnt_ptr + t * NG + g, count)
    size = tl.minimum(GROUP, C - g * GROUP)
    packed = (live > 0) & (count < size)  # a dense group's values stay in x
    slot = tl.cumsum(live, 0) - 1
    tb = t.to(tl.int64)
    tl.store(ids_ptr + tb * (NG * GROUP) + g * GROUP + slot, c, mask=packed)
    p_tile = p_ptr + tb * (NG * GROUP * RF) + (q * CHUNK)[:, None]
    chunk = g * (GROUP // CHUNK) + slot // CHUNK
    p_off = (chunk * RF * CHUNK + slot % CHUNK)[None, :]
    tl.store(p_tile + p_off, v, mask=(q < RF)[:, None] & packed[None, :])
    # zeros in the last chunk's unused slots: the main kernel reads whole chunks unmasked (a mask
    # along the channels would stop its loads from being vectorised)
    lane = tl.arange(0, GROUP)
    pad = (lane >= count) & (lane < (count + CHUNK - 1) // CHUNK * CHUNK) & (count < size)
    p_off = ((g * (GROUP // CHUNK) + lane // CHUNK) * RF * CHUNK + lane % CHUNK)[None, :]
    tl.store(p_tile + p_off, tl.zeros_like(v), mask=(q < RF)[:, None] & pad[None, :])


def tiles(spec, th: int, tw: int) -> tuple[int, int]:
    """Tiles per image along y and x: over the conv output, or over the rows and columns a fused
    2x2/2 max pool reads (floor mode drops an odd last one)."""
    eh, ew = (2 * spec.pooled_h, 2 * spec.pooled_w) if spec.pool else (spec.out_h, spec.out_w)
    return triton.cdiv(eh, th), triton.cdiv(ew, tw)


def pack(x: torch.Tensor, spec, th: int, tw: int, group: int, chunk: int, num_warps: int = 4):
    """Runs pass 1 for a checked 3x3-style stride-1 call: returns (P, ids, counts), shaped
    (tiles, groups * group // chunk, rf, chunk), (tiles, groups * group) and (tiles, groups)."""
    ty, tx = tiles(spec, th, tw)
    n_tiles, groups = spec.batch * ty * tx, triton.cdiv(spec.in_channels, group)
    rf = (th + spec.kernel_h - 1) * (tw + spec.kernel_w - 1)
    p = torch.empty((n_tiles, groups * group // chunk, rf, chunk), dtype=x.dtype, device=x.device)
    ids = torch.empty((n_tiles, groups * group), dtype=torch.int32, device=x.device)
    counts = torch.empty((n_tiles, groups), dtype=torch.int32, device=x.device)
    _pack_kernel[(n_tiles, groups)](
        x, p, ids, counts, spec.in_channels, spec.height, spec.width, ty, tx, *x.stride(), spec.pad_h, spec.pad_w,
        spec.kernel_h, spec.kernel_w, th, tw, triton.next_power_of_2(rf), group, chunk, num_warps=num_warps)
    return p, ids, counts


def live_lists(x: torch.Tensor, spec, tile=(8, 8)) -> torch.Tensor:
    """Pure-PyTorch reference of the live channels: a bool (tiles, C) tensor, tiles in
    (image, tile row, tile column) order, True where the tile's receptive field holds a non-zero
    of that channel (NaN and inf included)."""
    th, tw = tile
    ty, tx = tiles(spec, th, tw)
    rfh, rfw = th + spec.kernel_h - 1, tw + spec.kernel_w - 1
    bottom = max((ty - 1) * th + rfh - spec.pad_h - spec.height, 0)
    right = max((tx - 1) * tw + rfw - spec.pad_w - spec.width, 0)
    nz = F.pad((x != 0).float(), (spec.pad_w, right, spec.pad_h, bottom))
    live = F.max_pool2d(nz, (rfh, rfw), (th, tw))[:, :, :ty, :tx] > 0
    return live.permute(0, 2, 3, 1).reshape(-1, spec.in_channels)


def work_left(live: torch.Tensor, chunk: int = 16, group: int | None = None) -> float:
    """The compaction bound: the share of a dense kernel's channel work left when each tile
    multiplies only its live channels, rounded up to `chunk` per group of `group` channels
    (default: one group of all channels). 1 / work_left bounds the speedup over the same kernel
    dense, before the cost of pass 1."""
    c = live.shape[1]
    group = group or c
    counts = F.pad(live, (0, -c % group)).reshape(live.shape[0], -1, group).sum(-1)
    padded = (counts + chunk - 1) // chunk * chunk
    return float(padded.sum()) / (live.shape[0] * triton.cdiv(c, chunk) * chunk)
