"""Host side of the conv kernels: tile configs, weight packing, and the launches of one call."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from ..dispatch import interpreting
from ..geometry import MAX_WINDOW
from . import ecr_index, im2col, implicit_gemm as ig, layout, rows, split_k, winograd, winograd4, winograd_gemm
from . import weight_cache

_ACT = {None: 0, "relu": 1, "relu6": 2}
WINOGRAD = {"winograd": winograd, "winograd4": winograd4}
_POOL = {None: 0, "max": 1, "avg": 2}
# split_k.pick's choice for kernels/rows.py, measured against the direct kernel's tuned tiles and
# split-K per layer shape (16-bit 3x3 stride-1 convs, rows.fits)
ROWS = "rows"


@dataclass(frozen=True)
class Config:
    """Tile sizes. BLOCK_M x BLOCK_K is also the unit of zero skipping (see ecr_index)."""
    block_m: int = 64
    block_n: int = 64
    block_k: int = 32
    num_warps: int = 4
    num_stages: int = 3


def default_config(spec, dtype, algo, device="cuda") -> Config:
    """Tiles for the zero-skipping algos, whose flags must be built for the same tiles."""
    win = spec.window_rows
    if interpreting():
        # The interpreter costs ~9 ms per program-iteration whatever the block size: big blocks.
        return Config(block_m=max(128, win), block_n=64, block_k=64, num_warps=1, num_stages=1)
    cg, cout_g = spec.in_per_group, spec.out_per_group
    sms = split_k.sm_count(device)
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


def precision(algo: str, dtype: torch.dtype) -> str:
    """Dot precision for fp32 operands (ignored for fp16/bf16, which always accumulate in fp32)."""
    if algo == "ecr" or dtype != torch.float32:
        return "ieee"
    # fp32 follows cuDNN's switch as F.conv2d does; TF32 off still needs fp32 accuracy: three TF32
    # products with the weight split on the host ("3xtf32", see split_weight). Triton's own
    # "tf32x3" splits both operands in every iteration and writes the weight halves back to
    # shared memory before the products; without that step VGG-19's fp32 convs ran 2.78x of
    # cuDNN at batch 1 instead of 2.24x, 1.52x at batch 32 instead of 1.23x (H100, same run).
    # Three fp16 products of power-of-2-scaled fp16 halves (twice the tensor-core rate on paper)
    # ran 0.40-1.93x of cuDNN against 3xtf32's 1.17-3.55x, same run, same accuracy
    # (benchmarks/vgg19-fp32-3xfp16-ab.txt, commit 0b462a0).
    return "tf32" if torch.backends.cudnn.allow_tf32 else "3xtf32"


def split_weight(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) with hi + lo == packed exactly: hi is packed rounded to the bits TF32 reads (sign,
    exponent, 10 mantissa bits), lo the rest (|lo| <= 2**-11 |hi|), so the three TF32 products
    of 3xtf32 reach fp32 accuracy. Same strides as packed. An inf weight splits into (inf, nan)."""
    hi = torch.empty_like(packed)  # empty_like keeps packed's strides: the kernel reads both with them
    hi.copy_(winograd.tf32_nearest(packed))
    lo = torch.empty_like(packed)
    lo.copy_(packed - hi)
    return hi, lo


def packed_weight(weight: torch.Tensor, k_major: bool = False, split: bool = False):
    """The weight as a (C_out, C_in/g, kH, kW) view of memory laid out for the kernel's B tile.

    16-bit operands: (kH, kW, C_in/g, C_out) memory, output channels contiguous, so the weight
    tile loads are coalesced. TF32 / 3xTF32 (k_major): (C_out, kH, kW, C_in/g) memory, input
    channels contiguous, the only B layout Hopper's tf32 wgmma reads without a transpose; with
    the other one every weight element went through its own 4-byte cp.async (sm_90 PTX).
    Packing is done once per weight tensor and reused while the tensor is unchanged
    (kernels/weight_cache.py says what "unchanged" covers: an in-place edit through `.data` needs
    clear_packed_weights()). With split, returns split_weight's (hi, lo) of it.
    """
    if not split and ((weight.stride(1) == 1 or weight.shape[1] == 1) if k_major else weight.stride(0) == 1):
        return weight
    order = (0, 2, 3, 1) if k_major else (2, 3, 1, 0)
    back = (0, 3, 1, 2) if k_major else (3, 2, 0, 1)
    return weight_cache.cached(weight, ("packed", k_major, split), _pack, weight, order, back, split)


