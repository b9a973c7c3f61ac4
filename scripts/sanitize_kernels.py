"""Small calls through every kernel path, for compute-sanitizer (memcheck) on the GPU."""
import sys
import torch
sys.path.insert(0, "src")
import zeroskip

x = torch.randn(2, 6, 13, 11, device="cuda").relu_()
w = torch.randn(8, 3, 3, 3, device="cuda")
b = torch.randn(8, device="cuda")
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    xx, ww, bb = x.to(dtype), w.to(dtype), b.to(dtype)
    for algo in ("ecr", "ecr_tc", "igemm"):
        zeroskip.conv2d(xx, ww, bb, (1, 2), 1, (2, 1), 2, activation="relu", algo=algo)
        zeroskip.conv2d_pool(xx.to(memory_format=torch.channels_last), ww, bb, 1, 1, 1, 2,
                             pool="max", pool_size=3, pool_stride=2, pool_padding=1, algo=algo)
        zeroskip.conv2d_pool(xx[:, :, 1:, ::2], ww, None, 2, 0, 1, 2, pool="avg", algo=algo)
torch.cuda.synchronize()
print("sanitize run done")
