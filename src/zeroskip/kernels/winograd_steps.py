"""The host side Winograd F(2x2, 3x3) (winograd.py) and F(4x4, 3x3) (winograd4.py) share: what they
support, the three launches (input transform, the batched GEMMs, output transform) and the route of
the GEMMs: kernels/winograd_gemm.py's batched GEMM, or where too few tiles would leave SMs idle, the
direct kernel's grouped 1x1 conv with its split-K.

Operand types of the GEMMs (V the transformed input, U the transformed weight, M their product):
  fp16 input, bf16 under F(2x2): V, U and M in the input's dtype, 16-bit tensor-core GEMMs with
    fp32 sums. M in fp16 halves its traffic (2.25x the output under F(4x4)): VGG-19 features.25 +
    pool at batch 32 147.0 -> 122.0 us, error 1.9e-3 -> 2.4e-3 (H200,
    benchmarks/vgg19-fp16-winograd-m16-ab-h200.txt).
  bf16 under F(4x4), fp32 under F(4x4) with TF32 (winograd4.prefer_fp16_operands) or TF32 off
    (winograd4.prefer_halves): V and U in fp16 scaled by powers of 2 (V by the input's largest
    finite magnitude, U per output channel), so fp16's range holds any magnitude and the GEMMs run
    at the fp16 rate; the output transform divides the scales out exactly. bf16 GEMMs would give
    8.7e-3 normwise (emulation), too near bf16's 1e-2. TF32 off splits V and U into fp16 halves
    hi + lo (22 bits, as 3xTF32) for three fp16 products: 1.2e-6..1.9e-6 on VGG-19 (H100,
    benchmarks/vgg19-fp32-winograd4-halves-ab-h100.txt). With TF32, M is fp16 under a pool (fused
    stages 1.16-1.29x faster at 1.1e-3..1.2e-3, H200, benchmarks/vgg19-tf32-m16-ab-h200.txt) and
    fp32 for plain convs, which reached 1.3e-3..1.6e-3 in fp16.
  other fp32: V and U in fp32, TF32-rounded with TF32 on (rounding halves the tensor core's
    truncation error), else 3xTF32 GEMMs.
"""
from __future__ import annotations

import torch
import triton

from .. import runtime
from ..geometry import ConvSpec
from . import direct, launch, winograd_gemm
from .launch import packed_weight, precision

# The input transform's second pass (V's scale check): programs per SM, each reading two numbers
# where V is kept.
CHECK_PROGRAMS_PER_SM = 4


