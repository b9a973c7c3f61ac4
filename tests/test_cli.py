"""The main job: `python -m zeroskip` on a CPU-only machine runs LeNet-5 through the kernels."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_cpu_demo_runs_the_kernels_and_passes(device):
    if device == "cuda":
        pytest.skip("on a GPU the main job is the benchmark")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}   # the command sets it itself
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["CUDA_VISIBLE_DEVICES"] = ""
    run = subprocess.run([sys.executable, "-m", "zeroskip"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "PASS" in lines
    assert sum("relative error vs float64" in line for line in lines) == 2
    assert "Timings need a CUDA GPU" in run.stdout


def error_of(argv, capsys):
    """stderr of a command that must stop with an argparse error (exit 2)."""
    from zeroskip import cli
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_version(capsys):
    import zeroskip
    from zeroskip import cli
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"zeroskip {zeroskip.__version__}"


def test_help_texts(capsys):
    from zeroskip import cli
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--sparsities SPARSITIES input zero fractions in [0, 1]" in out and "--input {real,paper,random}" in out


def test_errors_after_parsing_show_the_subcommands_usage(capsys):
    err = error_of(["bench", "--model", "lenet5", "--layout", "both"], capsys)
    assert err.startswith("usage: zeroskip bench") and "zeroskip bench: error: argument --layout" in err
    err = error_of(["bench", "--model", "lenet5", "--input", "paper"], capsys)
    assert "zeroskip bench: error: argument --input: not allowed with --model" in err
    err = error_of(["sweep", "--layers", "conv9_9"], capsys)
    assert err.startswith("usage: zeroskip sweep") and "vgg16 has no layer conv9_9" in err


def test_number_errors_name_the_argument_once(capsys):
    err = error_of(["bench", "--batch", "abc"], capsys)
    assert "argument --batch: must be a comma list of integers, got 'abc'" in err and err.count("--batch") <= 2
    assert "--batch must" not in err
    assert "argument --limit: must be in [1, " in error_of(["profile", "lenet5", "--limit", "0"], capsys)
    assert "argument --image-size: takes one integer" in error_of(["profile", "lenet5", "--image-size", "32,64"], capsys)


def test_out_folder_is_checked_before_any_work(tmp_path, monkeypatch, capsys):
    from zeroskip import cli
    from zeroskip.bench import profile
    monkeypatch.setattr(profile, "profile_model", lambda *a, **k: pytest.fail("profile ran"))
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        err = error_of(["profile", "lenet5", "--out", str(out)], capsys)
        last = err.splitlines()[-1]
        assert last.startswith("zeroskip profile: error: argument --out:") and "folder" in last
        assert err.startswith("usage: zeroskip profile") and "Traceback" not in err
    err = error_of(["--out", str(tmp_path / "file")], capsys)  # the default command takes its options
    assert err.startswith("usage: zeroskip demo") and "zeroskip demo: error: argument --out:" in err
    for command in ("bench", "sweep", "replicate", "profile lenet5", "demo"):
        args = cli.build_parser().parse_args(command.split())
        assert args.out == Path("zeroskip-results")
    assert cli.build_parser().parse_args(["bench", "--out", str(tmp_path / "new" / "dir")]).out == tmp_path / "new" / "dir"


def test_data_needs_paper_input(monkeypatch, capsys):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    err = error_of(["bench", "--input", "real", "--data", "/x"], capsys)
    assert "argument --data: only with --input paper (got --input real)" in err
