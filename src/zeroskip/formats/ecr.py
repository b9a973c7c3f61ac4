"""ECR: the non-zeros of every convolution window in CSR form (Xu et al., arXiv 1909.09927).

A convolution multiplies the im2col matrix (one row per output pixel, one column per kernel
tap) by the weights. After a ReLU most of that matrix is zero; ECR keeps only the non-zero
entries so that a kernel can skip the multiplies by zero. The paper's single-channel format is
generalised here to batch, channels, groups, stride, padding and dilation:

* rows are windows in (n, g, oy, ox) order: row r is the im2col row of output pixel (n, oy, ox)
  for group g, so there are N * groups * OH * OW rows;
* ``kernel_index`` (int32) is each value's column k = c*kH*kW + kh*kW + kw (c within the group),
  the column order of ``weight.view(C_out, -1)``, increasing within a row;
* ``values`` (the input's dtype and device) are the non-zero entries, row after row;
* ``row_ptr`` (int64, rows + 1) are the CSR row pointers into values / kernel_index.

Padding is zero and never stored; NaN and inf are non-zero and always stored.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ..geometry import ConvSpec, check_conv, pair

# Elements of the (non-zeros x out-channels) product that conv() materialises at once.
_CHUNK = 1 << 22


@dataclass
class ECR:
    """One input encoded window by window. ``spec.out_channels`` is a placeholder (= groups):
    the encoding depends only on the weight's spatial size; conv() takes the real weight."""
    values: torch.Tensor
    kernel_index: torch.Tensor
    row_ptr: torch.Tensor
    spec: ConvSpec

    @property
    def rows(self) -> int:
        return self.row_ptr.numel() - 1

    @property
    def nnz(self) -> int:
        return self.values.numel()

    @property
    def window_shape(self) -> tuple[int, int, int, int]:
        """(N, groups, OH*OW, Cg*kH*kW): the dense shape that decode() returns."""
        s = self.spec
        return (s.batch, s.groups, s.out_h * s.out_w, s.reduction)

    @property
    def density(self) -> float:
        """Stored values over all window entries (padding included)."""
        return self.nnz / max(1, self.rows * self.spec.reduction)

    def counts(self) -> torch.Tensor:
        """Non-zeros per window (int64, one per row)."""
        return self.row_ptr.diff()

    def row_of(self) -> torch.Tensor:
        """The row of every stored value (int64)."""
        return row_of(self.row_ptr, self.nnz)


def row_of(row_ptr: torch.Tensor, nnz: int) -> torch.Tensor:
    rows = torch.arange(row_ptr.numel() - 1, device=row_ptr.device)
    return torch.repeat_interleave(rows, row_ptr.diff(), output_size=nnz)


