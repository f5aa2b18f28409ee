"""The whole pipeline on each of several seeds: is the learned reward exploit-free on every one?

    python experiments/robustness.py                 # seeds 1-5
    python experiments/robustness.py --quick         # seeds 1-5, the fast route only
    python experiments/robustness.py --trainer-flags="--reward-form state-action --activation tanh --ensemble-size 1" \
        --ppo-flags="--reward-transform clip"       # the write-up's recipe, for comparison

For each seed S, every stage runs on its defaults with --seed S, as a user would run them:
make_preferences_db.py, train_reward_model.py, then ppo_rlhf.py --rlhf on that reward model with
--preset fast (`make run`'s route), with CleanRL's defaults at 1M steps and at 2M steps (does
training longer find a flaw?), and on the env reward at 1M and 2M steps for reference.

Per seed, and as mean and minimum over the seeds: held-out accuracy, action-order agreement, EPIC
distance to the true reward, and the exact figures of the learned reward's optimal policy
(value_iteration.py) under each of PPO's reward transforms (normalize, PPO's default; clip, the
write-up's): the normalized true return of the argmax policy, of the worst tied optimal policy,
and the regret 1 - argmax (the mean over starts of the optimal true return minus that policy's,
over the mean optimal return), and with normalize the action margin (how clearly the right moves
win: value_iteration.action_margin); then PPO's greedy and sampled normalized true returns on the
evaluation's fixed starts. Writes JSON and a Markdown table under --out-dir. What it measured,
and how long it takes: docs/results.md, "Every seed, the whole pipeline".
"""

import argparse
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rlhf import agent as agent_lib
from rlhf import cli
from rlhf import reward_model as rm
from rlhf import value_iteration as vi

PPO_RUNS = {  # name: (reward, flags)
    "fast": ("rlhf", ["--preset", "fast"]),
    "1M": ("rlhf", ["--total-timesteps", "1000000"]),
    "2M": ("rlhf", ["--total-timesteps", "2000000"]),
    "env 1M": ("env", ["--total-timesteps", "1000000"]),
    "env 2M": ("env", ["--total-timesteps", "2000000"]),
}
REWARD_COLUMNS = ("val_accuracy", "action_order_agreement", "epic_distance", "normalize_argmax", "normalize_worst",
                  "normalize_regret", "normalize_margin", "clip_argmax", "clip_worst")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Run the whole pipeline per seed and report how exploitable each learned reward is.")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="one whole pipeline per seed")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "experiments", "results", "robustness"), help="work files and results")
    p.add_argument("--quick", action="store_true", help="the fast route only (no 1M/2M and no env-reward runs)")
    p.add_argument("--runs", nargs="+", choices=tuple(PPO_RUNS), default=None, help="which PPO runs (default: all, or fast with --quick)")
    p.add_argument("--jobs", type=cli.positive_int, default=2, help="processes at a time (each stage is single-threaded)")
    p.add_argument("--generator-flags", default="", help="extra flags of make_preferences_db.py, one string")
    p.add_argument("--trainer-flags", default="", help="extra flags of train_reward_model.py, one string")
    p.add_argument("--ppo-flags", default="", help="extra flags of every ppo_rlhf.py --rlhf run, one string")
    args = p.parse_args(argv)
    if os.path.isfile(args.out_dir):
        p.error(f"--out-dir {args.out_dir} is a file; pass a folder")
    args.runs = args.runs or (["fast"] if args.quick else list(PPO_RUNS))
    return args


def run(command, log_path):
    """Run a stage script; its output goes to ``log_path``; returns its wall seconds."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, *command], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed; see {log_path}")
    return time.perf_counter() - start


def reward_figures(path):
    """The model file's own figures, and the exact optimal-policy figures under both transforms."""
    model = rm.load(path)
    table = rm.reward_table(model)
    figures = {key: model.summary[key] for key in ("val_accuracy", "action_order_agreement", "epic_distance", "train_seconds")}
    for transform in rm.TRANSFORMS:
        scores, _ = vi.reward_scores(rm.transform_rewards(table, transform, table))
        figures.update({f"{transform}_argmax": scores["argmax"], f"{transform}_worst": scores["worst"],
                        f"{transform}_regret": 1.0 - scores["argmax"], f"{transform}_margin": scores["margin"]})
    return figures


