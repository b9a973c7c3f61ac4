"""conv2d(..., residual=r) == act(F.conv2d(...) + r): every algo, the split-K reduction, the custom op with
its gradients, zeroskip.nn.Conv2d, autocast, and the errors for residuals it cannot take."""
import pytest
import torch
import torch.nn.functional as F

import zeroskip
from zeroskip import library
from zeroskip.geometry import check_conv
from helpers import TOL, reference, rel_err, sparse

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def _ref(x, w, b, r, activation, **conv):
    pre = reference(x, w, b, **conv) + r.detach().double().cpu()
    return F.relu(pre) if activation == "relu" else F.relu6(pre) if activation == "relu6" else pre


def _residual(shape, layout, device, dtype=torch.float32):
    """A residual of mixed signs (ResNet's identity after BN), in the given layout; 'strided' is a view
    with a gap between images."""
    r = torch.randn(shape, device=device, dtype=dtype)
    if layout == "strided":
        return torch.randn((shape[0], shape[1] + 3, *shape[2:]), device=device, dtype=dtype)[:, 2:2 + shape[1]]
    return r.contiguous(memory_format=LAYOUTS[layout])


@pytest.mark.parametrize("algo", ["ecr", "ecr_tc", "igemm", "im2col", "winograd", "torch"])
@pytest.mark.parametrize("layout,r_layout", [("nchw", "nchw"), ("channels_last", "channels_last"),
                                             ("channels_last", "nchw"), ("nchw", "strided")])
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
def test_residual_equals_float64_reference(algo, layout, r_layout, activation, device, poisoned):
    density = 0.3 if activation == "relu" else 0.8
    x = sparse((2, 12, 5, 7), density, device=device).contiguous(memory_format=LAYOUTS[layout])
    w, b = torch.randn(20, 12, 3, 3, device=device) / 4, torch.randn(20, device=device)
    r = _residual((2, 20, 5, 7), r_layout, device)
    with torch.no_grad():
        out = zeroskip.conv2d(x, w, b, padding=1, activation=activation, residual=r, algo=algo)
    assert out.is_contiguous(memory_format=LAYOUTS[layout])
    ref = _ref(x, w, b, r, activation, padding=1)
    assert not torch.isnan(out).any()
    tol = 1e-3 if algo == "winograd" and device == "cpu" else TOL[torch.float32]  # the interpreter rounds as TF32
    assert rel_err(out, ref) <= tol


