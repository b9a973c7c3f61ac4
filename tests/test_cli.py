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
