"""The in-place swap behind convert_: each wanted nn.Conv2d becomes a zeroskip module, a
Conv2d [-> BatchNorm2d] [-> ReLU/ReLU6] [-> MaxPool2d/AvgPool2d] run inside an nn.Sequential
becomes one fused module plus nn.Identity() placeholders, and in any other module the same chain
of children, found in its torch.fx-traced forward, is folded and fused alike; where that forward
adds a residual to the conv's output (or to that of a Sequential child ending in a conv) or applies
an activation that is not a child called once, its forward is rewritten (Forward) so the conv's
epilogue does it (rules in zeroskip.convert).
"""
from __future__ import annotations

import inspect
import operator
from collections import Counter

import torch
from torch import fx, nn

from . import guards
from . import nn as znn

_ACTS = (nn.ReLU, nn.ReLU6)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d)
_ACT_FUNCTIONS = (torch.relu, torch.relu_, torch.nn.functional.relu, torch.nn.functional.relu6)
_ADDS = (operator.add, operator.iadd, torch.add)


class Forward:
    """A module's forward as convert_ rewrote it: the code torch.fx generates for the new graph, run
    with the module itself as `self`, so each call reaches the module's current children."""

    def __init__(self, module: nn.Module, graph: fx.Graph):
        self.module = module
        self.code = fx.GraphModule(module, graph, class_name=type(module).__name__)

    def __call__(self, *args):
        return type(self.code).forward(self.module, *args)


def _act_of(node, children) -> str | None:
    """"relu"/"relu6" where node applies one to its single argument and nothing else (an nn.ReLU/ReLU6
    child, F.relu/relu6, torch.relu(_), .relu(_)), else None."""
    if len(node.args) != 1 or set(node.kwargs) - {"inplace"}:
        return None
    if node.op == "call_module" and type(children.get(node.target)) in _ACTS:
        return "relu" if type(children[node.target]) is nn.ReLU else "relu6"
    if node.op == "call_function" and node.target in _ACT_FUNCTIONS:
        return "relu6" if node.target is torch.nn.functional.relu6 else "relu"
    if node.op == "call_method" and node.target in ("relu", "relu_") and not node.kwargs:
        return "relu"
    return None


def _writes_in_place(node, module) -> bool:
    """Whether node may write one of its arguments in place (in-place ops, modules with inplace=True)."""
    if node.op == "call_module":
        return any(getattr(m, "inplace", False) for m in module.get_submodule(node.target).modules())
    name = getattr(node.target, "__name__", str(node.target))
    return node.op in ("call_function", "call_method") and (name.endswith("_") or name.startswith("__i")
                                                           or node.target in (operator.iadd, operator.imul))


