"""Realistic sparse inputs built from the paper authors' VGG-19 feature maps.

The data (`/work/shared/paper-data`, see its README) is never copied into the project: every function
takes its folder as `data`; default: $ZEROSKIP_PAPER_DATA, else ../shared/paper-data beside the repo
root or the current directory.

What the data is: one channel of a pretrained VGG-19's post-ReLU feature map per layer.
`feature_<k>` is the output of torchvision module `features.<k-2>` (files come in equal pairs because
the ReLU is in place), so conv `features.<j>` reads `feature_<j+1>`; the suite records it as
`real_feature`. (The paper's all_conv_name.txt, recorded as `paper_feature`, maps the same files to
the 16 convs in order; that mapping is off for the first two convs: features.0 reads the dense image,
and features.2 reads feature_2/3, not feature_4, which is its own output.)

How a layer's input is built (`realistic_input`); zero pattern from the data, values fresh each call:
1. A score field from the real map R: R / max(R) where R > 0, and minus the distance to the nearest
   non-zero pixel elsewhere. Thresholding it at the real zero fraction gives back R's zero pattern
   exactly; more zeros switch off the weakest activations first, fewer zeros grow the active regions
   at their edges, as lower or higher activation would.
2. Each (sample, channel) map = that field resized (nearest) to the layer's H x W, under a random one
   of the 8 flips/transposes and a random cyclic shift, plus tiny noise to break ties.
3. Per-channel zero fractions = target + N(0, spread) clipped to [0, 1], shifted so that their mean is
   the target (bisection); each map then zeroes exactly its fraction of lowest scores.
4. Non-zeros get fresh |randn| * (mean of R's non-zeros).
ASSUMPTIONS: (a) the one published channel's zero fraction stands for its whole layer; (b) first
layers (`image_input`) read a dense normalised image: randn, no zeros; (c) AlexNet, GoogLeNet and
LeNet-5 have no published maps: a layer at depth fraction d (0 first conv .. 1 last) uses the
real map of the VGG-19 layer nearest in depth and, as target, the mean zero fraction of the VGG-19
layers within half a layer-spacing of d (`proxy`). Real channel densities vary more than `spread`.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .suites import Layer, load_suite

ENV_VAR = "ZEROSKIP_PAPER_DATA"
_CHUNK = 256  # maps scored at once, to bound peak memory on large layers


def paper_data_path(data=None) -> Path:
    """The paper-data folder: `data`, else $ZEROSKIP_PAPER_DATA, else ../shared/paper-data next to
    the repo root or the current directory. Raises FileNotFoundError naming what was tried."""
    if data is not None:
        tried = [Path(data)]
    elif os.environ.get(ENV_VAR):
        tried = [Path(os.environ[ENV_VAR])]
    else:
        root = Path(__file__).resolve().parents[3]
        tried = list(dict.fromkeys(p.resolve() for p in (root.parent / "shared" / "paper-data",
                                                        Path.cwd().parent / "shared" / "paper-data")))
    for path in tried:
        if (path / "vgg19").is_dir():
            return path
    raise FileNotFoundError(
        f"paper data not found at {' or '.join(str(p) for p in tried)} (expected a folder with vgg19/ "
        f"inside); pass --data PATH or set {ENV_VAR}")


def load_feature_map(path) -> torch.Tensor:
    """One of the authors' whitespace-separated float maps as an (H, W) float32 tensor. H, W come from
    a `__H_W.txt` file name, else from the row layout, else a square is assumed."""
    path = Path(path)
    text = path.read_text()
    values = np.array(text.split(), dtype=np.float32)
    parts = path.stem.split("__")
    if len(parts) == 2 and "_" in parts[1]:
        h, w = (int(v) for v in parts[1].split("_"))
    else:
        rows = [r for r in text.splitlines() if r.strip()]
        if len(rows) > 1:
            h, w = len(rows), len(rows[0].split())
        else:
            h = w = int(round(values.size ** 0.5))
    if h * w != values.size:
        raise ValueError(f"{path}: {values.size} values do not make a {h}x{w} map")
    return torch.from_numpy(values.reshape(h, w).copy())


def load_user_input(path) -> torch.Tensor:
    """A user's saved input tensor (torch.save of an (N, C, H, W) or (C, H, W) tensor) on the CPU."""
    x = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4) or not x.is_floating_point():
        raise ValueError(f"{path}: expected a floating (N, C, H, W) or (C, H, W) tensor")
    return x if x.dim() == 4 else x.unsqueeze(0)


