"""The Winograd F(4x4) GEMM shape, 36 x (T x C) @ (C x CO), on a plain batched-GEMM Triton kernel:
speed and error of the ways to arrange 3xTF32, one TF32 product, and cuBLAS beside them
(triton.testing.do_bench; error normwise against float64). Measures what kernels/winograd_gemm.py
was built from (benchmarks/winograd-gemm-probe-h200.txt).

MODE 0 V split in registers, each chunk's three products from zero, added on the CUDA cores (the
       library's 3xTF32); 1 V split in memory (hi and lo read as two operands); 2 small and big
       products in running tensor-core accumulators; 3 one TF32 product; 4 all three into one running
       accumulator; 5 as 2 with V split in registers.

python3 experiments/winograd_gemm_probe.py          (GPU)
"""
import torch
import triton
import triton.language as tl
from triton.testing import do_bench


@triton.jit
def _r(v):
    return ((v.to(tl.uint32, bitcast=True) + 0x1000) & 0xFFFFE000).to(tl.float32, bitcast=True)


@triton.jit
def k(v_ptr, vlo_ptr, u_ptr, ulo_ptr, m_ptr, T, C: tl.constexpr, CO: tl.constexpr, MODE: tl.constexpr,
      PROMOTE: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    xi = tl.program_id(2)
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    kk = tl.arange(0, BK)
    rm = rows < T
    a_base = v_ptr + rows.to(tl.int64)[:, None] * (36 * C) + xi * C + kk[None, :]
    alo_base = vlo_ptr + rows.to(tl.int64)[:, None] * (36 * C) + xi * C + kk[None, :]
    b_off = xi * CO * C + cols[None, :] * C + kk[:, None]
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    acc2 = tl.zeros([BM, BN], dtype=tl.float32)
    for it in range(0, C // BK):
        a = tl.load(a_base + it * BK, mask=rm[:, None], other=0.0)
        b = tl.load(u_ptr + b_off + it * BK)
        if MODE == 0:  # current: split a in registers, per-chunk partial, CUDA-core add
            b_lo = tl.load(ulo_ptr + b_off + it * BK)
            a_hi = _r(a)
            a_lo = a - a_hi
            part = tl.dot(a_lo, b, tl.zeros([BM, BN], dtype=tl.float32), input_precision="tf32")
            part = tl.dot(a_hi, b_lo, part, input_precision="tf32")
            acc = acc + tl.dot(a_hi, b, part, input_precision="tf32")
        elif MODE == 1:  # a pre-split in memory (a is hi), per-chunk partial, CUDA-core add
            b_lo = tl.load(ulo_ptr + b_off + it * BK)
            a_lo = tl.load(alo_base + it * BK, mask=rm[:, None], other=0.0)
            part = tl.dot(a_lo, b, tl.zeros([BM, BN], dtype=tl.float32), input_precision="tf32")
            part = tl.dot(a, b_lo, part, input_precision="tf32")
            acc = acc + tl.dot(a, b, part, input_precision="tf32")
        elif MODE == 2:  # pre-split, small products in a running TC accumulator, big ones too
            b_lo = tl.load(ulo_ptr + b_off + it * BK)
            a_lo = tl.load(alo_base + it * BK, mask=rm[:, None], other=0.0)
            acc2 = tl.dot(a_lo, b, acc2, input_precision="tf32")
            acc2 = tl.dot(a, b_lo, acc2, input_precision="tf32")
            acc = tl.dot(a, b, acc, input_precision="tf32")
        elif MODE == 3:  # single TF32 product (speed ceiling of one product)
            acc = tl.dot(a, b, acc, input_precision="tf32")
        elif MODE == 4:  # pre-split, all three into one running accumulator
            b_lo = tl.load(ulo_ptr + b_off + it * BK)
            a_lo = tl.load(alo_base + it * BK, mask=rm[:, None], other=0.0)
            acc = tl.dot(a_lo, b, acc, input_precision="tf32")
            acc = tl.dot(a, b_lo, acc, input_precision="tf32")
            acc = tl.dot(a, b, acc, input_precision="tf32")
        elif MODE == 5:  # split a in registers, small running accumulator, big running accumulator
            b_lo = tl.load(ulo_ptr + b_off + it * BK)
            a_hi = _r(a)
            a_lo = a - a_hi
            acc2 = tl.dot(a_lo, b, acc2, input_precision="tf32")
            acc2 = tl.dot(a_hi, b_lo, acc2, input_precision="tf32")
            acc = tl.dot(a_hi, b, acc, input_precision="tf32")
    acc = acc + acc2
    out = m_ptr + rows.to(tl.int64)[:, None] * (36 * CO) + xi * CO + cols[None, :]
    tl.store(out, acc, mask=rm[:, None])


def run(T, C, CO, dens, modes):
    torch.manual_seed(0)
    x = torch.randn(T, 36, C, device="cuda")
    x = torch.where(torch.rand_like(x) < dens, x, torch.zeros_like(x)).abs() * 3
    u = torch.randn(36, CO, C, device="cuda") * (2.0 / (9 * C)) ** 0.5
    hi = lambda t: ((t.view(torch.int32) + 0x1000) & -8192).view(torch.float32)  # noqa: E731
    x_hi = hi(x); x_lo = hi(x - x_hi)
    u_hi = hi(u); u_lo = u - u_hi
    ref = torch.einsum("txc,xoc->txo", x.double(), u.double())
    m = torch.empty(T, 36, CO, device="cuda")
    out = []
    for mode in modes:
        for bm, bn, bk, w, s in ((128, 64, 32, 4, 3), (128, 128, 32, 8, 3), (128, 128, 32, 8, 4), (64, 128, 32, 4, 3),
                                 (64, 128, 32, 4, 4), (64, 64, 32, 4, 3), (64, 128, 32, 8, 3), (64, 256, 32, 8, 3),
                                 (128, 256, 32, 8, 3), (256, 128, 32, 8, 3), (128, 64, 64, 4, 3), (128, 128, 64, 8, 2)):
            if bn > CO:
                continue
            a = x if mode in (0, 3, 5) else x_hi
            grid = (triton.cdiv(T, bm), CO // bn, 36)
            f = lambda: k[grid](a, x_lo, u_hi, u_lo, m, T, C, CO, mode, 1, bm, bn, bk, num_warps=w, num_stages=s)  # noqa
            try:
                f()
                torch.cuda.synchronize()
            except Exception as e:  # noqa
                out.append(f"mode {mode} {bm}x{bn}x{bk} w{w} s{s}: {type(e).__name__}")
                continue
            err = ((m.double() - ref).norm() / ref.norm()).item()
            ms = do_bench(f, warmup=50, rep=300)
            prods = 1 if mode == 3 else 3
            tf = prods * 2 * 36 * T * C * CO / ms / 1e9
            out.append(f"mode {mode} {bm}x{bn}x{bk} w{w} s{s}: {ms*1e3:8.1f} us  {tf:6.1f} TFLOP/s(tf32 products)  err {err:.2e}")
            print(out[-1], flush=True)
    if modes != every:
        return
    # cuBLAS TF32 batched, same shape
    torch.backends.cuda.matmul.allow_tf32 = True
    xb = x.transpose(0, 1)  # 36, T, C
    ub = u.transpose(1, 2)  # 36, C, CO
    ms = do_bench(lambda: torch.bmm(xb, ub), warmup=50, rep=300)
    print(f"cuBLAS bmm tf32 (strided A): {ms*1e3:.1f} us {2*36*T*C*CO/ms/1e9:.1f} TFLOP/s", flush=True)
    xc = xb.contiguous(); uc = ub.contiguous()
    ms = do_bench(lambda: torch.bmm(xc, uc), warmup=50, rep=300)
    print(f"cuBLAS bmm tf32 (contiguous): {ms*1e3:.1f} us {2*36*T*C*CO/ms/1e9:.1f} TFLOP/s", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    ms = do_bench(lambda: torch.bmm(xc, uc), warmup=50, rep=300)
    print(f"cuBLAS bmm fp32: {ms*1e3:.1f} us {2*36*T*C*CO/ms/1e9:.1f} TFLOP/s", flush=True)


if __name__ == "__main__":
    print(torch.cuda.get_device_name(), triton.__version__)
    every = (3, 0, 1, 2, 4, 5)
    # VGG-19 at batch 32: features.21, .12, .5, .30
    for T, C, CO, modes in ((1568, 512, 512, every), (6272, 256, 256, every), (25088, 64, 128, (0,)),
                            (512, 512, 512, (0,))):
        print(f"--- T={T} C={C} CO={CO}")
        run(T, C, CO, 0.3, modes)
