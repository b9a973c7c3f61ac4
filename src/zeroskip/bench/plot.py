"""Plots of result rows (needs matplotlib): speedup against input sparsity, speedup per layer."""
from __future__ import annotations

from pathlib import Path


def plot_sweep(rows, png) -> Path:
    """Speedup vs input sparsity, one line per (layer, algo), break-even at speedup 1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = {}
    for r in rows:
        groups.setdefault((r["suite"], r["layer"], r["algo"]), []).append(r)
    # One colour per layer and one line style per algo: with more than ten lines a colour cycle
    # alone gives two lines the same colour.
    colours = {k: f"C{i % 10}" for i, k in enumerate(dict.fromkeys((s, l) for s, l, _ in groups))}
    styles = {a: st for a, st in zip(dict.fromkeys(a for _, _, a in groups), ("-o", "--s", ":^", "-.D", "-v"))}
    for (suite, layer, algo), g in groups.items():
        g = sorted((r for r in g if r["speedup"]), key=lambda r: r["sparsity"])
        sh = g[0]["shape"] if g else {}
        label = f"{layer} {sh.get('c')}->{sh.get('cout')} {sh.get('h')}x{sh.get('w')} ({algo})"
        ax.plot([r["sparsity"] for r in g], [r["speedup"] for r in g], styles.get(algo, "-x"),
                color=colours[(suite, layer)], label=label)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("input zero fraction")
    ax.set_ylabel("speedup over cuDNN (x)")
    if rows:
        ax.set_title(f"zeroskip conv2d vs cuDNN, {rows[0]['dtype']}, batch {rows[0]['batch']}, {rows[0]['gpu']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return Path(png)


def plot_speedups(rows, png) -> Path:
    """Bar chart of speedup per layer (one bar group per op/dtype/batch/algo) for a suite run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = sorted({(r["op"], r["dtype"], r["batch"], r["algo"]) for r in rows})
    layers = list(dict.fromkeys(f"{r['suite']}:{r['layer']}" for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(layers) * max(1, len(keys)) ** 0.5), 4.5))
    width = 0.8 / max(1, len(keys))
    for k, key in enumerate(keys):
        vals = {f"{r['suite']}:{r['layer']}": r["speedup"] or 0 for r in rows
                if (r["op"], r["dtype"], r["batch"], r["algo"]) == key}
        ax.bar([i + k * width for i in range(len(layers))], [vals.get(n, 0) for n in layers], width,
               label=" ".join(map(str, key)))
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(layers))], layers, rotation=90, fontsize=6)
    ax.set_ylabel("speedup over cuDNN (x)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return Path(png)
