"""Zero fraction of every conv's input on real images: how much a model leaves to skip.

Zero skipping pays only where a conv's input holds many zeros, and that depends on the trained
weights and the images, not on the layer shape. This runs a model (see bench.models; --weights
for trained ones) over a folder of images and records, with a forward pre-hook on every
nn.Conv2d, the fraction of exact zeros in each conv's input, per image. No timing: CPU or GPU.

Images: PNG/JPEG through Pillow if it is installed; .npy / .pt arrays of shape (C, H, W),
(H, W, C) or (H, W) with values in [0, 1] (integer arrays: 0..255), not yet normalised. Each is
resized (shorter side to the image size, bilinear with antialiasing) and centre-cropped square,
converted to the model's channel count (RGB to grey by ITU-R 601 luma weights, grey to RGB by
repetition) and normalised with the ImageNet mean and std (for one channel: their averages).
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

from ..progress import bar
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


def prepare(image: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """(C, H, W) in [0, 1] -> (channels, size, size), resized, centre-cropped and normalised."""
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
    image = image[:, top:top + size, left:left + size]
    mean, std = (MEAN, STD) if channels == 3 else ((GRAY_MEAN,), (GRAY_STD,))
    return (image - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


@torch.no_grad()
def profile_model(name, images, weights=None, limit=None, image_size=None, batch=16, device=None,
                  progress=False) -> dict:
    """Per-conv zero fraction of the input over the images in folder `images` (mean, min, max over
    images; a conv called several times per forward counts each call). Returns a JSON-able dict.
    progress: a bar over the images on stderr."""
    files = find_images(images, limit)
    model = build_model(name)
    if weights is not None:
        load_weights(model, weights)
    channels, size, _ = input_shape(name, image_size)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    shapes, fractions = {}, {}

    def hook(qual):
        def record(module, args):
            x = args[0]
            shapes.setdefault(qual, list(x.shape[1:]))
            fractions.setdefault(qual, []).append((x == 0).flatten(1).double().mean(1).cpu())
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with bar(len(files), f"profile {name}", progress, "image") as done:
            for i in range(0, len(files), batch):
                x = torch.stack([prepare(read_image(f), channels, size) for f in files[i:i + batch]])
                model(x.to(device))
                done.update(x.shape[0])
    finally:
        for handle in handles:
            handle.remove()
    layers = []
    for qual, parts in fractions.items():
        f = torch.cat(parts)
        layers.append({"name": qual, "shape": shapes[qual], "mean": f.mean().item(), "min": f.min().item(),
                       "max": f.max().item()})
    return {"model": name, "images": str(images), "count": len(files), "image_size": size,
            "weights": str(weights) if weights else None, "device": str(device), "torch": torch.__version__,
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "layers": layers}


def print_profile(result) -> None:
    """Table of layer, input shape and zero fraction mean/min/max over the images."""
    print(f"{result['model']}: zero fraction of each conv's input over {result['count']} image(s) from "
          f"{result['images']}, {result['image_size']}x{result['image_size']}, on {result['device']}")
    if result["weights"] is None:
        print("note: random-init weights (no --weights): the fractions describe the untrained model")
    head = ("layer", "input shape", "mean", "min", "max")
    table = [head] + [(l["name"], "x".join(map(str, l["shape"])), f"{l['mean']:.3f}", f"{l['min']:.3f}",
                       f"{l['max']:.3f}") for l in result["layers"]]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for t in table:
        print("  " + "  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(t, widths))))
    print("(the first conv reads the normalised image, which has almost no exact zeros)")


def write_profile(result, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path
