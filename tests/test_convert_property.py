"""Property: convert_ on any small CNN built from Conv2d (any geometry, groups, bias), BatchNorm2d
(train or eval, affine or not, running stats or not), ReLU / ReLU6 / F.relu, MaxPool2d / AvgPool2d
(ceil_mode too), nested nn.Sequential and custom forwards (residual adds, chains of modules), shared modules, hooks
and tied weights gives a model with the same output, or raises and leaves the model as it was.
`--slow` runs many more examples."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import zeroskip
from helpers import assert_same, snapshot, sparse
from zeroskip.convert import _run_eval
from zeroskip.undo import Undo


class Residual(nn.Module):
    """relu(bn(conv(x))) + x with F.relu: BN folding through the traced forward."""

    def __init__(self, conv, bn):
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x):
        return F.relu(self.bn(self.conv(x))) + x


class Branches(nn.Module):
    """relu6(bn(conv(x))) and the conv's output again: the BN's input has a second user."""

    def __init__(self, conv, bn):
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x):
        y = self.conv(x)
        return F.relu6(self.bn(y)) - 0.5 * y


class Chain(nn.Module):
    """conv [-> bn] [-> act] [-> pool] applied one by one in a custom forward: folded and fused
    through the trace; with `twice` the activation module is applied again (then it is not absorbed)."""

    def __init__(self, conv, bn, act, pool, twice):
        super().__init__()
        self.conv, self.bn, self.act, self.pool, self.twice = conv, bn, act, pool, twice

    def forward(self, x):
        y = self.conv(x)
        for m in (self.bn, self.act, self.pool):
            if m is not None:
                y = m(y)
        return self.act(y - 0.5) if self.twice and self.act is not None else y


def out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@st.composite
def conv_of(draw, c, h, w, same=False):
    """A Conv2d taking c channels whose output map stays at least 2x2 (the same size with same)."""
    cout = c if same else draw(st.integers(1, 8))
    groups = draw(st.sampled_from([g for g in (1, 2, 4) if c % g == 0 and cout % g == 0]))
    k, s, p, d = (3, 1, 1, 1) if same else (draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 2])),
                                             draw(st.sampled_from([0, 1])), draw(st.sampled_from([1, 2])))
    if min(out_size(h, k, s, p, d), out_size(w, k, s, p, d)) < 2:
        k, s, p, d = 3, 1, 1, 1
    return nn.Conv2d(c, cout, k, s, p, d, groups, bias=draw(st.booleans()))


@st.composite
def bn_of(draw, c):
    bn = nn.BatchNorm2d(c, affine=draw(st.booleans()), track_running_stats=draw(st.sampled_from([True, True, False])))
    with torch.no_grad():
        if bn.track_running_stats:
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return bn.train(draw(st.sampled_from([False, False, False, True])))


@st.composite
def pool_of(draw):
    kind = draw(st.sampled_from([nn.MaxPool2d, nn.AvgPool2d]))
    return kind(2, draw(st.sampled_from([1, 2])), draw(st.sampled_from([0, 1])), ceil_mode=draw(st.booleans()))


def probe(module, x):
    """module's output on x in eval mode (its training flags kept)."""
    return _run_eval(module, (x,))


