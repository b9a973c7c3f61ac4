"""Benchmark suites: the conv layers of real CNNs, read from suites/<name>.json.

Shapes are data (one JSON object per conv; `height`/`width` are the conv *input*), so a suite can be
checked or extended without touching code. Every conv listed is followed by ReLU in its network;
`pool_after` is set when that ReLU is followed directly by a pool (floor mode unless `ceil_mode`).

vgg16 is HED's VGG-16 (see zeroskip.bench.hed): with `--input real` its layers read HED's own
activations and use HED's weights; the other suites read HED activations mapped to their shapes
(zeroskip.bench.real).

VGG-19 layers also carry the authors' one-channel feature maps (see `zeroskip.bench.sparsity`):
  paper_feature  the file the paper used as this conv's input: vgg19/all_conv_name.txt, in order.
  real_feature   the file that really is this conv's input in torchvision's VGG-19 (null for features.0,
                 whose input is the image). They differ for features.0 and features.2 only; the
                 realistic inputs use real_feature, the paper replication uses paper_feature.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

SUITES = ("vgg16", "vgg19", "alexnet", "googlenet", "lenet5")
SUITE_DIR = Path(__file__).resolve().parent / "suites"


def _pair(value) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (list, tuple)) else (int(value), int(value))


@dataclass(frozen=True)
class Layer:
    """One convolution of a network (input shape without the batch), and what follows it."""
    suite: str
    name: str
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    pool_after: dict | None = None
    paper_feature: str | None = None
    real_feature: str | None = None
    image_input: bool = False
    depth: float = 0.0  # position among the suite's convs, 0 (first) .. 1 (last)
    suite_size: int = 1  # number of convs in the suite

    @property
    def out_hw(self) -> tuple[int, int]:
        """Conv output size (symmetric padding, as F.conv2d)."""
        h, w = self.height, self.width
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    @property
    def pooled_hw(self) -> tuple[int, int] | None:
        """Size after `pool_after` (ceil or floor mode as recorded), or None without a pool."""
        if not self.pool_after:
            return None
        p = self.pool_after
        out = []
        for n in self.out_hw:
            span = n + 2 * p["padding"] - p["size"]
            o = (-(-span // p["stride"]) if p.get("ceil_mode") else span // p["stride"]) + 1
            if p.get("ceil_mode") and (o - 1) * p["stride"] >= n + p["padding"]:
                o -= 1  # PyTorch: the last window must start inside the input or left padding
            out.append(o)
        return out[0], out[1]

    @property
    def floor_pool_exact(self) -> bool:
        """Whether zeroskip's floor-mode pool computes the network's `pool_after` here: always for
        floor mode, and for ceil mode where it adds no partial window (e.g. 2x2/2 on even sizes)."""
        if not self.pool_after or not self.pool_after.get("ceil_mode"):
            return True
        return self.pooled_hw == replace(self, pool_after={**self.pool_after, "ceil_mode": False}).pooled_hw

    def flops(self, batch: int) -> int:
        """Dense conv FLOPs (2 x multiply-adds) for a batch; pooling not counted."""
        oh, ow = self.out_hw
        kh, kw = self.kernel
        return 2 * batch * self.out_channels * oh * ow * (self.in_channels // self.groups) * kh * kw

    def conv_args(self) -> dict:
        """Keyword arguments shared by F.conv2d and zeroskip.conv2d."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "groups": self.groups}

    def pool_args(self) -> dict:
        """Keyword arguments for zeroskip.conv2d_pool's pool (max, floor mode)."""
        p = self.pool_after
        return {"pool": p["pool"], "pool_size": p["size"], "pool_stride": p["stride"],
                "pool_padding": p["padding"]}

    def shape(self, batch: int) -> dict:
        """The `shape` field of a result row."""
        return {"n": batch, "c": self.in_channels, "h": self.height, "w": self.width,
                "cout": self.out_channels, "kh": self.kernel[0], "kw": self.kernel[1],
                "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "groups": self.groups, "pool": self.pool_after}


def suite_info(name: str) -> dict:
    """The raw JSON of a suite (description, input size, notes, layers)."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}")
    with open(SUITE_DIR / f"{name}.json") as f:
        return json.load(f)


def load_suite(name: str) -> list[Layer]:
    """The conv layers of suite `name`, in network order."""
    raw = suite_info(name)["layers"]
    n = len(raw)
    layers = []
    for i, d in enumerate(raw):
        layers.append(Layer(
            suite=name, name=d["name"], in_channels=d["in_channels"], out_channels=d["out_channels"],
            height=d["height"], width=d["width"], kernel=_pair(d["kernel"]), stride=_pair(d["stride"]),
            padding=_pair(d["padding"]), dilation=_pair(d.get("dilation", 1)), groups=d.get("groups", 1),
            pool_after=d.get("pool_after"), paper_feature=d.get("paper_feature"),
            real_feature=d.get("real_feature"), image_input=bool(d.get("image_input", False)),
            depth=i / (n - 1) if n > 1 else 0.0, suite_size=n))
    return layers


def find_layer(suite: str, name: str) -> Layer:
    for layer in load_suite(suite):
        if layer.name == name:
            return layer
    raise ValueError(f"suite {suite!r} has no layer {name!r}")
