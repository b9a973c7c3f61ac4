#!/usr/bin/env bash
# Sets up and runs the main job: on a GPU the VGG-19 benchmark against cuDNN; on a CPU-only
# machine LeNet-5 through the kernels on Triton's interpreter, checked against PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec zeroskip "$@"
