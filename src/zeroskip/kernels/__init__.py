"""The kernels, one module per kernel family, and KERNELS: the registry of them.

KERNELS maps each public algo name to its family module; nothing else lists the kernels. A family
module owns its math (the @triton.jit kernels, or imports them from a sibling), its tile configs,
and two functions with the same signatures in every family:
    supports(spec, input, activation) -> None if it can run the call, else why not (a short
        phrase for the error message)
    conv(input, weight, bias, spec, activation, algo) -> the output, allocated by
        launch.result in the input's memory format
A family whose epilogue adds a residual (act(conv + r), read once) sets RESIDUAL = True and takes
conv(..., residual=r); for the others functional.conv2d adds r after the conv.
The modules are imported on first use: importing one defines its kernels, and Triton decides then
whether they run on the CPU interpreter (TRITON_INTERPRET=1 must be set before).

    "ecr", "ecr_tc", "igemm"   direct.py (kernels in implicit_gemm.py, ecr_index.py; the dense path
                               also measures split_k.py's splits and rows.py, which has no algo name)
    "winograd", "winograd4"    winograd.py, winograd4.py (steps in winograd_steps.py, GEMMs in
                               winograd_gemm.py and persistent_gemm.py)
    "im2col"                   im2col.py
    "compact"                  compact.py (pass 1 in compact_pack.py, tiles in compact_config.py):
                               zero skipping by per-tile channel compaction; explicit only, never
                               picked by `auto` or measured by plans (slower than the dense path on
                               every layer measured, BENCHMARKS.md 'Zero skipping')
    "cudnn"                    cudnn.py: no Triton kernel; cuDNN's fused conv + bias + ReLU (+ add)
                               through PyTorch (CUDA only)
    "depthwise"                depthwise.py: one input channel per group (MobileNet's depthwise
                               convs) on the CUDA cores, bias, residual and activation fused
Shared by the families: launch.py (allocation, precision, packed weights), layout.py, weight_cache.py,
and pool.py (a pool after the conv, where it is not fused: cudnn, and im2col's and igemm's "pool after").
Not a conv: linear.py, a fully connected layer at small batch (a classifier's), bias and activation
fused, measured against F.linear at a shape's first call.

Adding a kernel: (1) one module here with its kernels, tile configs, supports() and conv();
(2) one entry in FAMILIES below (its algo name becomes public: zeroskip.ALGOS, algo=, plans);
(3) rows in zeroskip/rules.py where it was measured faster than what `auto` picks now, each with
its evidence; (4) tests/test_<module>.py. Adding a GPU: rows under a new class in rules.py
(runtime.gpu_class names it); a class without rows runs cuDNN unless a plan measured the call.

Launch choices that are not "can it run" but "which way is faster" stay inside their family, each
documented with its measurement: implicit_gemm.RUNNING_MAX_K, winograd4.prefer_halves,
winograd4.prefer_fp16_operands, winograd4.MANY_TILES, winograd_gemm.prefer, persistent_gemm.prefer,
and the first-call measurement of split-K and rows (split_k.pick).
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping

# algo name -> module (in this package) of its family
FAMILIES = {"ecr": "direct", "ecr_tc": "direct", "igemm": "direct", "winograd": "winograd",
            "winograd4": "winograd4", "im2col": "im2col", "compact": "compact", "cudnn": "cudnn",
            "depthwise": "depthwise"}


class _Registry(Mapping):
    """{algo name: family module}, each module imported at its first lookup."""

    def __getitem__(self, name):
        return importlib.import_module(f"{__name__}.{FAMILIES[name]}")

    def __iter__(self):
        return iter(FAMILIES)

    def __len__(self):
        return len(FAMILIES)

    def __repr__(self):
        return f"KERNELS({', '.join(f'{k}={v}' for k, v in FAMILIES.items())})"


KERNELS = _Registry()
