"""Label efficiency: the agent's normalized true return against the labels spent, three ways.

    python experiments/label_efficiency.py                                    # 3 seeds x 3 budgets x 3 methods
    python experiments/label_efficiency.py --seeds 1 --label-budgets 100 --jobs 1   # one point per method

Every point is one `rlhf_loop.py` run (its own process, --jobs at a time) with the synthetic
teacher labeling by the true reward (C17's synthetic labels):

  single_steps     --segment-length 1 --rounds 0 --initial-share 1: every label up front, on
                   uniform single steps (the seed's way, with the true reward as the oracle)
  random_segments  --segment-length 25 --rounds 0 --initial-share 1: every label up front, on
                   random-policy segments of 25 steps
  disagreement     --segment-length 25 --rounds 3 --select disagreement: C17's loop, 25% up front
                   on a random policy, then three rounds on the agent's own segments, each
                   asking about the pairs where the 3-member ensemble disagrees most

Everything else is rlhf_loop.py's default (reward model: 1000 steps a round; PPO: the fast
preset, 100,000 steps a round, on the normalized learned reward). The point is the last round's
greedy normalized return on 100 fixed starts; the loop's per-round records are kept as well.
Writes to --out-dir: results.json (every run's rounds and wall time), results.md (the table)
and label_efficiency.png (mean and seeds against labels used, log scale).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = {
    "single_steps": ["--segment-length", "1", "--rounds", "0", "--initial-share", "1"],
    "random_segments": ["--segment-length", "25", "--rounds", "0", "--initial-share", "1"],
    "disagreement": ["--segment-length", "25", "--rounds", "3", "--select", "disagreement"],
}
GOAL = 0.95


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Normalized true return against labels used: single steps, random segments, C17's loop.")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="loop seeds")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "experiments", "results", "label_efficiency"), help="where results go")
    p.add_argument("--label-budgets", type=int, nargs="+", default=[100, 300, 1000], help="rlhf_loop.py's --label-budget, the grid")
    p.add_argument("--methods", nargs="+", choices=tuple(METHODS), default=list(METHODS), help="which ways to spend the labels")
    p.add_argument("--jobs", type=int, default=2, help="loops at once (one core each)")
    return p.parse_args(argv)


def start(method, budget, seed, out_dir):
    run_dir = os.path.join(out_dir, "runs", f"{method}__{budget}__seed{seed}")
    argv = [sys.executable, os.path.join(ROOT, "rlhf_loop.py"), "--seed", str(seed), "--out-dir", run_dir, "--overwrite",
            "--label-budget", str(budget), "--no-progress", *METHODS[method]]
    os.makedirs(run_dir, exist_ok=True)
    log = open(os.path.join(run_dir, "stdout.txt"), "w")
    return {"method": method, "budget": budget, "seed": seed, "dir": run_dir, "log": log, "start": time.perf_counter(),
            "process": subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)}


def summarize(results):
    """Per method and budget: mean, sd and min over seeds of the final figures, and mean wall time."""
    rows = []
    for method in dict.fromkeys(r["method"] for r in results):
        for budget in sorted({r["budget"] for r in results if r["method"] == method}):
            runs = [r for r in results if r["method"] == method and r["budget"] == budget]
            last = lambda key, runs=runs: np.array([r["rounds"][-1][key] if r["rounds"][-1][key] is not None else np.nan for r in runs])
            greedy = last("greedy_normalized_return")
            rows.append({"method": method, "budget": budget, "seeds": len(runs), "greedy_mean": float(greedy.mean()),
                         "greedy_sd": float(greedy.std()), "greedy_min": float(greedy.min()),
                         "sampled_mean": float(last("sampled_normalized_return").mean()),
                         "optimal_policy_mean": float(np.nanmean(last("optimal_policy_normalized_return"))),
                         "held_out_accuracy_mean": float(last("held_out_accuracy").mean()),
                         "agreement_mean": float(last("action_order_agreement").mean()),
                         "wall_s_mean": float(np.mean([r["wall_s"] for r in runs]))})
    return rows


def table(rows, total_wall, args):
    lines = [f"{len(args.seeds)} seeds ({' '.join(map(str, args.seeds))}), {args.jobs} at a time, {total_wall / 60:.1f} min in all.", "",
             "| method | labels | greedy normalized return (mean ± sd, min) | sampled | optimal policy of the learned reward"
             " | held-out accuracy | action-order agreement | wall s per run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['budget']} | {r['greedy_mean']:.3f} ± {r['greedy_sd']:.3f}, {r['greedy_min']:.3f}"
                     f" | {r['sampled_mean']:.3f} | {r['optimal_policy_mean']:.3f} | {r['held_out_accuracy_mean']:.3f}"
                     f" | {r['agreement_mean']:.3f} | {r['wall_s_mean']:.0f} |")
    lines.append("")
    for method in dict.fromkeys(r["method"] for r in rows):
        goal = []
        for policy in ("greedy", "sampled"):
            reached = [r for r in rows if r["method"] == method and r[f"{policy}_mean"] >= GOAL]
            goal.append(f"{policy} >= {GOAL} from {reached[0]['budget']} labels" if reached else f"{policy} below {GOAL} at every budget")
        lines.append(f"- {method}: mean {', mean '.join(goal)}")
    return "\n".join(lines) + "\n"


def plot(path, results, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        mine = [r for r in rows if r["method"] == method]
        line, = ax.plot([r["budget"] for r in mine], [r["greedy_mean"] for r in mine], "o-", label=f"{method}, greedy (mean of seeds)")
        ax.plot([r["budget"] for r in mine], [r["sampled_mean"] for r in mine], "--", color=line.get_color(), alpha=0.7,
                label=f"{method}, sampled (mean)")
        runs = [r for r in results if r["method"] == method]
        ax.scatter([r["budget"] * (1 + 0.03 * (i - 1)) for r in runs], [r["rounds"][-1]["greedy_normalized_return"] for r in runs],
                   color=line.get_color(), alpha=0.35, s=14)
    ax.axhline(GOAL, color="grey", lw=0.8, ls="--")
    ax.set(xscale="log", xlabel="labels used", ylabel="normalized true return (100 fixed starts)",
           title="label efficiency: the agent's true return against labels (dots: greedy, per seed)")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(args):
    os.makedirs(args.out_dir, exist_ok=True)
    queue = [(m, b, s) for b in args.label_budgets for m in args.methods for s in args.seeds]
    running, results, begin = [], [], time.perf_counter()
    while queue or running:
        while queue and len(running) < args.jobs:
            running.append(start(*queue.pop(0), args.out_dir))
        time.sleep(0.5)
        for run in [r for r in running if r["process"].poll() is not None]:
            running.remove(run)
            run["log"].close()
            wall = time.perf_counter() - run["start"]
            if run["process"].returncode != 0:
                sys.exit(f"label_efficiency: {run['method']} budget {run['budget']} seed {run['seed']} failed; see {run['dir']}/stdout.txt")
            with open(os.path.join(run["dir"], "rounds.json")) as f:
                rounds = json.load(f)["rounds"]
            results.append({"method": run["method"], "budget": run["budget"], "seed": run["seed"], "wall_s": wall, "rounds": rounds})
            print(f"{run['method']:>16} {run['budget']:>5} labels seed {run['seed']}: greedy {rounds[-1]['greedy_normalized_return']:.3f}"
                  f" sampled {rounds[-1]['sampled_normalized_return']:.3f} ({wall:.0f} s)", flush=True)
    total_wall = time.perf_counter() - begin
    rows = summarize(results)
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump({"args": vars(args), "total_wall_s": total_wall, "rows": rows, "runs": results}, f, indent=1)
    report = table(rows, total_wall, args)
    with open(os.path.join(args.out_dir, "results.md"), "w") as f:
        f.write(report)
    plot(os.path.join(args.out_dir, "label_efficiency.png"), results, rows)
    print(report)
    print(f"wrote {args.out_dir}/results.json, results.md and label_efficiency.png")


if __name__ == "__main__":
    main(parse_args())
