"""Small calls through every kernel path, for compute-sanitizer (memcheck) on the GPU.

The dense path is launched with fixed tiles (one per tile shape the autotuner may pick), since
autotuning under memcheck takes minutes; the kernel code is the same."""
import sys
import torch
sys.path.insert(0, "src")
import zeroskip
from zeroskip.geometry import check_conv, with_pool
from zeroskip.kernels import launch as ig

x = torch.randn(2, 6, 13, 11, device="cuda").relu_()
w = torch.randn(8, 3, 3, 3, device="cuda")
b = torch.randn(8, device="cuda")
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    xx, ww, bb = x.to(dtype), w.to(dtype), b.to(dtype)
    for algo in ("ecr", "ecr_tc"):
        zeroskip.conv2d(xx, ww, bb, (1, 2), 1, (2, 1), 2, activation="relu", algo=algo)
        zeroskip.conv2d_pool(xx.to(memory_format=torch.channels_last), ww, bb, 1, 1, 1, 2,
                             pool="max", pool_size=3, pool_stride=2, pool_padding=1, algo=algo)
        zeroskip.conv2d_pool(xx[:, :, 1:, ::2], ww, None, 2, 0, 1, 2, pool="avg", algo=algo)
    for cfg in (ig.Config(16, 16, 16, 4, 2), ig.Config(256, 64, 32, 8, 3), ig.Config(64, 128, 64, 4, 3)):
        spec = check_conv(xx, ww, bb, 1, 1, 1, 2)
        ig.conv(xx, ww, bb, spec, "relu", "igemm", cfg, skip=False)
        ig.conv(xx, ww, bb, with_pool(spec, "max", 3, 2, 1), "relu", "igemm", cfg, skip=False)
        ig.conv(xx, ww, bb, with_pool(spec, "avg", 2, 2, 0), "relu", "igemm", cfg, skip=False, split=3)
        ig.conv(xx, ww, bb, spec, None, "igemm", cfg, skip=False, split=2)
torch.cuda.synchronize()
print("sanitize run done")