def conv_spec(input, kernel_size, stride=1, padding=0, dilation=1, groups=1) -> ConvSpec:
    """check_conv for callers that know only the weight's spatial size.

    A zero-stride dummy weight (one out-channel per group) stands in for the real one, so the
    errors are check_conv's and name the caller's argument."""
    kh, kw = pair(kernel_size, "kernel_size", 1)
    like = input if isinstance(input, torch.Tensor) else torch.empty(0)
    ok_groups = isinstance(groups, int) and not isinstance(groups, bool) and groups >= 1
    g = groups if ok_groups else 1
    per_group = max(like.shape[1] // g, 1) if like.dim() == 4 else 1
    weight = torch.empty((), dtype=like.dtype, device=like.device).expand(g, per_group, kh, kw)
    return check_conv(input, weight, None, stride, padding, dilation, groups)


def im2col(input: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """The im2col rows, shape (N, groups, OH*OW, Cg*kH*kW) (a transposed view of F.unfold).

    F.unfold pads symmetrically only, so the (possibly asymmetric) padding is applied with F.pad
    first: pad_h/pad_w on the top/left and just enough on the bottom/right to reach out_h/out_w."""
    s = spec
    bottom = max(0, (s.out_h - 1) * s.stride_h + s.dil_h * (s.kernel_h - 1) + 1 - s.height - s.pad_h)
    right = max(0, (s.out_w - 1) * s.stride_w + s.dil_w * (s.kernel_w - 1) + 1 - s.width - s.pad_w)
    pads = (s.pad_w, right, s.pad_h, bottom)
    x = F.pad(input, pads) if any(pads) else input
    cols = F.unfold(x, (s.kernel_h, s.kernel_w), dilation=(s.dil_h, s.dil_w),
                    stride=(s.stride_h, s.stride_w))
    return cols.view(s.batch, s.groups, s.reduction, s.out_h * s.out_w).transpose(2, 3)


def compress(rows: torch.Tensor):
    """(values, kernel_index int32, row_ptr int64) of a 2-D matrix's non-zeros, row-major."""
    mask = rows != 0  # NaN != 0, so NaN is kept like inf
    row_ptr = torch.zeros(rows.shape[0] + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(mask.sum(1), 0, out=row_ptr[1:])
    kernel_index = mask.nonzero()[:, 1].to(torch.int32)
    return rows[mask], kernel_index, row_ptr


def encode(input, kernel_size, stride=1, padding=0, dilation=1, groups=1) -> ECR:
    """Encodes ``input`` (N, C, H, W) for a conv with the given geometry (as F.conv2d takes it)."""
    spec = conv_spec(input, kernel_size, stride, padding, dilation, groups)
    values, kernel_index, row_ptr = compress(im2col(input, spec).reshape(-1, spec.reduction))
    return ECR(values, kernel_index, row_ptr, spec)


def scatter_rows(values, kernel_index, row_ptr, width: int) -> torch.Tensor:
    """The dense (rows, width) matrix of a CSR triple."""
    dense = values.new_zeros(row_ptr.numel() - 1, width)
    dense[row_of(row_ptr, values.numel()), kernel_index.long()] = values
    return dense


def decode(ecr: ECR) -> torch.Tensor:
    """The dense im2col rows, (N, groups, OH*OW, Cg*kH*kW), equal to F.unfold's columns."""
    dense = scatter_rows(ecr.values, ecr.kernel_index, ecr.row_ptr, ecr.spec.reduction)
    return dense.view(ecr.window_shape)


def to_feature_map(ecr: ECR) -> torch.Tensor:
    """The input (N, C, H, W) rebuilt from the windows' values.

    Pixels that no window reads (e.g. stride larger than the dilated kernel, or rows past the last
    window) are not in the format and come back as 0."""
    s = ecr.spec
    r, k = ecr.row_of(), ecr.kernel_index.long()
    area = s.out_h * s.out_w
    ng, pos = r // area, r % area
    n, g = ng // s.groups, ng % s.groups
    tap = k % (s.kernel_h * s.kernel_w)
    y = (pos // s.out_w) * s.stride_h - s.pad_h + (tap // s.kernel_w) * s.dil_h
    x = (pos % s.out_w) * s.stride_w - s.pad_w + (tap % s.kernel_w) * s.dil_w
    channel = g * s.in_per_group + k // (s.kernel_h * s.kernel_w)
    out = ecr.values.new_zeros(s.batch, s.in_channels, s.height, s.width)
    # A pixel read by several windows is written several times with the same value.
    out[n, channel, y, x] = ecr.values
    return out


def check_weight(spec: ConvSpec, values: torch.Tensor, weight, bias) -> ConvSpec:
    """Checks weight/bias against an encoded input; returns the spec with the real out-channels."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    want = (spec.in_per_group, spec.kernel_h, spec.kernel_w)
    if weight.dim() != 4 or tuple(weight.shape[1:]) != want:
        raise ValueError(f"weight must have shape (C_out, {want[0]}, {want[1]}, {want[2]}) for this "
                         f"encoding, got {tuple(weight.shape)}")
    cout = weight.shape[0]
    if cout < 1 or cout % spec.groups:
        raise ValueError(f"weight out-channels {cout} must be a positive multiple of groups={spec.groups}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != values.dtype:
            raise TypeError(f"{name} dtype {t.dtype} does not match the encoded dtype {values.dtype}")
        if t.device != values.device:
            raise ValueError(f"{name} is on {t.device} but the encoding is on {values.device}")
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ValueError(f"bias must have shape ({cout},), got {tuple(bias.shape)}")
    return replace(spec, out_channels=cout)


def accumulator(dtype: torch.dtype) -> torch.dtype:
    """Half-precision products are summed in fp32, so the reference rounds only once, at the end."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def row_dots(values, kernel_index, row_ptr, row_group, weight, groups: int) -> torch.Tensor:
    """(rows, C_out/groups): each row's dot products with its group's filters, from the non-zeros
    only, in the accumulator dtype. Products are summed per row with index_add, in chunks of
    non-zeros that bound the memory (no loop over windows)."""
    acc = accumulator(values.dtype)
    per_group, width = weight.shape[0] // groups, weight[0].numel()
    # table[g * width + k] holds tap k of every filter of group g.
    table = weight.to(acc).reshape(groups, per_group, width).transpose(1, 2).reshape(-1, per_group)
    rows = row_of(row_ptr, values.numel())
    tap = row_group[rows] * width + kernel_index.long()
    out = torch.zeros(row_ptr.numel() - 1, per_group, dtype=acc, device=values.device)
    step = max(1, _CHUNK // per_group)
    for start in range(0, values.numel(), step):
        part = slice(start, start + step)
        out.index_add_(0, rows[part], values[part, None].to(acc) * table[tap[part]])
    return out


def conv(ecr: ECR, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv2d(input, weight, bias, ...) computed from the stored non-zeros only (a reference)."""
    s = check_weight(ecr.spec, ecr.values, weight, bias)
    area = s.out_h * s.out_w
    row_group = (torch.arange(ecr.rows, device=ecr.values.device) // area) % s.groups
    acc = accumulator(ecr.values.dtype)
    out = row_dots(ecr.values, ecr.kernel_index, ecr.row_ptr, row_group, weight, s.groups)
    out = out.view(s.batch, s.groups, s.out_h, s.out_w, s.out_per_group).permute(0, 1, 4, 2, 3)
    out = out.reshape(s.batch, s.out_channels, s.out_h, s.out_w)
    if bias is not None:
        out = out + bias.to(acc).view(1, -1, 1, 1)
    return out.to(ecr.values.dtype)