def _pack(weight, order, back, split):
    packed = weight.detach().permute(*order).contiguous().permute(*back)
    return split_weight(packed) if split else packed


def clear_packed_weights() -> None:
    """Forgets every packed (and Winograd-transformed) weight; needed only after in-place edits
    through `.data`."""
    weight_cache.clear()
    winograd.clear_transformed_weights()


def _span(t: torch.Tensor) -> int:
    """One past the farthest element offset of t (its strides, not its numel, bound the index)."""
    return 1 + sum((n - 1) * abs(st) for n, st in zip(t.shape, t.stride()))


def _empty(shape, dtype, device, memory_format):
    # One place that allocates the result, so tests can poison it and see unwritten elements.
    return torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format)


def conv(x, weight, bias, spec, activation, algo, config: Config | None = None, skip: bool | None = None,
         split: int = 1, out_dtype: torch.dtype | None = None):
    """Launches the kernels for a checked call. Output keeps the input's memory format, and its
    dtype unless out_dtype is given (the Winograd GEMMs' M, see winograd.run_steps).

    Without a config, the dense tensor-core path ("igemm" on a GPU) autotunes its tiles and, for
    layers with few tiles, measures split-K against them (kernels/split_k.py). A config (and
    split) fixes the launch: tests and the zero-skipping algos use that."""
    skip = (algo != "igemm") if skip is None else skip
    win = spec.window_rows
    if win > MAX_WINDOW:
        raise ValueError(f"pool_size {(spec.pool_kh, spec.pool_kw)} has {spec.pool_kh * spec.pool_kw} positions; "
                         f"algo={algo!r} fuses windows of at most {MAX_WINDOW} (use algo='torch')")
    if not isinstance(split, int) or split < 1:
        raise ValueError(f"split must be a positive int, got {split!r}")
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    y = _empty((spec.batch, spec.out_channels, spec.result_h, spec.result_w), out_dtype or x.dtype, x.device, fmt)
    if algo in WINOGRAD:
        def gemm(v, u, m_dtype, v_lo=None, u_lo=None):  # the 16 (36) transformed GEMMs
            gspec = winograd.gemm_spec(v, u)
            if v_lo is None and not winograd_gemm.use_for(gspec.height, u.shape[0] // gspec.groups, gspec.groups,
                                                          split_k.sm_count(v.device)):
                # as one grouped 1x1 conv on the dense path, where split-K is measured
                return conv(v, u, None, gspec, None, "igemm", out_dtype=m_dtype)
            m = _empty((1, u.shape[0], gspec.height, 1), m_dtype, v.device, torch.channels_last)
            if v_lo is not None:
                return winograd_gemm.gemm(v, u, u_lo, m, "3xfp16", interpreting(), v_lo=v_lo)
            prec = precision("igemm", v.dtype)
            u_hi, u_lo = packed_weight(u, k_major=True, split=True) if prec == "3xtf32" else (u, u)
            return winograd_gemm.gemm(v, u_hi, u_lo, m, prec, interpreting())
        if algo == "winograd4":
            # fp32-accurate F(4x4) GEMMs on the batched kernel as three fp16 products of scaled fp16
            # halves (winograd.run_steps) instead of three TF32 ones where that pays (halves_pay); TF32
            # ones as one fp16 product of scaled fp16 V and U where that pays (tf32_fp16_pays)
            prec = precision("igemm", x.dtype)
            halves = prec == "3xtf32" and winograd4.halves_pay(spec, split_k.sm_count(x.device))
            tf32_fp16 = prec == "tf32" and winograd4.tf32_fp16_pays(spec)
            return winograd4.conv(x, weight, bias, spec, _ACT[activation], _POOL[spec.pool], y, gemm, interpreting(),
                                  halves, tf32_fp16)
        return winograd.conv(x, weight, bias, spec, _ACT[activation], _POOL[spec.pool], y, gemm, interpreting())
    prec = precision(algo, x.dtype)
    if algo == "im2col":
        # its columns run (channel, kh, kw) as a contiguous weight's do: the weight as it is, split
        # for 3xtf32 (cached like the packed weights)
        w = packed_weight(weight, k_major=True, split=True) if prec == "3xtf32" else (weight, weight)
        big = max(_span(x), _span(y), _span(weight)) >= 2**31
        # the interpreter costs ~9 ms per program-iteration whatever the block: big blocks, one config;
        # its bf16 dot is wrong, so bf16 is upcast there
        tiles = (max(128, win), 64, 32, 1) if interpreting() else None
        return im2col.conv(x, *w, bias, y, spec, _ACT[activation], _POOL[spec.pool], prec, big, tiles,
                           upcast=interpreting() and x.dtype == torch.bfloat16)
    x = tf32_input(x, prec, spec)
    # K-major only where a chunk of input channels fills a 16-byte load: VGG-19 features.0 (3
    # channels, fp32, batch 1) ran 43.2 us K-major against 30.2 us with output channels contiguous.
    w = packed_weight(weight, k_major=prec != "ieee" and spec.in_per_group >= 16, split=prec == "3xtf32")
    w, w_lo = w if prec == "3xtf32" else (w, w)
    b = bias if bias is not None else y
    launch = _Launch(x, w, w_lo, b, y, spec, activation, algo, prec, bias is not None)
    if not skip and config is None and not interpreting() and algo != "ecr":
        key = (spec, x.dtype, y.dtype, prec, channels_last, x.device.index, activation, bias is not None)
        def options():  # built only on a shape's first call: the choice is cached per key
            found = [(c, s, lambda c=c, s=s: launch.fixed(c, s))
                     for c, s in split_k.candidates(spec, x.dtype, Config, split_k.sm_count(x.device))]
            if rows.fits(x, spec, activation):
                found.append((ROWS, 1, lambda: rows.conv(x, w, bias, y, spec, _ACT[activation])))
            return found
        choice = split_k.pick(key, launch.tuned, options)
        if choice is None:
            launch.tuned()
        elif choice[0] == ROWS:
            rows.conv(x, w, bias, y, spec, _ACT[activation])
        else:
            launch.fixed(*choice)
        return y
    cfg = config or default_config(spec, x.dtype, algo, x.device)
    launch.fixed(cfg, split, ecr_index.chunk_flags(x, spec, cfg.block_m, cfg.block_k) if skip else None)
    return y


