"""Reward-model training recipes against each other: time to a quality, on the default DB of each seed.

    python benchmarks/reward_recipes.py                      # the default and the previous recipe, seeds 1-10
    python benchmarks/reward_recipes.py --seeds 1 2 3 --recipe "b512=--batch-size 512 --learning-rate 2e-2"

What it measured, and how long it takes: docs/performance.md, "What each change bought".

For each seed S, make_preferences_db.py --seed S writes the default DB (10,000 single-step
comparisons); then every recipe (a name and extra flags of train_reward_model.py) trains on it
with --seed S, in this process (torch's start-up paid once, so that the training clock is the
comparison), without the figure. Per recipe and seed: gradient steps, the trainer's own
training seconds, held-out accuracy, and the normalized true return of the worst tied optimal
policy of the learned reward (value_iteration.py; 1.0: every policy that is optimal for the
learned reward reaches the centre by the shortest way) and the action margin (value_iteration.
action_margin: how far the learned reward is from letting a mistake tie, 1 being the true
reward's own margin; a threshold like the worst tied policy flips on float noise across CPUs,
the margin shows how close each seed is). Prints a table and writes JSON (--out).
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import timing
import train_reward_model

# the recipe before the speed work (commit 7013aa2): early stopping at a constant step size
PREVIOUS = "--learning-rate 3e-3 --no-anneal-lr --batch-size 128 --max-steps 100000 --eval-every 250"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train the reward model with several recipes on each seed's default DB.")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)), help="one default DB and one training per recipe each")
    p.add_argument("--recipe", action="append", default=None, metavar="NAME=FLAGS",
                   help="a recipe: a name, '=', extra trainer flags (repeatable; default: the defaults and the previous recipe)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "reward_recipes.json"), help="JSON results file")
    args = p.parse_args(argv)
    recipes = args.recipe or ["default=", f"previous={PREVIOUS}"]
    args.recipes = {}
    for recipe in recipes:
        name, sep, flags = recipe.partition("=")
        if not sep or not name:
            p.error(f"--recipe {recipe!r}: write NAME=FLAGS, for example 'b512=--batch-size 512'")
        args.recipes[name] = flags.split()
    return args


def main(args):
    results = {name: [] for name in args.recipes}
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            db_path = os.path.join(work, f"seed{seed}.db")
            subprocess.run([sys.executable, os.path.join(ROOT, "make_preferences_db.py"), "--seed", str(seed), "--db", db_path],
                           check=True, capture_output=True)
            warm_up = [("warm-up", ["--max-steps", "10"])] if seed == args.seeds[0] else []  # first-call costs off the clock
            for name, flags in warm_up + list(args.recipes.items()):
                argv = ["--seed", str(seed), "--db", db_path, "--out", os.path.join(work, "model.pt"), "--overwrite",
                        "--no-progress", "--no-plot", "--run-dir", os.path.join(work, "runs"), *flags]
                with contextlib.redirect_stdout(io.StringIO()):
                    summary = train_reward_model.main(train_reward_model.parse_args(argv))
                if name == "warm-up":
                    continue
                results[name].append({"seed": seed, "steps": summary["steps"], "train_seconds": summary["train_seconds"],
                                      "val_accuracy": summary["val_accuracy"],
                                      "worst_optimal_policy": summary["optimal_policy_worst_normalized_return"],
                                      "action_margin": summary["action_margin"]})
            print(f"seed {seed}: " + ", ".join(f"{name} {rows[-1]['train_seconds']:.1f} s" for name, rows in results.items()), flush=True)

    print(f"\n{'recipe':<12}{'steps':>8}{'training s':>12}{'held-out accuracy':>24}{'worst tied optimal policy':>30}"
          f"{'action margin':>18}")
    print(f"{'':<12}{'mean':>8}{'mean':>12}{'mean (min)':>24}{'min, seeds below 1':>30}{'min (median)':>18}")
    for name, rows in results.items():
        column = lambda key, rows=rows: np.array([r[key] for r in rows])
        worst = column("worst_optimal_policy")
        below = [r["seed"] for r in rows if r["worst_optimal_policy"] < 1.0]
        print(f"{name:<12}{column('steps').mean():>8.0f}{column('train_seconds').mean():>12.2f}"
              f"{column('val_accuracy').mean():>16.4f} ({column('val_accuracy').min():.4f})"
              f"{worst.min():>18.4f}, {str(below) if below else 'none':<10}"
              f"{column('action_margin').min():>9.3f} ({np.median(column('action_margin')):.3f})")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": timing.machine(), "seeds": args.seeds, "recipes": {k: " ".join(v) for k, v in args.recipes.items()},
                   "results": results}, f, indent=2)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main(parse_args())
