#!/usr/bin/env bash
# The GPU verification of moegrad's CUDA backend, on any x86-64 Linux machine
# with an NVIDIA GPU and driver, from the pack that tools/gpu_pack.sh made on
# a machine without a GPU (it copies this script into the pack). Two
# commands, each done within 10 minutes however its steps end:
#
#   PACK/gpu_session.sh OUT_DIR check   the CUDA suites with a usable GPU required (a skipped
#                                       CUDA test fails), the rest of the suite with the GPU
#                                       hidden, then the CUDA suites under compute-sanitizer's
#                                       memcheck, racecheck and initcheck, with the exact allocator
#   PACK/gpu_session.sh OUT_DIR perf    train_lm and train_image on the GPU and on the CPU, then
#                                       the benchmark table against PyTorch (bench/compare.py)
#
# Both start by checking the programs' shared libraries and the GPU (a GPU
# that cannot be used fails there, and the steps that need it are reported as
# not run). `tests`, `sanitize`, `train` and `bench` run parts of the two;
# with no stage named, both run.
# Every step runs under its own time limit, logs to OUT_DIR/STEP.log and adds
# one line to OUT_DIR/summary.txt; the exit status is the worst of the steps'
# (0: every step passed; a step that could not run counts as failed). How to
# read the logs: docs/cuda.md.
#
# Environment (all optional):
#   MOEGRAD_CUDA_LIB_DIRS      colon-separated folders to search first for libcublas.so.13 and the
#                              other CUDA libraries the programs need
#   MOEGRAD_COMPUTE_SANITIZER  the compute-sanitizer to use (else the pack's, PATH's, the CUDA
#                              toolkit's, pip's)
#   MOEGRAD_SANITIZER_FILTER   the tests run under compute-sanitizer (default Cuda*, less the op
#                              table's device gradchecks: they rerun the kernels of its
#                              MatchesCpu cases on the same shapes, thousands of times)
#   MOEGRAD_TORCH_PYTHON       the Python with PyTorch for the benchmark (default python3)
#   MOEGRAD_LIMIT_SCALE        multiplies every time limit (default 1)
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
[ $# -ge 1 ] && [ "$1" != -h ] && [ "$1" != --help ] || { usage; exit 2; }
pack="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$pack/bin/moegrad_tests" ]; then
  echo "gpu_session.sh: $pack holds no pack (no bin/moegrad_tests): make one with tools/gpu_pack.sh and run the" \
       "gpu_session.sh inside it" >&2
  exit 2
fi
mkdir -p "$1" || exit 2
out="$(cd "$1" && pwd)"
shift
stages=" ${*:-check perf} "
for s in $stages; do
  case "$s" in check|perf|tests|sanitize|train|bench) ;; *) echo "gpu_session.sh: unknown stage $s" >&2; exit 2 ;; esac
done
want() {  # want STAGE: whether this run includes it
  case "$1" in
    tests|sanitize) [[ $stages == *" $1 "* || $stages == *" check "* ]] ;;
    train|bench) [[ $stages == *" $1 "* || $stages == *" perf "* ]] ;;
  esac
}
cores=$(nproc 2>/dev/null || echo 4)
bin="$pack/bin"
worst=0
gpu_ok=0
libpath=""

manifest() { sed -n "s/^$1=//p" "$pack/manifest.txt"; }
limit() { awk -v s="$1" -v f="${MOEGRAD_LIMIT_SCALE:-1}" 'BEGIN { printf "%d", s * f + 0.5 }'; }

# record STEP RC SECONDS NOTE: one summary line; the worst status so far.
record() {
  local status=passed
  case "$2" in 0) ;; 124|137) status=TIMEOUT ;; not-run) status="NOT RUN" ;; *) status=FAILED ;; esac
  local rc=$2
  [ "$rc" = not-run ] && rc=2
  [ "$rc" -gt "$worst" ] && worst=$rc
  local line
  line=$(printf '%-16s %-8s %4s s  %s' "$1" "$status" "$3" "$4")
  echo "$line" >> "$out/summary.txt"
  echo "== $line"
}

# What a log says in one line: gtest's failed and skipped tests, the test a
# timeout stopped in, compute-sanitizer's error summary, or the last line.
tests_marked() {  # tests_marked LOG FAILED|SKIPPED: how many tests gtest marked so (each is listed twice)
  grep -E "^\[ *$2 *\] [A-Za-z]" "$1" | sed 's/ (.*//' | sort -u | wc -l
}

