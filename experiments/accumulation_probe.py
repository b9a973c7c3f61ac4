"""Which arrangement of 3xTF32 keeps fp32 accuracy on Hopper wgmma? A Triton GEMM, M = N = 256,
K = 4608 (VGG-19 features.28), ReLU input with half zeros, weight split on the host; prints the
normwise error against float64 per MODE (see the comments in the kernel). The answer chose the
arrangement in kernels/implicit_gemm.py: every chunk from a zero accumulator, summed on the CUDA
cores (MODE 4). Results: benchmarks/3xtf32-accumulation-probe.txt.

python experiments/accumulation_probe.py     (needs a GPU)
"""
import torch
import triton
import triton.language as tl

@triton.jit
def k(a_ptr, b_ptr, blo_ptr, c_ptr, M, N, K, MODE: tl.constexpr, RNA: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pm = tl.program_id(0); pn = tl.program_id(1)
    rm = pm * BM + tl.arange(0, BM); rn = pn * BN + tl.arange(0, BN); rk = tl.arange(0, BK)
    acc = tl.zeros([BM, BN], tl.float32); lo = tl.zeros([BM, BN], tl.float32)
    for k0 in range(0, K, BK):
        a = tl.load(a_ptr + rm[:, None] * K + (k0 + rk)[None, :])
        b = tl.load(b_ptr + (k0 + rk)[:, None] + rn[None, :] * K)
        if MODE == 0:
            acc = tl.dot(a, b, acc, input_precision="tf32x3")
        else:
            bl = tl.load(blo_ptr + (k0 + rk)[:, None] + rn[None, :] * K)
            ai = a.to(tl.uint32, bitcast=True)
            if RNA:
                ai = ai + 0x1000
            ah = (ai & 0xFFFFE000).to(tl.float32, bitcast=True)
            al = a - ah
            if MODE == 1:   # small into the big accumulator
                acc = tl.dot(al, b, acc, input_precision="tf32"); acc = tl.dot(ah, bl, acc, input_precision="tf32")
                acc = tl.dot(ah, b, acc, input_precision="tf32")
            elif MODE == 2:  # persistent small accumulator
                lo = tl.dot(al, b, lo, input_precision="tf32"); lo = tl.dot(ah, bl, lo, input_precision="tf32")
                acc = tl.dot(ah, b, acc, input_precision="tf32")
            elif MODE == 3:  # per-iteration small sum, added on CUDA cores
                s = tl.dot(al, b, tl.zeros([BM, BN], tl.float32), input_precision="tf32"); s = tl.dot(ah, bl, s, input_precision="tf32")
                acc = tl.dot(ah, b, acc + s, input_precision="tf32")
            elif MODE == 4:  # big product per iteration too, all sums on CUDA cores
                s = tl.dot(al, b, tl.zeros([BM, BN], tl.float32), input_precision="tf32"); s = tl.dot(ah, bl, s, input_precision="tf32")
                acc += tl.dot(ah, b, s, input_precision="tf32")
            elif MODE == 5:  # persistent lo, big one per iteration
                lo = tl.dot(al, b, lo, input_precision="tf32"); lo = tl.dot(ah, bl, lo, input_precision="tf32")
                acc += tl.dot(ah, b, tl.zeros([BM, BN], tl.float32), input_precision="tf32")
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], acc + lo)

torch.manual_seed(0)
M = N = 256; K = 4608
for trial in range(2):
    a = torch.relu(torch.randn(M, K, device="cuda")) * (torch.rand(M, K, device="cuda") > 0.5)
    w = torch.randn(N, K, device="cuda") * (2 / K) ** 0.5
    for rna in (0, 1):
        wi = w.view(torch.int32) + (0x1000 if rna else 0)
        wh = (wi & -8192).view(torch.float32); wl = w - wh
        ref = a.double() @ w.double().T
        for mode in range(6):
            c = torch.empty(M, N, device="cuda")
            k[(M // 64, N // 64)](a, wh if mode else w, wl, c, M, N, K, MODE=mode, RNA=rna, BM=64, BN=64, BK=32, num_warps=4, num_stages=3)
            print(f"trial {trial} rna {rna} mode {mode}: err {float((c.double() - ref).norm() / ref.norm()):.2e}", flush=True)
