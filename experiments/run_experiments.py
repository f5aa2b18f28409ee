"""Run a grid of PPO runs (seeds x conditions), several at once, locally or on a Ray cluster, and compare them.

    python experiments/run_experiments.py --seeds 1 2 3 4 5 --reward-model reward_model.pt --experiment-dir runs/env_vs_rlhf
    python experiments/run_experiments.py --seeds 1 2 3 --reward-model "models/reward_model_{seed}.pt"   # each seed its own reward model
    python experiments/run_experiments.py --seeds 1 2 --conditions env rlhf "rlhf-clip=--rlhf --reward-transform clip" --preset fast
    python experiments/run_experiments.py --seeds 1 2 3 4 5 --ray-address auto --experiment-dir runs/env_vs_rlhf   # on a Ray cluster

Every run is `ppo_rlhf.py --seed S <every flag not known here> <the condition's flags> --no-progress` in a
process of its own, started by a Ray task that declares what it needs (--cpus-per-run, --gpus-per-run):
a local Ray instance with --jobs CPUs, or the cluster at --ray-address. A task runs PPO in a fresh
folder on whichever node Ray picks and sends back the run's files; Ray retries a task whose worker or
node died, but a run that exits with an error is a result: it is reported with its log and the
others go on.

Conditions: `env` (the env reward), `rlhf` (`--rlhf` with --reward-model) or `NAME=FLAGS`, ppo_rlhf.py
flags of your own (`--reward-model PATH` among them picks another reward model for that condition).
The reward model files are read here and shipped to the runs; `{seed}` in a reward model path stands
for the run's seed, so that every seed is a whole pipeline of its own (generator, trainer, PPO).

Reads the reward model file(s). Writes under --experiment-dir: experiment.json (the calls), one folder
per run, `<condition>__seed<S>/` (TensorBoard event file, agent.pt, log.txt, result.json: the marker of
a finished run that --resume keeps), and the comparison: returns.png (--plot), results.md and
results.csv (--table).
"""

import argparse
import csv
import glob
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import ray
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo: ppo_rlhf.py and rlhf/
sys.path.insert(0, ROOT)
from rlhf import checkpoints, cli, envs
from rlhf import moving_dot as md

FORMAT = "moving-dot-experiment"
BUILT_IN_CONDITIONS = {"env": [], "rlhf": ["--rlhf"]}
# ppo_rlhf.py flags that the runner sets for every run itself, and what to do instead
RUNNER_FLAGS = {"--seed": "use --seeds", "--rlhf": "use --conditions rlhf or NAME='--rlhf ...'",
                "--run-dir": "use --experiment-dir", "--save-path": "each run's agent.pt goes into its folder",
                "--exp-name": "runs are named after their condition", "--progress": "runs log without a progress bar",
                "--no-progress": "runs log without a progress bar"}
