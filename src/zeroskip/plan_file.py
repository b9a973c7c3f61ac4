"""Plan: the measured algo choices of one environment, and the JSON file that keeps them.

The keys and the active plan are in zeroskip.plan; a file made on another GPU or software stack is
ignored on load, with a warning.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict

import torch

from .geometry import ConvSpec

FORMAT = 1


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


def _algos():
    from .dispatch import ALGOS  # dispatch imports zeroskip.plan, which imports this module: look the names up late
    return tuple(a for a in ALGOS if a != "auto")


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

    def add(self, key, algo, times_us, sparsity=None) -> None:
        if algo not in _algos():
            raise ValueError(f"algo must be one of {_algos()}, got {algo!r}")
        self.entries[key] = {"algo": algo, "times_us": dict(times_us), "sparsity": sparsity}

    def to_json(self) -> dict:
        rows = []
        for (op, spec, dtype, tf32, activation, channels_last), entry in self.entries.items():
            key = {"op": op, "spec": asdict(spec), "dtype": str(dtype).removeprefix("torch."),
                   "tf32": tf32, "activation": activation, "channels_last": channels_last}
            rows.append({"key": key, **entry})
        return {"format": FORMAT, "environment": self.env, "entries": rows}

    @classmethod
    def from_json(cls, data: dict) -> "Plan":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a zeroskip plan of format {FORMAT}: "
                             f"format={data.get('format') if isinstance(data, dict) else data!r}")
        plan = cls(data["environment"])
        for row in data["entries"]:
            k = row["key"]
            dtype = getattr(torch, k["dtype"], None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"plan entry has an unknown dtype {k['dtype']!r}")
            key = (k["op"], ConvSpec(**k["spec"]), dtype, k["tf32"], k["activation"], k["channels_last"])
            plan.add(key, row["algo"], row["times_us"], row.get("sparsity"))
        return plan

    def save(self, path) -> None:
        """Writes JSON atomically (a temporary file in the same folder, then a rename)."""
        path = os.fspath(path)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".plan-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path) -> "Plan":
        """The plan in `path`, or an empty one (with a warning) if it was made elsewhere."""
        with open(path) as f:
            plan = cls.from_json(json.load(f))
        here = environment()
        if plan.env != here:
            warnings.warn(f"ignoring plan {os.fspath(path)!r}: measured in {plan.env}, "
                          f"this environment is {here}", RuntimeWarning, stacklevel=2)
            return cls(here)
        return plan
