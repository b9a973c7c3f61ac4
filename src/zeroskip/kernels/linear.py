"""A fully connected layer at small batch, y = act(x @ weight.T + bias), where reading the weight is
all the work: VGG-19's classifier at batch 1 took 73.5 us of cuBLAS (four GEMV and split-K reduce
kernels) for 246 MB of fp16 weights, which the H200's 4.8 TB/s reads in 51 us, plus 4.1 us of
separate ReLU kernels (benchmarks/model-kernels-vgg19-b1-fp16-h200-1207.txt).

Each program reads BLOCK_N rows of the weight through the whole reduction, the rows of x padded to
BLOCK_M (16: tl.dot's least), with bias and activation in the epilogue. `linear` times its CONFIGS
against F.linear + the activation at a shape's first call on a GPU, the weight read from memory,
and keeps the fastest (split_k.pick). fp16 and bf16 with at most MAX_ROWS rows; anything else runs
PyTorch. Splitting the reduction among programs (fp32 partials, added by the last to finish) gained
nothing on VGG-19's fc1 and fc2 and 0.7 us on fc3 (7.8 against cuBLAS's 8.5 us, H100; BENCHMARKS.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .. import runtime
from ..geometry import check_activation
from . import split_k
from .implicit_gemm import _activate
from .launch import ACT

MAX_ROWS = 64
# (BLOCK_N, BLOCK_K, num_stages): few weight rows per program so that N=1000..4096 fills 132 SMs
CONFIGS = ((16, 256, 4), (32, 256, 4), (32, 128, 5), (64, 128, 4), (16, 512, 3))
INTERPRETER_CONFIG = (16, 32, 1)


@triton.jit
def _linear_kernel(x_ptr, w_ptr, b_ptr, y_ptr, M, N, K, sxm, swn, sym, HAS_BIAS: tl.constexpr,
                   ACTIVATION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    rm = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    x_rows = x_ptr + rm.to(tl.int64)[:, None] * sxm
    w_cols = w_ptr + rn.to(tl.int64)[None, :] * swn
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + rk
        a = tl.load(x_rows + k[None, :], mask=(rm[:, None] < M) & (k[None, :] < K), other=0.0)
        b = tl.load(w_cols + k[:, None], mask=(k[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc)
    if HAS_BIAS:
        acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    acc = _activate(acc, ACTIVATION)
    tl.store(y_ptr + rm.to(tl.int64)[:, None] * sym + rn[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rn[None, :] < N))


def supports(x: torch.Tensor, weight: torch.Tensor, bias) -> str | None:
    """Why this kernel cannot run the call, or None."""
    if x.dtype not in (torch.float16, torch.bfloat16):
        return f"dtype {x.dtype} (fp16 and bf16 only)"
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        return "weight, bias and input dtypes differ"
    if x.dim() < 1 or weight.dim() != 2 or x.shape[-1] != weight.shape[1] or x.shape[-1] == 0:
        return f"input {tuple(x.shape)} and weight {tuple(weight.shape)} do not make a linear layer"
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        return f"bias of shape {tuple(bias.shape)} for {weight.shape[0]} outputs"
    rows = x.numel() // x.shape[-1]
    if rows > MAX_ROWS:
        return f"{rows} rows (at most {MAX_ROWS}: larger batches are cuBLAS's)"
    return None


def torch_linear(x, weight, bias, activation):
    y = F.linear(x, weight, bias)
    return F.relu(y) if activation == "relu" else F.relu6(y) if activation == "relu6" else y


def run(x, weight, bias, activation, config) -> torch.Tensor:
    """The kernel with config (BLOCK_N, BLOCK_K, num_stages) on a supported call, into a new tensor."""
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    w = weight.contiguous()
    m, k = x2.shape
    n = w.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m > 0 and n > 0:
        block_n, block_k, stages = config
        block_m = max(16, triton.next_power_of_2(m))
        grid = (triton.cdiv(n, block_n), triton.cdiv(m, block_m))
        _linear_kernel[grid](x2, w, bias if bias is not None else w, y, m, n, k, x2.stride(0), w.stride(0),
                             y.stride(0), bias is not None, ACT[activation], block_m, block_n, block_k,
                             num_warps=4, num_stages=stages)
    return y.reshape(*x.shape[:-1], n)


class _Copies:
    """The weight and copies of it (runtime.weight_copies), made at the first next(), then cycled."""

    def __init__(self, weight):
        self.weight, self.copies, self.i = weight, None, 0

    def next(self):
        if self.copies is None:
            self.copies = runtime.weight_copies(self.weight, runtime.l2_bytes(self.weight.device))
        self.i += 1
        return self.copies[self.i % len(self.copies)]


def linear(x, weight, bias=None, activation=None) -> torch.Tensor:
    """act(F.linear(x, weight, bias)): this kernel or PyTorch's, the faster at the first call of this
    shape on a GPU (PyTorch's where the kernel cannot run the call: `supports`)."""
    check_activation(activation)
    if supports(x, weight, bias) is not None:
        return torch_linear(x, weight, bias, activation)
    if runtime.interpreting():
        return run(x, weight, bias, activation, INTERPRETER_CONFIG)
    if x.device.type != "cuda":
        return torch_linear(x, weight, bias, activation)
    key = ("linear", x.numel() // x.shape[-1], tuple(weight.shape), bias is not None, activation, x.dtype,
           x.device.index)
    if key in split_k.measured():  # the common case, without building the measuring closures
        choice = split_k.chosen(key)
    else:
        weights = _Copies(weight)  # timed calls read the weight from memory, as in a model
        choice = split_k.pick(key, lambda: torch_linear(x, weights.next(), bias, activation),
                              lambda: [(c, lambda c=c: run(x, weights.next(), bias, activation, c)) for c in CONFIGS])
    return torch_linear(x, weight, bias, activation) if choice is None else run(x, weight, bias, activation, choice)
