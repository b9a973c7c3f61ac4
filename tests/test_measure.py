"""zeroskip.measure (accuracy check, then timing, then the pick) and convert_'s measurement of each
converted layer into a plan. On the CPU the GPU-only parts are faked: timings (with the CUDA check
switched off) and convert_'s "inputs on CUDA"; with --device cuda the real test at the end runs."""
import pytest
import torch
from torch import nn

import zeroskip
from helpers import sparse
from zeroskip import measure as zmeasure, plan as zplan
from zeroskip.bench import timing
from zeroskip.nn import Conv2d, ConvActPool, _planned

cpu_fakes = pytest.mark.usefixtures("skip_on_cuda")


def lenet5():
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                      nn.MaxPool2d(2)),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def test_pick_margin():
    assert zmeasure.pick({"torch": 100.0, "ecr": 98.0}) == "torch"  # 2% faster: within noise
    assert zmeasure.pick({"torch": 100.0, "ecr": 96.0, "igemm": 99.0}) == "ecr"
    assert zmeasure.pick({"torch": 100.0, "ecr": 96.0}, margin=0.05) == "torch"
    assert zmeasure.pick({"torch": 100.0, "ecr": 50.0, "igemm": "TypeError: x"}) == "ecr"
    assert zmeasure.pick({"ecr": 5.0, "igemm": 4.0}) == "igemm"  # no torch time: the fastest
    assert zmeasure.pick({"ecr": "failed"}) == "torch"