def dense_kernel(spec, dtype) -> str | None:
    """The kernel the dense path ("igemm", autotuned) chose at its first call of this geometry and
    input dtype: "direct" (tuned tiles), "direct, split-K N" or "rows" (kernels/rows.py); None if
    no such call has made the choice. Reads split_k's record of choices, so calls pay nothing for it."""
    found = None
    for key, choice in split_k.choices():
        if key[0] == spec and key[1] == dtype:
            found = "direct" if choice is None else "rows" if choice[0] == ROWS else f"direct, split-K {choice[1]}"
    return found


def tf32_input(x, prec: str, spec):
    """x as the direct kernel reads it at precision prec: NCHW fp32 input copied to channels_last
    (kernels/layout.py) for one TF32 product per chunk. TF32 wgmma reads its A tile with input
    channels contiguous; from NCHW each element went through its own 4-byte load. The result keeps
    the input's layout (the caller allocates it first). VGG-19 TF32 conv + relu + pool, H100, same
    run (benchmarks/vgg19-tf32-nchw-copy-ab-h100.txt): features.2 1391.9 -> 929.3 us at batch 32,
    47.7 -> 29.9 at batch 1; features.7 730.1 -> 591.7 and 33.7 -> 20.9; plain convs features.2 /
    .5 1182.5 / 393.0 -> 927.1 / 318.5 us at batch 32. 3xTF32 keeps NCHW: its three products hide
    those loads (features.2 + pool channels_last 1251.2 us plus a 275 us copy, NCHW 1407.5)."""
    if (prec != "tf32" or spec.in_per_group < 16 or not x.is_contiguous()
            or x.is_contiguous(memory_format=torch.channels_last)):  # 1x1 maps: both layouts at once
        return x
    return layout.to_channels_last(x, interpreting())


