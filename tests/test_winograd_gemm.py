"""kernels/winograd_gemm.py: the batched Winograd GEMMs against float64, on sizes that fill no block
(rows, input and output channels), and when winograd_steps.gemm takes them."""
import pytest
import torch

from helpers import rel_err


def _operands(tiles, c, cout, positions, dtype, device):
    v = (torch.randn(1, tiles, 1, positions * c, dtype=torch.float64) * 3).to(dtype).to(device).permute(0, 3, 1, 2)
    u = (torch.randn(positions * cout, c, 1, 1, dtype=torch.float64) * 0.1).to(dtype).to(device)
    return v, u


def _expected(v, u, positions):
    """M[t, p, o] = sum_c V[t, p, c] U[p, o, c] in float64, as (1, P C_out, T, 1)."""
    tiles, c = v.shape[2], u.shape[1]
    vv = v.double().cpu().permute(0, 2, 3, 1).reshape(tiles, positions, c)
    uu = u.double().cpu().reshape(positions, -1, c)
    return torch.einsum("tpc,poc->tpo", vv, uu).reshape(1, tiles, 1, -1).permute(0, 3, 1, 2)


# 520 input channels: past RUNNING_MAX_C, the 3xTF32 chunks summed on the CUDA cores
# 128 input channels: 16-bit products on the TMA kernel (persistent_gemm.tma_fits), 40 outputs past
# which its U tiles read the next position's weights; the others on pointers
@pytest.mark.parametrize("tiles, c, cout, positions", [(130, 40, 70, 16), (7, 96, 24, 36), (200, 3, 5, 36),
                                                      (20, 520, 24, 4), (70, 128, 40, 36)], ids=str)
@pytest.mark.parametrize("dtype, m_dtype, tol", [
    (torch.float32, torch.float32, 1e-6),    # 3xTF32: fp32-accurate
    (torch.float16, torch.float32, 1e-6),    # exact products of the 16-bit operands, fp32 sums
    (torch.bfloat16, torch.float32, 1e-6),
    (torch.float16, torch.float16, 1e-3),    # M rounded to fp16
], ids=["fp32", "fp16", "bf16", "fp16-m16"])
def test_gemm_equals_float64(tiles, c, cout, positions, dtype, m_dtype, tol, device):
    from zeroskip.runtime import interpreting
    from zeroskip.kernels import launch, winograd_gemm
    v, u = _operands(tiles, c, cout, positions, dtype, device)
    prec = "3xtf32" if dtype == torch.float32 else "ieee"
    u_hi, u_lo = launch.split_weight(u) if prec == "3xtf32" else (u, u)
    m = torch.full((1, tiles, 1, positions * cout), float("nan"), dtype=m_dtype, device=device).permute(0, 3, 1, 2)
    out = winograd_gemm.gemm(v, u_hi, u_lo, m, prec, interpreting())
    assert out is m
    assert rel_err(out, _expected(v, u, positions)) <= tol


@pytest.mark.parametrize("tiles, c, cout, positions", [(130, 40, 70, 16), (7, 96, 24, 36), (20, 520, 24, 4)], ids=str)
def test_fp16_halves_gemm_equals_float64(tiles, c, cout, positions, device):
    """precision "3xfp16": V and U as fp16 pairs hi + lo (hi rounded to fp16, lo the rest), three
    fp16 products: fp32-accurate (520 channels: past RUNNING_MAX_C, per-chunk sums)."""
    from zeroskip.runtime import interpreting
    from zeroskip.kernels import winograd_gemm
    v, u = _operands(tiles, c, cout, positions, torch.float64, device)
    halves = lambda t: (t.half(), (t - t.half().double()).half())  # noqa: E731
    (v_hi, v_lo), (u_hi, u_lo) = halves(v), halves(u)
    m = torch.full((1, tiles, 1, positions * cout), float("nan"), device=device).permute(0, 3, 1, 2)
    winograd_gemm.gemm(v_hi, u_hi, u_lo, m, "3xfp16", interpreting(), v_lo=v_lo)
    assert rel_err(m, _expected(v, u, positions)) <= 1e-6
    # lo matters: hi alone is fp16-accurate only
    winograd_gemm.gemm(v_hi, u_hi, u_lo.zero_(), m, "3xfp16", interpreting(), v_lo=v_lo.zero_())
    assert rel_err(m, _expected(v, u, positions)) > 1e-5


