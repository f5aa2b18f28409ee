"""Time each stage on its default settings, and the whole pipeline, on this machine.

    python benchmarks/benchmark.py            # full: PPO 1M steps x 3 seeds x 2 rewards
    python benchmarks/benchmark.py --quick    # PPO 100k steps x 1 seed

How long each takes, and what it measured: docs/performance.md.

Each stage runs as its own process (as a user would run it), measured with os.wait4:
wall seconds, CPU seconds, peak resident MB. Quality figures are read back from the files
the stages write (the model file's and the agent file's summaries). Prints a table and
writes JSON (--out).

The headline is the time from nothing to a trained RLHF agent: generate the preferences,
train the reward model, run PPO with `--preset fast --rlhf`; its quality figure is the
greedy policy's normalized return on fixed starts.
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
from rlhf import agent as agent_lib
from rlhf import db
from rlhf import reward_model as rm


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Time each stage and the whole pipeline.")
    p.add_argument("--seed", type=int, default=1, help="seed of every stage")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "benchmark.json"), help="JSON results file")
    p.add_argument("--quick", action="store_true", help="PPO on 100,000 steps and one seed instead of 1,000,000 and three")
    p.add_argument("--ppo-seeds", type=int, default=None, help="seeds of the PPO runs (default: 3, or 1 with --quick)")
    return p.parse_args(argv)


def run_stage(args, workdir):
    """timing.run_stage without the output: wall s, CPU s and peak MB of one stage."""
    return {k: v for k, v in timing.run_stage(args, workdir, "benchmark").items() if k != "output"}


def main(args):
    ppo_steps = 100_000 if args.quick else 1_000_000
    script = lambda name: os.path.join(ROOT, name)
    common = ["--seed", str(args.seed), "--no-progress"]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        # generator (10,000 comparisons, k = 1)
        r = run_stage([script("make_preferences_db.py"), "--seed", str(args.seed), "--db", "prefs.db"], work)
        rows.append({"stage": "generate preferences", **r, "steps_per_s": 10_000 / r["wall_s"], "quality": None})

        # reward model to early stop
        r = run_stage([script("train_reward_model.py"), *common, "--db", "prefs.db", "--out", "rm.pt"], work)
        model = rm.load(os.path.join(work, "rm.pt"))
        summary = model.summary
        # the 1,000 held-out pairs also chose the early-stopping step; 40,000 fresh ones measure generalisation alone
        subprocess.run([sys.executable, script("make_preferences_db.py"), "--seed", str(args.seed + 1000), "--db", "fresh.db",
                        "--n-segments", "40000", "--n-comparisons", "40000", "--validation-fraction", "0"], cwd=work,
                       check=True, capture_output=True)
        fresh = db.load_comparisons(os.path.join(work, "fresh.db"))
        rows.append({"stage": "train reward model", **r, "steps_per_s": summary["steps"] / r["wall_s"],
                     "quality": {"held_out_accuracy": summary["val_accuracy"],
                                 "fresh_accuracy": rm.comparison_accuracy(model, fresh),
                                 "action_order_agreement": summary["action_order_agreement"],
                                 "optimal_policy_normalized_return": summary["optimal_policy_normalized_return"],
                                 "optimal_policy_worst_normalized_return": summary["optimal_policy_worst_normalized_return"],
                                 "train_seconds": summary["train_seconds"]}})

        # PPO on the env reward and on the learned reward, CleanRL's defaults, over seeds
        n_seeds = args.ppo_seeds or (1 if args.quick else 3)
        for name, extra in (("ppo env reward", []), ("ppo --rlhf", ["--rlhf", "--reward-model", "rm.pt"])):
            runs = []
            for seed in range(args.seed, args.seed + n_seeds):
                path = f"agent_{len(rows)}_{seed}.pt"
                r = run_stage([script("ppo_rlhf.py"), "--seed", str(seed), "--no-progress", "--total-timesteps", str(ppo_steps),
                               "--save-path", path, *extra], work)
                result = agent_lib.load(os.path.join(work, path))[1]["summary"]
                runs.append({**r, "steps_per_s": result["global_step"] / r["wall_s"],
                             "greedy": result["greedy"]["normalized_return"], "sampled": result["sampled"]["normalized_return"]})
            mean = lambda key, runs=runs: float(np.mean([run[key] for run in runs]))
            rows.append({"stage": f"{name} {ppo_steps // 1000}k steps ({n_seeds} seeds)", "wall_s": mean("wall_s"),
                         "cpu_s": mean("cpu_s"), "peak_mb": max(run["peak_mb"] for run in runs), "steps_per_s": mean("steps_per_s"),
                         "quality": {"greedy_normalized_return": mean("greedy"), "greedy_std": float(np.std([run["greedy"] for run in runs])),
                                     "sampled_normalized_return": mean("sampled")},
                         "runs": runs})
        env_wall, rlhf_wall = rows[-2]["wall_s"], rows[-1]["wall_s"]
        rows[-1]["rlhf_overhead"] = rlhf_wall / env_wall - 1

    # headline: from nothing to a trained RLHF agent, in a fresh folder
    with tempfile.TemporaryDirectory() as work:
        stages = [run_stage([script("make_preferences_db.py"), "--seed", str(args.seed), "--db", "prefs.db"], work),
                  run_stage([script("train_reward_model.py"), *common, "--db", "prefs.db", "--out", "rm.pt"], work),
                  run_stage([script("ppo_rlhf.py"), *common, "--preset", "fast", "--rlhf", "--reward-model", "rm.pt", "--save-path", "agent.pt"], work)]
        result = agent_lib.load(os.path.join(work, "agent.pt"))[1]["summary"]
        rows.append({"stage": "pipeline: nothing -> RLHF agent (fast preset)", "wall_s": sum(s["wall_s"] for s in stages),
                     "cpu_s": sum(s["cpu_s"] for s in stages), "peak_mb": max(s["peak_mb"] for s in stages), "steps_per_s": None,
                     "quality": {"greedy_normalized_return": result["greedy"]["normalized_return"],
                                 "sampled_normalized_return": result["sampled"]["normalized_return"]}})

    print(f"{'stage':<48}{'wall s':>8}{'CPU s':>8}{'peak MB':>9}{'steps/s':>10}  quality")
    for row in rows:
        quality = ", ".join(f"{k} {v:.4f}" for k, v in (row["quality"] or {}).items())
        steps = f"{row['steps_per_s']:.0f}" if row["steps_per_s"] else "-"
        print(f"{row['stage']:<48}{row['wall_s']:>8.1f}{row['cpu_s']:>8.1f}{row['peak_mb']:>9.0f}{steps:>10}  {quality}")
        if "rlhf_overhead" in row:
            print(f"{'':<48}--rlhf overhead over the env reward: {100 * row['rlhf_overhead']:+.1f}% wall")
    machine = timing.machine()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine, "quick": args.quick, "seed": args.seed, "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(parse_args())
