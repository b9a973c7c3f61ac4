"""The direct family (kernels/direct.py, kernels in implicit_gemm.py and ecr_index.py): skipping equals
the same kernel with skipping off, every output element is written (poisoned outputs), many blocks and
chunks, split-K, the packed weights (kernels/launch.py), and the semantics that differ from cuDNN."""
import pytest
import torch

import zeroskip
from helpers import TOL, reference, rel_err, sparse
from zeroskip.geometry import check_conv, with_pool

SMALL = dict(block_m=16, block_n=16, block_k=16, num_warps=1, num_stages=1)


def _direct():
    from zeroskip.kernels import direct
    return direct


def _launch():
    from zeroskip.kernels import launch
    return launch


@pytest.mark.parametrize("pool", [None, "max", "avg"])
@pytest.mark.parametrize("density", [0.0, 0.2, 0.9, 1.0])
def test_skip_equals_no_skip_small_blocks(density, pool, device, poisoned):
    ig = _direct()
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
    w.data = 3 * w.data                         # new storage under the same tensor
    assert rel_err(zeroskip.conv2d(x, w, algo="ecr"), 6 * first) <= 1e-6
    w.data.mul_(0.5)                            # bypasses the version counter: documented
    _launch().clear_packed_weights()
    assert rel_err(zeroskip.conv2d(x, w, algo="ecr"), 3 * first) <= 1e-6


def test_weight_packing_per_operand_layout(device):
    """16-bit operands get output channels contiguous, TF32 / 3xTF32 input channels contiguous;
    a weight already in the wanted layout is used as it is, and both packings stay cached."""
    launch = _launch()
    w = torch.randn(8, 4, 3, 3, device=device)
    n_major, k_major = launch.packed_weight(w), launch.packed_weight(w, k_major=True)
    assert n_major.stride(0) == 1 and k_major.stride(1) == 1
    assert torch.equal(n_major, w) and torch.equal(k_major, w)
    assert launch.packed_weight(w) is n_major and launch.packed_weight(w, k_major=True) is k_major
    w_cl = w.to(memory_format=torch.channels_last)
    assert launch.packed_weight(w_cl, k_major=True) is w_cl
    x = sparse((1, 4, 6, 6), 0.5, device=device)
    ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
    for algo in ("igemm", "ecr", "igemm"):           # alternating layouts on one weight
        assert rel_err(zeroskip.conv2d(x, w, padding=1, algo=algo), ref) <= 1e-5


def test_split_weight_is_exact_and_tf32_shaped(device):
    """3xtf32's host split: hi holds only what TF32 reads, hi + lo is the weight bit for bit."""
    launch = _launch()
    w = torch.randn(16, 32, 3, 3, device=device) * 10.0 ** torch.randint(-6, 6, (16, 32, 3, 3), device=device)
    hi, lo = launch.packed_weight(w, k_major=True, split=True)
    assert hi.stride() == lo.stride() and hi.stride(1) == 1
    assert torch.equal(hi + lo, w)
    assert (hi.view(torch.int32) & 8191).eq(0).all()
    assert (lo.abs() <= hi.abs() * 2.0 ** -10).all()
    assert launch.packed_weight(w, k_major=True, split=True)[0] is hi   # cached per weight


@pytest.mark.parametrize("pool", [None, "max"])
def test_fp32_accuracy_on_a_deep_batched_layer(device, pool):
    """A VGG-19 features.28-sized layer at batch 32 (K = 4608): 3xtf32 must hold the fp32 bound
    where the tensor cores' rounding shows (with the small products summed into the large
    accumulator it measured 1.4e-5..2.9e-5 here). Too slow for the interpreter."""
    if device != "cuda":
        pytest.skip("needs the GPU: tensor-core rounding is not emulated by the interpreter")
    x = sparse((32, 512, 14, 14), 0.3, device=device)
    w = torch.randn(512, 512, 3, 3, device=device) * (2 / 4608) ** 0.5
    b = torch.randn(512, device=device) * 0.01
    if pool:
        out = zeroskip.conv2d_pool(x, w, b, padding=1, activation="relu", pool="max", pool_size=2, algo="igemm")
    else:
        out = zeroskip.conv2d(x, w, b, padding=1, algo="igemm")
    ref = reference(x, w, b, padding=1, **(dict(activation="relu", pool="max", pool_size=2) if pool else {}))
    assert rel_err(out, ref) <= TOL[torch.float32]