def supports(spec, tile: int) -> str | None:
    """None if Winograd F(tile x tile, 3x3) can run the call, else why not (for the error message)."""
    geometry = (spec.kernel_h, spec.kernel_w, spec.stride_h, spec.stride_w, spec.dil_h, spec.dil_w)
    if geometry != (3, 3, 1, 1, 1, 1):
        return (f"kernel {spec.kernel_h}x{spec.kernel_w}, stride ({spec.stride_h}, {spec.stride_w}), dilation "
                f"({spec.dil_h}, {spec.dil_w}): it needs a 3x3 kernel, stride 1, dilation 1")
    if spec.groups != 1:
        return f"groups={spec.groups}: it needs groups=1"
    if spec.pool and (spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw) != (
            2, 2, 2, 2, 0, 0):
        return (f"pool_size {(spec.pool_kh, spec.pool_kw)}, stride {(spec.pool_sh, spec.pool_sw)}, padding "
                f"{(spec.pool_ph, spec.pool_pw)}: it fuses only a 2x2 pool with stride 2 and no padding")
    # The GEMM kernel indexes its one (1, P C, tiles, 1) image in int32, P = (tile + 2)**2 positions.
    tiles = spec.batch * -(-spec.out_h // tile) * -(-spec.out_w // tile)
    positions = (tile + 2) ** 2
    if tiles * positions * max(spec.in_channels, spec.out_channels) >= 2**31:
        return (f"{tiles} tiles x {positions} x {max(spec.in_channels, spec.out_channels)} channels reach "
                f"2**31 elements")
    return None


def gemm_spec(v, u) -> ConvSpec:
    """The P-group 1x1 conv spec of the transformed GEMMs: V (1, P C, tiles, 1) by U
    (P C_out, C, 1, 1), P positions (16 for F(2x2), 36 for F(4x4)). Built directly: both tensors are
    made here, so check_conv's checks would only cost time on every call."""
    tiles, pc, pcout = v.shape[2], v.shape[1], u.shape[0]
    return ConvSpec(batch=1, in_channels=pc, height=tiles, width=1, out_channels=pcout, groups=pc // u.shape[1],
                    kernel_h=1, kernel_w=1, stride_h=1, stride_w=1, pad_h=0, pad_w=0, dil_h=1, dil_w=1,
                    out_h=tiles, out_w=1)


def gemm(v, u, m_dtype, v_lo=None, u_lo=None):
    """M = the P GEMMs of V and U, a (1, P C_out, T, 1) channels_last tensor of m_dtype. v_lo, u_lo:
    the fp16 low halves for three fp16 products ("3xfp16", batched kernel only)."""
    gspec = gemm_spec(v, u)
    if v_lo is None and not winograd_gemm.prefer(gspec.height, u.shape[0] // gspec.groups, gspec.groups,
                                                 runtime.sm_count(v.device)):
        return direct.conv(v, u, None, gspec, None, "igemm", out_dtype=m_dtype)
    m = launch._empty((1, u.shape[0], gspec.height, 1), m_dtype, v.device, torch.channels_last)
    if v_lo is not None:
        return winograd_gemm.gemm(v, u, u_lo, m, "3xfp16", runtime.interpreting(), v_lo=v_lo)
    prec = precision("igemm", v.dtype)
    u_hi, u_lo = packed_weight(u, k_major=True, split=True) if prec == "3xtf32" else (u, u)
    return winograd_gemm.gemm(v, u_hi, u_lo, m, prec, runtime.interpreting())


def run_steps(name, tile, input_kernel, output_kernel, blocks, u_of, hint_of, x, weight, bias, spec,
              activation_code, pool_code, y, halves=False, tf32_fp16=False):
    """Input transform, the (tile + 2)**2 GEMMs (gemm above), output transform into y: the launches
    of F(tile x tile, 3x3). u_of(weight, dtype, tf32, scaled, halves) gives U; hint_of(weight) the
    one-element tensor where the layer keeps its last largest finite |x| (scaled V only). halves:
    V and U as scaled fp16 pairs for 3xfp16 GEMMs, M in fp32; tf32_fp16: V and U as scaled fp16 for
    TF32 GEMMs, M in fp16 under a pool (module docstring)."""
    # The CPU interpreter costs ~9 ms per program whatever its size: big blocks there.
    block_t, block_c, warps = (128, 64, 1) if runtime.interpreting() else blocks
    why = supports(spec, tile)
    if why is not None:
        raise ValueError(f"algo={name!r} cannot run this call: {why} (use algo='igemm')")
    th, tw = triton.cdiv(spec.out_h, tile), triton.cdiv(spec.out_w, tile)
    t = spec.batch * th * tw
    c, cout, pos = spec.in_channels, spec.out_channels, (tile + 2) ** 2
    # V as a channels_last (1, pos C, T, 1) image: tile rows, pos groups of C channels contiguous.
    tf32_on = x.dtype == torch.float32 and torch.backends.cudnn.allow_tf32
    scaled = (x.dtype == torch.bfloat16 and tile == 4) or halves or tf32_fp16
    half = x.dtype == torch.float16 or (x.dtype == torch.bfloat16 and tile == 2)
    v = torch.empty((2 if halves else 1, t, 1, pos * c),
                    dtype=torch.float16 if scaled else (x.dtype if half else torch.float32),
                    device=x.device).permute(0, 3, 1, 2)
    v, v_lo = (v[:1], v[1:]) if halves else (v, v)
    tf32 = tf32_on and not scaled  # fp32 V and U rounded to TF32 here, not truncated by the tensor core
    m16 = v.dtype == torch.float16 and not halves and (pool_code != 0 or not tf32_fp16)
    m_dtype = torch.float16 if m16 else torch.float32
    if scaled:
        # this call's largest finite |x|, the first pass's scale of V and its inverse (the largest of
        # those its programs used), the scale V has in the end
        st = torch.zeros(4, dtype=torch.float32, device=x.device)
        hint = hint_of(weight)
        # |V| <= 32.35 max|x| (B^T's largest row sum, 5.69, squared) < 2**(LOG2_V + 7) after scaling,
        # |U| < 1: for fp16 M, |M| < C 2**(LOG2_V + 7) <= 2**15 with LOG2_V = 8 - ceil(log2 C); for
        # fp32 M (halves, TF32) |V| < 2**16 only: LOG2_V = 9
        log2_v = 9 if m_dtype == torch.float32 else 8 - (c - 1).bit_length()
    else:
        st = hint = x
        log2_v = 0
    grid = (triton.cdiv(t, block_t), triton.cdiv(c, block_c))
    args = (x, v, c, spec.height, spec.width, th, tw, t, *x.stride(), spec.pad_h, spec.pad_w)
    kw = dict(ROUND=tf32, st_ptr=st, hint_ptr=hint, SCALED=scaled, LOG2_V=log2_v, vlo_ptr=v_lo, SPLIT=halves,
              BLOCK_T=block_t, BLOCK_C=block_c, num_warps=warps)
    input_kernel[grid](*args, CHECK=False, **kw)
    if scaled:  # keeps V, or writes it again with the measured scale: a few programs walk the blocks
        input_kernel[(min(grid[0] * grid[1], CHECK_PROGRAMS_PER_SM * runtime.sm_count(x.device)),)](
            *args, CHECK=True, **kw)
    u = u_of(weight, dtype=v.dtype, tf32=tf32, scaled=scaled, halves=halves)
    u, w_scale = u if scaled else (u, y)
    if halves:
        (u, u_lo) = u
        m = gemm(v, u, m_dtype, v_lo=v_lo, u_lo=u_lo)
    else:
        m = gemm(v, u, m_dtype)
    assert m.is_contiguous(memory_format=torch.channels_last) and m.shape == (1, pos * cout, t, 1)
    b = bias if bias is not None else y
    output_kernel[(triton.cdiv(t, block_t), triton.cdiv(cout, block_c))](
        m, b, y, cout, spec.out_h, spec.out_w, th, tw, t, *y.stride(), bias.stride(0) if bias is not None else 0,
        HAS_BIAS=bias is not None, ACTIVATION=activation_code, POOL=pool_code, st_ptr=st,
        ws_ptr=w_scale, SCALED=scaled, LOG2_V=log2_v, BLOCK_T=block_t, BLOCK_C=block_c, num_warps=warps)
    return y
