"""The 16-bit Winograd GEMMs (winograd_gemm.py's M[t, p, o] = sum_c V[t, p, c] U[p, o, c]) on a fixed
grid of programs, each walking tiles.

Why: with 256 input channels a 128x128 tile's reduction is only four 64-channel chunks, and one
program per tile left the load pipeline empty at each tile's start (ncu, bf16 features.16 at batch
32: 35% of the SMs busy, 49% of DRAM). Here each program's tile loop is flattened with its reduction
loop, so the next tile's loads are in flight under this one's last products and its store.

Two kernels: operand tiles through the tensor-memory accelerator (2-D descriptors V as [T, P C], U
as [P C_out, C]) where the input channels are a multiple of BLOCK_K (tma_fits), else through
pointers. bf16 GEMMs alone, VGG-19 F(4x4) at batch 32 (H200, same run, scripts/gemm_tiles.py,
benchmarks/winograd-gemm-persistent-h200.txt), one program per tile -> persistent on pointers ->
persistent TMA: features.16 (6272 tiles, 256 channels) 88.8 -> 78.6 -> 73.5 us, .25 (1568, 512)
69.1 -> 64.7 -> 58.7, .34 (512, 512) 27.6 -> 25.2 -> 23.8. At batch 1 (16-196 tiles) one program
per tile on 64x128 tiles stayed fastest (6.1-6.6 us against 6.3-8.6): prefer() keeps it there.

The 3-D descriptors tried before (V as [T, P, C], boxes [BM, 1, BK]) gave wrong tiles now and then
with most tile configs (benchmarks/winograd-gemm-tma-ab-h200.txt); every config here ran three
times per VGG-19 size with the same error as the pointer kernels (scripts/gemm_tiles.py), and
tests/test_winograd_gemm.py runs each alone at a VGG-19 size on the GPU.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from .. import runtime
from ..runtime import graph_ms, tuner_cache


@triton.jit
def _tile_at(tile, T, CO: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """(position, first row, first output channel) of a tile; output-channel blocks vary fastest,
    so the programs that read the same V rows run side by side."""
    nn = tl.cdiv(CO, BLOCK_N)
    nm = tl.cdiv(T, BLOCK_M)
    return tile // (nn * nm), ((tile // nn) % nm) * BLOCK_M, (tile % nn) * BLOCK_N


@triton.jit
def _store(m_ptr, acc, r0, o0, p, T, CO: tl.constexpr, P: tl.constexpr, BLOCK_M: tl.constexpr,
           BLOCK_N: tl.constexpr):
    rows = r0 + tl.arange(0, BLOCK_M)
    cols = o0 + tl.arange(0, BLOCK_N)
    out = m_ptr + (rows.to(tl.int64) * (P * CO) + p * CO)[:, None] + cols[None, :]
    tl.store(out, acc.to(m_ptr.dtype.element_ty), mask=(rows < T)[:, None] & (cols < CO)[None, :])


@triton.jit
def _pointer_kernel(v_ptr, u_ptr, m_ptr, T, C: tl.constexpr, CO: tl.constexpr, P: tl.constexpr, UPCAST: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
                    PER_SM: tl.constexpr):
    """Tiles program_id(0), + num_programs(0), ...; operands through pointers (any C). The
    reduction is written out here, not shared with winograd_gemm._gemm_kernel through a helper:
    that version, every chunk masked, took 120.4 us on bf16 features.16 at batch 32 (H200), where
    this one took 78.6 us in the runs before and after it."""
    kk = tl.arange(0, BLOCK_K)
    n_tiles = tl.cdiv(CO, BLOCK_N) * tl.cdiv(T, BLOCK_M) * P
    for tile in tl.range(tl.program_id(0), n_tiles, tl.num_programs(0), flatten=True, num_stages=STAGES):
        p, r0, o0 = _tile_at(tile, T, CO, BLOCK_M, BLOCK_N)
        rows = r0 + tl.arange(0, BLOCK_M)
        cols = o0 + tl.arange(0, BLOCK_N)
        a_ptr = v_ptr + (rows.to(tl.int64) * (P * C) + p * C)[:, None] + kk[None, :]
        b_ptr = u_ptr + ((p * CO + cols).to(tl.int64) * C)[None, :] + kk[:, None]
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(tl.cdiv(C, BLOCK_K)):
            if C % BLOCK_K == 0:  # whole chunks: only rows and columns masked
                a = tl.load(a_ptr + k * BLOCK_K, mask=(rows < T)[:, None], other=0.0)
                b = tl.load(b_ptr + k * BLOCK_K, mask=(cols < CO)[None, :], other=0.0)
            else:
                kmask = kk + k * BLOCK_K < C
                a = tl.load(a_ptr + k * BLOCK_K, mask=(rows < T)[:, None] & kmask[None, :], other=0.0)
                b = tl.load(b_ptr + k * BLOCK_K, mask=kmask[:, None] & (cols < CO)[None, :], other=0.0)
            if UPCAST:  # the interpreter's bf16 dot is wrong
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc)
        _store(m_ptr, acc, r0, o0, p, T, CO, P, BLOCK_M, BLOCK_N)


@triton.jit
def _tma_kernel(v_desc, u_desc, m_ptr, T, C: tl.constexpr, CO: tl.constexpr, P: tl.constexpr, UPCAST: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
                PER_SM: tl.constexpr):
    """As _pointer_kernel, the operand tiles moved by the tensor-memory accelerator: one
    instruction per tile, no per-thread addresses or masks. Rows past T read as zeros; C is a
    multiple of BLOCK_K (tma_fits), so a chunk never reaches the next position's channels; a U
    tile past C_out reads the next position's weights into columns that are never stored."""
    n_tiles = tl.cdiv(CO, BLOCK_N) * tl.cdiv(T, BLOCK_M) * P
    for tile in tl.range(tl.program_id(0), n_tiles, tl.num_programs(0), flatten=True, num_stages=STAGES):
        p, r0, o0 = _tile_at(tile, T, CO, BLOCK_M, BLOCK_N)
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(C // BLOCK_K):
            a = v_desc.load([r0, p * C + k * BLOCK_K])
            b = u_desc.load([p * CO + o0, k * BLOCK_K])
            if UPCAST:  # the interpreter's bf16 dot is wrong
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b.T, acc)
        _store(m_ptr, acc, r0, o0, p, T, CO, P, BLOCK_M, BLOCK_N)


