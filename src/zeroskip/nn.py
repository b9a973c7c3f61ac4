"""Drop-in modules: nn.Conv2d subclasses whose forward is a zeroskip custom op, and Linear (an
nn.Linear subclass with an activation fused).

Both keep nn.Conv2d's parameters (`weight`, `bias`) and constructor, so an nn.Conv2d
state_dict loads unchanged; the fused activation/pool and the algo are plain attributes
(not in the state_dict), as is `plan`: where convert_ measured several calls of one module whose
winners differ, the module keeps algo "auto" and the zeroskip.plan.Plan that picks each call's.
`from_conv` / `from_modules` share the source's parameters, so a converted model keeps training
or loading weights into the same tensors.

What they cannot express raises ValueError naming the attribute: padding_mode other than
"zeros", MaxPool2d with dilation != 1, ceil_mode or return_indices, AvgPool2d with
ceil_mode, count_include_pad=False or divisor_override, activations other than ReLU/ReLU6.
"""
from __future__ import annotations

import torch
from torch import nn

from . import functional, library
from .dispatch import ALGOS
from .geometry import POOLS, check_activation, pair


def _check_algo(algo):
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    return algo


def _planned(module, op, input, weight, bias, **pool) -> str:
    """module.algo; where it is "auto" and the module holds a plan, the plan's algo for this call."""
    plan = getattr(module, "plan", None)  # modules pickled before plans were held have none
    if module.algo != "auto" or plan is None:
        return module.algo
    return plan.algo_for(op, input, weight, bias, module.stride, module.padding, module.dilation,
                         module.groups, activation=module.activation, **pool) or "auto"


def _check_padding_mode(padding_mode):
    if padding_mode != "zeros":
        raise ValueError(f"padding_mode={padding_mode!r} is not supported; zeroskip pads with zeros only")


def activation_name(act: nn.Module | None) -> str | None:
    """nn.ReLU -> "relu", nn.ReLU6 -> "relu6", None -> None; anything else is refused."""
    if act is None:
        return None
    if type(act) is nn.ReLU:
        return "relu"
    if type(act) is nn.ReLU6:
        return "relu6"
    raise ValueError(f"act must be nn.ReLU, nn.ReLU6 or None, got {type(act).__name__}")


def pool_options(pool: nn.Module) -> dict:
    """ConvActPool keyword arguments equivalent to an nn.MaxPool2d / nn.AvgPool2d module."""
    name = type(pool).__name__
    if type(pool) is nn.MaxPool2d:
        if pair(pool.dilation, "dilation", 1) != (1, 1):
            raise ValueError(f"{name}.dilation={pool.dilation!r} is not supported; only 1")
        if pool.return_indices:
            raise ValueError(f"{name}.return_indices=True is not supported")
        kind = "max"
    elif type(pool) is nn.AvgPool2d:
        if not pool.count_include_pad:
            raise ValueError(f"{name}.count_include_pad=False is not supported; padding is counted")
        if pool.divisor_override is not None:
            raise ValueError(f"{name}.divisor_override={pool.divisor_override!r} is not supported")
        kind = "avg"
    else:
        raise ValueError(f"pool must be nn.MaxPool2d or nn.AvgPool2d, got {name}")
    if pool.ceil_mode:
        raise ValueError(f"{name}.ceil_mode=True is not supported; floor mode only")
    return dict(pool=kind, pool_size=pool.kernel_size, pool_stride=pool.stride, pool_padding=pool.padding)


def _conv_args(conv: nn.Conv2d) -> dict:
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    _check_padding_mode(conv.padding_mode)
    return dict(in_channels=conv.in_channels, out_channels=conv.out_channels,
                kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None)


def _share(module: nn.Conv2d, conv: nn.Conv2d) -> nn.Conv2d:
    """Points module's parameters at conv's (the meta-device placeholders are dropped)."""
    module.weight = conv.weight
    module.bias = conv.bias
    return module.train(conv.training)


