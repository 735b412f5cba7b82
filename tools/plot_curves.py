#!/usr/bin/python3
"""Plots the validation curves of train_lm runs, and their AC diagnostics, into one PNG.

    tools/plot_curves.py OUT.png RUN_DIR [RUN_DIR ...]

Top panel: the "eval" records of each RUN_DIR/metrics.jsonl (validation loss
in bits/byte, or perplexity at word level, against the training step). When
any run has AC layers, two more panels from its "train" records, per AC layer
and per forward, averaged over each log interval: the empty clusters and the
mean token weight (log scale: an empty cluster shrinks every weight). Curves
are labelled with the run's folder name. Uses Debian's python3-matplotlib
with the Agg backend, so no display is needed: run it with /usr/bin/python3.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)


def read_run(folder):
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
    metric = "bits/byte" if finals and finals[-1]["metric"] == "bits/byte" else "metric"
    ac = {}  # layer -> (steps, empty, token weight)
    for r in records:
        if r.get("type") == "train":
            for layer in r.get("ac_layers", []):
                steps, empty, weight = ac.setdefault(layer["layer"], ([], [], []))
                steps.append(r["step"]), empty.append(layer["ac_empty"]), weight.append(layer["ac_token_weight"])
    name = os.path.basename(os.path.normpath(folder))
    return name, metric, [r["step"] for r in evals], [r["metric"] for r in evals], ac


def main(args):
    if len(args) < 2:
        sys.exit(__doc__)
    out, folders = args[0], args[1:]
    runs = [read_run(f) for f in folders]
    with_ac = any(run[4] for run in runs)
    fig, axes = plt.subplots(3 if with_ac else 1, 1, figsize=(7, 10 if with_ac else 4.5), squeeze=False)
    ax = axes[0][0]
    metric = "metric"
    for name, metric, steps, values, _ in runs:
        ax.plot(steps, values, marker="o", markersize=3, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("train_lm validation curves")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if with_ac:
        empty_ax, weight_ax = axes[1][0], axes[2][0]
        for name, _, _, _, ac in runs:
            for layer, (steps, empty, weight) in sorted(ac.items()):
                label = f"{name}, layer {layer}"
                empty_ax.plot(steps, empty, label=label)
                weight_ax.plot(steps, weight, label=label)
        empty_ax.set_ylabel("empty clusters per forward")
        weight_ax.set_ylabel("mean token weight")
        weight_ax.set_yscale("log")
        for a in (empty_ax, weight_ax):
            a.set_xlabel("training step")
            a.grid(True, alpha=0.3)
            a.legend(fontsize=8)
        empty_ax.set_title("AC layers during training")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"plot_curves.py: wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
