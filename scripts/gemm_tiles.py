"""Same-run timing of Winograd GEMM tile configs, each alone on VGG-19's F(4x4) GEMM sizes, with its
normwise error against float64 (a config over 1e-2, or over 1e-5 for 3xfp16, is marked WRONG and never
starred as fastest). Configs: winograd_gemm._gemm_kernel (one program per tile), and with a P or T prefix
persistent_gemm's pointer or TMA kernel on N programs per SM (16-bit only; T: channels a multiple of
BLOCK_K). Each config runs three times
before it is timed; its error is the largest of the three.

PYTHONPATH=src python3 scripts/gemm_tiles.py [--precision bf16|fp16|tf32|3xfp16]
    [--shapes 6272x256x256,1568x512x512]   (tiles x input x output channels)
    [--configs 128x128x64x8x3,P128x128x64x4x3x2]   (BLOCK_M x BLOCK_N x BLOCK_K x warps x stages [x N])
"""
import argparse

import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor

from zeroskip.bench.timing import graph_time
from zeroskip.kernels import persistent_gemm as pg, winograd_gemm as wg


ap = argparse.ArgumentParser()
ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "tf32", "3xfp16"])
# features.16, .25 and .34 at batch 32, then at batch 1
ap.add_argument("--shapes", default="6272x256x256,1568x512x512,512x512x512,196x256x256,49x512x512,16x512x512")
ap.add_argument("--configs", default="128x128x64x8x3,64x128x64x4x3,P128x128x64x4x3x2,P128x256x64x8x3x1")
args = ap.parse_args()
prec = {"bf16": "ieee", "fp16": "ieee"}.get(args.precision, args.precision)
dtype = {"bf16": torch.bfloat16, "tf32": torch.float32}.get(args.precision, torch.float16)
tol = 1e-5 if prec == "3xfp16" else 1e-2
names = args.configs.split(",")
configs = [tuple(int(v) for v in c.lstrip("PT").split("x")) for c in names]
sms = torch.cuda.get_device_properties(0).multi_processor_count
P = 36
for shape in args.shapes.split(","):
    tiles, c, cout = (int(v) for v in shape.split("x"))
    v64 = torch.randn(tiles, P, c, device="cuda", dtype=torch.float64) * 3
    u64 = torch.randn(P, cout, c, device="cuda", dtype=torch.float64) * 0.1
    v, u, v_lo, u_lo = v64.to(dtype), u64.to(dtype), None, None
    if prec == "3xfp16":
        v_lo, u_lo = (v64 - v.double()).half(), (u64 - u.double()).half()
    else:
        v64, u64 = v.double(), u.double()
    want = torch.einsum("tpc,poc->tpo", v64, u64)
    m = torch.empty(tiles, P, cout, device="cuda", dtype=torch.float32 if prec in ("3xfp16", "tf32") else dtype)
    args_ = (v, v if v_lo is None else v_lo, u, u if u_lo is None else u_lo, m, tiles, c, cout, P)
    flags = dict(PRECISION=prec, UPCAST=False, RUNNING=prec == "3xfp16" and c <= wg.RUNNING_MAX_C)
    results = []
    for name, (bm, bn, bk, warps, stages, *per_sm) in zip(names, configs):
        if name.startswith("T"):
            n_tiles = triton.cdiv(tiles, bm) * triton.cdiv(cout, bn) * P
            descs = (TensorDescriptor(v.view(tiles, P * c), [tiles, P * c], [P * c, 1], [bm, bk]),
                     TensorDescriptor(u.view(P * cout, c), [P * cout, c], [c, 1], [bn, bk]))

            def run(bm=bm, bn=bn, bk=bk, warps=warps, stages=stages, per_sm=per_sm[0], descs=descs):
                pg._tma_kernel[(min(n_tiles, sms * per_sm),)](
                    *descs, m, tiles, c, cout, P, UPCAST=False, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, STAGES=stages,
                    PER_SM=per_sm, num_warps=warps)
        elif name.startswith("P"):
            n_tiles = triton.cdiv(tiles, bm) * triton.cdiv(cout, bn) * P

            def run(bm=bm, bn=bn, bk=bk, warps=warps, stages=stages, per_sm=per_sm[0]):
                pg._pointer_kernel[(min(n_tiles, sms * per_sm),)](
                    v, u, m, tiles, c, cout, P, UPCAST=False, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, STAGES=stages,
                    PER_SM=per_sm, num_warps=warps)
        else:
            def run(bm=bm, bn=bn, bk=bk, warps=warps, stages=stages):
                wg._gemm_kernel[(triton.cdiv(tiles, bm), triton.cdiv(cout, bn), P)](
                    *args_, **flags, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps, num_stages=stages)
        try:
            err = 0.0
            for _ in range(3):  # a kernel with racing tiles can be right once
                m.fill_(float("nan"))
                run()
                torch.cuda.synchronize()
                err = max(err, ((m.double() - want).norm() / want.norm()).item())
            us = graph_time(run, inner=10, reps=20)
        except Exception as e:  # out of shared memory and the like: say so, go on
            print(f"{args.precision} {shape} {name}: {type(e).__name__} {str(e)[:80]}", flush=True)
            continue
        results.append((name, us, err))
    best = min((us for _, us, err in results if err <= tol), default=None)
    for name, us, err in results:
        mark = "WRONG" if not err <= tol else ("*" if us == best else "")
        print(f"{args.precision:6s} {shape:14s} {name:20s} {us:8.1f} us  err {err:.1e} {mark}", flush=True)
