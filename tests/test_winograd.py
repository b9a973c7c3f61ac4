"""algo="winograd": F(2x2, 3x3) against the float64 reference, its limits, and its weight cache;
the checks F(2x2) and F(4x4) share run for both."""
import pytest
import torch

import zeroskip
from helpers import TOL, TOL_TF32, reference, rel_err, sparse

# (N, C, H, W, C_out, padding, bias): outputs 7x9, 4x4, 7x6 and 8x8, so the last tile row and column
# are partial for F(2x2) and F(4x4) alike
SHAPES = [(2, 5, 7, 9, 6, 1, True), (1, 3, 6, 6, 4, 0, False), (1, 8, 5, 4, 3, 2, True), (1, 40, 8, 8, 24, 1, True)]
WINOGRADS = ["winograd", "winograd4"]
# Every test twice: the GEMMs on kernels/winograd_gemm.py and on the conv kernel (conftest.gemm_route).
pytestmark = pytest.mark.usefixtures("gemm_route")
# With TF32 on, V and U rounded to TF32 (test_winograd4.py), on test_tf32_follows_cudnn_switch's shape
# over 10 seeds (CPU interpreter, whose GEMM is exact on the rounded operands, as the GPU's is):
# F(2x2) mean 4.6e-4, F(4x4) 1.3e-3 (max 1.4e-3), against 7.8e-4 direct on a GPU: both within
# helpers.TOL_TF32.


