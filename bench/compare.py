#!/usr/bin/env python3
"""Runs every benchmark case with moegrad (build/moegrad_bench) and with
PyTorch (bench/torch_peer.py) side by side, the same threads for both, and
prints one table: throughput of each, their ratio, and the peak memory of
each. Each case runs in a fresh process per implementation, `--rounds` times
in alternating order (moegrad first, then PyTorch first, ...); each process
reports the median of its timed runs after warm-up, and the table shows the
median over the rounds. Raw results go to --json.

    bench/compare.py [--build-dir build] [--threads 2] [--rounds 1] [--cases train_step,gemm,...]
                     [--json bench_results.json] [--device cpu|cuda] [--peak-tflops 67]

--device cuda runs the GPU cases (the training step at the Switch-M shape,
larger layers and GEMMs) on GPU 0 with both, and adds each training step's
model TFLOP/s and its share of --peak-tflops (an H100's or H200's FP32 peak
without tensor cores, 67 TFLOP/s: both run with TF32 off).

On the CPU it also prints each training step's model GFLOP/s and its share
of the machine's own sgemm rate, measured in the same run (the gemm/n=2048
case: the faster of the two, both on OpenBLAS).

tools/bench.sh installs what this needs and builds moegrad_bench first.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OPENBLAS_OPENMP = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
PYTHON = "/usr/bin/python3"  # the Python with PyTorch (--python)

# (case, flags for both programs, timing flags): warm-up runs, timed runs,
# calls per timed run (small cases repeat so that one run is well above the
# clock's resolution and the process's noise).
CASES = [
    ("train_step", ["--router", "smoe"], ["--warmup", "2", "--reps", "7"]),
    ("train_step", ["--router", "acmoe"], ["--warmup", "2", "--reps", "7"]),
    ("ac_overhead", [], ["--warmup", "2", "--reps", "9"]),
    ("moe_layer", ["--tokens", "512"], ["--warmup", "3", "--reps", "7", "--inner", "5"]),
    ("moe_layer", ["--tokens", "2048"], ["--warmup", "3", "--reps", "7", "--inner", "2"]),
    ("moe_layer", ["--tokens", "8192"], ["--warmup", "2", "--reps", "5"]),
    ("ac_router", ["--tokens", "2048"], ["--warmup", "3", "--reps", "7", "--inner", "10"]),
    ("gemm", ["--size", "128"], ["--warmup", "20", "--reps", "7", "--inner", "200"]),
    ("gemm", ["--size", "512"], ["--warmup", "5", "--reps", "7", "--inner", "10"]),
    ("gemm", ["--size", "2048"], ["--warmup", "2", "--reps", "5"]),
    ("attention", [], ["--warmup", "3", "--reps", "7"]),
    # with the switch-s recipe's dropout of 0.7 on the probabilities
    ("attention", ["--dropout-pct", "70"], ["--warmup", "3", "--reps", "7"]),
]

# The Switch-M shape: 6 MoE layers (AC on layers 2-6 for acmoe),
# d = 352, sequence 512, batch 32; 8 heads, 16 experts, top-2, expert hidden
# 704 (2d, as the medium Transformer-XL configuration these models come from).
SWITCH_M = ["--moe-layers", "6", "--dim", "352", "--seq", "512", "--batch", "32", "--hidden", "704"]
GPU_CASES = [
    ("train_step", ["--router", "smoe"] + SWITCH_M, ["--warmup", "3", "--reps", "10"]),
    ("train_step", ["--router", "acmoe"] + SWITCH_M, ["--warmup", "3", "--reps", "10"]),
    ("ac_overhead", SWITCH_M, ["--warmup", "3", "--reps", "11"]),
    ("moe_layer", ["--tokens", "512"], ["--warmup", "5", "--reps", "7", "--inner", "50"]),
    ("moe_layer", ["--tokens", "2048"], ["--warmup", "5", "--reps", "7", "--inner", "50"]),
    ("moe_layer", ["--tokens", "8192"], ["--warmup", "5", "--reps", "7", "--inner", "20"]),
    ("ac_router", ["--tokens", "8192"], ["--warmup", "5", "--reps", "7", "--inner", "50"]),
    ("gemm", ["--size", "2048"], ["--warmup", "10", "--reps", "7", "--inner", "50"]),
    ("gemm", ["--size", "4096"], ["--warmup", "3", "--reps", "7", "--inner", "10"]),
    ("attention", ["--batch", "32", "--seq", "512", "--dim", "352"], ["--warmup", "5", "--reps", "7", "--inner", "10"]),
]


def run(cmd, env):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"compare.py: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--json", default="", help="write every raw result here")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--peak-tflops", type=float, default=67.0, help="the GPU's peak, for the share of it")
    ap.add_argument("--python", default="", help="the Python with PyTorch (default: Debian's /usr/bin/python3 "
                    "on the CPU, the python3 on PATH with --device cuda)")
    a = ap.parse_args()
    global PYTHON
    PYTHON = a.python or ("python3" if a.device == "cuda" else "/usr/bin/python3")
    cases = GPU_CASES if a.device == "cuda" else CASES
    wanted = set(filter(None, a.cases.split(",")))
    unknown = wanted - {c for c, _, _ in cases}
    if unknown:
        sys.exit(f"compare.py: unknown case(s) {sorted(unknown)}; known: {sorted({c for c, _, _ in cases})}")

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    # PyTorch gets OpenBLAS's OpenMP build as its BLAS, which shares PyTorch's
    # OpenMP threads; the pthread build (Debian's default) adds its own threads
    # and oversubscribes the cores (MoE layer at n=2048: 117 ms instead of 48).
    torch_env = dict(env)
    if os.path.isdir(OPENBLAS_OPENMP):
        torch_env["LD_LIBRARY_PATH"] = OPENBLAS_OPENMP + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    else:
        print(f"compare.py: {OPENBLAS_OPENMP} is missing (package libopenblas0-openmp); PyTorch uses the "
              "system's libblas", file=sys.stderr)
    threads = ["--threads", str(a.threads), "--device", a.device]
    programs = {
        "moegrad": ([os.path.join(a.build_dir, "moegrad_bench")], env),
        "pytorch": ([PYTHON, os.path.join(HERE, "torch_peer.py")], torch_env),
    }
    rows, raw, overhead = [], [], None
    for case, flags, timing in cases:
        if wanted and case not in wanted:
            continue
        results = {"moegrad": [], "pytorch": []}
        for r in range(a.rounds):
            order = ["moegrad", "pytorch"] if r % 2 == 0 else ["pytorch", "moegrad"]
            for impl in order:
                cmd, impl_env = programs[impl]
                res = run(cmd + [case] + flags + timing + threads, impl_env)
                results[impl].append(res)
                raw.append(res)
        if case == "ac_overhead":  # not a throughput row: the AC router's share, printed below the table
            overhead = {impl: statistics.median(x["overhead_pct"] for x in rs) for impl, rs in results.items()}
            continue
        rows.append({impl: {"per_s": statistics.median(x["per_s"] for x in rs),
                            "ms": statistics.median(x["median_ms"] for x in rs),
                            "peak": max(x["peak_mib"] for x in rs), "unit": rs[0]["unit"], "case": rs[0]["case"],
                            "gflop": results["moegrad"][0].get("model_gflop", 0)}
                     for impl, rs in results.items()})
        print(f"  {rows[-1]['moegrad']['case']}: done", file=sys.stderr, flush=True)

    where = (f"on {gpu_name(torch_env)}" if a.device == "cuda"
             else f"(BLAS: {blas_of(torch_env)}) on the CPU, {a.threads} threads each")
    print(f"\nmoegrad vs PyTorch {torch_version(torch_env)} {where}; "
          f"throughput at the median of each process's timed runs, median of {a.rounds} round(s)\n")
    print("| case | unit | moegrad | PyTorch | moegrad / PyTorch | moegrad ms | PyTorch ms "
          "| moegrad peak MiB | PyTorch peak MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        m, t = row["moegrad"], row["pytorch"]
        rate = (lambda v: f"{v:.1f}") if m["unit"] == "GFLOP/s" else (lambda v: f"{v:.0f}")
        print(f"| {m['case']} | {m['unit']} | {rate(m['per_s'])} | {rate(t['per_s'])} | {m['per_s'] / t['per_s']:.2f} "
              f"| {m['ms']:.3f} | {t['ms']:.3f} | {m['peak']:.0f} | {t['peak']:.0f} |")
    by_case = {row["moegrad"]["case"]: row for row in rows}
    if "train_step/smoe" in by_case and "train_step/acmoe" in by_case:
        print()
        for impl, name in [("moegrad", "moegrad"), ("pytorch", "PyTorch")]:
            s, c = by_case["train_step/smoe"][impl]["ms"], by_case["train_step/acmoe"][impl]["ms"]
            print(f"{name}: acmoe's step vs smoe's, separate processes: {100 * (c - s) / s:+.1f}%")
    if a.device == "cpu" and "gemm/n=2048" in by_case:
        # the machine's own matrix-multiply rate: the faster of the two 2048² sgemm rows (both OpenBLAS here)
        sgemm = max(by_case["gemm/n=2048"][impl]["per_s"] for impl in ("moegrad", "pytorch"))
        for row in rows:
            if row["moegrad"]["gflop"] > 0:
                for impl, name in [("moegrad", "moegrad"), ("pytorch", "PyTorch")]:
                    gflops = 1000 * row[impl]["gflop"] / row[impl]["ms"]
                    print(f"{row[impl]['case']} {name}: {gflops:.1f} model GFLOP/s, "
                          f"{100 * gflops / sgemm:.0f}% of this run's 2048² sgemm rate ({sgemm:.1f} GFLOP/s)")
    if a.device == "cuda":
        for row in rows:
            if row["moegrad"]["gflop"] > 0:
                for impl, name in [("moegrad", "moegrad"), ("pytorch", "PyTorch")]:
                    tflops = row[impl]["gflop"] / row[impl]["ms"]  # GFLOP per ms = TFLOP/s
                    print(f"{row[impl]['case']} {name}: {tflops:.2f} model TFLOP/s, "
                          f"{100 * tflops / a.peak_tflops:.1f}% of {a.peak_tflops:g} TFLOP/s")
    if overhead:
        for impl, name in [("moegrad", "moegrad"), ("pytorch", "PyTorch")]:
            print(f"{name}: the AC router adds {overhead[impl]:+.1f}% to the training step "
                  "(ac_overhead: both models stepping in turn in one process)")
    if raw and a.json:
        write_whole(a.json, json.dumps({"threads": a.threads, "rounds": a.rounds, "results": raw}, indent=1))


def write_whole(path, text):
    """text at path through a temporary file beside it and a rename: a kill or a full disk leaves the
    previous file, and no temporary one."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        sys.exit(f"compare.py: cannot write {path}: {e}")


def torch_version(env):
    p = subprocess.run([PYTHON, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                       text=True, env=env)
    return p.stdout.strip() or "?"


def gpu_name(env):
    p = subprocess.run([PYTHON, "-c", "import torch; print(torch.cuda.get_device_name(0))"],
                       capture_output=True, text=True, env=env)
    return p.stdout.strip() or "the GPU"


def blas_of(env):
    """The BLAS library that PyTorch loads under env (from its memory map)."""
    code = ("import torch; print(next((l.split()[-1] for l in open('/proc/self/maps') "
            "if 'blas' in l.split()[-1]), '?'))")
    p = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=env)
    return os.path.basename(os.path.dirname(p.stdout.strip())) + "/" + os.path.basename(p.stdout.strip())


if __name__ == "__main__":
    main()
