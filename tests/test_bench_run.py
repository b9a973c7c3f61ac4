"""The benchmark harness's runs on the CPU: layouts, the printed table, progress bars, stopped runs, the
compiled baseline and the notes on which kernel ran. No GPU is needed."""
import json
import math
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import torch

from helpers import fake_row
from zeroskip import cli
from zeroskip.bench import run, sparsity
from zeroskip.bench.suites import load_suite
from zeroskip.bench.timing import Timing

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize("dtype, layout, want", [
    ("fp16", "auto", "channels_last"), ("fp32", "auto", "nchw"),
    ("fp32", "channels_last", "channels_last"), ("bf16", "nchw", "nchw"),
])
def test_operands_layout(dtype, layout, want):
    layer = load_suite("vgg19")[1]
    x = torch.rand(1, layer.in_channels, 6, 6)
    x, w, b = run.operands(layer, x, dtype, layout)
    assert run.layout_of(x) == want and run.layout_of(w) == want and x.dtype == w.dtype == b.dtype
    with pytest.raises(ValueError, match="layout must be one of"):
        run.operands(layer, x, dtype, "nhwc")


def test_layout_separates_tables(capsys):
    from zeroskip.bench import report
    rows = [dict(fake_row(), layout="nchw"), dict(fake_row(ours=25.0), layout="channels_last")]
    md = report.markdown(rows)
    assert "fp32, nchw, batch 4" in md and "fp32, channels_last, batch 4" in md
    run.print_table(rows)
    out = capsys.readouterr().out
    assert "fp32 nchw batch 4 algo auto: 2.00x" in out and "fp32 channels_last batch 4 algo auto: 4.00x" in out


def test_best_layout_summary(capsys):
    """Rows timed in both layouts: per layer cuDNN's faster time against ours in its faster layout
    and in each; a layer timed in one layout only is left out of that line."""
    a, b, c = load_suite("vgg19")[1:4]
    rows = [dict(fake_row(ours=50.0, base=100.0, layer=a), layout="nchw"),
            dict(fake_row(ours=40.0, base=60.0, layer=a), layout="channels_last"),
            dict(fake_row(ours=10.0, base=30.0, layer=b), layout="nchw"),
            dict(fake_row(ours=20.0, base=50.0, layer=b), layout="channels_last"),
            dict(fake_row(ours=1.0, base=99.0, layer=c), layout="nchw")]
    (n, either, nchw, cl), = run.best_layout(rows).values()
    # cuDNN's best: 60 and 30 us; ours' best: 40 and 10 us
    assert n == 2 and math.isclose(either, (1.5 * 3.0) ** 0.5) and math.isclose(nchw, (1.2 * 3.0) ** 0.5)
    assert math.isclose(cl, 1.5)
    run.print_table(rows)
    assert "ours in its faster layout 2.12x, in nchw 1.90x, in channels_last 1.50x over 2 layers" in capsys.readouterr().out
    assert run.best_layout(rows[:1] + rows[4:]) == {}


def test_cli_layout_option():
    parser = cli.build_parser()
    assert parser.parse_args(["bench", "--layout", "both"]).layout == "both"
    assert parser.parse_args(["bench"]).layout == "auto"
    assert parser.parse_args(["sweep", "--layout", "channels_last"]).layout == "channels_last"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--layout", "nhwc"])


def test_auto_rows_say_what_auto_ran(capsys):
    """bench's table names the kernel algo="auto" ran (dispatch.choose), e.g. auto:winograd."""
    layer = load_suite("vgg19")[1]  # features.2, pooled after
    x = torch.zeros(1, layer.in_channels, layer.height, layer.width)
    w = torch.zeros(layer.out_channels, layer.in_channels, 3, 3)
    from zeroskip import runtime
    on_cpu = "ecr" if runtime.interpreting() else "torch"  # auto's pick for CPU tensors
    assert run.ran_by_auto("conv2d", layer, "relu", x, w, None) == on_cpu
    assert run.ran_by_auto("conv2d_pool", layer, "relu", x, w, None) == on_cpu
    row = fake_row()
    row.update(algo="auto", notes=["auto ran winograd"])
    run.print_table([row])
    assert "auto:winograd" in capsys.readouterr().out


