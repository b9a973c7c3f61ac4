"""algo="auto"'s picks over a broad grid of calls, against tests/dispatch_golden.json.

The golden file was recorded from the hand-written rules before they became a table; the table
must give the same pick for every call. No GPU is needed: inputs are meta tensors behind an object
whose device says "cuda", and the device queries are faked (fast memory: an H200's 4.8 TB/s;
slow: an H100's 3.35 TB/s). Regenerate after an intended rule change with
`PYTHONPATH=src python tests/test_dispatch.py --write` and review the diff.
"""
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from zeroskip import dispatch, plan as zplan
from zeroskip.kernels import split_k

GOLDEN = Path(__file__).with_name("dispatch_golden.json")
# one letter per pick in the golden strings; "-" where the call is invalid (pooled map empty)
LETTERS = {"torch": "t", "igemm": "i", "winograd": "2", "winograd4": "4", "im2col": "c", "ecr": "e",
           "ecr_tc": "E"}
PRECISIONS = {"fp32": (torch.float32, False), "tf32": (torch.float32, True),
              "fp16": (torch.float16, False), "bf16": (torch.bfloat16, False)}
LAYOUTS = ("nchw", "cl")
# name -> (kernel, stride, padding, dilation, groups)
GEOMETRIES = {"3x3": (3, 1, 1, 1, 1), "3x3p0": (3, 1, 0, 1, 1), "3x3s2": (3, 2, 1, 1, 1), "1x1": (1, 1, 0, 1, 1),
              "5x5": (5, 1, 2, 1, 1), "7x7s2": (7, 2, 3, 1, 1), "11x11s4": (11, 4, 2, 1, 1),
              "3x3d2": (3, 1, 2, 2, 1), "3x3g2": (3, 1, 1, 1, 2)}
# name -> (activation, pool options or None)
OPS = {"conv": (None, None), "conv-relu": ("relu", None), "max2-relu": ("relu", dict(pool="max")),
       "max2": (None, dict(pool="max")), "avg2-relu": ("relu", dict(pool="avg")),
       "max3s2-relu": ("relu", dict(pool="max", pool_size=3, pool_stride=2))}
OTHER_OPS = ("conv-relu", "max2-relu", "max3s2-relu")  # for the geometries other than 3x3
CHANNELS = (1, 3, 4, 16, 64, 96, 128, 256, 512, 1024)
MAPS = (7, 13, 14, 28, 56, 112, 224)
BATCHES = (1, 8, 16, 32, 64)
MEMORY = {"fast": 4.8e12, "slow": 3.35e12}


def meta_input(batch, channels, hw, dtype, layout):
    x = torch.empty(batch, channels, hw, hw, dtype=dtype, device="meta")
    return x.to(memory_format=torch.channels_last) if layout == "cl" else x


def fake_on(x, device):
    """What dispatch reads from an input on `device`: metadata only (x is a meta tensor)."""
    return types.SimpleNamespace(device=torch.device(device), dtype=x.dtype, is_contiguous=x.is_contiguous,
                                 shape=x.shape, stride=x.stride)


def call(prec, layout, geometry, op, channels, hw, batch):
    """(input, spec, activation) of one grid point, or None where the call is invalid."""
    dtype, _ = PRECISIONS[prec]
    k, s, p, d, g = GEOMETRIES[geometry]
    if channels % g:
        return None
    activation, pool = OPS[op]
    cout = max(channels, 64)
    x = meta_input(batch, channels, hw, dtype, layout)
    w = torch.empty(cout, channels // g, k, k, dtype=dtype, device="meta")
    try:
        spec = zplan.spec_of("conv2d_pool" if pool else "conv2d", x, w, None, s, p, d, g, **(pool or {}))
    except ValueError:
        return None
    return x, spec, activation


def auto_pick(x, spec, activation, prec, device, memory, monkeypatch):
    """The pick of algo="auto" for the call on `device` ("cuda" with `memory`, "cpu-interpreter", "cpu")."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", PRECISIONS[prec][1])
    monkeypatch.setattr(split_k, "memory_bandwidth", lambda dev: MEMORY[memory])
    if device == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
    elif device == "cpu-interpreter":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    return dispatch.choose("auto", fake_on(x, "cpu" if device.startswith("cpu") else "cuda"), spec, activation)


def groups():
    """(device, memory, precision, layout, geometry, op, channels) of every golden line."""
    for device, memories in (("cuda", tuple(MEMORY)), ("cpu-interpreter", ("slow",)), ("cpu", ("slow",))):
        for memory in memories:
            for prec in PRECISIONS:
                for layout in LAYOUTS:
                    for geometry in GEOMETRIES:
                        if device != "cuda" and geometry not in ("3x3", "7x7s2"):
                            continue
                        for op in OPS if geometry == "3x3" else OTHER_OPS:
                            for channels in CHANNELS:
                                yield device, memory, prec, layout, geometry, op, channels


def line_key(device, memory, prec, layout, geometry, op, channels):
    where = f"{device}-{memory}" if device == "cuda" else device
    return f"{where} {prec} {layout} {geometry} {op} c{channels}"


def picks(monkeypatch) -> dict:
    """{line key: picks over maps (space-separated) x batches (one letter each)}."""
    out = {}
    for group in groups():
        device, memory, prec, layout, geometry, op, channels = group
        words = []
        for hw in MAPS:
            word = ""
            for batch in BATCHES:
                found = call(prec, layout, geometry, op, channels, hw, batch)
                word += "-" if found is None else LETTERS[auto_pick(*found, prec, device, memory, monkeypatch)]
            words.append(word)
        out[line_key(*group)] = " ".join(words)
    return out


def header() -> dict:
    return {"about": "algo='auto' picks: one letter per batch " + str(BATCHES) + " for each map size "
                     + str(MAPS) + " (square), space-separated; line key: device[-memory] precision layout "
                     "geometry op cin (cout = max(cin, 64)); letters " + json.dumps(LETTERS) + ", '-' invalid call",
            "geometries": {k: dict(zip(("kernel", "stride", "padding", "dilation", "groups"), v))
                           for k, v in GEOMETRIES.items()},
            "ops": {k: {"activation": a, "pool": p} for k, (a, p) in OPS.items()},
            "memory_bytes_per_s": MEMORY}


def test_auto_picks_match_the_golden_file(monkeypatch):
    golden = json.loads(GOLDEN.read_text())["picks"]
    got = picks(monkeypatch)
    assert set(got) == set(golden)
    wrong = [f"{k}: want {golden[k]!r}, got {got[k]!r}" for k in golden if got[k] != golden[k]]
    assert not wrong, f"{len(wrong)} lines differ:\n" + "\n".join(wrong[:20])


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    patch = pytest.MonkeyPatch()
    try:
        data = {**header(), "picks": picks(patch)}
    finally:
        patch.undo()
    GOLDEN.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {len(data['picks'])} lines to {GOLDEN}")
