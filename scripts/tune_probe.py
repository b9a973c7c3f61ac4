"""Development probe: GPU time of a few tile configs per VGG-19 layer, algo and precision,
beside cuDNN, on realistic sparse inputs. Prints the best config per case; results go to $OUT.
PYTHONPATH=src python3 scripts/tune_probe.py [data_dir]"""
import json, os, sys
import torch
import torch.nn.functional as F
from zeroskip.bench.suites import find_layer
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.timing import gpu_time_us
from zeroskip.geometry import check_conv
from zeroskip.kernels import launch as ig, ecr_index

data = sys.argv[1] if len(sys.argv) > 1 else None
torch.backends.cudnn.benchmark = True
LAYERS = ["features.2", "features.12", "features.21", "features.30"]
CONFIGS = [(128, 128, 32, 8, 3), (128, 64, 32, 4, 3), (64, 64, 32, 4, 3), (64, 128, 32, 4, 3),
           (128, 128, 64, 8, 3), (64, 64, 64, 4, 3), (32, 64, 32, 4, 3), (64, 32, 32, 4, 2)]
CASES = [("fp32", "igemm"), ("fp32", "ecr_tc"), ("fp32", "ecr"), ("fp16", "igemm"), ("fp16", "ecr_tc")]
rows = []
for name in LAYERS:
    layer = find_layer("vgg19", name)
    for batch in (1, 32):
        x32 = realistic_input(layer, batch, data, device="cuda")
        w32 = torch.randn(layer.out_channels, layer.in_channels, 3, 3, device="cuda") * (2 / layer.in_channels / 9) ** 0.5
        zero = (x32 == 0).float().mean().item()
        base = {}
        torch.backends.cudnn.allow_tf32 = False
        base["fp32"] = gpu_time_us(lambda: F.conv2d(x32, w32, None, 1, 1))
        xh = x32.half().to(memory_format=torch.channels_last); wh = w32.half().to(memory_format=torch.channels_last)
        base["fp16"] = gpu_time_us(lambda: F.conv2d(xh, wh, None, 1, 1))
        ref = F.conv2d(x32.double(), w32.double(), None, 1, 1)
        spec = check_conv(x32, w32, None, 1, 1, 1, 1)
        for dt, algo in CASES:
            x, w = (x32, w32) if dt == "fp32" else (xh, wh)
            best = None
            for cfg in CONFIGS:
                if algo == "ecr" and cfg[0] * cfg[1] > 64 * 128:
                    continue
                c = ig.Config(*cfg)
                fn = lambda: ig.conv(x, w, None, spec, None, algo, c)
                try:
                    err = ((fn().double() - ref).norm() / ref.norm()).item()
                    t = gpu_time_us(fn, inner=10, reps=15)
                except Exception as e:  # noqa: BLE001  a config that does not compile is skipped
                    print("  fail", cfg, type(e).__name__, str(e)[:100]); continue
                if best is None or t < best[0]:
                    best = (t, cfg, err)
            skip_frac = None
            if algo != "igemm":
                f = ecr_index.chunk_flags(x, spec, best[1][0], best[1][2])
                skip_frac = 1 - f.float().mean().item()
                tf = gpu_time_us(lambda: ecr_index.chunk_flags(x, spec, best[1][0], best[1][2]))
            else:
                tf = 0.0
            r = dict(layer=name, batch=batch, zero=zero, dtype=dt, algo=algo, us=best[0], cfg=best[1], err=best[2],
                     cudnn_us=base[dt], speedup=base[dt] / best[0], chunk_skip=skip_frac, flags_us=tf)
            rows.append(r)
            print(f"{name:12s} b{batch:<3d} zero={zero:.2f} {dt} {algo:7s} {best[0]:8.1f}us cudnn={base[dt]:8.1f}us "
                  f"x{base[dt] / best[0]:.2f} cfg={best[1]} err={best[2]:.1e} skip={skip_frac} flags={tf:.1f}us", flush=True)
json.dump(rows, open(os.path.join(os.environ.get("OUT", "/tmp"), "tune.json"), "w"), indent=1)
