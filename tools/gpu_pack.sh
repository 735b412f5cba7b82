#!/usr/bin/env bash
# Prepares, on a machine without a GPU, everything tools/gpu_session.sh runs
# on one: builds the CUDA backend for sm_90 (Hopper) with the tests, both
# trainers and the benchmark, and puts the programs and their data in .gpu/
# (git-ignored; about 55 MiB, under the device tool's 64 MiB carry). The GPU
# machine has neither Debian's packages nor a network, so the programs travel
# built; they need only the CUDA runtime and cuBLAS there.
#
#   tools/gpu_pack.sh                 then, through the device tool:
#   run(command="tools/gpu_session.sh", carry=[".gpu"])
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
build="${MOEGRAD_GPU_BUILD_DIR:-build-gpu}"

tools/setup.sh build-essential cmake libeigen3-dev libgtest-dev nlohmann-json3-dev zlib1g-dev
tools/prepare_kjv.sh data/kjv
fashion="$(tools/find_fashion_mnist.sh)"

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMOEGRAD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build "$build" -j"$(nproc)" --target moegrad_tests train_lm train_image moegrad_bench

rm -rf .gpu
mkdir -p .gpu/kjv .gpu/fashion-mnist
cp "$build"/{moegrad_tests,train_lm,train_image,moegrad_bench} .gpu/
cp data/kjv/{train,valid,test}.txt .gpu/kjv/
cp "$fashion"/*.gz .gpu/fashion-mnist/
git rev-parse HEAD > .gpu/commit
du -sh .gpu
