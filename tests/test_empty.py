"""Empty calls: an empty batch gives F.conv2d's empty result for every algo, ops and modules alike;
zero input channels, an empty map and an empty weight raise a ValueError naming the shape, never a
failure inside Triton."""
import pytest
import torch

import zeroskip
from helpers import reference
from zeroskip import nn as znn

KERNELS = ["auto", "torch", "ecr", "ecr_tc", "igemm", "winograd", "winograd4", "im2col"]


@pytest.mark.parametrize("algo", KERNELS)
@pytest.mark.parametrize("pool", [None, "max", "avg"])
def test_empty_batch(algo, pool, device):
    x = torch.zeros(0, 4, 8, 8, device=device)
    w, b = torch.randn(6, 4, 3, 3, device=device), torch.randn(6, device=device)
    if pool is None:
        out = zeroskip.conv2d(x, w, b, padding=1, activation="relu", algo=algo)
    else:
        out = zeroskip.conv2d_pool(x, w, b, padding=1, activation="relu", pool=pool, algo=algo)
    ref = reference(x, w, b, padding=1, activation="relu", pool=pool)
    assert out.shape == ref.shape == ((0, 6, 4, 4) if pool else (0, 6, 8, 8))
    assert out.dtype == x.dtype and out.device == x.device


@pytest.mark.parametrize("algo", ["auto", "ecr"])
def test_empty_batch_modules(algo, device):
    x = torch.zeros(0, 4, 8, 8, device=device)
    conv = znn.Conv2d(4, 6, 3, padding=1, activation="relu", algo=algo).to(device)
    stage = znn.ConvActPool(4, 6, 3, padding=1, pool="avg", algo=algo).to(device)
    with torch.no_grad():
        assert conv(x).shape == (0, 6, 8, 8) and stage(x).shape == (0, 6, 4, 4)
        assert conv(x.to(memory_format=torch.channels_last)).shape == (0, 6, 8, 8)


EMPTY = [
    (torch.zeros(1, 0, 8, 8), torch.zeros(4, 0, 3, 3), r"input has 0 channels \(shape \(1, 0, 8, 8\)\)"),
    (torch.zeros(2, 0, 8, 8), torch.zeros(4, 0, 3, 3), r"input has 0 channels"),
    (torch.zeros(0, 8, 8), torch.zeros(4, 0, 3, 3), r"input has 0 channels \(shape \(1, 0, 8, 8\)\)"),  # unbatched
    (torch.zeros(1, 4, 0, 8), torch.zeros(6, 4, 1, 1), r"height and width must be >= 1, got shape \(1, 4, 0, 8\)"),
    (torch.zeros(1, 4, 8, 0), torch.zeros(6, 4, 1, 1), r"height and width must be >= 1, got shape \(1, 4, 8, 0\)"),
    (torch.zeros(1, 4, 8, 8), torch.zeros(0, 4, 3, 3), r"weight shape \(0, 4, 3, 3\) has an empty dimension"),
]


@pytest.mark.parametrize("x, w, match", EMPTY)
@pytest.mark.parametrize("algo", KERNELS)
@pytest.mark.parametrize("op", ["conv2d", "conv2d_pool"])
def test_empty_channels_or_map_raise(x, w, match, algo, op, device):
    bias = torch.randn(w.shape[0], device=device)
    with pytest.raises(ValueError, match=match):
        getattr(zeroskip, op)(x.to(device), w.to(device), bias, padding=1, algo=algo)


def test_zero_channel_module_raises(device):
    with pytest.warns(UserWarning, match="zero-element"):  # nn.Conv2d's own init warns
        conv = znn.Conv2d(0, 4, 3, padding=1).to(device)
    with torch.no_grad(), pytest.raises(ValueError, match="input has 0 channels"):
        conv(torch.zeros(1, 0, 8, 8, device=device))
