"""Suite and sparsity-sweep benchmarks: ours (zeroskip) against cuDNN through PyTorch, one row per
(layer, op, algo), with a float64 correctness check before timing.

Fairness rules: the same input, weights and precision on both sides; the baseline at its best
settings (cudnn.benchmark on; fp32 = TF32 off both sides; tf32 = TF32 on both sides; fp16/bf16 =
channels_last input and weight both sides); both sides timed by the same method (CUDA-graph replay,
or do_bench for both if either side cannot be captured); everything ours needs (encoding, workspace)
happens inside the timed call. The optional compiled baseline is the faster of torch.compile's
"default" and "max-autotune-no-cudagraphs" modes by default (the latter: the same autotuning as
"max-autotune", whose own CUDA graphs cannot be nested in the harness's capture, which already gives
every side graph launch).
Inputs come from a bench.inputs source (default: real HED activations); each row names it.
"""
from __future__ import annotations

import contextlib
import datetime
import math

import torch
import torch.nn.functional as F

# plot and results names stay importable from here (zeroskip.bench.run's API)
from ..accuracy import rel_err as rel_error  # noqa: F401  (zeroskip.bench.run's API)
from ..cli_args import COMPILE_MODES
from ..progress import bar, echo
from .plot import plot_speedups, plot_sweep  # noqa: F401
from .results import FIELDS, TOLERANCE, best_layout, geomean, make_row, print_table, write_results  # noqa: F401
from .suites import Layer, load_suite
from .timing import measure_same

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
OPS = ("conv2d", "conv2d_pool")


