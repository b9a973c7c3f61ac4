"""The Winograd GEMMs: M[t, p, o] = sum_c V[t, p, c] U[p, o, c] for each of the P patch positions p.

V is the input transform's (1, P C, T, 1) channels_last image (memory [T][P][C]), U the
transformed weight (P C_out, C, 1, 1) (memory [P][C_out][C], K-major as Hopper's TF32 wgmma
reads it), M a (1, P C_out, T, 1) channels_last image for the output transform.

Why a kernel of its own: the implicit-GEMM conv kernel ran them as a P-group 1x1 conv, and a plain
batched-GEMM loop, K a compile-time constant and no pixel index math, ran the same products
1.2-1.3x faster (fp32 3xTF32, F(4x4), batch 32, H200, per kernel: features.21 (T 1568, 512
channels) 384 -> 294 us, features.12 (T 6272, 256) 404 -> 324, features.30 (T 512) 138 -> 106,
features.5 (T 25088, 64 -> 128) 355 -> 293).

Few tiles (batch 1 on small maps) keep the conv kernel's path, which splits K over programs
(kernels/split_k.py): see prefer. 16-bit products with enough tiles run on kernels/persistent_gemm.py
(a fixed grid of programs walking tiles: VGG-19 bf16 F(4x4) fused stages at batch 32 9-11%
faster). fp32 precisions stay on one program per tile here: the best persistent TF32 and 3xfp16
tiles ran 1.1-1.9x slower in a version whose bf16 tiles were slow too (H200,
benchmarks/winograd-gemm-persistent-h200.txt, run 2).

fp32 with TF32 off runs three products per multiply, on TF32 halves ("3xtf32": V split here, U on
the host) or on scaled fp16 halves that the input transform and the host wrote ("3xfp16":
winograd_steps.run_steps, winograd4.prefer_halves). fp16 products run at twice the TF32 rate: VGG-19
features.21 at batch 32 (H100, whole conv, same run) 459.7 -> 355.7 us.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import runtime
from ..runtime import graph_ms, tuner_cache
from . import persistent_gemm
from .implicit_gemm import _configs, _dot_3xtf32, _dot_3xtf32_running


@triton.jit
def _gemm_kernel(
    # pointers: V (its fp16 low half for 3xfp16), U (its TF32 or fp16 low part for 3xtf32, 3xfp16), M
    v_ptr, vlo_ptr, u_ptr, ulo_ptr, m_ptr,
    # sizes: tiles (rows), input and output channels, positions
    T, C: tl.constexpr, CO: tl.constexpr, P: tl.constexpr,
    # constexpr switches
    PRECISION: tl.constexpr, UPCAST: tl.constexpr, RUNNING: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One BLOCK_M x BLOCK_N tile of M for position program_id(2)."""
    p = tl.program_id(2)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    kk = tl.arange(0, BLOCK_K)
    rmask = rows < T
    cmask = cols < CO
    a_off = (rows.to(tl.int64) * (P * C) + p * C)[:, None] + kk[None, :]
    a_ptr = v_ptr + a_off
    b_off = ((p * CO + cols).to(tl.int64) * C)[None, :] + kk[:, None]
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    small = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)  # RUNNING's sum of the two small products
    for k0 in range(0, C, BLOCK_K):
        kmask = (kk + k0) < C
        a = tl.load(a_ptr + k0, mask=rmask[:, None] & kmask[None, :], other=0.0)
        b = tl.load(u_ptr + b_off + k0, mask=kmask[:, None] & cmask[None, :], other=0.0)
        if UPCAST:  # the interpreter's bf16 dot is wrong
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        if PRECISION == "3xtf32":
            b_lo = tl.load(ulo_ptr + b_off + k0, mask=kmask[:, None] & cmask[None, :], other=0.0)
            if RUNNING:
                acc, small = _dot_3xtf32_running(a, b, b_lo, acc, small)
            else:
                acc = _dot_3xtf32(a, b, b_lo, acc)
        elif PRECISION == "3xfp16":
            a_lo = tl.load(vlo_ptr + a_off + k0, mask=rmask[:, None] & kmask[None, :], other=0.0)
            b_lo = tl.load(ulo_ptr + b_off + k0, mask=kmask[:, None] & cmask[None, :], other=0.0)
            if RUNNING:
                small = tl.dot(a_lo, b, small)
                small = tl.dot(a, b_lo, small)
                acc = tl.dot(a, b, acc)
            else:
                part = tl.dot(a_lo, b, tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32))
                part = tl.dot(a, b_lo, part)
                acc = acc + tl.dot(a, b, part)
        else:
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
    if RUNNING:
        acc = acc + small
    out = m_ptr + (rows.to(tl.int64) * (P * CO) + p * CO)[:, None] + cols[None, :]
    tl.store(out, acc.to(m_ptr.dtype.element_ty), mask=rmask[:, None] & cmask[None, :])