class _Launch:
    """The launches of one call: autotuned dense, or fixed tiles with optional skip flags/split."""

    def __init__(self, x, w, w_lo, b, y, spec, activation, algo, prec, has_bias):
        self.x, self.w, self.w_lo, self.b, self.y, self.spec = x, w, w_lo, b, y, spec
        self.m_total = spec.batch * spec.result_h * spec.result_w
        self.sizes = (spec.in_per_group, spec.height, spec.width, spec.out_per_group, spec.out_h, spec.out_w,
                      spec.result_h, spec.result_w, self.m_total, spec.kernel_h, spec.kernel_w)
        self.conv_geometry = (spec.stride_h, spec.stride_w, spec.pad_h, spec.pad_w, spec.dil_h, spec.dil_w)
        self.pool_geometry = (spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw)
        self.epilogue = dict(HAS_BIAS=has_bias, ACTIVATION=_ACT[activation], POOL=_POOL[spec.pool],
                             WIN_P2=spec.window_rows, OUT_VEC=ig.out_vec(y))
        self.switches = dict(self.epilogue, PRECISION=prec,
                             UPCAST=algo == "ecr" or (interpreting() and x.dtype == torch.bfloat16),
                             BIG=max(_span(x), _span(y), _span(w)) >= 2**31,
                             RUNNING=prec == "3xtf32" and algo == "igemm"
                             and spec.in_per_group * spec.kernel_h * spec.kernel_w <= ig.RUNNING_MAX_K)
        self.bias_stride = b.stride(0) if has_bias else 0

    def _strides(self):
        return (*self.x.stride(), *self.w.stride(), *self.y.stride(), self.bias_stride)

    def tuned(self):
        win, spec = self.spec.window_rows, self.spec
        grid = lambda meta: (triton.cdiv(self.m_total, meta["BLOCK_M"] // win),  # noqa: E731
                             triton.cdiv(spec.out_per_group, meta["BLOCK_N"]), spec.groups)
        # NCH (flags row length) is unused without SKIP: the kernel counts chunks from C_G.
        if self.x.dtype != torch.float32:
            kernel = ig._conv_tuned_16
        else:
            kernel = ig._conv_tuned_tf32 if self.switches["PRECISION"] == "tf32" else ig._conv_tuned_32
        kernel[grid](self.x, self.w, self.w_lo, self.b, self.y, self.y, self.y, *self.sizes, 0, 1, 0, *self._strides(),
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
            self.x, self.w, self.w_lo, self.b, self.y, flags if flags is not None else self.y, ws, *self.sizes, chunks, split,
            grid_m * cfg.block_m, *self._strides(), *self.conv_geometry, *self.pool_geometry,
            SKIP=flags is not None, NCH_P2=triton.next_power_of_2(chunks), PARTIAL=split > 1, **self.switches,
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
        if split > 1:
            ig._split_reduce_kernel[grid[:2] + (spec.groups,)](
                ws, self.b, self.y, spec.out_per_group, spec.out_h, spec.out_w, spec.result_h, spec.result_w,
                self.m_total, split, grid_m * cfg.block_m, *self.y.stride(), self.bias_stride,
                spec.stride_h, spec.stride_w, spec.pad_h, spec.pad_w, *self.pool_geometry, **self.epilogue,
                BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, num_warps=4,
            )
