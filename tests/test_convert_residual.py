"""convert_ rewrites a parent's forward (torch.fx) so its residual adds and activations run in the conv's epilogue:
ResNet's block ends, activations called as functions or through one shared module; never where that would
change the result (broadcast adds, in-place writes, an operand written by the add), and undone on failure."""
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

import zeroskip
from zeroskip.fuse import Forward
from helpers import TOL, rel_err, sparse


def _block(kind, device, stride=1):
    torch.manual_seed(0)
    if kind == "basic":
        down = None if stride == 1 else nn.Sequential(nn.Conv2d(8, 8, 1, stride, bias=False), nn.BatchNorm2d(8))
        block = BasicBlock(8, 8, stride, down)
    else:
        block = Bottleneck(16, 4, stride, nn.Sequential(nn.Conv2d(16, 16, 1, stride, bias=False), nn.BatchNorm2d(16)))
    for m in block.modules():  # running statistics that are not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return block.to(device).eval()


def _graph_calls(module):
    return [n.target for n in module.forward.code.graph.nodes if n.op in ("call_module", "call_function")]


@pytest.mark.parametrize("kind,stride", [("basic", 1), ("basic", 2), ("bottleneck", 1)])
def test_resnet_block_end_runs_in_the_epilogue(kind, stride, device):
    block = _block(kind, device, stride)
    x = sparse((1, 16 if kind == "bottleneck" else 8, 6, 6), 0.6, device=device)
    ref = block.double()(x.double()).detach()
    block.float()
    zeroskip.convert_(block, x, algo="igemm")
    report = block.zeroskip_report
    last = "conv3" if kind == "bottleneck" else "conv2"
    assert report["residual"] == [last]
    assert isinstance(vars(block)["forward"], Forward)
    # every conv's activation and the add are in the epilogues: the ReLU module is no longer called
    assert "relu" not in _graph_calls(block) and all("add" not in str(t) for t in _graph_calls(block))
    assert getattr(block, last).activation == "relu" and getattr(block, "conv1").activation == "relu"
    with torch.no_grad():
        out = block(x)
    assert rel_err(out, ref) <= TOL[torch.float32]


class _Forms(nn.Module):
    """One conv per way of writing the block end: `x + out`, torch.add, `out += x` (fx traces it out of place)
    then F.relu / .relu_() / F.relu6."""

    def __init__(self, form):
        super().__init__()
        self.form = form
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        out = self.bn(self.conv(x))
        if self.form == "radd":
            return F.relu(x + out)
        if self.form == "torch.add":
            return torch.add(out, x).relu_()
        if self.form == "iadd":
            out += x
            return F.relu6(out, inplace=True)
        return F.relu(out + x) + out  # the conv's output is used twice: left as it is


@pytest.mark.parametrize("form,fused", [("radd", True), ("torch.add", True), ("iadd", True), ("used-twice", False)])
def test_forms_of_the_add(form, fused, device):
    model = _Forms(form).to(device).eval()
    x = sparse((1, 4, 5, 5), 0.7, device=device)
    ref = copy.deepcopy(model).double()(x.double().clone()).detach()
    zeroskip.convert_(model, x.clone(), algo="igemm")
    assert model.zeroskip_report["residual"] == (["conv"] if fused else [])
    with torch.no_grad():
        out = model(x.clone())
    assert rel_err(out, ref) <= TOL[torch.float32]


