"""Same-run A/B of Winograd F(2x2) in 16 bits: the three launches (winograd_steps.run_steps: input
transform, GEMMs, output transform) against winograd_fused's two, at each split-K factor, beside
cuDNN (F.conv2d + ReLU [+ max pool]), on VGG-19's and ResNet-50's 3x3 layers at batch 1, channels_last.
Times by CUDA-graph replay (runtime.graph_ms); errors normwise against float64.

PYTHONPATH=src python scripts/winograd_fused_ab.py [BATCH] [DTYPES]
"""
import sys

import torch
import torch.nn.functional as F

from zeroskip.geometry import check_conv, with_pool
from zeroskip.kernels import winograd, winograd_fused, winograd_steps
from zeroskip.kernels.launch import ACT, POOL, result
from zeroskip.runtime import graph_ms, sm_count

# (name, C_in, C_out, map, pool)
LAYERS = [("vgg features.16", 256, 256, 56, True), ("vgg features.19", 256, 512, 28, False),
          ("vgg features.21", 512, 512, 28, False), ("vgg features.25", 512, 512, 28, True),
          ("vgg features.28", 512, 512, 14, False), ("vgg features.34", 512, 512, 14, True),
          ("resnet layer1", 64, 64, 56, False), ("resnet layer2", 128, 128, 28, False),
          ("resnet layer3", 256, 256, 14, False), ("resnet layer4", 512, 512, 7, False)]
batch = int(sys.argv[1]) if len(sys.argv) > 1 else 1
dtypes = (sys.argv[2] if len(sys.argv) > 2 else "fp16,bf16").split(",")


def three(x, w, b, spec):
    y = result(x, spec)
    return winograd_steps.run_steps("winograd", 2, winograd._input_transform_kernel, winograd._output_transform_kernel,
                                    winograd.BLOCKS, winograd.transformed_weight, winograd.amax_hint, x, w, b, spec,
                                    ACT["relu"], POOL[spec.pool], y)


def fused(x, w, b, spec, split):
    return winograd.fused_conv(x, w, b, spec, ACT["relu"], POOL[spec.pool], result(x, spec), split=split)


def err(y, ref):
    return ((y.double() - ref).norm() / ref.norm()).item()


torch.manual_seed(0)
print(f"{torch.cuda.get_device_name()}, batch {batch}; us (error)")
for name in dtypes:
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[name]
    for label, c, co, hw, pool in LAYERS:
        x = torch.randn(batch, c, hw, hw, device="cuda").relu_().to(dt).contiguous(memory_format=torch.channels_last)
        w = (torch.randn(co, c, 3, 3, device="cuda") / (3 * c ** 0.5)).to(dt)
        b = (torch.randn(co, device="cuda") * 0.1).to(dt)
        spec = check_conv(x, w, b, 1, 1, 1, 1)
        spec = with_pool(spec, "max", 2, 2, 0) if pool else spec
        ref = F.conv2d(x.double(), w.double(), b.double(), padding=1).relu()
        ref = F.max_pool2d(ref, 2) if pool else ref

        def cudnn():
            y = F.conv2d(x, w, b, padding=1).relu_()
            return F.max_pool2d(y, 2) if pool else y

        runs = {"cudnn": cudnn, "three": lambda: three(x, w, b, spec)}
        for s in (1, 2, 4, 8):
            runs[f"fused/{s}"] = lambda s=s: fused(x, w, b, spec, s)
        cells = []
        for key, fn in runs.items():
            y = fn()
            torch.cuda.synchronize()
            cells.append(f"{key} {graph_ms(fn) * 1e3:6.1f} ({err(y, ref):.1e})")
        th = -(-hw // 2)
        pick = winograd_fused.split_for(batch * th * th, c, co, sm_count("cuda"))
        print(f"{name} {label} {c}->{co} {hw}x{hw}{' +pool' if pool else ''}: " + ", ".join(cells) + f"; split_for {pick}",
              flush=True)
