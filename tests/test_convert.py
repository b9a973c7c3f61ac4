"""zeroskip.convert_ on small LeNet / VGG / ResNet models, hand-written blocks that fold BatchNorm outside
nn.Sequential, and torchvision's VGG, AlexNet, GoogLeNet and ResNet."""
import copy
import re

import pytest
import torch
from torch import nn

import zeroskip
from helpers import TOL, rel_err, sparse
from zeroskip.nn import ConvActPool


@pytest.fixture(autouse=True)
def exact_fp32():
    """Float64 references need fp32 convs and matmuls on CUDA too (no TF32)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def lenet5():
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                      nn.MaxPool2d(2)),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


class VGGish(nn.Module):
    def __init__(self, bn):
        super().__init__()
        norm = (lambda c: [nn.BatchNorm2d(c)]) if bn else (lambda c: [])
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=not bn), *norm(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), *norm(16), nn.ReLU6(), nn.AvgPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), *norm(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2))
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.layer1(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def randomize_bn(model):
    """Non-trivial BN statistics, so folding is actually exercised; then eval mode."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def names_of(model, kind):
    return [n for n, m in model.named_modules() if type(m) is kind]


def check(model, x, **options):
    """Converts `model`; its output must match the original in float64 as closely as fp32 allows:
    within TOL, or twice the original model's own fp32 error on this device (deep models: cuDNN's
    fp32 ResNet-50 alone reached 1e-5 on an H200); returns the report."""
    original = copy.deepcopy(model)
    ref = copy.deepcopy(model).double()(x.double())
    assert zeroskip.convert_(model, **options) is model
    with torch.no_grad():
        assert rel_err(model(x), ref) <= max(TOL[torch.float32], 2 * rel_err(original(x), ref))
    report = model.zeroskip_report
    before, after = original.state_dict(), model.state_dict()
    gone = {k for k in before if any(k.startswith(bn + ".") for bn in report["folded_bn"])}
    assert set(before) - set(after) == gone
    assert set(after) - set(before) <= {f"{conv}.bias" for conv in report["converted"]}
    changed = {k for k in set(before) & set(after) if not torch.equal(before[k], after[k])}
    folded_convs = {f"{conv}.{p}" for conv in report["converted"] for p in ("weight", "bias")}
    assert changed <= (folded_convs if report["folded_bn"] else set())
    return report


def test_lenet5(device):
    model = lenet5().to(device).eval()
    report = check(model, sparse((1, 1, 32, 32), 0.5, device=device), algo="ecr")
    assert report["converted"] == report["fused"] == ["0.0", "0.3"]
    assert type(model[0][0]) is ConvActPool and model[0][0].pool == "max"
    assert [type(m) for m in model[0][1:3]] == [nn.Identity, nn.Identity]


@pytest.mark.parametrize("bn", [False, True])
def test_vgg_like(bn, device):
    model = randomize_bn(VGGish(bn)).to(device)
    report = check(model, sparse((1, 3, 16, 16), 0.7, device=device), algo="ecr")
    assert report["fused"] == report["converted"]
    assert report["folded_bn"] == (["features.1", "features.5", "features.9"] if bn else [])
    kinds = [(type(m).__name__, getattr(m, "activation", None), getattr(m, "pool", None))
             for m in model.features if not isinstance(m, nn.Identity)]
    assert kinds == [("ConvActPool", "relu", "max"), ("ConvActPool", "relu6", "avg"),
                     ("Conv2d", "relu", None), ("AdaptiveAvgPool2d", None, None)]


def test_resnet_like(device):
    model, x = randomize_bn(ResNetish()).to(device), sparse((1, 3, 8, 8), 0.8, device=device)
    report = check(model, x, example_inputs=x, algo="ecr")  # example_inputs: the adds' operand shapes
    assert report["folded_bn"] == names_of(ResNetish(), nn.BatchNorm2d)
    blocks = [f"layer1.{i}.conv{j}" for i in (0, 1) for j in (1, 2)]
    # torch.relu and the blocks' `relu(y + shortcut)` rewritten into the convs' epilogues; the
    # downsample conv (BN, no activation) is converted unfused
    assert sorted(report["fused"]) == sorted(["conv1"] + blocks)
    assert report["residual"] == ["layer1.0.conv2", "layer1.1.conv2"]
    assert len(report["converted"]) == 6 and len(report["folded_bn"]) == 6
    assert all(type(m) not in (nn.Conv2d, nn.BatchNorm2d) for m in model.modules())
    assert model.layer1[0].conv1.activation == "relu" and isinstance(model.bn1, nn.Identity)
    assert model.conv1.bias is not None


