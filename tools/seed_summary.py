#!/usr/bin/python3
"""Mean ± standard deviation over seeds of train_lm runs, per router.

    tools/seed_summary.py SEED_DIR [SEED_DIR ...]

Each SEED_DIR holds one run per router (smoe/ and acmoe/, as tools/main.sh
writes them). Prints, per router, the final valid and test metric (bits/byte
or perplexity, whole splits, clean and word-swap attacked) as mean ± sample
standard deviation over the seeds, then per seed the difference acmoe − smoe
and the step at which acmoe first reaches smoe's final validation loss.
Standard library only; reads runs through tools/compare_runs.py.
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_runs import first_reaching, read_run  # noqa: E402

COLUMNS = ["valid", "valid_attacked", "test", "test_attacked"]


def mean_std(values):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main(folders):
    if not folders:
        sys.exit(__doc__)
    seeds = [{r: read_run(os.path.join(f, r)) for r in ("smoe", "acmoe")} for f in folders]
    metric = seeds[0]["smoe"]["final"]["metric"]
    print(f"{len(seeds)} seeds; {metric} on the whole splits, mean ± std (attacked: word swap of docs/design.md)\n")
    print("| router | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " | tokens/s |")
    print("| --- |" + " --- |" * (len(COLUMNS) + 1))
    for router in ("smoe", "acmoe"):
        cells = [mean_std([s[router]["final"][c]["metric"] for s in seeds]) for c in COLUMNS]
        speed = statistics.mean(s[router]["final"]["tokens_per_s"] for s in seeds)
        print(f"| {router} | " + " | ".join(cells) + f" | {speed:.0f} |")
    print()
    for folder, s in zip(folders, seeds):
        diffs = ", ".join(f"{c} {s['acmoe']['final'][c]['metric'] - s['smoe']['final'][c]['metric']:+.4f}"
                          for c in COLUMNS)
        target = s["smoe"]["evals"][-1][1]
        step = first_reaching(s["acmoe"]["evals"], target)
        print(f"{folder}: acmoe − smoe: {diffs}; acmoe reaches smoe's final valid loss "
              f"{'at step ' + str(step) if step is not None else 'not reached'}")


if __name__ == "__main__":
    main(sys.argv[1:])
