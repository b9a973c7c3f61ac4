"""algo="winograd6": F(6x6, 3x3) on odd maps, its fp32-only steps, its weight and its limits (the checks
it shares with "winograd" and "winograd4", the float64 comparisons included, are in test_winograd.py)."""
import dataclasses

import pytest
import torch

import zeroskip
from helpers import TOL, reference, rel_err, sparse


@pytest.fixture
def poisoned(monkeypatch):
    """Outputs (and the M of the GEMMs) start as NaN, so an element left unwritten shows."""
    from zeroskip.kernels import launch
    real = launch._empty
    monkeypatch.setattr(launch, "_empty", lambda *a: real(*a).fill_(float("nan")))


@pytest.mark.parametrize("hw, padding, layout", [((13, 11), 1, "nchw"), ((12, 14), 1, "nchw"), ((7, 5), 0, "nchw"),
                                                 ((14, 14), 1, "channels_last"), ((2, 8), 1, "nchw")], ids=str)
@pytest.mark.parametrize("pool", [None, "max", "avg"])
def test_odd_maps_equal_reference(hw, padding, layout, pool, device, poisoned):
    """Every output of a map whose size is not a multiple of 6 is written, and right: partial edge
    tiles (12x14 takes the paired NCHW row stores, 13x11 the single ones), and pooled pixels only
    where the whole 2x2 window lies in the conv output."""
    x = sparse((2, 3, *hw), 0.6, device=device)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    wt = torch.randn(5, 3, 3, 3, device=device)
    b = torch.randn(5, device=device)
    if pool is None:
        out = zeroskip.conv2d(x, wt, b, padding=padding, algo="winograd6")
    else:
        out = zeroskip.conv2d_pool(x, wt, b, padding=padding, activation="relu", pool=pool, algo="winograd6")
    ref = reference(x, wt, b, padding=padding, activation="relu" if pool else None, pool=pool)
    assert out.shape == ref.shape
    assert rel_err(out, ref) <= TOL[torch.float32]


def test_transformed_weight_has_64_positions(device):
    from zeroskip.kernels import winograd6
    wt = torch.randn(6, 5, 3, 3, device=device)
    u = winograd6.transformed_weight(wt)
    assert u.shape == (64 * 6, 5, 1, 1) and winograd6.transformed_weight(wt) is u
    # G's first row is (1 / prod(0 - q), 0, 0) over the points +-1/2, +-1, +-2: (-1, 0, 0); its last (0, 0, 1)
    assert winograd6._G[0] == (-1.0, -0.0, -0.0)
    assert torch.equal(u[:6, :, 0, 0], wt[:, :, 0, 0]) and torch.equal(u[63 * 6:, :, 0, 0], wt[:, :, 2, 2])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_keep_fp32_steps(dtype, device, monkeypatch):
    """16-bit inputs are transformed and multiplied in fp32 (16-bit V would lose too much, see
    kernels/winograd6.py), so the result is as close as the output dtype allows."""
    from zeroskip.kernels import launch
    seen = {}
    real = launch.conv

    def spy(x, weight, *args, **kwargs):
        if kwargs.get("out_dtype") is not None:  # the GEMMs' launch
            seen["v"], seen["m"] = x.dtype, kwargs["out_dtype"]
        return real(x, weight, *args, **kwargs)
    monkeypatch.setattr(launch, "conv", spy)
    x = sparse((1, 16, 9, 9), 0.6, dtype, device)
    wt = (torch.randn(8, 16, 3, 3, device=device) * 0.2).to(dtype)
    out = zeroskip.conv2d(x, wt, None, padding=1, algo="winograd6")
    assert out.dtype == dtype and seen == {"v": torch.float32, "m": torch.float32}
    assert rel_err(out, reference(x, wt, None, padding=1)) <= TOL[dtype]


def test_int32_guard_counts_64_positions():
    from zeroskip.geometry import ConvSpec
    from zeroskip.kernels import winograd6
    # 64 x 38 x 38 tiles x 64 positions x 512 channels = 3.0e9 elements of V: past the GEMM's int32 indexing
    spec = ConvSpec(batch=64, in_channels=512, height=224, width=224, out_channels=512, groups=1,
                    kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1, dil_h=1, dil_w=1,
                    out_h=224, out_w=224)
    assert winograd6.supports(spec) == "92416 tiles x 64 x 512 channels reach 2**31 elements"
    assert winograd6.supports(dataclasses.replace(spec, batch=8)) is None
