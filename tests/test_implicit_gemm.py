"""Kernel-level checks: skipping equals the same kernel with skipping off, every output element
is written (poisoned outputs), many blocks and chunks, and the semantics that differ from cuDNN."""
import pytest
import torch

import zeroskip
from helpers import TOL, reference, rel_err, sparse
from zeroskip.geometry import check_conv, with_pool

SMALL = dict(block_m=16, block_n=16, block_k=16, num_warps=1, num_stages=1)


def _kernels():
    from zeroskip.kernels import implicit_gemm
    return implicit_gemm


@pytest.fixture
def poisoned(monkeypatch):
    ig = _kernels()
    real = ig._empty
    monkeypatch.setattr(ig, "_empty", lambda *a: real(*a).fill_(float("nan")))


@pytest.mark.parametrize("pool", [None, "max", "avg"])
@pytest.mark.parametrize("density", [0.0, 0.2, 0.9, 1.0])
def test_skip_equals_no_skip_small_blocks(density, pool, device, poisoned):
    ig = _kernels()
    x = sparse((1, 20, 8, 8), density, device=device)    # 20 channels x 9 taps: 12 chunks of 16
    w = torch.randn(36, 20, 3, 3, device=device)         # 3 column blocks of 16
    b = torch.randn(36, device=device)
    spec = check_conv(x, w, b, 1, 1, 1, 1)
    if pool:
        spec = with_pool(spec, pool, 2, 1, 1)           # 9x9 overlapping windows: 6 row blocks
    cfg = ig.Config(**SMALL)
    skip = ig.conv(x, w, b, spec, "relu", "ecr", cfg, skip=True)
    dense = ig.conv(x, w, b, spec, "relu", "ecr", cfg, skip=False)
    assert not torch.isnan(skip).any() and not torch.isnan(dense).any()
    if density == 1.0 and pool is None:
        assert torch.equal(skip, dense)   # nothing to skip: identical chunks, identical sums
    else:
        assert rel_err(skip, dense) <= 1e-6
    ref = reference(x, w, b, 1, 1, 1, 1, "relu", pool, 2, 1, 1)
    assert rel_err(skip, ref) <= TOL[torch.float32]


def test_all_zero_input_gives_activated_bias(device, poisoned):
    x = torch.zeros(1, 4, 6, 6, device=device)
    w = torch.randn(5, 4, 3, 3, device=device)
    b = torch.randn(5, device=device)
    out = zeroskip.conv2d(x, w, b, padding=1, activation="relu", algo="ecr")
    assert torch.equal(out, torch.relu(b)[None, :, None, None].expand_as(out))


def test_chunk_flags_match_columns(device):
    """A flag is set exactly when the block's windows read a non-zero from that channel chunk."""
    from zeroskip.kernels import ecr_index
    x = sparse((1, 40, 6, 6), 0.02, device=device)
    w = torch.empty(2, 40, 3, 3, device=device)
    spec = check_conv(x, w, None, 1, 1, 1, 1)
    flags = ecr_index.chunk_flags(x, spec, block_m=16, block_k=16).cpu()
    cols = torch.nn.functional.unfold(x.cpu(), 3, padding=1)[0].view(40, 9, -1)   # (c, tap, L)
    assert flags.shape == (3, 3)
    for blk in range(3):
        for t in range(3):
            want = (cols[t * 16:(t + 1) * 16, :, blk * 16:(blk + 1) * 16] != 0).any()
            assert bool(flags[blk, t]) == bool(want)


def test_weight_packing_follows_in_place_changes(device):
    x = sparse((1, 4, 6, 6), 0.5, device=device)
    w = torch.randn(8, 4, 3, 3, device=device)
    first = zeroskip.conv2d(x, w, algo="ecr")
    w.mul_(2)                                   # in place: the packed copy must be refreshed
    assert rel_err(zeroskip.conv2d(x, w, algo="ecr"), 2 * first) <= 1e-6


def test_zero_times_inf_is_skipped(device):
    """Documented difference from cuDNN: a skipped all-zero tile never meets an inf weight.
    Zeros inside a tile that holds a non-zero are multiplied as usual (0 * inf = NaN there)."""
    x = sparse((1, 2, 5, 5), 1.0, device=device)
    w = torch.randn(3, 2, 3, 3, device=device)
    w[:, 1, 1, 1] = float("inf")
    x[:, 1] = 0.0
    assert torch.isnan(zeroskip.conv2d(x, w, algo="torch")).all()      # 0 * inf = NaN in cuDNN
    assert torch.isnan(zeroskip.conv2d(x, w, algo="ecr")).all()        # same tile as channel 0
    x.zero_()
    skip = zeroskip.conv2d(x, w, algo="ecr")
    assert torch.equal(skip, torch.zeros_like(skip))                   # the whole tile is skipped
    assert torch.isnan(zeroskip.conv2d(x, w, algo="igemm")).all()      # skipping off: like cuDNN


def test_nan_input_is_not_skipped(device):
    x = sparse((1, 2, 5, 5), 0.5, device=device)
    x[0, 0, 2, 2] = float("nan")
    w = torch.randn(3, 2, 3, 3, device=device)
    out = zeroskip.conv2d(x, w, padding=1, algo="ecr")
    assert torch.isnan(out[0, :, 1:4, 1:4]).all()            # every window holding the NaN
    assert torch.isfinite(out[0, :, 0, 0]).all()
