"""Per-call algo choices measured on one GPU and software stack, kept as data (a JSON file).

No kernel beats cuDNN on every layer (BENCHMARKS.md), so where no rule of zeroskip/rules.py says
otherwise algo="auto" runs cuDNN; a plan records, for exact calls, which algo was fastest there. An
entry's key is one call: op, full geometry (batch and pooling included), dtype, the TF32 switch (fp32
only), activation and whether the input is channels_last; it holds the fastest algo and every
candidate's time. Timings only hold for the GPU and software that made them, so a plan file carries
its environment (GPU name, torch, triton, cuDNN versions) and is ignored, with a warning, elsewhere.

    import zeroskip
    from zeroskip.measure import measure
    from zeroskip.plan import Plan, use

    # Measure every converted layer on its real input; plan.json is reused (not re-measured) later.
    # Each converted module keeps its measured algo (or the plan, where its calls' winners differ).
    model = zeroskip.convert_(model.cuda().eval(), x.cuda(), plan="plan.json")

    # Or by hand: time one call, record it, and let algo="auto" follow the plan inside `use`.
    algo, times_us = measure("conv2d", x, w, b, padding=1, activation="relu")
    plan = Plan.load("plan.json")
    with use(plan):
        y = zeroskip.conv2d(x, w, b, padding=1, activation="relu")  # algo="auto"
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
import warnings
from dataclasses import MISSING, asdict, fields

import torch

from .geometry import ACTIVATIONS, POOLS, ConvSpec, check_conv, with_pool
from .kernels import KERNELS

FORMAT = 1
OPS = ("conv2d", "conv2d_pool", "conv2d_residual")  # conv2d_residual: conv2d(..., residual=r)
ALGOS = ("torch",) + tuple(KERNELS)  # what an entry may hold
_CURRENT = contextvars.ContextVar("zeroskip_plan", default=None)


def environment() -> dict:
    """What timings depend on besides the call itself: the GPU and the software driving it."""
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"gpu": gpu, "torch": torch.__version__, "triton": triton_version,
            "cudnn": torch.backends.cudnn.version()}


def spec_of(op, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
            pool=None, pool_size=2, pool_stride=None, pool_padding=0) -> ConvSpec:
    """The checked geometry of a zeroskip.conv2d (pool None) or conv2d_pool (pool given) call."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if (op == "conv2d_pool") != (pool is not None):
        raise ValueError(f"pool must be given for op='conv2d_pool' and None for op='conv2d'; "
                         f"got op={op!r}, pool={pool!r}")
    x = input.unsqueeze(0) if isinstance(input, torch.Tensor) and input.dim() == 3 else input
    spec = check_conv(x, weight, bias, stride, padding, dilation, groups)
    return spec if pool is None else with_pool(spec, pool, pool_size, pool_stride, pool_padding)


def make_key(op, spec: ConvSpec, input, activation) -> tuple:
    """The plan key of one call, from flags and metadata only (no device work, no sync)."""
    dtype = input.dtype
    tf32 = dtype == torch.float32 and bool(torch.backends.cudnn.allow_tf32)
    channels_last = input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous()
    return (op, spec, dtype, tf32, activation, channels_last)


def lookup(plan, op, spec: ConvSpec, input, activation):
    """plan's algo for this call, or None (no plan, or no entry): a pure function of its arguments."""
    return None if plan is None else plan.algo(make_key(op, spec, input, activation))


def current():
    """The plan `use` made current in this thread (or task), or None."""
    return _CURRENT.get()


@contextlib.contextmanager
def use(plan):
    """`with use(plan):` algo="auto" follows `plan` inside the block (in this thread or task only),
    then the previous one again. Converted modules hold their own plan and need no `use`."""
    if plan is not None and not isinstance(plan, Plan):
        raise TypeError(f"plan must be a Plan or None, got {type(plan).__name__}")
    token = _CURRENT.set(plan)
    try:
        yield plan
    finally:
        _CURRENT.reset(token)


