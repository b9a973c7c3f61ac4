"""ECR / PECR formats: round trips, the references they compute, statistics and argument errors.

References are independent of the formats' code: im2col rows come from a float64 F.conv2d with
one-hot filters (exact, and it handles asymmetric 'same' padding itself), the pixels that some
window reads from the gradient of a convolution of ones.
"""
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings, strategies as st

from zeroskip.formats import (PECR, conv_ecr, conv_pool_pecr, decode_ecr, decode_pecr, ecr_stats, encode_ecr,
                              encode_pecr, sparsity_stats, to_feature_map)
from helpers import rel_err

# PyTorch warns that even-kernel 'same' padding copies the input; that is what the tests exercise.
warnings.filterwarnings("ignore", message=".*padding='same'.*")

GEOMS = [
    dict(shape=(1, 1, 7, 7), kernel_size=3),
    dict(shape=(2, 4, 13, 13), kernel_size=3, padding="same"),
    dict(shape=(2, 4, 8, 7), kernel_size=(2, 4), padding="same", dilation=(1, 2), groups=2),
    dict(shape=(2, 6, 13, 7), kernel_size=3, stride=2, padding=1, groups=3),
    dict(shape=(3, 4, 7, 13), kernel_size=(3, 1), stride=(2, 1), padding=(1, 0), dilation=(2, 1), groups=4),
    dict(shape=(1, 3, 9, 11), kernel_size=5, stride=3, padding=2, dilation=2),
    dict(shape=(2, 2, 7, 7), kernel_size=1, stride=2),  # pixels that no window reads
    dict(shape=(1, 2, 13, 7), kernel_size=(4, 2), stride=(3, 2), padding="valid"),
]
DENSITIES = [0.0, 0.5, 0.9, 1.0, "random"]
POOL_GEOMS = [
    dict(pool_size=2),  # tiles, or leaves an odd last row/column out
    dict(pool_size=3, pool_stride=2, pool_padding=1),  # overlapping and padded
    dict(pool_size=3, pool_stride=1),  # every window in up to nine pools
    dict(pool_size=2, pool_stride=3),  # gaps: some conv outputs in no pool
    dict(pool_size=(2, 3), pool_stride=(1, 2), pool_padding=(1, 1)),
]


def conv_args(g):
    return dict(stride=g.get("stride", 1), padding=g.get("padding", 0),
                dilation=g.get("dilation", 1), groups=g.get("groups", 1))


def enc_args(g):
    return dict(kernel_size=g["kernel_size"], **conv_args(g))


def kernel(g):
    k = g["kernel_size"]
    return (k, k) if isinstance(k, int) else k


def sparse(shape, density, dtype=torch.float64):
    """Signed values, exactly zero with probability 1 - density (fresh every call)."""
    if density == "random":
        density = torch.rand(()).item()
    x = torch.randn(shape, dtype=torch.float64)
    x = x.masked_fill(x == 0, 1.0) * (torch.rand(shape, dtype=torch.float64) < density)
    return x.to(dtype)


