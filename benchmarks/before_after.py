"""Our pipeline at an earlier commit and as it is now, side by side on this machine.

    python benchmarks/before_after.py --base bdb97b2                  # seeds 1-3, 2 rounds
    python benchmarks/before_after.py --base 7013aa2 --seeds 1 --repeats 1

What it measured, and how long it takes: docs/performance.md, "Before and after".

Runs `make run`'s three stages (make_preferences_db.py, train_reward_model.py, ppo_rlhf.py
--preset fast --rlhf), each as its own process timed with os.wait4, once from a copy of the
--base commit (`git archive`) and once from this working tree, for every seed and round,
alternating which side goes first, in the same virtualenv. Absolute times differ between
machines and from minute to minute on a shared one, so the result is the ratio of the two
sides measured together. Reports per side: each stage's wall and CPU seconds, the reward
model's own training seconds and quality (held-out accuracy, the worst tied optimal policy of
its learned reward), and the agent's greedy and sampled normalized return, per seed. Writes
JSON (--out).
"""

import argparse
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
from rlhf import checkpoints, cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="make run's three stages at --base and now, side by side.")
    p.add_argument("--base", required=True, help="the earlier commit (any git revision)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="a whole pipeline per seed")
    p.add_argument("--repeats", type=cli.positive_int, default=2, help="rounds over the seeds, alternating which side goes first")
    p.add_argument("--total-timesteps", type=cli.positive_int, default=None, help="ppo_rlhf.py's, to shrink PPO (tests only; default: the fast preset's)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "before_after.json"), help="JSON results file")
    return p.parse_args(argv)


def checkout(revision, folder):
    """The files of ``revision`` in ``folder``; a bad revision is one clear line."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", revision], capture_output=True)
    if archive.returncode != 0:
        sys.exit(f"before_after: cannot read commit {revision!r} ({archive.stderr.decode().strip()}); pass a revision of this repo")
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)


def pipeline(code, seed, work, total_timesteps):
    """make run's three stages from the scripts in ``code``, in the empty folder ``work``."""
    script = lambda name: os.path.join(code, name)
    extra = ["--total-timesteps", str(total_timesteps)] if total_timesteps else []
    commands = {
        "generate": [script("make_preferences_db.py"), "--seed", seed, "--db", "preferences.db"],
        "reward": [script("train_reward_model.py"), "--seed", seed, "--db", "preferences.db", "--out", "reward_model.pt", "--no-progress"],
        "ppo": [script("ppo_rlhf.py"), "--seed", seed, "--preset", "fast", "--rlhf", "--reward-model", "reward_model.pt",
                "--save-path", "agent.pt", "--no-progress", *extra],
    }
    times = {name: timing.run_stage([str(a) for a in command], work, "before_after") for name, command in commands.items()}
    model = checkpoints.load_safely(os.path.join(work, "reward_model.pt"))["summary"]
    agent = checkpoints.load_safely(os.path.join(work, "agent.pt"))["summary"]
    return {**{f"{name}_{key}": t[key] for name, t in times.items() for key in ("wall_s", "cpu_s")},
            "pipeline_wall_s": sum(t["wall_s"] for t in times.values()), "pipeline_cpu_s": sum(t["cpu_s"] for t in times.values()),
            "reward_train_s": model["train_seconds"], "reward_steps": model["steps"], "val_accuracy": model["val_accuracy"],
            "worst_optimal_policy": model.get("optimal_policy_worst_normalized_return", float("nan")),
            "greedy": agent["greedy"]["normalized_return"], "sampled": agent["sampled"]["normalized_return"]}


def main(args):
    runs = {"base": [], "now": []}
    with tempfile.TemporaryDirectory() as scratch:
        base_code = os.path.join(scratch, "base")
        os.makedirs(base_code)
        checkout(args.base, base_code)
        codes = {"base": base_code, "now": ROOT}
        k = 0
        for round_ in range(args.repeats):
            for seed in args.seeds:
                for side in (("base", "now") if k % 2 == 0 else ("now", "base")):
                    work = tempfile.mkdtemp(dir=scratch)
                    runs[side].append({"seed": seed, "round": round_, **pipeline(codes[side], seed, work, args.total_timesteps)})
                print(f"round {round_ + 1}/{args.repeats}, seed {seed}: pipeline {runs['base'][-1]['pipeline_wall_s']:.1f} s"
                      f" at {args.base}, {runs['now'][-1]['pipeline_wall_s']:.1f} s now", flush=True)
                k += 1

    mean = {side: {key: float(np.mean([r[key] for r in rs])) for key in rs[0] if key not in ("seed", "round")}
            for side, rs in runs.items()}
    rows = [("generate: wall s", "generate_wall_s"), ("reward stage: wall s", "reward_wall_s"), ("reward stage: CPU s", "reward_cpu_s"),
            ("reward model training s (its own clock)", "reward_train_s"), ("reward model gradient steps", "reward_steps"),
            ("ppo --preset fast --rlhf: wall s", "ppo_wall_s"), ("pipeline: wall s", "pipeline_wall_s"), ("pipeline: CPU s", "pipeline_cpu_s")]
    print(f"\n{'mean over ' + str(len(runs['now'])) + ' runs':<44}{args.base:>12}{'now':>12}{'now / base':>12}")
    for label, key in rows:
        print(f"{label:<44}{mean['base'][key]:>12.2f}{mean['now'][key]:>12.2f}{mean['now'][key] / mean['base'][key]:>12.3f}")
    print("\nquality per seed (first round): held-out accuracy, worst tied optimal policy of the learned reward, agent greedy / sampled")
    for side in ("base", "now"):
        for r in runs[side][:len(args.seeds)]:
            print(f"  {args.base if side == 'base' else 'now':>10} seed {r['seed']}: accuracy {r['val_accuracy']:.4f}, worst "
                  f"{r['worst_optimal_policy']:.4f}, greedy {r['greedy']:.4f}, sampled {r['sampled']:.4f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": timing.machine(), "base": args.base, "seeds": args.seeds, "repeats": args.repeats,
                   "total_timesteps": args.total_timesteps, "mean": mean, "runs": runs}, f, indent=2)
    print(f"wrote {args.out}")
    return mean, runs


if __name__ == "__main__":
    main(parse_args())