class ConvBN(nn.Module):
    """relu(bn(conv(x)) + x): the BN normalises the conv's output alone, so it is folded."""

    def __init__(self, c, bias=False):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, padding=1, bias=bias), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + x)


class SecondUser(ConvBN):
    """The conv's output also feeds the sum: folding would change that, so the BN stays."""

    def forward(self, x):
        y = self.conv(x)
        return torch.relu(self.bn(y) + y)


class DataDependent(ConvBN):
    """Control flow on a tensor's value: fx cannot trace it, so the module is left alone."""

    def forward(self, x):
        y = self.bn(self.conv(x))
        return torch.relu(y) if x.sum() > 0 else y


class DefaultArg(ConvBN):
    """A defaulted argument decides the path: a trace takes `double` as given and sees
    bn(conv(x)), but the call without it runs bn(2 * conv(x)); left alone."""

    def forward(self, x, double=None):
        y = self.conv(x)
        if double is None:
            y = y * 2
        return torch.relu(self.bn(y))


class Blocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)  # a conv with a bias
        self.res, self.second = ConvBN(8), SecondUser(8)
        self.dynamic, self.default = DataDependent(8), DefaultArg(8)

    def forward(self, x):
        x = torch.relu(self.stem_bn(self.stem(x)))
        return self.default(self.dynamic(self.second(self.res(x))))


def test_bn_folded_outside_sequential(device):
    """Traced forwards: a BN applied to a conv's output alone is folded (the conv gains a bias and
    becomes the zeroskip conv, the BN's place an nn.Identity); a BN whose conv output has another
    user, and the BNs of modules whose forward cannot be traced into one graph, stay."""
    model, x = randomize_bn(Blocks()).to(device), sparse((1, 3, 8, 8), 0.5, device=device)
    report = check(model, x, example_inputs=x, algo="ecr")
    assert report["converted"] == ["stem", "res.conv", "second.conv", "dynamic.conv", "default.conv"]
    assert report["folded_bn"] == ["stem_bn", "res.bn"] and report["kept_bn"] == []
    assert report["fused"] == ["stem", "res.conv"] and report["residual"] == ["res.conv"]  # relu(bn(conv(x)) + x)
    assert names_of(model, nn.BatchNorm2d) == ["second.bn", "dynamic.bn", "default.bn"]
    assert names_of(model, nn.Identity) == ["stem_bn", "res.bn"]
    assert all(type(m) is not nn.Conv2d for m in model.modules())
    assert model.res.conv.bias is not None and model.second.conv.bias is None


class ConvBNActPool(nn.Module):
    """Modules a forward calls once each, outside nn.Sequential: fused like a Sequential run."""

    def __init__(self, pool=None):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True)
        self.pool = pool or nn.MaxPool2d(3, 2, 1)
        self.conv2, self.act2 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6()

    def forward(self, x):
        y = self.pool(self.act(self.bn(self.conv(x))))
        return self.act2(self.conv2(y)) + torch.relu(y).mean()  # conv2's output has one user


class SharedAct(ConvBNActPool):
    """One ReLU module applied twice (as torchvision's ResNet blocks do): it stays, and the BN is folded."""

    def forward(self, x):
        return self.act(self.act(self.bn(self.conv(x))) - 0.5)


def test_fused_outside_sequential(device):
    x = sparse((2, 3, 8, 8), 0.7, device=device)
    model = randomize_bn(ConvBNActPool()).to(device)
    report = check(model, x, algo="ecr")
    assert report["fused"] == report["converted"] == ["conv", "conv2"] and report["folded_bn"] == ["bn"]
    assert isinstance(model.conv, ConvActPool) and (model.conv.activation, model.conv.pool) == ("relu", "max")
    assert model.conv.pool_size == (3, 3) and model.conv.pool_stride == (2, 2) and model.conv.pool_padding == (1, 1)
    assert model.conv2.activation == "relu6" and names_of(model, nn.Identity) == ["bn", "act", "pool", "act2"]
    model = randomize_bn(ConvBNActPool(pool=nn.MaxPool2d(2, ceil_mode=True))).to(device)  # not expressible
    report = check(model, x, algo="ecr")
    assert report["fused"] == ["conv", "conv2"] and model.conv.activation == "relu" and type(model.pool) is nn.MaxPool2d
    model = randomize_bn(SharedAct()).to(device)
    report = check(model, x, algo="ecr")
    # the shared module's first call is rewritten into conv's epilogue; the module stays for the second
    assert report["fused"] == ["conv"] and report["folded_bn"] == ["bn"] and type(model.act) is nn.ReLU
    assert model.conv.activation == "relu" and "act" not in report["reasons"]


