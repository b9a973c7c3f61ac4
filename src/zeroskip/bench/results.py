"""Result rows of the suite and sweep runs: their fields, the accuracy tolerance per precision,
the JSON/CSV files and the printed table.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..accuracy import TOLERANCE  # noqa: F401  (per precision name; zeroskip.bench.results' API)
from .suites import Layer

FIELDS = ("suite", "layer", "op", "shape", "dtype", "layout", "batch", "sparsity", "input", "algo", "ours_us", "baseline_us",
          "compiled_us", "speedup", "speedup_compiled", "tflops", "baseline_tflops", "rel_err", "ok",
          "gpu", "torch", "triton", "cudnn", "date", "notes")


def make_row(layer: Layer, op, dtype, batch, sparsity, algo, ours_us, baseline_us, compiled_us,
             rel_err, env, notes=(), suite=None, layout=None) -> dict:
    """One result row (FIELDS); timings in microseconds, None where not measured; `input` (the
    source of the layer's input, bench.inputs) and the versions come from `env`."""
    flops = layer.flops(batch)
    shape = layer.shape(batch)
    shape["pool"] = layer.pool_after if op == "conv2d_pool" else None

    def ratio(a, b):
        return a / b if a and b else None
    return {"suite": suite or layer.suite, "layer": layer.name, "op": op, "shape": shape, "dtype": dtype, "layout": layout,
            "batch": batch, "sparsity": sparsity, "input": env.get("input"), "algo": algo, "ours_us": ours_us,
            "baseline_us": baseline_us, "compiled_us": compiled_us,
            "speedup": ratio(baseline_us, ours_us), "speedup_compiled": ratio(compiled_us, ours_us),
            "tflops": flops / ours_us / 1e6 if ours_us else None,
            "baseline_tflops": flops / baseline_us / 1e6 if baseline_us else None,
            "rel_err": rel_err, "ok": rel_err is not None and rel_err <= TOLERANCE[dtype],
            **{k: env.get(k) for k in ("gpu", "torch", "triton", "cudnn", "date")}, "notes": list(notes)}


def write_json(data, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def write_csv(rows, path, fields) -> None:
    """Dicts as CSV columns `fields` (other keys dropped)."""
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        out.writeheader()
        out.writerows(rows)


def write_results(rows, path) -> Path:
    """Rows as JSON at `path` and as CSV beside it (shape as compact JSON, notes joined by '; ')."""
    path = write_json(rows, path)
    write_csv(({**r, "shape": json.dumps(r["shape"], separators=(",", ":")),
                "notes": "; ".join(r.get("notes") or [])} for r in rows), path.with_suffix(".csv"), FIELDS)
    return path


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def best_layout(rows) -> dict:
    """For each (suite, op, dtype, batch, algo) with layers timed in both NCHW and channels_last:
    (layers, and geometric means of cuDNN's faster time of the two per layer over ours in its faster
    layout, ours in NCHW, ours in channels_last). cuDNN's best layout depends on the dtype and the
    batch (TF32 on an H200: NCHW at batch 1, channels_last at batch 32; BENCHMARKS.md)."""
    pairs = {}
    for r in rows:
        if r.get("ours_us") and r.get("baseline_us") and r.get("layout") in ("nchw", "channels_last"):
            key = (r["suite"], r["op"], r["dtype"], r["batch"], r["algo"])
            pairs.setdefault(key, {}).setdefault(r["layer"], {})[r["layout"]] = r
    out = {}
    for key, layers in pairs.items():
        both = [(p["nchw"], p["channels_last"]) for p in layers.values() if len(p) == 2]
        if both:
            cudnn = [min(a["baseline_us"], b["baseline_us"]) for a, b in both]
            out[key] = (len(both), geomean([c / min(a["ours_us"], b["ours_us"]) for c, (a, b) in zip(cudnn, both)]),
                        geomean([c / a["ours_us"] for c, (a, _) in zip(cudnn, both)]),
                        geomean([c / b["ours_us"] for c, (_, b) in zip(cudnn, both)]))
    return out


def _algo_cell(row) -> str:
    """The row's algo, with what "auto" ran when compare() noted it (auto:winograd)."""
    ran = [n[len("auto ran "):] for n in row.get("notes") or () if n.startswith("auto ran ")]
    return f"{row['algo']}:{ran[0]}" if ran else row["algo"]


def print_table(rows) -> None:
    """Aligned per-row table, then the geometric-mean speedup per (suite, op, dtype, batch, algo)."""
    head = ("suite", "layer", "op", "dtype", "batch", "algo", "input", "sparsity", "ours_us", "cudnn_us", "speedup",
            "compiled_us", "vs_compiled", "TFLOPS", "rel_err", "ok")
    table = [head] + [(r["suite"], r["layer"], r["op"], r["dtype"], str(r["batch"]), _algo_cell(r),
                       r.get("input") or "-", _fmt(r["sparsity"], ".3f"), _fmt(r["ours_us"], ".1f"),
                       _fmt(r["baseline_us"], ".1f"),
                       _fmt(r["speedup"], ".2f"), _fmt(r["compiled_us"], ".1f"),
                       _fmt(r["speedup_compiled"], ".2f"), _fmt(r["tflops"], ".2f"),
                       _fmt(r["rel_err"], ".1e"), "yes" if r["ok"] else "NO") for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for t in table:
        print("  ".join(c.rjust(wd) if i >= 4 and i != 6 else c.ljust(wd) for i, (c, wd) in enumerate(zip(t, widths))))
    groups = {}
    for r in rows:
        groups.setdefault((r["suite"], r["op"], r["dtype"], r.get("layout"), r["batch"], r["algo"]), []).append(r)
    print("\ngeometric-mean speedup over cuDNN (>1: ours faster)")
    for (suite, op, dtype, layout, batch, algo), g in groups.items():
        comp = geomean([r["speedup_compiled"] for r in g])
        extra = f", vs torch.compile {comp:.2f}x" if comp else ""
        print(f"  {suite} {op} {dtype}{' ' + layout if layout else ''} batch {batch} algo {algo}: "
              f"{_fmt(geomean([r['speedup'] for r in g]), '.2f')}x over {len(g)} layers{extra}")
    best = best_layout(rows)
    if best:
        print("\nagainst cuDNN's faster layout per layer (rows timed in both layouts)")
        for (suite, op, dtype, batch, algo), (n, either, nchw, cl) in best.items():
            print(f"  {suite} {op} {dtype} batch {batch} algo {algo}: ours in its faster layout {either:.2f}x, "
                  f"in nchw {nchw:.2f}x, in channels_last {cl:.2f}x over {n} layers")
    failed = [r for r in rows if not r["ok"]]
    if failed:
        print(f"  {len(failed)} row(s) failed the accuracy check or did not run: "
              + ", ".join(f"{r['layer']}/{r['op']}/{r['algo']}" for r in failed))
