"""convert_ never gives a silently different model: tied weights keep their BNs, modules with hooks
stay, a training-mode model warns, and a convert_ that raises (an injected failure at any step,
KeyboardInterrupt, a failed output check) leaves the model exactly as it was."""
import copy
import itertools
import warnings

import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module

import zeroskip
from helpers import TOL, assert_same, rel_err, snapshot, sparse
from test_convert import ConvBN, randomize_bn
from zeroskip import convert as zconvert
from zeroskip import nn as znn
from zeroskip.undo import Undo


def outputs_match(model, x, ref):
    with torch.no_grad():
        assert rel_err(model(x), ref) <= TOL[torch.float32]


def reference(model, x):
    with torch.no_grad():
        return model(x)


# ---- tied weights ----------------------------------------------------------------------------

def tied_sequential(by_data=False, device="cpu"):
    """The same weight under two convs, each followed by its own BN, tied on the device (Module.to
    gives two Parameters of one storage a copy each)."""
    c1, c2 = nn.Conv2d(3, 3, 3, padding=1, device=device), nn.Conv2d(3, 3, 3, padding=1, device=device)
    if by_data:
        c2.weight.data = c1.weight.data   # two Parameters on one storage
    else:
        c2.weight = c1.weight
    return randomize_bn(nn.Sequential(c1, nn.BatchNorm2d(3), nn.ReLU(), c2, nn.BatchNorm2d(3), nn.ReLU())).to(device)


class TiedBlock(nn.Module):
    """Traced-forward folding: conv2 reuses conv1's bias."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.conv2.bias = self.conv1.bias

    def forward(self, x):
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


@pytest.mark.parametrize("by_data", [False, True])
@pytest.mark.parametrize("algo", ["torch", "ecr"])
def test_tied_weights_keep_their_bns(by_data, algo, device):
    model = tied_sequential(by_data, device)
    x = sparse((1, 3, 8, 8), 0.7, device=device)
    ref, weight = reference(model, x), model[0].weight.detach().clone()
    zeroskip.convert_(model, x, algo=algo)
    outputs_match(model, x, ref)
    report = model.zeroskip_report
    assert report["kept_bn"] == ["1", "4"] and report["folded_bn"] == []
    assert "shares memory with 3.weight" in report["reasons"]["1"]
    assert "shares memory with 0.weight" in report["reasons"]["4"]
    assert report["converted"] == ["0", "3"] and torch.equal(model[0].weight, weight)
    assert (model[0].weight is model[3].weight) == (not by_data)


def test_tied_bias_outside_sequential(device):
    model = randomize_bn(TiedBlock()).to(device)
    x = sparse((1, 3, 8, 8), 0.7, device=device)
    ref = reference(model, x)
    zeroskip.convert_(model, x, algo="torch")
    outputs_match(model, x, ref)
    assert model.zeroskip_report["kept_bn"] == ["bn1", "bn2"]
    assert "conv1.bias shares memory with conv2.bias" in model.zeroskip_report["reasons"]["bn1"]


def test_parameters_in_one_vector_are_not_tied(device):
    """vector_to_parameters puts every Parameter in one storage, side by side: folding one conv's
    slice changes no other Parameter, so the BNs are folded."""
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                       nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))).to(device)
    vec = torch.nn.utils.parameters_to_vector(model.parameters())
    torch.nn.utils.vector_to_parameters(vec, model.parameters())
    x = sparse((1, 3, 8, 8), 0.7, device=device)
    ref = reference(model, x)
    zeroskip.convert_(model, x, algo="torch")
    outputs_match(model, x, ref)
    assert model.zeroskip_report["folded_bn"] == ["1", "4"]


# ---- hooks -----------------------------------------------------------------------------------

HOOKS = {
    "forward": lambda m, calls: m.register_forward_hook(lambda mod, args, out: calls.append(1) or out * 0.5),
    "forward_pre": lambda m, calls: m.register_forward_pre_hook(lambda mod, args: calls.append(1) or (args[0] * 2,)),
    "forward_kwargs": lambda m, calls: m.register_forward_hook(
        lambda mod, args, kwargs, out: calls.append(1) or out + 1, with_kwargs=True),
    "always_call": lambda m, calls: m.register_forward_hook(
        lambda mod, args, out: calls.append(1) or out - 0.25, always_call=True),
    "backward": lambda m, calls: m.register_full_backward_hook(lambda mod, gin, gout: calls.append(1)),
    "state_dict": lambda m, calls: m.register_state_dict_post_hook(lambda mod, sd, prefix, meta: calls.append(1)),
    "load_state_dict_pre": lambda m, calls: m.register_load_state_dict_pre_hook(
        lambda mod, sd, prefix, meta, strict, missing, unexpected, errors: calls.append(1)),
}


@pytest.mark.parametrize("kind", list(HOOKS))
@pytest.mark.parametrize("where", [0, 1, 2, 3])   # conv, BN, ReLU, max-pool
def test_hooked_module_stays(kind, where, device):
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                       nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1))).to(device)
    calls = []
    HOOKS[kind](model[where], calls)
    hooked = model[where]
    x = sparse((1, 3, 8, 8), 0.7, device=device)
    ref = reference(model, x)
    zeroskip.convert_(model, algo="torch")
    outputs_match(model, x, ref)
    assert model[where] is hooked and "has hooks" in model.zeroskip_report["reasons"][str(where)]
    assert "4" in model.zeroskip_report["converted"]      # the rest is still converted
    if kind.startswith("forward") or kind == "always_call":
        fired = len(calls)
        reference(model, x)
        assert len(calls) == fired + 1     # the hook still runs, once per call
    assert [type(m) for m in model[where + 1:4]] == [type(m) for m in
                                                     (nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))[where:]]


def test_global_hooks_convert_nothing(device):
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())).to(device)
    x = sparse((1, 3, 8, 8), 0.7, device=device)
    handle = torch_module.register_module_forward_hook(lambda mod, args, out: out)
    try:
        before = snapshot(model)
        zeroskip.convert_(model, algo="torch")
    finally:
        handle.remove()
    assert model.zeroskip_report["converted"] == [] and "global module hooks" in model.zeroskip_report["reasons"]["0"]
    del model.zeroskip_report, model.zeroskip_example_inputs, model.zeroskip_plan
    assert_same(before, snapshot(model))
    reference(model, x)


def test_forward_set_on_the_instance(device):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).to(device).eval()
    model[1].forward = lambda y: torch.relu(y) * 3
    x = sparse((1, 3, 8, 8), 0.7, device=device)
    ref = reference(model, x)
    zeroskip.convert_(model, algo="torch")
    outputs_match(model, x, ref)
    report = model.zeroskip_report
    assert report["fused"] == [] and "forward set on the instance" in report["reasons"]["1"]


@pytest.mark.parametrize("norm", ["hook", "parametrization"])
def test_weight_normed_conv_before_bn(norm, device):
    """The old torch.nn.utils.weight_norm (a forward pre-hook computing a plain-tensor weight) and the
    parametrization (a ParametrizedConv2d): both left alone with a reason, the output unchanged."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        conv = (torch.nn.utils.weight_norm(conv) if norm == "hook"
                else torch.nn.utils.parametrizations.weight_norm(conv))
    model = randomize_bn(nn.Sequential(conv, nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1))).to(device)
    x = sparse((1, 3, 8, 8), 0.7, device=device)
    ref = reference(model, x)
    zeroskip.convert_(model, x, algo="torch")
    outputs_match(model, x, ref)
    assert model[0] is conv and model.zeroskip_report["converted"] == ["3"]
    assert ("has hooks" if norm == "hook" else "subclass of nn.Conv2d") in model.zeroskip_report["reasons"]["0"]


