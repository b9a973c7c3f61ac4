"""Every tile config of winograd_gemm._tuned_16_tma on VGG-19 F(4x4) GEMM sizes, three runs each, against float64:
relative error and where the wrong elements are. PYTHONPATH=src python3 scripts/check_tma_gemm.py"""
import torch, triton
from zeroskip.kernels import winograd_gemm as wg
from triton.tools.tensor_descriptor import TensorDescriptor
torch.manual_seed(0)
for (T, C, CO, P) in ((6272, 256, 256, 36), (512, 512, 512, 36), (196, 256, 256, 36)):
    v = torch.randn(T, P, C, device="cuda").half()
    u = (torch.randn(P, CO, C, device="cuda") * 0.1).half()
    ref = torch.einsum("tpc,poc->tpo", v.double(), u.double())
    for mdt in (torch.float16, torch.float32):
        for cfg in wg._tuned_16_tma.configs:
            k = cfg.kwargs
            for rep in range(3):
              m = torch.full((T, P, CO), float("nan"), device="cuda", dtype=mdt)
              d = (TensorDescriptor(v, [T, P, C], [P * C, C, 1], [k["BLOCK_M"], 1, k["BLOCK_K"]]),
                   TensorDescriptor(u, [P, CO, C], [CO * C, C, 1], [1, k["BLOCK_N"], k["BLOCK_K"]]),
                   m)
              grid = (triton.cdiv(T, k["BLOCK_M"]), triton.cdiv(CO, k["BLOCK_N"]), P)
              wg._gemm_tma_kernel[grid](*d, T, C, CO, UPCAST=False, **k, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
              torch.cuda.synchronize()
              err = ((m.double() - ref).norm() / ref.norm()).item()
              bad = (~torch.isclose(m.double(), ref, rtol=1e-2, atol=1e-1)).nonzero()
              where = "" if len(bad) == 0 else f" bad {len(bad)} first {bad[0].tolist()} rows {bad[:,0].min().item()}-{bad[:,0].max().item()} pos {sorted(set(bad[:,1].tolist()))[:6]} cols {bad[:,2].min().item()}-{bad[:,2].max().item()}"
              print(T, C, CO, P, str(mdt)[6:], k["BLOCK_M"], k["BLOCK_N"], k["BLOCK_K"], cfg.num_warps, cfg.num_stages, f"err {err:.1e}" + where, flush=True)
