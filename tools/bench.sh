#!/usr/bin/env bash
# The benchmarks against PyTorch: installs what they need (tools/setup.sh, and
# Debian's python3-torch with OpenBLAS (OpenMP build) as its BLAS), builds bench/moegrad_bench
# (Release) in build/, then runs bench/compare.py, which prints the table of
# moegrad vs PyTorch, side by side with the same threads. Takes a few minutes.
#
#   tools/bench.sh [--build-dir DIR] [COMPARE_FLAGS...]   e.g. --threads 2 --rounds 3 --cases gemm
#
# The flags other than --build-dir go to bench/compare.py (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) [ $# -ge 2 ] || { echo "bench.sh: --build-dir needs a value" >&2; exit 2; }; build="$2"; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done

# libopenblas0-openmp: the OpenBLAS that compare.py hands to PyTorch (see there).
./tools/setup.sh
./tools/setup.sh python3-torch libopenblas0-openmp
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target moegrad_bench
/usr/bin/python3 bench/compare.py --build-dir "$build" --json "$build/bench_results.json" ${args[@]+"${args[@]}"}
