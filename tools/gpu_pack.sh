#!/usr/bin/env bash
# Prepares, on a machine without a GPU, everything tools/gpu_session.sh runs
# on one: builds the CUDA backend for sm_90 (Hopper) with the tests, both
# trainers and the benchmark, and puts the programs and their data in .gpu/
# (git-ignored; about 35 MiB, inside the device tool's 64 MiB carry together
# with the working tree: stripped programs, the first 10000 of Fashion-MNIST's
# training images, which is what gpu_session.sh trains on). The GPU
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
strip .gpu/{moegrad_tests,train_lm,train_image,moegrad_bench}
cp data/kjv/{train,valid,test}.txt .gpu/kjv/
cp "$fashion"/t10k-*.gz .gpu/fashion-mnist/
# the first 10000 training images and labels: IDX header (magic, count, and
# for images rows and cols, big-endian int32) with the count rewritten
python3 - "$fashion" .gpu/fashion-mnist <<'PY'
import gzip, struct, sys
src, dst, n = sys.argv[1], sys.argv[2], 10000
for name, header, item in [("train-images-idx3-ubyte.gz", 16, 28 * 28), ("train-labels-idx1-ubyte.gz", 8, 1)]:
    data = gzip.open(f"{src}/{name}").read()
    head = bytearray(data[:header])
    head[4:8] = struct.pack(">i", n)
    with gzip.open(f"{dst}/{name}", "wb") as f:
        f.write(bytes(head) + data[header:header + n * item])
PY
git rev-parse HEAD > .gpu/commit
du -sh .gpu