class _Broadcast(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.shift = nn.Parameter(torch.randn(1, 4, 1, 1))

    def forward(self, x):
        return F.relu(self.conv(x) + self.shift)


def test_broadcast_add_is_not_fused_and_says_why(device):
    model = _Broadcast().to(device).eval()
    x = sparse((1, 4, 5, 5), 0.7, device=device)
    ref = model(x).detach()
    zeroskip.convert_(model, x, algo="igemm")
    assert model.zeroskip_report["residual"] == []
    assert "broadcast add" in model.zeroskip_report["reasons"]["conv"]
    with torch.no_grad():
        assert rel_err(model(x), ref.double()) <= TOL[torch.float32]


def test_without_example_inputs_adds_stay_and_activations_fuse(device):
    block = _block("basic", device)
    zeroskip.convert_(block, algo="igemm")
    report = block.zeroskip_report
    assert report["residual"] == [] and "unknown without example_inputs" in report["reasons"]["conv2"]
    assert block.conv1.activation == "relu"  # the shared ReLU module's first call is fused all the same
    x = sparse((1, 8, 5, 5), 0.7, device=device)
    with torch.no_grad():
        assert rel_err(block(x), _block("basic", device).double()(x.double())) <= TOL[torch.float32]


class _WritesInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = x * 2
        out = self.conv(x)
        y = self.act(x)  # writes x in place after the conv has read it
        return out + y


def test_conv_is_not_moved_past_an_in_place_write_of_its_input(device):
    model = _WritesInput().to(device).eval()
    x = torch.randn(1, 4, 5, 5, device=device)
    ref = copy.deepcopy(model).double()(x.double()).detach()
    zeroskip.convert_(model, x, algo="igemm")
    assert model.zeroskip_report["residual"] == []
    assert "writes its input in place" in model.zeroskip_report["reasons"]["conv"]
    with torch.no_grad():
        assert rel_err(model(x), ref) <= TOL[torch.float32]


def test_failed_conversion_restores_the_forward(device):
    block = _block("basic", device)
    x = sparse((1, 8, 5, 5), 0.7, device=device)

    def refuse_last(name, conv):
        if name == "conv2":
            raise KeyError("stop")
        return True
    with pytest.raises(KeyError):
        zeroskip.convert_(block, x, algo="igemm", filter_fn=refuse_last)
    assert "forward" not in vars(block) and type(block.conv1) is nn.Conv2d and type(block.bn1) is nn.BatchNorm2d


def test_rewritten_model_pickles_copies_and_compiles(device):
    block = _block("basic", device)
    x = sparse((1, 8, 5, 5), 0.7, device=device)
    zeroskip.convert_(block, x, algo="torch")
    with torch.no_grad():
        want = block(x)
        for other in (pickle.loads(pickle.dumps(block)), copy.deepcopy(block)):
            assert torch.equal(other(x), want)
        compiled = torch.compile(block, fullgraph=True)
        assert rel_err(compiled(x), want.double()) <= TOL[torch.float32]


def _inverted_residual(device, stride=1, expand=2):
    from torchvision.models.mobilenetv2 import InvertedResidual
    torch.manual_seed(0)
    block = InvertedResidual(8, 8, stride, expand)
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return nn.Sequential(block).to(device).eval()


@pytest.mark.parametrize("expand", [1, 2])
def test_mobilenet_v2_add_runs_in_the_last_convs_epilogue(expand, device):
    """MobileNetV2's `x + self.conv(x)`: the Sequential's children are called one by one, its last conv
    with the BN after it folded and x added in its epilogue."""
    model = _inverted_residual(device, expand=expand)
    x = sparse((1, 8, 6, 6), 0.5, device=device)
    ref = copy.deepcopy(model).double()(x.double()).detach()
    zeroskip.convert_(model, x, algo="igemm")
    last, bn = ("0.conv.1", "0.conv.2") if expand == 1 else ("0.conv.2", "0.conv.3")
    report = model.zeroskip_report
    assert report["residual"] == [last] and bn in report["folded_bn"]
    assert isinstance(model.get_submodule(bn), nn.Identity)
    conv = model.get_submodule(last)
    assert conv.activation is None and conv.algo == "igemm"
    assert all("add" not in str(t) for t in _graph_calls(model[0]))
    with torch.no_grad():
        assert rel_err(model(x), ref) <= TOL[torch.float32]
    assert len(report["converted"]) == (2 if expand == 1 else 3)
    assert pickle.loads(pickle.dumps(model)) is not None


def test_mobilenet_v2_add_of_another_shape_is_not_fused(device):
    """With stride 2 the block has no add; a broadcast add after a Sequential is left as it is."""
    assert _inverted_residual(device, stride=2)[0].use_res_connect is False

    class Broadcast(nn.Module):
        def __init__(self):
            super().__init__()
            self.seq = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))

        def forward(self, x, bias):
            return self.seq(x) + bias

    model = Broadcast().to(device).eval()
    x, bias = sparse((1, 4, 5, 5), 0.5, device=device), torch.randn(1, 4, 1, 1, device=device)
    ref = model(x, bias).detach()
    zeroskip.convert_(model, (x, bias), algo="igemm")
    assert model.zeroskip_report["residual"] == [] and "broadcast" in model.zeroskip_report["reasons"]["seq.0"]
    assert isinstance(model.seq[0], zeroskip.nn.Conv2d)  # converted (BN folded) by the Sequential path
    with torch.no_grad():
        assert rel_err(model(x, bias), ref) <= TOL[torch.float32]


def test_mobilenet_v2_whole_model_fuses_every_add():
    """torchvision's MobileNetV2: all 52 BNs folded, the 10 block adds in the last conv's epilogue (torch's
    path here: the rewrite is what is checked)."""
    from torchvision.models import mobilenet_v2
    torch.manual_seed(0)
    model = mobilenet_v2().eval()
    x = torch.randn(2, 3, 32, 32)
    ref = model(x).detach()
    zeroskip.convert_(model, x, algo="torch")
    report = model.zeroskip_report
    assert (len(report["converted"]), len(report["folded_bn"]), len(report["residual"])) == (52, 52, 10)
    assert report["reasons"] == {}
    with torch.no_grad():
        assert rel_err(model(x), ref) <= TOL[torch.float32]


def test_shape_check_leaves_training_bn_buffers_alone():
    """The fake-tensor run that checks an add's operand shapes runs in eval mode: a training-mode BN's
    running statistics and batch count are as before (the BN is kept, not folded, and so reported)."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x)) + x

    model = nn.Sequential(Block())
    model[0].bn.train()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    with pytest.warns(UserWarning, match="training mode"):
        zeroskip.convert_(model, sparse((1, 2, 5, 5), 0.5), algo="torch")
    assert model.zeroskip_report["kept_bn"] == ["0.bn"] and model[0].bn.training
    assert all(torch.equal(buffers[k], v) for k, v in model.named_buffers())