def _tma_blocks(nargs):
    """Each config's tiles as the descriptors' boxes (the autotuner calls this before every launch)."""
    nargs["v_desc"].block_shape = [nargs["BLOCK_M"], nargs["BLOCK_K"]]
    nargs["u_desc"].block_shape = [nargs["BLOCK_N"], nargs["BLOCK_K"]]


# (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages, programs per SM). 128x128 on 4 warps, two programs per SM
# (96 KB of shared memory each), was fastest on every batch-32 size for both kernels; 128x256 on 8 warps
# next (80.6 / 67.1 / 28.3 us on pointers). 128x128 on 8 warps, 4 stages on one program per SM and
# 256x128 ran 5-40% slower (scripts/gemm_tiles.py).
TILES = ((128, 128, 64, 4, 3, 2), (128, 256, 64, 8, 3, 1))
BLOCK_K = 64  # every config's chunk of input channels
_KEY = ["T", "C", "CO", "P"]


def _tuner(kernel, pre_hook=None):
    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "STAGES": st, "PER_SM": per_sm},
                             num_warps=w, pre_hook=pre_hook) for m, n, k, w, st, per_sm in TILES]
    return triton.autotune(configs=configs, key=_KEY, do_bench=graph_ms, **tuner_cache())(kernel)


_tuned_pointer = _tuner(_pointer_kernel)
_tuned_tma = _tuner(_tma_kernel, _tma_blocks)


def prefer(tiles: int, cout: int, positions: int, sms: int) -> bool:
    """Whether 128x128 tiles give every program of two per SM a second tile: the batch-32 sizes did
    (576 tiles and up), the batch-1 ones did not (at most 144)."""
    return triton.cdiv(tiles, 128) * triton.cdiv(cout, 128) * positions >= 4 * sms


def tma_fits(v, u) -> bool:
    """Whether the TMA kernel takes V and U: 16-byte aligned bases, input channels a multiple of
    BLOCK_K (whole chunks per position, which also aligns the row strides to 16 bytes)."""
    return all(t.data_ptr() % 16 == 0 for t in (v, u)) and u.shape[1] % BLOCK_K == 0


def gemm(v, u, m, tiles: int, c: int, cout: int, positions: int, interpreting: bool = False) -> torch.Tensor:
    """M from 16-bit V (1, P C, T, 1) channels_last and U (P C_out, C, 1, 1) contiguous, into m."""
    upcast = interpreting and v.dtype == torch.bfloat16
    if tma_fits(v, u):
        # the descriptors' boxes are set per config (_tma_blocks); these are the interpreter's
        ops = (TensorDescriptor(v, [tiles, positions * c], [positions * c, 1], [128, BLOCK_K]),
               TensorDescriptor(u, [positions * cout, c], [c, 1], [64, BLOCK_K]), m)
        kernel, tuned = _tma_kernel, _tuned_tma
    else:
        ops, kernel, tuned = (v, u, m), _pointer_kernel, _tuned_pointer
    if interpreting:
        # ~9 ms per program-iteration: big blocks; two programs, so each walks several tiles
        kernel[(2,)](*ops, tiles, c, cout, positions, UPCAST=upcast, BLOCK_M=128, BLOCK_N=64, BLOCK_K=BLOCK_K,
                     STAGES=1, PER_SM=1, num_warps=1)
        return m
    programs = runtime.sm_count(v.device)
    n_tiles = lambda meta: triton.cdiv(tiles, meta["BLOCK_M"]) * triton.cdiv(cout, meta["BLOCK_N"]) * positions  # noqa: E731
    tuned[lambda meta: (min(n_tiles(meta), programs * meta["PER_SM"]),)](*ops, tiles, c, cout, positions,
                                                                          UPCAST=False)
    return m
