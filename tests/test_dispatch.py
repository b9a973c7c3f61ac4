"""zeroskip.dispatch and the table of zeroskip/rules.py: algo="auto"'s picks over a broad grid of
calls against tests/dispatch_golden.json (the acceptance test of the table), GPUs without rules, plans,
explain(), the CPU fallback.

The golden file was recorded from the hand-written rules the table replaced, on Hopper; the table
gives the same pick for every call. (The one intended change: other GPU classes, which those rules
treated as Hopper, now run cuDNN; test_gpus_without_rules_run_cudnn.) No GPU is needed: inputs are
meta tensors behind an object whose device says "cuda", and the device queries are faked (fast memory:
an H200's 4.8 TB/s; slow: an H100's 3.35 TB/s). Regenerate after an intended rule change with
`PYTHONPATH=src python tests/test_dispatch.py --write` and review the diff.
"""
import json
import sys
from pathlib import Path

import pytest
import torch

from helpers import on_device
from zeroskip import dispatch, plan as zplan, runtime

GOLDEN = Path(__file__).with_name("dispatch_golden.json")
# one letter per pick in the golden strings; "-" where the call is invalid (pooled map empty)
LETTERS = {"torch": "t", "igemm": "i", "winograd": "2", "winograd4": "4", "im2col": "c", "ecr": "e",
           "ecr_tc": "E", "cudnn": "d", "depthwise": "D"}
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
    monkeypatch.setattr(runtime, "memory_bandwidth", lambda dev: MEMORY[memory])
    monkeypatch.setattr(runtime, "gpu_class", lambda dev: "hopper")
    monkeypatch.setattr(runtime, "interpreting", lambda: device == "cpu-interpreter")
    monkeypatch.setattr(dispatch, "_warned_cpu", True)
    return dispatch.choose("auto", on_device(x, "cpu" if device.startswith("cpu") else "cuda"), spec, activation)


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
    """The acceptance test of zeroskip/rules.py: every pick the hand-written rules made on Hopper."""
    golden = json.loads(GOLDEN.read_text())["picks"]
    got = picks(monkeypatch)
    assert set(got) == set(golden)
    wrong = [f"{k}: want {golden[k]!r}, got {got[k]!r}" for k in golden if got[k] != golden[k]]
    assert not wrong, f"{len(wrong)} lines differ:\n" + "\n".join(wrong[:20])


@pytest.mark.parametrize("gpu", ["sm_80", "sm_100", "sm_89"])
def test_gpus_without_rules_run_cudnn(gpu, monkeypatch):
    """The one pick that differs from the rules before the table: they applied Hopper's rules to every
    GPU. A GPU class without rows runs "torch" unless a plan measured the call."""
    monkeypatch.setattr(runtime, "gpu_class", lambda dev: gpu)
    for prec, layout, op, c, hw, batch in [("fp32", "nchw", "conv-relu", 256, 56, 32), ("fp16", "cl", "max2-relu", 512, 14, 1),
                                           ("fp32", "nchw", "conv-relu", 3, 224, 1), ("bf16", "cl", "conv", 64, 224, 8)]:
        x, spec, act = call(prec, layout, "3x3", op, c, hw, batch)
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", PRECISIONS[prec][1])
        assert dispatch.choose("auto", on_device(x, "cuda"), spec, act) == "torch"
        assert "no rules for GPU class" in dispatch.explain(on_device(x, "cuda"), spec, act)
        plan = zplan.Plan()
        plan.add(zplan.make_key("conv2d_pool" if spec.pool else "conv2d", spec, x, act), "igemm", {"igemm": 1.0})
        assert dispatch.choose("auto", on_device(x, "cuda"), spec, act, plan=plan) == "igemm"


