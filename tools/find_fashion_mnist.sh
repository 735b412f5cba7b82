#!/usr/bin/env bash
# Prints the folder holding Fashion-MNIST's four gzip'd IDX files (the folder
# examples/train_image reads), installing Debian's dataset-fashion-mnist
# package when it is missing. Messages go to stderr, so
#   dir=$(tools/find_fashion_mnist.sh)
# captures only the folder.
set -euo pipefail

dir=/usr/share/datasets/fashion-mnist
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"

"$(dirname "$0")/setup.sh" dataset-fashion-mnist

for f in $files; do
  if [ ! -s "$dir/$f" ]; then
    echo "find_fashion_mnist.sh: $dir/$f is missing although dataset-fashion-mnist is installed" >&2
    exit 1
  fi
done
echo "$dir"
