"""Real photographs shipped by scikit-image and scikit-learn, and seeded random crops of them.

`photos()`: 11 photos, (3, H, W) uint8 RGB (grey ones repeated to 3 channels): scikit-image's
astronaut 512x512, camera 512x512 (grey), coffee 400x600, chelsea 300x451, rocket 427x640, coins
303x384 (grey), immunohistochemistry 512x512, hubble_deep_field 872x1000, retina 1411x1411, and
scikit-learn's china and flower 427x640 (JPEG, read through Pillow). Either package alone gives its
share; with neither, PhotosError says what to install. Nothing is downloaded.

`random_crops(batch, size, seed)`: a batch of distinct samples;
sample i takes photo order[i], where order chains seeded permutations of the photos (a batch of 32
uses every photo about 3 times), at a random scale (from the smallest that covers the crop up to
twice that, at most the native size unless the photo is smaller than the crop), a random crop and
a random horizontal flip. size=None crops at the native size of the first photo drawn (sample 0 is
that photo whole). Values stay in 0..255 (float32); models normalise them their own way.
"""
from __future__ import annotations

import functools
import importlib.util

import numpy as np
import torch
import torch.nn.functional as F

SKIMAGE = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "immunohistochemistry",
           "hubble_deep_field", "retina")  # skimage.data.cat is chelsea again
SKLEARN = ("china", "flower")
PHOTOS = SKIMAGE + SKLEARN
INSTALL = 'pip install "zeroskip[real]"'


class PhotosError(ImportError):
    """Neither scikit-image nor scikit-learn (with Pillow) is installed: no built-in photos."""


def _rgb(array) -> torch.Tensor:
    t = torch.from_numpy(np.array(array, copy=True))
    return (t[None].expand(3, -1, -1) if t.dim() == 2 else t[..., :3].permute(2, 0, 1)).contiguous()


@functools.lru_cache(maxsize=1)
def _all() -> dict:
    out = {}
    if importlib.util.find_spec("skimage") is not None:
        import skimage.data
        out.update((name, _rgb(getattr(skimage.data, name)())) for name in SKIMAGE)
    if importlib.util.find_spec("sklearn") is not None and importlib.util.find_spec("PIL") is not None:
        from sklearn.datasets import load_sample_images
        sample = load_sample_images()
        for path, image in zip(sample.filenames, sample.images):
            name = path.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]
            if name in SKLEARN:
                out[name] = _rgb(image)
    if not out:
        raise PhotosError(f"the built-in photos need scikit-image or scikit-learn with Pillow, and neither is "
                          f"installed: {INSTALL}")
    return out


def photos(names=None) -> dict:
    """{name: (3, H, W) uint8 RGB} of the installed photos (all, or those in `names`)."""
    found = _all()
    if names is None:
        return dict(found)
    missing = [n for n in names if n not in found]
    if missing:
        known = ", ".join(found)
        raise ValueError(f"photo(s) {', '.join(map(repr, missing))} not available here (installed: {known})")
    return {n: found[n] for n in names}


def _resize(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
    image = image.float()
    if tuple(image.shape[-2:]) == (h, w):
        return image
    return F.interpolate(image[None], (h, w), mode="bilinear", antialias=True, align_corners=False)[0]


def _pair(size):
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def random_crops(batch: int, size=224, seed: int = 0, names=None) -> torch.Tensor:
    """(batch, 3, H, W) float32 in 0..255 of distinct random crops (module docstring); `size` an int,
    (H, W), or None for the native size of the first photo drawn."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    found = photos(names)
    keys = list(found)
    gen = torch.Generator().manual_seed(seed)
    order = []
    while len(order) < batch:
        order += [keys[i] for i in torch.randperm(len(keys), generator=gen).tolist()]
    h, w = _pair(found[order[0]].shape[-2:] if size is None else size)
    out = torch.empty(batch, 3, h, w)
    for i, name in enumerate(order[:batch]):
        image = found[name]
        ih, iw = image.shape[-2:]
        low = max(h / ih, w / iw)
        high = max(low, min(1.0, 2 * low))
        u, a, b, flip = torch.rand(4, generator=gen).tolist()
        scale = low + u * (high - low)
        sh, sw = max(h, round(ih * scale)), max(w, round(iw * scale))
        top, left = int(a * (sh - h + 1)), int(b * (sw - w + 1))
        crop = _resize(image, sh, sw)[:, top:top + h, left:left + w]
        out[i] = crop.flip(-1) if flip < 0.5 else crop
    return out
