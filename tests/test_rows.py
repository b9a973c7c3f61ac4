"""kernels/rows.py: results against the float64 reference on ragged shapes (every output element
written), NaN propagation, which calls it takes, and its place in the dense path's measured choice."""
import pytest
import torch

import zeroskip
from helpers import TOL, reference, rel_err, sparse
from zeroskip.geometry import check_conv, with_pool

# (R, SEG, BLOCK_N, BLOCK_K, warps, stages): both row counts; one warp on the interpreter
CPU_CONFIGS = [(4, 64, 64, 64, 1, 1), (2, 64, 32, 32, 1, 1)]


def _rows():
    from zeroskip.kernels import rows
    return rows


def _configs(device):
    return CPU_CONFIGS if device == "cpu" else list(_rows().TILES)


def _run(x, w, b, spec, activation, config, interpreting):
    from zeroskip.kernels import launch
    rows = _rows()
    y = torch.full((spec.batch, spec.out_channels, spec.result_h, spec.result_w), float("nan"), dtype=x.dtype,
                   device=x.device).to(memory_format=torch.channels_last)
    act = {None: 0, "relu": 1, "relu6": 2}[activation]
    return rows.conv(x, launch.packed_weight(w), b, y, spec, act, interpreting, config)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", [
    # (n, c, h, w, cout, padding, pool, activation, bias): widths past one 64-pixel tile, heights
    # not a multiple of the rows per tile, odd conv maps under the pool, channels past one chunk
    (2, 20, 9, 70, 72, 1, "max", "relu", True),
    (1, 40, 11, 13, 24, 1, None, None, False),
    (1, 16, 10, 66, 8, 0, "max", "relu6", True),
    (1, 24, 7, 9, 40, 2, None, "relu", True),
])
def test_matches_reference(case, dtype, device):
    n, c, h, w_, cout, pad, pool, act, has_bias = case
    x = sparse((n, c, h, w_), 0.4, dtype=dtype, device=device).to(memory_format=torch.channels_last)
    w = (torch.randn(cout, c, 3, 3, device=device) * 0.2).to(dtype)
    b = torch.randn(cout, device=device).to(dtype) if has_bias else None
    spec = check_conv(x, w, b, 1, pad, 1, 1)
    if pool:
        spec = with_pool(spec, pool, 2, 2, 0)
    ref = reference(x, w, b, 1, pad, 1, 1, act, pool, 2, 2, 0)
    for config in _configs(device):
        out = _run(x, w, b, spec, act, config, device == "cpu")
        assert out.shape == ref.shape
        assert not torch.isnan(out).any(), config          # every element written
        assert rel_err(out, ref) <= TOL[dtype], config


@pytest.mark.parametrize("pool", [None, "max"])
def test_nan_input_propagates_as_in_cudnn(pool, device):
    """Nothing is skipped: a NaN input reaches every output whose window reads it, and a max pool
    keeps it (F.max_pool2d does)."""
    x = sparse((1, 16, 8, 8), 0.5, dtype=torch.float16, device=device).to(memory_format=torch.channels_last)
    x[0, 3, 4, 5] = float("nan")
    w = torch.randn(8, 16, 3, 3, device=device, dtype=torch.float16)
    spec = check_conv(x, w, None, 1, 1, 1, 1)
    if pool:
        spec = with_pool(spec, pool, 2, 2, 0)
    ref = reference(x, w, None, 1, 1, 1, 1, "relu", pool, 2, 2, 0)
    out = _run(x, w, None, spec, "relu", _configs(device)[0], device == "cpu")
    assert torch.equal(torch.isnan(out).cpu(), torch.isnan(ref))
    assert torch.isnan(ref).sum() > 0


def test_supports_only_the_calls_it_computes():
    rows = _rows()
    x = torch.empty(1, 16, 8, 8, dtype=torch.float16).to(memory_format=torch.channels_last)
    w = torch.empty(8, 16, 3, 3, dtype=torch.float16)
    spec = check_conv(x, w, None, 1, 1, 1, 1)
    assert rows.supports(spec, x, "relu") is None and rows.supports(with_pool(spec, "max", 2, 2, 0), x, None) is None
    for call, word in [((spec, x.float(), "relu"), "16-bit"),                                         # fp32
                       ((spec, x.contiguous(), "relu"), "channels_last"),                               # NCHW
                       ((check_conv(x, w, None, 2, 1, 1, 1), x, "relu"), "stride 1"),                   # stride 2
                       ((check_conv(x, w, None, 1, 2, 2, 1), x, "relu"), "dilation 1"),                 # dilation 2
                       ((check_conv(x, w[:, :8], None, 1, 1, 1, 2), x, "relu"), "groups=1"),            # groups 2
                       ((check_conv(x, torch.empty(8, 16, 5, 5, dtype=torch.float16), None, 1, 2, 1, 1), x, None),
                        "3x3"),
                       ((with_pool(spec, "avg", 2, 2, 0), x, "relu"), "max pool"),
                       ((with_pool(spec, "max", 3, 2, 0), x, "relu"), "max pool"),
                       ((with_pool(spec, "max", 2, 1, 0), x, "relu"), "max pool"),
                       ((with_pool(spec, "max", 2, 2, 1), x, "relu"), "max pool")]:
        assert word in rows.supports(*call)


