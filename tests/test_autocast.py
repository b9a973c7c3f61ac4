"""torch.autocast: the ops, zeroskip.nn modules and converted models cast as F.conv2d does."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zeroskip
from zeroskip import functional, library
from helpers import TOL, reference, rel_err, sparse


@pytest.fixture
def half(device):
    """An fp16 autocast region on the test's device (CPU autocast takes fp16 too)."""
    return lambda: torch.autocast(device, dtype=torch.float16)


@pytest.mark.parametrize("density", [0.3, 0.9])
@pytest.mark.parametrize("op", ["conv2d", "conv2d_pool"])
@pytest.mark.parametrize("route", [zeroskip, library], ids=["functional", "custom-op"])
def test_ops_cast_like_f_conv2d(device, half, density, op, route):
    x = sparse((1, 8, 8, 8), density, device=device)
    w, b = torch.randn(16, 8, 3, 3, device=device) / 8, torch.randn(16, device=device)
    pool = dict(pool="max", pool_size=2) if op == "conv2d_pool" else {}
    with torch.no_grad(), half():
        out = getattr(route, op)(x, w, b, padding=1, activation="relu", **pool)
        want_dtype = F.conv2d(x, w, b, padding=1).dtype
    assert out.dtype == want_dtype == torch.float16
    ref = reference(x.half(), w.half(), b.half(), padding=1, activation="relu", pool=pool.get("pool"))
    assert rel_err(out, ref) <= TOL[torch.float16]


def test_float64_and_disabled_regions_are_not_cast(device, half):
    x64 = torch.rand(1, 4, 6, 6, dtype=torch.float64, device=device)
    w64 = torch.randn(4, 4, 3, 3, dtype=torch.float64, device=device)
    x, w = x64.float(), w64.float()
    with torch.no_grad(), half():
        assert functional.autocast_args(x64, w64, None)[0].dtype == torch.float64  # as F.conv2d: fp64 stays
        with torch.autocast(device, enabled=False):
            assert zeroskip.conv2d(x, w, padding=1).dtype == torch.float32
        # the custom op itself computes in its inputs' dtype, as its fake impl promises
        direct = torch.ops.zeroskip.conv2d(x, w, None, [1, 1], [1, 1], "", [1, 1], 1, "", "auto")
    assert direct.dtype == torch.float32


def test_weight_cast_is_cached_and_follows_edits(device, half):
    x, w = torch.rand(1, 4, 6, 6, device=device), torch.randn(4, 4, 3, 3, device=device)
    with torch.no_grad(), half():
        first = functional.autocast_args(x, w, None)[1]
        assert functional.autocast_args(x, w, None)[1] is first  # one cast per weight
        w.mul_(2)  # an in-place edit: the next call casts again
        again = functional.autocast_args(x, w, None)[1]
    assert again is not first and torch.equal(again, (w.half()))
    with half():  # where autograd records, the cast is made on every call (it is part of the graph)
        w.requires_grad_()
        assert functional.autocast_args(x, w, None)[1] is not functional.autocast_args(x, w, None)[1]


def test_converted_model_runs_under_autocast(device, half):
    """Converted convs beside unconverted ones: fp16 activations meet fp32 parameters."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                          nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 4, 1)).to(device).eval()
    model[3].running_var.uniform_(0.5, 2)
    x = sparse((2, 3, 8, 8), 0.8, device=device)
    with torch.no_grad():
        ref = model.double()(x.double()).float()
        model.float()
        zeroskip.convert_(model, x, filter_fn=lambda name, module: name != "0")
        assert type(model[0]) is nn.Conv2d and isinstance(model[2], zeroskip.nn.ConvActPool)
        with half():
            out = model(x)
    assert out.dtype == torch.float16
    assert rel_err(out, ref) <= TOL[torch.float16]


def test_compiled_converted_model_under_autocast(device, half):
    """torch.compile(fullgraph=True) traces the casts: same dtype and values as the eager converted model."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2)).to(device).eval()
    x = sparse((1, 3, 8, 8), 0.7, device=device)
    zeroskip.convert_(model, x, filter_fn=lambda name, module: name != "0")
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad(), half():
        out, eager = compiled(x), model(x)
    assert out.dtype == eager.dtype == torch.float16
    assert rel_err(out, eager.double()) <= TOL[torch.float16]