def test_tf32_gemm_reads_ten_mantissa_bits(device):
    """precision "tf32" on TF32-valued operands is exact up to fp32 sums (on the GPU the tensor core
    reads the 10 mantissa bits the values have; the interpreter multiplies in fp32)."""
    from zeroskip.runtime import interpreting
    from zeroskip.kernels import winograd, winograd_gemm
    v, u = _operands(70, 48, 40, 16, torch.float32, device)
    v, u = winograd.tf32_nearest(v), winograd.tf32_nearest(u)
    m = torch.empty((1, 70, 1, 16 * 40), device=device).permute(0, 3, 1, 2)
    winograd_gemm.gemm(v, u, u, m, "tf32", interpreting())
    assert rel_err(m, _expected(v, u, 16)) <= 1e-6


def test_prefer_needs_two_programs_per_sm():
    from zeroskip.kernels.winograd_gemm import prefer
    assert prefer(tiles=1568, cout=512, positions=36, sms=132)      # VGG-19 features.21, batch 32
    assert prefer(tiles=196, cout=512, positions=16, sms=132)       # 28x28, batch 1, F(2x2): 4 x 8 x 16 blocks
    assert not prefer(tiles=49, cout=512, positions=16, sms=132)    # 14x14, batch 1, F(2x2): 1 x 8 x 16 = 128



# The last case: 16 tiles x 8 column blocks x 36 positions = 288 programs, under two per SM on 200 SMs
@pytest.mark.parametrize("batch, c, hw, cout, sms, want", [
    (32, 512, 28, 512, 132, True), (1, 512, 28, 512, 132, True), (32, 512, 14, 512, 132, True),
    (1, 512, 14, 512, 132, True), (32, 256, 28, 512, 132, True), (32, 256, 56, 256, 132, True),
    (1, 256, 56, 256, 132, False), (32, 128, 112, 128, 132, False), (32, 128, 56, 256, 132, False),
    (1, 512, 14, 512, 200, False)], ids=str)
def test_fp16_halves_where_measured_faster(batch, c, hw, cout, sms, want):
    """winograd4.prefer_halves: fp32 F(4x4) GEMMs on fp16 halves from 256 input channels with 512 output
    channels or 1024 tiles, and only on the batched GEMM kernel."""
    from zeroskip.geometry import ConvSpec
    from zeroskip.kernels import winograd4
    spec = ConvSpec(batch=batch, in_channels=c, height=hw, width=hw, out_channels=cout, groups=1, kernel_h=3,
                    kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1, dil_h=1, dil_w=1, out_h=hw, out_w=hw)
    assert winograd4.prefer_halves(spec, sms) is want


@pytest.mark.parametrize("batch, c, hw, want", [
    (32, 64, 224, True), (32, 128, 112, True), (32, 256, 56, True), (32, 512, 14, True),   # batch 32
    (1, 512, 28, True), (1, 512, 14, True),                                                # 512 channels
    (1, 256, 56, False), (1, 128, 112, False), (1, 64, 224, True),                         # 196, 784, 3136 tiles
    (32, 128, 28, False)], ids=str)                                                         # 1568 tiles: unmeasured
def test_tf32_fp16_gemms_where_measured_faster(batch, c, hw, want):
    """winograd4.prefer_fp16_operands: TF32 F(4x4) GEMMs on scaled fp16 V and U from 512 input channels or
    2048 tiles."""
    from zeroskip.geometry import ConvSpec
    from zeroskip.kernels import winograd4
    spec = ConvSpec(batch=batch, in_channels=c, height=hw, width=hw, out_channels=c, groups=1, kernel_h=3,
                    kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1, dil_h=1, dil_w=1, out_h=hw, out_w=hw)
    assert winograd4.prefer_fp16_operands(spec) is want


# Each tuner's products, and the error the config must stay under against float64 (TF32 reads 10
# mantissa bits of operands that have 23; the others multiply exactly and sum in fp32).
_TUNERS = {"_tuned_16": ("ieee", torch.float16, 1e-5), "_tuned_tf32": ("tf32", torch.float32, 2e-3),
           "_tuned_32": ("3xtf32", torch.float32, 1e-5), "_tuned_3x16": ("3xfp16", torch.float16, 1e-5)}


