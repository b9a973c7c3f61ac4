"""Pass 1 of the "compact" convolution (kernels/compact.py): per output tile, the input channels
that are live in its receptive field, and their values packed for the tensor cores.

An output tile is TH x TW conv pixels of one image; its receptive field is the
(TH + KH - 1) x (TW + KW - 1) input box that its windows read (padding reads nothing). A channel is
live for a tile when that box holds a non-zero value of it (NaN and inf count as non-zero; only
exact zeros are dead). Channels are taken in groups of GROUP; one program handles one
(tile, group), or a share of its chunks (SPLIT programs each, for small grids):

- counts[tile, group]: how many of the group's channels are live;
- a group whose channels are all live is "dense": nothing else is written, and the main kernel
  reads those channels from x itself, as a dense kernel does;
- otherwise the live channel ids, ascending, go to ids[tile, group * GROUP + slot], and their
  receptive-field values to P[tile, chunk, rf pixel, lane], slot = chunk * CHUNK + lane counted
  from the group's first chunk. A chunk of CHUNK live channels is one [RF, CHUNK] block, so the
  main kernel's A tile of any kernel tap is TH x TW of its rows, CHUNK contiguous values each.
  The last chunk's slots past the count hold zeros; ids there are left unwritten.

The pass reads x once in coalesced [rows, GROUP] blocks to find the live channels (an OR of the
value bits over the box), then gathers only the live channels' values into whole chunks of P,
several chunks per step, so no work is spent on dead channels. (Storing each live value at its
packed slot straight from the dense block cost ~30 instructions per element, dead ones included:
327 us for HED conv2_2 at batch 32 on an H200, 7x its byte floor.) Its floor is traffic(): x read
once and the live chunks written.

P's capacity is every channel of every tile (tiles x C x RF elements, (TH+2)(TW+2)/(TH TW) of the
input, 1.41x at 8x16); only live channels of sparse groups are written.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

# elements of x per thread in a liveness block [ROWS, GROUP]: 64 where loads are 16-byte vectors
# along the channels (channels_last), 16 where each takes its own 64-bit address (NCHW: 64 took
# 255 registers on sm_90); a gathered block is 16 or more per thread (the whole box by a chunk)
ROWS_PER_THREAD = {True: 64, False: 16}


@triton.jit
def _bit_or(a, b):
    return a | b


@triton.jit
def _in_box(q, TH: tl.constexpr, TW: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, QW: tl.constexpr):
    return (q // QW < TH + KH - 1) & (q % QW < TW + KW - 1)


@triton.jit
def _box(q, ty, tx, TH: tl.constexpr, TW: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, QW: tl.constexpr,
         H: tl.constexpr, W: tl.constexpr, pad_h: tl.constexpr, pad_w: tl.constexpr):
    """Receptive-field position q (row pitch QW >= its width) -> (input row, column, in the box
    and the map, P row)."""
    RFW: tl.constexpr = TW + KW - 1
    ry = q // QW
    rx = q % QW
    iy = ty * TH - pad_h + ry
    ix = tx * TW - pad_w + rx
    return iy, ix, _in_box(q, TH, TW, KH, KW, QW) & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W), ry * RFW + rx


@triton.jit
def _pack_kernel(
    # pointers: the input; outputs P (packed values), ids (live channels), counts
    x_ptr, p_ptr, ids_ptr, cnt_ptr,
    # sizes: input, tiles per image along y and x
    C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, TY: tl.constexpr, TX: tl.constexpr,
    # input strides (elements) and padding
    sxn: tl.constexpr, sxc: tl.constexpr, sxh: tl.constexpr, sxw: tl.constexpr,
    pad_h: tl.constexpr, pad_w: tl.constexpr,
    # tile geometry: QW the receptive field's row pitch in q (its width, or a power of 2 above it
    # for NCHW so that a row's pixels are contiguous lanes), ROWS q positions per liveness block,
    # [GATHER, GATHER_K] q positions (all of the box) x live channels per gathered block, SPLIT
    # programs per (tile, group)
    KH: tl.constexpr, KW: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, QW: tl.constexpr,
    GROUP: tl.constexpr, CHUNK: tl.constexpr, ROWS: tl.constexpr, GATHER: tl.constexpr, GATHER_K: tl.constexpr,
    SPLIT: tl.constexpr,
):
    t = tl.program_id(0)
    g = tl.program_id(1)
    s = tl.program_id(2)
    NG: tl.constexpr = (C + GROUP - 1) // GROUP
    RF: tl.constexpr = (TH + KH - 1) * (TW + KW - 1)
    QN: tl.constexpr = (TH + KH - 1) * QW  # q positions covering the box
    n = t // (TY * TX)
    ty = (t // TX) % TY
    tx = t % TX
    x_img = x_ptr + n.to(tl.int64) * sxn
    c = g * GROUP + tl.arange(0, GROUP)
    cm = c < C

    # liveness: any non-zero over the box, reading x once in [ROWS, GROUP] blocks; on the bits
    # without the sign (+-0 dead; NaN and inf live), one AND and one OR per element
    if x_ptr.dtype.element_ty == tl.float32:
        BITS: tl.constexpr = tl.int32
        MAG: tl.constexpr = 0x7FFFFFFF
    else:
        BITS: tl.constexpr = tl.int16
        MAG: tl.constexpr = 0x7FFF
    mag = tl.zeros([ROWS, GROUP], dtype=BITS)  # reduced across threads once, after the loop
    for q0 in range(0, QN, ROWS):
        q = q0 + tl.arange(0, ROWS)
        iy, ix, ok, _ = _box(q, ty, tx, TH, TW, KH, KW, QW, H, W, pad_h, pad_w)
        v = tl.load(x_img + (iy * sxh + ix * sxw)[:, None] + (c * sxc)[None, :], mask=ok[:, None] & cm[None, :],
                    other=0.0)
        mag |= v.to(BITS, bitcast=True) & tl.full((), MAG, BITS)
    live = (tl.reduce(mag, 0, _bit_or) != 0).to(tl.int32)
    count = tl.sum(live, 0)
    tl.store(cnt_ptr + t * NG + g, count, mask=s == 0)
    size = tl.minimum(GROUP, C - g * GROUP)
    if count < size:  # a dense group's values stay in x
        tb = t.to(tl.int64)
        ids_grp = ids_ptr + tb * (NG * GROUP) + g * GROUP
        slot = tl.cumsum(live, 0) - 1
        tl.store(ids_grp + slot, c, mask=live > 0)  # every split program writes the same ids
        tl.debug_barrier()  # the ids this program's threads stored, read back below by others
        p_grp = p_ptr + (tb * (NG * GROUP // CHUNK) + g * (GROUP // CHUNK)) * (RF * CHUNK)
        # the live channels GATHER_K at a time: [GATHER, GATHER_K] blocks (the whole box by the
        # channels) gathered from x into whole chunks of P; the box's row offsets and masks once
        q = tl.arange(0, GATHER)
        iy, ix, ok, row = _box(q, ty, tx, TH, TW, KH, KW, QW, H, W, pad_h, pad_w)
        x_rows = x_img + (iy * sxh + ix * sxw)[:, None]
        in_box = _in_box(q, TH, TW, KH, KW, QW)[:, None]
        padded = (count + CHUNK - 1) // CHUNK * CHUNK
        for j in range(s, (count + GATHER_K - 1) // GATHER_K, SPLIT):
            k = j * GATHER_K + tl.arange(0, GATHER_K)
            km = k < count
            ch = tl.load(ids_grp + k, mask=km, other=0)
            if sxc == 1:
                # channels_last: Triton gives a load the layout of the store it feeds, and P's
                # 16-byte stores put 8 slots per thread, so each load instruction read 16 pixels
                # (sm_90 TTGIR). ch >> 31 is 0 but hides k's contiguity: one slot per thread,
                # consecutive threads on consecutive live channels, 1 or 2 pixels per instruction.
                k = k + (ch >> 31)
            v = tl.load(x_rows + (ch * sxc)[None, :], mask=ok[:, None] & km[None, :], other=0.0)
            p_off = (row * CHUNK)[:, None] + ((k // CHUNK) * (RF * CHUNK) + k % CHUNK)[None, :]
            # zeros past the count in the last chunk: the main kernel reads whole chunks unmasked
            tl.store(p_grp + p_off, v, mask=in_box & (k < padded)[None, :])


def tiles(spec, th: int, tw: int) -> tuple[int, int]:
    """Tiles per image along y and x: over the conv output, or over the rows and columns a fused
    2x2/2 max pool reads (floor mode drops an odd last one)."""
    eh, ew = (2 * spec.pooled_h, 2 * spec.pooled_w) if spec.pool else (spec.out_h, spec.out_w)
    return triton.cdiv(eh, th), triton.cdiv(ew, tw)


def warps(group: int, th: int = 8, tw: int = 16) -> int:
    """Pass-1 warps: one per 32 channels of the group and per 64 receptive-field positions of the
    tile (padded to a power of 2), 4 to 16, so that a liveness block of 64 positions is 64 values
    per thread and a gathered block (the box by a chunk) at most 32 (16x16 tiles on 4 warps: 64,
    255 registers on sm_90)."""
    return max(4, min(16, max(group // 32, triton.next_power_of_2((th + 2) * (tw + 2)) // 64)))


def blocks(channels_last: bool, th: int, tw: int, kh: int, kw: int, group: int, chunk: int, num_warps: int) -> dict:
    """The pass-1 kernel's block constexprs: QW, the receptive field's row pitch in q (its width for
    channels_last, whose channels are the contiguous lanes; the next power of 2 for NCHW, so that a
    row's pixels are), and the ROWS x GROUP liveness and GATHER x GATHER_K gathered block shapes
    (GATHER the whole box: its row offsets and masks are computed once per program)."""
    rfw = tw + kw - 1
    qw = rfw if channels_last else triton.next_power_of_2(rfw)
    qn = triton.next_power_of_2((th + kh - 1) * qw)
    threads = 32 * num_warps
    return dict(QW=qw, ROWS=max(1, min(qn, ROWS_PER_THREAD[channels_last] * threads // group)), GATHER=qn,
                GATHER_K=min(group, max(chunk, triton.next_power_of_2(16 * threads // qn))))


def pack(x: torch.Tensor, spec, th: int, tw: int, group: int, chunk: int, split: int = 1, num_warps: int | None = None):
    """Runs pass 1 for a checked 3x3-style stride-1 call: returns (P, ids, counts), shaped
    (tiles, groups * group // chunk, rf, chunk), (tiles, groups * group) and (tiles, groups).
    split programs share each (tile, group)'s chunks (for grids that leave SMs idle)."""
    ty, tx = tiles(spec, th, tw)
    n_tiles, groups = spec.batch * ty * tx, triton.cdiv(spec.in_channels, group)
    rf = (th + spec.kernel_h - 1) * (tw + spec.kernel_w - 1)
    num_warps = num_warps or warps(group, th, tw)
    channels_last = x.stride(1) == 1 and spec.in_channels > 1
    p = torch.empty((n_tiles, groups * group // chunk, rf, chunk), dtype=x.dtype, device=x.device)
    ids = torch.empty((n_tiles, groups * group), dtype=torch.int32, device=x.device)
    counts = torch.empty((n_tiles, groups), dtype=torch.int32, device=x.device)
    _pack_kernel[(n_tiles, groups, split)](
        x, p, ids, counts, spec.in_channels, spec.height, spec.width, ty, tx, *x.stride(), spec.pad_h, spec.pad_w,
        spec.kernel_h, spec.kernel_w, th, tw, GROUP=group, CHUNK=chunk, SPLIT=split, num_warps=num_warps,
        **blocks(channels_last, th, tw, spec.kernel_h, spec.kernel_w, group, chunk, num_warps))
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


def _padded_counts(live: torch.Tensor, chunk: int, group: int | None):
    c = live.shape[1]
    group = group or c
    counts = F.pad(live, (0, -c % group)).reshape(live.shape[0], -1, group).sum(-1)
    return counts, (counts + chunk - 1) // chunk * chunk, group


def work_left(live: torch.Tensor, chunk: int = 16, group: int | None = None) -> float:
    """The compaction bound: the share of a dense kernel's channel work left when each tile
    multiplies only its live channels, rounded up to `chunk` per group of `group` channels
    (default: one group of all channels). 1 / work_left bounds the speedup over the same kernel
    dense, before the cost of pass 1."""
    _, padded, _ = _padded_counts(live, chunk, group)
    return float(padded.sum()) / (live.shape[0] * triton.cdiv(live.shape[1], chunk) * chunk)


def traffic(live: torch.Tensor, x: torch.Tensor, tile, chunk: int = 16, group: int | None = None) -> int:
    """Pass 1's bytes at its floor: x read once, the live chunks of sparse groups written to P
    (receptive field x chunk each), ids and counts."""
    counts, padded, group = _padded_counts(live, chunk, group)
    rf = (tile[0] + 2) * (tile[1] + 2)
    sparse = counts < group
    p_elems = int((padded * sparse).sum()) * rf
    return x.numel() * x.element_size() + p_elems * x.element_size() + 4 * int((counts * sparse).sum() + counts.numel())
