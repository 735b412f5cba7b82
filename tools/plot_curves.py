#!/usr/bin/python3
"""Plots the validation curves of train_lm runs, and their AC diagnostics, into one PNG.

    tools/plot_curves.py OUT.png RUN_DIR [RUN_DIR ...]

Top panel: the "eval" records of each RUN_DIR/metrics.jsonl (validation loss
in bits/byte, or perplexity at word level, against the training step). When
any run has AC layers, three more panels from its "train" records, per AC
layer and per forward, averaged over each log interval: the empty clusters,
the mean token weight (log scale: an empty cluster shrinks every weight) and
the spread of the AC weights (the standard deviation of the [E, d] table's
entries, whose mean is 1). Curves are labelled with the run's folder name.
The PNG is written whole or not at all: to a temporary file beside OUT, then
renamed over it. Uses Debian's python3-matplotlib with the Agg backend, so no
display is needed: run it with /usr/bin/python3.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)


# The AC diagnostics of the train records, one panel each: (key, axis label, log scale).
AC_PANELS = [("ac_empty", "empty clusters per forward", False), ("ac_token_weight", "mean token weight", True),
             ("ac_std", "spread of the AC weights (std)", False)]
AC_SERIES = tuple(key for key, _, _ in AC_PANELS)


def save_whole(fig, out):
    """fig as a PNG at out, through a temporary file in the same folder and a rename."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".plot_curves.{os.getpid()}.png")
    try:
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png", dpi=120)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            sys.exit(f"plot_curves.py: cannot write {out}: {e}")
        raise


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
    metric = finals[-1]["metric"] if finals else None  # a run still training has no final record yet
    ac = {}  # layer -> {"step": [...], "ac_empty": [...], "ac_token_weight": [...], "ac_std": [...]}
    for r in records:
        if r.get("type") == "train":
            for layer in r.get("ac_layers", []):
                series = ac.setdefault(layer["layer"], {k: [] for k in ("step",) + AC_SERIES})
                series["step"].append(r["step"])
                for k in AC_SERIES:
                    series[k].append(layer[k])
    name = os.path.basename(os.path.normpath(folder))
    return name, metric, [r["step"] for r in evals], [r["metric"] for r in evals], ac


def main(args):
    if len(args) < 2:
        sys.exit(__doc__)
    out, folders = args[0], args[1:]
    runs = [read_run(f) for f in folders]
    with_ac = any(run[4] for run in runs)
    rows = 1 + (len(AC_PANELS) if with_ac else 0)
    fig, axes = plt.subplots(rows, 1, figsize=(7, 3.4 * rows if with_ac else 4.5), squeeze=False)
    ax = axes[0][0]
    metric = next((run[1] for run in runs if run[1]), "metric")
    for name, _, steps, values, _ in runs:
        ax.plot(steps, values, marker="o", markersize=3, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("train_lm validation curves")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if with_ac:
        for row, (key, label, log) in enumerate(AC_PANELS, start=1):
            a = axes[row][0]
            for name, _, _, _, ac in runs:
                for layer, series in sorted(ac.items()):
                    a.plot(series["step"], series[key], label=f"{name}, layer {layer}")
            a.set_ylabel(label)
            if log:
                a.set_yscale("log")
            a.set_xlabel("training step")
            a.grid(True, alpha=0.3)
            a.legend(fontsize=8)
        axes[1][0].set_title("AC layers during training")
    fig.tight_layout()
    save_whole(fig, out)
    print(f"plot_curves.py: wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
