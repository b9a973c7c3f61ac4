"""zeroskip: zero-skipping and conv+activation+pool fused convolutions for CNN inference."""
from . import formats, nn
from .convert import convert_
from .dispatch import ALGOS
from .functional import conv2d, conv2d_pool

__all__ = ["ALGOS", "conv2d", "conv2d_pool", "convert_", "formats", "nn"]
__version__ = "0.1.0"
