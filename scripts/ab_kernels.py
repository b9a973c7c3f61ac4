"""Same-run A/B of the nested-loop kernel (commit 7dee63f) against the current one, both
autotuned, beside cuDNN, on VGG-19 layers with realistic inputs. Prints per-layer times and
geomeans; rows go to $OUT/ab.json. The old kernel is read from git history first:

git show 7dee63f:src/zeroskip/kernels/implicit_gemm.py > src/zeroskip/kernels/_old_ig.py
PYTHONPATH=src python3 scripts/ab_kernels.py DATA fp16:1,fp32:1     # then delete _old_ig.py

(the old module's autotuner times eager launches, as it did then.)"""
import json, os, sys, time
import torch, torch.nn.functional as F
from zeroskip.bench.suites import load_suite
from zeroskip.bench.sparsity import realistic_input
from zeroskip.bench.timing import gpu_time_us
from zeroskip.geometry import check_conv, with_pool
from zeroskip.kernels import launch as new, _old_ig as old
data = sys.argv[1]; cases = sys.argv[2].split(",")  # e.g. fp16:1,fp16:32,fp32:1
ops = sys.argv[3].split(",") if len(sys.argv) > 3 else ["conv2d", "conv2d_pool"]
torch.backends.cudnn.benchmark = True
rows = []
t0 = time.time()
for case in cases:
    dt, batch = case.split(":"); batch = int(batch)
    dtype = torch.float16 if dt == "fp16" else (torch.bfloat16 if dt == "bf16" else torch.float32)
    torch.backends.cudnn.allow_tf32 = dt == "tf32"
    for layer in load_suite("vgg19"):
        for op in ops:
            if op == "conv2d_pool" and not layer.pool_after:
                continue
            x = realistic_input(layer, batch, data, device="cuda")
            w = torch.randn(layer.out_channels, layer.in_channels, 3, 3, device="cuda") * (2 / layer.in_channels / 9) ** 0.5
            b = torch.randn(layer.out_channels, device="cuda") * 0.01
            ref = F.conv2d(x.double(), w.double(), b.double(), 1, 1)
            if op == "conv2d_pool":
                ref = F.max_pool2d(F.relu(ref), 2, 2)
            x = x.to(dtype); w = w.to(dtype); b = b.to(dtype)
            if dtype != torch.float32:
                x = x.to(memory_format=torch.channels_last); w = w.to(memory_format=torch.channels_last)
            spec = check_conv(x, w, b, 1, 1, 1, 1)
            if op == "conv2d_pool":
                spec = with_pool(spec, "max", 2, 2, 0)
                base = lambda: F.max_pool2d(F.relu(F.conv2d(x, w, b, 1, 1)), 2, 2)
                act = "relu"
            else:
                base = lambda: F.conv2d(x, w, b, 1, 1); act = None
            r = dict(layer=layer.name, op=op, dtype=dt, batch=batch, cudnn_us=gpu_time_us(base))
            for tag, mod in (("old", old), ("new", new)):
                fn = lambda: mod.conv(x, w, b, spec, act, "igemm")
                y = fn()
                r[tag + "_err"] = ((y.double() - ref).norm() / ref.norm()).item()
                r[tag + "_us"] = gpu_time_us(fn)
            rows.append(r)
            print(f"{dt} b{batch} {op:11s} {layer.name:12s} cudnn {r['cudnn_us']:7.1f} old {r['old_us']:7.1f} new {r['new_us']:7.1f} "
                  f"x_old {r['cudnn_us']/r['old_us']:.2f} x_new {r['cudnn_us']/r['new_us']:.2f} err {r['new_err']:.1e} t={time.time()-t0:.0f}s", flush=True)
    sel = [r for r in rows if r["dtype"] == dt and r["batch"] == batch]
    import math
    for op in ops:
        s = [r for r in sel if r["op"] == op]
        if s:
            g = lambda k: math.exp(sum(math.log(r["cudnn_us"] / r[k]) for r in s) / len(s))
            print(f"== {dt} b{batch} {op}: geomean old {g('old_us'):.2f}x new {g('new_us'):.2f}x", flush=True)
json.dump(rows, open(os.path.join(os.environ.get("OUT", "/tmp"), "ab.json"), "w"), indent=1)