@contextlib.contextmanager
def precision(dtype: str):
    """cuDNN settings for a precision, restored afterwards."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    try:
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = saved


def env_info() -> dict:
    """gpu, torch, triton, cudnn versions and the date, for every row."""
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "triton": triton_version,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def baseline(op: str, layer: Layer, activation):
    """PyTorch eager ops: F.conv2d [-> F.relu] [-> F.max_pool2d]."""
    def conv(x, w, b):
        y = F.conv2d(x, w, b, **layer.conv_args())
        return F.relu(y) if activation == "relu" else y

    if op == "conv2d":
        return conv
    p = layer.pool_after
    return lambda x, w, b: F.max_pool2d(conv(x, w, b), p["size"], p["stride"], p["padding"])


def ours(op: str, layer: Layer, activation, algo, zeroskip=None):
    """zeroskip.conv2d or conv2d_pool for the layer; `zeroskip` may be another copy of the package
    (scripts/ab_algos.py --base)."""
    if zeroskip is None:
        import zeroskip
    if op == "conv2d":
        return lambda x, w, b: zeroskip.conv2d(x, w, b, **layer.conv_args(), activation=activation, algo=algo)
    return lambda x, w, b: zeroskip.conv2d_pool(x, w, b, **layer.conv_args(), activation=activation,
                                                **layer.pool_args(), algo=algo)


def _spec(op: str, layer: Layer, x, w, b):
    from .. import plan
    pool = layer.pool_args() if op == "conv2d_pool" else {}
    return plan.spec_of(op, x, w, b, **layer.conv_args(), **pool)


def ran_by_auto(op: str, layer: Layer, activation, x, w, b) -> str:
    """The algo that algo="auto" runs for this call (dispatch.choose, the active plan included)."""
    from .. import dispatch
    return dispatch.choose("auto", x, _spec(op, layer, x, w, b), activation)


def dense_kernel(op: str, layer: Layer, x, w, b) -> str | None:
    """The kernel "igemm" runs for this call after its first-call measurement (direct.dense_kernel):
    "direct", "direct, split-K N" or "rows"; None off the GPU or before a call."""
    from ..kernels import direct
    return direct.dense_kernel(_spec(op, layer, x, w, b), x.dtype)


LAYOUTS = ("auto", "nchw", "channels_last")


def operands(layer: Layer, x: torch.Tensor, dtype: str, layout: str = "auto", weights=None):
    """Weights randn * sqrt(2 / fan_in), bias randn * 0.01, or `weights` = (weight, bias) given (the
    real layer's, see bench.inputs). Input and weight channels_last when
    layout says so; "auto" means channels_last for fp16/bf16 (cuDNN's best there) and NCHW for
    fp32/tf32 (PyTorch's default; cuDNN's best for fp32, but with TF32 cuDNN ran VGG-19's stages
    faster in channels_last at batch 32 on an H200: time both there, `bench --layout both`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    fan_in = layer.in_channels // layer.groups * layer.kernel[0] * layer.kernel[1]
    shape = (layer.out_channels, layer.in_channels // layer.groups, *layer.kernel)
    if weights is None:
        w = (torch.randn(shape, device=x.device) * math.sqrt(2.0 / fan_in)).to(DTYPES[dtype])
        b = (torch.randn(layer.out_channels, device=x.device) * 0.01).to(DTYPES[dtype])
    else:
        w, b = (t.to(x.device, DTYPES[dtype]) for t in weights)
        if tuple(w.shape) != shape or tuple(b.shape) != (layer.out_channels,):
            raise ValueError(f"weights for {layer.name}: got {tuple(w.shape)} and {tuple(b.shape)}, expected "
                             f"{shape} and ({layer.out_channels},)")
    x = x.to(DTYPES[dtype])
    if layout == "channels_last" or (layout == "auto" and dtype in ("fp16", "bf16")):
        x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
    return x, w, b


def layout_of(x: torch.Tensor) -> str:
    return "channels_last" if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else "nchw"


def _reason(exc) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


COMPILE_MODE = "both"  # each of COMPILE_MODES, keeping the faster: the best a user gets from torch.compile


def compile_modes(mode: str) -> tuple:
    """The torch.compile modes `mode` stands for: one of COMPILE_MODES, or "both"."""
    if mode != "both" and mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {COMPILE_MODES + ('both',)}, got {mode!r}")
    return COMPILE_MODES if mode == "both" else (mode,)


def _compiled(base, x, w, b, fresh: bool, mode: str):
    """torch.compile of the baseline in `mode`, built and warmed up; fresh: with Inductor's caches
    off, so this build runs its own max-autotune rather than reusing an earlier build's picks."""
    torch._dynamo.reset()
    import torch._inductor.config as inductor
    fresh_caches = dict(force_disable_caches=True, autotune_local_cache=False)
    with inductor.patch(**fresh_caches) if fresh else contextlib.nullcontext():
        comp = torch.compile(base, mode=mode, dynamic=False)
        comp(x, w, b)
    return lambda: comp(x, w, b)


def compare(op, layer, algo, activation, x, w, b, dtype, torch_compile: int, env, suite=None,
            compile_mode: str = COMPILE_MODE):
    """Checks ours against float64, times both sides the same way, returns one row. torch_compile:
    how many torch.compile builds of the baseline to time in each of compile_mode's modes (0: none);
    the row keeps the fastest.
    torch.compile max-autotune picks its kernels by timing them, and those picks change from one
    build to the next: on an H200 the same VGG-19 stage took 53.9 to 79.7 us across runs."""
    notes = []
    base = baseline(op, layer, activation)
    mine = ours(op, layer, activation, algo)
    sparsity = float((x == 0).float().mean())
    ran = ran_by_auto(op, layer, activation, x, w, b) if algo == "auto" else algo
    if algo == "auto":
        notes.append(f"auto ran {ran}")
    try:
        err = rel_error(mine(x, w, b), base(x.double(), w.double(), b.double()))
    except Exception as exc:
        notes.append(f"ours failed: {_reason(exc)}")
        echo(f"    {layer.name} {op} {algo}: {notes[-1]}")
        return make_row(layer, op, dtype, x.shape[0], sparsity, algo, None, None, None, None, env, notes, suite, layout_of(x))
    kernel = dense_kernel(op, layer, x, w, b) if ran == "igemm" else None
    if kernel is not None:  # the first call above made igemm's measured choice
        notes.append(f"igemm ran {kernel}")
    fns = [lambda: mine(x, w, b), lambda: base(x, w, b)]
    modes = [m for m in compile_modes(compile_mode) for _ in range(int(torch_compile))]
    for mode in modes:
        try:
            fns.append(_compiled(base, x, w, b, fresh=torch_compile > 1, mode=mode))
        except Exception as exc:
            notes.append(f"torch.compile ({mode}) failed: {_reason(exc)}")
            modes = modes[:len(fns) - 2]
            break
    try:
        times = measure_same(*fns)
    except Exception as exc:  # e.g. out of memory while timing: keep the run going
        notes.append(f"timing failed: {_reason(exc)}")
        echo(f"    {layer.name} {op} {algo}: {notes[-1]}")
        return make_row(layer, op, dtype, x.shape[0], sparsity, algo, None, None, None, err, env, notes, suite, layout_of(x))
    if times[0].method != "cuda_graph":
        notes.append(f"all sides timed with do_bench (CUDA graph capture failed: {times[0].reason})")
    t_ours, t_base = times[0], times[1]
    compiled = [t.us for t in times[2:]]
    compiled_us = min(compiled) if compiled else None
    if len(compiled) > 1:
        best = modes[compiled.index(min(compiled))]
        notes.append(f"torch.compile: fastest of {len(compiled)} builds ({min(compiled):.1f} to {max(compiled):.1f} us), "
                     f"mode {best}")
    return make_row(layer, op, dtype, x.shape[0], sparsity, algo, t_ours.us, t_base.us, compiled_us, err,
                    env, notes, suite, layout_of(x))


def _source(inputs):
    from .inputs import make_inputs
    return make_inputs("real", device="cuda") if inputs is None else inputs


def run_suite(suite, batch: int = 1, dtype: str = "fp32", ops=OPS, algos=("auto",), inputs=None,
              torch_compile: int = 0, layout: str = "auto", progress: bool = False,
              rows: list | None = None, compile_mode: str = COMPILE_MODE) -> list[dict]:
    """Every conv of `suite` (a name or a list of Layer) with an input from `inputs` (a bench.inputs
    source; default real HED activations) on CUDA. torch_compile: torch.compile builds of the
    baseline per layer, in compile_mode (compare). progress: a bar over the layers on stderr
    (zeroskip.progress). rows: a list each row is appended to as soon as it is measured (and
    returned), so a stopped run keeps them."""
    layers = load_suite(suite) if isinstance(suite, str) else list(suite)
    bad = [op for op in ops if op not in OPS]
    if bad:
        raise ValueError(f"ops must be among {OPS}, got {bad}")
    inputs = _source(inputs)
    env, rows = {**env_info(), "input": inputs.label}, [] if rows is None else rows
    name = suite if isinstance(suite, str) else (layers[0].suite if layers else "suite")
    with precision(dtype), bar(len(layers), f"{name} batch {batch} {dtype}", progress, "layer") as done:
        for i, layer in enumerate(layers, 1):
            done.set_postfix_str(layer.name)
            echo(f"[{i}/{len(layers)}] {layer.suite} {layer.name} batch {batch} {dtype}")
            todo = [op for op in ops if op == "conv2d" or layer.pool_after]
            if "conv2d_pool" in todo and not layer.floor_pool_exact:
                echo(f"    skip {layer.name} conv2d_pool: the network's pool uses ceil_mode=True, which adds a "
                     f"partial window here that zeroskip's floor-mode pool does not model")
                todo.remove("conv2d_pool")
            if not todo:
                done.update()
                continue
            x, w, b = operands(layer, inputs.layer(layer, batch), dtype, layout, inputs.weights(layer))
            for op in todo:
                activation = None if op == "conv2d" else "relu"
                for algo in algos:
                    rows.append(compare(op, layer, algo, activation, x, w, b, dtype, torch_compile, env,
                                        compile_mode=compile_mode))
            del x, w, b
            torch.cuda.empty_cache()
            done.update()
    return rows


def run_sweep(shapes, sparsities, batch: int = 1, dtype: str = "fp32", algos=("auto",), inputs=None,
              layout: str = "auto", progress: bool = False, rows: list | None = None) -> list[dict]:
    """conv2d (no activation) of each Layer in `shapes` at each input sparsity, the zero pattern from
    `inputs` (a bench.inputs source, default real); suite '<suite>/sweep'. progress: a bar over the
    (layer, sparsity) points on stderr (zeroskip.progress). rows: as in run_suite."""
    inputs = _source(inputs)
    env, rows = {**env_info(), "input": inputs.label}, [] if rows is None else rows
    total = len(shapes) * len(sparsities)
    with precision(dtype), bar(total, f"sweep batch {batch} {dtype}", progress, "point") as done:
        for i, layer in enumerate(shapes, 1):
            echo(f"[{i}/{len(shapes)}] sweep {layer.suite} {layer.name} batch {batch} {dtype}")
            for s in sparsities:
                done.set_postfix_str(f"{layer.name} sparsity {s:g}")
                x, w, b = operands(layer, inputs.sweep(layer, batch, s), dtype, layout, inputs.weights(layer))
                for algo in algos:
                    rows.append(compare("conv2d", layer, algo, None, x, w, b, dtype, False, env,
                                        suite=f"{layer.suite}/sweep"))
                done.update()
    return rows


def break_even(sparsities, speedups):
    """Sparsity from which ours stays at least as fast (speedup >= 1): interpolated linearly at the
    last upward crossing of 1.0; the lowest sparsity if never below 1; None if it ends below 1."""
    pts = sorted((s, v) for s, v in zip(sparsities, speedups) if v is not None)
    if not pts or pts[-1][1] < 1.0:
        return None
    for j in range(len(pts) - 1, 0, -1):
        (s0, v0), (s1, v1) = pts[j - 1], pts[j]
        if v0 < 1.0 <= v1:
            return s0 + (1.0 - v0) * (s1 - s0) / (v1 - v0)
    return pts[0][0]


SAME_KERNEL = "cuDNN"


def break_evens(rows) -> dict:
    """{(suite, layer, dtype, batch, algo): break-even sparsity} over sweep rows; SAME_KERNEL where
    algo="auto" ran cuDNN at every point: both sides are then one kernel and a ratio above 1 is
    run-to-run noise (a sweep on an H200 printed 0.600 for such a line), not a break-even."""
    groups = {}
    for r in rows:
        groups.setdefault((r["suite"], r["layer"], r["dtype"], r["batch"], r["algo"]), []).append(r)
    return {k: SAME_KERNEL if all("auto ran torch" in (r.get("notes") or ()) for r in g)
            else break_even([r["sparsity"] for r in g], [r["speedup"] for r in g]) for k, g in groups.items()}
