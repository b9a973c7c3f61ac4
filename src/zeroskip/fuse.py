"""The in-place swap behind convert_: each wanted nn.Conv2d becomes a zeroskip module, a
Conv2d [-> BatchNorm2d] [-> ReLU/ReLU6] [-> MaxPool2d/AvgPool2d] run inside an nn.Sequential
becomes one fused module plus nn.Identity() placeholders, and in any other module the same chain
of children, found in its torch.fx-traced forward, is folded and fused alike (rules in zeroskip.convert).
"""
from __future__ import annotations

import inspect
from collections import Counter

import torch
from torch import fx, nn

from . import guards
from . import nn as znn

_ACTS = (nn.ReLU, nn.ReLU6)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d)
_ACT_FUNCTIONS = (torch.relu, torch.relu_, torch.nn.functional.relu, torch.nn.functional.relu6)


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
    """One pass over the model: every change goes through `undo` (zeroskip.undo), every module left
    alone that could have been converted, folded or fused gets a line in report["reasons"]."""

    def __init__(self, model, algo, filter_fn, fold_bn, fuse, undo):
        self.algo, self.filter_fn, self.fold_bn, self.fuse, self.undo = algo, filter_fn, fold_bn, fuse, undo
        counts = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
        self.shared = {i for i, n in counts.items() if n > 1}
        self.memory = guards.Memory(model)
        hooks = guards.global_hook_names()
        self.global_hooks = f"global module hooks are registered ({', '.join(hooks)})" if hooks else None
        self.decided = {}  # qualified conv name -> whether it is converted
        self.done = {}  # id(conv) -> its plain zeroskip Conv2d, reused where a conv is shared
        self.training_bn = []  # BNs kept because they are in training mode
        self.report = dict(converted=[], fused=[], folded_bn=[], kept_bn=[], reasons={}, max_rel_err=None,
                           tolerance=None)
        if isinstance(model, nn.Conv2d) and not isinstance(model, (znn.Conv2d, znn.ConvActPool)):
            self.report["reasons"][""] = "the root module cannot be replaced in place"

    def keep(self, name, why):
        self.report["reasons"].setdefault(name, why)

    def wanted(self, name, module) -> bool:
        """Whether conv `name` is converted (decided once per name; filter_fn is called once)."""
        if not isinstance(module, nn.Conv2d) or isinstance(module, (znn.Conv2d, znn.ConvActPool)):
            return False
        if name not in self.decided:
            why = self.global_hooks or guards.conv_reason(module)
            if why is None and self.filter_fn is not None and not self.filter_fn(name, module):
                why = "excluded by filter_fn"
            if why is not None:
                self.keep(name, why)
            self.decided[name] = why is None
        return self.decided[name]

    def plain(self, name, conv):
        self.report["converted"].append(name)
        if id(conv) not in self.done:
            self.done[id(conv)] = znn.Conv2d.from_conv(conv, None, self.algo)
        return self.done[id(conv)]

    def fold_reason(self, bn, conv, conv_name) -> str | None:
        """Why bn (applied to conv's output alone) is not folded into conv, or None."""
        why = guards.kept_as_is(bn)
        if why is not None:
            return why
        if bn.training:
            return "in training mode: call model.eval() before convert_ to fold it"
        if bn.running_mean is None or bn.running_var is None:
            return "has no running statistics (track_running_stats=False): it normalises by each batch"
        if bn.num_features != conv.out_channels:
            return f"num_features={bn.num_features} differs from {conv_name}'s out_channels={conv.out_channels}"
        if id(conv) in self.shared:
            return f"{conv_name} is used by several parents: folding would change the others"
        for slot in ("weight", "bias"):
            other = self.memory.shared(conv, slot)
            if other is not None:
                return f"{conv_name}.{slot} shares memory with {other}: folding would change it there too"
        return None

    def fold(self, conv, conv_name, bn, bn_name) -> bool:
        """Folds bn into conv where it may; else reports why not. Returns whether it folded."""
        why = self.fold_reason(bn, conv, conv_name)
        if why is not None:
            if bn_name not in self.report["kept_bn"]:
                self.report["kept_bn"].append(bn_name)
            if bn.training and bn_name not in self.training_bn:
                self.training_bn.append(bn_name)
            self.keep(bn_name, why)
            return False
        self.undo.fold_bn(conv, bn)
        self.report["folded_bn"].append(bn_name)
        return True

    def absorbable(self, name, module, conv_name) -> bool:
        why = guards.kept_as_is(module)
        if why is not None:
            self.keep(name, f"not fused into {conv_name}: {why}")
        return why is None

    def walk(self, module, prefix=""):
        # Only Sequential's own forward runs children in order; a subclass may override it
        # (e.g. a residual block), and fusing across its children would change what it computes.
        # A forward set on the instance is neither Sequential's nor the one fx would trace.
        own_forward = "forward" not in vars(module)
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward and own_forward:
            self.sequential(module, prefix)
        elif (self.fold_bn or self.fuse) and own_forward:
            self.traced(module, prefix)
        # every name, not named_children(): that skips a second name of the same child, which must
        # get the same converted module
        for name, child in list(module._modules.items()):
            if child is None:
                continue
            qual = f"{prefix}.{name}" if prefix else name
            if self.wanted(qual, child):
                self.undo.set_child(module, name, self.plain(qual, child))
            else:
                self.walk(child, qual)

    def sequential(self, seq, prefix):
        """Fuses the runs inside one nn.Sequential; the other convs are left for walk()."""
        items = list(seq.named_children())
        qual = [f"{prefix}.{n}" if prefix else n for n, _ in items]
        i = 0
        while i < len(items):
            conv = items[i][1]
            if not self.wanted(qual[i], conv):
                i += 1
                continue
            j, act, pool = i + 1, None, None
            if self.fold_bn and type(_at(items, j)) is nn.BatchNorm2d:
                if not self.fold(conv, qual[i], items[j][1], qual[j]):
                    if id(conv) not in self.shared:  # a shared conv is converted (unfused) by walk()
                        self.undo.set_child(seq, items[i][0], self.plain(qual[i], conv))
                    i = j + 1
                    continue
                j += 1
            if id(conv) in self.shared:  # fusing would change its other uses
                i = j
                continue
            if self.fuse and type(_at(items, j)) in _ACTS and self.absorbable(qual[j], items[j][1], qual[i]):
                act, j = _at(items, j), j + 1
            if (self.fuse and _expressible_pool(_at(items, j))
                    and self.absorbable(qual[j], items[j][1], qual[i])):
                pool, j = _at(items, j), j + 1
            if pool is not None:
                new = znn.ConvActPool.from_modules(conv, act, pool, self.algo)
            else:
                new = znn.Conv2d.from_conv(conv, znn.activation_name(act), self.algo)
            self.report["converted"].append(qual[i])
            if act is not None or pool is not None:
                self.report["fused"].append(qual[i])
            self.undo.set_child(seq, items[i][0], new)
            for k in range(i + 1, j):
                self.undo.set_child(seq, items[k][0], nn.Identity())
            i = j

    def traced(self, module, prefix):
        """Outside nn.Sequential: follows each wanted Conv2d child of `module` through the fx trace of
        module's forward. A BatchNorm2d child applied to the conv's output alone is folded (its place
        gets nn.Identity()); then, with fuse, an nn.ReLU/ReLU6 child and an expressible pool child
        applied alone are absorbed into one fused module, as in nn.Sequential. Each step's child is
        called once in that forward, its input is used by nothing else, its parameters and buffers
        are not read there otherwise and no other parent shares it. Unfused convs are left for walk()."""
        children = dict(module.named_children())
        qual = {n: f"{prefix}.{n}" if prefix else n for n in children}
        if not any(self.wanted(qual[n], c) for n, c in children.items()):
            return
        graph = _own_graph(module)
        if graph is None:
            return
        calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
        read = {node.target.split(".")[0] for node in graph.nodes if node.op == "get_attr"}
        nodes = {node.target: node for node in graph.nodes if node.op == "call_module" and calls[node.target] == 1}
        owner = type(module).__name__

        def alone(name):
            return calls[name] == 1 and name not in read

        def follow(node, types, conv_name, verb="fused"):
            """The node of a child of `types` that alone takes node's output, else None (with a reason
            in the report where such a child follows but cannot be absorbed)."""
            user = next(iter(node.users)) if len(node.users) == 1 else None
            if user is None or user.op != "call_module" or type(children.get(user.target)) not in types:
                return None
            why = (f"{owner}.forward calls it {calls[user.target]} times" if calls[user.target] > 1 else
                   f"{owner}.forward reads its parameters or buffers" if user.target in read else
                   "another parent shares it" if id(children[user.target]) in self.shared else
                   f"{owner}.forward passes it other arguments" if user.args != (node,) or user.kwargs else None)
            if why is not None:
                self.keep(qual[user.target], f"not {verb} into {conv_name}: {why}")
                return None
            return user

        def functional_act(node):
            user = next(iter(node.users)) if len(node.users) == 1 else None
            return user is not None and (user.target in _ACT_FUNCTIONS
                                         or (user.op == "call_method" and user.target in ("relu", "relu_")))

        for name, conv in children.items():  # in child order, as the Sequential path reports them
            if name not in nodes or not self.wanted(qual[name], conv) or not alone(name):
                continue
            node = nodes[name]
            bn = follow(node, (nn.BatchNorm2d,), qual[name], "folded") if self.fold_bn else None
            if bn is not None:
                if not self.fold(conv, qual[name], children[bn.target], qual[bn.target]):
                    continue  # a kept BN ends the run; walk() converts the conv
                self.undo.set_child(module, bn.target, nn.Identity())
                node = bn
            if not self.fuse or id(conv) in self.shared:
                continue
            act = follow(node, _ACTS, qual[name])
            if act is not None and not self.absorbable(qual[act.target], children[act.target], qual[name]):
                act = None
            if act is None and functional_act(node):
                self.keep(qual[name], f"converted without the activation after it: {owner}.forward applies it as a "
                                      f"function; convert_ fuses nn.ReLU / nn.ReLU6 modules")
            pool = follow(act if act is not None else node, _POOLS, qual[name])
            if pool is not None and not (_expressible_pool(children[pool.target])
                                         and self.absorbable(qual[pool.target], children[pool.target], qual[name])):
                pool = None
            if act is None and pool is None:
                continue
            act_module = children[act.target] if act is not None else None
            if pool is not None:
                new = znn.ConvActPool.from_modules(conv, act_module, children[pool.target], self.algo)
            else:
                new = znn.Conv2d.from_conv(conv, znn.activation_name(act_module), self.algo)
            self.report["converted"].append(qual[name])
            self.report["fused"].append(qual[name])
            self.undo.set_child(module, name, new)
            for absorbed in (act, pool):
                if absorbed is not None:
                    self.undo.set_child(module, absorbed.target, nn.Identity())
