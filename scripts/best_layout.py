"""Ours against cuDNN's faster layout, per row: two `bench` result files of the same suite, ops,
dtype and batches, one per layout (--layout nchw and --layout channels_last), combined row by row.

PYTHONPATH=src python3 scripts/best_layout.py NCHW.json CHANNELS_LAST.json

For each (layer, op, batch): cuDNN's faster time of the two files against ours in either layout
and against ours in each, with the geometric mean per batch."""
import json
import sys

from zeroskip.bench.results import geomean


def rows_of(path):
    return {(r["layer"], r["op"], r["batch"]): r for r in json.load(open(path)) if r.get("ours_us")}


a, b = (rows_of(p) for p in sys.argv[1:3])
names = [json.load(open(p))[0]["layout"] for p in sys.argv[1:3]]
per_batch = {}
for key in sorted(set(a) & set(b), key=lambda k: (k[2], k[0])):
    ra, rb = a[key], b[key]
    cudnn = min(ra["baseline_us"], rb["baseline_us"])
    ratios = (cudnn / min(ra["ours_us"], rb["ours_us"]), cudnn / ra["ours_us"], cudnn / rb["ours_us"])
    per_batch.setdefault(key[2], []).append(ratios)
    print(f"{key[0]:12s} {key[1]:11s} batch {key[2]:3d}  cuDNN {names[0]} {ra['baseline_us']:8.1f} "
          f"{names[1]} {rb['baseline_us']:8.1f} us | ours {ra['ours_us']:8.1f} {rb['ours_us']:8.1f} us | "
          f"best/best {ratios[0]:.2f}x  ours {names[0]} {ratios[1]:.2f}x  ours {names[1]} {ratios[2]:.2f}x")
for batch, rs in per_batch.items():
    print(f"batch {batch}: geomean over cuDNN's faster layout: ours in either {geomean([r[0] for r in rs]):.2f}x, "
          f"ours in {names[0]} {geomean([r[1] for r in rs]):.2f}x, ours in {names[1]} {geomean([r[2] for r in rs]):.2f}x")