class Conv2d(nn.Conv2d):
    """act(conv2d(x)) with activation None, "relu" or "relu6", computed by `algo`; forward(x, residual)
    gives act(conv2d(x) + residual)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None, *,
                 activation=None, algo="auto"):
        _check_padding_mode(padding_mode)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device, dtype)
        self.activation = check_activation(activation)
        self.algo = _check_algo(algo)
        self.plan = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, activation=None, algo="auto") -> "Conv2d":
        """A Conv2d sharing conv's parameters (no copy)."""
        return _share(cls(**_conv_args(conv), device="meta", activation=activation, algo=algo), conv)

    def forward(self, input: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        input, weight, bias = functional.autocast_args(input, self.weight, self.bias)
        return library.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
                              activation=self.activation, residual=residual,
                              algo=_planned(self, "conv2d" if residual is None else "conv2d_residual", input,
                                            weight, bias))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}, algo={self.algo!r}"


class ConvActPool(nn.Conv2d):
    """pool(act(conv2d(x))) in one op: F.max_pool2d / F.avg_pool2d semantics, floor mode."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None, *,
                 activation="relu", pool="max", pool_size=2, pool_stride=None, pool_padding=0,
                 algo="auto"):
        _check_padding_mode(padding_mode)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device, dtype)
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.activation = check_activation(activation)
        self.pool = pool
        self.pool_size = pair(pool_size, "pool_size", 1)
        self.pool_stride = pair(pool_size if pool_stride is None else pool_stride, "pool_stride", 1)
        self.pool_padding = pair(pool_padding, "pool_padding", 0)
        if any(2 * p > k for p, k in zip(self.pool_padding, self.pool_size)):
            raise ValueError(f"pool_padding must be at most half of pool_size {self.pool_size}, "
                             f"got {pool_padding!r}")
        self.algo = _check_algo(algo)
        self.plan = None

    @classmethod
    def from_modules(cls, conv: nn.Conv2d, act: nn.Module | None, pool: nn.Module,
                     algo="auto") -> "ConvActPool":
        """conv -> act (nn.ReLU, nn.ReLU6 or None) -> pool (nn.MaxPool2d / nn.AvgPool2d) as one
        module sharing conv's parameters."""
        module = cls(**_conv_args(conv), device="meta", activation=activation_name(act),
                     **pool_options(pool), algo=algo)
        return _share(module, conv)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        input, weight, bias = functional.autocast_args(input, self.weight, self.bias)
        return library.conv2d_pool(input, weight, bias, self.stride, self.padding,
                                   self.dilation, self.groups, activation=self.activation,
                                   pool=self.pool, pool_size=self.pool_size,
                                   pool_stride=self.pool_stride, pool_padding=self.pool_padding,
                                   algo=_planned(self, "conv2d_pool", input, weight, bias, pool=self.pool,
                                                 pool_size=self.pool_size, pool_stride=self.pool_stride,
                                                 pool_padding=self.pool_padding))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, activation={self.activation!r}, pool={self.pool!r}, "
                f"pool_size={self.pool_size}, pool_stride={self.pool_stride}, "
                f"pool_padding={self.pool_padding}, algo={self.algo!r}")


class Linear(nn.Linear):
    """act(F.linear(x)) with activation None, "relu" or "relu6": kernels/linear.py where it measured
    faster at a shape's first call (fp16/bf16, small batch), F.linear elsewhere."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, *, activation=None):
        super().__init__(in_features, out_features, bias, device, dtype)
        self.activation = check_activation(activation)

    @classmethod
    def from_linear(cls, lin: nn.Linear, activation=None) -> "Linear":
        """A Linear sharing lin's parameters (no copy)."""
        if not isinstance(lin, nn.Linear):
            raise TypeError(f"lin must be an nn.Linear, got {type(lin).__name__}")
        return _share(cls(lin.in_features, lin.out_features, lin.bias is not None, device="meta",
                          activation=activation), lin)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return library.linear(input, self.weight, self.bias, activation=self.activation)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """nn.AdaptiveAvgPool2d that copies its input where the output size equals the input's (each bin
    one pixel): VGG's 7x7 -> 7x7 pool took 8.7 us at batch 1 in fp16 through PyTorch's kernel, and its
    channels_last output cost a further copy at the flatten after it (H200,
    benchmarks/model-kernels-vgg19-b1-fp16-h200-1207.txt). The copy is contiguous (NCHW), so a flatten
    after it is a view; values are the pool's exactly."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        size = self.output_size if isinstance(self.output_size, (tuple, list)) else (self.output_size,) * 2
        h, w = input.shape[-2:]
        if (size[0] in (None, h)) and (size[1] in (None, w)):
            return input.clone(memory_format=torch.contiguous_format)
        return super().forward(input)
