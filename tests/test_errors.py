"""Bad input raises an error that names the argument and the value."""
import pytest
import torch

import zeroskip

X = torch.zeros(1, 4, 8, 8)
W = torch.zeros(6, 4, 3, 3)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(input=torch.zeros(4, 8)), ValueError, r"input must be 4-D \(N, C, H, W\) or 3-D \(C, H, W\), got shape \(4, 8\)"),
    (dict(weight=torch.zeros(6, 4, 3)), ValueError, r"weight must be 4-D .* got shape \(6, 4, 3\)"),
    (dict(input=X.long()), TypeError, "input must be a floating-point tensor, got dtype torch.int64"),
    (dict(weight=W.half()), TypeError, "weight dtype torch.float16 does not match input dtype torch.float32"),
    (dict(weight=W.to("meta")), ValueError, "weight is on meta but input is on cpu"),
    (dict(weight=torch.zeros(6, 3, 3, 3)), ValueError, "weight expects 3 channels per group"),
    (dict(groups=3), ValueError, "input channels 4 are not divisible by groups=3"),
    (dict(weight=torch.zeros(5, 2, 3, 3), groups=2), ValueError, "out-channels 5 are not divisible by groups=2"),
    (dict(groups=0), ValueError, "groups must be a positive int, got 0"),
    (dict(stride=0), ValueError, r"stride must be >= 1, got 0"),
    (dict(stride=(1, -2)), ValueError, r"stride must be >= 1, got \(1, -2\)"),
    (dict(stride=1.5), TypeError, "stride must be an int or a pair of ints, got 1.5"),
    (dict(padding=-1), ValueError, "padding must be >= 0, got -1"),
    (dict(padding="full"), ValueError, "padding must be an int, a pair, 'valid' or 'same', got 'full'"),
    (dict(padding="same", stride=2), ValueError, "padding='same' needs stride 1"),
    (dict(dilation=(1, 0)), ValueError, r"dilation must be >= 1, got \(1, 0\)"),
    (dict(weight=torch.zeros(6, 4, 9, 3)), ValueError, "output size would be 0x6"),
    (dict(bias=torch.zeros(5)), ValueError, r"bias must have shape \(6,\), got \(5,\)"),
    (dict(bias=torch.zeros(6).double()), TypeError, "bias dtype torch.float64 does not match"),
    (dict(activation="gelu"), ValueError, "activation must be one of .* got 'gelu'"),
    (dict(algo="fast"), ValueError, "algo must be one of .* got 'fast'"),
])
@pytest.mark.parametrize("op", ["conv2d", "conv2d_pool"])
def test_bad_conv_arguments(op, kwargs, exc, match):
    args = dict(input=X, weight=W)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        getattr(zeroskip, op)(**args)


@pytest.mark.parametrize("kwargs, match", [
    (dict(pool="min"), "pool must be one of .* got 'min'"),
    (dict(pool_size=0), "pool_size must be >= 1, got 0"),
    (dict(pool_stride=(2, 0)), r"pool_stride must be >= 1, got \(2, 0\)"),
    (dict(pool_size=2, pool_padding=2), "pool_padding must be at most half of pool_size"),
    (dict(pool_size=7), "pooled size would be 0x0"),
])
def test_bad_pool_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        zeroskip.conv2d_pool(X, W, **kwargs)
