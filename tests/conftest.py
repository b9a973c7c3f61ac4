"""Selects the device: `--device cpu` (default) runs the Triton kernels on the CPU interpreter,
`--device cuda` on the GPU. TRITON_INTERPRET must be set before any kernel is defined; zeroskip
imports its kernels lazily, and nothing here imports them before pytest_configure."""
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


@pytest.fixture(params=["batched", "grouped-conv"])
def gemm_route(request, monkeypatch):
    """Runs a test with the Winograd GEMMs on kernels/winograd_gemm.py, then as the conv kernel's grouped 1x1 conv."""
    from zeroskip.kernels import winograd_gemm
    monkeypatch.setattr(winograd_gemm, "use_for", lambda *args: request.param == "batched")
    return request.param
