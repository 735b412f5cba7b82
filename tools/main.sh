#!/usr/bin/env bash
# The main job: does the AC router beat the top-k router at small scale?
# Installs the missing apt packages, builds examples/train_lm (Release) in
# build/, builds the King James Bible corpus in data/kjv, then trains two
# byte-level Switch-S language models (sgsgsc) that differ only in the router
# (smoe: top-k everywhere; acmoe: the last MoE layer uses AC) with the same
# seed (the same initial weights and batches), data and budget. Prints the
# table of tools/compare_runs.py and writes both validation curves to
# <out>/valid_curves.png. Everything the runs write is under <out>.
#
#   tools/main.sh [--steps N] [--seed N] [--threads N] [--out DIR] [--build-dir DIR] [-- TRAIN_LM_FLAGS...]
#
# The defaults fit in 15 minutes on 2 cores, build included. Longer runs:
# e.g. tools/main.sh --steps 10000 -- --eval-every 500 --eval-batches 0.
# Flags after -- go to both train_lm runs (see build/train_lm --help).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

steps=3000
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

# The recipe: Switch-S at width 128, 16 experts of width 128, top-2, byte
# level with 128-byte windows, 16 per batch; Adam, 100 warm-up steps, cosine
# decay to a tenth, gradient clipping at 1. Validation during training on the
# first 20 valid batches (the same bytes for both runs); the final evaluation
# covers the whole valid and test splits, clean and attacked.
recipe=(--data data/kjv --level byte --arch sgsgsc --dim 128 --heads 8 --experts 16 --k 2
        --expert-hidden 128 --seq-len 128 --batch 16 --lr 1e-3 --warmup 100 --cosine --min-lr 1e-4
        --clip-grad 1 --balance-coef 0.01 --steps "$steps" --seed "$seed" --threads "$threads"
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
