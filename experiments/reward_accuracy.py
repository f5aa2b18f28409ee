"""Reward-model accuracy against the number of comparisons: how many labels an accuracy takes.

    python experiments/reward_accuracy.py                                  # 6 sizes x 3 seeds
    python experiments/reward_accuracy.py --sizes 10000 --seeds 1 --ceiling-steps 0  # the default pipeline's point

What it measured, and how long it takes: docs/results.md, "Accuracy against labels".

Every point is the default pipeline with more or fewer comparisons: make_preferences_db.py
--n-segments N --n-comparisons N (k = 1, the distance oracle, 10% held out), then
train_reward_model.py on its defaults, each in its own process (--jobs at a time). The model
is scored three ways: on its DB's held-out comparisons (the issue's figure, which also chose
the early-stopping step), on one shared DB of --fresh new comparisons (generalisation alone),
and by the order of the actions at every position (action-order agreement).

For reference, the same network is also fitted with no preferences at all: least squares on the
oracle's own potential (minus the distance to the centre) at every position of the field, with the
trainer's optimizer (Adam, lr 3e-3, weight averaging 0.999), scored on the fresh pairs every
--ceiling-every steps. It tells what the network can represent and how many steps that takes.
Writes to --out-dir: results.json, results.md (the table) and reward_accuracy.png.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rlhf import db
from rlhf import moving_dot as md
from rlhf import reward_model as rm

MARK = 0.99  # a round figure to read the curves against (the retired accuracy goal)
FIGURES = ("val_accuracy", "fresh_accuracy", "train_accuracy", "action_order_agreement", "train_seconds", "steps")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Reward-model accuracy against the number of comparisons.")
    p.add_argument("--sizes", type=int, nargs="+", default=[2500, 5000, 10000, 20000, 40000, 80000],
                   help="comparisons per DB (10%% held out; the default pipeline makes 10000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of the generator and the trainer")
    p.add_argument("--fresh", type=int, default=40000, help="new comparisons every model is scored on")
    p.add_argument("--ceiling-steps", type=int, default=60000, help="steps of the least-squares reference fit (0: none)")
    p.add_argument("--ceiling-every", type=int, default=10000, help="steps between its scores")
    p.add_argument("--jobs", type=int, default=2, help="points at once (the trainer uses one core)")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "experiments", "results", "reward_accuracy"), help="where results go")
    args = p.parse_args(argv)
    if min(args.sizes) < 20 or args.fresh < 1 or args.jobs < 1 or args.ceiling_steps < 0 or args.ceiling_every < 1:
        p.error("--sizes must be >= 20, --fresh, --jobs and --ceiling-every >= 1, --ceiling-steps >= 0")
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        p.error(f"--out-dir {args.out_dir} is a file; pass a folder")
    return args


def script(name, *argv):
    return [sys.executable, os.path.join(ROOT, name), *map(str, argv)]


def point(size, seed, work, fresh):
    """Generate a DB of `size` comparisons, train on it, score the model; the figures of one point."""
    name = os.path.join(work, f"n{size}__seed{seed}")
    start = time.perf_counter()
    for argv in (script("make_preferences_db.py", "--seed", seed, "--db", f"{name}.db", "--n-segments", size,
                        "--n-comparisons", size),
                 script("train_reward_model.py", "--seed", seed, "--db", f"{name}.db", "--out", f"{name}.pt", "--no-progress",
                        "--no-plot", "--run-dir", os.path.join(work, "runs"))):  # its PNG would go with the scratch folder
        done = subprocess.run(argv, cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"reward_accuracy: {' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
    model = rm.load(f"{name}.pt")
    summary = {key: model.summary[key] for key in FIGURES if key != "fresh_accuracy"}
    return {"size": size, "seed": seed, **summary, "fresh_accuracy": rm.comparison_accuracy(model, fresh),
            "wall_s": time.perf_counter() - start}


def ceiling(args, fresh, seed=1):
    """Fit the trainer's network to the oracle's own potential, minus the distance to the centre, at
    every position by least squares; fresh accuracy every --ceiling-every steps."""
    torch.manual_seed(seed)
    model = rm.RewardModel()
    averaged = copy.deepcopy(model)
    raw_params, averaged_params = list(model.parameters()), list(averaged.parameters())
    # phi(o) = -d(o) makes phi(o') - phi(o) the distance oracle's score of every step
    features = model.features(md.OBS_TABLE)
    target = torch.as_tensor(-md.DISTANCE, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, eps=1e-5)
    generator, scores = torch.Generator().manual_seed(seed), []
    for step in range(1, args.ceiling_steps + 1):
        idx = torch.randint(len(target), (128,), generator=generator)
        loss = (model.member_outputs(features[idx])[0] - target[idx]).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(averaged_params, raw_params, 1 - min(0.999, (1 + step) / (10 + step)))  # as the trainer
        if step % args.ceiling_every == 0:
            with torch.no_grad():
                rmse = (averaged.member_outputs(features)[0] - target).square().mean().sqrt().item()
            scores.append({"steps": step, "fresh_accuracy": rm.comparison_accuracy(averaged, fresh), "rmse": rmse})
            print(f"least squares on minus the distance, {step} steps: fresh {scores[-1]['fresh_accuracy']:.4f},"
                  f" RMSE {rmse:.4f}", flush=True)
    return scores


def summarize(results):
    rows = []
    for size in sorted({r["size"] for r in results}):
        runs = [r for r in results if r["size"] == size]
        row = {"size": size, "seeds": len(runs)}
        for key in FIGURES:
            values = np.array([r[key] for r in runs], dtype=float)
            row[f"{key}_mean"], row[f"{key}_sd"], row[f"{key}_min"] = values.mean(), values.std(), values.min()
        rows.append(row)
    return rows


def table(rows, ceiling_scores, args, total_wall):
    lines = [f"seeds {' '.join(map(str, args.seeds))}; {args.fresh} fresh comparisons; {args.jobs} at a time,"
             f" {total_wall / 60:.1f} min in all.", "",
             "| comparisons | held-out accuracy (mean ± sd, min) | fresh accuracy (mean ± sd, min) | training-pair accuracy"
             " | action-order agreement | training s | gradient steps |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['val_accuracy_mean']:.4f} ± {r['val_accuracy_sd']:.4f}, {r['val_accuracy_min']:.4f}"
                     f" | {r['fresh_accuracy_mean']:.4f} ± {r['fresh_accuracy_sd']:.4f}, {r['fresh_accuracy_min']:.4f}"
                     f" | {r['train_accuracy_mean']:.4f} | {r['action_order_agreement_mean']:.4f} | {r['train_seconds_mean']:.1f} | {r['steps_mean']:.0f} |")
    lines.append("")
    for key, what in (("val_accuracy", "held-out"), ("fresh_accuracy", "fresh")):
        reached = [r["size"] for r in rows if r[f"{key}_mean"] >= MARK]
        lines.append(f"- mean {what} accuracy >= {MARK}: " + (f"from {reached[0]} comparisons" if reached else "at no size measured"))
    if ceiling_scores:
        lines += ["", "No preferences: the network fitted by least squares to minus the distance at every position:", "",
                  "| steps | fresh accuracy | RMSE |", "|---|---|---|"]
        lines += [f"| {c['steps']} | {c['fresh_accuracy']:.4f} | {c['rmse']:.4f} |" for c in ceiling_scores]
    return "\n".join(lines) + "\n"


def plot(path, results, rows, ceiling_scores):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    sizes = [r["size"] for r in rows]
    for key, label in (("val_accuracy", "held-out comparisons (10% of the DB)"), ("fresh_accuracy", "fresh comparisons"),
                       ("action_order_agreement", "action-order agreement (every position)")):
        line, = ax.plot(sizes, [r[f"{key}_mean"] for r in rows], "o-", label=label)
        ax.scatter([r["size"] for r in results], [r[key] for r in results], color=line.get_color(), alpha=0.35, s=14)
    for c, style in zip(ceiling_scores[:1] + ceiling_scores[-1:] if len(ceiling_scores) > 1 else ceiling_scores, (":", "-.")):
        ax.axhline(c["fresh_accuracy"], color="black", lw=0.8, ls=style,
                   label=f"fresh, least squares on minus the distance, {c['steps']} steps (no labels)")
    ax.axhline(MARK, color="grey", lw=0.8, ls="--", label=f"{MARK}")
    ax.axvline(10000, color="grey", lw=0.8, ls=":")
    ax.text(10000, 0.98, " default pipeline", color="grey", fontsize=8, va="top", transform=ax.get_xaxis_transform())
    ax.set(xscale="log", xlabel="comparisons in the DB (k = 1, 10% held out)", ylabel="share ordered right",
           title="reward model (defaults) against the number of comparisons (dots: seeds)")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(args):
    os.makedirs(args.out_dir, exist_ok=True)
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:  # the DBs and models are scratch: the figures are what is kept
        # a seed no point uses: the fresh pairs share no draws with any DB
        subprocess.run(script("make_preferences_db.py", "--seed", 1_000_003, "--db", "fresh.db", "--n-segments", args.fresh,
                              "--n-comparisons", args.fresh, "--validation-fraction", 0), cwd=work, check=True, capture_output=True)
        fresh = db.load_comparisons(os.path.join(work, "fresh.db"))
        with ThreadPoolExecutor(args.jobs) as pool:  # threads only wait on the subprocesses
            futures = [pool.submit(point, size, seed, work, fresh) for size in args.sizes for seed in args.seeds]
            results = []
            for future in futures:
                r = future.result()
                results.append(r)
                print(f"{r['size']:>6} comparisons seed {r['seed']}: held-out {r['val_accuracy']:.4f}, fresh {r['fresh_accuracy']:.4f},"
                      f" agreement {r['action_order_agreement']:.4f}, {r['train_seconds']:.1f} s training", flush=True)
        ceiling_scores = ceiling(args, fresh)  # after the points, so that it does not slow their training
    total_wall = time.perf_counter() - begin
    rows = summarize(results)
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump({"args": vars(args), "total_wall_s": total_wall, "rows": rows, "runs": results, "ceiling": ceiling_scores}, f, indent=1)
    report = table(rows, ceiling_scores, args, total_wall)
    with open(os.path.join(args.out_dir, "results.md"), "w") as f:
        f.write(report)
    plot(os.path.join(args.out_dir, "reward_accuracy.png"), results, rows, ceiling_scores)
    print(report)
    print(f"wrote {args.out_dir}/results.json, results.md and reward_accuracy.png")


if __name__ == "__main__":
    main(parse_args())