@pytest.mark.parametrize("tuner", sorted(_TUNERS))
def test_every_tile_config_at_vgg_size(tuner, device):
    """Every config an autotuner may pick, run alone twice on VGG-19 features.25's F(4x4) GEMMs at
    batch 32 (1568 tiles, 512 channels): the small shapes above run only the config a tuner picks,
    and a kernel whose tiles came out wrong now and then at this size only (TMA operand loads,
    benchmarks/winograd-gemm-tma-ab-h200.txt) passed them. GPU only: the interpreter would take hours."""
    if device == "cpu":
        pytest.skip("GPU sizes")
    import triton
    from zeroskip.kernels import launch, winograd_gemm
    prec, dtype, tol = _TUNERS[tuner]
    tiles, c, cout, positions = 1568, 512, 512, 36
    v, u = _operands(tiles, c, cout, positions, torch.float64 if prec == "3xfp16" else dtype, device)
    want = _expected(v, u, positions)
    v_lo = u_lo = None
    if prec == "3xfp16":
        (v, v_lo), (u, u_lo) = ((t.half(), (t - t.half().double()).half()) for t in (v, u))
    elif prec == "3xtf32":
        u, u_lo = launch.split_weight(u)
    kernel = getattr(winograd_gemm, tuner)
    for cfg in kernel.configs:
        for _ in range(2):
            m = torch.full((1, tiles, 1, positions * cout), float("nan"), device=device).permute(0, 3, 1, 2)
            grid = (triton.cdiv(tiles, cfg.kwargs["BLOCK_M"]), triton.cdiv(cout, cfg.kwargs["BLOCK_N"]), positions)
            kernel.fn[grid](v, v if v_lo is None else v_lo, u, u if u_lo is None else u_lo, m, tiles, c, cout,
                            positions, PRECISION=prec, UPCAST=False, RUNNING=prec in ("3xtf32", "3xfp16"),
                            **cfg.kwargs, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
            assert rel_err(m, want) <= tol, (tuner, str(cfg))


@pytest.mark.parametrize("dtype, m_dtype", [(torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16),
                                            (torch.float16, torch.float32)], ids=str)
@pytest.mark.parametrize("tuner", ["_tuned_pointer", "_tuned_tma"])
@pytest.mark.parametrize("tiles, c, cout", [(1568, 512, 512), (6272, 256, 256), (1000, 192, 40)], ids=str)
def test_every_persistent_config_at_vgg_size(tiles, c, cout, tuner, dtype, m_dtype, device):
    """persistent_gemm's kernels, every config alone, twice, on VGG-19 features.25's and .16's F(4x4)
    GEMMs at batch 32 and on one whose output channels fill no tile, against float64; M in the
    operands' dtype (under a pool) and in fp32 (TF32 on, winograd4.prefer_fp16_operands). A config that
    cannot launch is skipped, as the autotuner skips it: with an fp32 M, 128x256 tiles need 272 KB
    of shared memory (the epilogue's layout change beside the live pipeline buffers), over the
    227 KB an SM has. GPU only."""
    if device == "cpu":
        pytest.skip("GPU sizes")
    from triton.runtime.errors import OutOfResources
    from triton.tools.tensor_descriptor import TensorDescriptor
    from zeroskip.kernels import persistent_gemm
    positions = 36
    v, u = _operands(tiles, c, cout, positions, dtype, device)
    want = _expected(v, u, positions)
    kernel = getattr(persistent_gemm, tuner)
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    ran = 0
    for cfg in kernel.configs:
        k = cfg.kwargs
        ops = (v, u)
        if tuner == "_tuned_tma":
            ops = (TensorDescriptor(v, [tiles, positions * c], [positions * c, 1], [k["BLOCK_M"], k["BLOCK_K"]]),
                   TensorDescriptor(u, [positions * cout, c], [c, 1], [k["BLOCK_N"], k["BLOCK_K"]]))
        n_tiles = -(-tiles // k["BLOCK_M"]) * -(-cout // k["BLOCK_N"]) * positions
        for _ in range(2):
            m = torch.full((1, tiles, 1, positions * cout), float("nan"), dtype=m_dtype, device=device)
            m = m.permute(0, 3, 1, 2)
            try:
                kernel.fn[(min(n_tiles, sms * k["PER_SM"]),)](*ops, m, tiles, c, cout, positions, UPCAST=False,
                                                               **k, num_warps=cfg.num_warps)
            except OutOfResources:
                assert m_dtype == torch.float32 and k["BLOCK_N"] == 256, str(cfg)
                break
            assert rel_err(m, want) <= (1e-5 if m_dtype == torch.float32 else 1e-2), (tuner, str(cfg))
            ran += 1
    assert ran >= 2


@pytest.mark.parametrize("tiles, c_out, want", [(6272, 256, True), (1568, 512, True), (512, 512, True),
                                                (196, 256, False), (49, 512, False), (16, 512, False)], ids=str)
def test_persistent_gemms_where_measured_faster(tiles, c_out, want):
    """persistent_gemm.prefer on a 132-SM GPU: the batch-32 F(4x4) GEMMs of VGG-19 (features.16, .25,
    .34) ran faster persistent, the batch-1 ones on one program per tile."""
    from zeroskip.kernels import persistent_gemm
    assert persistent_gemm.prefer(tiles, c_out, 36, 132) is want
