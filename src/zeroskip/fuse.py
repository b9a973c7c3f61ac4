"""The in-place swap behind convert_: each wanted nn.Conv2d becomes a zeroskip module, a
Conv2d [-> BatchNorm2d] [-> ReLU/ReLU6] [-> MaxPool2d/AvgPool2d] run inside an nn.Sequential
becomes one fused module plus nn.Identity() placeholders, and in any other module a BatchNorm2d
child that its torch.fx-traced forward applies to a conv child's output alone is folded into that
conv (rules in zeroskip.convert).
"""
from __future__ import annotations

import inspect
from collections import Counter

import torch
from torch import fx, nn

from . import nn as znn

_ACTS = (nn.ReLU, nn.ReLU6)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d)


def _convertible(module) -> bool:
    return type(module) is nn.Conv2d and module.padding_mode == "zeros"


def _at(items, j):
    return items[j][1] if j < len(items) else None


def _expressible_pool(module) -> bool:
    """An nn.MaxPool2d / nn.AvgPool2d that ConvActPool can express (others stay separate)."""
    if type(module) not in _POOLS:
        return False
    try:
        znn.pool_options(module)
    except ValueError:
        return False
    return True


def _foldable(bn, conv) -> bool:
    return (type(bn) is nn.BatchNorm2d and not bn.training and bn.running_mean is not None
            and bn.num_features == conv.out_channels)


@torch.no_grad()
def fold_bn_(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """conv's weight/bias become those of bn(conv(x)) in eval mode (computed in float64)."""
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    shift = -bn.running_mean.double()
    if conv.bias is not None:
        shift = shift + conv.bias.double()
    if bn.affine:
        scale = scale * bn.weight.double()
    bias = shift * scale + (bn.bias.double() if bn.affine else 0)
    conv.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.to(conv.weight), requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(bias)


class _ChildrenAsLeaves(fx.Tracer):
    """Traces one module's own forward: every submodule call stays a single call_module node."""

    def is_leaf_module(self, m, module_qualified_name) -> bool:
        return True


def _own_graph(module):
    """The fx graph of module's forward, or None where tracing fails or one graph may not stand
    for every call: a forward with defaulted, keyword-only or variadic parameters (a check such
    as `if mask is None` would be decided for the trace, not for the call)."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) or p.default is not p.empty for p in params):
        return None
    try:
        return _ChildrenAsLeaves().trace(module)
    except Exception:  # data-dependent control flow, untraceable calls: the module is left as it is
        return None


class _Converter:
    def __init__(self, model, algo, filter_fn, fold_bn, fuse):
        self.algo, self.filter_fn, self.fold_bn, self.fuse = algo, filter_fn, fold_bn, fuse
        counts = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
        self.shared = {i for i, n in counts.items() if n > 1}
        self.done = {}  # id(conv) -> its plain zeroskip Conv2d, reused where a conv is shared
        self.report = dict(converted=[], fused=[], folded_bn=[], kept_bn=[], max_rel_err=None, tolerance=None)

    def wanted(self, name, module) -> bool:
        return _convertible(module) and (self.filter_fn is None or bool(self.filter_fn(name, module)))

    def plain(self, name, conv):
        self.report["converted"].append(name)
        if id(conv) not in self.done:
            self.done[id(conv)] = znn.Conv2d.from_conv(conv, None, self.algo)
        return self.done[id(conv)]

    def walk(self, module, prefix=""):
        # Only Sequential's own forward runs children in order; a subclass may override it
        # (e.g. a residual block), and fusing across its children would change what it computes.
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            self.sequential(module, prefix)
        elif self.fold_bn:
            self.fold_traced(module, prefix)
        for name, child in module.named_children():
            qual = f"{prefix}.{name}" if prefix else name
            if self.wanted(qual, child):
                setattr(module, name, self.plain(qual, child))
            else:
                self.walk(child, qual)

    def sequential(self, seq, prefix):
        """Fuses the runs inside one nn.Sequential; the other convs are left for walk()."""
        items = list(seq.named_children())
        qual = [f"{prefix}.{n}" if prefix else n for n, _ in items]
        i = 0
        while i < len(items):
            conv = items[i][1]
            if not self.wanted(qual[i], conv) or id(conv) in self.shared:
                i += 1
                continue
            j, act, pool = i + 1, None, None
            if self.fold_bn and type(_at(items, j)) is nn.BatchNorm2d:
                if not _foldable(_at(items, j), conv):
                    self.report["kept_bn"].append(qual[j])
                    setattr(seq, items[i][0], self.plain(qual[i], conv))
                    i = j + 1
                    continue
                fold_bn_(conv, _at(items, j))
                self.report["folded_bn"].append(qual[j])
                j += 1
            if self.fuse and type(_at(items, j)) in _ACTS:
                act, j = _at(items, j), j + 1
            if self.fuse and _expressible_pool(_at(items, j)):
                pool, j = _at(items, j), j + 1
            if pool is not None:
                new = znn.ConvActPool.from_modules(conv, act, pool, self.algo)
            else:
                new = znn.Conv2d.from_conv(conv, znn.activation_name(act), self.algo)
            self.report["converted"].append(qual[i])
            if act is not None or pool is not None:
                self.report["fused"].append(qual[i])
            setattr(seq, items[i][0], new)
            for k in range(i + 1, j):
                setattr(seq, items[k][0], nn.Identity())
            i = j

    def fold_traced(self, module, prefix):
        """Folds each BatchNorm2d child of `module` whose input, in the fx trace of module's forward,
        is the output of a wanted Conv2d child used by nothing else; both children are called once
        and their parameters and buffers are not read elsewhere in that forward, and neither is
        shared with another parent. The BN's place gets nn.Identity(); its conv is left for walk()."""
        children = dict(module.named_children())
        qual = {n: f"{prefix}.{n}" if prefix else n for n in children}
        if not (any(type(c) is nn.BatchNorm2d for c in children.values())
                and any(self.wanted(qual[n], c) for n, c in children.items())):
            return
        graph = _own_graph(module)
        if graph is None:
            return
        calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
        read = {node.target.split(".")[0] for node in graph.nodes if node.op == "get_attr"}

        def alone(name):
            return calls[name] == 1 and name not in read and id(children[name]) not in self.shared

        convs = {}  # BN child name -> the conv child name it normalises
        for node in graph.nodes:
            if node.op != "call_module" or type(children.get(node.target)) is not nn.BatchNorm2d:
                continue
            src = node.args[0] if len(node.args) == 1 and not node.kwargs else None
            if (isinstance(src, fx.Node) and src.op == "call_module" and src.target in children
                    and len(src.users) == 1 and self.wanted(qual[src.target], children[src.target])
                    and alone(src.target) and alone(node.target)):
                convs[node.target] = src.target
        for name, bn in children.items():  # in child order, as the Sequential path reports them
            if name not in convs:
                continue
            conv = children[convs[name]]
            if not _foldable(bn, conv):
                self.report["kept_bn"].append(qual[name])
                continue
            fold_bn_(conv, bn)
            self.report["folded_bn"].append(qual[name])
            setattr(module, name, nn.Identity())