def test_fusion_outside_sequential_follows_options_and_guards(device):
    x = sparse((1, 3, 8, 8), 0.7, device=device)
    model = randomize_bn(ConvBNActPool()).to(device)
    report = check(model, x, algo="torch", fuse=False)
    assert report["fused"] == [] and report["folded_bn"] == ["bn"] and type(model.act) is nn.ReLU
    model = randomize_bn(ConvBNActPool()).to(device)
    report = check(model, x, algo="torch", fold_bn=False)  # the BN stays between: nothing to fuse past it
    assert report["fused"] == ["conv2"] and type(model.bn) is nn.BatchNorm2d and model.conv.activation is None
    model = randomize_bn(ConvBNActPool()).to(device)
    model.act.register_forward_hook(lambda module, args, out: None)
    report = check(model, x, algo="torch")
    assert report["fused"] == ["conv2"] and "has hooks" in report["reasons"]["act"] and type(model.act) is nn.ReLU
    model = randomize_bn(ConvBNActPool()).to(device)
    model.other = nn.Sequential(model.pool)  # the pool has a second parent: absorbing it would change that one
    report = check(model, x, algo="torch")
    assert report["fused"] == ["conv", "conv2"] and type(model.conv) is zeroskip.nn.Conv2d
    assert type(model.pool) is nn.MaxPool2d
    assert report["reasons"]["pool"] == "not fused into conv: another parent shares it"


def test_bn_folding_outside_sequential_options(device):
    """The traced folding follows convert_'s options as the Sequential path does: fold_bn=False
    folds nothing, a conv that filter_fn excludes keeps its BN, a training-mode BN is kept (and
    reported), and a conv shared with another parent is converted but not folded."""
    x = sparse((1, 3, 8, 8), 0.5, device=device)
    report = check(randomize_bn(Blocks()).to(device), x, algo="torch", fold_bn=False)
    assert report["folded_bn"] == report["kept_bn"] == [] and len(report["converted"]) == 5
    model = randomize_bn(Blocks()).to(device)
    report = check(model, x, algo="torch", filter_fn=lambda name, m: name != "res.conv")
    assert report["folded_bn"] == ["stem_bn"] and type(model.res.conv) is nn.Conv2d
    assert isinstance(model.res.bn, nn.BatchNorm2d)
    model = randomize_bn(Blocks()).to(device)
    model.res.bn.train()
    with pytest.warns(UserWarning, match="1 BatchNorm2d layer in training mode was not folded"):
        zeroskip.convert_(model, algo="torch")
    assert model.zeroskip_report["kept_bn"] == ["res.bn"] and model.zeroskip_report["folded_bn"] == ["stem_bn"]
    assert isinstance(model.res.bn, nn.BatchNorm2d) and model.res.conv.bias is None
    model = randomize_bn(Blocks()).to(device)
    model.alias = model.res.conv  # the same conv under a second parent name
    report = check(model, x, algo="torch")
    assert report["folded_bn"] == ["stem_bn"] and isinstance(model.res.bn, nn.BatchNorm2d)
    assert model.res.conv is model.alias and model.res.conv.bias is None


def test_options(device):
    x = sparse((1, 3, 16, 16), 0.7, device=device)
    report = check(randomize_bn(VGGish(True)).to(device), x, algo="torch", fold_bn=False)
    assert report["folded_bn"] == report["fused"] == [] and len(report["converted"]) == 3
    model = randomize_bn(VGGish(True)).to(device)
    report = check(model, x, algo="torch", fuse=False)
    assert len(report["folded_bn"]) == 3 and report["fused"] == []
    assert isinstance(model.features[2], nn.ReLU)
    model = VGGish(True).to(device).eval()
    model.features[1].train()  # a training-mode BN is left alone and not fused past
    with pytest.warns(UserWarning, match=r"not folded \(features.1\): call model.eval\(\)"):
        zeroskip.convert_(model, algo="torch")
    assert model.zeroskip_report["kept_bn"] == ["features.1"] and model.features[0].activation is None
    assert isinstance(model.features[1], nn.BatchNorm2d) and isinstance(model.features[2], nn.ReLU)