class Calls:
    """What the modules with a Conv2d child were called with in one run of the model (convert_'s run on
    example_inputs), as fake tensors: shapes, strides and dtypes without memory. The residual adds found
    in a traced forward are fused only where these calls show the two operands of the same shape and dtype."""

    def __init__(self, model: nn.Module):
        from torch._subclasses.fake_tensor import FakeTensorMode
        self.mode = FakeTensorMode(allow_non_fake_inputs=True)
        self.args = {}
        parents = [m for m in model.modules()
                   if any(isinstance(c, nn.Conv2d) or _conv_tail(c) is not None for c in m.children())]
        self.handles = [m.register_forward_pre_hook(self._hook) for m in parents]

    def _hook(self, module, args):
        calls = self.args.setdefault(id(module), [])
        if len(calls) < 4:  # distinct shapes are few; more calls say nothing new
            calls.append(tuple(self.mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def same_operands(self, module, graph, pairs) -> set:
        """The (a, b) node pairs of `pairs` whose values had the same shape and dtype in every recorded
        call of module; empty where it was not called or its graph does not run on fake tensors."""
        calls = self.args.get(id(module))
        if not calls or not pairs:
            return set()
        ok = set(pairs)
        # in eval mode, as the calls were recorded: a training-mode BN would count the fake batch in its buffers
        modes = [(m, m.training) for m in module.modules()]
        module.eval()
        try:
            with self.mode, torch.no_grad():
                for args in calls:
                    seen = _Values(fx.GraphModule(module, graph))
                    seen.run(*args)
                    ok = {(a, b) for a, b in ok if seen.meta(a) is not None and seen.meta(a) == seen.meta(b)}
        except Exception:  # a forward that fake tensors cannot run: nothing is fused across its adds
            return set()
        finally:
            for m, mode in modes:
                m.training = mode
        return ok


class _Values(fx.Interpreter):
    """Runs a graph, keeping each node's output (shape, dtype)."""

    def __init__(self, gm):
        super().__init__(gm)
        self.seen = {}

    def run_node(self, n):
        out = super().run_node(n)
        self.seen[n] = (tuple(out.shape), out.dtype) if isinstance(out, torch.Tensor) else None
        return out

    def meta(self, node):
        return self.seen.get(node)


def _residual_of(node, tail):
    """The other operand where node is `tail + other` (or `tail += other`), else None."""
    if node.op != "call_function" or node.target not in _ADDS or len(node.args) != 2 or node.kwargs:
        return None
    a, b = node.args
    other = b if a is tail else a if (b is tail and node.target is not operator.iadd) else None
    return other if isinstance(other, fx.Node) and other is not tail else None


def _written_before(node, user, module) -> bool:
    """Whether a node between node and user (its add) may write node's input in place: node's call
    cannot move down to the add then."""
    n = node.next
    while n is not user:
        if node.args[0] in n.all_input_nodes and _writes_in_place(n, module):
            return True
        n = n.next
    return False


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


def _conv_tail(seq):
    """(conv key, conv, BN key or None, BN or None) where seq is a plain nn.Sequential (Sequential's own
    forward) whose last children are an nn.Conv2d and optionally a BatchNorm2d after it, else None."""
    if not isinstance(seq, nn.Sequential) or type(seq).forward is not nn.Sequential.forward:
        return None
    items = list(seq._modules.items())
    bn = items.pop() if items and type(items[-1][1]) is nn.BatchNorm2d else (None, None)
    if not items or type(items[-1][1]) is not nn.Conv2d:
        return None
    return items[-1][0], items[-1][1], bn[0], bn[1]


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

    def __init__(self, model, algo, filter_fn, fold_bn, fuse, undo, calls: Calls | None = None):
        self.algo, self.filter_fn, self.fold_bn, self.fuse, self.undo = algo, filter_fn, fold_bn, fuse, undo
        self.calls = calls
        counts = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
        self.shared = {i for i, n in counts.items() if n > 1}
        self.memory = guards.Memory(model)
        hooks = guards.global_hook_names()
        self.global_hooks = f"global module hooks are registered ({', '.join(hooks)})" if hooks else None
        self.decided = {}  # qualified conv name -> whether it is converted
        self.done = {}  # id(conv) -> its plain zeroskip Conv2d, reused where a conv is shared
        self.training_bn = []  # BNs kept because they are in training mode
        self.report = dict(converted=[], fused=[], residual=[], folded_bn=[], kept_bn=[], linear=[], adaptive_pools=[],
                           reasons={}, max_rel_err=None, tolerance=None)
        if isinstance(model, nn.Conv2d) and not isinstance(model, (znn.Conv2d, znn.ConvActPool)):
            self.report["reasons"][""] = "the root module cannot be replaced in place"

    def keep(self, name, why):
        self.report["reasons"].setdefault(name, why)

    def shapes_reason(self) -> str:
        """Why an add whose operand pair the recorded calls did not show alike is not fused."""
        return ("its operands' shapes are unknown without example_inputs" if self.calls is None else
                "its operands differed in shape or dtype on example_inputs (a broadcast add), or that forward "
                "did not run on fake tensors")

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
            elif type(child) is nn.AdaptiveAvgPool2d and self.fuse and guards.kept_as_is(child) is None:
                self.undo.set_child(module, name, znn.AdaptiveAvgPool2d(child.output_size))
                self.report["adaptive_pools"].append(qual)
            else:
                self.walk(child, qual)

    def sequential(self, seq, prefix):
        """Fuses the runs inside one nn.Sequential; the other convs are left for walk()."""
        items = list(seq.named_children())
        qual = [f"{prefix}.{n}" if prefix else n for n, _ in items]
        i = 0
        while i < len(items):
            conv = items[i][1]
            if type(conv) is nn.Linear and self.fuse:
                i = self.linear(seq, items, qual, i)
                continue
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

    def linear(self, seq, items, qual, i) -> int:
        """items[i], an nn.Linear [-> ReLU/ReLU6] in seq, becomes one zeroskip Linear unless it must stay
        as it is; returns the index after what it absorbed."""
        lin, j, act = items[i][1], i + 1, None
        why = self.global_hooks or guards.kept_as_is(lin)
        if why is None and id(lin) in self.shared:
            why = "used by several parents: it stays one module"
        if why is None and not (isinstance(lin.weight, nn.Parameter)
                                and (lin.bias is None or isinstance(lin.bias, nn.Parameter))):
            why = "its weight or bias is not an nn.Parameter"
        if why is not None:
            self.keep(qual[i], why)
            return j
        if type(_at(items, j)) in _ACTS and self.absorbable(qual[j], items[j][1], qual[i]):
            act, j = items[j][1], j + 1
        self.undo.set_child(seq, items[i][0], znn.Linear.from_linear(lin, znn.activation_name(act)))
        self.report["linear"].append(qual[i])
        for k in range(i + 1, j):
            self.undo.set_child(seq, items[k][0], nn.Identity())
        return j

    def traced(self, module, prefix):
        """Outside nn.Sequential: follows each wanted Conv2d child of `module` through the fx trace of
        module's forward. A BatchNorm2d child applied to the conv's output alone is folded (its place
        gets nn.Identity()); then, with fuse, an nn.ReLU/ReLU6 child and an expressible pool child
        applied alone are absorbed into one fused module, as in nn.Sequential. Each step's child is
        called once in that forward, its input is used by nothing else, its parameters and buffers
        are not read there otherwise and no other parent shares it. Unfused convs are left for walk()."""
        children = dict(module.named_children())
        qual = {n: f"{prefix}.{n}" if prefix else n for n in children}
        tails = {n: _conv_tail(c) for n, c in children.items()} if self.fuse else {}
        tails = {n: t for n, t in tails.items() if t is not None and self.wanted(f"{qual[n]}.{t[0]}", t[1])}
        if not tails and not any(self.wanted(qual[n], c) for n, c in children.items()):
            return
        graph = _own_graph(module)
        if graph is None:
            return
        rewritten = False
        adds = [(n.args[0], n.args[1]) for n in graph.nodes if _residual_of(n, n.args[0] if n.args else None)]
        same = self.calls.same_operands(module, graph, adds) if self.fuse and adds and self.calls else set()
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
            reasons = set(self.report["reasons"])
            act = follow(node, _ACTS, qual[name])
            if act is not None and not self.absorbable(qual[act.target], children[act.target], qual[name]):
                act = None
            pool = follow(act if act is not None else node, _POOLS, qual[name])
            if pool is not None and not (_expressible_pool(children[pool.target])
                                         and self.absorbable(qual[pool.target], children[pool.target], qual[name])):
                pool = None
            if act is None and pool is None:
                if self.rewrite(module, graph, children, name, conv, nodes[name], node, qual, same):
                    rewritten = True  # what follow() said about the activation no longer holds
                    for key in set(self.report["reasons"]) - reasons:
                        del self.report["reasons"][key]
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
        for name, tail in tails.items():
            if alone(name) and name in nodes and self.sequential_end(module, graph, children, name, tail, nodes[name],
                                                                       qual, same):
                rewritten = True
        if rewritten:
            graph.lint()
            self.undo.set_attribute(module, "forward", Forward(module, graph))

    def sequential_end(self, module, graph, children, name, tail, seq_node, qual, same) -> bool:
        """`seq(x) + r` where seq is a plain nn.Sequential child ending in conv [-> BatchNorm2d]
        (MobileNetV2's inverted residual): seq's children are called one by one in module's forward,
        its conv last, with the BN folded and r (and an activation after the add) in its epilogue.
        Returns whether the graph changed."""
        seq, (conv_key, conv, bn_key, bn) = children[name], tail
        conv_name = f"{qual[name]}.{conv_key}"
        user = next(iter(seq_node.users)) if len(seq_node.users) == 1 else None
        residual = _residual_of(user, seq_node) if user is not None else None
        if residual is None or len(seq_node.args) != 1 or seq_node.kwargs:
            return False
        why = (guards.kept_as_is(seq) or ("another parent shares it" if id(seq) in self.shared else None)
               or ("another parent shares it" if id(conv) in self.shared else None))
        if why is None and (user.args[0], user.args[1]) not in same:
            why = self.shapes_reason()
        if why is None and bn is not None and not self.fold_bn:
            why = f"{qual[name]}.{bn_key} comes between them and fold_bn=False"
        if why is None and _written_before(seq_node, user, module):  # seq's calls move down to the add
            why = f"{type(module).__name__}.forward writes its input in place before the add"
        if why is not None:
            self.keep(conv_name, f"the add after {qual[name]} is not fused into it: {why}")
            return False
        if bn is not None:
            if not self.fold(conv, conv_name, bn, f"{qual[name]}.{bn_key}"):
                return False
            self.undo.set_child(seq, bn_key, nn.Identity())
        after = next(iter(user.users)) if len(user.users) == 1 else None
        activation = _act_of(after, children) if after is not None else None
        if activation is not None and after.op == "call_module" and guards.kept_as_is(children[after.target]):
            activation = None
        last = after if activation is not None else user
        with graph.inserting_before(last):
            value = seq_node.args[0]
            for key in list(seq._modules)[:list(seq._modules).index(conv_key)]:
                value = graph.call_module(f"{name}.{key}", (value,))
            new_node = graph.call_module(f"{name}.{conv_key}", (value, residual))
        last.replace_all_uses_with(new_node)
        for dead in (after if activation is not None else None, user, seq_node):
            if dead is not None:
                graph.erase_node(dead)
        self.undo.set_child(seq, conv_key, znn.Conv2d.from_conv(conv, activation, self.algo))
        for key in ("converted", "fused", "residual"):
            self.report[key].append(conv_name)
        return True

    def rewrite(self, module, graph, children, name, conv, conv_node, tail, qual, same) -> bool:
        """Moves `tail + residual` and the activation after it (or the activation alone, where it is not
        a child called once) into conv's epilogue by rewriting the graph; tail is conv's (or its folded
        BN's) node; `same` holds the add operand pairs seen with one shape and dtype. Returns whether the
        graph changed."""
        user = next(iter(tail.users)) if len(tail.users) == 1 else None
        if user is None or len(conv_node.args) != 1 or conv_node.kwargs:
            return False
        owner = type(module).__name__
        residual = _residual_of(user, tail)
        if residual is not None and (user.args[0], user.args[1]) not in same:
            self.keep(qual[name], "converted without the add after it: " + self.shapes_reason())
            residual = None
        end = user if residual is not None else tail
        after = next(iter(end.users)) if len(end.users) == 1 else None
        activation = _act_of(after, children) if after is not None else None
        if activation is not None and after.op == "call_module":
            why = guards.kept_as_is(children[after.target])
            if why is not None:
                self.keep(qual[after.target], f"not fused into {qual[name]}: {why}")
                activation = None
        if residual is None and activation is None:
            return False
        if residual is not None and _written_before(conv_node, user, module):  # the conv moves down to the add
            self.keep(qual[name], f"converted without the add after it: {owner}.forward writes its "
                                  f"input in place before the add")
            return False
        last = after if activation is not None else user
        with graph.inserting_before(last):
            new_node = graph.call_module(name, (conv_node.args[0],) + ((residual,) if residual is not None else ()))
        last.replace_all_uses_with(new_node)
        for dead in (after if activation is not None else None, user if residual is not None else None):
            if dead is not None:
                graph.erase_node(dead)
        if tail is not conv_node:  # the folded BN's call (its module is now nn.Identity)
            graph.erase_node(tail)
        graph.erase_node(conv_node)
        self.undo.set_child(module, name, znn.Conv2d.from_conv(conv, activation, self.algo))
        self.report["converted"].append(qual[name])
        self.report["fused"].append(qual[name])
        if residual is not None:
            self.report["residual"].append(qual[name])
        return True
