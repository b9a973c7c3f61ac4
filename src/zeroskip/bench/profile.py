"""What each conv's input leaves to skip on real images: zero fraction, dead channels, empty
(8x8 output tile x 16-channel) blocks and the per-tile channel-compaction bound (formats.skip_stats).

Zero skipping pays only where a conv's input holds many zeros, and that depends on the trained
weights and the images, not on the layer shape. `skip_profile(model, inputs)` runs a model over
prepared inputs and records, with a forward pre-hook on every nn.Conv2d, skip_stats per image;
`profile_model` does it for a model of bench.models ("hed": HED's trained VGG-16; --weights for
others) over a folder of images or the built-in photos (bench.photos). Random-init models are
seeded (the same numbers every run). No timing: CPU or GPU.

Images: PNG/JPEG through Pillow if it is installed; .npy / .pt arrays of shape (C, H, W),
(H, W, C) or (H, W) with values in [0, 1] (integer arrays: 0..255), not yet normalised. Each is
resized (shorter side to the image size, bilinear with antialiasing) and centre-cropped square,
converted to the model's channel count (RGB to grey by ITU-R 601 luma weights, grey to RGB by
repetition) and normalised with the ImageNet mean and std (for one channel: their averages), or
for "hed" as HED wants it (BGR minus its mean, 0..255).
"""
from __future__ import annotations

import datetime
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..formats.stats import skip_stats
from ..progress import bar
from . import hed
from .models import build_model, input_shape, load_weights

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = sum(MEAN) / 3, sum(STD) / 3
PIL_SUFFIXES, ARRAY_SUFFIXES = (".png", ".jpg", ".jpeg"), (".npy", ".pt")


class ImagesError(ValueError):
    """An --images folder that is missing, holds no images, or holds an unreadable one."""


def _first_line(exc) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def find_images(folder, limit: int | None = None) -> list[Path]:
    """The image files directly in `folder`, sorted by name, the first `limit` of them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImagesError(f"no such folder: {folder}")
    pil = importlib.util.find_spec("PIL") is not None
    suffixes = ARRAY_SUFFIXES + (PIL_SUFFIXES if pil else ())
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        extra = "" if pil else " (PNG/JPEG need Pillow, which is not installed)"
        raise ImagesError(f"no images found in {folder}: looked for {', '.join(suffixes)}{extra}")
    return files[:limit] if limit else files


def read_image(path) -> torch.Tensor:
    """One image file as a float32 (C, H, W) tensor with values in [0, 1], C in (1, 3)."""
    path = Path(path)
    try:
        if path.suffix.lower() in PIL_SUFFIXES:
            from PIL import Image
            with Image.open(path) as im:
                data = np.asarray(im.convert("L" if im.mode in ("L", "I", "I;16", "1") else "RGB"))
        elif path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
        t = data if isinstance(data, torch.Tensor) else torch.from_numpy(np.array(data))
    except Exception as exc:
        raise ImagesError(f"cannot read image {path}: {type(exc).__name__}: {_first_line(exc)}") from None
    if t.dim() == 2:
        t = t[None]
    elif t.dim() == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3, 4):
        t = t.permute(2, 0, 1)
    if t.dim() != 3 or t.shape[0] not in (1, 3, 4) or t.is_complex() or t.dtype == torch.bool:
        raise ImagesError(f"image {path} has shape {tuple(t.shape)} and dtype {t.dtype}; expected real "
                          f"(C, H, W), (H, W, C) or (H, W) with C in 1, 3, 4")
    t = t.float() / 255 if not t.is_floating_point() else t.float()
    return t[:3]


def fit(image: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """(C, H, W) in [0, 1] -> (channels, size, size) in [0, 1]: converted, resized, centre-cropped."""
    if image.shape[0] == 3 and channels == 1:
        image = (image * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    elif image.shape[0] == 1 and channels == 3:
        image = image.expand(3, -1, -1)
    h, w = image.shape[1:]
    if min(h, w) != size:
        scale = size / min(h, w)
        h, w = max(size, round(h * scale)), max(size, round(w * scale))
        image = F.interpolate(image[None], (h, w), mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (h - size) // 2, (w - size) // 2
    return image[:, top:top + size, left:left + size]


def prepare(image: torch.Tensor, channels: int, size: int, model: str | None = None) -> torch.Tensor:
    """(C, H, W) in [0, 1] -> the model's input (channels, size, size): fitted, then normalised with
    the ImageNet statistics, or for model "hed" as HED wants it."""
    image = fit(image, channels, size)
    if model == "hed":
        return hed.preprocess(image * 255)
    mean, std = (MEAN, STD) if channels == 3 else ((GRAY_MEAN,), (GRAY_STD,))
    return (image - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


@torch.no_grad()
def skip_profile(model: nn.Module, inputs, batch: int = 16, tile: int = 8, chunk: int = 16,
                 progress: bool = False, desc: str = "profile") -> list[dict]:
    """Per conv of `model` (every nn.Conv2d, by qualified name, in call order), what its input leaves
    to skip over `inputs`: an (N, C, H, W) tensor or a list of them (e.g. images of different
    sizes), run `batch` images at a time. One dict per conv: "shape" (the first input's C, H, W),
    zero fraction "mean"/"min"/"max" over images, and the means over images of "dead_channels",
    "blocks_left" and "compaction" (formats.skip_stats with `tile` and `chunk`), and "flops"
    (dense multiply-adds x 2, summed over images), so a FLOP-weighted bound follows (stack_bound).
    progress: a bar named `desc` over the images on stderr."""
    parts = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    device = next(model.parameters()).device
    stats, shapes, flops = {}, {}, {}

    def hook(qual):
        def record(conv, args):
            x, padding = args[0], _padding(conv)
            s = skip_stats(x, conv.kernel_size, conv.stride, padding, conv.dilation, tile, chunk)
            shapes.setdefault(qual, list(x.shape[1:]))
            stats.setdefault(qual, []).append(s)
            out = _out_hw(conv, padding, x)
            fan_in = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
            flops[qual] = flops.get(qual, 0) + 2 * x.shape[0] * conv.out_channels * out[0] * out[1] * fan_in
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    total = sum(p.shape[0] for p in parts)
    try:
        with bar(total, desc, progress, "image") as done:
            for part in parts:
                for i in range(0, part.shape[0], batch):
                    model(part[i:i + batch].to(device))
                    done.update(min(batch, part.shape[0] - i))
    finally:
        for handle in handles:
            handle.remove()
    layers = []
    for qual, found in stats.items():
        zeros = torch.cat([s.zero_fraction for s in found])
        layers.append({"name": qual, "shape": shapes[qual], "mean": zeros.mean().item(), "min": zeros.min().item(),
                       "max": zeros.max().item(), "flops": flops[qual],
                       **{k: torch.cat([getattr(s, k) for s in found]).mean().item()
                          for k in ("dead_channels", "blocks_left", "compaction")}})
    return layers


def _padding(conv: nn.Conv2d) -> tuple[int, int]:
    """conv's padding as numbers ("same": half the dilated kernel, the larger side for even kernels)."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        return tuple((d * (k - 1) + 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size))
    return tuple(conv.padding)


def _out_hw(conv: nn.Conv2d, padding, x: torch.Tensor) -> tuple[int, int]:
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
                 zip(x.shape[-2:], padding, conv.dilation, conv.kernel_size, conv.stride))


