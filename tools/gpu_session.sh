#!/usr/bin/env bash
# The GPU verification of the CUDA backend, as one call on a machine with a
# GPU (the device tool; tools/gpu_pack.sh prepared .gpu/ beforehand):
#   1. the CUDA test suites, then the whole suite, from the carried build;
#   2. train_lm and train_image on --device cuda for a short run each, with
#      the CPU run of the same command beside it (tokens/s and images/s);
#   3. the GPU benchmark table against the machine's PyTorch (bench/compare.py
#      --device cuda).
# Logs go to $OUT (the device tool's folder; gpu-out/ elsewhere). Each step
# has its own time limit so that one hang cannot eat the whole call.
#
#   tools/gpu_session.sh [tests|train|bench|all]     (default all)
#
# A device call may run 600 s and the step limits below add up to more, so
# run `tests`, `train` and `bench` as separate calls unless time is short.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"
mkdir -p "$out"
bin=.gpu
[ -x "$bin/moegrad_tests" ] || { echo "gpu_session.sh: run tools/gpu_pack.sh first (no $bin/moegrad_tests)"; exit 1; }
stages="${*:-all}"
want() { [[ " $stages " == *" $1 "* || " $stages " == *" all "* ]]; }
echo "commit $(cat $bin/commit); stages: $stages"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"

step() {  # step NAME SECONDS COMMAND...: runs it with a limit, logs to $out/NAME.log, prints its tail
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc $rc in $((SECONDS - start)) s"
  tail -n "${TAIL:-6}" "$out/$name.log"
}

if want tests; then
  TAIL=4 step cuda_tests 240 "$bin/moegrad_tests" --gtest_filter='Cuda*' --gtest_brief=1
  grep -E "^\[  FAILED  \] [A-Za-z]" "$out/cuda_tests.log" | sort -u | head -60
  step all_tests 240 "$bin/moegrad_tests" --gtest_brief=1
fi

if want train; then
lm=(--data "$bin/kjv" --arch sgsgsc --router acmoe --seq-len 128 --batch 16 --steps 200 --warmup 50
    --eval-batches 20 --out "$out/lm")
step train_lm_cuda 120 "$bin/train_lm" "${lm[@]}" --device cuda
step train_lm_cpu 120 "$bin/train_lm" "${lm[@]/$out\/lm/$out/lm_cpu}" --device cpu --threads 16
img=(--data "$bin/fashion-mnist" --moe topk --steps 100 --batch 64 --train-size 10000 --test-size 2000)
step train_image_cuda 120 "$bin/train_image" "${img[@]}" --device cuda
step train_image_cpu 120 "$bin/train_image" "${img[@]}" --device cpu --threads 16
fi

want bench && TAIL=40 step bench 500 python3 bench/compare.py --device cuda --build-dir "$bin" --json "$out/bench.json"
