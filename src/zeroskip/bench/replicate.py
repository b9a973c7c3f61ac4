"""The paper's own experiment (Xu et al., arXiv 1909.09927), redone fairly, beside their reported times.

Their setup (paper-data README): ONE input channel, ONE 3x3 filter, stride 1, valid padding, no bias,
no activation, batch 32 = 32 copies of one map, float32. ECR = conv; PECR = conv then 2x2 max pool
over the raw conv outputs (their README: "max-reduces" the four conv outputs; no ReLU), so ours runs
conv2d_pool(activation=None) against F.conv2d -> F.max_pool2d(2, 2).

Cases, all from the data folder:
  conv   vgg19/all_conv_name.txt[i] with vgg19/kernel_name.txt[i] (both in layer order), against
         reported-times/ECR_{ECR,cudnn}_time_vgg_batchsize32.txt line i.
  pool   vgg19/pooling_name.txt: feature_<k> is the output of conv features.<k-2> (ReLU in place), so
         its kernel is features.<k-2>; against PECR_{pecr,cudnn}_time_vgg_batchsize32.txt.
  sweep  sparsity-sweep/0k.txt (28x28, k*10% zeros) against ECR_*_time_sparsity_batchsize32.txt. Which
         kernel they used is not in the data: we use features.19 (the first 28x28 conv); the kernel's
         values do not change the work done.
What differs, on purpose: our times are GPU time only (CUDA-graph replay, median; inputs and outputs
already on the GPU; no allocation or copies outside the op), the same precision on both sides (fp32
with TF32 off, or fp16 on both sides). THEIR times include cudaMalloc, host<->device copies and
cudaFree, their cuDNN ran fp16 tensor cores against their fp32 kernel, and for conv+pool their cuDNN
side copied the conv result to the host and back: their numbers are mostly fixed overhead.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..progress import bar, echo
from .results import TOLERANCE
from .run import env_info, precision, rel_error
from .sparsity import load_feature_map, paper_data_path
from .timing import measure_same

SWEEP_KERNEL = "features.19.weight.txt"


def _lines(path: Path) -> list[str]:
    return [t for t in path.read_text().split() if t]


def cases(data=None) -> list[dict]:
    """Every case of the paper's experiment with their reported milliseconds."""
    root = paper_data_path(data)
    rt = root / "reported-times"
    times = {p.stem: [float(v) for v in _lines(p)] for p in rt.glob("*.txt")}
    conv_files = _lines(root / "vgg19" / "all_conv_name.txt")
    kernels = [k + ".txt" for k in _lines(root / "vgg19" / "kernel_name.txt")]
    out = []
    for i, (feat, ker) in enumerate(zip(conv_files, kernels)):
        out.append({"kind": "conv", "case": f"conv{i + 1} {ker.split('.weight')[0]}",
                    "feature": f"vgg19/feature/{feat}", "kernel": f"vgg19/kernel/{ker}",
                    "their_cudnn_ms": times["ECR_cudnn_time_vgg_batchsize32"][i],
                    "their_ours_ms": times["ECR_ECR_time_vgg_batchsize32"][i]})
    for i, feat in enumerate(_lines(root / "vgg19" / "pooling_name")):
        conv = int(feat.split("__")[0].split("_")[1]) - 2
        out.append({"kind": "pool", "case": f"pool{i + 1} features.{conv}",
                    "feature": f"vgg19/feature/{feat}", "kernel": f"vgg19/kernel/features.{conv}.weight.txt",
                    "their_cudnn_ms": times["PECR_cudnn_time_vgg_batchsize32"][i],
                    "their_ours_ms": times["PECR_pecr_time_vgg_batchsize32"][i]})
    for i, name in enumerate(_lines(root / "sparsity-sweep" / "sparsity_name.txt")):
        out.append({"kind": "sweep", "case": f"sweep {int(name.split('.')[0]) * 10}%",
                    "feature": f"sparsity-sweep/{name}", "kernel": f"vgg19/kernel/{SWEEP_KERNEL}",
                    "their_cudnn_ms": times["ECR_cudnn_time_sparsity_batchsize32"][i],
                    "their_ours_ms": times["ECR_ECR_time_sparsity_batchsize32"][i]})
    return out


