"""Interpolation points for Winograd F(4x4, 3x3), by the error they give, in a float64 emulation on the CPU.

F(4x4, 3x3) takes 5 finite points and infinity (kernels/winograd4.py). Every value the transforms
produce is rounded to the GEMM's operand precision (V and U; M stays fp32), so the points decide how
much that rounding costs. This searches 0 plus four of +-{1/4, 1/3, 1/2, 2/3, 3/4, 1, 3/2, 2, 3, 4}
on a small layer with TF32 truncation (1/3 and 2/3 make the transforms inexact in binary; the
best set of exact points is printed beside the best sets), then prints the best sets and Lavin's (0, +-1, +-2) on
VGG-like layers in each precision: normwise error of conv + relu + 2x2 max-pool against float64.

python experiments/winograd_points.py [--skip-search]
"""
import itertools
import math
import sys

import torch
import torch.nn.functional as F


def matrices(points):
    """B^T (6x6), G (6x3), A^T (4x6) for the 5 finite points and infinity (Toom-Cook)."""
    n = len(points) + 1
    at = torch.zeros(4, n, dtype=torch.float64)
    g = torch.zeros(n, 3, dtype=torch.float64)
    bt = torch.zeros(n, n, dtype=torch.float64)
    for j, p in enumerate(points):
        others = [q for q in points if q != p]
        f = math.prod(p - q for q in others)
        at[:, j] = torch.tensor([p ** i for i in range(4)])
        g[j] = torch.tensor([1.0, p, p * p]) / f
        poly = [1.0]  # prod over the others of (x - q), increasing powers
        for q in others:
            poly = [a - q * b for a, b in zip([0.0] + poly, poly + [0.0])]
        bt[j, :len(poly)] = torch.tensor(poly)
    poly = [1.0]
    for q in points:
        poly = [a - q * b for a, b in zip([0.0] + poly, poly + [0.0])]
    bt[n - 1] = torch.tensor(poly)
    at[3, n - 1] = 1.0
    g[n - 1, 2] = 1.0
    return bt, g, at


def as_f32(t):
    return t.float().double()


def tf32_trunc(t):
    return (t.float().view(torch.int32) & -8192).view(torch.float32).double()


def tf32_round(t):
    return ((t.float().view(torch.int32) + 0x1000) & -8192).view(torch.float32).double()


def fp16(t):
    return t.to(torch.float16).double()


def bf16(t):
    return t.to(torch.bfloat16).double()


def winograd(x, w, mats, operand, m_round=as_f32):
    """F(4x4, 3x3), padding 1, V and U rounded by `operand`, M by `m_round`, sums in float64."""
    bt, g, at = mats
    n, _, h, wd = x.shape
    th, tw = -(-h // 4), -(-wd // 4)
    d = F.pad(x, (1, 4 * tw + 1 - wd, 1, 4 * th + 1 - h)).unfold(2, 6, 4).unfold(3, 6, 4)
    v = operand(as_f32(torch.einsum("ik,nctwkl,jl->nctwij", bt, d, bt)))
    u = operand(torch.einsum("ik,ockl,jl->ocij", g, w, g))
    m = m_round(torch.einsum("nctwij,ocij->notwij", v, u))
    y = torch.einsum("ik,notwkl,jl->notwij", at, m, at)
    return y.permute(0, 1, 2, 4, 3, 5).reshape(n, -1, 4 * th, 4 * tw)[:, :, :h, :wd]


def layer(c, size, zeros, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, size, size, generator=gen).relu()
    x *= torch.rand(x.shape, generator=gen) >= (zeros - 0.5) / 0.5  # relu leaves half; drop more
    w = torch.randn(c, c, 3, 3, generator=gen) * math.sqrt(2 / (9 * c))
    return x.to(dtype).double(), w.to(dtype).double()


def err(y, ref, out_round=as_f32):
    y = F.max_pool2d(out_round(y).relu(), 2)
    return ((y - ref).norm() / ref.norm()).item()


def search():
    x, w = layer(64, 16, 0.7, 2)
    ref = F.max_pool2d(F.conv2d(x, w, padding=1).relu(), 2)
    vals = [0.25, 1 / 3, 0.5, 2 / 3, 0.75, 1, 1.5, 2, 3, 4]
    vals = sorted(vals + [-v for v in vals])
    found = sorted((err(winograd(x, w, matrices((0.0,) + pts), tf32_trunc), ref), pts)
                   for pts in itertools.combinations(vals, 4))
    print("search, 64 channels 16x16, TF32 truncated: best sets")
    for e, pts in found[:8]:
        print(f"  {e:.2e}  0, " + ", ".join(f"{p:.3g}" for p in pts))
    dyadic = next((e, pts) for e, pts in found if all(float(p * 64).is_integer() for p in pts))
    print(f"  best with every point exact in binary: {dyadic[0]:.2e}  0, " + ", ".join(f"{p:.3g}" for p in dyadic[1]))
    print(f"  Lavin's 0, +-1, +-2: {err(winograd(x, w, matrices((0.0, 1.0, -1.0, 2.0, -2.0)), tf32_trunc), ref):.2e}")


def table():
    sets = {"Lavin 0 +-1 +-2": (0.0, 1.0, -1.0, 2.0, -2.0), "0 +-3/4 +-3/2": (0.0, 0.75, -0.75, 1.5, -1.5)}
    print("conv + relu + pool, normwise error against float64 (V and U rounded, M fp32 unless said)")
    print("layer               points            TF32 trunc  TF32 round  fp16 (M fp16)  bf16      fp32")
    for c, size, zeros, seed in ((256, 28, 0.7, 3), (512, 14, 0.9, 4)):
        x, w = layer(c, size, zeros, seed)
        ref = F.max_pool2d(F.conv2d(x, w, padding=1).relu(), 2)
        xb, wb = layer(c, size, zeros, seed, torch.bfloat16)
        refb = F.max_pool2d(F.conv2d(xb, wb, padding=1).relu(), 2)
        for name, pts in sets.items():
            mats = matrices(pts)
            row = (err(winograd(x, w, mats, tf32_trunc), ref), err(winograd(x, w, mats, tf32_round), ref),
                   err(winograd(x, w, mats, fp16, fp16), ref, fp16), err(winograd(xb, wb, mats, bf16), refb, bf16),
                   err(winograd(x, w, mats, as_f32), ref, as_f32))
            print(f"{c} ch {size}x{size} {zeros:.0%}  {name:16s}  " + "  ".join(f"{e:.2e}  " for e in row), flush=True)


if __name__ == "__main__":
    if "--skip-search" not in sys.argv:
        search()
    table()
