#!/usr/bin/env bash
# Prepares, on a machine without a GPU, everything that the GPU verification
# (tools/gpu_session.sh) runs on a machine with one, as one folder: the pack.
# It builds the CUDA backend with the test suite, both trainers and the
# benchmark (moegrad as a shared library, so the GPU code is in the pack once,
# for several GPU architectures and a portable CPU target), and copies in the
# CUDA runtime they were linked with, fallback copies of the C++ runtime
# libraries, the test fixtures, the trainers' data, the benchmark scripts, the
# script gpu_session.sh and a manifest. The GPU machine needs only an NVIDIA driver
# and cuBLAS (see docs/cuda.md): no compiler, no packages, no network.
#
#   tools/gpu_pack.sh [--out DIR] [--build-dir DIR] [--cuda-arch LIST] [--cpu-target MARCH]
#                     [--max-mib N] [--with-cublas] [--with-sanitizer DIR] [--train-images N] [--test-images N]
#
#   --out DIR          the pack (default gpu-pack/ in the checkout; replaced)
#   --build-dir DIR    where to build (default build-gpu/)
#   --cuda-arch LIST   CMAKE_CUDA_ARCHITECTURES (default 75-real;80-real;86-real;89-real;90-real;100-real;120:
#                      code for Turing to Blackwell, and PTX that any newer GPU compiles at load)
#   --cpu-target MARCH the programs' CPU target (default x86-64-v3: AVX2 and FMA, every x86 server CPU
#                      since 2015); never -march=native, which may not run on the GPU machine's CPU
#   --max-mib N        fail when the pack is larger (default 80)
#   --with-cublas      also pack the libcublas and libcublasLt the programs were linked with (about
#                      600 MiB: raise --max-mib), for a GPU machine that has no CUDA 13 cuBLAS
#   --with-sanitizer DIR  also pack this compute-sanitizer folder (a CUDA 13 toolkit's compute-sanitizer/,
#                      the program and its libraries; tens of MiB), for a GPU machine without one
#   --train-images N, --test-images N   Fashion-MNIST images packed (default 10000 and 2000: what
#                      gpu_session.sh's train_image run reads)
#
# Then copy the pack to the GPU machine and run there, one command each:
#   PACK/gpu_session.sh OUT_DIR check     the test suites and compute-sanitizer
#   PACK/gpu_session.sh OUT_DIR perf      both trainers on the GPU and the CPU, the benchmark
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

