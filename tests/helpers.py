"""Float64 references, tolerances and sparse inputs shared by the tests."""
import torch
import torch.nn.functional as F

# Normwise relative error ||out - ref|| / ||ref|| allowed per dtype (fp32 means fp32 accuracy).
TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}
TOL_TF32 = 2e-3


def rel_err(out, ref):
    ref = ref.detach().double().cpu()
    diff = (out.detach().double().cpu() - ref).norm()
    scale = ref.norm()
    return (diff / scale).item() if scale > 0 else diff.item()


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
