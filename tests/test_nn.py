"""zeroskip.nn modules and the custom ops under them (zeroskip.library), against torch modules."""
import copy
import time

import pytest
import torch
from torch import nn

import zeroskip
from helpers import TOL, rel_err, sparse
from zeroskip.nn import Conv2d, ConvActPool

POOLS = [nn.MaxPool2d(2), nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(2), nn.AvgPool2d(3, 2, 1)]
ACTS = [nn.ReLU(), nn.ReLU6(), None]


@pytest.fixture(autouse=True)
def exact_fp32():
    """Float64 references need fp32 convs on CUDA too (cuDNN would use TF32)."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = old


def _reference(modules, x):
    return nn.Sequential(*[copy.deepcopy(m) for m in modules if m is not None]).double()(x.double())


def test_state_dict_round_trip():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    for module in (Conv2d(3, 8, 3, padding=1, activation="relu"), ConvActPool(3, 8, 3, padding=1)):
        assert module.load_state_dict(conv.state_dict()) is not None
        assert list(module.state_dict()) == ["weight", "bias"]
        assert torch.equal(module.weight, conv.weight)
        back = nn.Conv2d(3, 8, 3, padding=1)
        back.load_state_dict(module.state_dict())
        assert torch.equal(back.bias, conv.bias)
    nobias = nn.Conv2d(3, 8, 3, bias=False)
    assert list(Conv2d.from_conv(nobias).state_dict()) == ["weight"]


def test_parameters_are_shared():
    conv = nn.Conv2d(3, 4, 3)
    module = ConvActPool.from_modules(conv, nn.ReLU(), nn.MaxPool2d(2))
    assert module.weight is conv.weight and module.bias is conv.bias
    assert Conv2d.from_conv(conv).weight is conv.weight
    assert not Conv2d.from_conv(conv.eval()).training


@pytest.mark.parametrize("act", ACTS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize("pool", POOLS, ids=repr)
def test_from_modules_matches_torch(pool, act, device):
    conv = nn.Conv2d(3, 8, 3, padding=1).to(device)
    x = sparse((1, 3, 16, 16), 0.5, device=device)
    ref = _reference([conv, act, pool], x)
    for algo in ("ecr", "torch"):
        out = ConvActPool.from_modules(conv, act, pool, algo=algo)(x)
        assert out.shape == ref.shape
        assert rel_err(out, ref) <= TOL[torch.float32], algo


@pytest.mark.parametrize("act", ACTS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize("args", [dict(padding=1), dict(padding="same", kernel_size=2, bias=False),
                                  dict(stride=2, dilation=2, groups=3)], ids=str)
def test_conv2d_from_conv_matches_torch(args, act, device):
    args = {"kernel_size": 3, **args}
    conv = nn.Conv2d(6, 6, **args).to(device)
    x = sparse((1, 6, 12, 12), 0.5, device=device)
    module = Conv2d.from_conv(conv, zeroskip.nn.activation_name(act), algo="ecr")
    assert rel_err(module(x), _reference([conv, act], x)) <= TOL[torch.float32]


def test_unbatched_and_channels_last(device):
    conv = nn.Conv2d(3, 4, 3, padding=1).to(device)
    module = ConvActPool.from_modules(conv, nn.ReLU(), nn.MaxPool2d(2), algo="ecr")
    x = sparse((1, 3, 8, 8), 0.5, device=device)
    ref = _reference([conv, nn.ReLU(), nn.MaxPool2d(2)], x)
    assert rel_err(module(x[0]), ref[0]) <= TOL[torch.float32]
    out = module(x.to(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(out, ref) <= TOL[torch.float32]


@pytest.mark.parametrize("bad, match", [
    (lambda: Conv2d(3, 4, 3, padding_mode="reflect"), "padding_mode"),
    (lambda: Conv2d.from_conv(nn.Conv2d(3, 4, 3, padding_mode="circular")), "padding_mode"),
    (lambda: ConvActPool(3, 4, 3, padding_mode="replicate"), "padding_mode"),
    (lambda: Conv2d(3, 4, 3, activation="gelu"), "activation"),
    (lambda: Conv2d(3, 4, 3, algo="fast"), "algo"),
    (lambda: ConvActPool(3, 4, 3, pool="min"), "pool"),
    (lambda: ConvActPool(3, 4, 3, pool_size=2, pool_padding=2), "pool_padding"),
    (lambda: _fuse(nn.ReLU(), nn.MaxPool2d(3, dilation=2)), "dilation"),
    (lambda: _fuse(nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)), "ceil_mode"),
    (lambda: _fuse(nn.ReLU(), nn.MaxPool2d(2, return_indices=True)), "return_indices"),
    (lambda: _fuse(nn.ReLU(), nn.AvgPool2d(2, ceil_mode=True)), "ceil_mode"),
    (lambda: _fuse(nn.ReLU(), nn.AvgPool2d(3, 2, 1, count_include_pad=False)), "count_include_pad"),
    (lambda: _fuse(nn.ReLU(), nn.AvgPool2d(2, divisor_override=3)), "divisor_override"),
    (lambda: _fuse(nn.Sigmoid(), nn.MaxPool2d(2)), "act"),
    (lambda: _fuse(nn.ReLU(), nn.AdaptiveAvgPool2d(1)), "pool"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_refused_configurations(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def _fuse(act, pool):
    return ConvActPool.from_modules(nn.Conv2d(3, 4, 3), act, pool)


def test_extra_repr():
    text = repr(ConvActPool(3, 4, 3, activation="relu6", pool="avg", pool_size=3, pool_stride=2, algo="ecr"))
    for part in ("activation='relu6'", "pool='avg'", "pool_size=(3, 3)", "pool_stride=(2, 2)", "algo='ecr'"):
        assert part in text
    assert "activation=None, algo='auto'" in repr(Conv2d(3, 4, 3))


@pytest.mark.parametrize("algo", ["torch", "ecr"])
def test_backward_matches_torch(algo, device):
    conv = nn.Conv2d(3, 4, 3, padding=1).to(device)
    x = sparse((1, 3, 8, 8), 0.5, device=device).requires_grad_()
    for act, pool in ((nn.ReLU6(), nn.MaxPool2d(3, 2, 1)), (None, nn.AvgPool2d(2)), (nn.ReLU(), None)):
        module = (ConvActPool.from_modules(conv, act, pool, algo) if pool else
                  Conv2d.from_conv(conv, zeroskip.nn.activation_name(act), algo))
        ref_mods = [copy.deepcopy(m) for m in (conv, act, pool) if m is not None]
        ref_x = x.detach().double().requires_grad_()
        ref = nn.Sequential(*ref_mods).double()(ref_x)
        g = torch.randn(ref.shape, dtype=torch.float64, device=device)
        ref.backward(g)
        x.grad = conv.weight.grad = conv.bias.grad = None
        module(x).backward(g.float())
        assert rel_err(x.grad, ref_x.grad) <= TOL[torch.float32]
        assert rel_err(conv.weight.grad, ref_mods[0].weight.grad) <= TOL[torch.float32]
        assert rel_err(conv.bias.grad, ref_mods[0].bias.grad) <= TOL[torch.float32]


@pytest.mark.parametrize("grad", [False, True])
def test_compile_fullgraph_matches_eager(grad, device):
    model = nn.Sequential(ConvActPool(1, 4, 3, pool="avg", algo="ecr"), Conv2d(4, 4, 3, activation="relu6", algo="ecr"))
    model.to(device)
    x = sparse((1, 1, 10, 10), 0.6, device=device)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.set_grad_enabled(grad):
        out, ref = compiled(x), model(x)
    assert out.shape == ref.shape == (1, 4, 2, 2)
    assert rel_err(out, ref) <= TOL[torch.float32]


def test_opcheck(device):
    x = sparse((1, 2, 5, 5), 0.5, device=device)
    w, b = torch.randn(3, 2, 3, 3, device=device), torch.randn(3, device=device)
    start = time.perf_counter()
    torch.library.opcheck(torch.ops.zeroskip.conv2d.default,
                          (x, w, b, [1, 1], [1, 1], "", [1, 1], 1, "relu", "ecr"))
    if time.perf_counter() - start > 20:
        pytest.skip("opcheck took > 20 s here; conv2d passed, conv2d_pool not checked")
    torch.library.opcheck(torch.ops.zeroskip.conv2d_pool.default,
                          (x.to(memory_format=torch.channels_last), w, None, [1, 1], [0, 0], "same",
                           [1, 1], 1, "", "max", [2, 2], [2, 2], [0, 0], "ecr"))


def test_cuda_graph_capture(device):
    if device != "cuda":
        pytest.skip("CUDA graphs need --device cuda")
    model = nn.Sequential(ConvActPool(3, 8, 3, padding=1, algo="ecr_tc"), Conv2d(8, 8, 3, algo="ecr")).cuda()
    x = sparse((2, 3, 16, 16), 0.5, device="cuda")
    with torch.no_grad():
        ref = model(x)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = model(x)
        x.copy_(sparse((2, 3, 16, 16), 0.5, device="cuda"))
        graph.replay()
        assert rel_err(out, model(x)) <= 1e-5 and rel_err(out, ref) > 0


@pytest.mark.parametrize("shape", [(2, 8, 5, 7), (1, 64, 1, 1), (3, 1, 4, 4), (0, 4, 3, 3), (8, 5, 6)])
def test_dense_strides_match_torch_empty(shape):
    """The custom ops promise torch.empty's strides; library computes them without allocating."""
    from zeroskip import library
    formats = [torch.contiguous_format] + ([torch.channels_last] if len(shape) == 4 else [])
    for fmt in formats:
        assert library._dense_strides(shape, fmt) == torch.empty(shape, device="meta", memory_format=fmt).stride()