@pytest.mark.parametrize("algo", WINOGRADS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_conv_fp32(shape, activation, layout, algo, device):
    n, c, h, w, co, p, has_b = shape
    x = sparse((n, c, h, w), torch.rand(()).item(), device=device) * 4
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    wt = torch.randn(co, c, 3, 3, device=device)
    b = torch.randn(co, device=device) if has_b else None
    out = zeroskip.conv2d(x, wt, b, padding=p, activation=activation, algo=algo)
    ref = reference(x, wt, b, padding=p, activation=activation)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
    assert rel_err(out, ref) <= TOL[torch.float32]


@pytest.mark.parametrize("algo", WINOGRADS)
@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fused_pool(shape, pool, algo, device):
    n, c, h, w, co, p, has_b = shape
    x = sparse((n, c, h, w), 0.5, device=device)
    wt = torch.randn(co, c, 3, 3, device=device)
    b = torch.randn(co, device=device) if has_b else None
    out = zeroskip.conv2d_pool(x, wt, b, padding=p, activation="relu", pool=pool, algo=algo)
    ref = reference(x, wt, b, padding=p, activation="relu", pool=pool)
    assert out.shape == ref.shape
    assert rel_err(out, ref) <= TOL[torch.float32]


# Checks the two share (winograd_steps.run_steps and supports), with each one's TF32 tolerance.
BOTH = [("winograd", TOL_TF32), ("winograd4", TOL_TF32)]


@pytest.mark.parametrize("algo", [a for a, _ in BOTH])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(dtype, algo, device):
    x = sparse((1, 16, 9, 9), 0.6, dtype, device)
    wt = (torch.randn(8, 16, 3, 3, device=device) * 0.2).to(dtype)
    out = zeroskip.conv2d(x, wt, None, padding=1, algo=algo)
    assert out.dtype == dtype
    assert rel_err(out, reference(x, wt, None, padding=1)) <= TOL[dtype]


@pytest.mark.parametrize("algo, tol", BOTH)
def test_tf32_follows_cudnn_switch(algo, tol, device):
    torch.backends.cudnn.allow_tf32 = True
    x = sparse((1, 32, 8, 8), 0.7, device=device)
    wt = torch.randn(16, 32, 3, 3, device=device)
    out = zeroskip.conv2d(x, wt, None, padding=1, algo=algo)
    assert rel_err(out, reference(x, wt, None, padding=1)) <= tol


@pytest.mark.parametrize("algo", [a for a, _ in BOTH])
@pytest.mark.parametrize("kwargs, pool, word", [
    (dict(stride=2), None, "stride"),
    (dict(dilation=2), None, "dilation"),
    (dict(groups=2), None, "groups=2"),
    (dict(), dict(pool_size=3, pool_stride=2), r"pool_size \(3, 3\)"),
    (dict(), dict(pool_size=2, pool_stride=1), r"stride \(1, 1\)"),
])
def test_unsupported_geometry_names_the_argument(kwargs, pool, word, algo, device):
    x = sparse((1, 4, 8, 8), 0.5, device=device)
    wt = torch.randn(4, 4 // kwargs.get("groups", 1), 3, 3, device=device)
    with pytest.raises(ValueError, match=f"algo='{algo}' cannot run this call: .*{word}"):
        if pool:
            zeroskip.conv2d_pool(x, wt, None, padding=1, algo=algo, **pool)
        else:
            zeroskip.conv2d(x, wt, None, padding=1, algo=algo, **kwargs)
    with pytest.raises(ValueError, match="3x3 kernel"):
        zeroskip.conv2d(x, torch.randn(4, 4, 5, 5, device=device), None, padding=2, algo=algo)


def test_inf_in_the_input_stays_local(device):
    """Documented: the transforms subtract neighbouring inputs, so one inf makes every output of
    the 2x2 tiles whose 4x4 patch holds it NaN or inf (direct conv: its 3x3 neighbourhood)."""
    x = sparse((1, 4, 12, 12), 1.0, device=device)
    x[0, 1, 5, 6] = float("inf")
    out = zeroskip.conv2d(x, torch.randn(4, 4, 3, 3, device=device), None, padding=1, algo="winograd")
    bad = ~torch.isfinite(out[0, 0])
    assert bad[4:7, 5:8].all()                     # the direct conv's neighbourhood is non-finite
    rows, cols = bad.nonzero().unbind(1)
    assert rows.min() >= 4 and rows.max() <= 7 and cols.min() >= 4 and cols.max() <= 7  # its tiles only
    assert torch.isfinite(out[0, 0, :2]).all() and torch.isfinite(out[0, 0, 8:]).all()


def test_transformed_weight_is_cached_and_refreshed(device):
    from zeroskip.kernels import winograd
    wt = torch.randn(6, 5, 3, 3, device=device)
    u = winograd.transformed_weight(wt)
    assert u.shape == (16 * 6, 5, 1, 1) and winograd.transformed_weight(wt) is u
    # U[xi = 0] = g[0, 0] (G's first row and column pick the top-left tap); U[xi = 15] = g[2, 2]
    assert torch.equal(u[:6, :, 0, 0], wt[:, :, 0, 0]) and torch.equal(u[15 * 6:, :, 0, 0], wt[:, :, 2, 2])
    x = sparse((1, 5, 6, 6), 0.8, device=device)
    zeroskip.conv2d(x, wt, None, padding=1, algo="winograd")
    with torch.no_grad():
        wt.mul_(2)  # in place: bumps the version counter
    assert winograd.transformed_weight(wt) is not u
    out = zeroskip.conv2d(x, wt, None, padding=1, algo="winograd")
    assert rel_err(out, reference(x, wt, None, padding=1)) <= TOL[torch.float32]
    wt.data.mul_(-1)  # through .data: not seen until the caches are cleared
    from zeroskip.kernels import launch
    launch.clear_packed_weights()
    out = zeroskip.conv2d(x, wt, None, padding=1, algo="winograd")
    assert rel_err(out, reference(x, wt, None, padding=1)) <= TOL[torch.float32]


@pytest.mark.parametrize("positions", [16, 36])
def test_gemm_spec_is_what_check_conv_gives(positions):
    from zeroskip.geometry import check_conv
    from zeroskip.kernels import winograd_steps
    v = torch.empty((1, 7, 1, positions * 5)).permute(0, 3, 1, 2)
    u = torch.empty(positions * 6, 5, 1, 1)
    spec = winograd_steps.gemm_spec(v, u)
    assert spec == check_conv(v, u, None, 1, 0, 1, positions) and spec.groups == positions


@pytest.mark.parametrize("algo, big", [("winograd", 2e4), ("winograd4", 2e4)])
def test_fp16_transform_overflows_where_direct_stays_finite(algo, big, device):
    """README: with fp16 input V is rounded to fp16. On a +-big checkerboard B^T d B reaches 4 big
    under F(2x2) and 4.8 big under F(4x4) (points 0, +-3/4, +-3/2), past fp16's 65504, where a
    direct conv of the same small weight stays finite."""
    i = torch.arange(8, device=device)
    board = (-1.0) ** (i[:, None] + i[None, :])
    x = (big * board).expand(1, 8, 8, 8).to(torch.float16).contiguous()
    wt = torch.full((4, 8, 3, 3), 1e-4, device=device, dtype=torch.float16)
    assert torch.isfinite(zeroskip.conv2d(x, wt, None, padding=1, algo="igemm")).all()
    assert not torch.isfinite(zeroskip.conv2d(x, wt, None, padding=1, algo=algo)).all()


