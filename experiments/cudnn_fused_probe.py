"""cuDNN's fused conv + bias + ReLU (+ add) ATen ops (torch.cudnn_convolution_relu / _add_relu) against
F.conv2d followed by the separate ops, on ResNet-50's conv shapes, channels_last, fp16 / bf16 / fp32
(TF32 off): GPU time by CUDA-graph replay, and each side's error against float64.
Run: PYTHONPATH=src python3 experiments/cudnn_fused_probe.py (GPU). Result: benchmarks/cudnn-fused-probe-h100.txt
"""
import torch
import torch.nn.functional as F

from zeroskip.bench import timing
torch.backends.cudnn.benchmark = True
dev = "cuda"
shapes = [  # (N, C, H, K, R, stride)
    (1, 64, 56, 64, 1, 1), (1, 64, 56, 64, 3, 1), (1, 64, 56, 256, 1, 1), (1, 256, 56, 64, 1, 1),
    (1, 128, 28, 128, 3, 1), (1, 512, 28, 128, 1, 1), (1, 256, 14, 256, 3, 1), (1, 1024, 14, 256, 1, 1),
    (1, 256, 14, 1024, 1, 1), (1, 512, 7, 512, 3, 1), (1, 512, 7, 2048, 1, 1), (1, 128, 56, 128, 3, 2),
    (32, 64, 56, 64, 3, 1), (32, 256, 14, 1024, 1, 1), (32, 512, 7, 512, 3, 1)]
for dt in (torch.float16, torch.bfloat16, torch.float32):
    torch.backends.cudnn.allow_tf32 = False
    for n, c, h, k, r, s in shapes:
        x = torch.randn(n, c, h, h, device=dev, dtype=dt).relu().contiguous(memory_format=torch.channels_last)
        w = (torch.randn(k, c, r, r, device=dev, dtype=dt) / (c * r * r) ** .5).contiguous(memory_format=torch.channels_last)
        b = torch.randn(k, device=dev, dtype=dt)
        p = r // 2
        y0 = F.conv2d(x, w, b, s, p)
        z = torch.randn_like(y0)
        try:
            f1 = lambda: F.relu(F.conv2d(x, w, b, s, p))
            f2 = lambda: torch.cudnn_convolution_relu(x, w, b, (s, s), (p, p), (1, 1), 1)
            f3 = lambda: F.relu(F.conv2d(x, w, b, s, p) + z)
            f4 = lambda: torch.cudnn_convolution_add_relu(x, w, z, 1.0, b, (s, s), (p, p), (1, 1), 1)
            ref = F.relu(F.conv2d(x.double(), w.double(), b.double(), s, p) + z.double())
            e4 = float((f4().double() - ref).norm() / ref.norm()); e3 = float((f3().double() - ref).norm() / ref.norm())
            t = timing.measure_same(f1, f2, f3, f4, inner=10, reps=20)
            print(f"{str(dt)[6:]:8} {n:3} {c:5} {h:3} {k:5} {r} s{s}: conv+relu {t[0].us:7.1f} fused {t[1].us:7.1f} | "
                  f"+add {t[2].us:7.1f} fused {t[3].us:7.1f}  err {e3:.1e} {e4:.1e}  layout {f4().is_contiguous(memory_format=torch.channels_last)}", flush=True)
        except Exception as e:
            print(dt, n, c, h, k, r, s, "ERR", type(e).__name__, str(e)[:200], flush=True)
