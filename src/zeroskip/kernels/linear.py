"""A fully connected layer at small batch, y = act(x @ weight.T + bias), where reading the weight is
all the work: VGG-19's classifier at batch 1 took 73.5 us of cuBLAS (four GEMV and split-K reduce
kernels) for 246 MB of fp16 weights, which the H200's 4.8 TB/s reads in 51 us, plus 4.1 us of
separate ReLU kernels (benchmarks/model-kernels-vgg19-b1-fp16-h200-1207.txt).

Each program reads BLOCK_N rows of the weight through the whole reduction, or through one of `split`
slices of it (more programs, more loads in flight; the last slice of a tile to finish adds the
others' fp32 partials), the rows of x padded to BLOCK_M (16: tl.dot's least), with bias and
activation in the epilogue. `linear` times its CONFIGS against F.linear + the activation at a shape's
first call on a GPU, the weight read from memory, and keeps the fastest (split_k.pick). fp16 and bf16 with at most MAX_ROWS rows; anything else runs PyTorch.
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
# (BLOCK_N, BLOCK_K, num_stages, split): few weight rows per program so that N=1000..4096 fills 132 SMs
CONFIGS = ((16, 256, 4, 1), (32, 256, 4, 1), (32, 128, 5, 1), (64, 128, 4, 1), (16, 512, 3, 1),
           (16, 256, 4, 2), (16, 256, 4, 4), (32, 256, 4, 2), (32, 256, 4, 4), (16, 512, 3, 2), (16, 512, 3, 4))
INTERPRETER_CONFIG = (16, 32, 1, 1)


@triton.jit
def _linear_kernel(x_ptr, w_ptr, b_ptr, y_ptr, part_ptr, count_ptr, M, N, K, K_SPLIT, sxm, swn, sym,
                   HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT: tl.constexpr):
    # program (n tile, k slice): the whole of x's rows (M <= BLOCK_M) against BLOCK_N weight rows
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    rm = tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    x_rows = x_ptr + rm.to(tl.int64)[:, None] * sxm
    w_cols = w_ptr + rn.to(tl.int64)[None, :] * swn
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    k_end = tl.minimum(K, (pid_s + 1) * K_SPLIT)
    for k0 in range(pid_s * K_SPLIT, k_end, BLOCK_K):
        k = k0 + rk
        a = tl.load(x_rows + k[None, :], mask=(rm[:, None] < M) & (k[None, :] < k_end), other=0.0)
        b = tl.load(w_cols + k[:, None], mask=(k[:, None] < k_end) & (rn[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc)
    if SPLIT > 1:
        # every slice stores its fp32 partial tile; the last of a tile's SPLIT programs to arrive (a
        # counter per tile, reset by that program) adds the others' partials and runs the epilogue
        tile = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
        tl.store(part_ptr + (pid_s * tl.num_programs(0) + pid_n) * BLOCK_M * BLOCK_N + tile, acc)
        tl.debug_barrier()
        arrived = tl.atomic_add(count_ptr + pid_n, 1, sem="acq_rel")
        if arrived == SPLIT - 1:
            for s in tl.static_range(SPLIT):
                other = part_ptr + (s * tl.num_programs(0) + pid_n) * BLOCK_M * BLOCK_N + tile
                acc += tl.load(other, mask=(tile >= 0) & (s != pid_s), other=0.0, cache_modifier=".cg")
            tl.atomic_xchg(count_ptr + pid_n, 0)
            _epilogue(acc, b_ptr, y_ptr, rm, rn, M, N, sym, HAS_BIAS, ACTIVATION)
    else:
        _epilogue(acc, b_ptr, y_ptr, rm, rn, M, N, sym, HAS_BIAS, ACTIVATION)


@triton.jit
def _epilogue(acc, b_ptr, y_ptr, rm, rn, M, N, sym, HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr):
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
    """The kernel with config (BLOCK_N, BLOCK_K, num_stages, split) on a supported call, into a new
    tensor; split > 1 divides the reduction among that many programs per output tile."""
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    w = weight.contiguous()
    m, k = x2.shape
    n = w.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m > 0 and n > 0:
        block_n, block_k, stages, split = config
        block_m = max(16, triton.next_power_of_2(m))
        tiles = triton.cdiv(n, block_n)
        if tiles > MAX_TILES:
            split = 1
        k_split = triton.cdiv(triton.cdiv(k, split), block_k) * block_k
        split = triton.cdiv(k, k_split)  # no empty slices
        part = torch.empty(split * tiles * block_m * block_n if split > 1 else 1, dtype=torch.float32,
                           device=x.device)
        count = _counters(x.device) if split > 1 else part
        _linear_kernel[(tiles, split)](x2, w, bias if bias is not None else w, y, part, count, m, n, k, k_split,
                                       x2.stride(0), w.stride(0), y.stride(0), bias is not None, ACT[activation],
                                       block_m, block_n, block_k, split, num_warps=4, num_stages=stages)
    return y.reshape(*x.shape[:-1], n)


# Arrival counters of the split kernel, zero between calls (each call's last program resets its
# tile's): one buffer per device and stream, so that kernels running at once never share one. A call
# with more output tiles than this runs unsplit.
MAX_TILES = 1 << 14
_COUNTERS: dict = {}


def _counters(device) -> torch.Tensor:
    key = (device, torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0)
    if key not in _COUNTERS:
        _COUNTERS[key] = torch.zeros(MAX_TILES, dtype=torch.int32, device=device)
    return _COUNTERS[key]


class _Copies:
    """The weight and copies of it (measure.weight_copies), made at the first next(), then cycled."""

    def __init__(self, weight):
        self.weight, self.copies, self.i = weight, None, 0

    def next(self):
        if self.copies is None:
            from ..measure import _l2_bytes, weight_copies
            self.copies = weight_copies(self.weight, _l2_bytes(self.weight.device))
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
    weights = _Copies(weight)  # timed calls read the weight from memory, as in a model
    choice = split_k.pick(key, lambda: torch_linear(x, weights.next(), bias, activation),
                          lambda: [(c, lambda c=c: run(x, weights.next(), bias, activation, c)) for c in CONFIGS])
    return torch_linear(x, weight, bias, activation) if choice is None else run(x, weight, bias, activation, choice)