def score_field(real: torch.Tensor) -> torch.Tensor:
    """Step 1 of the module docstring: >0 on R's support (R / max R), -distance off it."""
    support = real > 0
    if not support.any():
        return -1.0 - torch.rand(real.shape)  # all zero: no structure to keep
    grown = support.float()[None, None]
    dist = torch.zeros_like(grown)
    for step in range(max(real.shape)):  # chessboard distance by repeated 3x3 dilation
        dist += 1.0 - grown
        grown = F.max_pool2d(grown, 3, 1, 1)
        if step % 8 == 7 and bool(grown.min() > 0):
            break
    return torch.where(support, real / real.max(), -dist[0, 0])


@functools.lru_cache(maxsize=64)
def _cached_score(path: str) -> torch.Tensor:
    return score_field(_cached_map(path))


def _maps(score, count, shape, device, generator):
    """Step 2: `count` transformed copies of `score` at `shape`, on `device`."""
    h, w = shape
    base = F.interpolate(score[None, None], size=(h, w), mode="nearest")[0, 0]
    variants = [base, base.flip(0), base.flip(1), base.flip(0).flip(1)]
    if h == w:
        variants += [v.t() for v in variants]
    variants = torch.stack(variants).to(device)
    pick = (_rand(count, generator, device) * len(variants)).long().clamp(max=len(variants) - 1)
    sh = (_rand(count, generator, device) * h).long().clamp(max=h - 1)
    sw = (_rand(count, generator, device) * w).long().clamp(max=w - 1)
    v = variants[pick]
    rows = (torch.arange(h, device=device)[None] + sh[:, None]) % h
    v = v.gather(1, rows[:, :, None].expand(count, h, w))
    cols = (torch.arange(w, device=device)[None] + sw[:, None]) % w
    v = v.gather(2, cols[:, None, :].expand(count, h, w))
    noise = _rand(v.shape, generator, device)
    return torch.where(v > 0, v + 1e-3 * noise, v + 0.5 * noise)


def channel_fractions(target: float, count: int, spread: float, generator=None) -> torch.Tensor:
    """Step 3: per-map zero fractions in [0, 1] with mean `target` (exact up to float error)."""
    e = spread * torch.randn(count, generator=generator, dtype=torch.float64)
    if target <= 0.0 or target >= 1.0 or spread == 0:
        return torch.full((count,), float(min(max(target, 0.0), 1.0)), dtype=torch.float64)
    lo, hi = -1.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (target + e + mid).clamp(0, 1).mean() < target:
            lo = mid
        else:
            hi = mid
    return (target + e + (lo + hi) / 2).clamp(0, 1)


def _rand(shape, generator, device, normal=False):
    """Uniform (or normal) noise: on `device` directly, or from a seeded CPU `generator`."""
    if generator is None:
        return torch.randn(shape, device=device) if normal else torch.rand(shape, device=device)
    x = torch.randn(shape, generator=generator) if normal else torch.rand(shape, generator=generator)
    return x.to(device)


def _threshold(scores: torch.Tensor, zeros: torch.Tensor, scale: float, generator) -> torch.Tensor:
    """Zeroes exactly the `zeros[i]` lowest scores of map i (by rank, so ties cannot change the
    count); the rest get |randn| * scale, never 0."""
    m, h, w = scores.shape
    flat = scores.reshape(m, h * w)
    order = flat.argsort(dim=1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=flat.device).expand(m, -1).contiguous())
    keep = rank >= zeros.to(flat.device).long()[:, None]
    values = _rand(flat.shape, generator, flat.device, normal=True).abs().clamp_min(2 ** -10)
    return torch.where(keep, values * scale, 0.0).reshape(m, h, w)