# what a Ray cluster does not need from the repo
UPLOAD_EXCLUDES = [".git", ".venv", "runs", "videos", "benchmarks/results", "experiments/results", "__pycache__", "*.pt", "*.db", "*.db-*",
                   "*.png", "*.gif"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Run seeds x conditions of ppo_rlhf.py in parallel (a local Ray instance or a Ray cluster) and compare them.",
        epilog="Every other flag goes to each ppo_rlhf.py run, e.g. --total-timesteps 200000 --preset fast; "
               "a condition's own flags win over them.", allow_abbrev=False)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="one run per seed and condition (write-up: 5 seeds)")
    p.add_argument("--reward-model", default="reward_model.pt",
                   help="the reward model of the rlhf conditions; {seed} in the path: one model per seed (the whole pipeline per seed)")
    p.add_argument("--experiment-dir", default=os.path.join("runs", "experiment"), help="folder of the runs and the comparison")
    p.add_argument("--plot", default=None, help="comparison figure (default: <experiment dir>/returns.png)")
    p.add_argument("--table", default=None, help="results table in Markdown, the CSV next to it (default: <experiment dir>/results.md)")
    p.add_argument("--conditions", nargs="+", default=["env", "rlhf"],
                   help="env (env reward), rlhf (--rlhf --reward-model) or NAME='ppo_rlhf.py flags'")
    p.add_argument("--jobs", type=cli.positive_int, default=len(os.sched_getaffinity(0)),
                   help="CPUs of the local Ray instance: runs at once on this machine (default: the number of cores)")
    p.add_argument("--resume", action="store_true", help="keep the finished runs of an existing --experiment-dir, run the rest")
    p.add_argument("--overwrite", action="store_true", help="delete an existing --experiment-dir and start again")
    p.add_argument("--ray-address", default=None, help="run on this Ray cluster (HOST:PORT or auto) instead of a local instance")
    p.add_argument("--cpus-per-run", type=cli.positive_float, default=1.0, help="CPUs each run declares to Ray (PPO uses one thread)")
    p.add_argument("--gpus-per-run", type=cli.nonnegative_float, default=0.0, help="GPUs each run declares; with 0 the run sees no GPU")
    p.add_argument("--max-retries", type=cli.nonnegative_int, default=3,
                   help="Ray's retries of a run whose worker or node died (a run that exits with an error is not retried)")
    p.add_argument("--window", type=cli.positive_int, default=10, help="episodes in the figure's rolling mean")
    p.add_argument("--env-id", default=envs.DEFAULT_ENV_ID, help="the env of every run (ppo_rlhf.py's --env-id)")
    args, ppo_flags = p.parse_known_args(argv)
    try:
        args.spec = envs.spec(args.env_id)
    except envs.EnvError as e:
        p.error(str(e))
    # the final evaluation's figure: normalized to the optimum where it is known exactly (the moving dot), the true return elsewhere
    args.metric = "normalized_return" if args.spec.tabular else "true_return"
    args.ppo_flags = [flag for flag in ppo_flags if flag != "--"]
    for flag in args.ppo_flags:
        name = flag.split("=", 1)[0]
        if name in RUNNER_FLAGS:
            p.error(f"{name} is set by the runner for each run; {RUNNER_FLAGS[name]}")
    if len(set(args.seeds)) < len(args.seeds):
        p.error(f"--seeds has repeats: {' '.join(map(str, args.seeds))}")
    if args.resume and args.overwrite:
        p.error("--resume and --overwrite exclude each other")
    if args.ray_address is None and args.cpus_per_run > args.jobs:
        p.error(f"--cpus-per-run {args.cpus_per_run:g} is more than the local instance has (--jobs {args.jobs})")

    # conditions: name -> ppo_rlhf.py flags, and the reward model file each rlhf condition ships
    args.condition_flags, args.reward_models = {}, {}
    for spec in args.conditions:
        name, has_flags, text = spec.partition("=")
        if not has_flags and name not in BUILT_IN_CONDITIONS:
            p.error(f"unknown condition {spec!r}; use env, rlhf or NAME='ppo_rlhf.py flags'")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
            p.error(f"condition name {name!r} must be letters, digits and _.+- (it names the run folders)")
        if name in args.condition_flags:
            p.error(f"condition {name!r} given twice")
        try:
            flags = shlex.split(text) if has_flags else list(BUILT_IN_CONDITIONS[name])
        except ValueError as e:
            p.error(f"condition {name!r}: {e}")
        reward_model = args.reward_model
        for flag in list(flags):
            option = flag.split("=", 1)[0]
            if option in RUNNER_FLAGS and option != "--rlhf":
                p.error(f"condition {name!r}: {option} is set by the runner for each run; {RUNNER_FLAGS[option]}")
        if "--reward-model" in flags:  # this condition's own model
            i = flags.index("--reward-model")
            if i + 1 == len(flags):
                p.error(f"condition {name!r}: --reward-model needs a file")
            reward_model = flags.pop(i + 1)
            flags.pop(i)
        args.condition_flags[name] = flags
        if "--rlhf" in flags:
            for seed in args.seeds:
                path = seed_path(reward_model, seed)
                if not os.path.isfile(path):
                    p.error(f"reward model {path} (condition {name}) not found; train one with "
                            f"`python train_reward_model.py --seed {seed} --out {path}` or pass --reward-model")
            args.reward_models[name] = reward_model
    args.plot = args.plot or os.path.join(args.experiment_dir, "returns.png")
    args.table = args.table or os.path.join(args.experiment_dir, "results.md")
    args.csv = os.path.splitext(args.table)[0] + ".csv"
    return args


