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
import os
import sys

from .bench.models import MODELS
from .bench.suites import SUITES
from .cli_args import DTYPE_NAMES, OP_NAMES, SWEEP_DEFAULT, SWEEP_LAYERS, _choices, _int, _numbers, _one
from .commands import _data, bench_models, bench_suites, profile, replicate, sweep
from .demo import cpu_demo, gpu_demo
from .dispatch import ALGOS


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
        progress_option(sp)

    b = sub.add_parser("bench", help="time suites of real CNN conv layers against cuDNN")
    b.add_argument("--suite", action="append", type=_choices("suite", SUITES),
                   help=f"suite(s) among {', '.join(SUITES)}: repeat or comma list (default vgg19)")
    b.add_argument("--ops", action="append", type=_choices("op", OP_NAMES), help="conv2d, conv2d_pool (default both)")
    common(b)
    layout_option(b, both=True)
    b.add_argument("--compile", nargs="?", const=1, default=0, type=_int("--compile", 1, 16), metavar="N",
                   help="also time torch.compile of the baseline (max-autotune tuning; the harness adds the CUDA "
                        "graph). With N > 1 (suites only): build it N times with Inductor's caches off and keep the "
                        "fastest, since its autotuner picks differently from one build to the next")
    b.add_argument("--png", action="store_true",
                   help="also draw speedups per layer (needs matplotlib); with --model one plot per model, batch, "
                        "dtype and algo, its whole-model speedups in the title")
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
    progress_option(f)
    s = sub.add_parser("sweep", help="speedup against input sparsity; break-even sparsity per shape")
    s.add_argument("--suite", default="vgg19", type=_choices("suite", SUITES), help="suite the layers come from")
    s.add_argument("--layers", help="comma list of layer names (default: 4 spread over the suite)")
    s.add_argument("--sparsities", default=SWEEP_DEFAULT, type=_numbers("--sparsities", float, 0.0, 1.0))
    s.add_argument("--structure", choices=("real", "random"), default="real", help="zero pattern (default real)")
    common(s)
    layout_option(s)
    s.add_argument("--png", action="store_true", help="also draw speedup vs sparsity (needs matplotlib)")
    r = sub.add_parser("replicate", help="the paper's one-channel experiment, GPU time only, beside their times")
    common(r, dtypes=("fp32", "fp16"), default_algo="ecr,auto")
    d = sub.add_parser("demo", help="the default: quick check on CPU, VGG-19 table on a GPU")
    d.add_argument("--data", metavar="PATH", help="the paper-data folder (GPU demo)")
    progress_option(d)
    return p


def progress_option(sp):
    sp.add_argument("--no-progress", action="store_true",
                    help="no progress bars (drawn on stderr only when it is a terminal; stdout and the "
                         "result files are the same either way)")


def layout_option(sp, both=False):
    sp.add_argument("--layout", choices=("auto", "nchw", "channels_last") + (("both",) if both else ()),
                    default="auto",
                    help="memory format of input and weight on both sides (default auto: channels_last "
                         "for fp16/bf16, NCHW for fp32/tf32)" + (
                             "; both: every layer in NCHW and in channels_last, and the summary also "
                             "sets ours against cuDNN's faster layout per layer" if both else ""))


def model_options(sp):
    sp.add_argument("--image-size", metavar="S", type=_int("--image-size", 32, 4096),
                    help="input height and width (default 224; lenet5 takes 32x32, one channel)")
    sp.add_argument("--weights", metavar="FILE", help="a state_dict .pt to load (default: random init)")


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
        return gpu_demo(parser, args if args.command else argparse.Namespace(data=None, no_progress=False))
    if command == "profile":
        return profile(parser, args)
    if command == "bench" and args.model:
        if args.layout != "auto":
            parser.error("argument --layout: not allowed with --model")
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
    if command == "bench":
        return bench_suites(args, data)
    if command == "sweep":
        return sweep(args, shapes, data)
    return replicate(args, data)