def _structured(score, scale, n, c, h, w, fractions, device, generator):
    out = torch.empty(n * c, h, w, device=device)
    zeros = torch.round(fractions * (h * w))
    for start in range(0, n * c, _CHUNK):
        stop = min(start + _CHUNK, n * c)
        maps = _maps(score, stop - start, (h, w), device, generator)
        out[start:stop] = _threshold(maps, zeros[start:stop], scale, generator)
    return out.reshape(n, c, h, w)


def proxy(layer: Layer, data=None) -> tuple[str, float]:
    """(real feature file, target zero fraction) for a layer; assumption (c) for non-VGG suites."""
    vgg = [v for v in load_suite("vgg19") if v.real_feature]
    if layer.real_feature:
        return layer.real_feature, zero_fraction(real_map(layer.real_feature, data))
    vgg_depth = [(i + 1) / len(vgg) for i in range(len(vgg))]  # after the image layer
    nearest = min(range(len(vgg)), key=lambda i: abs(vgg_depth[i] - layer.depth))
    half = max(0.5 / max(layer.suite_size - 1, 1), 0.5 / len(vgg)) + 1e-9
    near = [v for v, d in zip(vgg, vgg_depth) if abs(d - layer.depth) <= half] or [vgg[nearest]]
    target = float(np.mean([zero_fraction(real_map(v.real_feature, data)) for v in near]))
    return vgg[nearest].real_feature, target


def real_map(name: str, data=None) -> torch.Tensor:
    """A VGG-19 feature file by name (cached per folder; a copy is returned)."""
    return _cached_map(str(paper_data_path(data) / "vgg19" / "feature" / name)).clone()


@functools.lru_cache(maxsize=64)
def _cached_map(path: str) -> torch.Tensor:
    return load_feature_map(path)


def zero_fraction(x: torch.Tensor) -> float:
    return float((x == 0).float().mean())


def realistic_input(layer: Layer, batch: int, data=None, device="cpu", dtype=torch.float32,
                    spread: float = 0.05, generator=None) -> torch.Tensor:
    """A fresh (batch, C, H, W) input for `layer` with the real zero structure (module docstring)."""
    n, c, h, w = batch, layer.in_channels, layer.height, layer.width
    if layer.image_input:
        return _rand((n, c, h, w), generator, device, normal=True).to(dtype)
    name, target = proxy(layer, data)
    real = real_map(name, data)
    score = _cached_score(str(paper_data_path(data) / "vgg19" / "feature" / name))
    scale = float(real[real > 0].mean()) if (real > 0).any() else 1.0
    fractions = channel_fractions(target, n * c, spread, generator)
    x = _structured(score, scale, n, c, h, w, fractions, device, generator)
    return x.to(dtype)


def sweep_input(shape, sparsity: float, structure: str = "real", data=None, device="cpu",
                dtype=torch.float32, generator=None) -> torch.Tensor:
    """An (N, C, H, W) input with exactly round(sparsity * numel) zeros (spread evenly over maps).

    structure "real": zeros follow the score field of the VGG-19 map nearest in size (features.19's
    28x28 map on ties); "random": independent uniformly placed zeros. Non-zeros are |randn|.
    """
    if structure not in ("real", "random"):
        raise ValueError(f"structure must be 'real' or 'random', got {structure!r}")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity!r}")
    n, c, h, w = shape
    total = int(round(sparsity * n * c * h * w))
    zeros = torch.full((n * c,), total // (n * c), dtype=torch.float64)
    zeros[: total % (n * c)] += 1
    fractions = zeros / (h * w)
    if structure == "random":
        out = torch.empty(n * c, h, w, device=device)
        for start in range(0, n * c, _CHUNK):
            stop = min(start + _CHUNK, n * c)
            maps = _rand((stop - start, h, w), generator, device)
            out[start:stop] = _threshold(maps, zeros[start:stop], 1.0, generator)
        return out.reshape(n, c, h, w).to(dtype)
    layers = [v for v in load_suite("vgg19") if v.real_feature]
    best = min(layers, key=lambda v: (abs(v.height - h), v.name != "features.19"))
    score = _cached_score(str(paper_data_path(data) / "vgg19" / "feature" / best.real_feature))
    return _structured(score, 1.0, n, c, h, w, fractions, device, generator).to(dtype)
