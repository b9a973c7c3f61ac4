"""Normwise error of "igemm", "winograd" and "winograd4" against float64 on VGG-like layers, on the CPU.

Two figures per algo, fp32 with TF32 off:
  interp  the kernels on Triton's interpreter, whose tl.dot computes 3xTF32 in plain fp32 (TF32's
          operand truncation is not emulated);
  emul    the transforms on the interpreter, the GEMMs emulated in torch as an H100 runs them: each
          operand split into a TF32 hi part and a rest (as launch.split_weight), the rest truncated to
          TF32 by the tensor core, three products per BLOCK_K=32 chunk added in fp32.
and "tf32" (TF32 on, one truncated product per multiply) emulated the same way; with TF32 on the
Winograd transforms round V and U to TF32 themselves (as on a GPU), so the truncation leaves them as
they are.

TRITON_INTERPRET=1 PYTHONPATH=src python scripts/winograd_accuracy.py [--quick]
"""
import math
import sys

import torch
import torch.nn.functional as F

import zeroskip
from zeroskip.geometry import check_conv
from zeroskip.kernels import launch, winograd, winograd4

torch.backends.cudnn.allow_tf32 = False
# (C_in = C_out, map size, batch, zero fraction of the input)
LAYERS = [(512, 14, 1, 0.5), (512, 14, 1, 0.9), (512, 28, 1, 0.5), (512, 28, 1, 0.9), (256, 28, 1, 0.7)]
if "--quick" in sys.argv:
    LAYERS = [(64, 14, 1, 0.7)]


def trunc_tf32(t):
    """What a tensor core reads of an fp32 operand in TF32: the low 13 mantissa bits dropped."""
    return (t.view(torch.int32) & -8192).view(torch.float32)


def split(t):
    hi = ((t.view(torch.int32) + 0x1000) & -8192).view(torch.float32)
    return hi, t - hi


def gemm_emulated(a, b, tf32, chunk=32):
    """a (M, K) @ b (K, N) in fp32 as the implicit-GEMM kernel does on tensor cores."""
    acc = torch.zeros(a.shape[0], b.shape[1], dtype=torch.float32)
    for k in range(0, a.shape[1], chunk):
        ak, bk = a[:, k:k + chunk], b[k:k + chunk]
        if tf32:
            acc += trunc_tf32(ak) @ trunc_tf32(bk)
            continue
        a_hi, a_lo = split(ak)
        b_hi, b_lo = split(bk)
        part = trunc_tf32(a_lo) @ b_hi
        part = a_hi @ trunc_tf32(b_lo) + part
        acc += a_hi @ b_hi + part
    return acc


def winograd_gemm(tf32):
    def gemm(v, u, m_dtype=torch.float32):
        # V (1, P C, T, 1), U (P C_out, C, 1, 1) -> M (1, P C_out, T, 1) channels_last; M stays fp32
        c, cout = u.shape[1], u.shape[0] * u.shape[1] // v.shape[1]
        p = v.shape[1] // c
        m = [gemm_emulated(v[0, i * c:(i + 1) * c, :, 0].T, u[i * cout:(i + 1) * cout, :, 0, 0].T, tf32)
             for i in range(p)]
        return torch.cat(m, 1).T.reshape(1, p * cout, -1, 1).contiguous(memory_format=torch.channels_last)
    return gemm


def run_emulated(algo, x, w, tf32):
    spec = check_conv(x, w, None, 1, 1, 1, 1)
    if algo == "igemm":
        cols = F.unfold(x, 3, padding=1)[0].T.contiguous()  # (pixels, 9 C)
        y = gemm_emulated(cols, w.reshape(w.shape[0], -1).T.contiguous(), tf32)
        return y.T.reshape(1, w.shape[0], spec.out_h, spec.out_w)
    y = torch.empty(1, w.shape[0], spec.out_h, spec.out_w)
    kernels = winograd if algo == "winograd" else winograd4
    torch.backends.cudnn.allow_tf32 = tf32  # the transforms round V and U to TF32 when it is on
    try:
        return kernels.conv(x, w, None, spec, 0, 0, y, winograd_gemm(tf32), interpreting=True)
    finally:
        torch.backends.cudnn.allow_tf32 = False


def rel(out, ref):
    return ((out.double() - ref).norm() / ref.norm()).item()


if __name__ == "__main__":
    print("layer                      algo       interp   emul     tf32")
    for c, size, batch, zeros in LAYERS:
        gen = torch.Generator().manual_seed(c + size)
        x = torch.randn(batch, c, size, size, generator=gen).relu()
        x *= torch.rand(x.shape, generator=gen) >= (zeros - 0.5) / 0.5  # relu leaves half; drop more
        w = torch.randn(c, c, 3, 3, generator=gen) * math.sqrt(2 / (9 * c))
        ref = F.conv2d(x.double(), w.double(), padding=1)
        launch.clear_packed_weights()
        for algo in ("igemm", "winograd", "winograd4"):
            interp = rel(zeroskip.conv2d(x, w, None, padding=1, algo=algo), ref)
            emul = rel(run_emulated(algo, x, w, False), ref)
            tf32 = rel(run_emulated(algo, x, w, True), ref)
            print(f"{c}->{c} {size}x{size} b{batch} {(x == 0).double().mean().item():.0%} zeros  {algo:9s}  "
                  f"{interp:.2e} {emul:.2e} {tf32:.2e}", flush=True)
