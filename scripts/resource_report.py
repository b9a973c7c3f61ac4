"""Registers, stack (spills) and shared memory of the conv kernel per tile config, and of the
Winograd transform kernels at their launch blocks, compiled for sm_90 on any machine (Triton's
bundled ptxas and cuobjdump; no GPU needed), with the argument specialisation a channels_last call
gets from the JIT (for the input transforms also an NCHW one).

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
from zeroskip.kernels import implicit_gemm as ig, persistent_gemm, winograd, winograd4, winograd_gemm as wg  # noqa: E402
from zeroskip.kernels.layout import _to_channels_last_kernel  # noqa: E402

CUOBJDUMP = os.path.join(os.path.dirname(c.triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
CONFIGS = [("fp16", 128, 128, 64, 8, 3), ("fp16", 64, 64, 64, 4, 4), ("fp16", 128, 64, 32, 4, 4),
           ("fp32", 128, 64, 32, 4, 3), ("fp32", 128, 128, 32, 8, 3), ("fp32", 64, 64, 32, 4, 3)]



def usage(kernel) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        dump = subprocess.run([CUOBJDUMP, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    line = next(l for l in dump.splitlines() if "REG:" in l).split()
    return f"{line[0]} {line[1]} shared={kernel.metadata.shared} B"


for dtype, bm, bn, bk, warps, stages in CONFIGS:
    consts = dict(c.BASE, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, PRECISION="3xtf32" if dtype == "fp32" else "ieee")
    kernel = c.compile_variant(ig._conv_kernel, dtype, consts, warps, stages, **c.CHANNELS_LAST)
    print(f"{dtype} BM={bm} BN={bn} BK={bk} warps={warps} stages={stages}: {usage(kernel)}")
    if dtype == "fp32":
        kernel = c.compile_variant(ig._conv_kernel, dtype, dict(consts, RUNNING=True), warps, stages, **c.CHANNELS_LAST)
        print(f"{dtype} BM={bm} BN={bn} BK={bk} warps={warps} stages={stages} running sums: {usage(kernel)}")

for name, module in (("winograd", winograd), ("winograd4", winograd4)):
    bt, bc, warps = module.BLOCKS
    blocks = dict(BLOCK_T=bt, BLOCK_C=bc)
    for layout, ones in (("nchw", "sxw"), ("channels_last", "sxc")):
        kernel = c.compile_variant(module._input_transform_kernel, "fp32", dict(blocks, ROUND=False), warps, 1,
                                   ones=(ones,), div16=("C",))
        print(f"{name} input transform {layout} BT={bt} BC={bc} warps={warps}: {usage(kernel)}")
        if module is winograd4:  # fp32 V as scaled fp16 halves (3xfp16 GEMMs)
            kernel = c.compile_variant(module._input_transform_kernel, "fp32",
                                       dict(blocks, ROUND=False, SCALED=True, LOG2_V=9, SPLIT=True), warps, 1,
                                       ones=(ones,), div16=("C",), ptrs={"v_ptr": "*fp16", "vlo_ptr": "*fp16"})
            print(f"{name} input transform {layout} fp16 halves: {usage(kernel)}")
            kernel = c.compile_variant(module._input_transform_kernel, "fp32",
                                       dict(blocks, ROUND=False, SCALED=True, LOG2_V=9, SPLIT=False), warps, 1,
                                       ones=(ones,), div16=("C",), ptrs={"v_ptr": "*fp16", "vlo_ptr": "*fp16"})
            print(f"{name} input transform {layout} TF32 on scaled fp16: {usage(kernel)}")
    for pool in (0, 1, 2):
        consts = dict(blocks, HAS_BIAS=True, ACTIVATION=1, POOL=pool)
        kernel = c.compile_variant(module._output_transform_kernel, "fp32", consts, warps, 1, ones=("syc",),
                                   div16=("COUT",))
        print(f"{name} output transform pool={pool} BT={bt} BC={bc} warps={warps}: {usage(kernel)}")

# the batched Winograd GEMMs (VGG-19 features.21's F(4x4) shape), each precision's tuner candidates
# ("ieee-m32": fp16 V and U with an fp32 M, as TF32 takes them from winograd4.prefer_fp16_operands)
for dtype, prec, kernel in (("fp32", "3xtf32", wg._tuned_32), ("fp32", "tf32", wg._tuned_tf32), ("fp16", "ieee", wg._tuned_16),
                            ("fp16", "ieee-m32", wg._tuned_16), ("fp16", "3xfp16", wg._tuned_3x16)):
    for cfg in kernel.configs:
        k = cfg.kwargs
        compiled = c.compile_variant(wg._gemm_kernel, dtype, dict(C=512, CO=512, P=36, PRECISION=prec.split("-")[0],
                                                                  UPCAST=False, RUNNING=prec in ("3xtf32", "3xfp16"), **k),
                                     cfg.num_warps, cfg.num_stages, div16=("T",),
                                     ptrs={"m_ptr": "*fp32"} if prec in ("3xfp16", "ieee-m32") else None)
        print(f"winograd GEMM {prec} BM={k['BLOCK_M']} BN={k['BLOCK_N']} BK={k['BLOCK_K']} warps={cfg.num_warps} "
              f"stages={cfg.num_stages}: {usage(compiled)}")
# the persistent 16-bit GEMMs on pointers (the TMA kernel takes descriptors, which compile_variant cannot type)
for m, n, bk, warps, stages, per_sm in persistent_gemm.TILES:
    compiled = c.compile_variant(persistent_gemm._pointer_kernel, "fp16",
                                 dict(C=512, CO=512, P=36, UPCAST=False, BLOCK_M=m, BLOCK_N=n, BLOCK_K=bk, STAGES=stages,
                                      PER_SM=per_sm), warps, stages, div16=("T",))
    print(f"persistent winograd GEMM BM={m} BN={n} BK={bk} warps={warps} stages={stages}: {usage(compiled)}")

# the NCHW -> channels_last copy (kernels/layout.py) at its launch block
kernel = c.compile_variant(_to_channels_last_kernel, "fp32", dict(BLOCK_C=64, BLOCK_P=64), 4, 1)
print(f"NCHW -> channels_last copy 64x64 warps=4: {usage(kernel)}")
