"""zeroskip.conv2d_pool against float64 F.conv2d -> activation -> max/avg pool."""
import pytest
import torch

import zeroskip
from helpers import TOL, TOL_TF32, reference, rel_err, sparse

# (N, C, H, W, C_out, kernel, stride, padding, groups, pool_size, pool_stride, pool_padding)
CASES = [
    (1, 4, 12, 12, 8, 3, 1, 1, 1, 2, None, 0),     # VGG-like, tiles the map
    (2, 3, 13, 11, 6, 3, 1, 1, 1, 2, None, 0),     # odd map: windows do not tile it
    (1, 4, 15, 15, 5, 3, 1, 0, 1, 3, 2, 0),        # overlapping windows (AlexNet)
    (2, 6, 14, 9, 6, 3, 2, 1, 2, 3, 2, 1),         # strided conv, padded pool, groups
    (1, 2, 9, 9, 4, 5, 1, 2, 1, (2, 3), (1, 2), (1, 0)),
    (1, 3, 7, 7, 3, 1, 1, 0, 1, 7, None, 0),       # global pool
]


@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_ecr_fused(case, pool, activation, device):
    n, c, h, w, co, k, s, p, g, ps, pst, pp = case
    x = sparse((n, c, h, w), torch.rand(()).item(), device=device)
    wt = torch.randn(co, c // g, k, k, device=device)
    b = torch.randn(co, device=device)
    out = zeroskip.conv2d_pool(x, wt, b, s, p, 1, g, activation=activation, pool=pool,
                               pool_size=ps, pool_stride=pst, pool_padding=pp, algo="ecr")
    ref = reference(x, wt, b, s, p, 1, g, activation, pool, ps, pst, pp)
    assert out.shape == ref.shape
    assert rel_err(out, ref) <= TOL[torch.float32]


@pytest.mark.parametrize("density", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("algo", ["ecr", "ecr_tc", "igemm", "im2col"])
def test_algos_dtypes_densities(algo, dtype, density, device):
    x = sparse((2, 8, 13, 13), density, dtype, device)
    w = torch.randn(16, 8, 3, 3, dtype=dtype, device=device)
    b = torch.randn(16, dtype=dtype, device=device)
    out = zeroskip.conv2d_pool(x, w, b, 1, 1, algo=algo)
    assert out.dtype == dtype
    assert rel_err(out, reference(x, w, b, 1, 1, 1, 1, "relu", "max")) <= TOL[dtype]


def test_channels_last(device):
    x = sparse((2, 8, 10, 10), 0.3, device=device).to(memory_format=torch.channels_last)
    w = torch.randn(8, 8, 3, 3, device=device)
    out = zeroskip.conv2d_pool(x, w, None, 1, 1, pool="avg", algo="ecr")
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(out, reference(x, w, None, 1, 1, 1, 1, "relu", "avg")) <= TOL[torch.float32]


def test_torch_path_matches_reference(device):
    x = sparse((1, 3, 11, 11), 0.5, device=device)
    w = torch.randn(4, 3, 3, 3, device=device)
    out = zeroskip.conv2d_pool(x, w, None, 1, 1, pool_size=3, pool_stride=2, pool_padding=1, algo="torch")
    assert rel_err(out, reference(x, w, None, 1, 1, 1, 1, "relu", "max", 3, 2, 1)) <= TOL[torch.float32]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("fmt", [torch.channels_last, torch.contiguous_format])
def test_igemm_pool_after(dtype, fmt, monkeypatch, device):
    """igemm's measured "pool after" option (the conv alone, then torch's pool; offered where the
    fused pool recomputes conv outputs) gives the fused result in the input's layout, at the call
    that chooses it and at later calls, which take it before allocating the fused output (TF32 on,
    where NCHW fp32 input is copied to channels_last for the fused kernel). The interpreter measures
    nothing, so only a GPU takes this path."""
    if device != "cuda":
        pytest.skip("the first-call measurement runs on a GPU only")
    from zeroskip.kernels import split_k
    monkeypatch.setattr(split_k, "_CHOSEN", {})
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    offered = []

    def pick(key, dense, options):  # the pool kernel's own pick (options labelled by str) keeps torch's pool
        if key[0] == "pool":
            return None
        found = [o for o, _ in options() if o.kernel == "pool after"]
        offered.append(bool(found))
        split_k._CHOSEN[key] = found[0] if found else None
        return split_k._CHOSEN[key]
    monkeypatch.setattr(split_k, "pick", pick)
    x = sparse((2, 16, 20, 20), 0.6, dtype, device).contiguous(memory_format=fmt)
    wt = (torch.randn(32, 16, 3, 3, device=device) * 0.1).to(dtype)
    b = torch.randn(32, device=device).to(dtype)
    ref = reference(x, wt, b, 1, 1, 1, 1, "relu", "max", 3, 2, 1)
    for call in range(2):
        out = zeroskip.conv2d_pool(x, wt, b, 1, 1, pool="max", pool_size=3, pool_stride=2, pool_padding=1,
                                   algo="igemm")
        assert out.is_contiguous(memory_format=fmt), call
        assert rel_err(out, ref) <= (TOL_TF32 if dtype == torch.float32 else TOL[dtype]), call
    assert offered[0] and offered.count(True) == 1  # the second call did not measure again