def test_filter_fn_excludes_by_name(device):
    model = lenet5().to(device)
    report = check(model, sparse((1, 1, 32, 32), 0.5, device=device), algo="torch",
                   filter_fn=lambda name, m: name != "0.0")
    assert report["converted"] == ["0.3"]
    assert type(model[0][0]) is nn.Conv2d and isinstance(model[0][1], nn.ReLU)


def test_example_inputs_report(device):
    model, x = lenet5().to(device), sparse((1, 1, 32, 32), 0.5, device=device)
    zeroskip.convert_(model, x, algo="torch")
    assert model.zeroskip_report["max_rel_err"] <= model.zeroskip_report["tolerance"] == 1e-4
    assert model.zeroskip_example_inputs[0] is x and model.training

    class Noise(nn.Module):
        def forward(self, x):
            return x + torch.randn_like(x)

    with pytest.raises(RuntimeError, match="max_rel_err.*the original's own output differs from run to run"):
        zeroskip.convert_(nn.Sequential(nn.Conv2d(1, 2, 3), Noise()).to(device), (x,), algo="torch")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(algo="fast"), ValueError, "algo"), (dict(fold_bn="yes"), ValueError, "fold_bn"),
    (dict(fuse=None), ValueError, "fuse"), (dict(filter_fn=3), ValueError, "filter_fn"),
    (dict(inplace=True), TypeError, "inplace")])
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        zeroskip.convert_(lenet5(), **kwargs)


def test_compiled_lenet_matches_eager(device):
    model = zeroskip.convert_(lenet5().to(device).eval(), algo="ecr")
    x = sparse((1, 1, 32, 32), 0.5, device=device)
    with torch.no_grad():
        out, ref = torch.compile(model, backend="aot_eager", fullgraph=True)(x), model(x)
    assert rel_err(out, ref) <= TOL[torch.float32]


# torchvision's VGG-11..19 with and without BN (name: conv count), AlexNet, GoogLeNet and ResNet-18/50
# with their square input size: 32 for all but AlexNet, 63 for it. That is the smallest VGG (five 2x2
# max-pools) and AlexNet (three 3x3/2 max-pools) take; the adaptive average pools before the
# classifiers take any map.
VGGS = {f"vgg{depth}{bn}": convs for depth, convs in ((11, 8), (13, 10), (16, 13), (19, 16)) for bn in ("", "_bn")}
TORCHVISION = {**{name: 32 for name in VGGS}, "alexnet": 63, "googlenet": 32, "resnet18": 32, "resnet50": 32}


