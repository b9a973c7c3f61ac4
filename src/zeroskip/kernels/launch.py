"""Host helpers every kernel family shares: the output allocation, the epilogue codes, the dot
precision of fp32 operands, and the weights packed (and split) once for the kernels."""
from __future__ import annotations

import torch

from . import weight_cache

ACT = {None: 0, "relu": 1, "relu6": 2}
POOL = {None: 0, "max": 1, "avg": 2}
# A fused pool whose tiles compute each conv output this many times or more (geometry.pool_recompute:
# overlapping windows) is measured at a call shape's first call against the conv alone followed by
# its pool (pool.after), and the faster kept (split_k.pick); VGG's 2x2/2 pools (1.0) are always fused.
POOL_AFTER_RECOMPUTE = 2.0


def precision(algo: str, dtype: torch.dtype) -> str:
    """Dot precision for fp32 operands ("ieee" for fp16/bf16, which always accumulate in fp32).

    fp32 follows cuDNN's switch as F.conv2d does: "tf32" with torch.backends.cudnn.allow_tf32, else
    "3xtf32", three TF32 products with the weight split on the host (split_weight) for fp32 accuracy.
    Triton's own "tf32x3" splits both operands in every iteration: VGG-19's fp32 convs ran 2.24x of
    cuDNN at batch 1 with it, 2.78x with the host split (H100, same run). "ecr" multiplies in exact
    fp32 on the CUDA cores."""
    if algo == "ecr" or dtype != torch.float32:
        return "ieee"
    return "tf32" if torch.backends.cudnn.allow_tf32 else "3xtf32"


def tf32_nearest(t: torch.Tensor) -> torch.Tensor:
    """fp32 t rounded to the nearest value TF32 holds (sign, exponent, 10 mantissa bits; ties away
    from zero), as a new fp32 tensor of t's shape and strides."""
    return ((t.view(torch.int32) + 0x1000) & -8192).view(torch.float32)


def split_weight(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) with hi + lo == packed exactly: hi is packed rounded to the bits TF32 reads (sign,
    exponent, 10 mantissa bits), lo the rest (|lo| <= 2**-11 |hi|), so the three TF32 products
    of 3xtf32 reach fp32 accuracy. Same strides as packed. An inf weight splits into (inf, nan)."""
    hi = torch.empty_like(packed)  # empty_like keeps packed's strides: the kernel reads both with them
    hi.copy_(tf32_nearest(packed))
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
    for clear in _CLEARERS:
        clear()


def on_clear(fn) -> None:
    """Has clear_packed_weights() also call fn (a family's own per-call state, e.g. Winograd's V-scale hints)."""
    _CLEARERS.append(fn)


_CLEARERS = []


def span(t: torch.Tensor) -> int:
    """One past the farthest element offset of t (its strides, not its numel, bound the index)."""
    return 1 + sum((n - 1) * abs(st) for n, st in zip(t.shape, t.stride()))


def _empty(shape, dtype, device, memory_format):
    # One place that allocates results (and the Winograd GEMMs' M), so tests can poison it and see
    # unwritten elements.
    return torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format)


def channels_last(x: torch.Tensor) -> bool:
    """x is dense in channels_last order and not also in NCHW order."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def result(x: torch.Tensor, spec, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """The output of a call: (N, C_out, H, W) of the result (pooled) map, in x's memory format and
    dtype unless out_dtype is given."""
    fmt = torch.channels_last if channels_last(x) else torch.contiguous_format
    return _empty((spec.batch, spec.out_channels, spec.result_h, spec.result_w), out_dtype or x.dtype, x.device,
                  fmt)
