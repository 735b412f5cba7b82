#!/usr/bin/env bash
# Fuzzes every reader of outside bytes: builds the libFuzzer targets of
# tests/fuzz (clang 14 with AddressSanitizer and UndefinedBehaviorSanitizer,
# CMake option MOEGRAD_FUZZ) in build-fuzz/ and runs each one for SECONDS on
# its committed seed corpus (tests/fuzz/corpus/<target>). Fails on the first
# crash, hang, leak or sanitizer report; the input that caused it is left in
# build-fuzz/artifacts/. Prints the executions and executions per second of
# each target. Installs clang and libFuzzer first (tools/setup.sh --fuzz).
#
#   tools/fuzz.sh [SECONDS] [TARGET...]    SECONDS per target (default 60); every target by default
#
# New inputs found go to build-fuzz/corpus/<target>, which later runs start
# from too. MOEGRAD_FUZZ_BUILD_DIR=dir changes the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }
shift $(( $# > 0 ? 1 : 0 ))

./tools/setup.sh --fuzz

build="${MOEGRAD_FUZZ_BUILD_DIR:-build-fuzz}"
cmake -S . -B "$build" -DMOEGRAD_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in tests/fuzz/*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export OMP_NUM_THREADS=1
# The readers of files get a fresh file each run: in memory when /dev/shm is there (several times faster).
[ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
mkdir -p "$build/artifacts"
printf '%-22s %12s %10s\n' target executions exec/s
for target in "${targets[@]}"; do
  seeds="tests/fuzz/corpus/$target"
  [ -x "$build/$target" ] && [ -d "$seeds" ] || { echo "fuzz.sh: no target or seed corpus for '$target'" >&2; exit 2; }
  mkdir -p "$build/corpus/$target"
  log="$build/$target.log"
  if ! "$build/$target" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" "$build/corpus/$target" "$seeds" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz.sh: $target failed; the input is in $build/artifacts/, the whole log in $log" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  printf '%-22s %12s %10s\n' "$target" "$runs" "$rate"
done
