"""Ours against cuDNN's faster layout, per row: two `bench` result files of the same suite, ops,
dtype and batches, one per layout (--layout nchw and --layout channels_last), combined row by row.
(`zeroskip bench --layout both` times both layouts in one run and prints the same summary.)

PYTHONPATH=src python3 scripts/best_layout.py NCHW.json CHANNELS_LAST.json

For each (layer, op, batch): cuDNN's faster time of the two files against ours in either layout
and against ours in each, with the geometric means (zeroskip.bench.results.best_layout)."""
import json
import sys

from zeroskip.bench.results import best_layout

rows = [r for p in sys.argv[1:3] for r in json.load(open(p))]
by = {}
for r in rows:
    if r.get("ours_us") and r.get("baseline_us"):
        by.setdefault((r["batch"], r["layer"], r["op"]), {})[r["layout"]] = r
for (batch, layer, op), p in sorted(by.items()):
    if len(p) == 2:
        a, b = p["nchw"], p["channels_last"]
        cudnn = min(a["baseline_us"], b["baseline_us"])
        print(f"{layer:12s} {op:11s} batch {batch:3d}  cuDNN nchw {a['baseline_us']:8.1f} channels_last "
              f"{b['baseline_us']:8.1f} us | ours {a['ours_us']:8.1f} {b['ours_us']:8.1f} us | best/best "
              f"{cudnn / min(a['ours_us'], b['ours_us']):.2f}x  ours nchw {cudnn / a['ours_us']:.2f}x  "
              f"ours channels_last {cudnn / b['ours_us']:.2f}x")
for (suite, op, dtype, batch, algo), (n, either, nchw, cl) in best_layout(rows).items():
    print(f"batch {batch}: geomean over cuDNN's faster layout ({n} layers): ours in either {either:.2f}x, "
          f"ours in nchw {nchw:.2f}x, ours in channels_last {cl:.2f}x")