note_of() {  # note_of LOG RC
  local log=$1 rc=$2 passed failed skipped running errors
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  failed=$(tests_marked "$log" FAILED)
  skipped=$(tests_marked "$log" SKIPPED)
  errors=$(grep -o 'ERROR SUMMARY: [0-9]* errors\{0,1\}' "$log" | tail -1)
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    running=$(grep -E '^\[ RUN      \]' "$log" | tail -1 | sed 's/.*\] //')
    echo "over its limit${running:+, in test $running}${errors:+; $errors}"
  elif [ "$failed" != 0 ] && grep -q '^no usable CUDA device' "$log"; then
    grep -m1 '^no usable CUDA device' "$log" | cut -c1-400
  elif grep -qE '^\[==========\] .* ran\.' "$log"; then
    echo "${passed:-0} tests passed, $failed failed, $skipped skipped${errors:+; $errors}"
  else
    echo "${errors:-$(grep -v '^\s*$' "$log" | tail -1 | cut -c1-160)}"
  fi
}

# start STEP SECONDS COMMAND...: runs COMMAND in the background under its
# limit, with the libraries found by check_libraries (when libpath is set),
# its own temporary folder (gtest's TEST_TMPDIR: steps that run at the same
# time never share a file), output to OUT/STEP.log.
declare -A pids
start() {
  local step=$1 secs path
  secs=$(limit "$2")
  shift 2
  path=$(printf '%s' "$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" | sed 's/^://')
  rm -f "$out/$step.rc"
  rm -rf "$out/tmp/$step"
  mkdir -p "$out/tmp/$step"
  (
    begin=$SECONDS
    env ${path:+LD_LIBRARY_PATH="$path"} TEST_TMPDIR="$out/tmp/$step" TMPDIR="$out/tmp/$step" \
      timeout -k 5 "$secs" "$@" > "$out/$step.log" 2>&1
    echo "$? $((SECONDS - begin)) $secs" > "$out/$step.rc"
  ) &
  pids[$step]=$!
}

# finish STEP [CHECK] [NOTE]: waits for STEP, records it; CHECK (a function
# given the log) may fail a step whose command passed, printing why; NOTE (a
# function given the log) says what a passed step's log says instead.
finish() {
  local step=$1 check=${2:-} note_fn=${3:-} rc secs lim note why
  wait "${pids[$step]}"
  read -r rc secs lim < "$out/$step.rc"
  rm -rf "$out/tmp/$step" "$out/$step.rc"
  rmdir "$out/tmp" 2>/dev/null
  note=$(note_of "$out/$step.log" "$rc")
  [ "$rc" = 0 ] && [ -n "$note_fn" ] && note=$($note_fn "$out/$step.log")
  if [ "$rc" = 0 ] && [ -n "$check" ] && ! why=$($check "$out/$step.log"); then
    rc=3 note="${note:+$note; }$why"
  fi
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && note="$note (limit $lim s)"
  record "$step" "$rc" "$secs" "$note"
}

run() { start "$@"; finish "$1"; }
not_run() { record "$1" not-run 0 "$2"; }
need_gpu() {  # need_gpu STEP: true when the GPU is usable, else records the step as not run
  [ $gpu_ok = 1 ] && return 0
  not_run "$1" "no usable CUDA device: see device.log"
  return 1
}
need_libs() {  # need_libs STEP: the same for the libraries
  [ $libs_ok = 0 ] && return 0
  not_run "$1" "the libraries are not all found: see libs.log"
  return 1
}

device_passed() {  # the device test ran and passed (not merely exited 0)
  grep -q '^\[  PASSED  \] 1 test' "$1" || { echo "CudaRuntime.DeviceIsUsable did not pass"; return 1; }
}

no_skips() {  # a CUDA suite passes only when every test ran
  local n
  n=$(tests_marked "$1" SKIPPED)
  [ "$n" = 0 ] || { echo "$n CUDA tests skipped: a skip hides a test that did not run"; return 1; }
}