# A few calls, each with the rule that picks it (the golden file has every pick).
@pytest.mark.parametrize("prec, layout, op, c, hw, batch, bandwidth, want, row", [
    ("fp32", "nchw", "conv-relu", 3, 224, 1, 4.8e12, "im2col", "features.0"),
    ("fp16", "cl", "conv-relu", 3, 224, 32, 4.8e12, "im2col", "features.0"),
    ("fp32", "nchw", "conv-relu", 256, 56, 32, 4.8e12, "winograd4", "features.12"),
    ("fp32", "nchw", "conv-relu", 64, 224, 32, 4.8e12, "winograd4", "64 channels on an H200"),
    ("fp32", "nchw", "conv-relu", 64, 224, 32, 3.35e12, "igemm", "every VGG-19 conv"),
    ("fp32", "nchw", "conv-relu", 512, 14, 1, 4.8e12, "winograd", "features.30 at batch 1"),
    ("fp32", "nchw", "conv-relu", 512, 14, 64, 4.8e12, "torch", None),  # batch 64: not measured
    ("tf32", "cl", "conv-relu", 64, 56, 1, 4.8e12, "torch", None),      # plain TF32 convs in channels_last lost
    ("tf32", "nchw", "max2-relu", 128, 112, 32, 4.8e12, "winograd4", "features.7 + pool"),
    ("tf32", "nchw", "max2-relu", 128, 112, 8, 4.8e12, "igemm", "128-255 channels"),
    ("fp16", "cl", "max2-relu", 512, 14, 8, 4.8e12, "winograd", "14x14 maps below batch 16"),
    ("fp16", "cl", "conv-relu", 128, 28, 1, 4.8e12, "cudnn", "ResNet-50's"),  # igemm's 64..128 channels need 56x56
    ("fp16", "cl", "conv", 128, 28, 1, 4.8e12, "torch", None),         # no ReLU: nothing for cuDNN to fuse
    ("fp16", "nchw", "max2-relu", 128, 56, 1, 4.8e12, "torch", None),  # NCHW fp16: not measured
    ("bf16", "cl", "max2-relu", 256, 56, 32, 4.8e12, "winograd4", "fused features.16 from batch 16"),
    ("bf16", "cl", "max2-relu", 256, 56, 32, 3.35e12, "igemm", "fused stages"),
    ("bf16", "cl", "conv-relu", 512, 14, 32, 4.8e12, "cudnn", "ResNet-50's"),
    ("bf16", "cl", "conv-relu", 512, 14, 64, 4.8e12, "torch", None),   # batch 64: not measured
])
def test_rules_say_why(prec, layout, op, c, hw, batch, bandwidth, want, row, hopper, monkeypatch):
    hopper.bandwidth = bandwidth
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", PRECISIONS[prec][1])
    x, spec, act = call(prec, layout, "3x3", op, c, hw, batch)
    assert dispatch.choose("auto", on_device(x, "cuda"), spec, act) == want
    why = dispatch.explain(on_device(x, "cuda"), spec, act)
    assert why.startswith(f"{want}: ") and (row in why if row else "cuDNN" in why)


# Calls cuDNN's fused kernel cannot run (no ReLU): 1x1, depthwise and MobileNet's stem; with a ReLU, cuDNN's
# (but igemm for fp16 1x1 convs of 64-256 channels at batch 1).
@pytest.mark.parametrize("prec, layout, geometry, activation, c, hw, batch, want, row", [
    ("fp16", "cl", "1x1", None, 256, 56, 1, "igemm", "1x1 convs"),
    ("bf16", "cl", "1x1", "relu6", 512, 28, 32, "igemm", "1x1 convs"),
    ("fp16", "cl", "1x1", "relu", 256, 56, 1, "igemm", "ResNet-50 and GoogLeNet at batch 1"),
    ("fp16", "cl", "1x1", "relu", 512, 28, 1, "cudnn", "ResNet-50's"),   # from 512 channels cuDNN's
    ("fp16", "cl", "1x1", "relu", 256, 56, 8, "cudnn", "ResNet-50's"),   # batch 1 only
    ("bf16", "cl", "1x1", "relu", 256, 56, 1, "cudnn", "ResNet-50's"),   # fp16 only
    ("fp16", "cl", "1x1", None, 256, 56, 64, "torch", None),     # batch 64: not measured
    ("fp16", "nchw", "1x1", None, 256, 56, 1, "torch", None),    # NCHW fp16: not measured
    ("fp16", "cl", "depthwise", "relu6", 96, 112, 1, "depthwise", "17 depthwise convs"),
    ("fp16", "cl", "depthwise", None, 96, 112, 16, "torch", None),   # measured at batch 1 only
    ("bf16", "cl", "depthwise", "relu6", 96, 112, 1, "torch", None),  # fp16 only
    ("fp16", "cl", "depthwise", "relu", 96, 112, 1, "cudnn", "ResNet-50's"),
    ("fp16", "cl", "depthwise5x5", "relu6", 96, 112, 1, "torch", None),  # 3x3 only measured
    ("fp16", "cl", "3x3s2", "relu6", 3, 224, 1, "im2col", "3x3/2 stem"),
    ("fp16", "cl", "3x3s2", "relu", 3, 224, 1, "cudnn", "ResNet-50's"),
])
def test_rules_past_cudnn(prec, layout, geometry, activation, c, hw, batch, want, row, hopper):
    dtype = PRECISIONS[prec][0]
    k, s, p, _, g = {"depthwise": (3, 1, 1, 1, c), "depthwise5x5": (5, 1, 2, 1, c)}.get(geometry) or GEOMETRIES[geometry]
    x = meta_input(batch, c, hw, dtype, layout)
    spec = zplan.spec_of("conv2d", x, torch.empty(max(c, 64) if g == 1 else c, c // g, k, k, dtype=dtype,
                                                  device="meta"), None, s, p, 1, g)
    assert dispatch.choose("auto", on_device(x, "cuda"), spec, activation) == want
    why = dispatch.explain(on_device(x, "cuda"), spec, activation)
    assert why.startswith(f"{want}: ") and (row in why if row else "cuDNN" in why)