out=gpu-pack build=build-gpu cpu_target=x86-64-v3 max_mib=80 with_cublas=0 sanitizer="" train_images=10000 test_images=2000
archs="75-real;80-real;86-real;89-real;90-real;100-real;120"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --build-dir) build="$2"; shift 2 ;;
    --cuda-arch) archs="$2"; shift 2 ;;
    --cpu-target) cpu_target="$2"; shift 2 ;;
    --max-mib) max_mib="$2"; shift 2 ;;
    --with-cublas) with_cublas=1; shift ;;
    --with-sanitizer) sanitizer="$2"; shift 2 ;;
    --train-images) train_images="$2"; shift 2 ;;
    --test-images) test_images="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_pack.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$out" in /*) ;; *) out="$repo/$out" ;; esac

tools/setup.sh build-essential cmake libeigen3-dev libgtest-dev nlohmann-json3-dev zlib1g-dev binutils python3
tools/prepare_kjv.sh data/kjv
fashion="$(tools/find_fashion_mnist.sh)"

programs=(moegrad_tests train_lm train_image moegrad_bench)
# Eigen for the CPU matrix products: the pack needs no OpenBLAS on the GPU machine.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMOEGRAD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$archs" \
  -DMOEGRAD_NATIVE=OFF -DMOEGRAD_CPU_TARGET="$cpu_target" -DBUILD_SHARED_LIBS=ON -DMOEGRAD_BLAS=eigen >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${programs[@]}"

# Assemble in a temporary folder beside the pack, then move it into place: an
# interrupted run never leaves a folder that looks complete.
mkdir -p "$(dirname "$out")"
tmp="$(mktemp -d "$out.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,lib/fallback,data/kjv,data/fashion-mnist,bench}
for p in "${programs[@]}"; do
  cp "$build/$p" "$tmp/bin/"
  strip "$tmp/bin/$p"
done
cp "$build/libmoegrad.so" "$tmp/lib/"
strip --strip-unneeded "$tmp/lib/libmoegrad.so"

# The shared libraries the programs resolve here: the CUDA runtime (small)
# always travels and is used; the C++ runtime, OpenMP and zlib travel as
# fallbacks that gpu_session.sh uses only where the GPU machine lacks them or has
# too old a version; cuBLAS only with --with-cublas.
resolved() {  # resolved SONAME: the file it resolves to for the programs here
  LD_LIBRARY_PATH="$build" ldd "$build/moegrad_tests" | awk -v n="$1" '$1 == n && $3 ~ /^\// {print $3}'
}
for so in libcudart.so.13 libstdc++.so.6 libgcc_s.so.1 libgomp.so.1 libz.so.1; do
  file="$(resolved "$so")"
  [ -n "$file" ] || { echo "gpu_pack.sh: the programs do not link $so; update this list" >&2; exit 1; }
  case "$so" in libcudart*) dest="$tmp/lib" ;; *) dest="$tmp/lib/fallback" ;; esac
  cp -L "$file" "$dest/$so"
done
if [ "$with_cublas" = 1 ]; then
  for so in libcublas.so.13 libcublasLt.so.13; do
    file="$(resolved "$so")"
    [ -n "$file" ] || { echo "gpu_pack.sh: $so not found for the programs" >&2; exit 1; }
    cp -L "$file" "$tmp/lib/$so"
  done
fi

if [ -n "$sanitizer" ]; then
  [ -x "$sanitizer/compute-sanitizer" ] || { echo "gpu_pack.sh: $sanitizer/compute-sanitizer is not a program" >&2; exit 1; }
  cp -rL "$sanitizer" "$tmp/compute-sanitizer"
fi
cp -r tests/fixtures "$tmp/bin/fixtures"  # test_fixtures.cpp looks beside its binary
cp data/kjv/{train,valid,test}.txt "$tmp/data/kjv/"
# the first N training and test images and labels: IDX header (magic, count,
# and for images rows and cols, big-endian int32) with the count rewritten
python3 - "$fashion" "$tmp/data/fashion-mnist" "$train_images" "$test_images" <<'PY'
import gzip, struct, sys
src, dst, n_train, n_test = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for split, n in [("train", n_train), ("t10k", n_test)]:
    for kind, header, item in [("images-idx3", 16, 28 * 28), ("labels-idx1", 8, 1)]:
        name = f"{split}-{kind}-ubyte.gz"
        data = gzip.open(f"{src}/{name}").read()
        count = struct.unpack(">i", data[4:8])[0]
        if n > count:
            sys.exit(f"gpu_pack.sh: {name} has {count} items, fewer than the {n} asked for")
        head = bytearray(data[:header])
        head[4:8] = struct.pack(">i", n)
        with gzip.open(f"{dst}/{name}", "wb") as f:
            f.write(bytes(head) + data[header:header + n * item])
PY
cp bench/compare.py bench/torch_peer.py "$tmp/bench/"
cp tools/gpu_session.sh "$tmp/"

# The manifest: what was built, from what, for what; gpu_session.sh prints it
# and reads cuda_archs, glibc_needed and the libraries from it.
{
  echo "commit=$(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' with uncommitted changes')"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(ldd --version | head -1)"
  echo "cuda_archs=$archs"
  echo "cpu_target=$cpu_target"
  echo "nvcc=$("$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")" --version | grep -o 'V[0-9.]*$')"
  echo "cudart=$(readlink -f "$(resolved libcudart.so.13)"), md5 $(md5sum < "$tmp/lib/libcudart.so.13" | cut -c1-32)"
  echo "cublas_packed=$with_cublas"
  echo "compute_sanitizer=${sanitizer:-not packed}"
  echo "glibc_needed=$( { for f in "${programs[@]/#/$tmp/bin/}" "$tmp/lib/libmoegrad.so"; do objdump -T "$f"; done; } |
    grep -o 'GLIBC_[0-9.]*' | sort -V | tail -1)"
  for f in "${programs[@]/#/$tmp/bin/}" "$tmp/lib/libmoegrad.so"; do
    echo "needed $(basename "$f")=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
  done
} > "$tmp/manifest.txt"

chmod 755 "$tmp"  # mktemp made it private
size_mib=$(du -sm "$tmp" | cut -f1)
if [ "$size_mib" -gt "$max_mib" ]; then
  echo "gpu_pack.sh: the pack is $size_mib MiB, over --max-mib $max_mib; its largest files:" >&2
  find "$tmp" -type f -printf '%s %P\n' | sort -rn | head -8 | awk '{printf "  %6.1f MiB  %s\n", $1 / 1048576, $2}' >&2
  exit 1
fi
echo "size_mib=$size_mib" >> "$tmp/manifest.txt"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "gpu_pack.sh: $out ($size_mib MiB):"
sed 's/^/  /' "$out/manifest.txt"
