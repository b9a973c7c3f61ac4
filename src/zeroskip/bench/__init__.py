"""Benchmark harness: realistic sparse inputs, layer suites of real CNNs, GPU timing, the paper's
own experiment redone fairly. Nothing here touches CUDA at import time.

  suites     conv layer shapes of VGG-19, AlexNet, GoogLeNet, LeNet-5 (JSON data)
  sparsity   inputs with the real zero structure of the authors' VGG-19 maps
  timing     CUDA-graph timing of one call
  run        suite and sparsity-sweep runs, break-even sparsity
  results    result rows, their JSON/CSV files, the printed table
  plot       speedup plots (matplotlib)
  replicate  the paper's one-channel experiment, GPU time only, beside their reported times
"""
from .suites import SUITES, Layer, load_suite

__all__ = ["SUITES", "Layer", "load_suite"]