def test_dense_path_offers_rows_and_runs_it_when_picked(monkeypatch, device):
    """The dense path measures rows against the direct kernel (split_k.pick); when rows is
    picked, its result is what the call returns."""
    if device != "cpu":
        pytest.skip("the measured choice itself runs on the GPU in test_dense_path_result_on_gpu")
    from zeroskip import dispatch, runtime
    from zeroskip.kernels import direct, split_k
    rows = _rows()
    offered, ran = [], []
    real = rows.conv

    def pick(key, dense, options):
        offered.extend(option for option, _ in options())
        return direct.Option("rows")

    def conv(*args):
        ran.append(True)
        return real(*args, True, CPU_CONFIGS[0])      # the interpreter's one config
    monkeypatch.setattr(split_k, "pick", pick)
    monkeypatch.setattr(rows, "conv", conv)
    monkeypatch.setattr(runtime, "interpreting", lambda: False)   # the GPU's dense path
    monkeypatch.setattr(dispatch, "kernels_can_run", lambda device: True)
    x = sparse((1, 16, 9, 12), 0.5, dtype=torch.float16).to(memory_format=torch.channels_last)
    w = torch.randn(8, 16, 3, 3, dtype=torch.float16)
    b = torch.randn(8, dtype=torch.float16)
    out = zeroskip.conv2d_pool(x, w, b, padding=1, activation="relu", pool_size=2, algo="igemm")
    assert direct.Option("rows") in offered and ran == [True]
    assert rel_err(out, reference(x, w, b, 1, 1, 1, 1, "relu", "max", 2, 2, 0)) <= TOL[torch.float16]


def test_dense_path_result_on_gpu(device):
    """Whatever the measured choice (rows, direct tiles or split-K), the result is right."""
    if device != "cuda":
        pytest.skip("the dense path's measured choice runs on the GPU")
    for dtype in (torch.float16, torch.bfloat16):
        x = sparse((2, 64, 30, 70), 0.4, dtype=dtype, device=device).to(memory_format=torch.channels_last)
        w = (torch.randn(64, 64, 3, 3, device=device) * 0.1).to(dtype)
        b = torch.randn(64, device=device).to(dtype)
        out = zeroskip.conv2d_pool(x, w, b, padding=1, activation="relu", pool_size=2, algo="igemm")
        assert rel_err(out, reference(x, w, b, 1, 1, 1, 1, "relu", "max", 2, 2, 0)) <= TOL[dtype]
        out = zeroskip.conv2d(x, w, b, padding=1, algo="igemm")
        assert rel_err(out, reference(x, w, b, 1, 1, 1, 1)) <= TOL[dtype]


def test_dense_kernel_names_what_the_measurement_kept(monkeypatch):
    """direct.dense_kernel reads split_k.pick's record per geometry and input dtype (bench notes it
    as "igemm ran ...")."""
    from zeroskip.kernels import direct, split_k
    split_k.clear()
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    times = {}
    monkeypatch.setattr(split_k, "graph_ms", lambda fn, quantiles=None: times[fn])
    x = torch.empty(1, 16, 8, 8, dtype=torch.float16).to(memory_format=torch.channels_last)
    spec = check_conv(x, torch.empty(8, 16, 3, 3, dtype=torch.float16), None, 1, 1, 1, 1)
    other = check_conv(x, torch.empty(8, 16, 3, 3, dtype=torch.float16), None, 1, 0, 1, 1)
    dense, rows_fn, split_fn = (lambda: None), (lambda: None), (lambda: None)
    times.update({dense: 0.02, rows_fn: 0.01, split_fn: 0.03})
    split4 = direct.Option("split-K", direct.Config(), 4)
    options = lambda: [(direct.Option("rows"), rows_fn), (split4, split_fn)]  # noqa: E731
    assert direct.dense_kernel(spec, torch.float16) is None
    split_k.pick((spec, torch.float16), dense, options)
    split_k.pick((other, torch.float16), dense, lambda: [(split4, split_fn)])
    split_k.pick((spec, torch.bfloat16), dense, lambda: [])
    times.update({split_fn: 0.001})
    split_k.pick((other, torch.bfloat16), dense, lambda: [(split4, split_fn)])
    assert direct.dense_kernel(spec, torch.float16) == "rows"
    assert direct.dense_kernel(other, torch.float16) == "direct"
    assert direct.dense_kernel(spec, torch.bfloat16) == "direct"
    assert direct.dense_kernel(other, torch.bfloat16) == "direct, split-K 4"
    split_k.clear()
