"""convert_: swaps a model's nn.Conv2d layers for zeroskip modules, in place.

Only nn.Sequential containers are known to run their children in order, so only there are
runs Conv2d [-> BatchNorm2d] [-> ReLU/ReLU6] [-> MaxPool2d/AvgPool2d] fused: the conv's
position gets the fused module (zeroskip.nn.ConvActPool, or zeroskip.nn.Conv2d with an
activation), the absorbed positions get nn.Identity(), so indices and all other state_dict
keys stay stable. A folded BatchNorm's keys (weight, bias, running_mean, running_var,
num_batches_tracked) disappear from the state_dict; its scale and shift live in the conv's
weight and bias (a bias is created if the conv had none). Every other conv becomes
zeroskip.nn.Conv2d with activation None.

Outside nn.Sequential (e.g. a ResNet block's `bn1(conv1(x))`, GoogLeNet's BasicConv2d), a module
with a Conv2d among its direct children has its forward traced with torch.fx, every child a leaf,
and each converted conv is followed through the trace: a BatchNorm2d child applied to its output
is folded, then an nn.ReLU/ReLU6 child and an expressible pool child applied next are fused, the
absorbed places taking nn.Identity(). Each absorbed child must be the only user of the value it
takes, be called once in that forward, have its parameters and buffers not read there otherwise,
and not be shared with another parent (ResNet's stem fuses). Where instead the conv's (folded)
output goes alone into `+ r` (operator.add, +=, torch.add without alpha) and/or an activation that
is not such a child (ResNet's blocks call one ReLU module two or three times; GoogLeNet's
BasicConv2d applies F.relu), the forward itself is rewritten: the trace's graph with the conv called
as conv(x, r) with the activation in its epilogue (zeroskip.nn.Conv2d), the add and activation
removed, set as the module's `forward` (zeroskip.fuse.Forward, which pickles and compiles). Likewise
where the add takes the output of a plain nn.Sequential child ending in Conv2d [-> BatchNorm2d]
(MobileNetV2's `x + self.conv(x)`): the rewritten forward calls that Sequential's children one by
one, its conv last as conv(h, r), the BN folded (its place nn.Identity()). An add
is fused only where convert_'s run on example_inputs showed both operands with one shape and dtype
in every call of the module (no broadcasting; fake tensors replay the forward), and nothing between
the conv and the add writes the conv's input in place; report["residual"] lists the convs that took
one. The rewritten forward is the trace: branches on attributes are fixed, `a += b` runs out of
place. A module whose forward fails to trace (e.g. control flow on a tensor's value) or has
defaulted, keyword-only or variadic parameters (one trace would not stand for every call) is left
as it is. The trace runs the forward's Python code once on fx proxies.

An nn.Linear in an nn.Sequential, with the ReLU/ReLU6 right after it, becomes one zeroskip.nn.Linear
under fuse (kernels/linear.py at small batch in fp16/bf16, where it measures faster than F.linear at
a shape's first call; F.linear elsewhere); filter_fn does not see it. An nn.AdaptiveAvgPool2d
child anywhere becomes zeroskip.nn.AdaptiveAvgPool2d under fuse (a copy where the output size is
the input's: VGG's 7x7 -> 7x7).

BatchNorm2d is folded only in eval mode with running statistics; a training-mode BN (or one
without running stats) that follows a converted conv is left alone and listed in the report's
"kept_bn" (in an nn.Sequential it ends the run, so the conv is converted unfused); training-mode
BNs also give a UserWarning and a line in report["warnings"] (call model.eval() first). A conv
shared by several parents is converted but never folded or fused, and no BN is folded into a conv
whose weight or bias shares memory with another Parameter or buffer of the model (tied weights):
the fold would change the other user too. convs with padding_mode != "zeros", nn.Conv2d
subclasses (parametrized convs: torch.nn.utils.parametrizations.weight_norm and the like), convs
whose weight is not an nn.Parameter and the root module itself (which cannot be replaced in place)
are left alone. fold_bn=False folds nothing, on either path.

Hooks: a module with hooks of any kind (forward, forward pre-, backward, state_dict,
load_state_dict; the old torch.nn.utils.weight_norm and spectral_norm are such hooks) or with a
forward set on the instance stays the object it is: a conv is not converted, a BN not folded, an
activation or pool not absorbed into a fusion. While global module hooks are registered, nothing
is converted. (Why hooks are not carried over instead: zeroskip.guards.) report["reasons"] maps
the name of every module left alone that could have been converted, folded or fused to why.

All or nothing: every change is recorded as it is made (zeroskip.undo); where convert_ raises
(a failed output check, an error in filter_fn, KeyboardInterrupt), they are undone before the
exception leaves, so the model has the same modules, Parameters (the same objects, bit-identical
values, requires_grad), buffers, hooks, attributes and training flags as before, and no
zeroskip_* attribute is set. Timings added to a zeroskip.plan.Plan passed in stay there (they are
true whatever the outcome); a plan file is written only when convert_ succeeds.

`example_inputs` (a tensor or a tuple of positional arguments) is stored on the model as
`zeroskip_example_inputs`. With algo="auto", measure=True and example_inputs on CUDA, each
converted layer is timed on its real input and residual (captured by forward pre-hooks in one run
through torch's path)
with zeroskip.measure.measure (candidates: measure.candidates_for, which leaves out the algos that
cannot win the call: in fp16/bf16 the zero-skipping ones, im2col beyond 16 channels and Winograd
F(2x2) from batch 32; cudnn without a ReLU) and its `algo` set to the winner; the entries go into a
zeroskip.plan.Plan (`plan`: a Plan used in place, or a JSON path loaded if it exists and saved after; entries
already there are reused, not re-measured), kept as `model.zeroskip_plan`. A module called with
several shapes whose winners differ keeps "auto" and holds the plan as its `plan`, which picks each
call's winner. On the CPU nothing is measured and the report says so.

When example_inputs are given, the model runs on them before and after conversion (eval mode,
torch.no_grad(), measured algos in place) and the outputs must agree: normwise relative error
<= 1e-4 in fp32 (1e-2 where TF32 may be used on CUDA), 3e-2 in fp16/bf16, 1e-9 in fp64. Where
they do not, both are measured against a copy of the original run in float64 (convert_ holds that
copy while it works), and the conversion stands if its error there is at most twice the original's
(report["float64_err"]: {"converted", "original"}); else RuntimeError, the model left as it was.
The report is set as `model.zeroskip_report`:
{"converted": conv names, "fused": conv names that absorbed an activation, pool and/or residual add,
 "residual": conv names that absorbed a residual add, "linear": nn.Linear names in an nn.Sequential
 that became zeroskip.nn.Linear (with the ReLU/ReLU6 after them, under fuse), "adaptive_pools":
 nn.AdaptiveAvgPool2d names that became zeroskip.nn.AdaptiveAvgPool2d (a copy where sizes match),
 "folded_bn": BN names folded, "kept_bn": BN names left, "reasons": {module name: why it was
 left alone}, "warnings": the UserWarnings issued, "max_rel_err": float or None,
 "tolerance": float or None, "layers": one row per measured call {"name", "op", "shape",
 "sparsity" (zero fraction of the input), "algo", "times_us" (per candidate; a string where it
 was dropped), "reused" (taken from the plan), "seconds" (wall time of its measurement, 0 where
 reused)}, "seconds": {"compile": the workers' wall time, "measure": measuring every layer's
 candidates, "check": the output check} where measured (without "measure" where the workers only
 compiled each layer's own algo: measure=False or an explicit algo, on CUDA), "note": why nothing
 was measured, or None}.
"""
from __future__ import annotations