def test_fp32_inf_becomes_nan_under_3xtf32(device):
    """Documented difference from cuDNN (README): TF32 off, the split of an inf is inf + NaN."""
    x = sparse((1, 4, 6, 6), 0.5, device=device)
    x[0, 1, 2, 2] = float("inf")
    w = torch.rand(8, 4, 3, 3, device=device) + 0.1
    out = zeroskip.conv2d(x, w, padding=1, algo="igemm")
    assert torch.isinf(torch.nn.functional.conv2d(x, w, padding=1)[0, :, 2, 2]).all()
    assert torch.isnan(out[0, :, 1:4, 1:4]).all()
    assert torch.isfinite(out[0, :, 5, 5]).all()


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


@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("algo", ["ecr", "igemm"])
def test_nan_propagates_through_activation_and_max_pool(algo, activation, device):
    """F.relu and F.max_pool2d keep NaN; the fused epilogue must too (no NaN-dropping max)."""
    x = sparse((1, 2, 6, 6), 0.5, device=device)
    x[0, 0, 1, 1] = float("nan")
    w = torch.randn(3, 2, 1, 1, device=device)
    out = zeroskip.conv2d_pool(x, w, activation=activation, pool="max", pool_size=2, algo=algo)
    ref = reference(x, w, None, activation=activation, pool="max", pool_size=2)
    assert torch.equal(torch.isnan(out.cpu()), torch.isnan(ref))
    assert torch.isnan(out[0, :, 0, 0]).all()


def test_grad_recording_is_not_silently_dropped(device):
    x = sparse((1, 3, 6, 6), 0.5, device=device)
    w = torch.randn(4, 3, 3, 3, device=device, requires_grad=True)
    out = zeroskip.conv2d(x, w)                  # auto: falls back to the torch path, keeps grad
    assert out.requires_grad and out.grad_fn is not None
    with pytest.raises(RuntimeError, match="algo='ecr' has no backward"):
        zeroskip.conv2d(x, w, algo="ecr")
    with torch.no_grad():
        assert rel_err(zeroskip.conv2d(x, w, algo="ecr"), reference(x, w, None)) <= TOL[torch.float32]


def test_auto_falls_back_for_huge_pool_windows(device):
    x = sparse((1, 2, 18, 18), 0.5, device=device)
    w = torch.randn(3, 2, 1, 1, device=device)
    out = zeroskip.conv2d_pool(x, w, pool_size=17)          # 289 positions > one tile's 256
    assert rel_err(out, reference(x, w, None, activation="relu", pool="max", pool_size=17)) <= TOL[torch.float32]
    with pytest.raises(ValueError, match="fuses windows of at most 256"):
        zeroskip.conv2d_pool(x, w, pool_size=17, algo="igemm")


def test_images_past_int32_indexing_are_refused():
    # meta tensors: the geometry without the 8.6 GB; 63 * 34.1M > 2**31 - 1
    x = torch.empty(1, device="meta").as_strided((1, 64, 2, 2), (0, 34_100_000, 2, 1))
    w = torch.empty(4, 64, 1, 1, device="meta")
    with pytest.raises(ValueError, match="indexes images in int32"):
        zeroskip.conv2d(x, w, algo="igemm")


@pytest.mark.parametrize("split", [2, 3, 40])
@pytest.mark.parametrize("pool", [None, "max", "avg"])
def test_split_k_equals_reference(split, pool, device, poisoned):
    """Split-K partial tiles summed by the reduce kernel, then the same epilogue; 40 splits of 27
    (tap, chunk) iterations leaves some programs without work, whose partials must count as 0."""
    ig = _direct()
    x = sparse((2, 36, 5, 6), 0.4, device=device)       # 36 channels: 3 chunks of 16, 9 taps
    w = torch.randn(24, 18, 3, 3, device=device)        # groups=2: 12 outputs per group
    b = torch.randn(24, device=device)
    spec = check_conv(x, w, b, 1, 1, 1, 2)
    if pool:
        spec = with_pool(spec, pool, 3, 2, 1)            # overlapping windows: 16 rows each
    out = ig.conv(x, w, b, spec, "relu6", "igemm", ig.Config(**SMALL), split=split)
    ref = reference(x, w, b, 1, 1, 1, 2, "relu6", pool, 3, 2, 1)
    assert not torch.isnan(out).any()
    assert rel_err(out, ref) <= TOL[torch.float32]


