#!/usr/bin/env bash
# The main job: installs missing apt packages, builds moegrad in build/ and
# runs the example training program. Arguments are passed on to it.
set -euo pipefail
cd "$(dirname "$0")/.."

PROGRAM=mlp  # the program in examples/ that this job runs

./tools/setup.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target "$PROGRAM"
exec "./build/$PROGRAM" "$@"
