"""Selects the device: `--device cpu` (default) runs the Triton kernels on the CPU interpreter,
`--device cuda` on the GPU. TRITON_INTERPRET must be set before any kernel is defined; zeroskip
imports its kernels lazily, and nothing here imports them before pytest_configure."""
import os

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", choices=("cpu", "cuda"),
                     help="where the kernels run: cpu (Triton interpreter) or cuda")


def pytest_configure(config):
    if config.getoption("--device") == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"


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
