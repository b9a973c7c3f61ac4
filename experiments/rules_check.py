"""algo="auto" without a plan, checked against measured layer tables: for each layer of each
`bench --model` layer CSV given, the algo rules.py picks for that call (on the GPU class and memory
speed of the file's GPU) and its measured time beside F.conv2d + activation + pool ("torch", cuDNN)
and the measured best. No GPU needed: the geometry comes from the torchvision model converted on the
CPU (the same fusion as bench), the times from the CSV.

    PYTHONPATH=src python3 experiments/rules_check.py benchmarks/model-*-1207-layers.csv
"""
from __future__ import annotations

import csv
import sys
from collections import defaultdict

import torch

import zeroskip
from zeroskip import nn as znn
from zeroskip.accuracy import precision
from zeroskip.kernels import KERNELS
from zeroskip.plan import spec_of
from zeroskip.rules import RULES, features, first_match

DT = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
ALGOS = ("torch", "cudnn", "igemm", "winograd", "winograd4", "im2col", "depthwise")


def modules(model_name):
    import torchvision
    model = getattr(torchvision.models, model_name)(weights=None).eval()
    if model_name == "googlenet":
        model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    zeroskip.convert_(model, torch.rand(1, 3, 224, 224), measure=False)
    return {n: m for n, m in model.named_modules() if isinstance(m, (znn.Conv2d, znn.ConvActPool))}


def rule_algo(m, op, shape, dtype, fast_memory):
    x = torch.empty(shape, device="meta", dtype=DT[dtype]).contiguous(memory_format=torch.channels_last)
    w = torch.empty(m.weight.shape, device="meta", dtype=DT[dtype])
    pool = dict(pool=m.pool, pool_size=m.pool_size, pool_stride=m.pool_stride,
                pool_padding=m.pool_padding) if op == "conv2d_pool" else {}
    spec = spec_of("conv2d_pool" if pool else "conv2d", x, w, None, m.stride, m.padding, m.dilation, m.groups,
                   **pool)
    f = features(spec, precision(x.dtype), x.is_contiguous(), x.is_contiguous(memory_format=torch.channels_last),
                 m.activation, fast_memory)  # as dispatch.decide on Hopper
    rule = first_match(RULES["hopper"], f, lambda algo: KERNELS[algo].supports(spec, None, m.activation) is None)
    return rule.algo if rule is not None else "torch"


def main(paths):
    cache = {}
    worst = defaultdict(list)
    for path in paths:
        rows = [r for r in csv.DictReader(open(path)) if r["reused"] != "True"]
        if not rows:
            continue
        name = rows[0]["model"]
        if name not in cache:
            cache[name] = modules(name)
        fast = "h200" in path
        print(f"\n{path} ({'H200' if fast else 'H100'})")
        for r in rows:
            times = {a: float(r[a + "_us"]) for a in ALGOS if r.get(a + "_us", "")[:1].isdigit()}
            shape = tuple(int(v) for v in r["shape"].split("x"))
            algo = rule_algo(cache[name][r["name"]], r["op"], shape, r["dtype"], fast)
            t = times.get(algo)
            if t is None:
                print(f"  {r['name']:28} {r['op']:15} rule {algo:9} not timed here")
                continue
            ratio, best = times["torch"] / t, min(times, key=times.get)
            flag = " <-- slower than cuDNN" if ratio < 0.98 else ""
            print(f"  {r['name']:28} {r['op']:15} rule {algo:9} {t:8.1f} us  torch {times['torch']:8.1f}  "
                  f"{ratio:5.2f}x  best {best} {times[best]:.1f}{flag}")
            if flag:
                worst[path].append((r["name"], algo, ratio))
    print("\nslower than cuDNN under the rules:", sum(len(v) for v in worst.values()), "layer calls")


if __name__ == "__main__":
    main(sys.argv[1:])
