"""kernels/layout.py's NCHW -> channels_last copy, and the TF32 direct path that reads its input through it."""
import pytest
import torch

import zeroskip
from helpers import TOL, TOL_TF32, reference, rel_err, sparse


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (1, 70, 13, 11), (3, 1, 4, 4), (0, 4, 2, 2)], ids=str)
def test_copy_keeps_every_value(shape, dtype, device):
    from zeroskip.kernels.layout import to_channels_last
    x = torch.randn(shape, device=device).to(dtype)
    y = to_channels_last(x, zeroskip.runtime.interpreting())
    assert y.is_contiguous(memory_format=torch.channels_last) and y.dtype == dtype
    assert torch.equal(y, x)


@pytest.mark.parametrize("x, word", [(torch.zeros(2, 3, 4), "4-D"),
                                     (torch.zeros(2, 3, 4, 5).transpose(2, 3), "contiguous")])
def test_copy_rejects_other_layouts(x, word):
    from zeroskip.kernels.layout import to_channels_last
    with pytest.raises(ValueError, match=word):
        to_channels_last(x)


@pytest.mark.parametrize("tf32, channels, hw, copied", [(True, 32, 6, True), (True, 8, 6, False), (False, 32, 6, False),
                                                        (True, 32, 1, False)])
def test_tf32_direct_reads_nchw_input_as_channels_last(tf32, channels, hw, copied, device, monkeypatch):
    """One TF32 product per chunk reads NCHW input through a channels_last copy (16+ channels per
    group, where a chunk fills a load); 3xTF32, narrow inputs and 1x1 maps (already channels_last)
    read it as it is."""
    from zeroskip.geometry import check_conv
    from zeroskip.kernels import direct, launch
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    x = torch.zeros(1, channels, hw, hw, device=device)
    spec = check_conv(x, torch.zeros(8, channels, 3, 3, device=device), None, 1, 1, 1, 1)
    got = direct.tf32_input(x, launch.precision("igemm", x.dtype), spec)
    assert (got is not x) is copied
    assert got.is_contiguous(memory_format=torch.channels_last) is (copied or hw == 1)


@pytest.mark.parametrize("pool", [None, "max"])
@pytest.mark.parametrize("algo", ["igemm", "ecr_tc"])
def test_tf32_direct_on_nchw_input_keeps_nchw_output(algo, pool, device):
    torch.backends.cudnn.allow_tf32 = True
    x = sparse((2, 32, 9, 8), 0.6, device=device)
    w = torch.randn(24, 16, 3, 3, device=device)
    b = torch.randn(24, device=device)
    kw = dict(stride=1, padding=1, dilation=1, groups=2)
    if pool:
        out = zeroskip.conv2d_pool(x, w, b, **kw, activation="relu", pool=pool, pool_size=2, algo=algo)
        ref = reference(x, w, b, **kw, activation="relu", pool=pool, pool_size=2)
    else:
        out = zeroskip.conv2d(x, w, b, **kw, algo=algo)
        ref = reference(x, w, b, **kw)
    assert out.is_contiguous() and out.shape == ref.shape
    # the interpreter's dot is fp32, the GPU's TF32
    assert rel_err(out, ref) <= (TOL[torch.float32] if zeroskip.runtime.interpreting() else TOL_TF32)