def test_every_rule_names_a_kernel_and_its_evidence():
    from zeroskip.kernels import KERNELS
    from zeroskip.rules import RULES, Features
    names = set(Features.__dataclass_fields__)
    for rules in RULES.values():
        for rule in rules:
            assert rule.algo in KERNELS and len(rule.evidence) > 20
            assert {k for k, _ in rule.when} <= names


def test_auto_follows_a_plan(hopper):
    x, w = torch.zeros(2, 4, 8, 8), torch.zeros(6, 4, 3, 3)
    spec = zplan.spec_of("conv2d", x, w, None, 1, 1)
    plan = zplan.Plan()
    plan.add(zplan.make_key("conv2d", spec, x, "relu"), "ecr_tc", {"torch": 2.0, "ecr_tc": 1.0})
    assert dispatch.choose("auto", on_device(x, "cuda"), spec, "relu") == "torch"  # no plan: 4 channels lost
    assert dispatch.choose("auto", on_device(x, "cuda"), spec, "relu", plan=plan) == "ecr_tc"
    assert zplan.lookup(plan, "conv2d", spec, x, "relu") == "ecr_tc" and zplan.lookup(None, "conv2d", spec, x, "relu") is None
    with zplan.use(plan) as current:
        assert current is plan and zplan.current() is plan
        assert dispatch.choose("auto", on_device(x, "cuda"), spec, "relu") == "ecr_tc"
        assert "plan" in dispatch.explain(on_device(x, "cuda"), spec, "relu")
        assert dispatch.choose("auto", on_device(x, "cuda"), spec, None) == "torch"  # no entry for this call
        assert dispatch.choose("igemm", on_device(x, "cuda"), spec, "relu") == "igemm"  # explicit algos win
        if runtime.interpreting():
            assert dispatch.choose("auto", x, spec, "relu") == "ecr"  # the CPU interpreter ignores plans
    assert zplan.current() is None
    with pytest.raises(TypeError, match="plan"):
        with zplan.use("plan.json"):
            pass


def test_auto_on_a_cpu_without_the_interpreter_warns_once(monkeypatch):
    import warnings
    monkeypatch.setattr(runtime, "interpreting", lambda: False)
    monkeypatch.setattr(dispatch, "_warned_cpu", False)
    x, w = torch.rand(1, 3, 8, 8), torch.randn(4, 3, 3, 3)
    spec = zplan.spec_of("conv2d", x, w)
    with pytest.warns(UserWarning, match="need a CUDA GPU, or TRITON_INTERPRET=1.*runs PyTorch"):
        assert dispatch.choose("auto", x, spec) == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.choose("auto", x, spec) == "torch"              # once
        assert dispatch.choose("auto", x.double(), spec) == "torch"     # and never for dtypes no kernel takes
    with pytest.raises(RuntimeError, match="algo='ecr' needs a CUDA tensor"):
        dispatch.choose("ecr", x, spec)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    patch = pytest.MonkeyPatch()
    try:
        data = {**header(), "picks": picks(patch)}
    finally:
        patch.undo()
    GOLDEN.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {len(data['picks'])} lines to {GOLDEN}")
