"""kernels/compact.py (per-tile channel compaction): results against the float64 reference with
every output element written (poisoned outputs), skipping equal to the same kernel dense, pass 1's
live lists against the PyTorch reference, NaN / inf semantics, and the checks on calls and configs."""
import dataclasses

import pytest
import torch

from helpers import TOL, TOL_TF32, reference, rel_err, sparse
from zeroskip.geometry import check_conv, with_pool


def _kernels():
    from zeroskip.kernels import compact, compact_pack, launch
    return compact, compact_pack, launch


@pytest.fixture
def poisoned(monkeypatch):
    launch = _kernels()[2]
    real = launch._empty
    monkeypatch.setattr(launch, "_empty", lambda *a: real(*a).fill_(float("nan")))


def blobs(shape, live, dtype=torch.float32, device="cpu", block=5):
    """ReLU-like input whose channels are non-zero only in random block x block patches (each live
    with probability `live`): whole channels die over many tiles' receptive fields, the case the
    kernel exists for."""
    n, c, h, w = shape
    patches = (torch.rand(n, c, -(-h // block), -(-w // block)) < live).double()
    mask = patches.repeat_interleave(block, 2).repeat_interleave(block, 3)[:, :, :h, :w]
    return (sparse(shape, 0.7, torch.float64) * mask).to(dtype=dtype, device=device)


def _config(**kw):
    compact = _kernels()[0]
    base = dict(th=8, tw=8, block_n=32, chunk=16, kpack=16, dk=16, group=16, split=1, num_warps=1, num_stages=1,
                pack_split=1, pack_warps=1)
    return compact.Config(**{**base, **kw})


def _run(x, w, b, pool, activation, cfg, skip=True, padding=1):
    compact = _kernels()[0]
    spec = check_conv(x, w, b, 1, padding, 1, 1)
    if pool:
        spec = with_pool(spec, "max", 2, 2, 0)
    return compact.run(x, w, b, spec, activation, cfg, skip), spec


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", [
    # (n, c, h, w, cout, pool, activation, bias, channels_last, padding, config): odd maps past
    # whole tiles, two channel groups, output channels past a block, dots of two chunks (runs of
    # whole chunks, then the rest), 8x16 tiles, pass 1 split over programs
    (2, 32, 13, 11, 40, None, "relu", True, False, 1, {}),
    (1, 32, 9, 15, 24, "max", "relu", True, True, 1, dict(group=32, kpack=32, tw=16, pack_split=2)),
    (2, 24, 10, 10, 16, "max", None, False, False, 1, dict(group=32, dk=32, block_n=16, kpack=32)),
    (1, 20, 11, 7, 24, None, "relu6", True, True, 0, dict(th=4, tw=8)),
])
def test_matches_reference(case, dtype, device, poisoned):
    n, c, h, w_, cout, pool, act, has_bias, cl, pad, cfg = case
    x = blobs((n, c, h, w_), 0.3, dtype, device)
    if cl:
        x = x.to(memory_format=torch.channels_last)
    w = (torch.randn(cout, c, 3, 3, device=device) * 0.2).to(dtype)
    b = torch.randn(cout, device=device).to(dtype) if has_bias else None
    out, _ = _run(x, w, b, pool, act, _config(**cfg), padding=pad)
    ref = reference(x, w, b, 1, pad, 1, 1, act, pool, 2, 2, 0)
    assert out.shape == ref.shape and out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    assert not torch.isnan(out).any()  # every element written
    assert rel_err(out, ref) <= TOL[dtype]


@pytest.mark.parametrize("pool", [None, "max"])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 0.9, 1.0, "blobs", "mixed"])
def test_skip_equals_no_skip(density, pool, device, poisoned):
    """Skipping a channel that is zero over a tile's receptive field changes nothing but the order
    of summation; with nothing to skip both runs take the same dense steps and agree bitwise.
    "mixed": the first group of 16 channels dense, the second packed, in the same tiles."""
    shape = (2, 32, 12, 13)
    if density == "mixed":
        x = torch.cat([sparse((2, 16, 12, 13), 0.9, device=device), blobs((2, 16, 12, 13), 0.2, device=device)], 1)
    elif density == "blobs":
        x = blobs(shape, 0.2, device=device)
    else:
        x = sparse(shape, density, device=device)
    w = torch.randn(24, 32, 3, 3, device=device)
    b = torch.randn(24, device=device)
    cfg = _config()
    skip, spec = _run(x, w, b, pool, "relu", cfg)
    dense, _ = _run(x, w, b, pool, "relu", cfg, skip=False)
    assert not torch.isnan(skip).any() and not torch.isnan(dense).any()
    counts = _kernels()[1].pack(x, spec, 8, 8, cfg.group, cfg.chunk, 1)[2]
    if density == "mixed":
        assert bool((counts[:, 0] == 16).all()) and bool((counts[:, 1] < 16).all())
    if bool((counts == 16).all()):
        assert density not in ("blobs", "mixed")  # structured inputs must leave channels to skip
        assert torch.equal(skip, dense)
    else:
        assert rel_err(skip, dense) <= 1e-6
    assert rel_err(skip, reference(x, w, b, 1, 1, 1, 1, "relu", pool, 2, 2, 0)) <= TOL[torch.float32]