def seed_path(path, seed):
    """A reward model path for one seed: {seed} in it stands for the seed."""
    return path.replace("{seed}", str(seed))


class ExperimentError(Exception):
    """An experiment folder that cannot be used as asked; the message names it and the fix."""


@ray.remote
def ppo_run(argv, reward_model_name, reward_model, repo):
    """One ppo_rlhf.py run in a fresh folder on whichever node Ray picked. Returns its exit code,
    wall time, host and every file it wrote (bytes), so that the driver can keep them: the nodes
    of a cluster share no disk with it. ``reward_model`` is the model file's bytes (or None),
    written as ``reward_model_name``; ``repo`` the repo's path (None: the task's working dir,
    the repo Ray uploaded)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # one thread per run: --cpus-per-run is the budget
    if not ray.get_runtime_context().get_accelerator_ids().get("GPU"):
        env["CUDA_VISIBLE_DEVICES"] = ""  # Ray leaves it unset for a task that asked for no GPU
    with tempfile.TemporaryDirectory(prefix="run_experiments_") as work:
        if reward_model is not None:
            with open(os.path.join(work, reward_model_name), "wb") as f:
                f.write(reward_model)
        start = time.time()
        with open(os.path.join(work, "log.txt"), "wb") as log:
            returncode = subprocess.run([sys.executable, os.path.join(repo or os.getcwd(), "ppo_rlhf.py"), *argv, "--run-dir", "tb"],
                                        cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT).returncode
        wall_s = time.time() - start
        files = {}
        for run_folder in glob.glob(os.path.join(work, "tb", "*")):  # one: ppo_rlhf.py's runs/<run name>/
            for folder, _, names in os.walk(run_folder):
                for name in names:
                    path = os.path.join(folder, name)
                    with open(path, "rb") as f:
                        files[os.path.relpath(path, run_folder)] = f.read()
        with open(os.path.join(work, "log.txt"), "rb") as f:
            files["log.txt"] = f.read()
    return {"returncode": returncode, "wall_s": wall_s, "host": socket.gethostname(), "files": files}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_result(run_dir):
    try:
        with open(os.path.join(run_dir, "result.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def log_tail(text, lines=10):
    return "\n".join(text.strip().splitlines()[-lines:])


def rolling_mean(values, window):
    """Mean of the last ``window`` values at each index (fewer at the start)."""
    sums = np.cumsum(np.r_[0.0, values])
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def rolling_curve(events, window):
    """(env steps, rolling mean) over the episodes of a scalar tag; episodes that end at the same step
    (the envs start together) give one point, the mean after the last of them."""
    steps = np.array([e.step for e in events])
    means = rolling_mean(np.array([e.value for e in events], dtype=np.float64), window)
    last_of_step = np.r_[steps[1:] != steps[:-1], True]
    return steps[last_of_step], means[last_of_step]


def seed_band(curves, max_points=500):
    """Mean and std over seeds of curves interpolated onto the env steps that all of them cover."""
    low, high = max(x[0] for x, _ in curves), min(x[-1] for x, _ in curves)
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    grid = grid[(grid >= low) & (grid <= high)]
    if len(grid) > max_points:
        grid = np.linspace(low, high, max_points)
    values = np.stack([np.interp(grid, x, y) for x, y in curves])
    return grid, values.mean(0), values.std(0)


def read_run(run_dir, window, metric="normalized_return"):
    """What the comparison needs from a finished run's event file."""
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})  # 0: keep every event, no sampling
    events.Reload()
    scalars = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}
    last = {tag: events_of_tag[-1].value for tag, events_of_tag in scalars.items()}
    run = {"curves": {tag: rolling_curve(scalars[tag], window) for tag in ("charts/episodic_return", "charts/normalized_return")
                      if tag in scalars},
           "greedy": last.get(f"eval/greedy_{metric}", np.nan),
           "sampled": last.get(f"eval/sampled_{metric}", np.nan), "sps": last.get("charts/SPS", np.nan)}
    curve = run["curves"].get("charts/episodic_return")
    run["final_return"] = curve[1][-1] if curve is not None else np.nan
    return run


