#!/usr/bin/env bash
# Sets up and runs the main job (`zeroskip`): on a GPU, HED's VGG-16 on real photos against cuDNN and
# torch.compile; on a CPU-only machine, LeNet-5 through the kernels on Triton's interpreter, checked in float64.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec zeroskip "$@"