import copy
import itertools
import os
import time
import warnings

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from . import measure as zmeasure
from . import nn as znn
from . import plan as zplan
from . import warm
from .accuracy import model_tolerance, rel_err
from .dispatch import ALGOS
from .fuse import Calls, _Converter, fold_bn_  # noqa: F401  (fold_bn_ is part of zeroskip.convert's API)
from .progress import bar
from .undo import Undo


def _max_rel_err(out, ref) -> float:
    errs = [rel_err(o, r) for o, r in zip(tree_leaves(out), tree_leaves(ref))
            if isinstance(r, torch.Tensor) and r.is_floating_point()]
    return max(errs, default=0.0)


def _tolerance(ref) -> float:
    tensors = [t for t in tree_leaves(ref) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not tensors:
        return 0.0
    dtype, cuda = tensors[0].dtype, tensors[0].is_cuda
    # The original's own convs/matmuls use TF32 on CUDA when allowed, whatever algo converts to.
    tf32 = cuda and (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    return model_tolerance(dtype, tf32)


def _copy(model):
    """A copy of the original for the float64 check, its parameters and buffers in host memory (a
    converting model does not hold its weights twice on the GPU), with the device each one came
    from; None where the model cannot be deep-copied."""
    memo, devices = {}, {}
    try:
        for t in itertools.chain(model.parameters(), model.buffers()):
            host = t.detach().to("cpu", copy=True)
            memo[id(t)] = nn.Parameter(host, t.requires_grad) if isinstance(t, nn.Parameter) else host
            devices[id(memo[id(t)])] = t.device
        return copy.deepcopy(model, memo), devices
    except Exception:
        return None


def _to_devices(held):
    """The copy _copy made, each parameter and buffer back on the device it came from."""
    model, devices = held
    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for t in tensors.values():
                if t is not None and id(t) in devices and t.device != devices[id(t)]:
                    t.data = t.data.to(devices[id(t)])
    return model


def _check_float64(out, ref, original, inputs, report) -> None:
    """Where the outputs differ beyond the tolerance, both models are measured against the original
    run in float64: an ill-conditioned model (random-init ResNet-50: fp32 eager 2.1e-2 from float64,
    fp16 3.4e-2) may differ from itself in another precision by more than the tolerance. The
    conversion stands if its error is within the tolerance or twice the original's; else raises, as
    it does where the original's own output changes from run to run (nothing to compare then)."""
    why = (f"converted model differs from the original on example_inputs: max_rel_err="
           f"{report['max_rel_err']:.3g} > tolerance={report['tolerance']:.3g}")
    if original is None:
        raise RuntimeError(f"{why}; the model is left as it was")
    original = _to_devices(original)
    again = _max_rel_err(_run_eval(original, inputs), ref)
    if not again <= report["tolerance"]:  # float64 says nothing of a model that differs from itself
        raise RuntimeError(f"{why}; the original's own output differs from run to run by {again:.3g}; "
                           f"the model is left as it was")
    double = [t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in inputs]
    ref64 = _run_eval(original.double(), double)
    errs = {"converted": _max_rel_err(out, ref64), "original": _max_rel_err(ref, ref64)}
    report["float64_err"] = errs
    if not errs["converted"] <= max(report["tolerance"], 2 * errs["original"]):
        raise RuntimeError(f"{why}; against the original in float64 {errs['converted']:.3g}, more than twice the "
                           f"original's own {errs['original']:.3g}; the model is left as it was")


@torch.no_grad()
def _run_eval(model, inputs):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        return model(*inputs)
    finally:
        for m, mode in modes:
            m.training = mode


def _on_cuda(inputs) -> bool:
    return any(t.is_cuda for t in tree_leaves(inputs) if isinstance(t, torch.Tensor))


def _layer_call(module, x, residual=None):
    """(op, positional args, keyword args) of zeroskip.measure.measure for `module` on input x."""
    args = (x, module.weight, module.bias, module.stride, module.padding, module.dilation, module.groups)
    if isinstance(module, znn.ConvActPool):
        return "conv2d_pool", args, dict(pool=module.pool, pool_size=module.pool_size,
                                         pool_stride=module.pool_stride, pool_padding=module.pool_padding)
    if residual is not None:
        return "conv2d_residual", args, dict(residual=residual)
    return "conv2d", args, {}


def _batched(t):
    return t if t is None or t.dim() == 4 else t.unsqueeze(0)


def _capture(model, inputs, modules):
    """Runs model once, `modules` on torch's path (compiling no kernel: with algo "auto" this run
    compiled 16 kernels in 11.6 s of a 73.9 s conversion, ResNet-50 fp16 batch 32, H100, empty
    Triton cache, experiments/convert_time_probe.py); returns {id(module): {plan key: copies of
    (input, residual)}} for each module."""
    seen = {id(m): {} for m in modules}
    kept = [(m, m.algo, m.plan) for m in modules]

    def hook(module, args):
        x, residual = _batched(args[0]), _batched(args[1]) if len(args) > 1 else None
        op, call, kwargs = _layer_call(module, x, residual)
        pool = {k: v for k, v in kwargs.items() if k != "residual"}
        key = zplan.make_key(op, zplan.spec_of(op, *call, **pool), x, module.activation)
        if key not in seen[id(module)]:  # copies: later in-place ops must not change what is timed
            seen[id(module)][key] = (x.detach().clone(), None if residual is None else residual.detach().clone())

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    for m in modules:
        m.algo, m.plan = "torch", None
    try:
        _run_eval(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
        for m, algo, plan in kept:
            m.algo, m.plan = algo, plan
    return seen


@torch.no_grad()
def _warm_layers(model, inputs, names, seconds, progress=False, workers=None, plan=None) -> tuple:
    """Captures each converted layer's calls and has `workers` processes compile their kernels
    (zeroskip.warm): with a plan, every candidate of the calls not in it; without one, the layer's
    own algo (what its next call runs). Returns ({id: (name, module)}, the captured calls) and puts
    the compile wall time in `seconds`."""
    layers = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if name in names and isinstance(m, (znn.Conv2d, znn.ConvActPool)):
            layers.setdefault(id(m), (name, m))
    calls = _capture(model, inputs, [m for _, m in layers.values()])
    jobs = {}
    for _, module in layers.values():
        for key, (x, residual) in calls[id(module)].items():
            if plan is None or plan.get(key) is None:
                op, call, kwargs = _layer_call(module, x, residual)
                algos = ((module.algo,) if plan is None else
                         zmeasure.candidates_for(x, module.weight, module.activation))
                spec = warm.job(op, call, kwargs, module.activation, algos)
                jobs[repr(spec)] = spec  # layers of one shape compile the same kernels: once
    start = time.perf_counter()
    warm.warm(jobs.values(), workers, progress)
    seconds["compile"] = time.perf_counter() - start
    return layers, calls


@torch.no_grad()
def _measure_layers(model, inputs, names, plan, seconds, progress=False, workers=None) -> list:
    """Times every converted layer on its captured input, sets its algo; returns report rows and puts
    the compile and measure wall times in `seconds`. The calls not in the plan first have their
    kernels compiled by `workers` processes (zeroskip.warm)."""
    layers, calls = _warm_layers(model, inputs, names, seconds, progress, workers, plan)
    start, rows = time.perf_counter(), []
    total = sum(len(calls[id(m)]) for _, m in layers.values())
    with bar(total, "measuring layers", progress, "layer") as done:
        for name, module in layers.values():
            done.set_postfix_str(name)
            winners = set()
            for key, (x, residual) in calls[id(module)].items():
                entry, reused, began = plan.get(key), True, time.perf_counter()
                sparsity = (x == 0).double().mean().item()
                if entry is None:
                    op, call, kwargs = _layer_call(module, x, residual)
                    algo, times = zmeasure.measure(op, *call, activation=module.activation,
                                                   candidates=zmeasure.candidates_for(x, module.weight, module.activation),
                                                   **kwargs)
                    plan.add(key, algo, times, sparsity)
                    entry, reused = plan.get(key), False
                winners.add(entry["algo"])
                rows.append(dict(name=name, op=key[0], shape=tuple(x.shape), sparsity=sparsity,
                                 algo=entry["algo"], times_us=dict(entry["times_us"]), reused=reused,
                                 seconds=0.0 if reused else time.perf_counter() - began))
                done.update()
            if len(winners) == 1:
                module.algo = winners.pop()
            else:
                module.plan = plan
    seconds["measure"] = time.perf_counter() - start
    return rows


def convert_(model: nn.Module, example_inputs=None, *, algo="auto", filter_fn=None, fold_bn=True,
             fuse=True, plan=None, measure=True, progress=False, workers=None) -> nn.Module:
    """Converts `model`'s nn.Conv2d layers to zeroskip modules in place; returns `model`.

    filter_fn(qualified_name, conv) -> bool picks the convs to convert (default: all).
    plan: None, a zeroskip.plan.Plan or a JSON path; measure=False skips per-layer timing.
    workers: processes that compile the kernels of the calls to be measured, before they are
    timed, or without measuring (CUDA inputs) those of each layer's algo, before the check run
    (zeroskip.warm; None: one per CPU beyond this one, at most warm.MAX_WORKERS; 0: none).
    progress=True draws a bar on stderr while layers are measured; nothing is printed otherwise.
    All or nothing: where it raises (KeyboardInterrupt included), the model is as it was.
    See the module docstring for what is fused, folded, measured, checked and left alone.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    if filter_fn is not None and not callable(filter_fn):
        raise ValueError(f"filter_fn must be callable or None, got {filter_fn!r}")
    for name, value in (("fold_bn", fold_bn), ("fuse", fuse), ("measure", measure), ("progress", progress)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a bool, got {value!r}")
    warm.check_workers(workers)
    if plan is not None and not isinstance(plan, (zplan.Plan, str, os.PathLike)):
        raise TypeError(f"plan must be a zeroskip.plan.Plan, a path or None, got {type(plan).__name__}")
    inputs = ref = calls = original = None
    if example_inputs is not None:
        inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
        original = _copy(model)
        calls = Calls(model) if fuse else None  # the shapes that decide which residual adds fuse
        try:
            ref = _run_eval(model, inputs)
        finally:
            if calls is not None:
                calls.remove()
    undo = Undo()
    try:
        _convert(model, inputs, ref, undo, algo, filter_fn, fold_bn, fuse, plan, measure, progress, calls, workers,
                 original)
    except BaseException:
        undo.rollback()
        raise
    return model


def _convert(model, inputs, ref, undo, algo, filter_fn, fold_bn, fuse, plan, measure, progress, calls=None,
             workers=None, original=None):
    """convert_'s changes, each made through `undo`; raises where the result is not to be kept."""
    converter = _Converter(model, algo, filter_fn, fold_bn, fuse, undo, calls)
    converter.walk(model)
    report = converter.report
    report.update(layers=[], note=None, warnings=[])
    used_plan = plan if isinstance(plan, zplan.Plan) else None
    measured = False
    if algo == "auto" and measure and report["converted"]:
        if inputs is None:
            report["note"] = "no example_inputs: nothing measured, layers keep algo='auto'"
        elif not _on_cuda(inputs):
            report["note"] = ("measurement needs a CUDA GPU: example_inputs are not on CUDA, "
                              "layers keep algo='auto'")
        else:
            if used_plan is None:
                found = plan is not None and os.path.exists(plan)
                used_plan = zplan.Plan.load(plan) if found else zplan.Plan()
            report["seconds"] = {}
            report["layers"] = _measure_layers(model, inputs, set(report["converted"]), used_plan,
                                               report["seconds"], progress, workers)
            measured = True
    elif report["converted"] and inputs is not None and _on_cuda(inputs) and workers != 0:
        # not measured: the check run below compiles each layer's kernels, here done in parallel first
        report["seconds"] = {}
        _warm_layers(model, inputs, set(report["converted"]), report["seconds"], progress, workers)
    if inputs is not None:
        start = time.perf_counter()
        out = _run_eval(model, inputs)
        report["max_rel_err"] = _max_rel_err(out, ref)
        report["tolerance"] = _tolerance(ref)
        if not report["max_rel_err"] <= report["tolerance"]:
            _check_float64(out, ref, original, inputs, report)
        if "seconds" in report:
            report["seconds"]["check"] = time.perf_counter() - start
    if converter.training_bn:
        n, names = len(converter.training_bn), ", ".join(converter.training_bn[:3])
        more = f" and {n - 3} more" if n > 3 else ""
        report["warnings"].append(
            f"{n} BatchNorm2d layer{'s' if n > 1 else ''} in training mode {'were' if n > 1 else 'was'} "
            f"not folded ({names}{more}): call model.eval() before convert_ to fold them")
    for message in report["warnings"]:
        warnings.warn(message, UserWarning, stacklevel=3)
    if measured and plan is not None and not isinstance(plan, zplan.Plan):
        used_plan.save(plan)
    undo.set_attribute(model, "zeroskip_report", report)
    undo.set_attribute(model, "zeroskip_example_inputs", inputs)
    undo.set_attribute(model, "zeroskip_plan", used_plan)
