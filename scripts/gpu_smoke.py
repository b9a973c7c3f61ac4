"""Quick GPU timing of a few VGG-19 layers per algo (development probe; the benchmark is zeroskip.bench)."""
import sys
import torch, triton
import torch.nn.functional as F
sys.path.insert(0, "src")
import zeroskip

torch.backends.cudnn.benchmark = True
LAYERS = [(64, 64, 224), (256, 256, 56), (512, 512, 28), (512, 512, 14)]
for dtype in (torch.float32, torch.float16):
    for cin, cout, hw in LAYERS:
        for sp in (0.5, 0.9):
            x = torch.randn(1, cin, hw, hw, device="cuda").relu_()
            x = x * (torch.rand_like(x) > (sp - 0.5) * 2 if sp > 0.5 else 1)
            w = torch.randn(cout, cin, 3, 3, device="cuda") * (2 / cin / 9) ** 0.5
            x, w = x.to(dtype), w.to(dtype)
            if dtype == torch.float16:
                x = x.to(memory_format=torch.channels_last); w = w.to(memory_format=torch.channels_last)
            torch.backends.cudnn.allow_tf32 = False
            ref = F.conv2d(x.double(), w.double(), padding=1)
            row = [f"{str(dtype)[6:]:8s} {cin:4d}->{cout:4d} @{hw:3d} zero={(x == 0).float().mean().item():.2f}"]
            for algo in ("torch", "ecr", "ecr_tc", "igemm"):
                fn = lambda: zeroskip.conv2d(x, w, padding=1, algo=algo)
                err = ((fn().double() - ref).norm() / ref.norm()).item()
                t = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1000
                row.append(f"{algo}={t:8.1f}us e={err:.0e}")
            print(" | ".join(row), flush=True)