def test_split_k_candidates_only_for_few_tiles():
    from zeroskip.kernels import split_k
    ig = _direct()
    deep = check_conv(torch.empty(1, 512, 14, 14), torch.empty(512, 512, 3, 3), None, 1, 1, 1, 1)
    wide = check_conv(torch.empty(1, 64, 224, 224), torch.empty(64, 64, 3, 3), None, 1, 1, 1, 1)
    options = split_k.candidates(deep, torch.float16, ig.Config)
    assert options and all(s > 1 for _, s in options)
    # 196 pixels, 512 channels: 64x64 tiles give 32 programs; every option keeps 4+ iterations
    assert all(3 * 3 * (512 // c.block_k) // s >= 4 for c, s in options)
    assert split_k.candidates(wide, torch.float16, ig.Config) == []
    with pytest.raises(ValueError, match="split must be a positive int"):
        ig.conv(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 1, 1), None,
                check_conv(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 1, 1), None, 1, 0, 1, 1), None, "igemm", split=0)


@pytest.mark.parametrize("cin, kernel, algo, tf32, want", [
    (64, 3, "igemm", False, True),      # VGG-19 features.2 / .5: K = 576
    (65, 3, "igemm", False, False),     # K = 585: per-chunk sums
    (512, 1, "igemm", False, True),     # a 1x1 conv, K = 512
    (64, 3, "ecr", False, False),       # the CUDA-core zero-skipping path
    (64, 3, "igemm", True, False),      # TF32: one product per chunk
])
def test_running_sums_only_for_short_fp32_reductions(cin, kernel, algo, tf32, want, monkeypatch):
    """The dense path's 3xTF32 sums go to running tensor-core accumulators only up to RUNNING_MAX_K,
    where their dropped low bits stay near 1.3e-6 (VGG-19 features.2 on an H100)."""
    from zeroskip.kernels import direct, launch
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    x = torch.zeros(1, cin, 8, 8)
    w = torch.zeros(16, cin, kernel, kernel)
    spec = check_conv(x, w, None, 1, kernel // 2, 1, 1)
    prec = launch.precision(algo, x.dtype)
    run = direct._Launch(x, w, w, x, x, spec, None, algo, prec, False)
    assert run.switches["RUNNING"] is want


@pytest.mark.parametrize("tuner, dtype, tf32", [("_conv_tuned_16", torch.float16, False),
                                                ("_conv_tuned_16", torch.bfloat16, False),
                                                ("_conv_tuned_32", torch.float32, False),
                                                ("_conv_tuned_tf32", torch.float32, True)])
def test_every_tile_config_at_vgg_size(tuner, dtype, tf32, device, monkeypatch):
    """Every config the dense path's tuner may pick, run alone on a VGG-19 conv + relu + pool (256
    channels, 28x28, batch 4, channels_last): other tests run only the config a tuner picks. GPU
    only: the interpreter would take hours."""
    if device == "cpu":
        pytest.skip("GPU sizes")
    from helpers import TOL_TF32
    from zeroskip.kernels import implicit_gemm
    direct = _direct()
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    x = sparse((4, 256, 28, 28), 0.5, dtype, device).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(256, 256, 3, 3, device=device) / 48).to(dtype).contiguous(memory_format=torch.channels_last)
    b = torch.randn(256, device=device).to(dtype)
    spec = with_pool(check_conv(x, w, b, 1, 1, 1, 1), "max", 2, 2, 0)
    ref = reference(x, w, b, 1, 1, 1, 1, "relu", "max", 2, 2, 0)
    for cfg in getattr(implicit_gemm, tuner).configs:
        k = cfg.kwargs
        out = direct.conv(x, w, b, spec, "relu", "igemm", direct.Config(k["BLOCK_M"], k["BLOCK_N"], k["BLOCK_K"],
                                                                       cfg.num_warps, cfg.num_stages), skip=False)
        assert rel_err(out, ref) <= (TOL_TF32 if tf32 else TOL[dtype]), str(cfg)
