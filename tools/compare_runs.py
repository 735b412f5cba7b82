#!/usr/bin/python3
"""Compares train_lm runs from their metrics.jsonl files and prints a table.

    tools/compare_runs.py RUN_DIR [RUN_DIR ...]

For each run: its name (the router, or the folder's name where two runs
share a router, e.g. the arms of tools/lm_experiment.sh), valid and test bits/byte (or perplexity at word
level) on the whole splits, clean and under the word-swap attack, and the
training speed (the "final" record written after training). Then, for every
run after the first, the step at which its validation loss (the evals during
training, on the same valid batches for every run) first reaches the first
run's final validation loss, or "not reached". Standard library only.
"""
import json
import os
import sys


def read_run(folder):
    path = os.path.join(folder, "metrics.jsonl")
    try:
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
    except OSError as e:
        sys.exit(f"compare_runs.py: cannot read {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        sys.exit(f"compare_runs.py: {path} is not JSONL: {e}")
    finals = [r for r in records if r.get("type") == "final"]
    evals = [r for r in records if r.get("type") == "eval" and r.get("split") == "valid"]
    if not finals or not evals:
        sys.exit(f"compare_runs.py: {path} has no final record or no validation evals; did the run finish?")
    return {"name": finals[-1].get("router", os.path.basename(folder)), "final": finals[-1],
            "evals": [(r["step"], r["loss"]) for r in evals]}


def first_reaching(evals, target):
    for step, loss in evals:
        if loss <= target:
            return step
    return None


def main(folders):
    if not folders:
        sys.exit(__doc__)
    runs = [read_run(f) for f in folders]
    names = [r["name"] for r in runs]
    if len(set(names)) < len(names):
        for r, folder in zip(runs, folders):
            r["name"] = os.path.basename(os.path.normpath(folder))
    metric = runs[0]["final"]["metric"]
    columns = ["valid", "valid_attacked", "test", "test_attacked"]
    header = ["run"] + [f"{c.replace('_', ' ')} {'bpb' if metric == 'bits/byte' else 'ppl'}" for c in columns] + ["tokens/s"]
    rows = [[r["name"]] + [f"{r['final'][c]['metric']:.4f}" for c in columns] + [f"{r['final']['tokens_per_s']:.0f}"]
            for r in runs]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    print(f"metric: {metric} on the whole splits (attacked: word swap of docs/design.md)")
    for row in [header] + rows:
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    base = runs[0]
    target_step, target = base["evals"][-1]
    for r in runs[1:]:
        step = first_reaching(r["evals"], target)
        reached = f"at step {step}" if step is not None else "not reached"
        print(f"{r['name']} reaches {base['name']}'s final valid loss ({target:.4f} nats at step {target_step}, "
              f"evals during training): {reached}")


if __name__ == "__main__":
    main(sys.argv[1:])
