"""kernels/pool.py: the channels_last pool after a conv, against PyTorch's pools in float64."""
import pytest
import torch
import torch.nn.functional as F

from zeroskip.geometry import check_conv, with_pool
from zeroskip.kernels import pool

# (C, H, W, pool_size, pool_stride, pool_padding): ResNet's 3x3/2/1, VGG's 2x2/2, a 3x3/1 pool,
# uneven windows, a map the windows do not tile, a global pool, channels past one block
GEOMETRIES = [(8, 11, 11, 3, 2, 1), (4, 8, 8, 2, 2, 0), (5, 7, 9, 3, 1, 1), (3, 9, 7, (2, 3), (1, 2), (1, 0)),
              (6, 7, 7, 7, 7, 0), (130, 5, 6, 2, 2, 1)]


def _spec(y, size, stride, padding, kind):
    """A spec whose conv output is y's shape (a 1x1 conv) and whose pool is the one named."""
    conv = check_conv(y, torch.empty(y.shape[1], y.shape[1], 1, 1, dtype=y.dtype, device=y.device), None, 1, 0, 1, 1)
    return with_pool(conv, kind, size, stride, padding)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("geom", GEOMETRIES, ids=str)
def test_against_torch(geom, dtype, kind, device):
    c, h, w, size, stride, padding = geom
    y = torch.randn(2, c, h, w, device=device).to(dtype).to(memory_format=torch.channels_last)
    spec = _spec(y, size, stride, padding, kind)
    out = pool.pool(y, spec)
    torch_fn = F.max_pool2d if kind == "max" else F.avg_pool2d
    ref = torch_fn(y.double(), size, stride, padding)
    assert out.shape == ref.shape and out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last)
    if kind == "max":  # a max is exact
        assert torch.equal(out.double(), ref)
    else:
        assert (out.double() - ref).abs().max().item() <= (1e-6 if dtype == torch.float32 else 2e-3)


def test_max_propagates_nan_and_reads_no_padding(device):
    """NaN in a window gives NaN, as F.max_pool2d; an all-negative map stays negative (padding is
    not a 0 that wins)."""
    y = -torch.rand(1, 4, 6, 6, device=device).add_(1).to(memory_format=torch.channels_last)
    y[0, 1, 2, 3] = float("nan")
    spec = _spec(y, 3, 2, 1, "max")
    out = pool.pool(y, spec)
    ref = F.max_pool2d(y, 3, 2, 1)
    assert torch.equal(out.isnan(), ref.isnan()) and out.isnan().any()
    assert torch.equal(out.nan_to_num(), ref.nan_to_num()) and (out[~out.isnan()] < 0).all()


@pytest.mark.parametrize("use_kernel", [False, True])
def test_after_picks_a_pool(use_kernel, monkeypatch, device):
    """pool.after: on a GPU the faster of the two at the first call (forced here), on the
    interpreter PyTorch's unless INTERPRETER_KERNEL; NCHW maps always go to PyTorch's."""
    monkeypatch.setattr(pool, "INTERPRETER_KERNEL", use_kernel)
    if device == "cuda":
        monkeypatch.setattr(pool.split_k, "pick", lambda key, dense, options: options()[0][0] if use_kernel else None)
    called = []
    kernel = pool.pool
    monkeypatch.setattr(pool, "pool", lambda y, spec: called.append(1) or kernel(y, spec))
    y = torch.randn(1, 8, 9, 9, device=device).to(memory_format=torch.channels_last)
    spec = _spec(y, 3, 2, 1, "max")
    assert torch.equal(pool.after(y, spec), F.max_pool2d(y, 3, 2, 1))
    assert bool(called) == use_kernel
    called.clear()
    assert torch.equal(pool.after(y.contiguous(), spec), F.max_pool2d(y, 3, 2, 1))
    assert not called
