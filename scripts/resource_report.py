"""Registers, stack (spills) and shared memory of the conv kernel per tile config, compiled for
sm_90 on any machine (Triton's bundled ptxas and cuobjdump; no GPU needed), with the argument
specialisation a channels_last call gets from the JIT.

TRITON_INTERPRET= python scripts/resource_report.py
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

root = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(root / "tests"), str(root / "src")]
import sm90_compile as c  # noqa: E402
from zeroskip.kernels import implicit_gemm as ig  # noqa: E402

CUOBJDUMP = os.path.join(os.path.dirname(c.triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
CONFIGS = [("fp16", 128, 128, 64, 8, 3), ("fp16", 64, 64, 64, 4, 4), ("fp16", 128, 64, 32, 4, 4),
           ("fp32", 128, 64, 32, 4, 3), ("fp32", 128, 128, 32, 8, 3), ("fp32", 64, 64, 32, 4, 3)]

for dtype, bm, bn, bk, warps, stages in CONFIGS:
    consts = dict(c.BASE, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, PRECISION="3xtf32" if dtype == "fp32" else "ieee")
    kernel = c.compile_variant(ig._conv_kernel, dtype, consts, warps, stages, **c.CHANNELS_LAST)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        usage = subprocess.run([CUOBJDUMP, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    line = next(l for l in usage.splitlines() if "REG:" in l).split()
    print(f"{dtype} BM={bm} BN={bn} BK={bk} warps={warps} stages={stages}: {line[0]} {line[1]} "
          f"shared={kernel.metadata.shared} B")
