"""The undo log that makes convert_ all-or-nothing: each change to the model is recorded before it
is made, and rollback() undoes them newest first, restoring the same objects (modules, Parameters)
and the same values bit for bit. It holds a copy of each folded conv's weight and bias until
convert_ returns; copying the whole model instead would cost its size in memory and break the
identity of its Parameters, which optimizers and user code hold.
"""
from __future__ import annotations

import torch
from torch import nn

_MISSING = object()


class Undo:
    def __init__(self):
        self._steps = []

    def set_child(self, parent: nn.Module, name: str, module: nn.Module) -> None:
        """parent.<name> = module, for an existing child `name`."""
        old = parent._modules[name]
        self._steps.append(lambda: parent._modules.__setitem__(name, old))
        setattr(parent, name, module)

    def set_attribute(self, obj: nn.Module, name: str, value) -> None:
        """obj.<name> = value for a plain attribute (not a child, Parameter or buffer)."""
        old = obj.__dict__.get(name, _MISSING)
        self._steps.append(lambda: obj.__dict__.pop(name, None) if old is _MISSING
                           else obj.__dict__.__setitem__(name, old))
        setattr(obj, name, value)

    def fold_bn(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        """fold_bn_(conv, bn), keeping conv's weight and bias values (and its bias slot) to restore."""
        from .fuse import fold_bn_
        weight = conv.weight.detach().clone()
        bias = conv._parameters["bias"]
        bias_value = None if bias is None else bias.detach().clone()

        @torch.no_grad()
        def restore():
            # copy_ on the Parameter, not .data: the version counter moves, so no packed copy of the
            # folded weight (kernels/weight_cache.py) outlives the rollback
            conv.weight.copy_(weight)
            conv._parameters["bias"] = bias
            if bias is not None:
                bias.copy_(bias_value)

        self._steps.append(restore)
        fold_bn_(conv, bn)

    def rollback(self) -> None:
        while self._steps:
            self._steps.pop()()
