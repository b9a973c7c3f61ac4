#!/usr/bin/env bash
# Sets up and runs the test suite. On a CPU the kernels run on Triton's interpreter; pass
# `--device cuda` to run the same tests on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec python -m pytest -q -n "${ZEROSKIP_TEST_WORKERS:-2}" "$@"
