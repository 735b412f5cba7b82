#!/usr/bin/env bash
# Installs Debian packages only when they are missing (checked with dpkg -s), so
# a second run does nothing and is fast. Runs as root, or through sudo
# otherwise. Messages go to stderr; apt's own output only when it fails.
#
#   tools/setup.sh              what moegrad needs to build and test (PACKAGES)
#   tools/setup.sh --fuzz       PACKAGES and FUZZ_PACKAGES (tools/fuzz.sh)
#   tools/setup.sh PKG...       just these (for scripts that need a data package)
#
# Add new build or test dependencies to PACKAGES.
set -euo pipefail

# bible-kjv: the text of the main job (tools/prepare_kjv.sh); python3-matplotlib:
# its plot (tools/plot_curves.py, run with /usr/bin/python3). libopenblas-openmp-dev:
# the CPU matrix products (cmake/blas.cmake), OpenBLAS's OpenMP build so that it
# shares moegrad's OpenMP threads. OpenMPI: training over several
# processes (dist/).
PACKAGES="build-essential cmake libeigen3-dev libopenblas-openmp-dev libgtest-dev nlohmann-json3-dev zlib1g-dev bible-kjv python3-matplotlib libopenmpi-dev openmpi-bin"
# Only for fuzzing: clang 14, its runtimes (libclang_rt.fuzzer, the
# sanitizers) and its OpenMP.
FUZZ_PACKAGES="clang-14 libclang-rt-14-dev libomp-14-dev"

wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && read -r -a wanted <<< "$PACKAGES"
[ "${1:-}" = "--fuzz" ] && read -r -a wanted <<< "$PACKAGES $FUZZ_PACKAGES"
missing=()
for pkg in "${wanted[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "setup.sh: missing packages (${missing[*]}) and neither root nor sudo to install them" >&2
  exit 1
fi

echo "setup.sh: installing ${missing[*]}" >&2
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