def test_progress_bars_change_only_stderr(tmp_path, monkeypatch, capsys):
    """`zeroskip sweep` with its GPU parts faked: a bar on stderr when stderr is a terminal, none with
    --no-progress or off a terminal, and stdout and the result files the same in all three runs."""
    env = {"gpu": "fake", "torch": "x", "triton": "y", "cudnn": 1, "date": "2025-01-01T00:00:00"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(run, "env_info", lambda: env)
    monkeypatch.setattr(sparsity, "sweep_input", lambda shape, s, structure, data=None, device=None:
                        (torch.rand(shape) >= s).float())

    def fake_compare(op, layer, algo, activation, x, w, b, dtype, torch_compile, env, suite=None):
        s = float((x == 0).float().mean())
        return run.make_row(layer, op, dtype, x.shape[0], s, algo, 100 - 50 * s, 60.0, None, 1e-7, env, [], suite)
    monkeypatch.setattr(run, "compare", fake_compare)
    outputs = []
    for name, tty, flags in (("bars", True, []), ("flag", True, ["--no-progress"]), ("pipe", False, [])):
        monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty)
        torch.manual_seed(0)
        out_dir = tmp_path / name
        assert cli.main(["sweep", "--suite", "lenet5", "--input", "random", "--sparsities", "0,0.5,0.9",
                         "--out", str(out_dir), *flags]) == 0
        out, err = capsys.readouterr()
        files = {p.suffix: p.read_text() for p in out_dir.iterdir()}
        outputs.append((out.replace(str(out_dir), "OUT"), files, err))
    (out, files, err), *others = outputs
    assert "sweep batch 1 fp32" in err and "0/6" in err and "break-even" in out and set(files) == {".json", ".csv"}
    for other_out, other_files, other_err in others:
        assert other_err == "" and re.sub(r"\d{8}-\d{6}", "T", other_out) == re.sub(r"\d{8}-\d{6}", "T", out)
        assert other_files == files