def run_replicate(data=None, dtype: str = "fp32", algos=("ecr", "auto"), batch: int = 32,
                  progress: bool = False) -> list[dict]:
    """Times each case on the GPU: ours (each algo) vs cuDNN, same precision. One row per case.
    progress: a bar over the cases on stderr."""
    import zeroskip
    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"dtype must be 'fp32' or 'fp16' for the replication, got {dtype!r}")
    root = paper_data_path(data)
    tdtype = torch.float32 if dtype == "fp32" else torch.float16
    env, rows, all_cases = env_info(), [], cases(root)
    with precision(dtype), bar(len(all_cases), f"replicate {dtype} batch {batch}", progress, "case") as done:
        for n, case in enumerate(all_cases, 1):
            echo(f"[{n}/{len(all_cases)}] {case['case']}")
            fmap = load_feature_map(root / case["feature"])
            x = fmap[None, None].expand(batch, 1, *fmap.shape).contiguous().to("cuda", tdtype)
            w = load_feature_map(root / case["kernel"]).reshape(1, 1, 3, 3).to("cuda", tdtype)
            if case["kind"] == "pool":
                def base(x, w):
                    return F.max_pool2d(F.conv2d(x, w), 2, 2)

                def mine(x, w, algo):
                    return zeroskip.conv2d_pool(x, w, activation=None, pool="max", pool_size=2, algo=algo)
            else:
                def base(x, w):
                    return F.conv2d(x, w)

                def mine(x, w, algo):
                    return zeroskip.conv2d(x, w, activation=None, algo=algo)
            ref = base(x.double(), w.double())
            row = {**case, "h": fmap.shape[0], "w": fmap.shape[1], "sparsity": float((x == 0).float().mean()),
                   "dtype": dtype, "batch": batch,
                   "their_speedup": case["their_cudnn_ms"] / case["their_ours_ms"], "ours": {}, **env}
            base_us = None
            for algo in algos:
                try:
                    err = rel_error(mine(x, w, algo), ref)
                    t_ours, t_base = measure_same(lambda: mine(x, w, algo), lambda: base(x, w))
                except Exception as exc:
                    echo(f"    {algo} failed: {type(exc).__name__}: {exc}")
                    row["ours"][algo] = {"us": None, "speedup": None, "rel_err": None, "ok": False,
                                         "method": None}
                    continue
                base_us = t_base.us if base_us is None else base_us
                row["ours"][algo] = {"us": t_ours.us, "speedup": t_base.us / t_ours.us, "rel_err": err,
                                     "ok": err <= TOLERANCE[dtype], "method": t_ours.method}
            row["cudnn_us"] = base_us
            rows.append(row)
            done.update()
    return rows


def print_replicate(rows) -> None:
    """Their reported numbers and ours side by side, every column labelled with whose it is."""
    if not rows:
        return
    algos = list(rows[0]["ours"])
    print("THEIRS = times reported by the paper's authors (batch 32, RTX 2080-class GPU, CUDA 10.2, cuDNN 7.6;")
    print("         their timer includes cudaMalloc + host<->device copies + cudaFree, their cuDNN ran fp16")
    print("         tensor cores vs their fp32 kernel). OURS = GPU time only, CUDA-graph median, inputs already")
    print(f"         on the GPU, {rows[0]['dtype']} on both sides, on {rows[0]['gpu']}. All times in microseconds.")
    head = ["case", "HxW", "zeros", "THEIRS cudnn", "THEIRS ecr/pecr", "THEIRS x", "OURS cudnn"]
    for a in algos:
        head += [f"OURS {a}", f"OURS {a} x"]
    table = [head]
    for r in rows:
        line = [r["case"], f"{r['h']}x{r['w']}", f"{r['sparsity']:.2f}", f"{r['their_cudnn_ms'] * 1e3:.0f}",
                f"{r['their_ours_ms'] * 1e3:.0f}", f"{r['their_speedup']:.2f}",
                "-" if r["cudnn_us"] is None else f"{r['cudnn_us']:.1f}"]
        for a in algos:
            o = r["ours"][a]
            line += ["-" if o["us"] is None else f"{o['us']:.1f}" + ("" if o["ok"] else " (WRONG)"),
                     "-" if o["speedup"] is None else f"{o['speedup']:.2f}"]
        table.append(line)
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for t in table:
        print("  ".join(c.ljust(wd) if i == 0 else c.rjust(wd) for i, (c, wd) in enumerate(zip(t, widths))))
    print("x = cuDNN time / zero-skipping time (>1: zero skipping faster). THEIRS x compares their own two "
          "numbers; OURS x compares ours.")
    bad = [r["case"] for r in rows if any(o["ok"] is False for o in r["ours"].values())]
    if bad:
        print(f"accuracy check failed or did not run for: {', '.join(bad)}")
