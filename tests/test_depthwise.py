"""algo="depthwise": one input channel per group, bias, residual and activation fused, against the
float64 reference; what it cannot take raises naming the argument."""
import pytest
import torch

import zeroskip
from helpers import TOL, reference, rel_err, sparse

# (N, C, H, W, multiplier, kernel, stride, padding, dilation): MobileNet's 3x3 stride 1 and 2 shrunk,
# a 5x5, a dilated one, a channel multiplier of 2, channels past one 64-wide tile, an odd map
GEOMS = [
    (2, 8, 7, 7, 1, 3, 1, 1, 1),
    (1, 12, 9, 8, 1, 3, 2, 1, 1),
    (1, 6, 9, 9, 1, 5, 2, 2, 1),
    (1, 5, 8, 8, 1, 3, 1, 2, 2),
    (1, 4, 6, 6, 2, 3, 1, 0, 1),
    (1, 70, 4, 5, 1, 3, 1, 1, 1),
]


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("geom", GEOMS, ids=str)
def test_fp32(geom, layout, device, poisoned):
    n, c, h, w, mult, k, s, p, d = geom
    x = sparse((n, c, h, w), torch.rand(()).item() * 0.8 + 0.2, device=device)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    wt = torch.randn(c * mult, 1, k, k, device=device)
    b = torch.randn(c * mult, device=device)
    out = zeroskip.conv2d(x, wt, b, s, p, d, c, activation="relu6", algo="depthwise")
    ref = reference(x, wt, b, s, p, d, c, "relu6")
    assert out.shape == ref.shape
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)
    assert rel_err(out, ref) <= TOL[torch.float32]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("density", [0.3, 1.0])
def test_half(dtype, density, device, poisoned):
    x = sparse((2, 16, 8, 8), density, dtype, device).to(memory_format=torch.channels_last)
    wt = (torch.randn(16, 1, 3, 3, device=device) * 0.3).to(dtype)
    b = torch.randn(16, device=device).to(dtype)
    out = zeroskip.conv2d(x, wt, b, 1, 1, 1, 16, activation="relu", algo="depthwise")
    assert out.dtype == dtype
    assert rel_err(out, reference(x, wt, b, 1, 1, 1, 16, "relu")) <= TOL[dtype]


def test_residual_read_in_the_epilogue(device, poisoned):
    """act(conv + r) with r in another layout than the output: read through its own strides."""
    x = sparse((1, 8, 6, 6), 0.6, device=device).to(memory_format=torch.channels_last)
    wt, b = torch.randn(8, 1, 3, 3, device=device), torch.randn(8, device=device)
    r = torch.randn(1, 8, 6, 6, device=device)
    out = zeroskip.conv2d(x, wt, b, 1, 1, 1, 8, activation="relu", residual=r, algo="depthwise")
    ref = torch.relu(reference(x, wt, b, 1, 1, 1, 8) + r.double().cpu())
    assert rel_err(out, ref) <= TOL[torch.float32]


def test_unbatched_and_same_padding(device):
    x = sparse((6, 7, 7), 0.5, device=device)
    wt = torch.randn(6, 1, 4, 4, device=device)  # 'same' with an even kernel pads bottom/right more
    out = zeroskip.conv2d(x, wt, None, 1, "same", 1, 6, algo="depthwise")
    ref = reference(x[None], wt, None, 1, "same", 1, 6)[0]
    assert out.shape == ref.shape and rel_err(out, ref) <= TOL[torch.float32]


@pytest.mark.parametrize("groups, pool, match", [(2, None, "needs one input channel per group"),
                                                 (8, "max", "fuses no pool")])
def test_what_it_cannot_take_raises(groups, pool, match, device):
    x = torch.randn(1, 8, 6, 6, device=device)
    wt = torch.randn(8, 8 // groups, 3, 3, device=device)
    with pytest.raises(ValueError, match=f"algo='depthwise' cannot run this call: {match}"):
        if pool:
            zeroskip.conv2d_pool(x, wt, None, 1, 1, 1, groups, pool=pool, algo="depthwise")
        else:
            zeroskip.conv2d(x, wt, None, 1, 1, 1, groups, algo="depthwise")