@pytest.mark.parametrize("stride,groups,kernel", [(2, 1, 3), (1, 2, 1), (2, 1, 1), (1, 1, 5)])
def test_residual_with_strides_groups_and_kernels(stride, groups, kernel, device):
    x = sparse((2, 8, 9, 9), 0.5, device=device).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(16, 8 // groups, kernel, kernel, device=device), torch.randn(16, device=device)
    conv = dict(stride=stride, padding=kernel // 2, groups=groups)
    oh = (9 + 2 * (kernel // 2) - kernel) // stride + 1
    r = torch.randn(2, 16, oh, oh, device=device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = zeroskip.conv2d(x, w, b, **conv, activation="relu", residual=r, algo="igemm")
    assert rel_err(out, _ref(x, w, b, r, "relu", **conv)) <= TOL[torch.float32]


@pytest.mark.parametrize("split", [2, 5])
@pytest.mark.parametrize("r_layout", ["nchw", "channels_last"])
def test_split_k_reduction_adds_the_residual(split, r_layout, device, poisoned):
    """The split-K reduce kernel runs the epilogue: it must read the residual too (and only once)."""
    from zeroskip.kernels import direct
    x = sparse((2, 36, 5, 6), 0.4, device=device)
    w, b = torch.randn(24, 36, 3, 3, device=device), torch.randn(24, device=device)
    r = _residual((2, 24, 5, 6), r_layout, device)
    spec = check_conv(x, w, b, 1, 1, 1, 1)
    cfg = direct.Config(block_m=32, block_n=16, block_k=16, num_warps=1, num_stages=1)
    out = direct.conv(x, w, b, spec, "relu", "igemm", cfg, split=split, residual=r)
    assert rel_err(out, _ref(x, w, b, r, "relu", padding=1)) <= TOL[torch.float32]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("algo", ["ecr_tc", "igemm"])
def test_residual_in_16_bit(dtype, algo, device):
    x = sparse((1, 16, 6, 6), 0.5, dtype=dtype, device=device).contiguous(memory_format=torch.channels_last)
    w, b = (torch.randn(32, 16, 3, 3, device=device) / 8).to(dtype), torch.randn(32, device=device).to(dtype)
    r = torch.randn(1, 32, 6, 6, device=device).to(dtype)
    with torch.no_grad():
        out = zeroskip.conv2d(x, w, b, padding=1, activation="relu", residual=r, algo=algo)
    assert out.dtype == dtype
    assert rel_err(out, _ref(x, w, b, r, "relu", padding=1)) <= TOL[dtype]


def test_nan_in_the_residual_propagates(device):
    x = sparse((1, 8, 4, 4), 0.5, device=device)
    w = torch.randn(8, 8, 3, 3, device=device)
    r = torch.zeros(1, 8, 4, 4, device=device)
    r[0, 3, 1, 2] = float("nan")
    with torch.no_grad():
        out = zeroskip.conv2d(x, w, padding=1, activation="relu", residual=r, algo="igemm")
    assert torch.isnan(out[0, 3, 1, 2]) and torch.isnan(out).sum() == 1


def test_unbatched_input_takes_an_unbatched_residual(device):
    x = sparse((8, 5, 5), 0.5, device=device)
    w, r = torch.randn(4, 8, 3, 3, device=device), torch.randn(4, 5, 5, device=device)
    with torch.no_grad():
        out = zeroskip.conv2d(x, w, padding=1, residual=r, algo="igemm")
    assert out.shape == (4, 5, 5)
    assert rel_err(out, _ref(x[None], w, None, r[None], None, padding=1)[0]) <= TOL[torch.float32]


@pytest.mark.parametrize("make,error,match", [
    (lambda r: r[:, :, :-1], ValueError, r"residual must have the output's shape \(2, 8, 5, 5\), got \(2, 8, 4, 5\)"),
    (lambda r: r[:1], ValueError, "output's shape"),
    (lambda r: r[0, 0, 0, 0].expand(1), ValueError, "output's shape"),
    (lambda r: r.double(), ValueError, "residual must have the input's dtype torch.float32, got torch.float64"),
    (lambda r: r.tolist(), TypeError, "residual must be a torch.Tensor or None, got list"),
])
@pytest.mark.parametrize("route", [zeroskip, library], ids=["functional", "custom-op"])
def test_bad_residual_is_named(make, error, match, route, device):
    x, w = sparse((2, 4, 5, 5), 0.5, device=device), torch.randn(8, 4, 3, 3, device=device)
    r = make(torch.randn(2, 8, 5, 5, device=device))
    with torch.no_grad(), pytest.raises(error, match=match):
        route.conv2d(x, w, padding=1, residual=r, algo="igemm")


def test_residual_on_another_device_is_named(device):
    if device != "cuda":
        pytest.skip("needs a second device: runs with --device cuda")
    x, w = torch.rand(1, 4, 5, 5, device=device), torch.randn(8, 4, 3, 3, device=device)
    with torch.no_grad(), pytest.raises(ValueError, match="residual must be on the input's device"):
        zeroskip.conv2d(x, w, padding=1, residual=torch.randn(1, 8, 5, 5), algo="igemm")


def test_custom_op_gradients_match_autograd(device):
    """zeroskip.nn.Conv2d's backward recomputes act(conv + r): gradients for x, weight, bias and r."""
    torch.manual_seed(0)
    conv = zeroskip.nn.Conv2d(6, 8, 3, padding=1, activation="relu", algo="igemm").to(device)
    x = torch.randn(2, 6, 5, 5, device=device, requires_grad=True)
    r = torch.randn(2, 8, 5, 5, device=device, requires_grad=True)
    out = conv(x, r)
    grad = torch.randn_like(out)
    out.backward(grad)
    x2, r2 = x.detach().double().requires_grad_(), r.detach().double().requires_grad_()
    w2, b2 = conv.weight.detach().double().requires_grad_(), conv.bias.detach().double().requires_grad_()
    ref = F.relu(F.conv2d(x2, w2, b2, padding=1) + r2)
    ref.backward(grad.double())
    for got, want in ((out, ref), (x.grad, x2.grad), (r.grad, r2.grad), (conv.weight.grad, w2.grad),
                      (conv.bias.grad, b2.grad)):
        assert rel_err(got, want.detach()) <= TOL[torch.float32]


def test_module_with_and_without_residual(device):
    conv = zeroskip.nn.Conv2d(4, 4, 3, padding=1, activation="relu6", algo="ecr_tc").to(device).eval()
    x, r = sparse((1, 4, 6, 6), 0.5, device=device), torch.randn(1, 4, 6, 6, device=device) * 4
    with torch.no_grad():
        plain, added = conv(x), conv(x, r)
    assert rel_err(plain, reference(x, conv.weight, conv.bias, padding=1, activation="relu6")) <= TOL[torch.float32]
    assert rel_err(added, _ref(x, conv.weight, conv.bias, r, "relu6", padding=1)) <= TOL[torch.float32]


@pytest.mark.parametrize("route", [zeroskip, library], ids=["functional", "custom-op"])
def test_autocast_casts_the_residual_to_the_conv_dtype(route, device):
    x, w, b = sparse((1, 8, 6, 6), 0.5, device=device), torch.randn(8, 8, 3, 3, device=device) / 8, None
    r = torch.randn(1, 8, 6, 6, device=device)  # fp32, as a user's identity branch could be
    with torch.no_grad(), torch.autocast(device, dtype=torch.float16):
        out = route.conv2d(x, w, b, padding=1, activation="relu", residual=r, algo="igemm")
    assert out.dtype == torch.float16
    assert rel_err(out, _ref(x.half(), w.half(), None, r.half(), "relu", padding=1)) <= TOL[torch.float16]


def test_empty_batch_with_residual(device):
    x, w = torch.rand(0, 4, 5, 5, device=device), torch.randn(8, 4, 3, 3, device=device)
    with torch.no_grad():
        out = zeroskip.conv2d(x, w, padding=1, activation="relu", residual=torch.rand(0, 8, 5, 5, device=device),
                              algo="igemm")
    assert out.shape == (0, 8, 5, 5)
