"""Plots of result rows (needs matplotlib): speedup against input sparsity, speedup per layer,
speedup per layer of one converted model."""
from __future__ import annotations

from collections import Counter
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


def plot_model(result, png) -> Path:
    """Bar chart of one `bench --model` result: per converted layer (one bar per measured call),
    cuDNN's time over the chosen algo's, coloured by that algo; the whole model's speedups over
    eager and torch.compile in the title. A layer without both times gets no bar and "n/a"."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    layers = result["layers"]
    repeated = Counter(layer["name"] for layer in layers)
    labels = [layer["name"] + (f" {'x'.join(map(str, layer['shape']))}" if repeated[layer["name"]] > 1 else "")
              for layer in layers]
    algos = list(dict.fromkeys(layer["algo"] for layer in layers))
    colours = {a: "0.6" if a == "torch" else f"C{i % 10}" for i, a in enumerate(algos)}
    fig, ax = plt.subplots(figsize=(max(6.0, 2 + 0.3 * len(layers)), 4.5))
    for algo in algos:
        at = [i for i, layer in enumerate(layers) if layer["algo"] == algo and layer.get("speedup") is not None]
        ax.bar(at, [layers[i]["speedup"] for i in at], 0.8, color=colours[algo], label=algo)
    for i, layer in enumerate(layers):
        if layer.get("speedup") is None:
            ax.text(i, 0.02, "n/a", ha="center", va="bottom", rotation=90, fontsize=6)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(layers)), labels, rotation=90, fontsize=6)
    ax.set_xlim(-0.6, max(len(layers), 1) - 0.4)
    ax.set_ylabel("speedup over cuDNN (x)")

    def x(v):
        return "-" if v is None else f"{v:.2f}x"
    r = result
    ax.set_title(f"{r['model']} {r['dtype']} batch {r['batch']} {r['image_size']}x{r['image_size']} algo {r['algo']} "
                 f"on {r['gpu']}\nwhole model: {x(r['speedup'])} over eager, {x(r['speedup_vs_compiled'])} over "
                 f"torch.compile", fontsize=9)
    if algos:
        ax.legend(title="chosen algo", fontsize=7, title_fontsize=7)
    else:
        ax.text(0.5, 0.5, "no layer measured", transform=ax.transAxes, ha="center", va="center")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return Path(png)
