"""kernels/linear.py (a fully connected layer at small batch) against float64, and the classifier-head
modules convert_ makes: zeroskip.nn.Linear and zeroskip.nn.AdaptiveAvgPool2d."""
import pytest
import torch
import torch.nn.functional as F

from zeroskip.accuracy import rel_err
from zeroskip.kernels import linear

# (rows, in_features, out_features): one row, a reduction that is not a multiple of the block,
# outputs past one block, VGG's classifier shape scaled down, 17 rows (two row blocks of 16)
SHAPES = [(1, 40, 20), (3, 100, 33), (2, 64, 48), (17, 24, 8)]


def _ref(x, w, b, activation):
    y = F.linear(x.double(), w.double(), None if b is None else b.double())
    return y.clamp(min=0) if activation == "relu" else y.clamp(0, 6) if activation == "relu6" else y


@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_against_float64(shape, bias, activation, device):
    rows, k, n = shape
    torch.manual_seed(rows * k + n)
    x = torch.randn(rows, k, device=device).half()
    w = (torch.randn(n, k, device=device) / k ** 0.5).half()
    b = torch.randn(n, device=device).half() if bias else None
    y = linear.run(x, w, b, activation, linear.INTERPRETER_CONFIG)
    assert y.shape == (rows, n) and y.dtype == torch.float16
    assert rel_err(y, _ref(x, w, b, activation)) <= 2e-3
    assert rel_err(linear.linear(x, w, b, activation), _ref(x, w, b, activation)) <= 2e-3


def test_pick_cycles_through_weight_copies(monkeypatch):
    """The first-call timing reads a new copy of the weight each call (runtime.weight_copies)."""
    from zeroskip import runtime
    monkeypatch.setattr(runtime, "l2_bytes", lambda device: 64)  # a 32-byte weight: 4 copies
    w = torch.randn(4, 4).half()
    copies = linear._Copies(w)
    seen = [copies.next() for _ in range(8)]
    assert all(torch.equal(c, w) for c in seen) and len({c.data_ptr() for c in seen}) == 4
    assert [c.data_ptr() for c in seen[:4]] == [c.data_ptr() for c in seen[4:]]


def test_leading_dims_and_nan(device):
    """A 3-D input keeps its leading dims; NaN in the input reaches the outputs as in F.linear + ReLU."""
    x = torch.randn(2, 3, 32, device=device).half()
    x[1, 2, 5] = float("nan")
    w, b = (torch.randn(16, 32, device=device) / 6).half(), torch.randn(16, device=device).half()
    y = linear.linear(x, w, b, "relu")
    ref = F.relu(F.linear(x.float(), w.float(), b.float()))
    assert y.shape == (2, 3, 16) and torch.equal(y.isnan(), ref.isnan()) and y[1, 2].isnan().all()
    assert rel_err(y.nan_to_num(), ref.nan_to_num()) <= 2e-3


def test_calls_the_kernel_cannot_run_go_to_torch(device):
    """fp32, more than MAX_ROWS rows, mismatched dtypes: PyTorch's result, bit for bit."""
    w, b = torch.randn(8, 16, device=device), torch.randn(8, device=device)
    for x in (torch.randn(2, 16, device=device), torch.randn(linear.MAX_ROWS + 1, 16, device=device).half()):
        ww, bb = w.to(x.dtype), b.to(x.dtype)
        assert linear.supports(x, ww, bb) is not None
        if x.device.type == "cpu" and x.dtype == torch.float16:
            continue  # no fp16 matmul reference on every CPU build; the reason above is what is tested
        assert torch.equal(linear.linear(x, ww, bb, "relu"), F.relu(F.linear(x, ww, bb)))
    assert "dtypes differ" in linear.supports(torch.randn(1, 16).half(), w, None)
    assert "do not make" in linear.supports(torch.randn(1, 15).half(), w.half(), None)


def test_bad_activation_is_named():
    with pytest.raises(ValueError, match="activation"):
        linear.linear(torch.randn(1, 4).half(), torch.randn(2, 4).half(), None, "gelu")


