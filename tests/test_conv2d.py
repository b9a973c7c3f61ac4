"""zeroskip.conv2d against a float64 F.conv2d -> activation reference."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import zeroskip
from helpers import TOL, TOL_TF32, reference, rel_err, sparse

KERNEL_ALGOS = ("ecr", "ecr_tc", "igemm", "im2col")

# (N, C, H, W, C_out, kernel, stride, padding, dilation, groups, bias)
GEOMETRIES = [
    (1, 3, 13, 13, 16, 3, 1, 1, 1, 1, True),
    (2, 8, 7, 9, 12, 3, 2, 0, 1, 1, False),
    (2, 6, 13, 11, 8, (3, 3), (1, 2), 1, (2, 1), 2, True),
    (1, 4, 31, 7, 5, 1, 1, 0, 1, 1, True),
    (3, 5, 9, 9, 7, (1, 3), 1, (0, 1), 1, 1, False),
    (1, 8, 12, 12, 8, 3, 1, 1, 1, 8, True),            # depthwise
    (2, 3, 23, 23, 6, 11, 4, 2, 1, 1, True),           # AlexNet-like stem
    (1, 6, 14, 14, 4, 5, 1, 2, 1, 1, True),
    (1, 4, 10, 10, 6, (2, 4), (2, 1), "same", 1, 2, True) if False else
    (1, 4, 10, 10, 6, (2, 4), 1, "same", 1, 2, True),  # asymmetric 'same' padding
    (2, 16, 8, 8, 40, 3, 1, 1, 3, 4, False),
]


def _call(geom, algo, density, dtype=torch.float32, device="cpu", activation="relu"):
    n, c, h, w, co, k, s, p, d, g, has_b = geom
    kh, kw = (k, k) if isinstance(k, int) else k
    x = sparse((n, c, h, w), density, dtype, device)
    wt = torch.randn(co, c // g, kh, kw, dtype=dtype, device=device)
    b = torch.randn(co, dtype=dtype, device=device) if has_b else None
    out = zeroskip.conv2d(x, wt, b, s, p, d, g, activation=activation, algo=algo)
    return out, reference(x, wt, b, s, p, d, g, activation)


@pytest.mark.parametrize("density", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("geom", GEOMETRIES, ids=str)
def test_ecr_fp32_densities(geom, density, device):
    out, ref = _call(geom, "ecr", density, device=device)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert rel_err(out, ref) <= TOL[torch.float32]


@pytest.mark.parametrize("algo", ["ecr_tc", "igemm", "im2col", "auto"])
@pytest.mark.parametrize("geom", GEOMETRIES, ids=str)
def test_other_algos_fp32(geom, algo, device):
    torch.backends.cudnn.allow_tf32 = False  # fp32 accuracy requested: 3xTF32 on tensor cores
    out, ref = _call(geom, algo, torch.rand(()).item(), device=device, activation=None)
    assert rel_err(out, ref) <= TOL[torch.float32]


@pytest.mark.parametrize("algo", KERNEL_ALGOS)
def test_tf32_follows_cudnn_switch(algo, device):
    torch.backends.cudnn.allow_tf32 = True
    try:
        out, ref = _call(GEOMETRIES[1], algo, 0.5, device=device)
    finally:
        torch.backends.cudnn.allow_tf32 = False
    tol = TOL[torch.float32] if algo == "ecr" else TOL_TF32  # "ecr" is exact fp32 always
    assert rel_err(out, ref) <= tol


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("algo", KERNEL_ALGOS)
@pytest.mark.parametrize("geom", GEOMETRIES[:4], ids=str)
def test_half_precisions(geom, algo, dtype, device):
    out, ref = _call(geom, algo, 0.5, dtype, device)
    assert out.dtype == dtype
    assert rel_err(out, ref) <= TOL[dtype]


@pytest.mark.parametrize("algo", KERNEL_ALGOS)
def test_channels_last_in_and_out(algo, device):
    x = sparse((2, 8, 11, 9), 0.5, device=device).to(memory_format=torch.channels_last)
    w = torch.randn(16, 8, 3, 3, device=device).to(memory_format=torch.channels_last)
    out = zeroskip.conv2d(x, w, None, 1, 1, algo=algo)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(out, reference(x, w, None, 1, 1)) <= TOL[torch.float32]


@pytest.mark.parametrize("algo", KERNEL_ALGOS)
def test_non_contiguous_inputs(algo, device):
    base = sparse((2, 12, 15, 20), 0.5, device=device)
    x = base[:, ::2, 1:, ::2]                      # strided in C and W, offset in H
    w = torch.randn(6, 3, 3, 7, device=device).transpose(2, 3)   # (6, 3, 7, 3) non-contiguous
    b = torch.randn(12, device=device)[::2]
    assert not x.is_contiguous() and not w.is_contiguous()
    out = zeroskip.conv2d(x, w, b, 1, (2, 0), 1, 2, algo=algo)
    assert rel_err(out, reference(x, w, b, 1, (2, 0), 1, 2)) <= TOL[torch.float32]


def test_unbatched_input(device):
    x = sparse((4, 9, 9), 0.5, device=device)
    w = torch.randn(5, 4, 3, 3, device=device)
    out = zeroskip.conv2d(x, w, algo="ecr")
    assert out.shape == (5, 7, 7)
    assert rel_err(out, reference(x[None], w, None)[0]) <= TOL[torch.float32]


def test_auto_on_cpu_without_interpreter_takes_torch_path(monkeypatch):
    from zeroskip import dispatch, runtime
    monkeypatch.setattr(runtime, "interpreting", lambda: False)
    monkeypatch.setattr(dispatch, "_warned_cpu", False)
    x, w = sparse((1, 3, 8, 8), 0.5), torch.randn(4, 3, 3, 3)
    with pytest.warns(UserWarning, match="runs PyTorch"):
        assert rel_err(zeroskip.conv2d(x, w), reference(x, w, None)) <= TOL[torch.float32]
    with pytest.raises(RuntimeError, match="algo='ecr' needs a CUDA tensor"):
        zeroskip.conv2d(x, w, algo="ecr")


def test_float64_runs_on_torch_path_only(device):
    x, w = sparse((1, 3, 8, 8), 0.5, torch.float64, device), torch.randn(4, 3, 3, 3, dtype=torch.float64, device=device)
    assert zeroskip.conv2d(x, w).dtype == torch.float64
    with pytest.raises(TypeError, match="algo='ecr' supports dtypes"):
        zeroskip.conv2d(x, w, algo="ecr")


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(n=st.integers(1, 2), cg=st.integers(1, 5), g=st.integers(1, 3), cog=st.integers(1, 6),
       h=st.integers(1, 14), w=st.integers(1, 14), kh=st.integers(1, 5), kw=st.integers(1, 5),
       s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2), bias=st.booleans(),
       density=st.sampled_from([0.0, 0.3, 0.7, 1.0]), act=st.sampled_from([None, "relu", "relu6"]))
def test_random_geometries(n, cg, g, cog, h, w, kh, kw, s, p, d, bias, density, act, device):
    eh, ew = d * (kh - 1) + 1, d * (kw - 1) + 1
    if h + 2 * p < eh or w + 2 * p < ew:
        return  # no output pixel: covered by the error tests
    geom = (n, cg * g, h, w, cog * g, (kh, kw), s, p, d, g, bias)
    out, ref = _call(geom, "ecr", density, device=device, activation=act)
    assert rel_err(out, ref) <= TOL[torch.float32]
