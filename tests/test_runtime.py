"""zeroskip.runtime: device queries off the GPU, the GPU class the rules are keyed by, and the clear
error where TRITON_INTERPRET changed after the kernels were defined."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zeroskip
from zeroskip import runtime


def test_device_queries_off_the_gpu_are_the_h100s():
    assert runtime.sm_count("cpu") == runtime.H100_SMS == 132
    assert runtime.memory_bandwidth("cpu") == runtime.H100_BYTES_PER_S == 3.35e12
    assert runtime.gpu_class("cpu") == "cpu"


@pytest.mark.parametrize("capability, name", [((9, 0), "hopper"), ((8, 0), "sm_80"), ((10, 0), "sm_100"),
                                              ((8, 9), "sm_89")])
def test_gpu_class_from_compute_capability(capability, name, monkeypatch):
    monkeypatch.setattr(runtime, "_capability", lambda index: capability)
    monkeypatch.setattr(runtime, "_index", lambda device: 0)
    assert runtime.gpu_class("cuda:0") == name


def test_changing_triton_interpret_after_the_kernels_were_defined_is_named(monkeypatch):
    from zeroskip.kernels import implicit_gemm  # noqa: F401  (defines kernels, if nothing did yet)
    defined = os.environ.get("TRITON_INTERPRET") == "1"
    assert runtime.interpreting() is defined
    monkeypatch.setenv("TRITON_INTERPRET", "0" if defined else "1")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1 before importing zeroskip.*new process"):
        runtime.interpreting()
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        zeroskip.conv2d(torch.rand(1, 2, 5, 5), torch.rand(3, 2, 3, 3), algo="ecr")


@pytest.mark.parametrize("numpy_version", ["2.3.5", "2.5.2"])
def test_numpy_that_breaks_the_interpreter_is_named(numpy_version, monkeypatch):
    """Triton <= 3.6's interpreter with numpy >= 2.4 failed deep inside Triton on the first kernel."""
    import numpy
    from triton.runtime import interpreter

    monkeypatch.setattr(numpy, "__version__", numpy_version)
    problem = runtime.interpreter_problem.__wrapped__()
    broken = numpy_version >= "2.4" and "int(self.handle.data))" in __import__("inspect").getsource(interpreter)
    assert bool(problem) is broken
    if broken:
        assert "numpy 2.5.2" in problem and "numpy<2.4" in problem
    monkeypatch.setattr(runtime, "interpreter_problem", lambda: "Triton's interpreter fails with numpy 9")
    monkeypatch.setattr(runtime, "_kernels_interpreted", lambda: True)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(RuntimeError, match="fails with numpy 9"):
        runtime.interpreting()


def test_setting_triton_interpret_after_import_fails_clearly():
    """The user's mistake in a fresh process: kernels defined for the GPU, then TRITON_INTERPRET=1 and
    a CPU tensor. Without the check Triton failed deep inside ("0 active drivers")."""
    code = ("import os, torch, zeroskip\n"
            "from zeroskip.kernels import direct\n"
            "os.environ['TRITON_INTERPRET'] = '1'\n"
            "try:\n"
            "    zeroskip.conv2d(torch.rand(1, 2, 5, 5), torch.rand(3, 2, 3, 3))\n"
            "except RuntimeError as exc:\n"
            "    print('RuntimeError:', exc)\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "RuntimeError: TRITON_INTERPRET is '1' now, but zeroskip's kernels were imported without" in run.stdout
    assert "start a new process" in run.stdout


def test_tuner_cache_is_autotune_options():
    import inspect
    import triton
    options = runtime.tuner_cache()
    assert set(options) <= set(inspect.signature(triton.autotune).parameters)


def test_graph_ms_times_slow_calls_with_fewer_calls(device):
    """The tuners' timer captures 10 calls of a fast fn, SLOW_INNER of one slower than SLOW_US (each
    after the 3 warm-up calls), and both times are the GPU's."""
    if device != "cuda":
        pytest.skip("CUDA graphs need a GPU")
    x = torch.ones(1024, device="cuda")
    counts = {"fast": 0, "slow": 0}

    def fast():
        counts["fast"] += 1
        x.add_(1)

    def slow():
        counts["slow"] += 1
        torch.cuda._sleep(2_000_000)  # 2M clock cycles: 1-2 ms at 1-2 GHz

    fast_ms, slow_ms = runtime.graph_ms(fast), runtime.graph_ms(slow)
    assert counts == {"fast": 3 + 10, "slow": 3 + runtime.SLOW_INNER}
    assert fast_ms < runtime.SLOW_US / 1000 < slow_ms