def test_measure_needs_cuda():
    x, w = torch.rand(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(RuntimeError, match="CUDA GPU.*cpu"):
        zmeasure.measure("conv2d", x, w)
    with pytest.raises(ValueError, match="candidates"):
        zmeasure.measure("conv2d", x, w, candidates=("torch", "fast"))
    with pytest.raises(ValueError, match="margin"):
        zmeasure.measure("conv2d", x, w, margin=1.5)


@pytest.mark.parametrize("ecr_us, winner", [(98.0, "torch"), (90.0, "ecr")])
@cpu_fakes
def test_measure_checks_then_times(monkeypatch, ecr_us, winner):
    """The flow on the CPU interpreter: accuracy check, drops recorded, fake times, margin."""
    from zeroskip.kernels import direct
    real = direct.conv

    def igemm_is_wrong(x, w, b, spec, activation, algo, *args, **kwargs):
        out = real(x, w, b, spec, activation, algo, *args, **kwargs)
        return out + 1 if algo == "igemm" else out

    timed = []

    def fake_measure_same(*fns, inner):
        timed.append([fn.algo for fn in fns])
        return [timing.Timing({"torch": 100.0, "ecr": ecr_us}[fn.algo], "cuda_graph") for fn in fns]

    monkeypatch.setattr(zmeasure, "_require_cuda", lambda input: None)
    monkeypatch.setattr(zmeasure, "_l2_bytes", lambda device: 100)  # two copies of w
    monkeypatch.setattr(direct, "conv", igemm_is_wrong)
    monkeypatch.setattr(timing, "measure_same", fake_measure_same)
    x, w = sparse((1, 2, 6, 6), 0.5), torch.randn(3, 2, 3, 3)
    algo, times = zmeasure.measure("conv2d_pool", x, w, torch.randn(3), padding=1, activation="relu",
                                   pool="max", candidates=("torch", "igemm", "ecr"))
    assert algo == winner and timed == [["torch", "ecr"]]
    assert times["torch"] == 100.0 and times["ecr"] == ecr_us and times["igemm"].startswith("rel_err")
    algo, times = zmeasure.measure("conv2d", x.double(), w.double(), candidates=("torch", "ecr"))
    assert algo == "torch" and times["ecr"].startswith("TypeError")


def test_timing_cycles_through_weight_copies():
    """Copies of the weight until they hold twice the L2 (at most COPIES), each call the next."""
    w = torch.randn(4, 2, 3, 3)  # 288 bytes
    ws = zmeasure.weight_copies(w, l2_bytes=300)
    assert len(ws) == 3 and ws[0] is w
    assert all(torch.equal(c, w) and c.data_ptr() != w.data_ptr() for c in ws[1:])
    assert len(zmeasure.weight_copies(w, l2_bytes=1 << 30)) == zmeasure.COPIES
    assert zmeasure.weight_copies(w, l2_bytes=0) == [w]
    seen = []
    timed = zmeasure.Rotating(lambda algo, weight: seen.append((algo, weight)), "igemm", ws)
    for _ in range(4):
        timed()
    assert [a for a, _ in seen] == ["igemm"] * 4 and [c is e for (_, c), e in zip(seen, ws + ws[:1])] == [True] * 4


def test_convert_on_cpu_notes_no_measurement(monkeypatch, tmp_path):
    monkeypatch.setattr(zmeasure, "measure", lambda *a, **k: pytest.fail("measured on the CPU"))
    model, x = lenet5(), sparse((1, 1, 32, 32), 0.5)
    path = tmp_path / "plan.json"
    zeroskip.convert_(model, x, plan=path)
    report = model.zeroskip_report
    assert "measurement needs a CUDA GPU" in report["note"] and report["layers"] == []
    assert report["converted"] == ["0.0", "0.3"] and type(model[0][0]) is ConvActPool
    assert model[0][0].algo == "auto" and model[0][0].plan is None and not path.exists()
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
    monkeypatch.setattr(zmeasure, "measure", fake_measure)
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
    assert all(r["seconds"] > 0 for r in rows) and [r["seconds"] for r in again.zeroskip_report["layers"]] == [0, 0]
    phases = model.zeroskip_report["seconds"]
    assert set(phases) == {"compile", "measure", "check"} and phases["measure"] >= sum(r["seconds"] for r in rows)


@cpu_fakes
def test_convert_without_measuring_compiles_each_layers_algo_in_workers(monkeypatch):
    """measure=False on CUDA: the workers compile what each layer's next call runs (its algo), once
    per distinct call, before the check run; workers=0 starts none."""
    from zeroskip import convert, warm
    jobs = []
    monkeypatch.setattr(convert, "_on_cuda", lambda inputs: True)
    monkeypatch.setattr(zmeasure, "measure", lambda *a, **k: pytest.fail("measured with measure=False"))
    monkeypatch.setattr(warm, "warm", lambda specs, workers, progress: jobs.append((list(specs), workers)))
    x = sparse((1, 1, 32, 32), 0.5)
    model = zeroskip.convert_(lenet5(), x, measure=False, workers=3)
    (specs, workers), = jobs
    assert workers == 3 and [(s[0], s[1][0][1], s[-1]) for s in specs] == [
        ("conv2d_pool", (1, 1, 32, 32), ("auto",)), ("conv2d_pool", (1, 6, 14, 14), ("auto",))]
    assert set(model.zeroskip_report["seconds"]) == {"compile", "check"} and model.zeroskip_report["layers"] == []
    zeroskip.convert_(lenet5(), x, measure=False, algo="ecr")
    assert [s[-1] for s in jobs[1][0]] == [("ecr",), ("ecr",)]
    model = zeroskip.convert_(lenet5(), x, measure=False, workers=0)
    assert len(jobs) == 2 and "seconds" not in model.zeroskip_report


class Twice(nn.Module):
    """One conv called on two map sizes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x), self.conv(x[..., :4, :4])


@cpu_fakes
def test_a_module_whose_calls_differ_holds_the_plan(monkeypatch):
    """convert_'s plan reaches the module (no process-wide state): each call takes its own winner."""
    from zeroskip import convert
    monkeypatch.setattr(convert, "_on_cuda", lambda inputs: True)
    monkeypatch.setattr(zmeasure, "measure", lambda op, x, *a, **k: ("ecr" if x.shape[-1] == 6 else "torch", {}))
    x = sparse((1, 2, 6, 6), 0.5)
    model = zeroskip.convert_(Twice().eval(), x)
    conv = model.conv
    assert type(conv) is Conv2d and conv.algo == "auto" and conv.plan is model.zeroskip_plan
    w, b = conv.weight, conv.bias
    assert _planned(conv, "conv2d", x, w, b) == "ecr" and _planned(conv, "conv2d", x[..., :4, :4], w, b) == "torch"
    assert _planned(conv, "conv2d", sparse((1, 2, 5, 5), 0.5), w, b) == "auto"  # not measured: the rules decide
    assert zplan.current() is None


@cpu_fakes
def test_convert_prints_nothing_unless_asked_for_progress(monkeypatch, capsys):
    """convert_ writes nothing by default; progress=True draws a bar over the measured layers on
    stderr (and nothing on stdout)."""
    from zeroskip import convert
    monkeypatch.setattr(convert, "_on_cuda", lambda inputs: True)
    monkeypatch.setattr(zmeasure, "measure", lambda *a, **k: ("torch", {"torch": 10.0}))
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
    # depthwise is timed where a group has one input channel: the first layer (1 -> 6), not 6 -> 16
    timed = (set(zmeasure.CANDIDATES), set(zmeasure.CANDIDATES) - {"depthwise"})
    for row, module, want in zip(report["layers"], (model[0][0], model[0][3]), timed):
        assert module.algo == row["algo"] in zmeasure.CANDIDATES and not row["reused"]
        assert set(row["times_us"]) == want and 0 <= row["sparsity"] <= 1
        assert isinstance(row["times_us"]["torch"], float)
    loaded = zplan.Plan.load(path)
    assert loaded.entries == model.zeroskip_plan.entries and len(loaded) == 2
    calls = []
    monkeypatch.setattr(zmeasure, "measure", lambda *a, **k: calls.append(a) or pytest.fail("re-measured"))
    again = zeroskip.convert_(lenet5().cuda().eval(), x, plan=path)
    assert calls == [] and all(r["reused"] for r in again.zeroskip_report["layers"])
    assert [r["algo"] for r in again.zeroskip_report["layers"]] == [r["algo"] for r in report["layers"]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_convert_times_only_candidates_that_can_win(dtype, monkeypatch):
    """convert_ hands measure and the compile workers candidates_for(input, weight, activation): every
    algo but depthwise in fp32 with a ReLU; no cudnn without one; in fp16/bf16 no ecr or ecr_tc, no
    im2col beyond 16 input channels per group and no winograd from batch 32 (measured slower there); a
    depthwise conv times torch,
    cudnn and depthwise alone. Measuring is faked (it needs a GPU)."""
    from zeroskip import convert, warm
    half = dtype != torch.float32
    want = tuple(c for c in zmeasure.CANDIDATES if c != "depthwise" and not (half and c in ("ecr", "ecr_tc")))
    x = torch.empty(1, 16, 4, 4, dtype=dtype)
    assert zmeasure.candidates_for(x, torch.empty(16, 1, 3, 3), "relu") == ("torch", "cudnn", "depthwise")
    assert zmeasure.candidates_for(x, torch.empty(32, 1, 3, 3), None) == ("torch", "depthwise")
    one = zmeasure.candidates_for(x[:, :1], torch.empty(8, 1, 5, 5), "relu")  # one input channel: any kernel
    assert "depthwise" in one and "igemm" in one
    assert zmeasure.candidates_for(x, torch.empty(4, 16, 3, 3), "relu") == want
    assert zmeasure.candidates_for(x, torch.empty(4, 16, 3, 3), None) == tuple(c for c in want if c != "cudnn")
    wide = zmeasure.candidates_for(x, torch.empty(4, 17, 1, 1), "relu")
    assert wide == (tuple(c for c in want if c != "im2col") if half else want)
    big = zmeasure.candidates_for(x.expand(32, -1, -1, -1), torch.empty(4, 16, 3, 3), "relu")
    assert big == (tuple(c for c in want if c != "winograd") if half else want)
    assert zmeasure.candidates_for(x.expand(31, -1, -1, -1), torch.empty(4, 16, 3, 3), "relu") == want
    asked, jobs = [], []
    monkeypatch.setattr(convert, "_on_cuda", lambda inputs: True)
    monkeypatch.setattr(zmeasure, "measure", lambda op, *a, candidates, **k: asked.append(candidates) or (
        "torch", {c: 1.0 for c in candidates}))
    monkeypatch.setattr(warm, "warm", lambda specs, workers, progress: jobs.extend(specs))
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()
    if dtype != torch.float16:  # the CPU reference run has no fp16 conv everywhere
        zeroskip.convert_(model.to(dtype), sparse((1, 2, 6, 6), 0.5).to(dtype), algo="auto")
        plain = tuple(c for c in want if c != "cudnn")
        assert asked == [want, plain] and [j[-1] for j in jobs] == [want[2:], plain[1:]]  # torch, cudnn compile nothing


def test_capture_run_compiles_nothing(device, monkeypatch):
    """The run that captures each layer's input goes through torch's path (an "auto" pick would
    compile kernels the workers compile again); the layers get their measured algo after it, and
    the output check runs those. Measuring is faked (it needs a GPU)."""
    from zeroskip import convert, library, warm
    seen = []
    for name in ("conv2d", "conv2d_pool"):
        real = getattr(library, name)
        monkeypatch.setattr(library, name, lambda *a, _real=real, **k: seen.append(k["algo"]) or _real(*a, **k))
    monkeypatch.setattr(convert, "_on_cuda", lambda inputs: True)
    monkeypatch.setattr(zmeasure, "measure", lambda op, *a, candidates, **k: ("igemm", {c: 1.0 for c in candidates}))
    monkeypatch.setattr(warm, "warm", lambda specs, workers, progress: seen.append("warm"))
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 4, 3, padding=1)).eval().to(device)
    zeroskip.convert_(model, sparse((1, 2, 6, 6), 0.5, device=device))
    assert seen == ["torch", "torch", "warm", "igemm", "igemm"]
    assert [m.algo for m in model if isinstance(m, (Conv2d, ConvActPool))] == ["igemm", "igemm"]
    assert model.zeroskip_report["max_rel_err"] < 1e-5
