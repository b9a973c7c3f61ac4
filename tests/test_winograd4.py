"""algo="winograd4": F(4x4, 3x3) on odd maps, its limits and its weight cache (the checks it shares
with "winograd", the float64 comparisons included, are in test_winograd.py)."""
import dataclasses

import pytest
import torch

import zeroskip
from helpers import TOL, TOL_TF32, reference, rel_err, sparse
# Every test twice: the GEMMs on kernels/winograd_gemm.py and on the conv kernel (conftest.gemm_route).
pytestmark = pytest.mark.usefixtures("gemm_route")


@pytest.mark.parametrize("hw, padding", [((7, 9), 1), ((5, 4), 0), ((13, 13), 1), ((2, 6), 1)], ids=str)
@pytest.mark.parametrize("pool", [None, "max", "avg"])
def test_odd_maps_equal_reference(hw, padding, pool, device, poisoned):
    """Every output of a map whose size is not a multiple of 4 is written, and right: partial
    edge tiles, and pooled pixels only where the whole 2x2 window lies in the conv output."""
    x = sparse((2, 3, *hw), 0.6, device=device).to(memory_format=torch.channels_last)
    wt = torch.randn(5, 3, 3, 3, device=device)
    b = torch.randn(5, device=device)
    if pool is None:
        out = zeroskip.conv2d(x, wt, b, padding=padding, algo="winograd4")
    else:
        out = zeroskip.conv2d_pool(x, wt, b, padding=padding, activation="relu", pool=pool, algo="winograd4")
    ref = reference(x, wt, b, padding=padding, activation="relu" if pool else None, pool=pool)
    assert out.shape == ref.shape
    assert rel_err(out, ref) <= TOL[torch.float32]


def test_int32_guard_counts_36_positions():
    from zeroskip.geometry import ConvSpec
    from zeroskip.kernels import winograd4
    # 64 x 56 x 56 tiles x 36 x 512 channels = 3.7e9 elements of V: past the GEMM's int32 indexing
    spec = ConvSpec(batch=64, in_channels=512, height=224, width=224, out_channels=512, groups=1,
                    kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1, dil_h=1, dil_w=1,
                    out_h=224, out_w=224)
    assert winograd4.supports(spec) == "200704 tiles x 36 x 512 channels reach 2**31 elements"
    assert winograd4.supports(dataclasses.replace(spec, batch=8)) is None


def _gemm_dtypes_on_batched_kernel(monkeypatch) -> dict:
    """Sends the Winograd GEMMs to kernels/winograd_gemm.py; the returned dict fills with the dtypes
    of V, U and M they get."""
    from zeroskip.kernels import winograd_gemm
    seen = {}
    real = winograd_gemm.gemm

    def spy(v, u, u_lo, m, *args, **kw):
        seen["v"], seen["u"], seen["m"] = v.dtype, u.dtype, m.dtype
        return real(v, u, u_lo, m, *args, **kw)
    monkeypatch.setattr(winograd_gemm, "gemm", spy)
    monkeypatch.setattr(winograd_gemm, "prefer", lambda *args: True)
    return seen


@pytest.mark.parametrize("x_scale, w_scale", [(1.0, 1.0), (1e5, 1.0), (1.0, 1e-6), (1e-30, 1e30)], ids=str)
def test_bf16_fp16_gemms_hold_any_magnitude(x_scale, w_scale, device, monkeypatch):
    """bf16 input: V, U and M in fp16, scaled by powers of 2 (the input's range, U per output
    channel), so inputs far past fp16's range (1e5 * 32 in V) or weights below its normal range
    (1e-6) keep their precision: the error stays at the direct bf16 kernel's level, whose output
    rounding dominates (64 -> 32 channels: 3.3e-3 direct, 3.5e-3 here, interpreter)."""
    seen = _gemm_dtypes_on_batched_kernel(monkeypatch)
    x = (sparse((2, 64, 12, 12), 0.5) * x_scale).to(torch.bfloat16).to(device=device, memory_format=torch.channels_last)
    wt = (torch.randn(32, 64, 3, 3) * 0.06 * w_scale).to(torch.bfloat16).to(device)
    b = (torch.randn(32) * 0.1 * x_scale * w_scale).to(torch.bfloat16).to(device)
    ref = reference(x, wt, b, padding=1, activation="relu", pool="max")
    out = zeroskip.conv2d_pool(x, wt, b, padding=1, activation="relu", pool="max", algo="winograd4")
    direct = zeroskip.conv2d_pool(x, wt, b, padding=1, activation="relu", pool="max", algo="igemm")
    assert seen == {"v": torch.float16, "u": torch.float16, "m": torch.float16}
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert rel_err(out, ref) <= max(1.5 * rel_err(direct, ref), 2e-3)