def finite(values):
    return [float(v) for v in values if v is not None and np.isfinite(v)]


def plot_comparison(path, runs_by_condition, window, n_seeds, env_id=envs.DEFAULT_ENV_ID):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tabular = envs.spec(env_id).tabular
    fig, axes = plt.subplots(1, 2 if tabular else 1, figsize=(13, 4.8) if tabular else (7, 4.8), squeeze=False)
    axes = axes[0]
    panels = (("charts/episodic_return", f"true episodic return (rolling mean of {window} episodes)",
               md.MANHATTAN.mean() if tabular else None, f"optimal, mean over starts ({md.MANHATTAN.mean():.1f})"),
              ("charts/normalized_return", f"normalized return (rolling mean of {window} episodes)", 1.0, "optimal (1)"))
    for ax, (tag, ylabel, optimum, optimum_label) in zip(axes, panels):
        for i, (condition, runs) in enumerate(runs_by_condition.items()):
            curves = [run["curves"][tag] for run in runs if tag in run["curves"]]
            if not curves:
                continue
            steps, mean, std = seed_band(curves)
            color = f"C{i}"
            ax.plot(steps, mean, color=color, marker="o" if len(steps) == 1 else None,
                    label=f"{condition} ({len(curves)} seed{'s' * (len(curves) > 1)})")
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        if optimum is not None:
            ax.axhline(optimum, color="k", linestyle="--", linewidth=1, label=optimum_label)
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"PPO on {env_id}: mean ± 1 std over seeds ({n_seeds} per condition)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def start_ray(args):
    """Connect to the cluster at --ray-address, or start a local instance with --jobs CPUs; return
    where the tasks find ppo_rlhf.py (None: in their working dir)."""
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if args.ray_address is None:  # address="local": a fresh instance, never a cluster somebody else started here
        ray.init(address="local", num_cpus=args.jobs, include_dashboard=False, **quiet)
        return ROOT
    try:  # the cluster's nodes get the repo's code as the tasks' working dir
        ray.init(address=args.ray_address, runtime_env={"working_dir": ROOT, "excludes": UPLOAD_EXCLUDES}, **quiet)
    except ConnectionError as e:
        raise ExperimentError(f"cannot reach the Ray cluster at {args.ray_address} ({str(e).strip().splitlines()[-1]}); "
                              "start it with `ray start --head` or check --ray-address") from None
    return None


