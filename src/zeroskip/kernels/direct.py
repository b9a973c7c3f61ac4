"""The direct (implicit-GEMM) family: "igemm" (dense, tensor cores), "ecr_tc" (zero skipping, tensor
cores) and "ecr" (zero skipping, exact fp32 on the CUDA cores). Kernels in implicit_gemm.py and
ecr_index.py; this module holds their tiles and launches.

"igemm" on a GPU autotunes its tiles (implicit_gemm's tuned configs) and, at a layer shape's first
call, measures against them split-K (split_k.py) for layers with few tiles, kernels/rows.py for
16-bit 3x3 stride-1 convs, and the conv alone then its pool (pool.after) where a fused pool recomputes
(launch.POOL_AFTER_RECOMPUTE); the fastest is kept for that shape (split_k.pick). The zero-skipping algos
run fixed tiles (default_config), for which the skip flags are built.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from .. import runtime
from ..geometry import MAX_WINDOW, pool_recompute, without_pool
from . import ecr_index, implicit_gemm as ig, layout, pool, rows, split_k
from .launch import ACT, POOL, POOL_AFTER_RECOMPUTE, channels_last, packed_weight, precision, result, span

ALGOS = ("ecr", "ecr_tc", "igemm")
# conv(..., residual=r) reads r in the epilogue: act(conv + bias + r) in one pass (kernels/__init__)
RESIDUAL = True


@dataclass(frozen=True)
class Config:
    """Tile sizes. BLOCK_M x BLOCK_K is also the unit of zero skipping (see ecr_index)."""
    block_m: int = 64
    block_n: int = 64
    block_k: int = 32
    num_warps: int = 4
    num_stages: int = 3


@dataclass(frozen=True)
class Option:
    """A measured alternative to the autotuned direct kernel: "split-K" (fixed tiles, `split`
    programs per tile), "rows" (kernels/rows.py) or "pool after" (the conv alone, then pool.after)."""
    kernel: str
    config: Config | None = None
    split: int = 1


def supports(spec, input, activation) -> str | None:
    """Every geometry and activation; a pool window of at most MAX_WINDOW positions (one tile's rows)."""
    if spec.window_rows > MAX_WINDOW:
        return (f"pool_size {(spec.pool_kh, spec.pool_kw)} has {spec.pool_kh * spec.pool_kw} positions; "
                f"it fuses windows of at most {MAX_WINDOW}")
    return None


def default_config(spec, dtype, algo, device="cuda") -> Config:
    """Tiles for the zero-skipping algos, whose flags must be built for the same tiles."""
    win = spec.window_rows
    if runtime.interpreting():
        # The interpreter costs ~9 ms per program-iteration whatever the block size: big blocks.
        return Config(block_m=max(128, win), block_n=64, block_k=64, num_warps=1, num_stages=1)
    cg, cout_g = spec.in_per_group, spec.out_per_group
    sms = runtime.sm_count(device)
    m_total = spec.batch * spec.result_h * spec.result_w * win
    if algo == "ecr":
        # CUDA-core FMA: narrow K keeps the upcast operands in registers (BLOCK_K=64 with fp16
        # upcast spilled and ran 30x slower on VGG-19 features.5).
        block_k, stages = 16, 2
    else:
        block_k = 16 if cg <= 16 else (32 if cg <= 32 or dtype == torch.float32 else 64)
        stages = 3
    block_n = 16
    while block_n < 128 and block_n < cout_g:
        block_n *= 2
    block_m = 128
    while block_m > max(32, win) and triton.cdiv(m_total, block_m) * triton.cdiv(cout_g, block_n) * spec.groups < sms:
        block_m //= 2
    while block_n > 32 and triton.cdiv(m_total, block_m) * triton.cdiv(cout_g, block_n) * spec.groups < sms:
        block_n //= 2
    num_warps = 8 if block_m * block_n >= 128 * 128 else 4
    return Config(max(block_m, win), block_n, block_k, num_warps, stages)


def tf32_input(x, prec: str, spec):
    """x as the direct kernel reads it at precision prec: NCHW fp32 input copied to channels_last
    (kernels/layout.py) for one TF32 product per chunk; TF32 wgmma reads its A tile with input
    channels contiguous, and from NCHW each element went through its own 4-byte load. VGG-19 TF32
    conv + relu + pool features.2 at batch 32: 1391.9 -> 929.3 us with the copy (H100,
    benchmarks/vgg19-tf32-nchw-copy-ab-h100.txt). 3xTF32 keeps NCHW: its three products hide those
    loads (features.2 + pool 1407.5 us NCHW against 1251.2 + a 275 us copy)."""
    if (prec != "tf32" or spec.in_per_group < 16 or not x.is_contiguous()
            or x.is_contiguous(memory_format=torch.channels_last)):  # 1x1 maps: both layouts at once
        return x
    return layout.to_channels_last(x, runtime.interpreting())


def conv(x, weight, bias, spec, activation, algo, config: Config | None = None, skip: bool | None = None,
         split: int = 1, out_dtype: torch.dtype | None = None, residual: torch.Tensor | None = None):
    """Launches the kernels for a checked call into a new output in x's memory format (its dtype
    unless out_dtype is given: the Winograd GEMMs' M, see winograd_steps). residual (checked by the
    caller: the output's shape, no pool) is added before the activation, read once in the epilogue.

    Without a config, "igemm" on a GPU autotunes and measures its options (module docstring). A
    config (and split) fixes the launch: tests and the zero-skipping algos use that."""
    skip = (algo != "igemm") if skip is None else skip
    why = supports(spec, x, activation)
    if why is not None:
        raise ValueError(f"algo={algo!r} cannot run this call: {why} (use algo='torch')")
    if not isinstance(split, int) or split < 1:
        raise ValueError(f"split must be a positive int, got {split!r}")
    prec = precision(algo, x.dtype)
    measured = not skip and config is None and not runtime.interpreting() and algo != "ecr"
    key = (spec, x.dtype, out_dtype or x.dtype, prec, channels_last(x), x.device.index, activation, bias is not None,
           residual is not None)

    def after():
        return pool.after(conv(x, weight, bias, without_pool(spec), activation, algo), spec)
    if measured and getattr(split_k.chosen(key), "kernel", None) == "pool after":
        return after()  # before the fused output and any input copy are made
    y = result(x, spec, out_dtype)
    xk = tf32_input(x, prec, spec)  # the kernel's input; a pool after reads x as given
    # K-major only where a chunk of input channels fills a 16-byte load: VGG-19 features.0 (3
    # channels, fp32, batch 1) ran 43.2 us K-major against 30.2 us with output channels contiguous.
    w = packed_weight(weight, k_major=prec != "ieee" and spec.in_per_group >= 16, split=prec == "3xtf32")
    w, w_lo = w if prec == "3xtf32" else (w, w)
    launch = _Launch(xk, w, w_lo, bias if bias is not None else y, y, spec, activation, algo, prec, bias is not None,
                     residual)
    if measured:
        def options():  # built only on a shape's first call: the choice is cached per key
            found = [(Option("split-K", c, s), lambda c=c, s=s: launch.fixed(c, s))
                     for c, s in split_k.candidates(spec, x.dtype, Config, runtime.sm_count(x.device))]
            if residual is None and rows.supports(spec, xk, activation) is None:
                found.append((Option("rows"), lambda: rows.conv(xk, w, bias, y, spec, ACT[activation])))
            if pool_recompute(spec) >= POOL_AFTER_RECOMPUTE:
                found.append((Option("pool after"), after))
            return found

        choice = split_k.pick(key, launch.tuned, options)
        if choice is None:
            launch.tuned()
        elif choice.kernel == "pool after":
            return after()
        elif choice.kernel == "rows":
            rows.conv(xk, w, bias, y, spec, ACT[activation])
        else:
            launch.fixed(choice.config, choice.split)
        return y
    cfg = config or default_config(spec, x.dtype, algo, x.device)
    launch.fixed(cfg, split, ecr_index.chunk_flags(xk, spec, cfg.block_m, cfg.block_k) if skip else None)
    return y


def dense_kernel(spec, dtype) -> str | None:
    """The kernel "igemm" chose at its first call of this geometry and input dtype: "direct" (tuned
    tiles), "direct, split-K N", "rows" or "pool after"; None if no such call has made the choice. Reads
    split_k's record of choices, so calls pay nothing for it."""
    found = None
    for key, choice in split_k.choices():
        if key[0] == spec and key[1] == dtype:
            found = ("direct" if choice is None else choice.kernel if choice.kernel in ("rows", "pool after")
                     else f"direct, split-K {choice.split}")
    return found


class _Launch:
    """The launches of one call: autotuned dense, or fixed tiles with optional skip flags/split."""

    def __init__(self, x, w, w_lo, b, y, spec, activation, algo, prec, has_bias, residual=None):
        self.x, self.w, self.w_lo, self.b, self.y, self.spec = x, w, w_lo, b, y, spec
        self.r = y if residual is None else residual
        self.m_total = spec.batch * spec.result_h * spec.result_w
        self.sizes = (spec.in_per_group, spec.height, spec.width, spec.out_per_group, spec.out_h, spec.out_w,
                      spec.result_h, spec.result_w, self.m_total, spec.kernel_h, spec.kernel_w)
        self.conv_geometry = (spec.stride_h, spec.stride_w, spec.pad_h, spec.pad_w, spec.dil_h, spec.dil_w)
        self.pool_geometry = (spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw)
        self.epilogue = dict(HAS_BIAS=has_bias, HAS_RES=residual is not None,
                             RES_VEC=1 if residual is None else ig.out_vec(residual), ACTIVATION=ACT[activation],
                             POOL=POOL[spec.pool],
                             WIN_P2=spec.window_rows, OUT_VEC=ig.out_vec(y))
        self.switches = dict(self.epilogue, PRECISION=prec,
                             UPCAST=algo == "ecr" or (runtime.interpreting() and x.dtype == torch.bfloat16),
                             BIG=max(span(x), span(y), span(w)) >= 2**31,
                             RUNNING=prec == "3xtf32" and algo == "igemm"
                             and spec.in_per_group * spec.kernel_h * spec.kernel_w <= ig.RUNNING_MAX_K)
        self.bias_stride = b.stride(0) if has_bias else 0
        self.res_strides = (0, 0, 0, 0) if residual is None else residual.stride()

    def _strides(self):
        return (*self.x.stride(), *self.w.stride(), *self.y.stride(), self.bias_stride, *self.res_strides)

    def tuned(self):
        win, spec = self.spec.window_rows, self.spec
        grid = lambda meta: (triton.cdiv(self.m_total, meta["BLOCK_M"] // win),  # noqa: E731
                             triton.cdiv(spec.out_per_group, meta["BLOCK_N"]), spec.groups)
        # NCH (flags row length) is unused without SKIP: the kernel counts chunks from C_G.
        if self.x.dtype != torch.float32:
            kernel = ig._conv_tuned_16
        else:
            kernel = ig._conv_tuned_tf32 if self.switches["PRECISION"] == "tf32" else ig._conv_tuned_32
        kernel[grid](self.x, self.w, self.w_lo, self.b, self.y, self.y, self.y, self.r, *self.sizes, 0, 1, 0,
                     *self._strides(),
                     *self.conv_geometry, *self.pool_geometry, SKIP=False, NCH_P2=1, PARTIAL=False,
                     **self.switches)

    def fixed(self, cfg: Config, split: int = 1, flags=None):
        spec, win = self.spec, self.spec.window_rows
        chunks = triton.cdiv(spec.in_per_group, cfg.block_k)
        grid_m = triton.cdiv(self.m_total, cfg.block_m // win)
        grid = (grid_m, triton.cdiv(spec.out_per_group, cfg.block_n), spec.groups * split)
        ws = self.y
        if split > 1:
            ws = torch.empty((split, grid_m * cfg.block_m, spec.out_channels), dtype=torch.float32,
                             device=self.x.device)
        ig._conv_kernel[grid](
            self.x, self.w, self.w_lo, self.b, self.y, flags if flags is not None else self.y, ws, self.r, *self.sizes,
            chunks, split,
            grid_m * cfg.block_m, *self._strides(), *self.conv_geometry, *self.pool_geometry,
            SKIP=flags is not None, NCH_P2=triton.next_power_of_2(chunks), PARTIAL=split > 1, **self.switches,
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
        if split > 1:
            ig._split_reduce_kernel[grid[:2] + (spec.groups,)](
                ws, self.b, self.y, self.r, spec.out_per_group, spec.out_h, spec.out_w, spec.result_h, spec.result_w,
                self.m_total, split, grid_m * cfg.block_m, *self.y.stride(), self.bias_stride, *self.res_strides,
                spec.stride_h, spec.stride_w, spec.pad_h, spec.pad_w, *self.pool_geometry, **self.epilogue,
                BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, num_warps=4,
            )
