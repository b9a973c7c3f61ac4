"""Selects the device: `--device cpu` (default) runs the Triton kernels on the CPU interpreter,
`--device cuda` on the GPU. TRITON_INTERPRET must be set before any kernel is defined; zeroskip
imports its kernels lazily, and nothing here imports them before pytest_configure.

Shared fixtures: exact_fp32 (every test), poisoned outputs, the Winograd GEMM route, a faked
Hopper GPU for the `auto` rules, and skip_on_cuda for tests that fake the GPU on the CPU."""
import os

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", choices=("cpu", "cuda"),
                     help="where the kernels run: cpu (Triton interpreter) or cuda")
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (long hypothesis runs)")


def pytest_configure(config):
    if config.getoption("--device") == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"
    config.addinivalue_line("markers", "slow: long runs, skipped unless --slow is given")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--slow"):
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(pytest.mark.skip(reason="long run: give --slow"))


@pytest.fixture
def device(request):
    return request.config.getoption("--device")


@pytest.fixture(autouse=True)
def exact_fp32():
    """Tests ask for fp32 accuracy unless they switch TF32 on themselves (PyTorch's default for
    cuDNN convolutions is TF32 on, and the tensor-core algos follow that switch)."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def poisoned(monkeypatch):
    """Kernel outputs (and the Winograd GEMMs' M) start as NaN, so an element left unwritten shows."""
    from zeroskip.kernels import launch
    real = launch._empty
    monkeypatch.setattr(launch, "_empty", lambda *a: real(*a).fill_(float("nan")))


@pytest.fixture(params=["batched", "grouped-conv"])
def gemm_route(request, monkeypatch):
    """Runs a test with the Winograd GEMMs on kernels/winograd_gemm.py, then as the direct kernel's grouped 1x1 conv."""
    from zeroskip.kernels import winograd_gemm
    monkeypatch.setattr(winograd_gemm, "prefer", lambda *args: request.param == "batched")
    return request.param


@pytest.fixture(scope="module")
def data():
    """The paper's feature maps and kernels (skips where they are not installed)."""
    from zeroskip.bench import sparsity
    try:
        return sparsity.paper_data_path()
    except FileNotFoundError as exc:
        pytest.skip(f"paper data not available: {exc}")


@pytest.fixture
def skip_on_cuda(device):
    if device == "cuda":
        pytest.skip("fakes the GPU on the CPU; the --device cuda tests cover the real path")


@pytest.fixture
def hopper(monkeypatch):
    """A faked H200 for dispatch: GPU class "hopper", 4.8 TB/s (set hopper.bandwidth = 3.35e12 for
    an H100). Use with helpers.on_device(x) inputs."""
    from zeroskip import runtime

    class Gpu:
        bandwidth = 4.8e12
    monkeypatch.setattr(runtime, "gpu_class", lambda device: "hopper")
    monkeypatch.setattr(runtime, "memory_bandwidth", lambda device: Gpu.bandwidth)
    return Gpu