# ---- the shared libraries: the pack's own (moegrad, the CUDA runtime it was
# linked with), the C++ runtime fallbacks only where this machine lacks them
# or has too old a version, and cuBLAS from this machine ----
site_dirs=""
python_dirs() {  # site-packages folders of the machine's Pythons (pip's nvidia-* wheels live there), asked once
  local py
  if [ -z "$site_dirs" ]; then
    site_dirs=" "
    for py in python3 "${MOEGRAD_TORCH_PYTHON:-}"; do
      command -v "$py" >/dev/null 2>&1 || continue
      site_dirs="$site_dirs $(timeout 10 "$py" -c 'import site; print(" ".join(site.getsitepackages() +
        [site.getusersitepackages()]))' 2>/dev/null)"
    done
  fi
  printf '%s\n' $site_dirs
}

cuda_lib_dirs() {  # where to look for a CUDA library this machine's loader does not find
  local d
  tr ':' '\n' <<< "${MOEGRAD_CUDA_LIB_DIRS:-}"
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do echo "$d"; done
  ls -d /usr/local/cuda-*/lib64 /usr/local/cuda-*/targets/x86_64-linux/lib /opt/cuda/lib64 2>/dev/null | sort -rV
  for d in $(python_dirs); do ls -d "$d"/nvidia/cu13/lib "$d"/nvidia/*/lib 2>/dev/null; done
  [ -n "${CONDA_PREFIX:-}" ] && echo "$CONDA_PREFIX/lib"
}

# problems PROGRAM...: "SONAME WHY" per library the loader cannot provide.
problems() {
  local p
  for p in "$@"; do
    LD_LIBRARY_PATH="$libpath" "${ldd[@]}" "$p" 2>&1 |
      sed -n -e 's/^[[:space:]]*\([^ ]*\) => not found.*/\1 not-found/p' \
             -e "s/.*: \/.*\/\([^/:]*\): version \`\([^']*\)' not found.*/\1 needs-\2/p"
  done | sort -u
}

check_libraries() {
  local begin=$SECONDS log="$out/libs.log" progs so why dir found unresolved="" searched fallback="$out/lib-fallback"
  if command -v ldd >/dev/null 2>&1; then ldd=(ldd); else ldd=(/lib64/ld-linux-x86-64.so.2 --list); fi
  progs=("$bin"/moegrad_tests "$bin"/train_lm "$bin"/train_image "$bin"/moegrad_bench)
  python_dirs > /dev/null  # asks the Pythons here, in this shell, so that later calls reuse the answer
  libpath="$pack/lib"
  rm -rf "$fallback"
  mkdir -p "$fallback"
  searched=$(cuda_lib_dirs | awk 'NF && !seen[$0]++')
  {
    echo "pack: $pack"
    sed 's/^/  /' "$pack/manifest.txt"
    echo "this machine: $(uname -srm); $("${ldd[@]}" --version 2>&1 | head -1)"
    while read -r so why; do
      [ -n "$so" ] || continue
      if [ -f "$pack/lib/fallback/$so" ]; then
        ln -sf "$pack/lib/fallback/$so" "$fallback/$so"
        echo "$so: $why here; the pack's copy is used"
        continue
      fi
      found=""
      for dir in $searched; do
        if [ -e "$dir/$so" ]; then found=$dir; break; fi
      done
      if [ -n "$found" ] && [ "$why" = not-found ]; then
        libpath="$libpath:$found"
        echo "$so: not found by the loader; using $found/$so"
      fi
    done < <(problems "${progs[@]}")
    libpath="$fallback:$libpath"
    echo "LD_LIBRARY_PATH for the programs: $libpath"
    for p in "${progs[@]}" "$pack/lib/libmoegrad.so"; do
      echo "--- $(basename "$p")"
      if command -v readelf >/dev/null 2>&1; then readelf -d "$p" | grep -E 'NEEDED|RUNPATH|RPATH'
      else grep "^needed $(basename "$p")=" "$pack/manifest.txt"; fi
      LD_LIBRARY_PATH="$libpath" "${ldd[@]}" "$p" 2>&1
    done
  } > "$log" 2>&1
  unresolved=$(problems "${progs[@]}" | tr '\n' ';' | sed 's/;$//; s/;/; /g')
  if [ -z "$unresolved" ]; then
    record libs 0 $((SECONDS - begin)) "every library found; LD_LIBRARY_PATH=$libpath"
    return 0
  fi
  why="unresolved: $unresolved."
  case "$unresolved" in *libcublas*) why="$why cuBLAS 13 is needed: install the CUDA 13 toolkit or pip's CUDA 13 cuBLAS \
wheel, or set MOEGRAD_CUDA_LIB_DIRS to its folder, or make the pack with --with-cublas." ;; esac
  case "$unresolved" in *GLIBC_*) why="$why This machine's C library is older than the one the pack was built \
against ($(manifest glibc_needed)): make the pack on an older distribution." ;; esac
  echo "$why searched: $(echo $searched)" >> "$log"
  record libs 1 $((SECONDS - begin)) "$why (libs.log lists the folders searched)"
  return 1
}