def torchvision_model(name, size):
    """torchvision's `name`, untrained, with BN statistics calibrated on random images (so every BN
    output has unit scale and folding is not the identity) and random BN affine parameters."""
    models = pytest.importorskip("torchvision.models", reason="torchvision is not installed")
    from zeroskip.bench.models import calibrate_bn
    torch.manual_seed(0)
    extra = dict(aux_logits=False, init_weights=True) if name == "googlenet" else {}
    model = getattr(models, name)(weights=None, **extra)
    calibrate_bn(model, (3, size, size))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def check_torchvision(name, model, x, **options):
    """check() on a torchvision model, plus what convert_ must have made of it: every conv
    replaced; VGG's conv [-> BN] -> ReLU [-> max-pool] runs and AlexNet's conv -> ReLU [-> pool]
    runs fused, one ConvActPool per pool; every BN folded and none left, whether it follows a
    conv in an nn.Sequential (VGG's, ResNet's downsample branches) or in a block's forward
    (ResNet's main path, GoogLeNet's BasicConv2d); ResNet's stem fused with its ReLU and max-pool
    (modules called once in ResNet.forward); the blocks' convs (a ReLU module called 2-3 times, the
    residual add) and GoogLeNet's (F.relu) fused by rewriting their forwards."""
    convs, norms = names_of(model, nn.Conv2d), names_of(model, nn.BatchNorm2d)
    with torch.no_grad():  # the output must depend on the convs, or check() could not fail
        other = model(torch.randn_like(x))
        assert rel_err(model(x), other) > 0.01
    report = check(model, x, **options)
    assert report["converted"] == convs and report["kept_bn"] == []
    assert names_of(model, nn.Conv2d) == [] and names_of(model, nn.BatchNorm2d) == []
    assert report["folded_bn"] == norms
    pooled = names_of(model, ConvActPool)
    if name in VGGS:
        assert len(convs) == VGGS[name] and report["fused"] == convs and len(pooled) == 5
        assert len(norms) == (len(convs) if name.endswith("_bn") else 0)
    elif name == "alexnet":
        assert report["fused"] == convs and pooled == ["features.0", "features.3", "features.10"]
    elif name.startswith("resnet"):  # the stem's conv -> bn1 -> relu -> maxpool, traced in ResNet.forward
        assert pooled == ["conv1"] and model.conv1.pool_padding == (1, 1)
        # the blocks' forwards rewritten: every main-path conv takes its ReLU, each block's last one the add
        last = "conv2" if name == "resnet18" else "conv3"
        ends = [c for c in convs if c.endswith(last)]
        if "example_inputs" in options:  # the add's operands seen with one shape: fused
            assert report["residual"] == ends and report["reasons"] == {}
        else:
            assert report["residual"] == [] and "unknown without example_inputs" in report["reasons"][ends[0]]
        fused = [c for c in convs if "downsample" not in c and (c not in ends or report["residual"])]
        assert sorted(report["fused"]) == sorted(fused)
    else:  # GoogLeNet's BasicConv2d applies F.relu: its forward is rewritten, the ReLU in the epilogue
        assert report["fused"] == convs and pooled == [] and report["residual"] == []
    if name in ("resnet18", "resnet50", "googlenet"):
        # ResNet: the stem's BN, each block's main-path BNs and the downsample branches' BNs
        # (ResNet-18: 1 + 8 * 2 + 3, ResNet-50: 1 + 16 * 3 + 4); GoogLeNet: one per conv.
        assert len(norms) == {"resnet18": 20, "resnet50": 53, "googlenet": len(convs)}[name]
        assert len([n for n in norms if ".downsample." in n]) == {"resnet18": 3, "resnet50": 4, "googlenet": 0}[name]
    fused = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.activation is not None]
    assert all(m.activation == "relu" for m in fused) and len(fused) == len(report["fused"])
    assert all(m.pool == "max" for m in model.modules() if isinstance(m, ConvActPool))
    return report


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_torch_algo(name, device):
    size = TORCHVISION[name]
    model = torchvision_model(name, size).to(device)
    x = torch.randn(1, 3, size, size, device=device)
    check_torchvision(name, model, x, example_inputs=x, algo="torch")
    assert {m.algo for m in model.modules() if isinstance(m, nn.Conv2d)} == {"torch"}


# Through the kernels on the same models (the CPU interpreter costs ~10 ms per program-iteration:
# one 512->512 3x3 conv on a map of at most 128 pixels takes ~6 s there, so inputs stay minimal).
@pytest.mark.parametrize("name", ["vgg11_bn", "alexnet", "resnet18", "googlenet"])
def test_torchvision_kernels(name, device):
    size = TORCHVISION[name]
    model = torchvision_model(name, size).to(device)
    check_torchvision(name, model, torch.randn(1, 3, size, size, device=device), algo="ecr")
    assert {m.algo for m in model.modules() if isinstance(m, nn.Conv2d)} == {"ecr"}


def test_converted_resnet_under_compile_and_cuda_graphs(device):
    """A converted ResNet-18 compiles to one graph (the custom ops trace) and, on CUDA, replays in a
    CUDA graph with algo="auto" (which runs the kernels on its 3x3 convs) as it runs eagerly."""
    model = torchvision_model("resnet18", 32).to(device)
    zeroskip.convert_(model, algo="torch" if device == "cpu" else "auto")
    x = torch.randn(1, 3, 32, 32, device=device)
    with torch.no_grad():
        ref = model(x)  # first calls (kernel tuning) before any capture
        out = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
        assert rel_err(out, ref) <= TOL[torch.float32]
        if device != "cuda":
            return
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = model(x)
        x.copy_(torch.randn_like(x))
        graph.replay()
        assert rel_err(out, model(x)) <= TOL[torch.float32] and rel_err(out, ref) > 0


def test_sequential_subclass_with_own_forward_is_not_fused():
    class Residual(nn.Sequential):
        def forward(self, x):
            return self[1](self[0](x) + x)

    model = nn.Sequential(Residual(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU())).eval()
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        want = model(x)
        zeroskip.convert_(model, algo="torch")
        got = model(x)
    assert isinstance(model[0][1], nn.ReLU)                  # not absorbed into the conv
    assert torch.allclose(got, want, atol=1e-6)