class Plan:
    """Measured choices for one environment: key -> {"algo", "times_us", "sparsity"}.

    times_us maps each candidate to its median GPU microseconds, or to a string saying why it
    was dropped (its error, or its accuracy against the torch path)."""

    def __init__(self, env: dict | None = None):
        self.env = environment() if env is None else dict(env)
        self.entries: dict = {}

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key):
        return self.entries.get(key)

    def algo(self, key):
        entry = self.entries.get(key)
        return None if entry is None else entry["algo"]

    def algo_for(self, op, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                 activation=None, **pool):
        """The algo for a zeroskip.conv2d / conv2d_pool call given by its arguments, or None."""
        x = input.unsqueeze(0) if input.dim() == 3 else input
        spec = spec_of(op, x, weight, bias, stride, padding, dilation, groups, **pool)
        return self.algo(make_key(op, spec, x, activation))

    def add(self, key, algo, times_us, sparsity=None) -> None:
        if algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
        self.entries[key] = {"algo": algo, "times_us": dict(times_us), "sparsity": sparsity}

    def to_json(self) -> dict:
        rows = []
        for (op, spec, dtype, tf32, activation, channels_last), entry in self.entries.items():
            key = {"op": op, "spec": asdict(spec), "dtype": str(dtype).removeprefix("torch."),
                   "tf32": tf32, "activation": activation, "channels_last": channels_last}
            rows.append({"key": key, **entry})
        return {"format": FORMAT, "environment": self.env, "entries": rows}

    @classmethod
    def from_json(cls, data, source: str = "plan") -> "Plan":
        """The plan in `data` (parsed JSON); ValueError naming the entry and field where it is not one."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{source}: not a zeroskip plan of format {FORMAT}: "
                             f"format={data.get('format') if isinstance(data, dict) else data!r}")
        _need(isinstance(data.get("environment"), dict), source, "'environment' must be an object")
        _need(isinstance(data.get("entries"), list), source, "'entries' must be a list")
        plan = cls(data["environment"])
        for i, row in enumerate(data["entries"]):
            key, entry = _parse_entry(row, f"{source}: entries[{i}]")
            plan.entries[key] = entry
        return plan

    def save(self, path) -> None:
        """Writes JSON atomically (a temporary file in the same folder, then a rename), keeping the
        permissions of the file it replaces, or those the umask gives a new file."""
        path = os.fspath(path)
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".plan-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=1)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path) -> "Plan":
        """The plan in `path`, or an empty one (with a warning) if it was made elsewhere. ValueError
        where the file is not a well-formed plan, naming the path, the entry and the field."""
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{os.fspath(path)}: not JSON: {exc}") from None
        plan = cls.from_json(data, os.fspath(path))
        here = environment()
        if plan.env != here:
            warnings.warn(f"ignoring plan {os.fspath(path)!r}: measured in {plan.env}, "
                          f"this environment is {here}", RuntimeWarning, stacklevel=2)
            return cls(here)
        return plan


def _need(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise ValueError(f"{where}: {what}")


_SPEC_FIELDS = {f.name: f for f in fields(ConvSpec)}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "float64": torch.float64}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_spec(spec, where: str) -> ConvSpec:
    _need(isinstance(spec, dict), where, f"must be an object, got {spec!r}")
    missing = [n for n, f in _SPEC_FIELDS.items() if n not in spec and f.default is MISSING]
    _need(not missing, where, f"missing fields {missing}")
    unknown = sorted(set(spec) - set(_SPEC_FIELDS))
    _need(not unknown, where, f"unknown fields {unknown}")
    for name, value in spec.items():
        if name == "pool":
            _need(value is None or value in POOLS, f"{where}.pool", f"must be one of {(None,) + POOLS}, got {value!r}")
        else:
            low = 0 if name.startswith(("pad", "pool_p", "pooled")) else 1
            _need(_is_int(value) and value >= low, f"{where}.{name}", f"must be an int >= {low}, got {value!r}")
    made = ConvSpec(**spec)
    _need(made.in_channels % made.groups == 0 and made.out_channels % made.groups == 0, where,
          f"channels {made.in_channels} -> {made.out_channels} not divisible by groups={made.groups}")
    _need((made.pool is None) == (made.pooled_h == 0 and made.pooled_w == 0), where,
          f"pool={made.pool!r} with pooled size {made.pooled_h}x{made.pooled_w}")
    return made


def _parse_entry(row, where: str):
    """(key, entry) of one JSON row of a plan."""
    _need(isinstance(row, dict), where, f"must be an object, got {type(row).__name__}")
    for name in ("key", "algo", "times_us"):
        _need(name in row, where, f"missing {name!r}")
    k = row["key"]
    _need(isinstance(k, dict), f"{where}.key", "must be an object")
    for name in ("op", "spec", "dtype", "tf32", "activation", "channels_last"):
        _need(name in k, f"{where}.key", f"missing {name!r}")
    _need(k["op"] in OPS, f"{where}.key.op", f"must be one of {OPS}, got {k['op']!r}")
    _need(k["dtype"] in _DTYPES, f"{where}.key.dtype", f"must be one of {tuple(_DTYPES)}, got {k['dtype']!r}")
    _need(k["activation"] in ACTIVATIONS, f"{where}.key.activation",
          f"must be one of {ACTIVATIONS}, got {k['activation']!r}")
    for name in ("tf32", "channels_last"):
        _need(isinstance(k[name], bool), f"{where}.key.{name}", f"must be true or false, got {k[name]!r}")
    spec = _parse_spec(k["spec"], f"{where}.key.spec")
    _need((spec.pool is not None) == (k["op"] == "conv2d_pool"), f"{where}.key",
          f"op={k['op']!r} with pool={spec.pool!r}")
    _need(row["algo"] in ALGOS, f"{where}.algo", f"must be one of {ALGOS}, got {row['algo']!r}")
    times = row["times_us"]
    _need(isinstance(times, dict) and all(isinstance(v, (int, float, str)) and not isinstance(v, bool)
                                          for v in times.values()),
          f"{where}.times_us", "must map candidates to microseconds or a reason string")
    sparsity = row.get("sparsity")
    _need(sparsity is None or (isinstance(sparsity, (int, float)) and not isinstance(sparsity, bool)),
          f"{where}.sparsity", f"must be a number or null, got {sparsity!r}")
    key = (k["op"], spec, _DTYPES[k["dtype"]], k["tf32"], k["activation"], k["channels_last"])
    return key, {"algo": row["algo"], "times_us": dict(times), "sparsity": sparsity}