def keep_run(run, outcome):
    """Write a run's files into its folder, result.json last (the finished marker); return the result."""
    os.makedirs(run["dir"])
    for name, data in outcome["files"].items():
        path = os.path.join(run["dir"], name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    has_events = any(name.startswith("events.out.tfevents") for name in outcome["files"])
    result = {"status": "finished" if outcome["returncode"] == 0 and has_events else "failed",
              "condition": run["condition"], "seed": run["seed"], "argv": run["argv"], "reward_model": run["reward_model"],
              "reward_model_sha256": run["reward_model_sha256"], "returncode": outcome["returncode"],
              "wall_s": outcome["wall_s"], "host": outcome["host"]}
    checkpoints.write_json(os.path.join(run["dir"], "result.json"), result, indent=2)
    return result


def run_tasks(args, todo, repo):
    """Submit one Ray task per run and keep each run as it comes back, whatever the others do."""
    model_refs = {}
    for path in {run["reward_model"] for run in todo if run["reward_model"]}:
        with open(path, "rb") as f:
            model_refs[path] = ray.put(f.read())  # once into the object store, shared by the runs
    task = ppo_run.options(num_cpus=args.cpus_per_run, num_gpus=args.gpus_per_run, max_retries=args.max_retries)
    pending = {task.remote(run["argv"], run["reward_model"] and os.path.basename(run["reward_model"]),
                           model_refs.get(run["reward_model"]), repo): run for run in todo}
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        run = pending.pop(ref)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayError as e:  # the task itself failed: retries used up, node lost, ...
            outcome = {"returncode": None, "wall_s": None, "host": None, "files": {"log.txt": str(e).encode()}}
        result = keep_run(run, outcome)
        progress = f"[{len(todo) - len(pending)}/{len(todo)}] {run['name']}"
        if result["status"] == "finished":
            print(f"{progress}: finished in {result['wall_s']:.1f} s on {result['host']}", flush=True)
        else:
            why = "the Ray task failed" if result["returncode"] is None else f"exit code {result['returncode']}"
            log = log_tail(outcome["files"]["log.txt"].decode(errors="replace"))
            print(f"{progress}: FAILED ({why}), log {os.path.join(run['dir'], 'log.txt')}:\n"
                  + "\n".join("    " + line for line in log.splitlines()), flush=True)


def condition_row(condition, flags, runs, n_seeds, metric="normalized_return"):
    """One row of the results table: mean (and std) over the finished runs of a condition."""
    row = {"condition": condition, "flags": " ".join(flags), "runs_finished": len(runs), "runs": n_seeds}
    for key, column in (("greedy", f"greedy_{metric}"), ("sampled", f"sampled_{metric}"),
                        ("final_return", "final_rolling_return"), ("wall_s", "wall_s"), ("sps", "sps")):
        values = finite(run[key] for run in runs)
        row[f"{column}_mean"] = float(np.mean(values)) if values else None
        row[f"{column}_std"] = float(np.std(values)) if values else None
    return row


def markdown_table(rows, window, ppo_flags, metric="normalized_return"):
    name = metric.replace("_", " ")
    header = ["condition", "runs finished", f"greedy {name} (final eval)", f"sampled {name} (final eval)",
              f"true return at the end (rolling {window} episodes)", "wall s per run", "SPS"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["condition"], f"{row['runs_finished']}/{row['runs']}"]
        digits_of = 3 if metric == "normalized_return" else 1
        for column, digits in ((f"greedy_{metric}", digits_of), (f"sampled_{metric}", digits_of), ("final_rolling_return", 1)):
            m, s = row[f"{column}_mean"], row[f"{column}_std"]
            cells.append("-" if m is None else f"{m:.{digits}f} ± {s:.{digits}f}")
        cells += ["-" if row[column] is None else f"{row[column]:.0f}" for column in ("wall_s_mean", "sps_mean")]
        lines.append("| " + " | ".join(cells) + " |")
    common = " ".join(["ppo_rlhf.py", *ppo_flags])
    conditions = "; ".join(f"{row['condition']}: `{row['flags'] or '(none)'}`" for row in rows)
    note = (f"Each run: `{common}` plus its condition's flags ({conditions}). {name.capitalize()}s: the trained agent's "
            f"final evaluation on the fixed starts, the same for every run (`eval/greedy_{metric}`, "
            f"`eval/sampled_{metric}`, also in the summary of its `agent.pt`); mean ± std over seeds. "
            "Wall s: the whole run process (start-up, training, evaluation); SPS: training env steps per second "
            "(`charts/SPS` at the end); means over seeds, measured while the grid's other runs shared the machine.")
    return lines, note


def main(args):
    # the experiment folder: new, resumed or started again
    experiment_dir, record_path = args.experiment_dir, os.path.join(args.experiment_dir, "experiment.json")
    made_here = os.path.isfile(record_path)
    if os.path.isdir(experiment_dir) and os.listdir(experiment_dir):
        if not (args.resume or args.overwrite):
            raise ExperimentError(f"{experiment_dir} already exists; pass --resume to keep its finished runs and run the rest, "
                                  f"--overwrite to start again, or choose another --experiment-dir")
        if not made_here:  # never delete or mix into a folder this script did not make
            raise ExperimentError(f"{experiment_dir} exists but was not made by run_experiments.py (no experiment.json); "
                                  f"remove it yourself or choose another --experiment-dir")

    # the grid: a folder per run; under --resume a finished one is kept if it was run the same way
    hashes = {seed_path(path, seed): sha256(seed_path(path, seed)) for path in set(args.reward_models.values()) for seed in args.seeds}
    grid, todo = [], []
    for condition, flags in args.condition_flags.items():
        for seed in args.seeds:
            reward_model = seed_path(args.reward_models[condition], seed) if condition in args.reward_models else None
            argv = ["--seed", str(seed), "--env-id", args.env_id, *args.ppo_flags, *flags, "--no-progress", "--exp-name", condition]
            if reward_model:
                argv += ["--reward-model", os.path.basename(reward_model)]
            run = {"name": f"{condition}__seed{seed}", "condition": condition, "seed": seed, "argv": argv,
                   "reward_model": reward_model, "reward_model_sha256": hashes.get(reward_model)}
            run["dir"] = os.path.join(experiment_dir, run["name"])
            grid.append(run)
            previous = None if args.overwrite else read_result(run["dir"])
            if previous is None or previous["status"] != "finished":
                todo.append(run)
            elif (previous["argv"], previous["reward_model_sha256"]) != (argv, run["reward_model_sha256"]):
                raise ExperimentError(f"{run['dir']} was run with other flags or another reward model "
                                      f"(ppo_rlhf.py {' '.join(previous['argv'])}); use another --experiment-dir or --overwrite")

    # run: one Ray task per run, its files written here as it comes back
    where = f"on the Ray cluster at {args.ray_address}" if args.ray_address else f"{args.jobs} at a time on this machine"
    print(f"{len(grid)} runs ({len(args.condition_flags)} conditions x {len(args.seeds)} seeds): "
          f"{len(grid) - len(todo)} finished already, {len(todo)} to run {where}", flush=True)
    repo = start_ray(args) if todo else None  # before anything is deleted or written: a cluster out of reach changes nothing
    try:
        if args.overwrite:
            shutil.rmtree(experiment_dir, ignore_errors=True)
        for run in todo:  # a failed or interrupted run starts from nothing
            shutil.rmtree(run["dir"], ignore_errors=True)
        record = {"format": FORMAT, "calls": []}
        if os.path.isfile(record_path):
            with open(record_path) as f:
                record = json.load(f)
        record["calls"].append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv, "args": cli.recorded(args)})
        os.makedirs(experiment_dir, exist_ok=True)
        checkpoints.write_json(record_path, record, indent=2)
        if todo:
            run_tasks(args, todo, repo)
    finally:
        if todo:
            ray.shutdown()

    # compare: the figure and the tables from the event files of the finished runs
    results = {run["name"]: read_result(run["dir"]) for run in grid}
    runs_by_condition = {condition: [] for condition in args.condition_flags}
    for run in grid:
        if results[run["name"]] is not None and results[run["name"]]["status"] == "finished":
            runs_by_condition[run["condition"]].append({**read_run(run["dir"], args.window, args.metric), "wall_s": results[run["name"]]["wall_s"]})
    plot_comparison(args.plot, runs_by_condition, args.window, len(args.seeds), args.env_id)
    rows = []
    for condition, flags in args.condition_flags.items():
        reward_model = ["--reward-model", args.reward_models[condition]] if condition in args.reward_models else []
        rows.append(condition_row(condition, flags + reward_model, runs_by_condition[condition], len(args.seeds), args.metric))
    lines, note = markdown_table(rows, args.window, args.ppo_flags, args.metric)
    os.makedirs(os.path.dirname(os.path.abspath(args.table)), exist_ok=True)
    with open(args.table, "w") as f:
        f.write("\n".join(lines) + "\n\n" + note + "\n")
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("\n".join(lines))
    failed = [name for name, result in results.items() if result is None or result["status"] != "finished"]
    if failed:
        print(f"{len(failed)} of {len(grid)} runs did not finish: {', '.join(failed)} (logs in their folders; --resume runs them again)")
    print(f"wrote {args.plot}, {args.table} and {args.csv}")
    return {"results": results, "rows": rows, "failed": failed}


if __name__ == "__main__":
    try:
        summary = main(parse_args())
    except ExperimentError as e:
        sys.exit(f"run_experiments.py: error: {e}")
    sys.exit(1 if summary["failed"] else 0)
