#!/usr/bin/env bash
# Builds a language-modelling folder (train.txt, valid.txt, test.txt: the
# WikiText-103 layout that examples/train_lm reads) from the King James Bible
# of Debian's bible-kjv package, installing the package when it is missing.
#
#   tools/prepare_kjv.sh [OUT_DIR]     default: data/kjv in the repository
#
# One verse per line, 31102 lines in all, split by lines in order: the first
# 90% to train.txt, the next 5% to valid.txt, the rest to test.txt. Skips the
# work when OUT_DIR already holds the three non-empty files; the files are
# written to a temporary folder and moved into place, so an interrupted run
# never leaves a folder that looks complete.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/data/kjv}"

if [ -s "$out/train.txt" ] && [ -s "$out/valid.txt" ] && [ -s "$out/test.txt" ]; then
  echo "prepare_kjv.sh: $out already holds train.txt, valid.txt, test.txt"
  exit 0
fi

"$repo/tools/setup.sh" bible-kjv

mkdir -p "$out"
tmp="$(mktemp -d "$out/.prepare.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# `bible` pretty-prints by default (book/chapter headings, verse numbers,
# lines wrapped at 79 columns); -f turns that off and gives one verse per line,
# each preceded by its reference: "Ge1:1 In the beginning God created ...".
# The reference is stripped: it is not prose, and as 31102 distinct words it
# would fill the word vocabulary with tokens seen once (all <unk> after a
# min-count), make byte models spend capacity on predicting a verse counter,
# and give the word-swap attack non-words to hit. The bible command reads its
# verse specification from the arguments; gen1:1-rev22:21 is the whole text.
bible -f gen1:1-rev22:21 | sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' > "$tmp/all.txt"

total=$(wc -l < "$tmp/all.txt")
if [ "$total" -lt 30000 ]; then
  echo "prepare_kjv.sh: bible gave only $total verses, expected 31102" >&2
  exit 1
fi
if grep -qE '^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ ' "$tmp/all.txt"; then
  echo "prepare_kjv.sh: some verse references were not stripped" >&2
  exit 1
fi

n_train=$((total * 90 / 100))
n_valid=$((total * 5 / 100))
sed -n "1,${n_train}p" "$tmp/all.txt" > "$tmp/train.txt"
sed -n "$((n_train + 1)),$((n_train + n_valid))p" "$tmp/all.txt" > "$tmp/valid.txt"
sed -n "$((n_train + n_valid + 1)),\$p" "$tmp/all.txt" > "$tmp/test.txt"

# test.txt last: the folder counts as complete only once it is in place.
for f in train.txt valid.txt test.txt; do mv "$tmp/$f" "$out/$f"; done
echo "prepare_kjv.sh: wrote $out: $(wc -l < "$out/train.txt") train, $(wc -l < "$out/valid.txt") valid, $(wc -l < "$out/test.txt") test lines"