def make_reward(seed, args):
    """Stages 1 and 2 on this seed; returns the model path and its figures."""
    work = os.path.join(args.out_dir, f"seed_{seed}")
    os.makedirs(work, exist_ok=True)
    common = ["--seed", str(seed)]
    db_path, model_path = os.path.join(work, "preferences.db"), os.path.join(work, "reward_model.pt")
    seconds = run([os.path.join(ROOT, "make_preferences_db.py"), *common, "--db", db_path, "--overwrite",
                   *shlex.split(args.generator_flags)], os.path.join(work, "make_preferences_db.log"))
    seconds += run([os.path.join(ROOT, "train_reward_model.py"), *common, "--db", db_path, "--out", model_path, "--overwrite",
                    "--no-progress", "--run-dir", os.path.join(work, "runs"), *shlex.split(args.trainer_flags)],
                   os.path.join(work, "train_reward_model.log"))
    return model_path, {**reward_figures(model_path), "stages_1_2_seconds": seconds}


def train_agent(seed, name, model_path, args):
    work = os.path.join(args.out_dir, f"seed_{seed}")
    reward, flags = PPO_RUNS[name]
    agent_path = os.path.join(work, f"agent_{name.replace(' ', '_')}.pt")
    extra = ["--rlhf", "--reward-model", model_path, *shlex.split(args.ppo_flags)] if reward == "rlhf" else []
    seconds = run([os.path.join(ROOT, "ppo_rlhf.py"), "--seed", str(seed), *flags, *extra, "--save-path", agent_path, "--overwrite",
                   "--no-progress", "--run-dir", os.path.join(work, "runs")], agent_path.replace(".pt", ".log"))
    summary = agent_lib.load(agent_path)[1]["summary"]
    return {"greedy": summary["greedy"]["normalized_return"], "sampled": summary["sampled"]["normalized_return"], "seconds": seconds}


def table(results, args):
    """Markdown: one row per seed, then the mean and the minimum."""
    columns = [*REWARD_COLUMNS] + [f"{name} {which}" for name in args.runs for which in ("greedy", "sampled")]
    rows = {seed: {**r["reward"], **{f"{name} {which}": r["ppo"][name][which] for name in args.runs for which in ("greedy", "sampled")}}
            for seed, r in results.items()}
    names = {"val_accuracy": "held-out acc.", "action_order_agreement": "agreement", "epic_distance": "EPIC",
             "normalize_argmax": "VI argmax", "normalize_worst": "VI worst tied", "normalize_regret": "regret", "normalize_margin": "action margin",
             "clip_argmax": "VI argmax (clip)", "clip_worst": "VI worst tied (clip)"}
    lines = ["| seed | " + " | ".join(names.get(c, f"PPO {c}") for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for seed, row in rows.items():
        lines.append(f"| {seed} | " + " | ".join(f"{row[c]:.4f}" if c != "epic_distance" else f"{row[c]:.3f}" for c in columns) + " |")
    for what, reduce in (("mean", np.mean), ("min", np.min)):
        # for EPIC distance and regret, lower is better: their 'min' row shows the worst seed, the maximum
        worst = {c: (np.max if c in ("epic_distance", "normalize_regret") and what == "min" else reduce)([r[c] for r in rows.values()])
                 for c in columns}
        lines.append(f"| **{what if what == 'mean' else 'worst'}** | " + " | ".join(f"{worst[c]:.4f}" for c in columns) + " |")
    return "\n".join(lines)


def main(args):
    start = time.perf_counter()
    os.makedirs(args.out_dir, exist_ok=True)
    results = {seed: {"reward": None, "ppo": {}} for seed in args.seeds}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:  # threads only wait on the stage processes
        rewards = {seed: pool.submit(make_reward, seed, args) for seed in args.seeds}
        runs = {}
        for seed in args.seeds:
            model_path, results[seed]["reward"] = rewards[seed].result()
            print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in results[seed]["reward"].items()), flush=True)
            for name in args.runs:
                runs[seed, name] = pool.submit(train_agent, seed, name, model_path, args)
        for (seed, name), future in runs.items():
            results[seed]["ppo"][name] = future.result()
            print(f"seed {seed} {name}: greedy {results[seed]['ppo'][name]['greedy']:.4f}, "
                  f"sampled {results[seed]['ppo'][name]['sampled']:.4f}", flush=True)
    report = table(results, args)
    flags = {k: getattr(args, k) for k in ("generator_flags", "trainer_flags", "ppo_flags")}
    header = f"Whole pipeline per seed ({', '.join(f'{k}={v!r}' for k, v in flags.items() if v) or 'every stage on its defaults'})"
    with open(os.path.join(args.out_dir, "robustness.json"), "w") as f:
        json.dump({"args": vars(args), "results": results, "seconds": time.perf_counter() - start}, f, indent=1)
    with open(os.path.join(args.out_dir, "robustness.md"), "w") as f:
        f.write(f"{header}\n\n{report}\n")
    print(f"\n{header}, {time.perf_counter() - start:.0f} s\n\n{report}")
    return results


if __name__ == "__main__":
    try:
        main(parse_args())
    except RuntimeError as e:  # a stage failed: its log says why
        sys.exit(f"robustness.py: error: {e}")
