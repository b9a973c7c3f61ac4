"""PECR: ECR windows grouped by pooling window (Xu et al., arXiv 1909.09927).

When a convolution is followed by an activation and a pooling layer, a kernel can compute all
the conv windows of one pooling window together and write only the pooled value. PECR orders
the ECR windows for that:

* for every pooled output (n, g, py, px), in that order, the conv windows (oy, ox) that its
  pooling window covers are consecutive rows, in (oy, ox) row-major order. The pooling geometry
  is F.max_pool2d's (floor mode); positions in the pool padding are not windows;
* ``pool_ptr`` (int64, N*groups*PH*PW + 1) points into the rows, one segment per pooled output;
* ``window_pos`` (int32, one per row) is the row's conv-output position oy*OW + ox;
* ``values`` / ``kernel_index`` (int32) / ``row_ptr`` (int64) are the rows' non-zeros exactly
  as in ECR.

Overlapping pooling windows (stride < size) repeat the conv windows they share: each pooling
window owns a full copy of its rows, so one segment can be processed without the others. Conv
outputs that no pooling window covers (a window grid that does not tile the map) are not stored.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry import ConvSpec, POOLS, check_activation, with_pool
from .ecr import check_weight, compress, conv_spec, im2col, row_dots, row_of, scatter_rows


@dataclass
class PECR:
    """One input encoded by pooling window. ``spec.pool`` is 'max' only as the geometry's label:
    max and avg pooling share it, and conv_pool() picks the reduction. ``spec.out_channels`` is a
    placeholder (= groups), as in ECR."""
    values: torch.Tensor
    kernel_index: torch.Tensor
    row_ptr: torch.Tensor
    window_pos: torch.Tensor
    pool_ptr: torch.Tensor
    spec: ConvSpec

    @property
    def rows(self) -> int:
        return self.row_ptr.numel() - 1

    @property
    def pools(self) -> int:
        return self.pool_ptr.numel() - 1

    @property
    def nnz(self) -> int:
        return self.values.numel()

    def windows_per_pool(self) -> torch.Tensor:
        """Conv windows in each pooling window (int64, one per pooled output)."""
        return self.pool_ptr.diff()


def pool_windows(spec: ConvSpec, device=None):
    """(window_pos int64, windows per pool int64) for one (n, g) image, pooled outputs row-major.

    Built for all pools at once: every pool's pool_kh x pool_kw candidates, minus those in the
    pool padding, keep (py, px, oy, ox) order through the boolean mask."""
    s = spec
    oy = (torch.arange(s.pooled_h, device=device) * s.pool_sh - s.pool_ph)[:, None] \
        + torch.arange(s.pool_kh, device=device)
    ox = (torch.arange(s.pooled_w, device=device) * s.pool_sw - s.pool_pw)[:, None] \
        + torch.arange(s.pool_kw, device=device)
    inside = ((oy >= 0) & (oy < s.out_h))[:, None, :, None] & ((ox >= 0) & (ox < s.out_w))[None, :, None, :]
    pos = oy[:, None, :, None] * s.out_w + ox[None, :, None, :]
    return pos[inside], inside.sum((2, 3)).flatten()


def encode(input, kernel_size, stride=1, padding=0, dilation=1, groups=1,
           pool_size=2, pool_stride=None, pool_padding=0) -> PECR:
    """Encodes ``input`` (N, C, H, W) for conv (F.conv2d geometry) then pooling (F.max_pool2d's)."""
    spec = conv_spec(input, kernel_size, stride, padding, dilation, groups)
    spec = with_pool(spec, "max", pool_size, pool_stride, pool_padding)
    pos, per_pool = pool_windows(spec, input.device)
    rows = im2col(input, spec)[:, :, pos]  # (N, groups, windows of all pools, Cg*kH*kW)
    values, kernel_index, row_ptr = compress(rows.reshape(-1, spec.reduction))
    images = spec.batch * spec.groups
    pool_ptr = torch.zeros(images * per_pool.numel() + 1, dtype=torch.int64, device=input.device)
    torch.cumsum(per_pool.repeat(images), 0, out=pool_ptr[1:])
    return PECR(values, kernel_index, row_ptr, pos.to(torch.int32).repeat(images), pool_ptr, spec)


def decode(pecr: PECR) -> torch.Tensor:
    """Dense (N, groups, PH*PW, W, Cg*kH*kW): slot j of pooled output p is its j-th conv window's
    im2col row, W = the most windows any pool has. Pools with fewer windows (at the padded edges)
    are zero-filled in their last slots; windows_per_pool() tells those from all-zero windows."""
    s = pecr.spec
    dense = scatter_rows(pecr.values, pecr.kernel_index, pecr.row_ptr, s.reduction)
    counts = pecr.windows_per_pool()
    pool = row_of(pecr.pool_ptr, pecr.rows)
    slot = torch.arange(pecr.rows, device=dense.device) - pecr.pool_ptr[pool]
    width = int(counts.max().item()) if pecr.pools else 0
    out = dense.new_zeros(pecr.pools, width, s.reduction)
    out[pool, slot] = dense
    return out.view(s.batch, s.groups, s.pooled_h * s.pooled_w, width, s.reduction)


def _activate(y: torch.Tensor, activation) -> torch.Tensor:
    if activation == "relu":
        return y.clamp_min(0)
    if activation == "relu6":
        return y.clamp(0, 6)
    return y


def conv_pool(pecr: PECR, weight: torch.Tensor, bias: torch.Tensor | None = None,
              activation="relu", pool="max", count_include_pad=True) -> torch.Tensor:
    """pool(activation(F.conv2d(input, weight, bias))) computed from the format (a reference).

    pool is 'max' or 'avg'; avg divides by the pool area like F.avg_pool2d (count_include_pad=True)
    or, with count_include_pad=False, by the windows the pool covers."""
    check_activation(activation)
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    s = check_weight(pecr.spec, pecr.values, weight, bias)
    images = s.batch * s.groups
    per_image = pecr.rows // images
    rows = torch.arange(pecr.rows, device=pecr.values.device)
    row_group = (rows // max(per_image, 1)) % s.groups
    y = row_dots(pecr.values, pecr.kernel_index, pecr.row_ptr, row_group, weight, s.groups)
    if bias is not None:
        y = y + bias.to(y.dtype).view(s.groups, s.out_per_group)[row_group]
    y = _activate(y, activation)
    index = row_of(pecr.pool_ptr, pecr.rows)[:, None].expand_as(y)
    out = y.new_zeros(pecr.pools, s.out_per_group)
    if pool == "max":
        out.scatter_reduce_(0, index, y, "amax", include_self=False)
    else:
        out.scatter_add_(0, index, y)
        counts = pecr.windows_per_pool().to(y.dtype)[:, None]
        out = out / (s.pool_kh * s.pool_kw if count_include_pad else counts)
    out = out.view(s.batch, s.groups, s.pooled_h, s.pooled_w, s.out_per_group).permute(0, 1, 4, 2, 3)
    return out.reshape(s.batch, s.out_channels, s.pooled_h, s.pooled_w).to(pecr.values.dtype)