def weights(g, out_per_group=3, dtype=torch.float64):
    groups = g.get("groups", 1)
    w = torch.randn(groups * out_per_group, g["shape"][1] // groups, *kernel(g), dtype=torch.float64)
    return w.to(dtype), torch.randn(groups * out_per_group, dtype=torch.float64).to(dtype)


def ref_rows(x, g):
    """(N, G, OH*OW, R) im2col rows from a conv with one-hot filters, in float64."""
    groups, (kh, kw) = g.get("groups", 1), kernel(g)
    width = x.shape[1] // groups * kh * kw
    onehot = torch.eye(width, dtype=torch.float64).view(width, -1, kh, kw).repeat(groups, 1, 1, 1)
    y = F.conv2d(x.double(), onehot, **conv_args(g))
    return y.view(x.shape[0], groups, width, -1).transpose(2, 3)


def covered(x, g):
    """(H, W) bool: the pixels some window reads."""
    ones = torch.ones(1, 1, *x.shape[2:], dtype=torch.float64, requires_grad=True)
    args = dict(conv_args(g), groups=1)
    F.conv2d(ones, torch.ones(1, 1, *kernel(g), dtype=torch.float64), **args).sum().backward()
    return ones.grad[0, 0] > 0


def pool_positions(spec):
    """Per pooled output, its conv-output positions, by brute force."""
    def span(q, stride, pad, size, out):
        return [o for o in range(q * stride - pad, q * stride - pad + size) if 0 <= o < out]
    return [[oy * spec.out_w + ox
             for oy in span(py, spec.pool_sh, spec.pool_ph, spec.pool_kh, spec.out_h)
             for ox in span(px, spec.pool_sw, spec.pool_pw, spec.pool_kw, spec.out_w)]
            for py in range(spec.pooled_h) for px in range(spec.pooled_w)]


@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("g", GEOMS)
def test_ecr_round_trip(g, density):
    x = sparse(g["shape"], density)
    ecr = encode_ecr(x, **enc_args(g))
    ref = ref_rows(x, g)
    assert ecr.kernel_index.dtype == torch.int32 and ecr.row_ptr.dtype == torch.int64
    assert ecr.values.dtype == x.dtype and ecr.row_ptr.numel() == ref.shape[0] * ref.shape[1] * ref.shape[2] + 1
    assert ecr.nnz == int((ref != 0).sum()) and (ecr.values != 0).all()
    assert torch.equal(ecr.counts(), (ref != 0).sum(-1).flatten())
    same_row = ecr.row_of()[1:] == ecr.row_of()[:-1]
    assert (ecr.kernel_index[1:][same_row] > ecr.kernel_index[:-1][same_row]).all()
    assert torch.equal(decode_ecr(ecr), ref)
    mask = covered(x, g)
    fmap = to_feature_map(ecr)
    assert torch.equal(fmap[..., mask], x[..., mask]) and not fmap[..., ~mask].any()


@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("g", GEOMS)
def test_ecr_conv_fp32(g, density):
    x = sparse(g["shape"], density, torch.float32)
    w, b = weights(g, dtype=torch.float32)
    out = conv_ecr(encode_ecr(x, **enc_args(g)), w, b)
    ref = F.conv2d(x.double(), w.double(), b.double(), **conv_args(g))
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert rel_err(out, ref) <= 1e-5
    assert rel_err(conv_ecr(encode_ecr(x, **enc_args(g)), w), ref - b.double().view(1, -1, 1, 1)) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("g", GEOMS[1:4])
def test_ecr_conv_half(g, dtype):
    x = sparse(g["shape"], 0.5, dtype)
    w, b = weights(g, dtype=dtype)
    out = conv_ecr(encode_ecr(x, **enc_args(g)), w, b)
    assert out.dtype == dtype
    assert rel_err(out, F.conv2d(x.double(), w.double(), b.double(), **conv_args(g))) <= 1e-2


@pytest.mark.parametrize("pg", POOL_GEOMS)
@pytest.mark.parametrize("g", [GEOMS[0], GEOMS[1], GEOMS[2], GEOMS[3]])
def test_pecr_layout(g, pg):
    x = sparse(g["shape"], "random")
    pecr = encode_pecr(x, **enc_args(g), **pg)
    pools = pool_positions(pecr.spec)
    images = x.shape[0] * g.get("groups", 1)
    assert pecr.window_pos.dtype == torch.int32 and pecr.pool_ptr.dtype == torch.int64
    assert pecr.windows_per_pool().tolist() == [len(p) for p in pools] * images
    assert pecr.window_pos.tolist() == [pos for p in pools for pos in p] * images
    ref = ref_rows(x, g)
    dense = decode_pecr(pecr)
    width = max(len(p) for p in pools)
    assert dense.shape == (*ref.shape[:2], len(pools), width, ref.shape[3])
    for q, p in enumerate(pools):
        assert torch.equal(dense[:, :, q, :len(p)], ref[:, :, p])
        assert not dense[:, :, q, len(p):].any()


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("pg", POOL_GEOMS)
@pytest.mark.parametrize("g", [GEOMS[0], GEOMS[1], GEOMS[2], GEOMS[3]])
def test_pecr_conv_pool(g, pg, pool):
    x = sparse(g["shape"], "random")
    w, b = weights(g)
    pecr = encode_pecr(x, **enc_args(g), **pg)
    y = F.conv2d(x, w, b, **conv_args(g))
    size, stride, padding = pg["pool_size"], pg.get("pool_stride"), pg.get("pool_padding", 0)
    for activation, act in [("relu", F.relu), (None, lambda t: t), ("relu6", F.relu6)]:
        if pool == "max":
            ref = F.max_pool2d(act(y), size, stride, padding)
            assert rel_err(conv_pool_pecr(pecr, w, b, activation, "max"), ref) <= 1e-12
            continue
        for include in (True, False):
            ref = F.avg_pool2d(act(y), size, stride, padding, count_include_pad=include)
            out = conv_pool_pecr(pecr, w, b, activation, "avg", count_include_pad=include)
            assert rel_err(out, ref) <= 1e-12


def test_nan_and_inf_are_stored():
    x = sparse((2, 3, 7, 7), 0.5)
    x[0, 0, 3, 3], x[1, 2, 0, 6], x[0, 1, 6, 0], x[1, 1, 2, 2] = float("nan"), float("inf"), -float("inf"), 0.0
    point = encode_ecr(x, 1)
    assert int(point.values.isnan().sum()) == 1 and int(point.values.isinf().sum()) == 2
    ecr = encode_ecr(x, 3, padding=1)
    unfolded = F.unfold(x, 3, padding=1).view(2, 1, 27, 49).transpose(2, 3)
    assert torch.allclose(decode_ecr(ecr), unfolded, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(to_feature_map(ecr).isnan(), x.isnan())
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    out, ref = conv_ecr(ecr, w), F.conv2d(x, w, padding=1)
    assert torch.equal(out.isnan(), ref.isnan()) and torch.equal(out.isinf(), ref.isinf())
    finite = ref.isfinite()
    assert rel_err(out[finite], ref[finite]) <= 1e-12


@pytest.mark.parametrize("block_m", [1, 7, 64])
@pytest.mark.parametrize("g", GEOMS)
def test_stats(g, block_m):
    x = sparse(g["shape"], "random")
    st_ = sparsity_stats(x, **enc_args(g), block_m=block_m)
    assert st_ == ecr_stats(encode_ecr(x, **enc_args(g)), block_m)
    ref = ref_rows(x, g)
    counts = (ref != 0).sum(-1)
    assert st_.window_size == ref.shape[-1]
    assert (st_.nnz_per_window_min, st_.nnz_per_window_max) == (counts.min().item(), counts.max().item())
    assert st_.nnz_per_window_mean == pytest.approx(counts.double().mean().item())
    mask = covered(x, g)
    per_channel = (x[..., mask] == 0).double().mean((0, 2))
    assert st_.channel_zero_fraction == pytest.approx(per_channel.tolist())
    assert st_.zero_fraction == pytest.approx((x[..., mask] == 0).double().mean().item())
    cols = ref.permute(1, 0, 2, 3).reshape(ref.shape[1], -1, ref.shape[-1]) != 0
    tiles = -(-cols.shape[1] // block_m)
    cols = F.pad(cols, (0, 0, 0, tiles * block_m - cols.shape[1])).view(cols.shape[0], tiles, block_m, -1)
    assert st_.block_skip_fraction == pytest.approx((~cols.any(2)).double().mean().item())
    assert "block of" in str(st_)


def test_stats_extremes():
    assert sparsity_stats(torch.zeros(1, 2, 7, 7), 3).block_skip_fraction == 1.0
    full = sparsity_stats(sparse((1, 2, 7, 7), 1.0), 3)
    assert (full.block_skip_fraction, full.zero_fraction, full.nnz_per_window_min) == (0.0, 0.0, 18)


@pytest.mark.parametrize("call, error, match", [
    (lambda: encode_ecr(torch.randn(3, 7, 7), 3), ValueError, "input must be 4-D"),
    (lambda: encode_ecr(torch.randn(1, 3, 7, 7), 3, groups=2), ValueError, "groups=2"),
    (lambda: encode_ecr(torch.randn(1, 3, 7, 7), 3, groups=0), ValueError, "groups"),
    (lambda: encode_ecr(torch.randn(1, 1, 2, 2), 5), ValueError, "output size"),
    (lambda: encode_ecr(torch.randn(1, 1, 5, 5), 0), ValueError, "kernel_size"),
    (lambda: encode_ecr(torch.randn(1, 1, 5, 5), 3, stride=2, padding="same"), ValueError, "same"),
    (lambda: encode_ecr(torch.ones(1, 1, 5, 5, dtype=torch.int64), 3), TypeError, "floating-point"),
    (lambda: encode_ecr([[1.0]], 3), TypeError, "input must be a torch.Tensor"),
    (lambda: encode_pecr(torch.randn(1, 1, 5, 5), 3, pool_size=4), ValueError, "pooled size"),
    (lambda: encode_pecr(torch.randn(1, 1, 5, 5), 3, pool_padding=2), ValueError, "pool_padding"),
    (lambda: conv_ecr(encode_ecr(torch.randn(1, 2, 5, 5), 3), torch.randn(4, 1, 3, 3)), ValueError, "weight"),
    (lambda: conv_ecr(encode_ecr(torch.randn(1, 4, 5, 5), 3, groups=2), torch.randn(3, 2, 3, 3)),
     ValueError, "groups=2"),
    (lambda: conv_ecr(encode_ecr(torch.randn(1, 1, 5, 5), 3), torch.randn(2, 1, 3, 3).double()),
     TypeError, "weight dtype"),
    (lambda: conv_ecr(encode_ecr(torch.randn(1, 1, 5, 5), 3), torch.randn(2, 1, 3, 3), torch.randn(3)),
     ValueError, "bias"),
    (lambda: conv_pool_pecr(encode_pecr(torch.randn(1, 1, 5, 5), 3), torch.randn(2, 1, 3, 3), pool="min"),
     ValueError, "pool"),
    (lambda: conv_pool_pecr(encode_pecr(torch.randn(1, 1, 5, 5), 3), torch.randn(2, 1, 3, 3), activation="gelu"),
     ValueError, "activation"),
    (lambda: sparsity_stats(torch.randn(1, 1, 5, 5), 3, block_m=0), ValueError, "block_m"),
])
def test_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 2), groups=st.integers(1, 3), per_group=st.integers(1, 3),
       h=st.integers(1, 12), w=st.integers(1, 12), k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), dil=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       pad=st.one_of(st.just("same"), st.integers(0, 2)), pool=st.integers(1, 3), pool_stride=st.integers(1, 3),
       pool_pad=st.integers(0, 1), density=st.floats(0.0, 1.0))