def test_a_stopped_run_keeps_its_rows(tmp_path, monkeypatch, capsys):
    """SIGTERM (what `timeout` sends) in the middle of `zeroskip sweep`: the rows measured before it
    are written and shown, the exit status is 130, and the previous SIGTERM handler is back."""
    env = {"gpu": "fake", "torch": "x", "triton": "y", "cudnn": 1, "date": "2025-01-01T00:00:00"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(run, "env_info", lambda: env)
    monkeypatch.setattr(sparsity, "sweep_input", lambda shape, s, structure, data=None, device=None:
                        (torch.rand(shape) >= s).float())
    calls = []

    def fake_compare(op, layer, algo, activation, x, w, b, dtype, torch_compile, env, suite=None):
        calls.append(layer.name)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return run.make_row(layer, op, dtype, x.shape[0], 0.5, algo, 40.0, 60.0, None, 1e-7, env, [], suite)
    monkeypatch.setattr(run, "compare", fake_compare)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        cli.main(["sweep", "--suite", "lenet5", "--input", "random", "--sparsities", "0,0.5,0.9",
                  "--out", str(tmp_path), "--no-progress"])
    assert stop.value.code == 130 and len(calls) == 3
    assert signal.getsignal(signal.SIGTERM) is before
    (path,) = tmp_path.glob("sweep-*.json")
    rows = json.loads(path.read_text())
    assert len(rows) == 2 and path.with_suffix(".csv").read_text().count("\n") == 3
    out = capsys.readouterr().out
    assert f"stopped: what was measured so far (2) is in {path}" in out and "1.50x" in out


def test_bench_layout_both_times_each_layer_in_both(tmp_path, monkeypatch, capsys, data):
    """`bench --layout both`: every suite, batch and dtype once in NCHW and once in channels_last, and
    the summary's line against cuDNN's faster layout (GPU parts faked)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    layouts = []

    def fake_suite(suite, batch, dtype, ops, algos, inputs, torch_compile, layout, progress, rows, compile_mode):
        assert inputs.label == "paper"
        layouts.append(layout)
        ours = 40.0 if layout == "channels_last" else 50.0
        rows.append(dict(fake_row(ours=ours, base=100.0), layout=layout))
    monkeypatch.setattr(run, "run_suite", fake_suite)
    assert cli.main(["bench", "--suite", "vgg19", "--batch", "1,32", "--layout", "both", "--data", str(data),
                     "--out", str(tmp_path), "--no-progress"]) == 0
    assert layouts == ["nchw", "channels_last"] * 2
    assert "ours in its faster layout 2.50x, in nchw 2.00x, in channels_last 2.50x over 1 layers" in capsys.readouterr().out


def test_cli_compile_option(capsys):
    """--compile alone is one torch.compile build; --compile N is N; N is for suites only."""
    parser = cli.build_parser()
    assert parser.parse_args(["bench"]).compile == 0
    assert parser.parse_args(["bench", "--compile"]).compile == 1
    assert parser.parse_args(["bench", "--compile", "3", "--batch", "32"]).compile == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--compile", "0"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--model", "vgg19", "--compile", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --compile" in err and "got 2" in err


@pytest.mark.parametrize("builds, mode", [(1, "max-autotune-no-cudagraphs"), (3, "max-autotune-no-cudagraphs"),
                                         (1, "both"), (2, "both")])
def test_compare_keeps_the_fastest_compile_build(monkeypatch, builds, mode):
    """compare with torch_compile=N times N torch.compile builds per mode ("both": default, then
    max-autotune-no-cudagraphs) in the same measurement as the other sides and reports the fastest,
    with the spread and its mode in the notes; N > 1 builds with caches off."""
    layer = load_suite("lenet5")[0]
    x = torch.rand(1, layer.in_channels, layer.height, layer.width)
    w = torch.randn(layer.out_channels, layer.in_channels, *layer.kernel)
    b = torch.randn(layer.out_channels)
    env = {"gpu": "fake", "torch": "x", "triton": "y", "cudnn": 1, "date": "2025-01-01T00:00:00"}
    built = []
    monkeypatch.setattr(run, "ours", lambda op, layer, act, algo: run.baseline(op, layer, act))
    monkeypatch.setattr(run, "_compiled", lambda base, x, w, b, fresh, mode: built.append((fresh, mode)) or base)
    fake_us = [10.0, 20.0, 31.0, 24.5, 40.0, 28.0]  # ours, cuDNN, then one per build
    monkeypatch.setattr(run, "measure_same", lambda *fns: [Timing(us, "cuda_graph") for us in fake_us[:len(fns)]])
    row = run.compare("conv2d", layer, "igemm", None, x, w, b, "fp32", builds, env, compile_mode=mode)
    modes = run.compile_modes(mode)
    assert built == [(builds > 1, m) for m in modes for _ in range(builds)]
    n = builds * len(modes)
    assert row["compiled_us"] == (31.0 if n == 1 else 24.5)
    assert row["ours_us"] == 10.0 and row["baseline_us"] == 20.0
    noted = [note for note in row["notes"] if note.startswith("torch.compile")]
    fastest = modes[min(1 // builds, len(modes) - 1)]  # 24.5 us is the second build
    spread = f"24.5 to {max(fake_us[2:2 + n]):.1f} us"
    assert noted == ([] if n == 1 else [f"torch.compile: fastest of {n} builds ({spread}), mode {fastest}"])
    with pytest.raises(ValueError, match="compile_mode must be one of"):
        run.compile_modes("reduce-overhead")


@pytest.mark.parametrize("kernel", [None, "rows", "direct, split-K 4"])
def test_compare_notes_which_kernel_igemm_ran(monkeypatch, kernel):
    """Under igemm (or auto running it) the row says which kernel the first-call measurement kept."""
    layer = load_suite("lenet5")[1]
    x = torch.rand(1, layer.in_channels, layer.height, layer.width)
    w = torch.randn(layer.out_channels, layer.in_channels, *layer.kernel)
    b = torch.randn(layer.out_channels)
    env = {"gpu": "fake", "torch": "x", "triton": "y", "cudnn": 1, "date": "2025-01-01T00:00:00"}
    monkeypatch.setattr(run, "ours", lambda op, layer, act, algo: run.baseline(op, layer, act))
    monkeypatch.setattr(run, "measure_same", lambda *fns: [Timing(10.0, "cuda_graph") for _ in fns])
    monkeypatch.setattr(run, "ran_by_auto", lambda *a: "igemm")
    from zeroskip.kernels import direct
    spec = run._spec("conv2d", layer, x, w, b)
    monkeypatch.setattr(direct, "dense_kernel", lambda s, dtype: kernel if (s, dtype) == (spec, x.dtype) else None)
    for algo in ("igemm", "auto"):
        row = run.compare("conv2d", layer, algo, None, x, w, b, "fp32", 0, env)
        assert [n for n in row["notes"] if n.startswith("igemm ran")] == ([] if kernel is None else [f"igemm ran {kernel}"])
