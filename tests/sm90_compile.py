"""Compiles the kernels for sm_90 (H100) with Triton's bundled ptxas, no GPU needed.

The CPU interpreter runs the kernels' Python semantics but never lowers them, so a construct that
fails to compile for the GPU would pass every CPU test; this catches that on any machine.
Run in a process where TRITON_INTERPRET is unset (tests/test_compile_sm90.py does that).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from zeroskip.kernels import ecr_index, im2col, implicit_gemm, layout, winograd, winograd4, winograd_gemm  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)


# What Triton's JIT learns from a real channels_last call (it specialises integer arguments equal to
# 1 and marks pointers and integers divisible by 16): unit channel strides let the loads vectorise,
# which the software pipeliner needs, so compiling without these hints under-reports shared memory.
CHANNELS_LAST = dict(ones=("sxc", "swo"), div16=("C_G", "COUT_G", "sxn", "sxh", "sxw", "swc", "swh", "sww",
                                                 "syn", "syh", "syw"))


# A layer's sizes where a kernel takes them as compile-time constants (VGG-19 features.16,
# channels_last, 2x2/2 pool).
LAYER = dict(C_G=256, H=56, W=56, COUT_G=256, OH=56, OW=56, PH_OUT=28, PW_OUT=28, KH=3, KW=3,
             sxn=56 * 56 * 256, sxc=1, sxh=56 * 256, sxw=256, swo=9 * 256, swc=1, swh=3 * 256, sww=256,
             syn=28 * 28 * 256, syc=1, syh=28 * 256, syw=256, sb=1, srn=56 * 56 * 256, src=1, srh=56 * 256, srw=256, stride_h=1, stride_w=1, pad_h=1, pad_w=1,
             dil_h=1, dil_w=1, pool_kh=2, pool_kw=2, pool_sh=2, pool_sw=2, pool_ph=0, pool_pw=0,
             C=256, COUT=256, TH=14, TW=14,  # the Winograd transforms' names
             SCALED=False, LOG2_V=0, SPLIT=False, CHECK=False)


def compile_variant(fn, dtype, constexprs, num_warps=4, num_stages=3, ones=(), div16=(), ptrs=None):
    """fn compiled for sm_90: pointers to dtype (ptrs: {name: type} for others), other runtime arguments i32."""
    names = list(fn.arg_names)
    constexprs = dict(constexprs, **{n: 1 for n in ones})
    constexprs.update({n: LAYER[n] for n, p in zip(names, fn.params) if p.is_constexpr and n not in constexprs
                       and n in LAYER})
    types = {"flag_ptr": "*i8", "ws_ptr": "*fp32", "st_ptr": "*fp32", "hint_ptr": "*fp32", **(ptrs or {})}
    sig = {n: "constexpr" if n in constexprs else types.get(n, f"*{dtype}") if n.endswith("_ptr") else "i32"
           for n in names}
    aligned = [n for n in names if n not in constexprs and (n.endswith("_ptr") or n in div16)]
    src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(k),): v for k, v in constexprs.items()},
                    attrs={(names.index(n),): [["tt.divisibility", 16]] for n in aligned})
    return triton.compile(src, target=TARGET, options=dict(num_warps=num_warps, num_stages=num_stages))


BASE = dict(HAS_BIAS=True, HAS_RES=False, RES_VEC=1, ACTIVATION=1, POOL=1, SKIP=False, PRECISION="ieee", UPCAST=False, BIG=False, PARTIAL=False, RUNNING=False, NCH_P2=1,
            WIN_P2=4, OUT_VEC=1, BLOCK_M=128, BLOCK_N=64, BLOCK_K=64)
VARIANTS = [
    ("fp16", BASE),                                                            # relu + max-pool
    ("fp16", dict(BASE, ACTIVATION=2, POOL=2, WIN_P2=16)),                     # relu6 + avg, 3x3 window
    ("bf16", dict(BASE, ACTIVATION=0, POOL=0, WIN_P2=1, SKIP=True, NCH_P2=8)),  # plain conv, skipping
    ("fp32", dict(BASE, PRECISION="3xtf32", BLOCK_K=32)),                      # fp32-accurate tensor cores
    ("fp32", dict(BASE, PRECISION="3xtf32", RUNNING=True, BLOCK_K=32)),        # ... in running sums
    ("fp32", dict(BASE, PRECISION="tf32", BLOCK_K=32)),                        # TF32
    ("fp32", dict(BASE, PRECISION="3xtf32", BLOCK_K=32, POOL=0, WIN_P2=1, OUT_VEC=4)),  # NCHW store
    ("fp16", dict(BASE, BIG=True)),                                            # 64-bit offsets
    ("fp16", dict(BASE, PARTIAL=True)),                                        # split-K partial tiles
    ("fp32", dict(BASE, PRECISION="ieee", UPCAST=True, SKIP=True, NCH_P2=8, BLOCK_K=16)),  # "ecr"
    ("fp16", dict(BASE, HAS_RES=True, POOL=0, WIN_P2=1)),                      # residual add, channels_last
    ("fp32", dict(BASE, PRECISION="3xtf32", BLOCK_K=32, HAS_RES=True, RES_VEC=4, POOL=0, WIN_P2=1, OUT_VEC=4)),  # NCHW
]

if __name__ == "__main__":
    for dtype, consts in VARIANTS:
        kernel = compile_variant(implicit_gemm._conv_kernel, dtype, consts)
        print("conv", dtype, {k: consts[k] for k in ("ACTIVATION", "POOL", "SKIP", "PRECISION", "HAS_RES")},
              len(kernel.asm["cubin"]), "bytes")
    reduce = compile_variant(implicit_gemm._split_reduce_kernel, "fp16",
                             dict(HAS_BIAS=True, HAS_RES=False, RES_VEC=1, ACTIVATION=1, POOL=1, WIN_P2=4, OUT_VEC=4,
                                  BLOCK_M=64, BLOCK_N=64))
    compile_variant(implicit_gemm._split_reduce_kernel, "fp16", dict(HAS_BIAS=True, HAS_RES=True, RES_VEC=1, ACTIVATION=1,
                                                                     POOL=0, WIN_P2=1, OUT_VEC=1, BLOCK_M=64, BLOCK_N=64))
    print("split-K reduce fp16", len(reduce.asm["cubin"]), "bytes")
    flags = compile_variant(ecr_index._chunk_flags_kernel, "fp16", dict(BLOCK_M=64, BLOCK_K=32, WIN_P2=4))
    print("flags fp16", len(flags.asm["cubin"]), "bytes")
    for rnd in (False, True):  # TF32 off / on
        wi = compile_variant(winograd._input_transform_kernel, "fp32", dict(ROUND=rnd, BLOCK_T=64, BLOCK_C=32))
    for pool in (0, 1):
        wo = compile_variant(winograd._output_transform_kernel, "fp32",
                             dict(HAS_BIAS=True, ACTIVATION=1, POOL=pool, BLOCK_T=64, BLOCK_C=32))
    print("winograd transforms fp32", len(wi.asm["cubin"]), len(wo.asm["cubin"]), "bytes")
    for dtype, prec, taps in (("fp32", "3xtf32", 0), ("fp32", "tf32", 0), ("fp16", "ieee", 0), ("fp32", "3xtf32", 8),
                              ("fp16", "ieee", 8)):
        ic = compile_variant(im2col._im2col_kernel, dtype, dict(HAS_BIAS=True, ACTIVATION=1, POOL=0, PRECISION=prec,
                                                              UPCAST=False, BIG=False, WIN_P2=1, OUT_VEC=4, CP=4,
                                                              BLOCK_M=128, BLOCK_N=64, BLOCK_K=32, TAPS=taps), 8, 2)
    print("im2col fp32/fp16", len(ic.asm["cubin"]), "bytes")
    bt, bc, warps = winograd4.BLOCKS
    for rnd in (False, True):
        wi = compile_variant(winograd4._input_transform_kernel, "fp32", dict(ROUND=rnd, BLOCK_T=bt, BLOCK_C=bc), warps)
    for pool in (0, 1, 2):
        wo = compile_variant(winograd4._output_transform_kernel, "fp32",
                             dict(HAS_BIAS=True, ACTIVATION=1, POOL=pool, BLOCK_T=bt, BLOCK_C=bc), warps)
    print("winograd4 transforms fp32", len(wi.asm["cubin"]), len(wo.asm["cubin"]), "bytes")
    # bf16 input under F(4x4): V scaled into fp16 by a power of 2 from the input's range (both passes),
    # M scaled back
    for check in (False, True):
        wi = compile_variant(winograd4._input_transform_kernel, "bf16",
                             dict(ROUND=False, SCALED=True, LOG2_V=-1, CHECK=check, BLOCK_T=bt, BLOCK_C=bc), warps)
    for pool in (0, 1):
        wo = compile_variant(winograd4._output_transform_kernel, "fp16",
                             dict(HAS_BIAS=True, ACTIVATION=1, POOL=pool, SCALED=True, LOG2_V=-1, BLOCK_T=bt,
                                  BLOCK_C=bc), warps)
    print("winograd4 scaled transforms", len(wi.asm["cubin"]), len(wo.asm["cubin"]), "bytes")
    # fp32 input under F(4x4) with TF32 off: V scaled and stored as two fp16 halves, M in fp32
    half_v = {"v_ptr": "*fp16", "vlo_ptr": "*fp16"}
    wi = compile_variant(winograd4._input_transform_kernel, "fp32",
                         dict(ROUND=False, SCALED=True, LOG2_V=9, SPLIT=True, BLOCK_T=bt, BLOCK_C=bc), warps,
                         ptrs=half_v)
    wo = compile_variant(winograd4._output_transform_kernel, "fp32",
                         dict(HAS_BIAS=True, ACTIVATION=1, POOL=1, SCALED=True, LOG2_V=9, BLOCK_T=bt, BLOCK_C=bc),
                         warps)
    # fp32 input under F(4x4) with TF32 on: V scaled into one fp16 tensor, M in fp32
    wt = compile_variant(winograd4._input_transform_kernel, "fp32",
                         dict(ROUND=False, SCALED=True, LOG2_V=9, SPLIT=False, BLOCK_T=bt, BLOCK_C=bc), warps,
                         ptrs=half_v)
    print("winograd4 TF32 transform on fp16", len(wt.asm["cubin"]), "bytes")
    print("winograd4 fp16-halves transforms", len(wi.asm["cubin"]), len(wo.asm["cubin"]), "bytes")
    # NCHW outputs, whose tile rows are stored as vectors: 56 wide (whole 4-wide rows) and 14 (pairs)
    for kernels, blocks in ((winograd, (64, 32, 4)), (winograd4, winograd4.BLOCKS)):
        for ow in (56, 14):
            nchw = dict(OH=ow, OW=ow, syn=256 * ow * ow, syc=ow * ow, syh=ow, syw=1)
            for pool in (0, 1):
                compile_variant(kernels._output_transform_kernel, "fp32",
                                dict(nchw, HAS_BIAS=True, ACTIVATION=1, POOL=pool, BLOCK_T=blocks[0],
                                     BLOCK_C=blocks[1]), blocks[2])
    print("winograd transforms, NCHW vector stores, fp32")
    # the batched Winograd GEMMs: VGG-19 features.21's F(4x4) GEMMs and odd channel counts (masked chunks)
    for dtype, prec, tiles in (("fp32", "3xtf32", (64, 128, 32, 4)), ("fp32", "tf32", (128, 256, 32, 8)),
                               ("fp16", "ieee", (128, 128, 64, 8)), ("bf16", "ieee", (64, 128, 64, 4)),
                               ("fp16", "3xfp16", (128, 128, 32, 8)), ("fp16", "3xfp16", (64, 128, 64, 4)),
                               ("fp16", "ieee-m32", (128, 256, 64, 8))):  # TF32 on: fp16 V and U, fp32 M
        for c, co in ((512, 512), (112, 24), (1024, 64)):
            running = prec in ("3xtf32", "3xfp16") and c <= winograd_gemm.RUNNING_MAX_C
            wg = compile_variant(winograd_gemm._gemm_kernel, dtype,
                                 dict(C=c, CO=co, P=36, PRECISION=prec.split("-")[0], UPCAST=False, RUNNING=running,
                                      BLOCK_M=tiles[0], BLOCK_N=tiles[1], BLOCK_K=tiles[2]), tiles[3], div16=("T",),
                                 ptrs={"m_ptr": "*fp32"} if prec in ("3xfp16", "ieee-m32") else None)
    from zeroskip.kernels import persistent_gemm
    for dtype, m_ptr, tiles in (("fp16", "*fp16", persistent_gemm.TILES[0]), ("bf16", "*bf16", persistent_gemm.TILES[1]),
                                ("fp16", "*fp32", persistent_gemm.TILES[0])):  # fp32 M: TF32 on, fp16 V and U
        for c, co in ((512, 512), (112, 24)):
            wg = compile_variant(persistent_gemm._pointer_kernel, dtype,
                                 dict(C=c, CO=co, P=36, UPCAST=False, BLOCK_M=tiles[0], BLOCK_N=tiles[1],
                                      BLOCK_K=tiles[2], STAGES=tiles[4], PER_SM=tiles[5]), tiles[3], div16=("T",),
                                 ptrs={"m_ptr": m_ptr})
    print("winograd GEMMs", len(wg.asm["cubin"]), "bytes")
    from zeroskip.kernels import rows
    # every tile config at VGG-19 features.2 (fused with the pool, bf16), and a plain conv with
    # channels past whole chunks (fp16)
    for dtype, c, co, h, pool in (("bf16", 64, 64, 224, True), ("fp16", 40, 72, 30, False)):
        sizes = dict(C=c, H=h, W=h, COUT=co, OH=h, OW=h, PH=h // 2, PW=h // 2, sxn=h * h * c, sxc=1, sxh=h * c, sxw=c,
                     swc=co, swh=3 * c * co, sww=c * co, syn=h * h * co, syc=1, syh=h * co, syw=co, sb=1, pad_h=1,
                     pad_w=1, HAS_BIAS=True, ACTIVATION=1, POOL=pool, UPCAST=False)
        for r, seg, bn, bk, warps, stages in rows.TILES if pool else rows.TILES[:1]:
            rk = compile_variant(rows._rows_kernel, dtype, dict(sizes, R=r, SEG=seg, BLOCK_N=bn, BLOCK_K=bk), warps,
                                 stages)
    print("rows", len(rk.asm["cubin"]), "bytes")
    import sm90_compact
    sm90_compact.run()
    tl = compile_variant(layout._to_channels_last_kernel, "fp32", dict(BLOCK_C=64, BLOCK_P=64), 4)
    print("NCHW -> channels_last copy", len(tl.asm["cubin"]), "bytes")
    from zeroskip.kernels import pool
    for dtype, is_max in (("fp16", True), ("bf16", False), ("fp32", True)):  # ResNet's stem pool, 3x3/2/1
        # channels_last as the JIT specializes it (channel strides 1, sizes divisible by 16): 16-byte loads
        pk = compile_variant(pool._pool_kernel, dtype, dict(KH=3, KW=3, SH=2, SW=2, PAD_H=1, PAD_W=1, MAX=is_max,
                                                            BLOCK_P=64, BLOCK_C=64), 4, 3, ones=("sxc", "syc"),
                             div16=("C", "sxn", "sxh", "sxw", "syn", "syh", "syw"))
        assert pk.asm["ptx"].count("ld.global.v4") >= pk.asm["ptx"].count("ld.global") // 2, "pool loads not vectorized"
    print("pool after the conv", len(pk.asm["cubin"]), "bytes")
    from zeroskip.kernels import linear
    for dtype in ("fp16", "bf16"):  # every config, VGG's classifier (K, N divisible by 16): 16-byte weight loads
        for bn, bk, stages in linear.CONFIGS:
            lk = compile_variant(linear._linear_kernel, dtype, dict(HAS_BIAS=True, ACTIVATION=1, BLOCK_M=16,
                                                                    BLOCK_N=bn, BLOCK_K=bk), 4, stages,
                                 div16=("N", "K", "sxm", "swn", "sym"))
            ptx = lk.asm["ptx"]
            assert "cp.async" in ptx or "cp.async.bulk" in ptx or ptx.count("ld.global.v4") > 0, "linear loads"
    print("linear", len(lk.asm["cubin"]), "bytes")
    print("all compiled for sm_90")
