"""The `zeroskip` command (also `python -m zeroskip`).

  zeroskip [demo]   on a GPU: VGG-19 suite at batch 1, fp32 and fp16, as a table. On a CPU: LeNet-5
                    through zeroskip.conv2d_pool(algo="ecr") on Triton's interpreter, checked against
                    PyTorch in float64 (PASS/FAIL; exit 1 on FAIL); timings need a GPU.
  zeroskip bench    suites of real CNN layers with realistic sparse inputs, against cuDNN.
  zeroskip bench --model NAME   whole-model latency: eager PyTorch, torch.compile, zeroskip.convert_.
  zeroskip sweep    speedup against input sparsity, and the break-even sparsity per shape.
  zeroskip replicate  the paper's own one-channel experiment, redone fairly, beside their times.
  zeroskip profile MODEL --images DIR   zero fraction of each conv's input on real images (CPU or GPU).
bench/sweep/replicate need a CUDA GPU (exit 2 without one). Argument errors name the argument (exit 2).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
from pathlib import Path

from .bench.models import MODELS
from .bench.suites import SUITES
from .dispatch import ALGOS

DTYPE_NAMES = ("fp32", "tf32", "fp16", "bf16")
OP_NAMES = ("conv2d", "conv2d_pool")
SWEEP_DEFAULT = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,0.99"
SWEEP_LAYERS = {"vgg19": "features.5,features.12,features.21,features.30"}


def _choices(what, allowed):
    """argparse type: a comma list whose items must be in `allowed`."""
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(map(repr, bad)) or repr(text)} "
                                             f"(choose from {', '.join(allowed)})")
        return items
    return parse


def _one(what, allowed):
    """argparse type: one name that must be in `allowed`."""
    def parse(text):
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r} (choose from {', '.join(allowed)})")
        return text
    return parse


def _numbers(what, conv, low, high):
    def parse(text):
        try:
            items = [conv(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a comma list of numbers, got {text!r}") from None
        if not items or any(not low <= v <= high for v in items):
            raise argparse.ArgumentTypeError(f"{what} must be in [{low}, {high}], got {text!r}")
        return items
    return parse


def _int(what, low, high):
    """argparse type: one integer in [low, high]."""
    parse = _numbers(what, int, low, high)

    def one(text):
        items = parse(text)
        if len(items) != 1:
            raise argparse.ArgumentTypeError(f"{what} takes one number, got {text!r}")
        return items[0]
    return one


def _flat(values, default):
    return [v for group in values for v in group] if values else list(default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zeroskip", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Paper data: --data PATH, else $ZEROSKIP_PAPER_DATA, else ../shared/paper-data.")
    sub = p.add_subparsers(dest="command", metavar="{bench,sweep,replicate,profile,demo}")

    def common(sp, dtypes=DTYPE_NAMES, default_algo="auto"):
        sp.add_argument("--batch", action="append", type=_numbers("--batch", int, 1, 1 << 16),
                        help="batch size(s): repeat or comma list (default 1)")
        sp.add_argument("--dtype", action="append", type=_choices("dtype", dtypes),
                        help=f"precision(s) among {', '.join(dtypes)} (default fp32)")
        sp.add_argument("--algo", action="append", type=_choices("algo", ALGOS),
                        help=f"zeroskip algo(s) among {', '.join(ALGOS)} (default {default_algo})")
        sp.add_argument("--data", metavar="PATH", help="the paper-data folder")
        sp.add_argument("--out", metavar="DIR", default="benchmarks", help="results folder (default benchmarks/)")

    b = sub.add_parser("bench", help="time suites of real CNN conv layers against cuDNN")
    b.add_argument("--suite", action="append", type=_choices("suite", SUITES),
                   help=f"suite(s) among {', '.join(SUITES)}: repeat or comma list (default vgg19)")
    b.add_argument("--ops", action="append", type=_choices("op", OP_NAMES), help="conv2d, conv2d_pool (default both)")
    common(b)
    b.add_argument("--compile", action="store_true", help="also time torch.compile of the baseline (max-autotune tuning; the harness adds the CUDA graph)")
    b.add_argument("--png", action="store_true", help="also draw speedups per layer (needs matplotlib)")
    b.add_argument("--model", action="append", type=_choices("model", MODELS),
                   help=f"instead of suites, whole model(s) among {', '.join(MODELS)}: eager vs torch.compile vs "
                        f"zeroskip.convert_, plus a per-layer table. torchvision models are built with weights=None "
                        f"(random init; nothing is downloaded), whose ReLU outputs are about half zeros")
    model_options(b)
    b.add_argument("--plan", metavar="PATH", help="with --model: convert_'s plan JSON, reused and updated")
    f = sub.add_parser("profile", help="zero fraction of each conv's input on real images (no timing)")
    f.add_argument("model", type=_one("model", MODELS), help=f"one of {', '.join(MODELS)}")
    f.add_argument("--images", metavar="DIR", required=True,
                   help="folder of PNG/JPEG (needs Pillow) or .npy/.pt images with values in [0, 1]")
    f.add_argument("--limit", metavar="N", type=_int("--limit", 1, 1 << 30),
                   help="use the first N images by name (default all)")
    model_options(f)
    f.add_argument("--out", metavar="DIR", default="benchmarks", help="results folder (default benchmarks/)")
    s = sub.add_parser("sweep", help="speedup against input sparsity; break-even sparsity per shape")
    s.add_argument("--suite", default="vgg19", type=_choices("suite", SUITES), help="suite the layers come from")
    s.add_argument("--layers", help="comma list of layer names (default: 4 spread over the suite)")
    s.add_argument("--sparsities", default=SWEEP_DEFAULT, type=_numbers("--sparsities", float, 0.0, 1.0))
    s.add_argument("--structure", choices=("real", "random"), default="real", help="zero pattern (default real)")
    common(s)
    s.add_argument("--png", action="store_true", help="also draw speedup vs sparsity (needs matplotlib)")
    r = sub.add_parser("replicate", help="the paper's one-channel experiment, GPU time only, beside their times")
    common(r, dtypes=("fp32", "fp16"), default_algo="ecr,auto")
    d = sub.add_parser("demo", help="the default: quick check on CPU, VGG-19 table on a GPU")
    d.add_argument("--data", metavar="PATH", help="the paper-data folder (GPU demo)")
    return p


def model_options(sp):
    sp.add_argument("--image-size", metavar="S", type=_int("--image-size", 32, 4096),
                    help="input height and width (default 224; lenet5 takes 32x32, one channel)")
    sp.add_argument("--weights", metavar="FILE", help="a state_dict .pt to load (default: random init)")


def _model_args(parser, args, models, flag="--model") -> None:
    """Checks torchvision, --image-size and --weights for the chosen models (argparse errors, exit 2)."""
    import importlib.util
    from .bench.models import input_shape
    for name in models:
        if name != "lenet5" and importlib.util.find_spec("torchvision") is None:
            parser.error(f"argument {flag}: {name} needs torchvision, which is not installed")
        try:
            input_shape(name, args.image_size)
        except ValueError as exc:
            parser.error(f"argument --image-size: {exc}")
    if args.weights and not Path(args.weights).is_file():
        parser.error(f"argument --weights: no such file: {args.weights}")


def _check_plan(parser, path) -> None:
    """--plan: its folder must exist; an existing file must be a zeroskip plan."""
    import json
    from .plan import Plan
    if not path.resolve().parent.is_dir():
        parser.error(f"argument --plan: the folder of {path} does not exist")
    if path.exists():
        try:
            Plan.from_json(json.loads(path.read_text()))
        except Exception as exc:
            parser.error(f"argument --plan: {path} is not a zeroskip plan: {type(exc).__name__}: {exc}")


def bench_models(parser, args, gpu) -> int:
    """`bench --model`: checks the arguments, then times each model, batch, dtype and algo."""
    for flag, given in (("--suite", args.suite), ("--ops", args.ops), ("--png", args.png), ("--data", args.data)):
        if given:
            parser.error(f"argument {flag}: not allowed with --model")
    models = _flat(args.model, [])
    _model_args(parser, args, models)
    if args.plan:
        _check_plan(parser, Path(args.plan))
    if not gpu:
        print("zeroskip bench: timings need a CUDA GPU, and none is available here. "
              "`zeroskip demo` checks correctness on the CPU.", file=sys.stderr)
        return 2
    from .bench import models as bm
    results = []
    for name in models:
        for batch in _flat(args.batch, [1]):
            for dtype in _flat(args.dtype, ["fp32"]):
                for algo in _flat(args.algo, ["auto"]):
                    print(f"{name} batch {batch} {dtype} algo {algo}", flush=True)
                    try:
                        results.append(bm.run_model(name, batch, dtype, algo, args.compile, args.plan,
                                                    args.image_size, args.weights))
                    except bm.WeightsError as exc:
                        parser.error(f"argument --weights: {exc}")
                    bm.print_result(results[-1])
    path = bm.write_results(results, Path(args.out) / f"model-{_stamp()}.json")
    print(f"\nresults: {path}, {path.with_suffix('.csv')} and {path.with_name(path.stem + '-layers.csv')}")
    return 0


def profile(parser, args) -> int:
    """`profile MODEL --images DIR`: zero fractions of conv inputs on real images."""
    from .bench.models import WeightsError
    from .bench.profile import ImagesError, print_profile, profile_model, write_profile
    _model_args(parser, args, [args.model], flag="model")
    try:
        result = profile_model(args.model, args.images, args.weights, args.limit, args.image_size)
    except WeightsError as exc:
        parser.error(f"argument --weights: {exc}")
    except ImagesError as exc:
        parser.error(f"argument --images: {exc}")
    print_profile(result)
    path = write_profile(result, Path(args.out) / f"profile-{args.model}-{_stamp()}.json")
    print(f"results: {path}")
    return 0


def _data(parser, path, needed=True):
    from .bench.sparsity import paper_data_path
    try:
        return paper_data_path(path)
    except FileNotFoundError as exc:
        if needed:
            parser.error(f"argument --data: {exc}")
        return None


def _stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def cpu_demo() -> int:
    """LeNet-5's two conv+ReLU+maxpool stages through the ECR kernel on Triton's CPU interpreter."""
    import torch
    import torch.nn.functional as F

    import zeroskip
    from .bench.run import rel_error
    from .bench.suites import load_suite
    seed = int.from_bytes(os.urandom(4), "little")  # fresh data every run; printed to reproduce one
    gen = torch.Generator().manual_seed(seed)
    x = F.relu(torch.randn(2, 1, 32, 32, generator=gen))  # ReLU-like zeroing: about half zeros
    print(f"zeroskip demo on CPU (Triton interpreter): LeNet-5, batch 2, input zero fraction "
          f"{float((x == 0).float().mean()):.2f}, seed {seed}")
    ours, ref, worst = x, x.double(), 0.0
    for layer in load_suite("lenet5"):
        fan_in = layer.in_channels * layer.kernel[0] * layer.kernel[1]
        w = torch.randn(layer.out_channels, layer.in_channels, *layer.kernel, generator=gen) * math.sqrt(2 / fan_in)
        b = torch.randn(layer.out_channels, generator=gen) * 0.01
        p = layer.pool_after
        try:
            ours = zeroskip.conv2d_pool(ours, w, b, **layer.conv_args(), activation="relu", **layer.pool_args(),
                                        algo="ecr")
        except Exception as exc:
            print(f"  {layer.name}: zeroskip.conv2d_pool(algo='ecr') raised {type(exc).__name__}: {exc}")
            print("FAIL")
            return 1
        ref = F.max_pool2d(F.relu(F.conv2d(ref, w.double(), b.double(), **layer.conv_args())),
                           p["size"], p["stride"], p["padding"])
        err = rel_error(ours, ref)
        worst = max(worst, err)
        print(f"  {layer.name}: conv {layer.in_channels}->{layer.out_channels} {layer.kernel[0]}x{layer.kernel[1]} "
              f"+ relu + maxpool {p['size']}x{p['size']}: output {tuple(ours.shape)}, "
              f"relative error vs float64 {err:.2e}")
    ok = worst <= 1e-5
    print("PASS" if ok else f"FAIL: relative error {worst:.2e} > 1e-05")
    print("Timings need a CUDA GPU: on one, `zeroskip` times the VGG-19 suite against cuDNN.")
    return 0 if ok else 1


def gpu_demo(parser, args) -> int:
    from .bench.run import print_table, run_suite
    data = _data(parser, args.data)
    rows = []
    for dtype in ("fp32", "fp16"):
        rows += run_suite("vgg19", batch=1, dtype=dtype, data=data)
    print_table(rows)
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "demo"
    import torch
    gpu = torch.cuda.is_available()
    if command == "demo":
        if not gpu:
            # Before any zeroskip kernel module is imported: the kernels then run on the interpreter.
            os.environ["TRITON_INTERPRET"] = "1"
            if "zeroskip.kernels.implicit_gemm" in sys.modules:
                print("warning: zeroskip's kernels were imported before TRITON_INTERPRET=1 was set", file=sys.stderr)
            return cpu_demo()
        return gpu_demo(parser, args if args.command else argparse.Namespace(data=None))
    if command == "profile":
        return profile(parser, args)
    if command == "bench" and args.model:
        return bench_models(parser, args, gpu)
    for flag in ("plan", "weights", "image_size"):
        if getattr(args, flag, None):
            parser.error(f"argument --{flag.replace('_', '-')}: only with --model")
    needs_data = not (command == "sweep" and args.structure == "random")
    data = _data(parser, args.data, needed=needs_data)
    if command == "sweep":
        from .bench.suites import load_suite
        layers = load_suite(args.suite[0])
        names = (args.layers or SWEEP_LAYERS.get(args.suite[0]) or
                 ",".join(layers[i].name for i in sorted({len(layers) // 4, len(layers) // 2, 3 * len(layers) // 4})))
        known = {layer.name: layer for layer in layers}
        bad = [n for n in names.split(",") if n not in known]
        if bad:
            parser.error(f"argument --layers: {args.suite[0]} has no layer {', '.join(bad)}")
        shapes = [known[n] for n in names.split(",")]
    if not gpu:
        print(f"zeroskip {command}: timings need a CUDA GPU, and none is available here. "
              f"`zeroskip demo` checks correctness on the CPU.", file=sys.stderr)
        return 2
    from .bench import run
    out = Path(args.out)
    batches, dtypes = _flat(args.batch, [1]), _flat(args.dtype, ["fp32"])
    if command == "bench":
        rows = []
        for suite in _flat(args.suite, ["vgg19"]):
            for batch in batches:
                for dtype in dtypes:
                    rows += run.run_suite(suite, batch, dtype, ops=_flat(args.ops, OP_NAMES),
                                          algos=_flat(args.algo, ["auto"]), data=data, torch_compile=args.compile)
        path = run.write_results(rows, out / f"bench-{_stamp()}.json")
        run.print_table(rows)
        if args.png:
            print(f"plot: {run.plot_speedups(rows, path.with_suffix('.png'))}")
        print(f"results: {path} and {path.with_suffix('.csv')}")
    elif command == "sweep":
        rows = []
        for batch in batches:
            for dtype in dtypes:
                rows += run.run_sweep(shapes, args.sparsities, batch, dtype, _flat(args.algo, ["auto"]),
                                      structure=args.structure, data=data)
        path = run.write_results(rows, out / f"sweep-{_stamp()}.json")
        run.print_table(rows)
        print("\nbreak-even input sparsity (ours at least as fast as cuDNN from here on):")
        for (suite, layer, dtype, batch, algo), s in run.break_evens(rows).items():
            print(f"  {suite} {layer} {dtype} batch {batch} {algo}: " + ("never" if s is None else f"{s:.3f}"))
        if args.png:
            print(f"plot: {run.plot_sweep(rows, path.with_suffix('.png'))}")
        print(f"results: {path} and {path.with_suffix('.csv')}")
    else:
        import json
        from .bench.replicate import print_replicate, run_replicate
        rows = []
        for dtype in dtypes:
            for batch in (batches if args.batch else [32]):
                part = run_replicate(data, dtype, _flat(args.algo, ["ecr", "auto"]), batch)
                print_replicate(part)
                rows += part
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"replicate-{_stamp()}.json"
        path.write_text(json.dumps(rows, indent=1) + "\n")
        print(f"results: {path}")
    return 0
