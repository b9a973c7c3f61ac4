"""Markdown tables of benchmark rows (for BENCHMARKS.md): one table per (suite, op, dtype, layout, batch),
a row per layer with the input's zero fraction, cuDNN's time and each algo's time and speedup, and
the geometric-mean speedup per algo.

python -m zeroskip.bench.report benchmarks/bench-*.json > tables.md
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

from .results import geomean


def markdown(rows) -> str:
    groups = defaultdict(list)
    for r in rows:
        if r.get("ours_us") is not None:
            groups[(r["suite"], r["op"], r["dtype"], r.get("layout"), r["batch"])].append(r)
    out = []
    for (suite, op, dtype, layout, batch), items in groups.items():
        algos = list(dict.fromkeys(r["algo"] for r in items))
        layers = list(dict.fromkeys(r["layer"] for r in items))
        cell = {(r["layer"], r["algo"]): r for r in items}
        fmt = f" {layout}," if layout else ""
        out.append(f"**{suite} {op}, {dtype},{fmt} batch {batch}** (GPU us). The cuDNN column is the time measured "
                   f"beside the first algo; each x divides the cuDNN time measured beside that algo (the two "
                   f"differ by run-to-run noise) by ours.\n")
        out.append("| layer | zeros | cuDNN | " + " | ".join(algos) + " |")
        out.append("|---|---|---|" + "---|" * len(algos))
        for name in layers:
            first = next(cell[(name, a)] for a in algos if (name, a) in cell)
            parts = [f"{cell[(name, a)]['ours_us']:.1f} (x{cell[(name, a)]['speedup']:.2f})"
                     if (name, a) in cell else "-" for a in algos]
            out.append(f"| {name} | {first['sparsity']:.2f} | {first['baseline_us']:.1f} | " + " | ".join(parts) + " |")
        means = [f"x{geomean([r['speedup'] for r in items if r['algo'] == a]):.2f}" for a in algos]
        out.append("| geomean | | | " + " | ".join(means) + " |\n")
    return "\n".join(out)


def main(paths) -> None:
    rows = [r for p in paths for r in json.load(open(p))]
    print(markdown(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