_KEY = ["T", "C", "CO", "P", "PRECISION"]
_TUNE = dict(key=_KEY, do_bench=graph_ms, **tuner_cache())
# 3xTF32, F(4x4), batch 32 (H200, do_bench, per kernel): 64x128x32 on 4 warps, 3 stages, was fastest on
# 512 and 256 channels (294 / 324 us against 334 / 348 for 128x64), 64x64 tied it on 64 -> 128
# channels and 14x14 maps; 4 stages, 8 warps and 256-wide tiles ran 1.2-2.4x slower. 64x128 takes 224
# registers and 120 KB of shared memory (sm_90, scripts/resource_report.py), so one block per SM;
# none of these tiles spills.
_tuned_32 = triton.autotune(configs=_configs([
    (64, 128, 32, 4, 3), (64, 64, 32, 4, 3), (128, 64, 32, 4, 3), (128, 128, 32, 8, 3),
]), **_TUNE)(_gemm_kernel)
# One TF32 product per chunk: 128x128 on 8 warps was fastest (127 us on features.21's shape against
# 156 for 128x64), 128x256 next (131).
_tuned_tf32 = triton.autotune(configs=_configs([
    (128, 128, 32, 8, 3), (128, 256, 32, 8, 3), (64, 128, 32, 4, 3), (128, 64, 32, 4, 3),
]), **_TUNE)(_gemm_kernel)
# 16-bit operands where few tiles leave no program a second one (persistent_gemm.prefer): 64-wide
# chunks (one 128-byte row per load). 64x128 on 4 warps was fastest on VGG-19's batch-1 F(4x4)
# GEMMs (bf16, H200, scripts/gemm_tiles.py: 196 tiles x 256 channels 6.1 us, 49 x 512 6.6 us,
# against 6.9 / 9.1 for 128x128 on 8 warps and 6.3 / 8.3 for the persistent TMA kernel).
_tuned_16 = triton.autotune(configs=_configs([
    (128, 128, 64, 8, 3), (128, 256, 64, 8, 3), (64, 128, 64, 4, 3), (128, 64, 64, 4, 4),
]), **_TUNE)(_gemm_kernel)

# Three fp16 products (two accumulators): shared memory per stage is 3xTF32's at the same BLOCK_K
# (two 2-byte operands per 4-byte one). 128x256 tiles spilled (255 registers, 1 KB of stack; the
# others 128-234 registers, none spills: sm_90, scripts/resource_report.py).
_tuned_3x16 = triton.autotune(configs=_configs([
    (128, 128, 32, 8, 3), (128, 128, 64, 8, 2), (64, 128, 64, 4, 3), (128, 64, 64, 4, 3),
    (64, 128, 32, 4, 4), (128, 128, 64, 8, 3), (64, 64, 64, 4, 3), (128, 128, 32, 8, 4),
]), **_TUNE)(_gemm_kernel)


# 3xTF32 with the products summed in running tensor-core accumulators (the two small ones in a
# second accumulator) instead of each chunk's three from zero added on the CUDA cores: no wait on
# the tensor core and no CUDA-core add per chunk. VGG-19 F(4x4) at batch 32 (H100, same run,
# benchmarks/vgg19-fp32-running-acc-ab-h100.txt): features.12 635.6 -> 590.8 us, .21 471.9 ->
# 465.4, .30 167.2 -> 161.4, .5 670.2 -> 658.6. The tensor core drops low bits of a running sum,
# an error that grows with the reduction length: normwise 5.8e-7 -> 1.6e-6 on features.21 (512
# channels), under the 1e-5 bound; the direct kernel's 4608-long reductions reached 9.5e-6..2.9e-5
# that way (implicit_gemm._dot_3xtf32), so longer ones keep the per-chunk sums.
RUNNING_MAX_C = 512


def prefer(tiles: int, cout: int, positions: int, sms: int) -> bool:
    """This kernel for the GEMMs, unless 64x64 output blocks would leave it under two programs per
    SM: there the direct kernel's grouped 1x1 conv, whose split-K is measured, runs them instead (e.g.
    F(2x2) on 14x14 maps at batch 1, 49 tiles)."""
    return triton.cdiv(tiles, 64) * triton.cdiv(cout, 64) * positions >= 2 * sms


def gemm(v, u, u_lo, m, precision: str, interpreting: bool = False, v_lo=None) -> torch.Tensor:
    """Writes and returns M, a (1, P C_out, T, 1) channels_last tensor, from V (1, P C, T, 1)
    channels_last and U (P C_out, C, 1, 1) contiguous (u_lo: U's low part for precision "3xtf32"
    (TF32) and "3xfp16" (fp16), else unused; v_lo: V's fp16 low half for "3xfp16", same layout as
    V). precision: "3xtf32" or "tf32" for fp32 V, "3xfp16" for fp16 halves of fp32 values
    (winograd_steps.run_steps), "ieee" for 16-bit V and U."""
    tiles, pc, pcout = v.shape[2], v.shape[1], u.shape[0]
    c = u.shape[1]
    positions = pc // c
    cout = pcout // positions
    args = (v, v if v_lo is None else v_lo, u, u_lo, m, tiles, c, cout, positions)
    running = precision in ("3xtf32", "3xfp16") and c <= RUNNING_MAX_C
    if precision == "ieee" and (interpreting or persistent_gemm.prefer(tiles, cout, positions,
                                                                       runtime.sm_count(v.device))):
        # (the interpreter takes the persistent kernels, which only 16-bit products use; the
        # per-tile kernel's 16-bit path differs from the others' only in the dot's precision)
        return persistent_gemm.gemm(v, u, m, tiles, c, cout, positions, interpreting)
    if interpreting:
        # the interpreter costs ~9 ms per program whatever its size: big blocks, one config
        grid = (triton.cdiv(tiles, 128), triton.cdiv(cout, 64), positions)
        _gemm_kernel[grid](*args, PRECISION=precision, UPCAST=v.dtype == torch.bfloat16, RUNNING=running,
                           BLOCK_M=128, BLOCK_N=64, BLOCK_K=64, num_warps=1, num_stages=1)
        return m
    if precision == "3xfp16":
        kernel = _tuned_3x16
    else:
        kernel = _tuned_16 if v.dtype != torch.float32 else (_tuned_tf32 if precision == "tf32" else _tuned_32)
    grid = lambda meta: (triton.cdiv(tiles, meta["BLOCK_M"]), triton.cdiv(cout, meta["BLOCK_N"]), positions)  # noqa: E731
    kernel[grid](*args, PRECISION=precision, UPCAST=False, RUNNING=running)
    return m