# ---- the GPU: can cuda:0 run kernels from this pack? ----
check_device() {
  local cc archs sass="" ptx=""
  {
    command -v nvidia-smi >/dev/null 2>&1 && timeout 10 nvidia-smi
    echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}"
  } > "$out/gpu.txt" 2>&1
  start device 40 env MOEGRAD_REQUIRE_CUDA=1 "$bin/moegrad_tests" --gtest_filter=CudaRuntime.DeviceIsUsable
  finish device device_passed
  device_passed "$out/device.log" > /dev/null && gpu_ok=1
  # the code the pack has for this GPU (CMAKE_CUDA_ARCHITECTURES: N-real is
  # machine code, N-virtual PTX, N both)
  cc=$(sed -n 's/.*compute capability \([0-9]*\)\.\([0-9]*\).*/\1\2/p' "$out/device.log" | head -1)
  archs=$(manifest cuda_archs)
  for a in ${archs//;/ }; do
    case "$a" in *-real) sass="$sass ${a%-real}" ;; *-virtual) ptx="$ptx ${a%-virtual}" ;; *) sass="$sass $a" ptx="$ptx $a" ;; esac
  done
  [ -n "$cc" ] || return 0
  local native=""  # machine code for sm_XY runs on sm_XZ with Z >= Y
  for a in $sass; do [ $((a / 10)) = $((cc / 10)) ] && [ "$a" -le "$cc" ] && native=$a; done
  if [ -n "$native" ]; then
    echo "   the pack has machine code for this GPU (sm_$native for sm_$cc)"
  elif [ -n "$ptx" ] && [ "$(printf '%s\n' $ptx | sort -n | head -1)" -le "$cc" ]; then
    echo "   no machine code for sm_$cc in the pack ($archs): the driver compiles its PTX at the first start"
  else
    echo "   the pack has no code for sm_$cc ($archs): make it with tools/gpu_pack.sh --cuda-arch $cc" \
      | tee -a "$out/summary.txt"
  fi
}

# ---- the stages ----
{ echo; echo "== gpu_session.sh$stages at $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"; } | tee -a "$out/summary.txt"
check_libraries
libs_ok=$?
need_libs device && check_device

if want tests; then
  half=$(( cores > 1 ? cores / 2 : 1 ))
  # the CUDA suites and, at the same time, the rest on the CPU with every GPU
  # hidden (so the WithoutCudaDevice tests run for real)
  if [ $gpu_ok = 1 ]; then
    start cuda_tests 230 env MOEGRAD_REQUIRE_CUDA=1 OMP_NUM_THREADS=$half "$bin/moegrad_tests" --gtest_filter='Cuda*'
  fi
  if [ $libs_ok = 0 ]; then
    start other_tests 230 env CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=$half "$bin/moegrad_tests" --gtest_filter='-Cuda*'
  fi
  if [ $gpu_ok = 1 ]; then finish cuda_tests no_skips; else need_gpu cuda_tests; fi
  need_libs other_tests && finish other_tests
fi

find_sanitizer() {
  local c d
  for c in "${MOEGRAD_COMPUTE_SANITIZER:-}" "$pack/compute-sanitizer/compute-sanitizer" \
           "$(command -v compute-sanitizer 2>/dev/null)" \
           /usr/local/cuda/bin/compute-sanitizer $(ls -d /usr/local/cuda-*/bin/compute-sanitizer 2>/dev/null | sort -rV) \
           /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
  done
  for d in $(python_dirs); do
    for c in "$d"/nvidia/*/compute-sanitizer/compute-sanitizer "$d"/nvidia/*/bin/compute-sanitizer; do
      [ -x "$c" ] && { echo "$c"; return 0; }
    done
  done
  return 1
}

