"""zeroskip.plan: keys, JSON files, the active plan in dispatch, measure, convert_ with measurement.

On the CPU, GPU-only parts are reached through fakes: an object whose device is "cuda" for
dispatch.choose, and fake timings (with the CUDA check switched off) for measure."""
import json
import types

import pytest
import torch
from torch import nn

import zeroskip
from helpers import sparse
from zeroskip import dispatch, plan as zplan
from zeroskip.bench import timing
from zeroskip.nn import ConvActPool


def lenet5():
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                      nn.MaxPool2d(2)),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def key(batch=2, dtype=torch.float32, channels_last=False, op="conv2d", activation="relu", **pool):
    x = torch.zeros(batch, 4, 8, 8, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.zeros(6, 4, 3, 3, dtype=dtype)
    return zplan.make_key(op, zplan.spec_of(op, x, w, None, 1, 1, **pool), x, activation)


def test_key_is_stable_and_sensitive(monkeypatch):
    base = key()
    assert key() == base and hash(key()) == hash(base)
    max_pool = dict(op="conv2d_pool", pool="max")
    others = [key(batch=3), key(dtype=torch.float16), key(channels_last=True), key(activation=None),
              key(**max_pool), key(op="conv2d_pool", pool="avg"), key(**max_pool, pool_size=3),
              key(**max_pool, pool_stride=1), key(op="conv2d_pool", pool="avg", pool_padding=1)]
    assert len({base, *others}) == len(others) + 1
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", not torch.backends.cudnn.allow_tf32)
    assert key() != base and key(dtype=torch.float16) == others[1]  # TF32 only matters for fp32
    monkeypatch.undo()
    with pytest.raises(ValueError, match="op"):
        key(op="conv3d")
    with pytest.raises(ValueError, match="pool"):
        key(op="conv2d_pool")


def test_json_round_trip_and_atomic_save(tmp_path):
    plan = zplan.Plan()
    plan.add(key(), "ecr", {"torch": 10.0, "ecr": 7.5, "igemm": "RuntimeError: no"}, sparsity=0.5)
    plan.add(key(dtype=torch.bfloat16, op="conv2d_pool", pool="avg", pool_size=3), "torch", {"torch": 3.0})
    path = tmp_path / "plan.json"
    plan.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temporary file left behind
    loaded = zplan.Plan.load(path)
    assert loaded.entries == plan.entries and loaded.env == zplan.environment()
    assert loaded.algo(key()) == "ecr" and loaded.get(key(batch=1)) is None
    with pytest.raises(ValueError, match="algo"):
        plan.add(key(), "fast", {})


def test_other_environment_is_ignored_with_warning(tmp_path):
    path = tmp_path / "plan.json"
    other = zplan.Plan({**zplan.environment(), "gpu": "Imaginary GPU 9000"})
    other.add(key(), "ecr", {"ecr": 1.0})
    other.save(path)
    with pytest.warns(RuntimeWarning, match="Imaginary GPU 9000"):
        loaded = zplan.Plan.load(path)
    assert len(loaded) == 0 and loaded.env == zplan.environment()
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format"):
        zplan.Plan.load(path)


# These tests stand in for the GPU with fakes; with --device cuda the real test below runs instead.
cpu_fakes = pytest.mark.usefixtures("skip_on_cuda")


@pytest.fixture
def skip_on_cuda(device):
    if device == "cuda":
        pytest.skip("fake-GPU test; test_convert_measures_on_cuda covers the real path")


def fake_cuda_input(x):
    """What dispatch.choose and the key read from a CUDA input: device, dtype, layout flags."""
    return types.SimpleNamespace(device=torch.device("cuda"), dtype=x.dtype, is_contiguous=x.is_contiguous,
                                 shape=x.shape, stride=x.stride)


@cpu_fakes
def test_choose_auto_follows_active_plan():
    x, w = torch.zeros(2, 4, 8, 8), torch.zeros(6, 4, 3, 3)
    spec = zplan.spec_of("conv2d", x, w, None, 1, 1)
    fake = fake_cuda_input(x)
    plan = zplan.Plan()
    plan.add(zplan.make_key("conv2d", spec, x, "relu"), "ecr_tc", {"torch": 2.0, "ecr_tc": 1.0})
    assert dispatch.choose("auto", fake, spec, "relu") == "torch"  # no active plan
    with zplan.use(plan) as active:
        assert active is plan and zplan.active() is plan
        assert dispatch.choose("auto", fake, spec, "relu") == "ecr_tc"
        assert dispatch.choose("auto", fake, spec, None) == "torch"  # no entry for this call
        assert dispatch.choose("igemm", fake, spec, "relu") == "igemm"  # explicit algos win
        assert dispatch.choose("auto", x, spec, "relu") == "ecr"  # the CPU interpreter ignores plans
    assert zplan.active() is None
    zplan.set_active(plan)
    try:
        assert zplan.lookup("conv2d", spec, fake, "relu") == "ecr_tc"
    finally:
        zplan.set_active(None)
    with pytest.raises(TypeError, match="plan"):
        zplan.set_active("plan.json")


def test_pick_margin():
    assert zplan.pick({"torch": 100.0, "ecr": 98.0}) == "torch"  # 2% faster: within noise
    assert zplan.pick({"torch": 100.0, "ecr": 96.0, "igemm": 99.0}) == "ecr"
    assert zplan.pick({"torch": 100.0, "ecr": 96.0}, margin=0.05) == "torch"
    assert zplan.pick({"torch": 100.0, "ecr": 50.0, "igemm": "TypeError: x"}) == "ecr"
    assert zplan.pick({"ecr": 5.0, "igemm": 4.0}) == "igemm"  # no torch time: the fastest
    assert zplan.pick({"ecr": "failed"}) == "torch"


def test_measure_needs_cuda():
    x, w = torch.rand(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(RuntimeError, match="CUDA GPU.*cpu"):
        zplan.measure("conv2d", x, w)
    with pytest.raises(ValueError, match="candidates"):
        zplan.measure("conv2d", x, w, candidates=("torch", "fast"))
    with pytest.raises(ValueError, match="margin"):
        zplan.measure("conv2d", x, w, margin=1.5)


@pytest.mark.parametrize("ecr_us, winner", [(98.0, "torch"), (90.0, "ecr")])
@cpu_fakes
def test_measure_checks_then_times(monkeypatch, ecr_us, winner):
    """The flow on the CPU interpreter: accuracy check, drops recorded, fake times, margin."""
    from zeroskip.kernels import launch
    real = launch.conv

    def igemm_is_wrong(x, w, b, spec, activation, algo, *args, **kwargs):
        out = real(x, w, b, spec, activation, algo, *args, **kwargs)
        return out + 1 if algo == "igemm" else out

    timed = []

    def fake_measure_same(*fns):
        timed.append([fn.args[0] for fn in fns])
        return [timing.Timing({"torch": 100.0, "ecr": ecr_us}[fn.args[0]], "cuda_graph") for fn in fns]

    monkeypatch.setattr(zplan, "_require_cuda", lambda input: None)
    monkeypatch.setattr(launch, "conv", igemm_is_wrong)
    monkeypatch.setattr(timing, "measure_same", fake_measure_same)
    x, w = sparse((1, 2, 6, 6), 0.5), torch.randn(3, 2, 3, 3)
    algo, times = zplan.measure("conv2d_pool", x, w, torch.randn(3), padding=1, activation="relu",
                                pool="max", candidates=("torch", "igemm", "ecr"))
    assert algo == winner and timed == [["torch", "ecr"]]
    assert times["torch"] == 100.0 and times["ecr"] == ecr_us and times["igemm"].startswith("rel_err")
    algo, times = zplan.measure("conv2d", x.double(), w.double(), candidates=("torch", "ecr"))
    assert algo == "torch" and times["ecr"].startswith("TypeError")


def test_convert_on_cpu_notes_no_measurement(monkeypatch, tmp_path):
    monkeypatch.setattr(zplan, "measure", lambda *a, **k: pytest.fail("measured on the CPU"))
    model, x = lenet5(), sparse((1, 1, 32, 32), 0.5)
    path = tmp_path / "plan.json"
    zeroskip.convert_(model, x, plan=path)
    report = model.zeroskip_report
    assert "measurement needs a CUDA GPU" in report["note"] and report["layers"] == []
    assert report["converted"] == ["0.0", "0.3"] and type(model[0][0]) is ConvActPool
    assert model[0][0].algo == "auto" and not path.exists()
    zeroskip.convert_(lenet5(), x, measure=False)
    with pytest.raises(TypeError, match="plan"):
        zeroskip.convert_(lenet5(), x, plan=3)
    with pytest.raises(ValueError, match="measure"):
        zeroskip.convert_(lenet5(), x, measure="yes")


@cpu_fakes
def test_convert_measure_flow_with_fake_timings(monkeypatch, tmp_path):
    """convert_'s CUDA path on the CPU: inputs "on CUDA", measure faked, the real plan file."""
    from zeroskip import convert
    calls = []

    def fake_measure(op, x, *args, activation=None, **pool):
        calls.append((op, tuple(x.shape), activation, pool.get("pool")))
        return "ecr", {"torch": 10.0, "ecr": 5.0}

    monkeypatch.setattr(convert, "_on_cuda", lambda inputs: True)
    monkeypatch.setattr(zplan, "measure", fake_measure)
    path, x = tmp_path / "plan.json", sparse((1, 1, 32, 32), 0.5)
    model = zeroskip.convert_(lenet5(), x, plan=path)
    assert calls == [("conv2d_pool", (1, 1, 32, 32), "relu", "max"),
                     ("conv2d_pool", (1, 6, 14, 14), "relu", "max")]
    rows = model.zeroskip_report["layers"]
    assert [(r["name"], r["algo"], r["reused"]) for r in rows] == [("0.0", "ecr", False),
                                                                   ("0.3", "ecr", False)]
    assert 0.4 < rows[0]["sparsity"] < 0.6 and model[0][0].algo == model[0][3].algo == "ecr"
    assert zplan.Plan.load(path).entries == model.zeroskip_plan.entries
    plan = zplan.Plan.load(path)
    again = zeroskip.convert_(lenet5(), x, plan=plan)
    assert len(calls) == 2 and again.zeroskip_plan is plan and again[0][3].algo == "ecr"
    assert [r["reused"] for r in again.zeroskip_report["layers"]] == [True, True]


@cpu_fakes
def test_convert_prints_nothing_unless_asked_for_progress(monkeypatch, capsys):
    """convert_ writes nothing by default; progress=True draws a bar over the measured layers on
    stderr (and nothing on stdout)."""
    from zeroskip import convert
    monkeypatch.setattr(convert, "_on_cuda", lambda inputs: True)
    monkeypatch.setattr(zplan, "measure", lambda *a, **k: ("torch", {"torch": 10.0}))
    x = sparse((1, 1, 4, 4), 0.5)

    def small():  # 1x1 convs: cheap on the interpreter, which runs them while inputs are captured
        return nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 1)).eval()
    zeroskip.convert_(small(), x)
    assert capsys.readouterr() == ("", "")
    model = zeroskip.convert_(small(), x, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "measuring layers" in err and "0/2" in err
    assert [r["algo"] for r in model.zeroskip_report["layers"]] == ["torch", "torch"]
    with pytest.raises(ValueError, match="progress"):
        zeroskip.convert_(small(), x, progress="yes")


def test_convert_measures_on_cuda(device, tmp_path, monkeypatch):
    if device != "cuda":
        pytest.skip("timing needs --device cuda")
    torch.manual_seed(0)
    path, x = tmp_path / "plan.json", sparse((2, 1, 32, 32), 0.5, device="cuda")
    model = zeroskip.convert_(lenet5().cuda().eval(), x, plan=path)
    report = model.zeroskip_report
    assert report["note"] is None and [r["name"] for r in report["layers"]] == ["0.0", "0.3"]
    for row, module in zip(report["layers"], (model[0][0], model[0][3])):
        assert module.algo == row["algo"] in zplan.CANDIDATES and not row["reused"]
        assert set(row["times_us"]) == set(zplan.CANDIDATES) and 0 <= row["sparsity"] <= 1
        assert isinstance(row["times_us"]["torch"], float)
    loaded = zplan.Plan.load(path)
    assert loaded.entries == model.zeroskip_plan.entries and len(loaded) == 2
    calls = []
    monkeypatch.setattr(zplan, "measure", lambda *a, **k: calls.append(a) or pytest.fail("re-measured"))
    again = zeroskip.convert_(lenet5().cuda().eval(), x, plan=path)
    assert calls == [] and all(r["reused"] for r in again.zeroskip_report["layers"])
    assert [r["algo"] for r in again.zeroskip_report["layers"]] == [r["algo"] for r in report["layers"]]


@pytest.mark.parametrize("dtype, channels_last, tf32, batch, cin, pool, want", [
    (torch.float32, False, False, 1, 64, None, "igemm"),
    (torch.float32, False, False, 1, 512, "max", "winograd"),  # fp32, 512 channels, few tiles: F(2x2)
    (torch.float32, False, False, 32, 256, "max", "winograd"),  # fused from 256 channels
    (torch.float32, False, False, 8, 256, None, "winograd"),    # plain conv from 256 channels
    (torch.float32, False, False, 8, 128, None, "igemm"),       # 128 channels and few tiles: direct
    (torch.float32, True, False, 1, 512, None, "igemm"),        # channels_last: Winograd not measured
    (torch.float32, True, False, 1, 128, None, "igemm"),
    (torch.float32, True, True, 1, 64, None, "torch"),        # plain TF32 convs in channels_last lost
    (torch.float32, False, True, 1, 64, None, "torch"),       # TF32 NCHW on an 8x8 map: not measured
    (torch.float32, True, True, 1, 512, "max", "igemm"),      # TF32 fused, channels_last
    (torch.float32, False, True, 1, 128, "max", "torch"),     # (test_auto_tf32_nchw for measured maps)
    (torch.float32, True, True, 32, 256, "max", "igemm"),     # TF32 fused at batch 32 too
    (torch.float32, False, False, 32, 512, None, "winograd"),
    (torch.float32, False, False, 64, 128, None, "torch"),    # batch 64: not measured
    (torch.float32, False, False, 1, 3, None, "torch"),       # 3-channel conv on an 8x8 map: not measured
    (torch.float16, True, False, 1, 128, None, "torch"),      # plain fp16 conv on an 8x8 map lost
    (torch.float16, True, False, 1, 256, None, "torch"),      # 256-channel plain conv on an 8x8 map
    (torch.float16, True, False, 32, 512, "max", "igemm"),
    (torch.float16, True, False, 1, 512, "max", "igemm"),
    (torch.float16, False, False, 1, 128, "max", "torch"),    # NCHW fp16: not measured
    (torch.bfloat16, True, False, 1, 128, "max", "igemm"),    # bf16 fused as fp16
    (torch.bfloat16, True, False, 1, 128, None, "torch"),      # bf16 plain conv on an 8x8 map
])
@cpu_fakes
def test_auto_takes_a_kernel_only_where_measured_faster(monkeypatch, dtype, channels_last, tf32, batch, cin, pool, want):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    x = torch.zeros(batch, cin, 8, 8, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    spec = zplan.spec_of("conv2d_pool" if pool else "conv2d", x, torch.zeros(8, cin, 3, 3, dtype=dtype), None, 1, 1,
                         **({"pool": pool} if pool else {}))
    assert dispatch.choose("auto", fake_cuda_input(x), spec, "relu") == want


@pytest.mark.parametrize("dtype, batch, hw, cin, want", [
    (torch.float16, 1, 56, 64, "igemm"),
    (torch.float16, 1, 28, 128, "torch"),   # 64..128 channels need a 56x56 map or more
    (torch.float16, 1, 28, 256, "igemm"),   # 256 channels at batch 1
    (torch.float16, 32, 28, 256, "torch"),  # ... not at batch 32
    (torch.float16, 1, 28, 512, "winograd4"),   # 512 channels on 28x28: F(4x4)
    (torch.float16, 32, 28, 512, "winograd4"),
    (torch.float16, 32, 14, 512, "winograd4"),  # 512 channels on 14x14: F(4x4) from batch 16
    (torch.float16, 16, 14, 512, "winograd4"),
    (torch.float16, 8, 14, 512, "winograd"),    # ... F(2x2) below
    (torch.float16, 1, 14, 512, "winograd"),
    (torch.bfloat16, 1, 56, 64, "igemm"),   # bf16 plain convs: 64..128 channels on 56x56 maps or more
    (torch.bfloat16, 32, 112, 128, "igemm"),
    (torch.bfloat16, 1, 28, 128, "torch"),
    (torch.bfloat16, 1, 28, 512, "winograd"),
    (torch.bfloat16, 1, 14, 512, "winograd"),
    (torch.bfloat16, 32, 28, 512, "winograd4"),
    (torch.bfloat16, 32, 14, 512, "torch"),
    (torch.bfloat16, 32, 56, 256, "torch"),
])
@cpu_fakes
def test_auto_fp16_plain_convs(dtype, batch, hw, cin, want):
    x = torch.zeros(batch, cin, hw, hw, dtype=dtype).to(memory_format=torch.channels_last)
    spec = zplan.spec_of("conv2d", x, torch.zeros(8, cin, 3, 3, dtype=dtype), None, 1, 1)
    assert dispatch.choose("auto", fake_cuda_input(x), spec, "relu") == want


@pytest.mark.parametrize("dtype, batch, hw, cin, want", [
    (torch.float16, 1, 28, 512, "winograd4"),
    (torch.float16, 32, 28, 512, "winograd4"),
    (torch.float16, 1, 14, 512, "winograd"),
    (torch.float16, 32, 14, 512, "winograd4"),
    (torch.float16, 1, 56, 256, "winograd4"),  # fused 256 channels on 56x56: F(4x4)
    (torch.float16, 32, 56, 256, "winograd4"),
    (torch.float16, 32, 28, 256, "igemm"),
    (torch.float16, 32, 112, 128, "igemm"),
    (torch.bfloat16, 1, 28, 512, "winograd"),   # bf16: F(2x2) below batch 16
    (torch.bfloat16, 1, 14, 512, "winograd"),
    (torch.bfloat16, 32, 28, 512, "winograd4"),  # F(4x4) on scaled fp16 GEMMs from batch 16
    (torch.bfloat16, 32, 14, 512, "winograd4"),  # ... on 14x14 too since the scale's own pass
    (torch.bfloat16, 1, 56, 256, "igemm"),
])
@cpu_fakes
def test_auto_fp16_fused_winograd(dtype, batch, hw, cin, want):
    x = torch.zeros(batch, cin, hw, hw, dtype=dtype).to(memory_format=torch.channels_last)
    spec = zplan.spec_of("conv2d_pool", x, torch.zeros(8, cin, 3, 3, dtype=dtype), None, 1, 1, pool="max")
    assert dispatch.choose("auto", fake_cuda_input(x), spec, "relu") == want


@pytest.mark.parametrize("batch, bandwidth, pool, want", [
    (32, 4.8e12, "max", "winograd4"),  # bf16 fused 256 channels on 56x56: F(4x4) on an H200 from batch 16
    (16, 4.8e12, "max", "winograd4"),
    (32, 3.35e12, "max", "igemm"),     # direct on an H100
    (1, 4.8e12, "max", "igemm"),       # and at batch 1
    (32, 4.8e12, None, "torch"),       # plain bf16 convs on 256 channels: cuDNN
])
@cpu_fakes
def test_auto_bf16_fused_256_channels_follow_memory_bandwidth(batch, bandwidth, pool, want, monkeypatch):
    from zeroskip.kernels import split_k
    monkeypatch.setattr(split_k, "memory_bandwidth", lambda device: bandwidth)
    x = torch.zeros(batch, 256, 56, 56, dtype=torch.bfloat16).to(memory_format=torch.channels_last)
    spec = zplan.spec_of("conv2d_pool" if pool else "conv2d", x, torch.zeros(8, 256, 3, 3, dtype=torch.bfloat16),
                         None, 1, 1, **({"pool": pool} if pool else {}))
    assert dispatch.choose("auto", fake_cuda_input(x), spec, "relu") == want


@pytest.mark.parametrize("tf32, batch, hw, cin, want", [
    (True, 1, 28, 512, "winograd"),    # TF32 fused 512 channels: F(2x2) below batch 16
    (True, 1, 14, 512, "winograd"),
    (True, 32, 14, 512, "winograd4"),  # F(4x4) from 16
    (True, 32, 28, 512, "winograd4"),
    (True, 16, 28, 512, "winograd4"),
    (True, 1, 56, 256, "winograd4"),   # 256 channels on 56x56: F(4x4) at every batch
    (True, 32, 56, 256, "winograd4"),
    (True, 1, 112, 128, "igemm"),      # 128 channels on 112x112: direct below batch 16,
    (True, 32, 112, 128, "winograd4"),  # F(4x4) on fp16 M from 16
    (True, 16, 112, 128, "winograd4"),
    (True, 32, 224, 64, "igemm"),
    (False, 1, 14, 512, "igemm"),      # fp32-accurate channels_last: direct
])
@cpu_fakes
def test_auto_tf32_fused_winograd(monkeypatch, tf32, batch, hw, cin, want):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    x = torch.zeros(batch, cin, hw, hw).to(memory_format=torch.channels_last)
    spec = zplan.spec_of("conv2d_pool", x, torch.zeros(8, cin, 3, 3), None, 1, 1, pool="max")
    assert dispatch.choose("auto", fake_cuda_input(x), spec, "relu") == want


@pytest.mark.parametrize("batch, hw, cin, pool, want", [
    (32, 224, 64, "max", "igemm"),       # fused under 128 channels: direct
    (1, 112, 128, "max", "igemm"),       # fused 128..255 channels on 56x56 maps and up: direct below batch 16,
    (32, 112, 128, "max", "winograd4"),  # F(4x4) on fp16 M from 16
    (16, 112, 128, "max", "winograd4"),
    (15, 112, 128, "max", "igemm"),
    (32, 56, 256, "max", "winograd4"),   # from 256 channels: F(4x4)
    (1, 56, 256, "max", "winograd4"),
    (1, 28, 512, "max", "winograd"),     # 512 channels below batch 16: F(2x2)
    (16, 14, 512, "max", "winograd4"),
    (32, 224, 64, None, "igemm"),        # convs under 128 channels, or 256 on 56x56 maps and up: direct
    (1, 112, 64, None, "igemm"),
    (32, 112, 128, None, "igemm"),
    (1, 56, 128, None, "igemm"),
    (32, 28, 128, None, "winograd4"),    # 128..255 channels on smaller maps: not measured direct
    (32, 28, 96, None, "igemm"),
    (32, 56, 256, None, "winograd4"),    # from 256 channels: F(4x4)
    (1, 28, 512, None, "winograd4"),
    (32, 14, 512, None, "winograd4"),
    (1, 14, 512, None, "igemm"),         # 14x14 below batch 16: direct
    (1, 14, 32, None, "torch"),          # below 64 channels: not measured
])
@cpu_fakes
def test_auto_tf32_nchw(monkeypatch, batch, hw, cin, pool, want):
    """PyTorch's default for fp32 models: TF32 on, NCHW."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    x = torch.zeros(batch, cin, hw, hw)
    spec = zplan.spec_of("conv2d_pool" if pool else "conv2d", x, torch.zeros(8, cin, 3, 3), None, 1, 1,
                         **({"pool": pool} if pool else {}))
    assert dispatch.choose("auto", fake_cuda_input(x), spec, "relu") == want


@pytest.mark.parametrize("batch, hw, cin, cout, pool, want", [
    (1, 56, 128, 8, None, "winograd4"),    # 196 F(4x4) tiles
    (1, 56, 64, 64, None, "winograd4"),    # 64 to 64 channels: F(4x4) too, on an H200's memory
    (1, 28, 64, 64, None, "igemm"),        # 49 tiles, under 256 channels: direct
    (1, 112, 64, 128, None, "winograd4"),  # 64 to 128: F(4x4)
    (1, 224, 64, 8, "max", "winograd4"),   # fused from 64 channels
    (1, 28, 512, 8, None, "winograd"),     # 49 tiles: F(2x2)
    (1, 28, 128, 8, None, "igemm"),
    (4, 28, 512, 8, "max", "winograd4"),
    (32, 14, 512, 8, None, "winograd4"),
])
@cpu_fakes
def test_auto_fp32_winograd_tiles(batch, hw, cin, cout, pool, want, monkeypatch):
    from zeroskip.kernels import split_k
    monkeypatch.setattr(split_k, "memory_bandwidth", lambda device: 4.8e12)
    x = torch.zeros(batch, cin, hw, hw)
    spec = zplan.spec_of("conv2d_pool" if pool else "conv2d", x, torch.zeros(cout, cin, 3, 3), None, 1, 1,
                         **({"pool": pool} if pool else {}))
    assert dispatch.choose("auto", fake_cuda_input(x), spec, "relu") == want


@pytest.mark.parametrize("cout, pool, bandwidth, want", [
    (64, None, 3.35e12, "igemm"),         # VGG-19 features.2 on an H100: direct
    (64, None, 4.8e12, "winograd4"),      # on an H200: F(4x4)
    (128, None, 3.35e12, "igemm"),        # 64 to 128 channels (features.5): direct on an H100
    (128, None, 4.8e12, "winograd4"),     # F(4x4) on an H200
    (64, "max", 3.35e12, "igemm"),        # fused (features.2 + pool): direct on an H100
    (64, "max", 4.8e12, "winograd4"),     # F(4x4) on an H200
])
@cpu_fakes
def test_auto_fp32_64_channels_follow_memory_bandwidth(cout, pool, bandwidth, want, monkeypatch):
    from zeroskip.kernels import split_k
    monkeypatch.setattr(split_k, "memory_bandwidth", lambda device: bandwidth)
    x = torch.zeros(32, 64, 224, 224)
    spec = zplan.spec_of("conv2d_pool" if pool else "conv2d", x, torch.zeros(cout, 64, 3, 3), None, 1, 1,
                         **({"pool": pool} if pool else {}))
    assert dispatch.choose("auto", fake_cuda_input(x), spec, "relu") == want


def test_memory_bandwidth_off_the_gpu_is_the_h100s():
    from zeroskip.kernels import split_k
    assert split_k.memory_bandwidth("cpu") == split_k.H100_BYTES_PER_S == 3.35e12


@pytest.mark.parametrize("dtype, channels_last, tf32, kernel, stride, pool, hw, want", [
    (torch.float32, False, False, 3, 1, None, 224, "im2col"),     # VGG features.0
    (torch.float32, False, False, 7, 2, None, 224, "im2col"),     # GoogLeNet conv1
    (torch.float32, False, False, 11, 4, "max", 224, "torch"),    # AlexNet conv1 + pool lost
    (torch.float32, False, False, 5, 1, None, 32, "torch"),       # LeNet's small map: not measured
    (torch.float32, False, True, 3, 1, None, 224, "torch"),       # TF32: not measured
    (torch.float16, True, False, 3, 1, None, 224, "im2col"),
    (torch.float16, True, False, 7, 2, None, 224, "torch"),
    (torch.bfloat16, True, False, 3, 1, None, 224, "torch"),
])
@cpu_fakes
def test_auto_im2col_for_first_layers(monkeypatch, dtype, channels_last, tf32, kernel, stride, pool, hw, want):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    x = torch.zeros(1, 3, hw, hw, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    spec = zplan.spec_of("conv2d_pool" if pool else "conv2d", x, torch.zeros(8, 3, kernel, kernel, dtype=dtype), None,
                         stride, kernel // 2, **({"pool": pool, "pool_size": 3, "pool_stride": 2} if pool else {}))
    assert dispatch.choose("auto", fake_cuda_input(x), spec, "relu") == want


@cpu_fakes
def test_auto_fp16_plain_conv_needs_a_large_map():
    for hw, want in ((56, "igemm"), (28, "torch")):
        x = torch.zeros(1, 128, hw, hw, dtype=torch.float16).to(memory_format=torch.channels_last)
        spec = zplan.spec_of("conv2d", x, torch.zeros(8, 128, 3, 3, dtype=torch.float16), None, 1, 1)
        assert dispatch.choose("auto", fake_cuda_input(x), spec, None) == want
