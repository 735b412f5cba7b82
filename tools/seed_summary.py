#!/usr/bin/python3
"""Mean ± standard deviation over seeds of train_lm runs, per arm, as markdown.

    tools/seed_summary.py SEED_DIR [SEED_DIR ...]

Each SEED_DIR holds one run per arm in a folder named after it (smoe/,
acmoe/, ..., as tools/main.sh and tools/lm_experiment.sh write them); the
first arm in the order smoe, acmoe, xmoe, acmoe-neutral (then others,
alphabetically) that every seed has is the baseline. Prints, per arm, the
final valid and test metric (bits/byte or perplexity, whole splits, clean and
word-swap attacked) as mean ± sample standard deviation over the seeds: from
the batch evaluation of the "final" record, and from the causal evaluation
when the run has one (the final record's *_causal fields, or an evaluate_lm
record in eval.jsonl beside it). Then per seed each arm's difference to the
baseline and the step at which it first reaches the baseline's final
validation loss, and those differences' mean ± std over the seeds. Last,
for the arms with AC layers, the empty clusters per forward and the mean
token weight over training (mean over the train records; the median
record's token weight), and the spread of the AC weights (the standard
deviation of the table's entries) in the first and the last tenth of
training. Standard library only.
"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_runs import first_reaching, read_run  # noqa: E402

COLUMNS = ["valid", "valid_attacked", "test", "test_attacked"]
ORDER = ["smoe", "acmoe", "xmoe", "acmoe-neutral"]


def mean_std(values, signed=False):
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{'+' if signed else ''}.4f} ± {sd:.4f}"


def causal_results(folder, final):
    """The causal evaluation of a run: from its final record, else from eval.jsonl."""
    if all(c + "_causal" in final for c in COLUMNS):
        return {c: final[c + "_causal"]["metric"] for c in COLUMNS}
    path = os.path.join(folder, "eval.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
        for r in reversed(records):
            if all(c + "_causal" in r for c in COLUMNS):
                return {c: r[c + "_causal"]["metric"] for c in COLUMNS}
    return None


def ac_diagnostics(folder):
    """Per AC layer, over the train records: (empty clusters per forward, median token weight,
    the AC weights' spread in the first tenth of the records, and in the last tenth)."""
    out = {}
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            for layer in r.get("ac_layers", []) if r.get("type") == "train" else []:
                empty, weight, spread = out.setdefault(layer["layer"], ([], [], []))
                empty.append(layer["ac_empty"]), weight.append(layer["ac_token_weight"]), spread.append(layer["ac_std"])
    def first_and_last_tenth(series):
        k = max(1, len(series) // 10)
        return statistics.mean(series[:k]), statistics.mean(series[-k:])

    return {layer: (statistics.mean(e), statistics.median(w), *first_and_last_tenth(s))
            for layer, (e, w, s) in out.items()}


def table(title, arms, values):
    print(f"{title}\n")
    print("| arm | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |")
    print("| --- |" + " --- |" * len(COLUMNS))
    for arm in arms:
        print(f"| {arm} | " + " | ".join(mean_std(values[arm][c]) for c in COLUMNS) + " |")
    print()


def main(folders):
    if not folders:
        sys.exit(__doc__)
    present = [set(d for d in os.listdir(f) if os.path.exists(os.path.join(f, d, "metrics.jsonl"))) for f in folders]
    common = set.intersection(*present) if present else set()
    arms = [a for a in ORDER if a in common] + sorted(common - set(ORDER))
    if not arms:
        sys.exit("seed_summary.py: no arm is present in every seed folder")
    runs = [{a: read_run(os.path.join(f, a)) for a in arms} for f in folders]
    metric = runs[0][arms[0]]["final"]["metric"]
    print(f"{len(folders)} seeds; {metric} on the whole splits, mean ± std (attacked: the word swap of "
          "docs/design.md)\n")
    batch = {a: {c: [s[a]["final"][c]["metric"] for s in runs] for c in COLUMNS} for a in arms}
    table("Batch evaluation (AC statistics over each evaluation batch, as in training):", arms, batch)
    causal = {a: {c: [] for c in COLUMNS} for a in arms}
    for f, s in zip(folders, runs):
        for a in arms:
            cr = causal_results(os.path.join(f, a), s[a]["final"])
            for c in COLUMNS:
                if cr:
                    causal[a][c].append(cr[c])
    if any(causal[a]["valid"] for a in arms):
        table("Causal evaluation (each token from its own prefix, as at generation):", arms, causal)
    base = arms[0]
    print(f"Per seed, each arm − {base} (valid, valid attacked, test, test attacked; batch evaluation), and the step "
          f"at which it first reaches {base}'s final validation loss:\n")
    for f, s in zip(folders, runs):
        target = s[base]["evals"][-1][1]
        for a in arms[1:]:
            diffs = " ".join(f"{s[a]['final'][c]['metric'] - s[base]['final'][c]['metric']:+.4f}" for c in COLUMNS)
            step = first_reaching(s[a]["evals"], target)
            print(f"    {os.path.basename(os.path.normpath(f))} {a}: {diffs}; "
                  f"{'reaches it at step ' + str(step) if step is not None else 'does not reach it'}")
    print()
    if len(arms) > 1:
        print(f"Each arm − {base}, the paired differences' mean ± std over the seeds (batch evaluation):\n")
        print("| arm | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |")
        print("| --- |" + " --- |" * len(COLUMNS))
        for a in arms[1:]:
            cells = [mean_std([s[a]["final"][c]["metric"] - s[base]["final"][c]["metric"] for s in runs], signed=True)
                     for c in COLUMNS]
            print(f"| {a} − {base} | " + " | ".join(cells) + " |")
        print()
    lines = []
    for a in arms:
        per_seed = [ac_diagnostics(os.path.join(f, a)) for f in folders]
        for layer in sorted(per_seed[0]):
            cells = [mean_std([d[layer][i] for d in per_seed if layer in d]) for i in range(4)]
            lines.append(f"| {a} | {layer} | " + " | ".join(cells) + " |")
    if lines:
        print("AC layers over training (per forward, from the train records):\n")
        print("| arm | layer | empty clusters | median mean token weight | AC weights' spread, first tenth "
              "| AC weights' spread, last tenth |\n| --- | --- | --- | --- | --- | --- |")
        print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
