#!/usr/bin/env bash
# Builds moegrad and runs its whole test suite with ctest: the GoogleTest
# suites, the examples (the MLP reaching its loss, the README example) and the
# installed-package check. Installs missing apt packages first (tools/setup.sh).
#
#   ./tools/test.sh              Release build in build/
#   ./tools/test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build
#                                in build-asan/; any sanitizer report fails the run
#
# MOEGRAD_BUILD_DIR=dir changes the build folder (dir, or dir-asan with --sanitize).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=0
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    *) echo "usage: $0 [--sanitize]" >&2; exit 2 ;;
  esac
done

./tools/setup.sh

build="${MOEGRAD_BUILD_DIR:-build}"
cmake_args=()
if [ "$sanitize" -eq 1 ]; then
  build="$build-asan"
  cmake_args=(-DMOEGRAD_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
  # protect_shadow_gap=0: the CUDA driver maps memory where ASan would protect
  # its shadow gap (google/sanitizers#629), so cudaMalloc fails without it when
  # a GPU is visible. The leaks LSan reports inside the CUDA libraries
  # themselves are suppressed (lsan.supp, written below).
  export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_init_order=1:detect_stack_use_after_return=1:protect_shadow_gap=0"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
fi

cmake -S . -B "$build" "${cmake_args[@]}" >/dev/null
if [ "$sanitize" -eq 1 ]; then
  printf 'leak:libcuda.so\nleak:libcudart.so\nleak:libcublas.so\nleak:libcublasLt.so\n' > "$build/lsan.supp"
  export LSAN_OPTIONS="suppressions=$(cd "$build" && pwd)/lsan.supp"
fi
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j2
