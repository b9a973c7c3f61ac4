"""Compressed layouts of convolution inputs that keep only the non-zeros (Xu et al., 1909.09927).

ECR (one CSR row per convolution window): rows are the im2col rows of output pixels in
(n, group, oy, ox) order; ``values`` (input dtype) are each row's non-zeros, ``kernel_index``
(int32) their column k = c*kH*kW + kh*kW + kw (c within the group, the order of
``weight.view(C_out, -1)``), ``row_ptr`` (int64, rows + 1) the row pointers. Padding is never
stored; NaN and inf are.

PECR (ECR rows grouped by pooling window): for each pooled output (n, group, py, px) the conv
windows its pooling window covers are consecutive rows; ``pool_ptr`` (int64, pooled outputs + 1)
points into the rows and ``window_pos`` (int32) gives each row's oy*OW + ox. Overlapping pooling
windows repeat the conv windows they share.

Both carry a ``spec`` (zeroskip.geometry.ConvSpec) and have references that compute the
convolution (and activation + pooling) from the stored non-zeros only.
"""
from .ecr import ECR
from .ecr import conv as conv_ecr
from .ecr import decode as decode_ecr
from .ecr import encode as encode_ecr
from .ecr import to_feature_map
from .pecr import PECR
from .pecr import conv_pool as conv_pool_pecr
from .pecr import decode as decode_pecr
from .pecr import encode as encode_pecr
from .stats import SkipStats, SparsityStats, ecr_stats, skip_stats, sparsity_stats

__all__ = ["ECR", "PECR", "SkipStats", "SparsityStats", "conv_ecr", "conv_pool_pecr", "decode_ecr", "decode_pecr",
           "ecr_stats", "encode_ecr", "encode_pecr", "skip_stats", "sparsity_stats", "to_feature_map"]