def test_random_geometry(n, groups, per_group, h, w, k, stride, dil, pad, pool, pool_stride, pool_pad, density):
    stride = (1, 1) if pad == "same" else stride
    pool_pad = min(pool_pad, pool // 2)
    total = [d * (kk - 1) if pad == "same" else 2 * pad for d, kk in zip(dil, k)]
    out = [(size + t - d * (kk - 1) - 1) // s + 1 for size, t, d, kk, s in zip((h, w), total, dil, k, stride)]
    assume(min(out) >= 1 and min((o + 2 * pool_pad - pool) // pool_stride + 1 for o in out) >= 1)
    g = dict(shape=(n, groups * per_group, h, w), kernel_size=k, stride=stride, padding=pad, dilation=dil,
             groups=groups)
    x = sparse(g["shape"], density)
    ecr = encode_ecr(x, **enc_args(g))
    assert torch.equal(decode_ecr(ecr), ref_rows(x, g))
    mask = covered(x, g)
    fmap = to_feature_map(ecr)
    assert torch.equal(fmap[..., mask], x[..., mask]) and not fmap[..., ~mask].any()
    wt, b = weights(g, out_per_group=2)
    ref = F.conv2d(x, wt, b, **conv_args(g))
    assert rel_err(conv_ecr(ecr, wt, b), ref) <= 1e-12
    pecr = encode_pecr(x, **enc_args(g), pool_size=pool, pool_stride=pool_stride, pool_padding=pool_pad)
    assert isinstance(pecr, PECR)
    ref = F.max_pool2d(F.relu(ref), pool, pool_stride, pool_pad)
    assert rel_err(conv_pool_pecr(pecr, wt, b), ref) <= 1e-12