def stack_bound(layers) -> float | None:
    """The FLOP-weighted speedup bound of per-tile compaction over all profiled convs: total dense
    FLOPs over total FLOPs left (None without FLOPs)."""
    dense = sum(l["flops"] for l in layers)
    left = sum(l["flops"] * l["compaction"] for l in layers)
    return dense / left if left else None


def weights_label(name: str, model: nn.Module, weights) -> str:
    """How the result names the weights: the file given, HED's, or random-init."""
    if weights is not None:
        return str(weights)
    if name == "hed":
        return hed.label(model)
    return "random-init (seeded)"


@torch.no_grad()
def profile_model(name, images=None, weights=None, limit=None, image_size=None, batch=16, device=None,
                  progress=False, seed: int = 0) -> dict:
    """skip_profile of model `name` (bench.models, random init seeded with `seed`) over the images in
    folder `images`, or the built-in photos (bench.photos) when None. Returns a JSON-able dict.
    progress: a bar over the images on stderr."""
    if images is None:
        from .photos import photos
        found = photos()
        files, raw = list(found), [t.float() / 255 for t in found.values()]
        raw = raw[:limit] if limit else raw
        files = files[:len(raw)]
    else:
        files = find_images(images, limit)
        raw = None
    model = build_model(name, seed=seed)
    if weights is not None:
        load_weights(model, weights)
    channels, size, _ = input_shape(name, image_size)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    x = torch.stack([prepare(read_image(f) if raw is None else raw[i], channels, size, name)
                     for i, f in enumerate(files)])
    layers = skip_profile(model, x, batch, progress=progress, desc=f"profile {name}")
    return {"model": name, "images": str(images) if images is not None else "built-in photos",
            "files": [str(f) if raw is None else f for f in files], "count": len(files), "image_size": size,
            "weights": weights_label(name, model, weights), "device": str(device), "torch": torch.__version__,
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "layers": layers,
            "stack_bound": stack_bound(layers)}


def print_profile(result) -> None:
    """Table per conv: input shape, zero fraction mean/min/max over the images, dead channels,
    (8x8 x 16-channel) blocks left and the compaction bound; then the FLOP-weighted bound."""
    print(f"{result['model']}, weights {result['weights']}: each conv's input over {result['count']} image(s) from "
          f"{result['images']}, {result['image_size']}x{result['image_size']}, on {result['device']}")
    head = ("layer", "input shape", "zeros", "min", "max", "dead ch", "8x8x16 blocks left", "compaction")
    table = [head] + [(l["name"], "x".join(map(str, l["shape"])), f"{l['mean']:.3f}", f"{l['min']:.3f}",
                       f"{l['max']:.3f}", f"{l['dead_channels']:.3f}", f"{l['blocks_left']:.2f}",
                       f"{l['compaction']:.2f}") for l in result["layers"]]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for t in table:
        print("  " + "  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(t, widths))))
    bound = result.get("stack_bound")
    if bound:
        print(f"per-tile channel compaction bounds all these convs together at {bound:.2f}x (FLOP-weighted)")
    print("(zeros: exact zeros of the input, mean/min/max over the images; dead ch: channels zero over the whole "
          "image; blocks left: 8x8 output tile x 16-channel blocks with a non-zero in their receptive field; "
          "compaction: share of the work left when each 8x8 output tile multiplies only its live channels, "
          "rounded up to 16. The first conv reads the normalised image, which has almost no exact zeros.)")


def write_profile(result, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path
