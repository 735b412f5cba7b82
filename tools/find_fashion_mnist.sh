#!/usr/bin/env bash
# Prints the folder holding Fashion-MNIST's four gzip'd IDX files (the folder
# examples/train_image reads), installing Debian's dataset-fashion-mnist
# package when it is missing. Messages go to stderr, so
#   dir=$(tools/find_fashion_mnist.sh)
# captures only the folder.
set -euo pipefail

dir=/usr/share/datasets/fashion-mnist
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"

if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "find_fashion_mnist.sh: dataset-fashion-mnist is missing and there is neither root nor sudo to install it" >&2
    exit 1
  fi
  echo "find_fashion_mnist.sh: installing dataset-fashion-mnist" >&2
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null
fi

for f in $files; do
  if [ ! -s "$dir/$f" ]; then
    echo "find_fashion_mnist.sh: $dir/$f is missing although dataset-fashion-mnist is installed" >&2
    exit 1
  fi
done
echo "$dir"
