#!/usr/bin/env bash
# The multi-seed language-model experiment (docs/results.md): the switch-s
# recipe on the King James Bible, one run per (arm, seed), each arm from the
# same initial weights and batches for a given seed:
#
#   smoe           every MoE layer a top-k layer with the linear gate
#   acmoe          the c layer routes with AC (the paper's ACMoE)
#   xmoe           the c layer keeps AC's gate (XMoE's expert embeddings) but
#                  routes without the AC weights: AC's gate without AC
#   acmoe-neutral  acmoe with small clusters neutral (--ac-small-clusters neutral)
#
#   tools/lm_experiment.sh [--out DIR] [--seeds "0 1 2"] [--arms "smoe acmoe ..."]
#                          [--level byte|word] [--steps N] [--jobs N] [--build-dir DIR]
#                          [-- TRAIN_LM_FLAGS...]
#
# Runs --jobs trainings at a time (default 2, one thread each). Every run
# resumes from its checkpoint when it has one (and does nothing when it has
# finished), so the script can be stopped and started again at will. The
# budget: the recipe with its per-forward batch of 12 sequences of 256 tokens,
# warm-up scaled as the recipe's (3000 of 60000 steps: 5% of --steps), and
#   byte level: 12000 steps (36.9M bytes, six times the main job's);
#   word level: 4000 steps (12.3M words, about 66M bytes of text: 17 passes
#     over the 0.72M-word train split, as the paper's 1.5B tokens are about
#     15 over WikiText-103's), train words seen fewer than 3 times as <unk>
#     (--min-count 3, as WikiText-103 was built: 11.3k words, 2.7% <unk>).
# A shorter --steps gives a smaller but complete experiment. The AC arms are also
# evaluated causally (--eval both). Flags after -- go to every run.
# Results: tools/seed_summary.py DIR/byte/s0 DIR/byte/s1 DIR/byte/s2.
set -euo pipefail
cd "$(dirname "$0")/.."

out=runs/experiment
seeds="0 1 2"
arms="smoe acmoe xmoe acmoe-neutral"
level=byte
jobs=2
steps=default  # by level, below
build=build
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out | --seeds | --arms | --level | --steps | --jobs | --build-dir)
      [ $# -ge 2 ] || { echo "lm_experiment.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --out) out="$2" ;; --seeds) seeds="$2" ;; --arms) arms="$2" ;; --level) level="$2" ;;
        --steps) steps="$2" ;; --jobs) jobs="$2" ;; --build-dir) build="$2" ;;
      esac
      shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "lm_experiment.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

level_flags=()
case "$level" in
  byte) [ "$steps" != default ] || steps=12000 ;;
  word) [ "$steps" != default ] || steps=4000; level_flags=(--min-count 3) ;;
  *) echo "lm_experiment.sh: --level must be byte or word, not '$level'" >&2; exit 2 ;;
esac
case "$steps" in '' | *[!0-9]* | 0) echo "lm_experiment.sh: --steps must be a positive integer, not '$steps'" >&2; exit 2 ;; esac
warmup=$(( steps / 20 > 0 ? steps / 20 : 1 ))
eval_every=$(( steps / 12 > 0 ? steps / 12 : 1 ))
log_every=$(( steps / 120 > 0 ? steps / 120 : 1 ))
checkpoint_every=$(( steps / 48 > 0 ? steps / 48 : 1 ))

[ -x "$build/train_lm" ] || { echo "lm_experiment.sh: no $build/train_lm; build it first (tools/test.sh or cmake)" >&2; exit 1; }
./tools/prepare_kjv.sh data/kjv >/dev/null

arm_flags() {
  case "$1" in
    smoe) echo "--router smoe" ;;
    acmoe) echo "--router acmoe --eval both" ;;
    xmoe) echo "--router xmoe" ;;
    acmoe-neutral) echo "--router acmoe --ac-small-clusters neutral --eval both" ;;
    *) echo "lm_experiment.sh: unknown arm '$1'" >&2; return 1 ;;
  esac
}

# One run: fresh, resumed, or (finished) skipped; its log beside its files.
run() {
  local arm=$1 seed=$2 dir="$out/$level/s$2/$1" resume=()
  mkdir -p "$dir"
  if [ -f "$dir/metrics.jsonl" ] && grep -q '"type":"final"' "$dir/metrics.jsonl"; then return 0; fi
  [ -f "$dir/checkpoint.safetensors" ] && resume=(--resume)
  # shellcheck disable=SC2046
  "$build/train_lm" --recipe switch-s --data data/kjv --level "$level" --batch 12 --micro-batch 12 \
    --steps "$steps" --warmup "$warmup" --seed "$seed" --threads 1 --log-every "$log_every" \
    --eval-every "$eval_every" --eval-batches 20 --checkpoint-every "$checkpoint_every" --out "$dir" ${level_flags[@]+"${level_flags[@]}"} $(arm_flags "$arm") ${resume[@]+"${resume[@]}"} \
    ${extra[@]+"${extra[@]}"} >>"$dir/train.log" 2>&1 || { echo "lm_experiment.sh: $dir failed (see train.log)" >&2; return 1; }
}

for arm in $arms; do arm_flags "$arm" >/dev/null || exit 2; done

status=0
for seed in $seeds; do
  for arm in $arms; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || status=1; done
    echo "lm_experiment.sh: $level seed $seed $arm"
    run "$arm" "$seed" &
  done
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || status=1; done
exit $status