@pytest.mark.parametrize("cfg", [dict(kpack=32, group=64, dk=64), dict(kpack=64, group=128, dk=32, split=3),
                                 dict(kpack=32, group=64, dk=16, tw=16, pack_split=2),
                                 dict(kpack=16, group=64, dk=64), dict(chunk=32, kpack=32, group=64, dk=64)])
def test_runs_of_whole_chunks_and_the_rest(cfg, device, poisoned):
    """Dots of kpack live channels (runs of whole chunks, no masks) then the rest a chunk per dot,
    one or two groups per tile, runs of one chunk (kpack = chunk) too: equal to the same kernel
    dense and to float64."""
    x = blobs((2, 128, 12, 13), 0.15, device=device)
    x[:, 8:32] = sparse((2, 24, 12, 13), 0.9, device=device)  # always live: counts past kpack per group
    x[:, 72:96] = sparse((2, 24, 12, 13), 0.9, device=device)
    w = torch.randn(24, 128, 3, 3, device=device)
    b = torch.randn(24, device=device)
    config = _config(**cfg)
    skip, spec = _run(x, w, b, None, "relu", config)
    counts = _kernels()[1].pack(x, spec, config.th, config.tw, config.group, 16, 1, 1)[2].cpu()
    assert bool(((counts >= config.kpack) & (counts < config.group)).any())  # some runs ...
    assert bool((counts % 16 != 0).any())                          # ... and partial last chunks
    dense, _ = _run(x, w, b, None, "relu", config, skip=False)
    assert rel_err(skip, dense) <= 1e-6
    assert rel_err(skip, reference(x, w, b, 1, 1, 1, 1, "relu")) <= TOL[torch.float32]