if want sanitize; then
  tools=(memcheck racecheck initcheck)
  if [ $gpu_ok = 1 ] && sanitizer=$(find_sanitizer); then
    echo "   $sanitizer: $(timeout 10 "$sanitizer" --version 2>&1 | grep -m1 -i version)"
    third=$(( cores > 2 ? cores / 3 : 1 ))
    for tool in "${tools[@]}"; do
      start "$tool" 260 env MOEGRAD_REQUIRE_CUDA=1 MOEGRAD_CUDA_ALLOCATOR=exact OMP_NUM_THREADS=$third \
        "$sanitizer" --tool "$tool" --error-exitcode 86 --report-api-errors no --print-limit 20 \
        "$bin/moegrad_tests" --gtest_filter="${MOEGRAD_SANITIZER_FILTER:-Cuda*-CudaOpTable/OpParity.GradcheckOnDevice/*}"
    done
    for tool in "${tools[@]}"; do finish "$tool" no_skips; done
  else
    for tool in "${tools[@]}"; do
      if [ $gpu_ok = 1 ]; then
        not_run "$tool" "compute-sanitizer not found (the pack, PATH, /usr/local/cuda*/bin, pip's nvidia wheels): \
install CUDA 13's, set MOEGRAD_COMPUTE_SANITIZER or make the pack with --with-sanitizer"
      else need_gpu "$tool"; fi
    done
  fi
fi

# what a trainer's log says, for the summary
lm_note() { sed -n 's/^ *\(valid \|training speed\)/\1/p' "$1" | tr -s ' ' | paste -sd ';' - | sed 's/;/; /g'; }
image_note() { grep -oE '[0-9.]+ images/s|clean accuracy [0-9.]+%' "$1" | paste -sd ';' - | sed 's/;/; /g'; }

# train_both PROGRAM NOTE GPU_SECONDS CPU_SECONDS ARGS...: the same training run
# on the GPU and on every CPU core, steps PROGRAM_cuda and PROGRAM_cpu
train_both() {
  local prog=$1 note=$2 gpu_secs=$3 cpu_secs=$4
  shift 4
  if need_gpu "${prog}_cuda"; then
    start "${prog}_cuda" "$gpu_secs" "$bin/$prog" "$@" --device cuda --out "$out/${prog}_cuda"
    finish "${prog}_cuda" "" "$note"
  fi
  if need_libs "${prog}_cpu"; then
    start "${prog}_cpu" "$cpu_secs" "$bin/$prog" "$@" --device cpu --threads "$cores" --out "$out/${prog}_cpu"
    finish "${prog}_cpu" "" "$note"
  fi
}

if want train; then
  train_both train_lm lm_note 60 100 --data "$pack/data/kjv" --arch sgsgsc --router acmoe --seq-len 128 --batch 16 \
    --steps 200 --warmup 50 --eval-batches 20
  train_both train_image image_note 60 90 --data "$pack/data/fashion-mnist" --moe topk --steps 100 --batch 64 \
    --train-size 10000 --test-size 2000
fi

if want bench && need_gpu bench; then
  # compare.py runs moegrad_bench through this wrapper, so that PyTorch's
  # processes keep their own library path
  mkdir -p "$out/bin"
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
    "$libpath" "$bin/moegrad_bench" > "$out/bin/moegrad_bench"
  chmod +x "$out/bin/moegrad_bench"
  py=${MOEGRAD_TORCH_PYTHON:-python3}
  libpath_saved=$libpath libpath=""
  start bench 170 bash -c '"$1" -c "import torch; assert torch.cuda.is_available(), \"torch.cuda.is_available() is False\"" ||
    { echo "bench: $1 has no PyTorch with CUDA (set MOEGRAD_TORCH_PYTHON to a Python that has it)"; exit 1; }
    "$1" "$2/bench/compare.py" --device cuda --python "$1" --build-dir "$3/bin" --json "$3/bench.json"' \
    bench "$py" "$pack" "$out"
  finish bench
  libpath=$libpath_saved
  sed -n '/^| case/,/^$/p' "$out/bench.log"
fi

echo "gpu_session.sh:$stages done: exit status $worst (summary: $out/summary.txt)" | tee -a "$out/summary.txt"
exit "$worst"