@pytest.mark.parametrize("x_scale, w_scale", [(1.0, 1.0), (1e5, 1.0), (1e-20, 1e-6), (1e-30, 1e30)], ids=str)
def test_fp32_gemms_on_fp16_halves_are_fp32_accurate(x_scale, w_scale, device, gemm_route, monkeypatch):
    """fp32 with TF32 off: on the batched GEMM kernel V and U go as scaled fp16 halves (hi + lo, 22
    bits) into three fp16 products; on the grouped conv as fp32 into 3xTF32. Both fp32-accurate
    at magnitudes far outside fp16's range (1e5 * 32 in V; 1e-26 in U)."""
    from zeroskip.kernels import winograd4, winograd_gemm
    # halves wherever the GEMMs take the batched kernel (gemm_route)
    monkeypatch.setattr(winograd4, "prefer_halves", lambda spec, sms: winograd_gemm.prefer())
    seen = {}
    real = winograd_gemm.gemm

    def spy(v, u, u_lo, m, precision, *args, **kw):
        seen.update(precision=precision, v=v.dtype, u=u.dtype, u_lo=u_lo.dtype, m=m.dtype)
        return real(v, u, u_lo, m, precision, *args, **kw)
    monkeypatch.setattr(winograd_gemm, "gemm", spy)
    x = sparse((2, 64, 12, 12), 0.5, device=device) * x_scale
    wt = torch.randn(32, 64, 3, 3, device=device) * 0.06 * w_scale
    b = torch.randn(32, device=device) * 0.1 * x_scale * w_scale
    out = zeroskip.conv2d_pool(x, wt, b, padding=1, activation="relu", pool="max", algo="winograd4")
    plain = zeroskip.conv2d(x, wt, b, padding=1, algo="winograd4")
    if gemm_route == "batched":
        assert seen == dict(precision="3xfp16", v=torch.float16, u=torch.float16, u_lo=torch.float16,
                            m=torch.float32)
    else:
        assert seen == {}
    assert rel_err(out, reference(x, wt, b, padding=1, activation="relu", pool="max")) <= 3e-6
    assert rel_err(plain, reference(x, wt, b, padding=1)) <= 3e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_values_beside_an_inf_keep_their_scale(device, dtype, monkeypatch):
    """V's fp16 scale comes from the input's largest finite magnitude: an inf elsewhere in the input
    leaves values far past fp16's range (5e4 here, 32x that in V) right in every tile it does not reach."""
    from zeroskip.kernels import winograd4, winograd_gemm
    # halves wherever the GEMMs take the batched kernel (gemm_route)
    monkeypatch.setattr(winograd4, "prefer_halves", lambda spec, sms: winograd_gemm.prefer())
    x = sparse((1, 8, 12, 12), 0.7, dtype, device=device) * 5e4
    wt = torch.randn(8, 8, 3, 3, device=device).to(dtype) * 0.1
    clean = x.clone()
    x[0, 2, 11, 11] = float("inf")  # reaches only the last tile row and column: output rows, columns 8..11
    out = zeroskip.conv2d(x, wt, None, padding=1, algo="winograd4")
    ref = reference(clean, wt, None, padding=1)
    assert not torch.isfinite(out[..., 8:, 8:]).all()
    assert rel_err(out[..., :8, :], ref[..., :8, :]) <= (3e-6 if dtype == torch.float32 else TOL[dtype])
    assert rel_err(out[..., :, :8], ref[..., :, :8]) <= (3e-6 if dtype == torch.float32 else TOL[dtype])


