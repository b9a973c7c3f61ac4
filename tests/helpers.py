"""Float64 references, tolerances and sparse inputs shared by the tests."""
import types

import torch
import torch.nn.functional as F

from zeroskip.accuracy import TOLERANCE
from zeroskip.accuracy import rel_err  # noqa: F401  (the tests' error measure)

# Normwise relative error allowed per dtype (fp32 means fp32 accuracy), and with TF32 on.
TOL = {torch.float32: TOLERANCE["fp32"], torch.float16: TOLERANCE["fp16"], torch.bfloat16: TOLERANCE["bf16"]}
TOL_TF32 = TOLERANCE["tf32"]


def sparse(shape, density, dtype=torch.float32, device="cpu"):
    """ReLU-like input: exactly-zero entries with probability 1 - density, fresh every call."""
    x = torch.randn(shape, dtype=torch.float64).abs() + 0.05
    x = x * (torch.rand(shape, dtype=torch.float64) < density)
    return x.to(dtype=dtype, device=device)


def activate(y, activation):
    if activation == "relu":
        return F.relu(y)
    if activation == "relu6":
        return F.relu6(y)
    return y


def reference(x, w, b, stride=1, padding=0, dilation=1, groups=1, activation=None,
              pool=None, pool_size=2, pool_stride=None, pool_padding=0):
    """F.conv2d -> activation -> pool on float64 CPU copies."""
    x, w = x.detach().double().cpu(), w.detach().double().cpu()
    b = None if b is None else b.detach().double().cpu()
    y = activate(F.conv2d(x, w, b, stride, padding, dilation, groups), activation)
    if pool == "max":
        y = F.max_pool2d(y, pool_size, pool_stride, pool_padding)
    elif pool == "avg":
        y = F.avg_pool2d(y, pool_size, pool_stride, pool_padding)
    return y


def snapshot(model):
    """What convert_ could change, per module (the tree with duplicates): its type, identity and
    every attribute, dicts (children, Parameters, buffers, hooks) by content; tensors by identity,
    a copy of their values and requires_grad; other values by identity."""
    def item(value):
        if isinstance(value, torch.Tensor):
            return id(value), value.detach().clone(), value.requires_grad
        return id(value), None, None

    return [(name, id(m), type(m),
             {key: {k: item(v) for k, v in value.items()} if isinstance(value, dict) else item(value)
              for key, value in vars(m).items()})
            for name, m in model.named_modules(remove_duplicate=False)]


def assert_same(before, after):
    """snapshot() results equal: the same objects, and tensors bit for bit."""
    def same(a, b):
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        (ia, ta, ga), (ib, tb, gb) = a, b
        if ta is None:
            return ia == ib and tb is None
        return (ia == ib and ga == gb and ta.dtype == tb.dtype and ta.shape == tb.shape
                and ta.stride() == tb.stride() and torch.equal(bits(ta), bits(tb)))

    def bits(t):
        return t.contiguous().reshape(-1).view(torch.uint8)

    assert [m[:3] for m in before] == [m[:3] for m in after], "module tree changed"
    for (name, _, _, attrs_a), (_, _, _, attrs_b) in zip(before, after):
        assert attrs_a.keys() == attrs_b.keys(), f"{name!r}: attributes {set(attrs_a) ^ set(attrs_b)} changed"
        for key in attrs_a:
            assert same(attrs_a[key], attrs_b[key]), f"{name!r}.{key} changed"


def on_device(x, device="cuda"):
    """What dispatch reads from an input, as if x were on `device` (a CUDA GPU by default): device,
    dtype, layout flags, shape and strides. x may be a meta tensor: no memory, any size."""
    return types.SimpleNamespace(device=torch.device(device), dtype=x.dtype, is_contiguous=x.is_contiguous,
                                 shape=x.shape, stride=x.stride)


def fake_row(op="conv2d", algo="auto", ours=50.0, base=100.0, err=1e-7, dtype="fp32", layer=None, s=0.5):
    """A benchmark result row (zeroskip.bench.run.make_row) of VGG-19's second conv with made-up times."""
    from zeroskip.bench import run
    from zeroskip.bench.suites import load_suite
    layer = layer or load_suite("vgg19")[1]
    env = {"gpu": "fake", "torch": "x", "triton": "y", "cudnn": 1, "date": "2025-01-01T00:00:00"}
    return run.make_row(layer, op, dtype, 4, s, algo, ours, base, None, err, env, ["a note"])