# ---- training mode ---------------------------------------------------------------------------

def test_training_mode_warns(device):
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                       nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))).to(device).train()
    with pytest.warns(UserWarning, match=r"2 BatchNorm2d layers in training mode were not folded \(1, 4\): "
                                         r"call model.eval\(\)"):
        zeroskip.convert_(model, algo="torch")
    report = model.zeroskip_report
    assert report["kept_bn"] == ["1", "4"] and len(report["warnings"]) == 1
    assert "training mode" in report["reasons"]["1"]
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # eval mode: no warning
        zeroskip.convert_(model, algo="torch")


# ---- all or nothing --------------------------------------------------------------------------

class Net(nn.Module):
    """Every kind of change: Sequential fusion with a BN fold (conv without bias: a new bias
    Parameter), a traced fold, a plain conv, a conv shared by two parents."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU6())
        self.block = ConvBN(4)
        self.plain = nn.Conv2d(4, 4, 1)
        self.alias = self.plain

    def forward(self, x):
        return self.alias(self.block(self.features(x)))


def net(device):
    model = randomize_bn(Net()).to(device)
    model.block.conv.register_parameter("bias", None)
    return model


class Injected(Exception):
    pass


@pytest.mark.parametrize("method", ["set_child", "fold_bn", "set_attribute"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_failure_at_each_step_restores_the_model(method, when, monkeypatch, device):
    """The k-th change of `method` raises (before or after it is made), for every k: the model
    is as it was, bit for bit, with the same objects."""
    original = getattr(Undo, method)
    x = sparse((1, 3, 8, 8), 0.7, device=device)
    k = 0
    while True:
        k += 1
        count = [0]

        def failing(self, *args, k=k, count=count):
            count[0] += 1
            if count[0] == k and when == "before":
                raise (KeyboardInterrupt if k % 2 else Injected)()
            original(self, *args)
            if count[0] == k:
                raise (KeyboardInterrupt if k % 2 else Injected)()

        monkeypatch.setattr(Undo, method, failing)
        model = net(device)
        ref, before = reference(model, x), snapshot(model)
        try:
            zeroskip.convert_(model, x, algo="torch")
        except (KeyboardInterrupt, Injected):
            assert_same(before, snapshot(model))
            outputs_match(model, x, ref)
            continue
        assert count[0] == k - 1 > 0   # every step of this kind was made to fail once
        assert model.plain is model.alias and isinstance(model.plain, znn.Conv2d)
        outputs_match(model, x, ref)
        break


@pytest.mark.parametrize("failure", ["output check", "interrupt in check", "filter_fn", "warning as error"])
def test_failures_restore_the_model(failure, monkeypatch, device):
    model, x = net(device), sparse((1, 3, 8, 8), 0.7, device=device)
    kwargs = dict(algo="ecr")
    if failure == "output check":       # the converted model's output is made to differ
        monkeypatch.setattr(znn.Conv2d, "forward", lambda self, y, *res: nn.Conv2d.forward(self, y) + 1)
    elif failure == "interrupt in check":
        runs = []

        def run_eval(model, inputs):
            runs.append(1)
            if len(runs) == 2:
                raise KeyboardInterrupt
            return real(model, inputs)

        real = zconvert._run_eval
        monkeypatch.setattr(zconvert, "_run_eval", run_eval)
    elif failure == "filter_fn":
        names = []
        kwargs["filter_fn"] = lambda name, conv: names.append(name) or len(names) < 3 or 1 / 0
    else:
        model.features[1].train()
    ref, before = reference(model, x), snapshot(model)
    error = {"output check": RuntimeError, "interrupt in check": KeyboardInterrupt,
             "filter_fn": ZeroDivisionError, "warning as error": UserWarning}[failure]
    with warnings.catch_warnings():
        if failure == "warning as error":
            warnings.simplefilter("error")
        with pytest.raises(error):
            zeroskip.convert_(model, x, **kwargs)
    assert_same(before, snapshot(model))
    assert not hasattr(model, "zeroskip_report")
    monkeypatch.undo()
    outputs_match(model, x, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zeroskip.convert_(model, x, algo="ecr")   # and it converts afterwards
    outputs_match(model, x, ref)


def test_outputs_beyond_the_tolerance_are_judged_against_float64(monkeypatch):
    """An ill-conditioned model differs from itself across precisions by more than the tolerance:
    then the converted and the original model are both measured against the original in float64,
    and the conversion stands only within twice the original's own error."""
    from zeroskip import convert
    torch.manual_seed(0)
    model = randomize_bn(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())).eval()
    x = torch.randn(1, 2, 8, 8)
    monkeypatch.setattr(convert, "_tolerance", lambda ref: 0.0)  # every difference is beyond it
    report = zeroskip.convert_(model, x, algo="torch").zeroskip_report  # the BN folded: rounding moves
    errs = report["float64_err"]
    assert report["max_rel_err"] > 0 and 0 < errs["converted"] <= 2 * errs["original"] < 1e-6
    original = convert._copy(model)
    ref = model(x)
    report = {"max_rel_err": 1.0, "tolerance": 0.0}
    with pytest.raises(RuntimeError, match="more than twice the original's own"):
        convert._check_float64(ref * (1 + 1e-3), ref, original, (x,), report)
    assert report["float64_err"]["converted"] > 1e-4
    with pytest.raises(RuntimeError, match="left as it was"):
        convert._check_float64(ref, ref, None, (x,), report)


def test_the_copy_for_the_float64_check_waits_in_host_memory(device):
    """convert_'s copy of the original holds its tensors on the CPU until the check needs them, then
    each goes back to its device; tied weights stay tied and the original is untouched."""
    from zeroskip import convert
    torch.manual_seed(0)
    model = randomize_bn(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 3)))
    model[2].weight = model[0].weight
    model = model.to(device).eval()
    held, _ = convert._copy(model)
    assert all(t.device.type == "cpu" for t in itertools.chain(held.parameters(), held.buffers()))
    assert held[0].weight is held[2].weight and held[0].weight is not model[0].weight
    back = convert._to_devices((held, _))
    assert back[0].weight is back[2].weight and back[0].weight.device == model[0].weight.device
    assert all(a.device == b.device and torch.equal(a, b) for a, b in zip(
        itertools.chain(back.parameters(), back.buffers()), itertools.chain(model.parameters(), model.buffers())))
    x = torch.randn(1, 2, 6, 6, device=device)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