@pytest.mark.parametrize("x_scale, w_scale", [(1.0, 1.0), (1e5, 1.0), (1e-20, 1e-6), (1e-30, 1e30)], ids=str)
def test_tf32_gemms_on_scaled_fp16_hold_any_magnitude(x_scale, w_scale, device, monkeypatch):
    """TF32 on, conv + pool: V, U and M in fp16 scaled by powers of 2, at TF32's accuracy whatever
    the magnitudes (fp16 alone would overflow at 1e5 * 32 in V and flush 1e-26 in U)."""
    from zeroskip.kernels import winograd4
    seen = _gemm_dtypes_on_batched_kernel(monkeypatch)
    monkeypatch.setattr(winograd4, "prefer_fp16_operands", lambda spec: True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    x = sparse((2, 64, 12, 12), 0.5, device=device) * x_scale
    wt = torch.randn(32, 64, 3, 3, device=device) * 0.06 * w_scale
    b = torch.randn(32, device=device) * 0.1 * x_scale * w_scale
    out = zeroskip.conv2d_pool(x, wt, b, padding=1, activation="relu", pool="max", algo="winograd4")
    assert seen == {"v": torch.float16, "u": torch.float16, "m": torch.float16}
    assert torch.isfinite(out).all()
    assert rel_err(out, reference(x, wt, b, padding=1, activation="relu", pool="max")) <= TOL_TF32
    plain = zeroskip.conv2d(x, wt, b, padding=1, algo="winograd4")  # M stays fp32 without a pool
    assert seen == {"v": torch.float16, "u": torch.float16, "m": torch.float32}
    assert rel_err(plain, reference(x, wt, b, padding=1)) <= TOL_TF32


@pytest.mark.parametrize("dtype, tf32", [(torch.float32, False), (torch.bfloat16, False), (torch.float32, True)])
def test_inf_in_the_input_stays_in_its_tiles(device, dtype, tf32, monkeypatch):
    """Documented: one inf makes outputs of the 4x4 tiles whose 6x6 patch holds it NaN or inf. Input
    row 4 (padding 1) is patch row 5 of tile row 0, which reaches only that tile's last output row
    (B^T's last column has one non-zero), and patch row 1 of tile row 1, which reaches all four:
    output rows 3..7. Input column 6 is patch column 3 of tile column 1 only: output columns 4..7.
    bf16 too, and fp32 on fp16 halves (the batched route): their fp16 V is scaled by the largest
    finite magnitude, and inf stays inf."""
    from zeroskip.kernels import winograd4, winograd_gemm
    # halves wherever the GEMMs take the batched kernel (gemm_route)
    monkeypatch.setattr(winograd4, "prefer_halves", lambda spec, sms: winograd_gemm.prefer())
    monkeypatch.setattr(winograd4, "prefer_fp16_operands", lambda spec: True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    x = sparse((1, 4, 12, 12), 1.0, dtype, device=device)
    x[0, 1, 4, 6] = float("inf")
    wt = torch.randn(4, 4, 3, 3, device=device).to(dtype)
    out = zeroskip.conv2d(x, wt, None, padding=1, algo="winograd4")
    bad = ~torch.isfinite(out[0]).cpu()
    expected = torch.zeros(12, 12, dtype=torch.bool)
    expected[3:8, 4:8] = True
    assert torch.equal(bad, expected.expand(4, 12, 12))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_v_scale_checked_against_each_calls_input(dtype, device, gemm_route, monkeypatch):
    """V's fp16 scale starts from the layer's previous largest finite |x| and is checked against this
    call's (winograd.HEADROOM): calls whose magnitudes jump by 1e6 either way, or stay, are as
    accurate as a first call, and leave this call's largest finite |x|, read past an inf and a NaN,
    as the next hint. (fp32 takes scaled V on the batched GEMM route only: halves.)"""
    from zeroskip.kernels import winograd, winograd4, winograd_gemm
    monkeypatch.setattr(winograd4, "prefer_halves", lambda spec, sms: winograd_gemm.prefer())
    wt = (torch.randn(16, 32, 3, 3) * 0.08).to(dtype).to(device)
    b = (torch.randn(16) * 0.1).to(dtype).to(device)
    tol = 3e-6 if dtype == torch.float32 else 2 * TOL[dtype]
    for x_scale in (1.0, 1e6, 1e6, 1.0, 1e-6, 1e-6 * 3):
        x = (sparse((1, 32, 8, 8), 0.5) * x_scale).to(dtype).to(device)
        x[0, 3, 0, 0] = float("inf")
        x[0, 4, 1, 1] = float("nan")  # both in the first tile's patch only: pooled rows 0..1
        clean = x.clone()
        clean[0, 3, 0, 0] = clean[0, 4, 1, 1] = 0.0
        out = zeroskip.conv2d_pool(x, wt, b, padding=1, activation="relu", pool="max", algo="winograd4")
        ref = reference(clean, wt, b, padding=1, activation="relu", pool="max")
        assert rel_err(out[..., 2:, :], ref[..., 2:, :]) <= tol
        if dtype == torch.bfloat16 or gemm_route == "batched":
            assert winograd.amax_hint(wt).item() == clean.float().abs().max().item()


def test_stale_hint_from_a_huge_input_costs_no_accuracy(device):
    """A hint 1e30 past this call's input (so its first scale would leave V in fp16's subnormals)
    is caught and V written again: the same output as with no hint."""
    from zeroskip.kernels import winograd
    wt = (torch.randn(16, 32, 3, 3) * 0.08).to(torch.bfloat16).to(device)
    x = sparse((1, 32, 8, 8), 0.5, torch.bfloat16, device=device)
    fresh = zeroskip.conv2d(x, wt, None, padding=1, algo="winograd4")
    winograd.amax_hint(wt).fill_(1e30)
    stale = zeroskip.conv2d(x, wt, None, padding=1, algo="winograd4")
    assert torch.equal(stale, fresh)
    assert rel_err(stale, reference(x, wt, None, padding=1)) <= 2 * TOL[torch.bfloat16]


@pytest.mark.parametrize("torn", [False, True], ids=["one-hint", "two-hints"])
def test_first_pass_programs_that_read_different_hints_are_caught(torn, device, monkeypatch):
    """Another stream's call may rewrite the shared hint while the first pass runs, so that its
    programs scale V differently. Simulated by raising the recorded inverse scale after the first
    pass: the second pass must then write V again with the measured scale (4x the hint's, whose
    first scale has 2 binades of headroom) instead of keeping it."""
    from zeroskip.kernels import winograd4
    real = winograd4._input_transform_kernel
    seen = {}

    class Spy:
        def __getitem__(self, grid):
            def launch(*args, **kw):
                real[grid](*args, **kw)
                if kw["SCALED"] and not kw["CHECK"]:
                    seen["st"] = kw["st_ptr"]
                    if torn:
                        kw["st_ptr"][2:3].mul_(2.0)
            return launch
    monkeypatch.setattr(winograd4, "_input_transform_kernel", Spy())
    wt = (torch.randn(16, 32, 3, 3) * 0.08).to(torch.bfloat16).to(device)
    x = sparse((1, 32, 8, 8), 0.5, torch.bfloat16, device=device)
    zeroskip.conv2d(x, wt, None, padding=1, algo="winograd4")  # sets the hint
    out = zeroskip.conv2d(x, wt, None, padding=1, algo="winograd4")
    st = seen["st"].cpu()
    assert st[3].item() == (4.0 if torn else 1.0) * st[1].item()
    assert rel_err(out, reference(x, wt, None, padding=1)) <= 2 * TOL[torch.bfloat16]


def test_transformed_weight_is_cached_and_refreshed(device):
    from zeroskip.kernels import launch, winograd, winograd4
    wt = torch.randn(6, 5, 3, 3, device=device)
    u = winograd4.transformed_weight(wt)
    assert u.shape == (36 * 6, 5, 1, 1) and winograd4.transformed_weight(wt) is u
    # U[xi = 0] = g[0, 0] (64/81)**2 (G's first row is (1 / prod(0 - q), 0, 0) = (64/81, 0, 0) for the
    # points 0, +-3/4, +-3/2), rounded once from float64; U[xi = 35] = g[2, 2] (last row (0, 0, 1))
    assert winograd4._G[0] == (64 / 81, 0.0, 0.0)
    assert torch.equal(u[:6, :, 0, 0], (wt[:, :, 0, 0].double() * (64 / 81) ** 2).float())
    assert torch.equal(u[35 * 6:, :, 0, 0], wt[:, :, 2, 2])
    # F(2x2)'s U of the same weight is cached beside it, not in its place
    assert winograd.transformed_weight(wt).shape == (16 * 6, 5, 1, 1) and winograd4.transformed_weight(wt) is u
    x = sparse((1, 5, 6, 6), 0.8, device=device)
    zeroskip.conv2d(x, wt, None, padding=1, algo="winograd4")
    with torch.no_grad():
        wt.mul_(2)  # in place: bumps the version counter
    assert winograd4.transformed_weight(wt) is not u
    out = zeroskip.conv2d(x, wt, None, padding=1, algo="winograd4")
    assert rel_err(out, reference(x, wt, None, padding=1)) <= TOL[torch.float32]
    wt.data.mul_(-1)  # through .data: not seen until the caches are cleared
    stale = winograd4.transformed_weight(wt)
    launch.clear_packed_weights()
    assert winograd4.transformed_weight(wt) is not stale
    out = zeroskip.conv2d(x, wt, None, padding=1, algo="winograd4")
    assert rel_err(out, reference(x, wt, None, padding=1)) <= TOL[torch.float32]


@pytest.mark.parametrize("algo", ["winograd", "winograd4"])
@pytest.mark.parametrize("hw", [(8, 12), (6, 10), (5, 7)], ids=str)
@pytest.mark.parametrize("pool", [None, "max"])
def test_nchw_rows_stored_whole(algo, hw, pool, device, poisoned):
    """NCHW outputs of even width go out as vector stores per tile row (8x12: 16 bytes under F(4x4),
    8 under F(2x2); 6x10: two 8-byte stores under F(4x4), the second masked at the edge); 5x7 as
    single elements. Every output is written and right either way."""
    x = sparse((2, 6, *hw), 0.5, device=device)
    wt = torch.randn(7, 6, 3, 3, device=device)
    b = torch.randn(7, device=device)
    if pool is None:
        out = zeroskip.conv2d(x, wt, b, padding=1, algo=algo)
    else:
        out = zeroskip.conv2d_pool(x, wt, b, padding=1, activation="relu", pool=pool, algo=algo)
    ref = reference(x, wt, b, padding=1, activation="relu" if pool else None, pool=pool)
    assert out.shape == ref.shape and out.is_contiguous()
    assert rel_err(out, ref) <= TOL[torch.float32]


def _gemm_operands(tile, x, wt, tf32, device, monkeypatch):
    """V, U and M's dtype as a Winograd call hands them to its GEMMs (on the grouped conv route), TF32
    on or off; F(4x4) with TF32 on its fp16 operands."""
    from zeroskip.kernels import direct, winograd4, winograd_steps
    seen = {}

    def gemm(v, u, m_dtype):
        seen["v"], seen["u"], seen["m"] = v.clone(), u.clone(), m_dtype
        return direct.conv(v, u, None, winograd_steps.gemm_spec(v, u), None, "igemm", out_dtype=m_dtype)

    monkeypatch.setattr(winograd_steps, "gemm", gemm)
    monkeypatch.setattr(winograd4, "prefer_fp16_operands", lambda spec: True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    zeroskip.conv2d(x, wt, None, padding=1, algo={2: "winograd", 4: "winograd4"}[tile])
    return seen["v"], seen["u"], seen["m"]


def test_tf32_f4_gemms_take_scaled_fp16_operands(device, monkeypatch):
    """With TF32 on, F(4x4) hands its GEMMs V and U in fp16 (TF32's 10 mantissa bits, twice its
    tensor-core rate): V times one power of 2, U times one per output channel, each element the fp32
    value rounded to nearest; M comes back in fp32 for a plain conv (fp16 under a pool: TF32's ~1e-3
    holds there, test_tf32_gemms_on_scaled_fp16_hold_any_magnitude)."""
    x = sparse((1, 16, 8, 8), 0.5, device=device) * 1e3
    wt = torch.randn(8, 16, 3, 3, device=device) * 1e-3
    v32, u32, m32 = _gemm_operands(4, x, wt, False, device, monkeypatch)
    v, u, m = _gemm_operands(4, x, wt, True, device, monkeypatch)
    assert v32.dtype == u32.dtype == m32 == m == torch.float32
    assert v.dtype == u.dtype == torch.float16
    v, u = v.float(), u.float().reshape(36, 8, 16)
    v32, u32 = v32.contiguous(), u32.reshape(36, 8, 16)
    big = v32.abs() > v32.abs().amax() * 2**-12  # away from fp16's subnormals
    s = 2.0 ** torch.log2((v[big] / v32[big]).median()).round()
    assert s < 1  # a power of 2 that brought 1e3-sized V down
    assert ((v / s - v32).abs() <= v32.abs() * 2.0**-11 + 1e-30)[big].all()
    for o in range(8):
        big = u32[:, o].abs() > u32[:, o].abs().amax() * 2**-12
        s = 2.0 ** torch.log2((u[:, o][big] / u32[:, o][big]).median()).round()
        assert s > 1  # 1e-3-sized weights scaled up
        assert ((u[:, o] / s - u32[:, o]).abs() <= u32[:, o].abs() * 2.0**-11)[big].all()


@pytest.mark.parametrize("tile", [2])
def test_tf32_gemm_operands_are_rounded_not_truncated(tile, device, monkeypatch):
    """With TF32 on, F(2x2)'s transforms hand the GEMMs V and U already rounded to the nearest TF32
    value (low 13 mantissa bits zero), where the tensor core would truncate them; with TF32 off they
    keep every fp32 bit (3xTF32 splits them itself)."""
    x = sparse((1, 16, 8, 8), 0.5, device=device)
    wt = torch.randn(8, 16, 3, 3, device=device)
    v32, u32, _ = _gemm_operands(tile, x, wt, False, device, monkeypatch)
    v, u, _ = _gemm_operands(tile, x, wt, True, device, monkeypatch)
    low = lambda t: t.contiguous().view(torch.int32) & 0x1FFF  # noqa: E731
    assert (low(v) == 0).all() and (low(u) == 0).all()
    assert (low(v32) != 0).any() and (low(u32) != 0).any()
    for r, full in ((v, v32), (u, u32)):
        # nearest: within half a TF32 ulp (2**-11 relative), and above the truncation where the
        # dropped bits were at least half of it
        assert ((r - full).abs() <= full.abs() * 2.0**-11).all()
        assert ((r.abs() > full.abs()) == (low(full) >= 0x1000)).all()


@pytest.mark.parametrize("batch, hw, want", [(1, 112, (16, 32, 8)),     # 784 tiles (VGG-19 features.7, batch 1)
                                             (4, 64, (8, 64, 8)),       # 1024 tiles: the first with 8x64
                                             (32, 14, (16, 32, 8)),     # 512 tiles (features.30, batch 32)
                                             (32, 28, (8, 64, 8))], ids=str)
def test_transform_blocks_follow_tile_count(batch, hw, want, monkeypatch):
    """Both transforms take 8x64 blocks from MANY_TILES tiles (measured faster at batch 32 on an
    H100), 16x32 below."""
    from zeroskip.geometry import ConvSpec
    from zeroskip.kernels import winograd4, winograd_steps
    seen = []
    monkeypatch.setattr(winograd_steps, "run_steps", lambda *args: seen.append(args[4]))
    spec = ConvSpec(batch=batch, in_channels=8, height=hw, width=hw, out_channels=8, groups=1, kernel_h=3,
                    kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1, dil_h=1, dil_w=1, out_h=hw, out_w=hw)
    winograd4.conv(torch.empty(batch, 8, hw, hw, device="meta"), None, None, spec, None)
    assert seen == [want]
