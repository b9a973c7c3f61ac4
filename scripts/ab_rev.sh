#!/usr/bin/env bash
# Same-run A/B of this tree against another revision (default: main): every VGG-19 conv and fused
# conv + relu + pool stage under algo=auto, both trees' calls timed in one process beside cuDNN
# (scripts/ab_algos.py --base), batch 1 and 32. Results under $OUT (or /tmp/ab_rev).
#   bash scripts/ab_rev.sh DATA [REV] [DTYPES]
# REV: a git revision, or the folder of another copy of the package (its zeroskip/__init__.py);
# DTYPES: comma list of fp32,tf32,fp16,bf16 (default all).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: scripts/ab_rev.sh DATA [REV] [DTYPES]}
rev=${2:-main}
dtypes=${3:-fp32,tf32,fp16,bf16}
out=${OUT:-/tmp/ab_rev}
mkdir -p "$out"
if [ -f "$rev/__init__.py" ]; then
  pkg=$rev; base=""; rev=$(basename "$(dirname "$rev")")
else
  base=$(mktemp -d); pkg=$base/src/zeroskip
  git archive "$rev" src/zeroskip | tar -x -C "$base"
fi
export PYTHONPATH=src PYTHONUNBUFFERED=1
for dt in ${dtypes//,/ }; do
  for fused in "" --fused; do
    python3 scripts/ab_algos.py "$data" 1,32 --dtype "$dt" --algos auto $fused --base "$pkg" \
      | tee "$out/ab_${rev//\//_}_${dt}${fused:+_fused}.txt"
  done
done
[ -z "$base" ] || rm -rf "$base"
