"""algo="im2col": the reduction over (channel, tap) columns, against the float64 reference."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import zeroskip
from helpers import TOL, TOL_TF32, reference, rel_err, sparse
from zeroskip.kernels import im2col


@pytest.fixture(params=["flat", "taps"])
def gather(request, monkeypatch, device):
    """Both gathers: columns one (channel, tap) at a time, or per tap with its channels side by
    side. On the interpreter the fixed launch takes the one named; on a GPU the tuner picks."""
    bm, bn, bk, warps, _ = im2col.INTERPRETER_TILES
    monkeypatch.setattr(im2col, "INTERPRETER_TILES", (bm, bn, bk, warps, int(request.param == "taps")))
    return request.param


# (N, C, H, W, C_out, kernel, stride, padding, dilation, groups): first layers of VGG, AlexNet,
# GoogLeNet and LeNet shrunk, then reductions of several BLOCK_K chunks and grouped ones
FIRST_LAYERS = [
    (2, 3, 13, 13, 16, 3, 1, 1, 1, 1),
    (1, 3, 27, 27, 8, 11, 4, 2, 1, 1),     # 363 columns: 12 chunks of 32
    (2, 3, 17, 15, 10, 7, 2, 3, 1, 1),
    (1, 1, 12, 12, 6, 5, 1, 0, 1, 1),
    (1, 6, 9, 9, 12, 3, 1, 2, 2, 3),
    (1, 4, 8, 8, 70, 3, 1, 1, 1, 1),       # output channels past one block
]


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("geom", FIRST_LAYERS, ids=str)
def test_fp32(geom, layout, gather, device, poisoned):
    n, c, h, w, co, k, s, p, d, g = geom
    x = sparse((n, c, h, w), torch.rand(()).item(), device=device)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    wt = torch.randn(co, c // g, k, k, device=device)
    b = torch.randn(co, device=device)
    out = zeroskip.conv2d(x, wt, b, s, p, d, g, activation="relu", algo="im2col")
    ref = reference(x, wt, b, s, p, d, g, "relu")
    assert out.shape == ref.shape
    if c > 1:  # one channel is both layouts at once; the output is then NCHW
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        assert out.is_contiguous(memory_format=fmt)
    assert rel_err(out, ref) <= TOL[torch.float32]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("geom", FIRST_LAYERS[:3], ids=str)
def test_half(geom, dtype, gather, device, poisoned):
    n, c, h, w, co, k, s, p, d, g = geom
    x = sparse((n, c, h, w), 0.7, dtype, device).to(memory_format=torch.channels_last)
    wt = (torch.randn(co, c // g, k, k, device=device) * 0.2).to(dtype)
    out = zeroskip.conv2d(x, wt, None, s, p, d, g, algo="im2col")
    assert out.dtype == dtype
    assert rel_err(out, reference(x, wt, None, s, p, d, g)) <= TOL[dtype]


@pytest.mark.parametrize("pool, size, stride, pad", [("max", 3, 2, 0), ("avg", 2, None, 0), ("max", 3, 2, 1)])
def test_fused_pool(pool, size, stride, pad, gather, device, poisoned):
    x = sparse((2, 3, 23, 23), 0.8, device=device)  # AlexNet-like: 11x11/4 conv, 3x3/2 pool
    wt = torch.randn(8, 3, 11, 11, device=device)
    b = torch.randn(8, device=device)
    out = zeroskip.conv2d_pool(x, wt, b, 4, 2, pool=pool, pool_size=size, pool_stride=stride,
                               pool_padding=pad, algo="im2col")
    ref = reference(x, wt, b, 4, 2, 1, 1, "relu", pool, size, stride, pad)
    assert out.shape == ref.shape
    assert rel_err(out, ref) <= TOL[torch.float32]


def test_tf32_follows_cudnn_switch(device):
    torch.backends.cudnn.allow_tf32 = True
    x = sparse((1, 3, 15, 15), 0.8, device=device)
    wt = torch.randn(6, 3, 5, 5, device=device)
    out = zeroskip.conv2d(x, wt, None, 1, 2, algo="im2col")
    assert rel_err(out, reference(x, wt, None, 1, 2)) <= TOL_TF32


def test_non_contiguous(gather, device):
    x = sparse((2, 6, 15, 20), 0.5, device=device)[:, ::2, 1:, ::2]
    wt = torch.randn(5, 3, 3, 7, device=device).transpose(2, 3)
    assert not x.is_contiguous() and not wt.is_contiguous()
    out = zeroskip.conv2d(x, wt, None, 1, (2, 0), algo="im2col")
    assert rel_err(out, reference(x, wt, None, 1, (2, 0))) <= TOL[torch.float32]


def test_zero_times_inf_is_computed(device):
    """No skipping: a zero input under an inf weight gives NaN, as cuDNN does."""
    x = torch.zeros(1, 3, 6, 6, device=device)
    wt = torch.ones(2, 3, 3, 3, device=device)
    wt[0, 1, 1, 1] = float("inf")
    out = zeroskip.conv2d(x, wt, None, 1, 1, algo="im2col")
    assert out[0, 0].isnan().all() and (out[0, 1] == 0).all()


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(n=st.integers(1, 2), cg=st.integers(1, 4), g=st.integers(1, 2), cog=st.integers(1, 9),
       h=st.integers(1, 12), w=st.integers(1, 12), kh=st.integers(1, 5), kw=st.integers(1, 5),
       s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2), density=st.sampled_from([0.0, 0.5, 1.0]))
def test_random_geometries(n, cg, g, cog, h, w, kh, kw, s, p, d, density, gather, device):
    if h + 2 * p < d * (kh - 1) + 1 or w + 2 * p < d * (kw - 1) + 1:
        return  # no output pixel: covered by the error tests
    x = sparse((n, cg * g, h, w), density, device=device)
    wt = torch.randn(cog * g, cg, kh, kw, device=device)
    out = zeroskip.conv2d(x, wt, None, s, p, d, g, activation="relu6", algo="im2col")
    assert rel_err(out, reference(x, wt, None, s, p, d, g, "relu6")) <= TOL[torch.float32]


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_pool_after(layout, monkeypatch, device, poisoned):
    """The conv alone then torch's pool, the choice measured against the fused pool where it
    recomputes conv outputs (ResNet's 3x3/2 pool after its stem): the same result either way."""
    monkeypatch.setattr(im2col, "INTERPRETER_POOL_AFTER", True)
    if device == "cuda":  # the measurement's verdict, forced
        from zeroskip.kernels import split_k
        monkeypatch.setattr(split_k, "pick", lambda key, dense, options: options()[0][0])
    x = sparse((2, 3, 21, 19), 0.9, device=device)
    x = x.to(memory_format=torch.channels_last) if layout == "channels_last" else x
    wt = torch.randn(8, 3, 7, 7, device=device)
    b = torch.randn(8, device=device)
    out = zeroskip.conv2d_pool(x, wt, b, 2, 3, pool="max", pool_size=3, pool_stride=2, pool_padding=1, algo="im2col")
    ref = reference(x, wt, b, 2, 3, 1, 1, "relu", "max", 3, 2, 1)
    assert out.shape == ref.shape
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)
    assert rel_err(out, ref) <= TOL[torch.float32]


def test_pool_recompute():
    """Conv outputs computed per conv output by a fused pool: what decides whether the pool-after
    option is measured (kernels/launch.POOL_AFTER_RECOMPUTE)."""
    from zeroskip.geometry import check_conv, pool_recompute, with_pool, without_pool
    from zeroskip.kernels.launch import POOL_AFTER_RECOMPUTE
    x, w = torch.empty(1, 64, 224, 224), torch.empty(64, 64, 3, 3)
    vgg = with_pool(check_conv(x, w, None, 1, 1, 1, 1), "max", 2, 2, 0)
    stem = with_pool(check_conv(torch.empty(1, 3, 224, 224), torch.empty(64, 3, 7, 7), None, 2, 3, 1, 1),
                     "max", 3, 2, 1)
    assert pool_recompute(vgg) == 1.0 < POOL_AFTER_RECOMPUTE
    assert pool_recompute(stem) == 4.0 >= POOL_AFTER_RECOMPUTE
    assert pool_recompute(without_pool(stem)) == 1.0
    assert (without_pool(stem).result_h, without_pool(stem).window_rows) == (112, 1)