def test_pack_split_writes_the_same(device):
    """Pass 1 with its chunks shared over 3 programs per (tile, group), gathering 4 chunks per
    block (16 warps), gives the same counts, ids and packed chunks as one program a chunk at a time."""
    _, compact_pack, _ = _kernels()
    x = blobs((1, 64, 11, 9), 0.15, device=device).to(memory_format=torch.channels_last)
    spec = check_conv(x, torch.empty(8, 64, 3, 3, device=device), None, 1, 1, 1, 1)
    assert compact_pack.blocks(True, 8, 8, 3, 3, 64, 16, 16)["GATHER_K"] == 64
    one = compact_pack.pack(x, spec, 8, 8, 64, 16, 1, 1)
    three = compact_pack.pack(x, spec, 8, 8, 64, 16, 3, 16)
    assert torch.equal(one[2], three[2])
    for t, k in enumerate(one[2][:, 0].tolist()):
        if k < 64:
            assert k > 0 and torch.equal(one[1][t, :k], three[1][t, :k])
            chunks = -(-k // 16)
            assert torch.equal(one[0][t, :chunks], three[0][t, :chunks])


@pytest.mark.parametrize("group", [16, 32])
def test_live_lists_match_reference(group, device):
    """Pass 1's counts and channel ids equal the PyTorch reference, for every tile and group."""
    _, compact_pack, _ = _kernels()
    x = blobs((2, 32, 13, 10), 0.25, device=device).to(memory_format=torch.channels_last)
    x[1, 5, 12, 9] = float("nan")                           # NaN is not zero: live
    x[0, 6] = 0
    x[0, 6, 3, 3] = -0.0                                    # -0.0 is zero: dead
    spec = check_conv(x, torch.empty(8, 32, 3, 3, device=device), None, 1, 1, 1, 1)
    p, ids, counts = compact_pack.pack(x, spec, 8, 8, group, 16, 1)
    live = compact_pack.live_lists(x.cpu(), spec, (8, 8))
    assert live.shape == (2 * 2 * 2, 32) and bool(live[-1, 5]) and not bool(live[:4, 6].any())
    want = live.reshape(8, -1, group).sum(-1)
    assert torch.equal(counts.cpu(), want.int())
    assert bool((want < group).any()) and bool((want > 0).any())
    for t in range(8):
        for g in range(32 // group):
            if want[t, g] < group:                          # packed: ascending live channel ids
                got = ids[t, g * group:g * group + int(want[t, g])].cpu()
                assert torch.equal(got, torch.nonzero(live[t, g * group:(g + 1) * group]).flatten().int() + g * group)


@pytest.mark.parametrize("channels_last", [False, True])
def test_packed_values_are_the_receptive_field(channels_last, device):
    """P holds the live channels' receptive-field values, zeros outside the map and past the count
    (NCHW reads a receptive-field row as contiguous lanes, channels_last its channels)."""
    _, compact_pack, _ = _kernels()
    x = blobs((1, 16, 9, 9), 0.3, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    spec = check_conv(x, torch.empty(8, 16, 3, 3, device=device), None, 1, 1, 1, 1)
    p, ids, counts = compact_pack.pack(x, spec, 8, 8, 16, 16, 1)
    padded = torch.nn.functional.pad(x.cpu(), (1, 8, 1, 8))
    for t, (ty, tx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        k = int(counts[t, 0])
        if k in (0, 16):  # nothing to read, or dense (read from x)
            continue
        field = padded[0, :, ty * 8:ty * 8 + 10, tx * 8:tx * 8 + 10].reshape(16, 100)
        chans = ids[t, :k].long().cpu()
        assert torch.equal(p[t, 0, :, :k].cpu(), field[chans].T)
        assert bool((p[t, 0, :, k:].cpu() == 0).all())


def test_work_left_counts_rounded_chunks():
    _, compact_pack, _ = _kernels()
    live = torch.zeros(2, 40, dtype=torch.bool)
    live[0, :3] = True                      # 3 live: one chunk of 16
    live[1, :20] = True
    live[1, 30:36] = True                   # 26 live: two chunks
    # 48 channels per tile after padding to chunks: (16 + 32) / 96
    assert compact_pack.work_left(live, 16) == pytest.approx(0.5)
    # groups of 32: tile 0 keeps 16 + 0, tile 1 32 (22 live) + 16 (4 live)
    assert compact_pack.work_left(live, 16, 32) == pytest.approx(64 / 96)


@pytest.mark.parametrize("pool", [None, "max"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_nan_and_inf_input_are_never_skipped(dtype, pool, device, poisoned):
    """NaN and inf reach every output whose window reads them; fp32 with TF32 off splits an inf into
    inf + NaN (3xTF32, documented in the README), so there those outputs are NaN."""
    x = blobs((1, 32, 16, 16), 0.15, dtype, device)
    x[0, 3, 4, 5] = float("nan")
    x[0, 7, 12, 2] = float("inf")
    w = (torch.rand(16, 32, 3, 3, device=device) * 0.1 + 0.01).to(dtype)
    out, _ = _run(x, w, None, pool, "relu", _config(block_n=16))
    ref = reference(x, w, None, 1, 1, 1, 1, "relu", pool, 2, 2, 0)
    assert torch.isnan(ref).any() and torch.isinf(ref).any()
    if dtype == torch.float32:
        assert torch.equal(torch.isnan(out).cpu(), ~torch.isfinite(ref))
    else:
        assert torch.equal(torch.isnan(out).cpu(), torch.isnan(ref))
        assert torch.equal(torch.isinf(out).cpu(), torch.isinf(ref))


def test_inf_weight_of_a_skipped_channel_contributes_zero(device, poisoned):
    """The documented difference from cuDNN: where channel 0 is zero over a tile's receptive field
    it is skipped, so its inf weight adds 0 there (cuDNN: 0 x inf = NaN); where it is live, NaN."""
    x = blobs((1, 16, 16, 16), 0.5, device=device)
    x[0, 0] = 0
    x[0, 0, 1, 1] = 1.0                      # live only in the top-left tile's field
    w = torch.randn(8, 16, 3, 3, device=device)
    w[:, 0] = float("inf")
    w[1::2, 0] = -float("inf")
    out, _ = _run(x, w, None, None, None, _config(block_n=16))
    finite = w.clone()
    finite[:, 0] = 0
    ref = reference(x, finite, None, 1, 1, 1, 1)
    assert torch.isnan(reference(x, w, None, 1, 1, 1, 1)).all()
    assert not torch.isfinite(out[0, :, :3, :3]).any()      # windows that read the 1.0: +-inf
    assert torch.isnan(out[0, :, :8, :8]).any()             # 0 x inf inside the live tile
    rest = torch.ones(16, 16, dtype=torch.bool)
    rest[:8, :8] = False
    out = out.cpu()
    assert torch.isfinite(out[0][:, rest]).all()
    assert rel_err(out[0][:, rest], ref[0][:, rest]) <= TOL[torch.float32]


@pytest.mark.parametrize("split", [2, 3])
def test_split_equals_one_program_per_tile(split, device, poisoned):
    x = blobs((1, 32, 10, 12), 0.3, device=device)
    w = torch.randn(40, 32, 3, 3, device=device)
    b = torch.randn(40, device=device)
    one, _ = _run(x, w, b, "max", "relu", _config())
    many, _ = _run(x, w, b, "max", "relu", _config(split=split))
    assert rel_err(many, one) <= 1e-6
    assert rel_err(many, reference(x, w, b, 1, 1, 1, 1, "relu", "max", 2, 2, 0)) <= TOL[torch.float32]


def test_tf32_switch(device, poisoned):
    """fp32 follows torch.backends.cudnn.allow_tf32 (the interpreter computes TF32 in fp32)."""
    x = blobs((1, 16, 9, 9), 0.4, device=device)
    w = torch.randn(16, 16, 3, 3, device=device)
    torch.backends.cudnn.allow_tf32 = True
    out, _ = _run(x, w, None, None, "relu", _config(block_n=16))
    assert rel_err(out, reference(x, w, None, 1, 1, 1, 1, "relu")) <= TOL_TF32


def test_supports_names_what_it_cannot_run():
    compact = _kernels()[0]
    x = torch.empty(1, 16, 8, 8)
    spec = check_conv(x, torch.empty(8, 16, 3, 3), None, 1, 1, 1, 1)
    assert compact.supports(spec, torch.float16, "relu") is None
    assert compact.supports(with_pool(spec, "max", 2, 2, 0), torch.float32, None) is None
    assert "stride" in compact.supports(check_conv(x, torch.empty(8, 16, 3, 3), None, 2, 1, 1, 1), torch.float16)
    assert "3x3" in compact.supports(check_conv(x, torch.empty(8, 16, 5, 5), None, 1, 2, 1, 1), torch.float16)
    assert "groups" in compact.supports(check_conv(x, torch.empty(8, 8, 3, 3), None, 1, 1, 1, 2), torch.float16)
    assert "pool" in compact.supports(with_pool(spec, "avg", 2, 2, 0), torch.float16)
    assert "pool" in compact.supports(with_pool(spec, "max", 3, 2, 0), torch.float16)
    assert "float64" in compact.supports(spec, torch.float64)
    assert "gelu" in compact.supports(spec, torch.float16, "gelu")
    with pytest.raises(ValueError, match="stride"):
        compact.conv(x, torch.empty(8, 16, 3, 3), None, check_conv(x, torch.empty(8, 16, 3, 3), None, 2, 1, 1, 1),
                     None)


@pytest.mark.parametrize("bad, match", [
    (dict(th=6), "th must be a power of 2"), (dict(chunk=8), "chunk, dk and block_n must be >= 16"),
    (dict(group=16, dk=32), "group 16 must be a multiple"), (dict(kpack=8), "kpack a multiple of chunk"),
    (dict(split=0), "split must be >= 1"), (dict(th=2, tw=4), "hold 16 pixels"),
    (dict(pack_split=0), "pack_split must be >= 1"),
])
def test_bad_configs_are_refused(bad, match):
    x = torch.empty(1, 16, 8, 8)
    w = torch.empty(8, 16, 3, 3)
    with pytest.raises(ValueError, match=match):
        _run(x, w, None, None, None, _config(**bad))


def test_shared_memory_is_fitted_before_launch(monkeypatch):
    """A config whose pipeline overflows shared memory runs with fewer stages, then narrower dots;
    one that cannot fit even so is refused with the bytes named, before any kernel is launched
    (the fp32 16x8 x 256 config that overflowed an H200 at 245760 bytes runs at 2 stages in 164096)."""
    compact = _kernels()[0]
    from zeroskip.kernels import compact_config
    big = compact.Config(16, 8, 256, 16, 32, 32, 64, split=2, num_warps=8, num_stages=4)
    fitted = compact_config.fit(big, torch.float32, "3xtf32", 232448)
    assert fitted == dataclasses.replace(big, num_stages=2)
    assert compact_config.shared_bytes(fitted, torch.float32, "3xtf32") == 164096
    assert compact_config.fit(big, torch.float16, "ieee", 232448) == big
    wide = compact.Config(16, 16, 128, 16, 64, 32, 512, num_warps=8, num_stages=3)
    assert compact_config.fit(wide, torch.float32, "3xtf32", 232448) == dataclasses.replace(wide, num_stages=2,
                                                                                            kpack=32)
    huge = compact.Config(32, 32, 1024, 16, 64, 128, 128, num_warps=8, num_stages=3)
    with pytest.raises(ValueError, match="bytes of shared memory even at 2 stages"):
        compact_config.fit(huge, torch.float32, "3xtf32", 232448)
    monkeypatch.setattr(compact.runtime, "shared_memory", lambda device: 232448)
    monkeypatch.setattr(compact, "_compact_kernel", None)  # launching would raise a TypeError
    x = torch.zeros(1, 128, 16, 16)
    with pytest.raises(ValueError, match="bytes of shared memory"):
        _run(x, torch.zeros(512, 128, 3, 3), None, None, None, huge, skip=False)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_gpu_tile_configs(dtype, device):
    """On the GPU: the default tiles and the sweep's kinds of change (tile shape, narrow and wide
    blocks, 32-channel chunks, dots of 1-4 chunks, several groups, split tiles and pass 1, a config
    fitted to fewer stages) on a VGG-like layer."""
    if device == "cpu":
        pytest.skip("GPU tile configs (the interpreter runs the small ones above)")
    compact = _kernels()[0]
    x = torch.cat([sparse((2, 64, 30, 29), 0.6, dtype, device), blobs((2, 64, 30, 29), 0.2, dtype, device)], 1)
    x = x.to(memory_format=torch.channels_last) if dtype != torch.float32 else x
    w = (torch.randn(96, 128, 3, 3, device=device) * 0.05).to(dtype)
    b = torch.randn(96, device=device).to(dtype)
    spec = with_pool(check_conv(x, w, b, 1, 1, 1, 1), "max", 2, 2, 0)
    ref = reference(x, w, b, 1, 1, 1, 1, "relu", "max", 2, 2, 0)
    configs = [compact.default_config(spec, dtype),
               compact.Config(8, 16, 64, 16, 64, 64, 128, num_warps=8, num_stages=3),
               compact.Config(16, 8, 256, 16, 32, 32, 64, split=2, num_warps=8, num_stages=4),  # stages lowered
               compact.Config(4, 16, 128, 32, 32, 64, 64, split=4, num_warps=4, num_stages=4, pack_split=3),
               compact.Config(16, 16, 128, 16, 64, 64, 128, num_warps=8, num_stages=3)]
    for cfg in configs:
        out = compact.run(x, w, b, spec, "relu", cfg)
        assert rel_err(out, ref) <= TOL[dtype], cfg


def test_public_algo(device):
    """algo="compact" through zeroskip.conv2d / conv2d_pool: the registry's entry, with the default
    config; a call it cannot run is refused naming the algo and why."""
    import zeroskip
    x = blobs((1, 16, 10, 9), 0.4, device=device)
    w = torch.randn(8, 16, 3, 3, device=device)
    b = torch.randn(8, device=device)
    out = zeroskip.conv2d_pool(x, w, b, padding=1, activation="relu", algo="compact")
    ref = reference(x, w, b, 1, 1, 1, 1, "relu", "max", 2, 2, 0)
    assert rel_err(out, ref) <= TOL_TF32
    with pytest.raises(ValueError, match="compact.*stride"):
        zeroskip.conv2d(x, w, b, stride=2, padding=1, algo="compact")
