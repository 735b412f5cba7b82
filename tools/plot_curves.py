#!/usr/bin/python3
"""Plots the validation curves of train_lm runs into one PNG.

    tools/plot_curves.py OUT.png RUN_DIR [RUN_DIR ...]

Reads the "eval" records of each RUN_DIR/metrics.jsonl (validation loss in
bits/byte, or perplexity at word level, against the training step) and labels
each curve with the run's router. Uses Debian's python3-matplotlib with the
Agg backend, so no display is needed: run it with /usr/bin/python3.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)


def read_curve(folder):
    path = os.path.join(folder, "metrics.jsonl")
    try:
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"plot_curves.py: cannot read {path}: {e}")
    evals = [r for r in records if r.get("type") == "eval" and r.get("split") == "valid"]
    if not evals:
        sys.exit(f"plot_curves.py: {path} has no validation evals")
    finals = [r for r in records if r.get("type") == "final"]
    name = finals[-1].get("router") if finals else os.path.basename(os.path.normpath(folder))
    metric = "bits/byte" if finals and finals[-1]["metric"] == "bits/byte" else "metric"
    return name, metric, [r["step"] for r in evals], [r["metric"] for r in evals]


def main(args):
    if len(args) < 2:
        sys.exit(__doc__)
    out, folders = args[0], args[1:]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    metric = "metric"
    for folder in folders:
        name, metric, steps, values = read_curve(folder)
        ax.plot(steps, values, marker="o", markersize=3, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("train_lm validation curves")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"plot_curves.py: wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
