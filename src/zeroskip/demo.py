"""`zeroskip demo`, the default command: a correctness check on the CPU; on a GPU, HED's VGG-16 on
real photos against cuDNN and torch.compile, per layer and whole."""
from __future__ import annotations

import math
import os

from .commands import _progress


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
    print("Timings need a CUDA GPU: on one, `zeroskip` times HED's VGG-16 against cuDNN and torch.compile.")
    return 0 if ok else 1


def gpu_demo(parser, args) -> int:
    """On a GPU: the vgg16 suite (HED's 13 convs and 5 conv+ReLU+pool stages on real activations, HED's
    weights) with ours under algo="auto" against cuDNN and torch.compile, then the whole conv stack
    (bench --model hed): eager vs torch.compile vs zeroskip.convert_. Tables on stdout; JSON/CSV and
    plots in --out. Defaults (fp16, batch 1, torch.compile's default mode) keep a first run, which
    compiles every kernel, to a few minutes."""
    import importlib.util
    from pathlib import Path

    import torch

    from .bench import models as bm
    from .bench import run
    from .cli_args import _flat
    from .commands import _inputs, _keep_partial, _photos, _stamp
    _photos(parser, "--input")  # the whole-model line runs on the photos whatever --input says
    inputs = _inputs(parser, args)
    batches, dtypes = _flat(args.batch, [1]), _flat(args.dtype, ["fp16"])
    out, stamp = Path(args.out), _stamp()
    model = "HED's trained VGG-16" if inputs.label == "hed" else "VGG-16"
    print(f"zeroskip on {torch.cuda.get_device_name()}: {model} at 224x224, {', '.join(dtypes)}, batch "
          f"{', '.join(map(str, batches))}, input {inputs.label}. Per layer: ours (algo auto) against cuDNN and "
          f"torch.compile (mode {args.compile_mode}); then the whole conv stack. The first run compiles every "
          f"kernel (minutes); later runs reuse Triton's cache.", flush=True)
    rows, path = [], out / f"demo-{stamp}.json"
    with _keep_partial(rows, path, run.write_results, run.print_table):
        for dtype in dtypes:
            for batch in batches:
                run.run_suite("vgg16", batch, dtype, inputs=inputs, torch_compile=1, compile_mode=args.compile_mode,
                              progress=_progress(args), rows=rows)
    run.write_results(rows, path)
    print()
    run.print_table(rows)
    results = []
    for dtype in dtypes:
        for batch in batches:
            results.append(bm.run_model("hed", batch, dtype, "auto", torch_compile=True,
                                        compile_mode=args.compile_mode, progress=_progress(args)))
            bm.print_result(results[-1])
    model_path = bm.write_results(results, out / f"demo-{stamp}-model.json")
    if importlib.util.find_spec("matplotlib") is None:
        print('\nplots: none, matplotlib is not installed (pip install "zeroskip[bench]")')
    else:
        print(f"\nplot: {run.plot_speedups(rows, path.with_suffix('.png'))}")
        for png in bm.write_plots(results, model_path):
            print(f"plot: {png}")
    print(f"results: {path}, {path.with_suffix('.csv')} and {model_path}")
    return 0
