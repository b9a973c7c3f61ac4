"""The kernels lower to sm_90 machine code (see tests/sm90_compile.py); CPU tests alone cannot tell."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import triton


def _version(text):
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


# The ahead-of-time API it uses (ASTSource, GPUTarget, triton.compile) is the same in 3.6 and 3.8.
@pytest.mark.skipif(_version(triton.__version__) < (3, 6), reason="uses triton 3.6+'s ahead-of-time compile API")
def test_kernels_compile_for_h100():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("sm90_compile.py")
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all compiled for sm_90" in run.stdout