def test_module_op_and_autograd(device):
    """zeroskip.nn.Linear shares the nn.Linear's parameters; the op passes opcheck (fake, autograd);
    gradients through it match nn.Linear + ReLU's."""
    import zeroskip.nn as znn
    torch.manual_seed(1)
    lin = torch.nn.Linear(24, 10).to(device)
    mod = znn.Linear.from_linear(lin, "relu")
    assert mod.weight is lin.weight and mod.bias is lin.bias and mod.activation == "relu"
    x = torch.randn(3, 24, device=device)
    with torch.no_grad():
        assert rel_err(mod.half()(x.half()), _ref(x.half(), lin.weight.half(), lin.bias.half(), "relu")) <= 2e-3
    lin.float()
    xg = x.clone().requires_grad_()
    F.relu(lin(xg)).square().sum().backward()
    want = (xg.grad.clone(), lin.weight.grad.clone(), lin.bias.grad.clone())
    xg.grad = lin.weight.grad = lin.bias.grad = None
    mod(xg).square().sum().backward()
    for got, ref in zip((xg.grad, lin.weight.grad, lin.bias.grad), want):
        assert rel_err(got, ref) <= 1e-6
    torch.library.opcheck(torch.ops.zeroskip.linear.default, (x, lin.weight.detach(), lin.bias.detach(), "relu6"))
    with pytest.raises(TypeError, match="nn.Linear"):
        znn.Linear.from_linear(torch.nn.Conv2d(1, 1, 1))


def test_convert_fuses_a_classifier(device):
    """A VGG-style classifier in nn.Sequential: each Linear takes the ReLU after it (its place
    nn.Identity()), Dropout stays; a Linear with a hook stays as it is, with the reason."""
    import zeroskip
    import zeroskip.nn as znn
    torch.manual_seed(2)
    head = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(inplace=True), torch.nn.Dropout(),
                               torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5)).eval().to(device)
    head[3].register_forward_hook(lambda m, a, out: None)
    x = torch.randn(2, 32, device=device)
    with torch.no_grad():
        ref = head(x)
    zeroskip.convert_(head, x)
    report = head.zeroskip_report
    assert report["linear"] == ["0", "5"] and "3" in report["reasons"]
    assert isinstance(head[0], znn.Linear) and head[0].activation == "relu" and isinstance(head[1], torch.nn.Identity)
    assert type(head[3]) is torch.nn.Linear and isinstance(head[4], torch.nn.ReLU)
    assert isinstance(head[2], torch.nn.Dropout) and head[5].activation is None
    with torch.no_grad():
        assert rel_err(head(x), ref) <= 1e-6


def test_adaptive_pool_of_equal_size_is_a_copy(device):
    """Output size equal to the input's (None: the input's): the input's values in a new contiguous
    tensor; other sizes pool as nn.AdaptiveAvgPool2d does."""
    import zeroskip.nn as znn
    x = torch.randn(2, 3, 7, 5, device=device).to(memory_format=torch.channels_last)
    x[0, 1, 2, 3] = float("nan")
    for size in ((7, 5), (None, 5), (7, None)):
        y = znn.AdaptiveAvgPool2d(size)(x)
        assert torch.equal(y.nan_to_num(), x.nan_to_num()) and y.isnan().sum() == 1
        assert y.is_contiguous() and y.data_ptr() != x.data_ptr()
    for size in (3, (1, 1), (7, 4)):
        ref = torch.nn.AdaptiveAvgPool2d(size)(x)
        assert torch.allclose(znn.AdaptiveAvgPool2d(size)(x), ref, equal_nan=True)


def test_convert_a_vgg_style_head(device):
    """convert_ on features -> AdaptiveAvgPool2d -> flatten -> classifier: the pool and the Linears are
    replaced, the output unchanged."""
    import zeroskip
    import zeroskip.nn as znn

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU())
            self.avgpool = torch.nn.AdaptiveAvgPool2d((5, 5))
            self.classifier = torch.nn.Sequential(torch.nn.Linear(100, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    torch.manual_seed(3)
    net, x = Net().eval().to(device), torch.randn(2, 2, 5, 5, device=device)
    with torch.no_grad():
        ref = net(x)
    zeroskip.convert_(net, x)
    report = net.zeroskip_report
    assert report["adaptive_pools"] == ["avgpool"] and report["linear"] == ["classifier.0", "classifier.2"]
    assert type(net.avgpool) is znn.AdaptiveAvgPool2d and net.avgpool.output_size == (5, 5)
    with torch.no_grad():
        assert rel_err(net(x), ref) <= 1e-5