@st.composite
def cnns(draw):
    torch.manual_seed(draw(st.integers(0, 2**16)))
    batch, c = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    h, w = draw(st.integers(4, 10)), draw(st.integers(4, 10))
    x = sparse((batch, c, h, w), draw(st.sampled_from([0.3, 0.7, 1.0])))
    y, layers = x, []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["run", "run", "residual", "branches", "chain", "shared"]))
        c = y.shape[1]
        if kind == "run":            # conv [-> bn] [-> act] [-> pool], maybe as its own Sequential
            run = [draw(conv_of(c, *y.shape[2:]))]
            cout = run[0].out_channels
            if draw(st.booleans()):
                run.append(draw(bn_of(cout)))
            if draw(st.booleans()):
                run.append(draw(st.sampled_from([nn.ReLU, nn.ReLU6]))())
            if draw(st.booleans()):
                run.append(draw(pool_of()))
            new = [nn.Sequential(*run)] if draw(st.booleans()) else run
        elif kind == "chain":
            conv = draw(conv_of(c, *y.shape[2:]))
            bn = draw(bn_of(conv.out_channels)) if draw(st.booleans()) else None
            act = draw(st.sampled_from([nn.ReLU, nn.ReLU6]))() if draw(st.booleans()) else None
            new = [Chain(conv, bn, act, draw(pool_of()) if draw(st.booleans()) else None, draw(st.booleans()))]
        elif kind in ("residual", "branches"):
            cls = Residual if kind == "residual" else Branches
            new = [cls(draw(conv_of(c, *y.shape[2:], same=kind == "residual")), None)]
            new[0].bn = draw(bn_of(new[0].conv.out_channels))
        else:                        # a module already in the model, used again
            fits = [m for m in layers if isinstance(m, (Residual, nn.Conv2d)) and
                    (m.conv if isinstance(m, Residual) else m).in_channels == c]
            if not fits:
                continue
            new = [draw(st.sampled_from(fits))]
        for m in new:
            try:
                out = probe(m, y)
            except RuntimeError:         # a reused conv whose kernel no longer fits the map: dropped
                break
            if min(out.shape[2:]) < 2:   # a pool that left a 1-pixel map: dropped
                break
            y = out
            layers.append(m)
    model = nn.Sequential(*layers)
    convs = [m for m in model.modules() if type(m) is nn.Conv2d]
    tie = draw(st.sampled_from(["none", "none", "parameter", "storage"]))
    pairs = [(a, b) for a in convs for b in convs if a is not b and a.weight.shape == b.weight.shape]
    if tie != "none" and pairs:
        a, b = draw(st.sampled_from(pairs))
        if tie == "parameter":
            b.weight = a.weight
        else:
            b.weight.data = a.weight.data
    leaves = [m for m in model.modules() if not list(m.children())]
    for m in draw(st.lists(st.sampled_from(leaves), max_size=2)):
        if draw(st.booleans()):
            m.register_forward_hook(lambda mod, args, out: out * 0.5)
        else:
            m.register_forward_pre_hook(lambda mod, args: (args[0] + 0.25,))
    return model, x


def close(out, ref) -> bool:
    """Normwise within convert_'s fp32 tolerance (1e-4), with a floor for outputs near zero."""
    return (out.double() - ref.double()).norm() <= 1e-4 * ref.double().norm() + 1e-6 * ref.numel() ** 0.5


class Injected(Exception):
    pass


def check(model, x, algo, with_inputs, fail_at, device):
    model, x = model.to(device), x.to(device)
    ref = probe(model, x)
    before = snapshot(model)
    original, calls = Undo.set_child, [0]

    def set_child(self, *args):
        calls[0] += 1
        if calls[0] == fail_at:
            raise Injected()
        original(self, *args)

    Undo.set_child = set_child
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # training-mode BNs
            zeroskip.convert_(model, x if with_inputs else None, algo=algo)
    except Injected:
        assert_same(before, snapshot(model))
        assert close(probe(model, x), ref)
        return
    finally:
        Undo.set_child = original
    assert close(probe(model, x), ref), model.zeroskip_report


CASE = dict(case=cnns(), algo=st.sampled_from(["torch", "ecr", "auto"]), with_inputs=st.booleans(),
            fail_at=st.one_of(st.none(), st.integers(1, 6)))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(**CASE)
def test_convert_random_cnns(case, algo, with_inputs, fail_at, device):
    check(*case, algo, with_inputs, fail_at, device)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(**CASE)
def test_convert_random_cnns_many(case, algo, with_inputs, fail_at, device):
    check(*case, algo, with_inputs, fail_at, device)
