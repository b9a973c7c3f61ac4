"""algo="cudnn": cuDNN's fused conv + bias + ReLU (+ residual add), then any pool, against float64
references on the GPU; on the CPU, the errors for what it cannot run."""
import pytest
import torch
import torch.nn.functional as F

import zeroskip
from zeroskip.rules import HOPPER
from helpers import TOL, reference, rel_err, sparse

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
cuda_only = pytest.mark.skipif("config.getoption('--device') != 'cuda'", reason="cuDNN runs on the GPU only")


def _tol(dtype):
    return TOL[dtype] if dtype != torch.float32 else 1e-5


@cuda_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("with_residual", [None, "dense", "strided"])
@pytest.mark.parametrize("conv", [dict(padding=1), dict(stride=2, padding=1), dict(padding="same", dilation=2),
                                  dict(groups=4, padding=1)], ids=["3x3", "3x3s2", "same-dil2", "groups4"])
def test_fused_equals_float64_reference(dtype, layout, with_residual, conv):
    x = sparse((2, 16, 9, 11), 0.5, device="cuda").to(dtype).contiguous(memory_format=LAYOUTS[layout])
    w = (torch.randn(24, 16 // conv.get("groups", 1), 3, 3, device="cuda") / 6).to(dtype)
    b = torch.randn(24, device="cuda").to(dtype)
    pre = reference(x, w, b, **conv)
    r = None
    if with_residual == "dense":
        r = torch.randn(pre.shape, device="cuda").to(dtype)
    elif with_residual == "strided":  # a channel slice of a wider tensor, in the other layout
        wide = torch.randn(pre.shape[0], pre.shape[1] + 3, *pre.shape[2:], device="cuda").to(dtype)
        r = wide.contiguous(memory_format=torch.channels_last if layout == "nchw" else torch.contiguous_format)[:, 2:-1]
    if r is not None:
        pre = pre + r.double().cpu()
    with torch.no_grad():
        out = zeroskip.conv2d(x, w, b, **conv, activation="relu", residual=r, algo="cudnn")
    assert out.dtype == dtype and out.is_contiguous(memory_format=LAYOUTS[layout])
    assert rel_err(out, F.relu(pre)) <= _tol(dtype)


@cuda_only
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pool_after_the_fused_conv(pool):
    x = sparse((2, 8, 10, 10), 0.5, device="cuda").contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(16, 8, 3, 3, device="cuda") / 5, torch.randn(16, device="cuda")
    with torch.no_grad():
        out = zeroskip.conv2d_pool(x, w, b, padding=1, pool=pool, pool_size=3, pool_stride=2, pool_padding=1,
                                   algo="cudnn")
    pooled = F.max_pool2d if pool == "max" else F.avg_pool2d
    assert rel_err(out, pooled(F.relu(reference(x, w, b, padding=1)), 3, 2, 1)) <= 1e-5


@cuda_only
def test_auto_takes_the_rule_in_16_bit():
    from zeroskip.dispatch import decide
    from zeroskip.geometry import check_conv
    x = torch.randn(1, 64, 56, 56, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 64, 1, 1, device="cuda", dtype=torch.float16)
    spec = check_conv(x, w, None, 1, 0, 1, 1)
    if zeroskip.runtime.gpu_class(x.device) == "hopper":
        assert decide(x, spec, "relu", plan=zeroskip.plan.Plan())[0] == "cudnn"
        assert decide(x, spec, None, plan=zeroskip.plan.Plan())[0] == "torch"  # nothing to fuse without ReLU


@pytest.mark.parametrize("activation", [None, "relu6"])
def test_relu_only(activation, device):
    x, w = torch.randn(1, 4, 6, 6, device=device), torch.randn(4, 4, 3, 3, device=device)
    with pytest.raises(ValueError, match=f"algo='cudnn' cannot run this call: cuDNN fuses ReLU only, "
                                         f"got activation={activation!r}"):
        zeroskip.conv2d(x, w, activation=activation, algo="cudnn")


def test_cpu_input_is_refused():
    x, w = torch.randn(1, 4, 6, 6), torch.randn(4, 4, 3, 3)
    with pytest.raises(ValueError, match="algo='cudnn' cannot run this call: it runs cuDNN and needs a CUDA tensor"):
        zeroskip.conv2d(x, w, activation="relu", algo="cudnn")


def test_rules_use_it_only_where_measured():
    """The 16-bit channels_last rows it has were measured at batch 1 and 32; nothing else names it."""
    rows = [r for r in HOPPER if r.algo == "cudnn"]
    assert rows and all(dict(r.when)["precision"] == ("fp16", "bf16") and dict(r.when)["channels_last"]
                        and dict(r.when)["batch"].hi == 32 for r in rows)
