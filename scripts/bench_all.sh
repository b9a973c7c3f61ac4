#!/usr/bin/env bash
# Reproduces the measurements behind BENCHMARKS.md, one part per call (each fits in a 10-minute
# GPU session slot). Results go to $OUT/<part> (or benchmarks/<part>).
#   bash scripts/bench_all.sh PART DATA      PART: b1 | b32 | auto | fused | models | layout | fp32ab | wino | first | sweep | compile32 | half | wino16 | fp32vec | tf32 | tf32nchw | tf32nchwauto | wgemm | h100 | tf32copy | convert
set -euo pipefail
part=${1:?part: b1 b32 auto fused models layout fp32ab wino first sweep compile32 half wino16 fp32vec tf32 tf32nchw tf32nchwauto wgemm h100 tf32copy convert}
data=${2:-.data/paper-data}
export PYTHONPATH=src PYTHONUNBUFFERED=1
out=${OUT:-benchmarks}/$part
mkdir -p "$out"
z() { python3 -m zeroskip "$@" --out "$out"; }
case $part in
  b1)     z bench --suite vgg19 --batch 1 --dtype fp32,fp16 --algo igemm --data "$data" ;;
  b32)    z bench --suite vgg19 --batch 32 --dtype fp16,fp32 --algo igemm --data "$data" ;;
  auto)   z bench --suite vgg19 --batch 1 --dtype fp32,fp16 --algo auto --data "$data"
          z bench --suite vgg19 --batch 32 --dtype fp32 --algo auto --data "$data"
          z bench --suite alexnet,googlenet --batch 1,32 --dtype fp32 --algo auto --data "$data"
          z bench --suite alexnet,lenet5,googlenet --batch 1 --dtype fp16 --algo auto --data "$data" ;;
  fused)  z bench --suite vgg19 --ops conv2d_pool --batch 1 --dtype fp16 --algo igemm --compile --data "$data"
          z bench --suite vgg19 --ops conv2d_pool --batch 1 --dtype bf16,tf32 --algo igemm --data "$data" ;;
  models) z bench --model vgg19 --batch 1 --dtype fp16,fp32 --compile
          z bench --model resnet50 --batch 1 --dtype fp16,fp32 --compile
          z bench --model googlenet --batch 1 --dtype fp16,fp32 --compile ;;
  layout) z bench --suite vgg19 --batch 1,32 --dtype tf32 --algo igemm --layout channels_last --data "$data"
          z bench --suite vgg19 --batch 1 --dtype fp32 --algo igemm --layout channels_last --data "$data" ;;
  fp32ab) python3 experiments/fp32_layouts.py "$data" 1,32 | tee "$out/fp32_layouts.txt"
          python3 experiments/accumulation_probe.py | tee "$out/accumulation_probe.txt" ;;
  wino)   python3 scripts/ab_algos.py "$data" 32,8,1 --algos igemm,winograd \
            --layers features.2,features.10,features.21,features.30 | tee "$out/ab_winograd_conv.txt"
          python3 scripts/ab_algos.py "$data" 32,1 --algos igemm,winograd --fused \
            --layers features.16,features.25,features.34 | tee "$out/ab_winograd_fused.txt"
          z bench --suite vgg19 --batch 1,32 --dtype fp32 --algo auto --data "$data" ;;
  first)  ab() { python3 scripts/ab_algos.py "$data" 1,32 --algos igemm,im2col "$@"; }
          for dt in fp32 fp16; do
            ab --dtype $dt --suite vgg19 --layers features.0
            ab --dtype $dt --suite alexnet --layers features.0
            ab --dtype $dt --suite alexnet --layers features.0 --fused
            ab --dtype $dt --suite googlenet --layers conv1.conv
            ab --dtype $dt --suite lenet5
            ab --dtype $dt --suite lenet5 --fused
          done 2>&1 | tee "$out/ab_first_layers.txt" ;;
  sweep)  z sweep --suite vgg19 --dtype fp32,fp16 --png --data "$data"
          for cfg in "fp16 1" "fp16 32" "fp32 32"; do
            set -- $cfg
            z sweep --suite vgg19 --dtype $1 --batch $2 --algo auto,ecr_tc --sparsities 0,0.5,0.8,0.9,0.95,0.99 --png --data "$data"
          done ;;
  compile32) z bench --suite vgg19 --ops conv2d_pool --batch 32 --dtype fp16 --algo igemm --compile --data "$data" ;;
  half)   z bench --suite vgg19 --ops conv2d --batch 1,32 --dtype fp16 --algo igemm --data "$data"
          z bench --suite vgg19 --ops conv2d_pool --batch 1,32 --dtype bf16 --algo igemm --layout channels_last --data "$data"
          z bench --suite vgg19 --ops conv2d_pool --batch 1,32 --dtype tf32 --algo igemm --layout channels_last --data "$data"
          z bench --suite vgg19 --batch 32,1 --dtype fp16 --algo auto --data "$data" ;;
  wino16) python3 scripts/ab_algos.py "$data" 32,1 --dtype fp16 --algos igemm,winograd,winograd4 --fused \
            | tee "$out/ab_winograd_fp16_fused.txt"
          python3 scripts/ab_algos.py "$data" 32,1 --dtype fp16 --algos igemm,winograd,winograd4 \
            --layers features.7,features.12,features.21,features.30 | tee "$out/ab_winograd_fp16_conv.txt"
          z bench --suite vgg19 --ops conv2d_pool --batch 1,32 --dtype fp16,bf16 --algo auto --compile --data "$data"
          z bench --suite vgg19 --ops conv2d --batch 1,32 --dtype fp16 --algo auto --data "$data" ;;
  fp32vec) python3 scripts/ab_algos.py "$data" 32,1 --dtype fp32 --algos igemm,winograd,winograd4 --layout nchw \
            --layers features.2,features.5,features.12,features.21,features.30 | tee "$out/ab_fp32_conv.txt"
          z bench --suite vgg19 --batch 1,32 --dtype fp32 --algo auto --data "$data"
          z bench --suite alexnet,googlenet --ops conv2d --batch 1,32 --dtype fp32 --algo auto --data "$data" ;;
  tf32)   python3 scripts/ab_algos.py "$data" 32,1 --dtype tf32 --algos igemm,winograd,winograd4 --fused \
            --layout channels_last | tee "$out/ab_tf32_fused.txt"
          z bench --suite vgg19 --ops conv2d_pool --batch 1,32 --dtype tf32 --algo auto --layout channels_last --data "$data" ;;
  tf32nchw) python3 scripts/ab_algos.py "$data" 32,1 --dtype tf32 --algos igemm,winograd,winograd4 --fused \
            --layout nchw | tee "$out/ab_tf32_nchw_fused.txt"
          python3 scripts/ab_algos.py "$data" 32,1 --dtype tf32 --algos igemm,winograd4 --layout nchw \
            --layers features.2,features.5,features.12,features.21,features.30 | tee "$out/ab_tf32_nchw_conv.txt" ;;
  tf32nchwauto) z bench --suite vgg19 --ops conv2d_pool --batch 1,32 --dtype tf32 --algo auto --layout nchw --data "$data"
          z bench --suite vgg19,googlenet --ops conv2d --batch 1,32 --dtype tf32 --algo auto --layout nchw --data "$data" ;;
  wgemm)  python3 experiments/winograd_gemm_probe.py | tee "$out/winograd_gemm_probe.txt"
          python3 scripts/kernel_times.py "$data" --layers features.5,features.12,features.21,features.30 --batch 32 \
            --algo winograd4 | tee "$out/kernel_times.txt"
          python3 scripts/ab_algos.py "$data" 32,1 --dtype fp32 --algos igemm,winograd4 --layout nchw \
            --layers features.2 | tee "$out/ab_fp32_features2.txt"
          python3 scripts/ab_algos.py "$data" 32 --dtype tf32 --algos igemm,winograd4 --fused --layout channels_last \
            --layers features.7,features.16 | tee "$out/ab_tf32_cl_b32.txt" ;;
  h100)   # the H100 sections of BENCHMARKS.md (BASE for the A/Bs with --base: an older tree, see there)
          z bench --suite vgg19 --ops conv2d,conv2d_pool --batch 1,32 --dtype fp32 --algo auto --data "$data"
          z bench --suite vgg19 --ops conv2d_pool --batch 1,32 --dtype bf16,fp16,tf32 --algo auto --data "$data"
          z bench --suite alexnet,googlenet,lenet5 --ops conv2d --batch 1,32 --dtype fp32 --algo auto --data "$data"
          python3 scripts/ab_algos.py "$data" 32,1 --dtype fp32 --fused --algos igemm,winograd4 --layout nchw \
            --layers features.2 | tee "$out/ab_fp32_fused_direct_f4.txt"
          python3 scripts/ab_algos.py "$data" 32,1 --dtype fp32 --algos igemm,winograd4 --layout nchw \
            --layers features.2,features.5,features.7,features.10,features.19 | tee "$out/ab_fp32_direct_f4.txt"
          python3 scripts/ab_algos.py "$data" 32,1 --dtype bf16 --algos igemm,winograd,winograd4 --fused \
            --layout channels_last --layers features.16,features.25,features.34 | tee "$out/ab_bf16_fused.txt"
          if [ -n "${BASE:-}" ]; then  # fp16 halves (and finite_amax) against an older tree's 3xTF32 GEMMs
            python3 scripts/ab_algos.py "$data" 32,1 --dtype fp32 --algos winograd4 --layout nchw --base "$BASE" \
              | tee "$out/ab_fp32_halves.txt"
          fi ;;
  tf32copy) # TF32, NCHW: direct on a channels_last copy, F(4x4) on scaled fp16 (BASE: an older tree to A/B against)
          python3 scripts/ab_algos.py "$data" 32,1 --dtype tf32 --fused --layout nchw --algos igemm,winograd4 \
            ${BASE:+--base "$BASE"} | tee "$out/ab_tf32_nchw_fused.txt"
          python3 scripts/ab_algos.py "$data" 32,1 --dtype tf32 --layout nchw --algos igemm,winograd4 \
            --layers features.2,features.5,features.7,features.10 | tee "$out/ab_tf32_nchw_conv.txt"
          z bench --suite vgg19 --ops conv2d_pool,conv2d --batch 1,32 --dtype tf32 --algo auto --layout nchw --data "$data" ;;
  convert) # convert_'s wall time on ResNet-50 fp16, each batch in a fresh process with an empty Triton cache
          for b in 1 32; do
            TRITON_CACHE_DIR=$(mktemp -d) python3 experiments/convert_time_probe.py resnet50 $b fp16 \
              2>&1 | grep -v Warning | tee "$out/convert_time_probe_resnet50_b$b.txt"
          done ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
