#!/usr/bin/env bash
# The main job: does the AC router beat the top-k router at small scale?
# Installs the missing apt packages, builds examples/train_lm (Release) in
# build/, builds the King James Bible corpus in data/kjv, then trains two
# byte-level Switch-S language models with the paper's official recipe
# (recipes/switch-s.recipe) at a short budget, differing only in the router
# (smoe: top-k everywhere; acmoe: the last MoE layer uses AC), with the same
# seed (the same initial weights and batches), data and budget. Prints the
# table of tools/compare_runs.py and writes both validation curves, and the
# AC layer's empty clusters, token weight and weight spread over training, to
# <out>/valid_curves.png. Everything the runs write is under <out>.
#
#   tools/main.sh [--steps N] [--seed N] [--threads N] [--out DIR] [--build-dir DIR] [-- TRAIN_LM_FLAGS...]
#
# Longer runs: e.g. tools/main.sh --steps 10000 -- --eval-every 500; the
# multi-seed experiment of docs/results.md is tools/lm_experiment.sh.
# Flags after -- go to both train_lm runs (see build/train_lm --help).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

steps=2000
seed=0
threads="$(nproc)"
out=runs/main
build=build
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --steps | --seed | --threads | --out | --build-dir)
      [ $# -ge 2 ] || { echo "main.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --steps) steps="$2" ;; --seed) seed="$2" ;; --threads) threads="$2" ;; --out) out="$2" ;;
        --build-dir) build="$2" ;;
      esac
      shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "main.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

./tools/setup.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target train_lm
./tools/prepare_kjv.sh data/kjv

# The switch-s recipe as the official code runs it (post-norm with the MoE
# double residual, ReLU experts, dropout 0.7, XMoE's gate and the AC weights
# in the c layer, no load-balance loss, Adam at 7e-4 with warm-up then
# constant), at a short budget: steps of one forward of 12 windows of 256
# bytes (the official per-forward batch) with the warm-up scaled as the
# recipe's (5% of the steps). Validation during training on the first 20
# valid batches (the same bytes for both runs); the final evaluation covers
# the whole valid and test splits, clean and attacked.
recipe=(--recipe switch-s --data data/kjv --level byte --batch 12 --micro-batch 12 --steps "$steps"
        --warmup $((steps / 20)) --seed "$seed" --threads "$threads"
        --log-every 50 --eval-every 100 --eval-batches 20 --checkpoint-every 500)
for router in smoe acmoe; do
  echo "main.sh: training $router"
  "./$build/train_lm" "${recipe[@]}" --router "$router" --out "$out/$router" --overwrite ${extra[@]+"${extra[@]}"}
done

echo
/usr/bin/python3 tools/compare_runs.py "$out/smoe" "$out/acmoe" | tee "$out/table.txt"
/usr/bin/python3 tools/plot_curves.py "$out/valid_curves.png" "$out/smoe" "$out/acmoe"
elapsed=$((SECONDS - start))
echo "main.sh: done in $((elapsed / 60))m$((elapsed % 60))s; table in $out/table.txt"
