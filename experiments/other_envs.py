"""Beyond the dot: the whole pipeline on each env and seed, against PPO on the env's own reward.

    python experiments/other_envs.py                                        # Mountain Car and CartPole, seeds 1-5, C17's loop
    python experiments/other_envs.py --method pipeline                      # the three stages once, on random-policy segments
    python experiments/other_envs.py --env-ids LunarLander-v3 --seeds 1 2 3
    MUJOCO_GL=egl python experiments/other_envs.py --env-ids Hopper-v5 --seeds 1 2 3
    python experiments/other_envs.py --env-ids MountainCar-v0 --seeds 1 --quick  # a look: a tenth of the PPO steps

For each env and seed S, every stage runs as a user runs it, its own process on the env's defaults
(envs.DEFAULTS) with --seed S: C17's loop (rlhf_loop.py, the synthetic teacher being the env's oracle)
or, with --method pipeline, make_preferences_db.py, train_reward_model.py and ppo_rlhf.py --rlhf on
that reward model; then ppo_rlhf.py on the env reward at the same steps. Reported per seed, and as mean and worst over seeds: labels used, each stage's wall
time, the reward model's held-out accuracy and its correlation with the oracle on held-out steps,
the final evaluation of both agents (greedy and sampled: mean true return, and the share of episodes
that terminated, which on Mountain Car is reaching the flag), the value of each agent's greedy
episodes under the learned reward (does the reward prefer what the env reward taught?), and the env's goal (GOALS, from issue
#13) met or not on every seed. Writes, under --out-dir/<env>/: results.json, curves.png (the true
episodic return during training, mean and range over seeds, as the write-up's figure) and a
Markdown table (results.md) for docs/other_envs.md.
"""

import argparse
import glob
import json
import os
import shutil
import sys
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(1, os.path.join(ROOT, "benchmarks"))  # timing.py

import timing
from rlhf import cli, envs

# env -> the route measured by default: the three stages once on random-policy segments where they suffice, C17's loop
# (queries on the agent's own behaviour) where random segments never show what the goal needs (a car at the flag, a cart
# that drifts off, a lander that lands, a hopper that hops): a random car never reaches the flag, so on the pipeline route
# the learned reward of getting there (the absorbing state) is untrained, and the trainer warns (PPO gets there all the
# same: docs/other_envs.md)
METHOD = {"MountainCar-v0": "loop", "CartPole-v1": "loop", "Acrobot-v1": "pipeline", "Pendulum-v1": "pipeline",
          "LunarLander-v3": "loop", "Hopper-v5": "loop"}
# env -> (labels allowed, what the goal is, check(rlhf agent's evaluation, env agent's evaluation) -> met)
GOALS = {
    "MountainCar-v0": (1000, "greedy agent reaches the flag in >= 95% of evaluation episodes",
                       lambda rlhf, env: rlhf["greedy"]["terminated_fraction"] >= 0.95),
    "CartPole-v1": (500, "greedy mean return >= 475", lambda rlhf, env: rlhf["greedy"]["true_return"] >= 475),
    "LunarLander-v3": (3000, "greedy mean return >= 200", lambda rlhf, env: rlhf["greedy"]["true_return"] >= 200),
    "Hopper-v5": (700, ">= 80% of the env-reward agent's greedy return at the same steps",
                  lambda rlhf, env: rlhf["greedy"]["true_return"] >= 0.8 * env["greedy"]["true_return"]),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The pipeline on other envs, per seed, against PPO on the env reward.")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="one whole pipeline per seed")
    p.add_argument("--env-ids", nargs="+", default=["MountainCar-v0", "CartPole-v1"], help="the stages' --env-id, one pipeline each (envs.SUPPORTED)")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "experiments", "results", "other_envs"), help="where the results go")
    p.add_argument("--method", choices=("loop", "pipeline"), default=None,
                   help="default: the env's (METHOD); loop: C17's loop (rlhf_loop.py: a quarter of the labels on random segments, the rest in --rounds rounds on"
                        " the agent's own); pipeline: the three stages once, every label on random-policy segments")
    p.add_argument("--rounds", type=cli.positive_int, default=None, help="with --method loop: rounds after round 0 (default: the env's loop default)")
    p.add_argument("--label-budget", type=cli.positive_int, default=None, help="labels in all, as rlhf_loop.py's (default: the env's goal, or 1000)")
    p.add_argument("--quick", action="store_true", help="a tenth of each env's PPO steps: a look, not the result")
    p.add_argument("--total-timesteps", type=cli.positive_int, default=None, help="PPO steps of both agents (default: the env's)")
    p.add_argument("--loop-flags", default="", help="with --method loop: extra rlhf_loop.py flags, e.g. '--after-end-share 0.1'")
    p.add_argument("--generator-flags", default="", help="with --method pipeline: extra make_preferences_db.py flags, e.g. '--n-comparisons 500'")
    p.add_argument("--trainer-flags", default="", help="with --method pipeline: extra train_reward_model.py flags")
    p.add_argument("--ppo-flags", default="", help="with --method pipeline: extra ppo_rlhf.py flags, for both agents")
    p.add_argument("--collect", action="store_true",
                   help="run nothing: rebuild the results (table, curves, JSON) from the seeds' folders of an earlier run, e.g. one stopped early")
    args = p.parse_args(argv)
    for env_id in args.env_ids:
        try:
            envs.spec(env_id)
        except envs.EnvError as e:
            p.error(str(e))
    methods = {args.method or METHOD.get(env_id, "loop") for env_id in args.env_ids}
    for flag, method in (("loop_flags", "loop"), ("generator_flags", "pipeline"), ("trainer_flags", "pipeline"), ("ppo_flags", "pipeline")):
        if getattr(args, flag) and methods != {method}:  # a flag that some env's route would silently ignore
            p.error(f"--{flag.replace('_', '-')} goes with --method {method} only, and {', '.join(args.env_ids)} would run"
                    f" {' and '.join(sorted(methods))}; add --method {method} or drop it")
    return args


def episodic_returns(run_dir):
    """(steps, returns) of charts/episodic_return in a PPO run's TensorBoard folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    events.Reload()
    if "charts/episodic_return" not in events.Tags()["scalars"]:
        return np.zeros(0), np.zeros(0)
    scalars = events.Scalars("charts/episodic_return")
    return np.array([s.step for s in scalars]), np.array([s.value for s in scalars])


def smoothed(steps, values, grid, window=20):
    """A rolling mean over ``window`` episodes, read off at ``grid``."""
    if len(values) == 0:
        return np.full(len(grid), np.nan)
    kernel = np.ones(min(window, len(values))) / min(window, len(values))
    mean = np.convolve(values, kernel, mode="valid")
    return np.interp(grid, steps[len(steps) - len(mean):], mean, left=np.nan)


def run_pipeline(env_id, seed, workdir, args, method):
    """One whole pipeline, the C17 loop or the three stages once, and PPO on the env reward at the
    same steps; returns its figures."""
    os.makedirs(workdir, exist_ok=True)
    env_spec = envs.spec(env_id)
    common = ["--seed", str(seed), "--env-id", env_id]
    labels = args.label_budget or GOALS.get(env_id, (1000,))[0]
    steps = args.total_timesteps or envs.defaults(env_id, "ppo_rlhf", continuous=not env_spec.discrete).get("total_timesteps", 1_000_000)
    if args.quick and not args.total_timesteps:
        steps = max(20_000, steps // 10)
    if method == "loop":
        rounds = [] if args.rounds is None else ["--rounds", str(args.rounds)]
        stages = {"loop": ["rlhf_loop.py", *common, "--label-budget", str(labels), *rounds,
                           "--total-timesteps", str(steps), "--out-dir", "loop", "--overwrite", "--no-progress", *args.loop_flags.split()]}
    else:
        val = max(1, labels // 10)
        stages = {
            "generator": ["make_preferences_db.py", *common, "--db", "preferences.db", "--overwrite", "--n-comparisons", str(labels),
                          "--validation-fraction", str(val / labels), "--n-segments", str(2 * labels), *args.generator_flags.split()],
            "trainer": ["train_reward_model.py", *common, "--db", "preferences.db", "--out", "reward_model.pt", "--overwrite",
                        "--no-progress", "--run-dir", "runs", *args.trainer_flags.split()],
            "ppo_rlhf": ["ppo_rlhf.py", *common, "--rlhf", "--reward-model", "reward_model.pt", "--save-path", "agent_rlhf.pt",
                         "--overwrite", "--no-progress", "--run-dir", "runs_rlhf", "--total-timesteps", str(steps), *args.ppo_flags.split()],
        }
    stages["ppo_env"] = ["ppo_rlhf.py", *common, "--save-path", "agent_env.pt", "--overwrite", "--no-progress", "--run-dir", "runs_env",
                         "--total-timesteps", str(steps), *args.ppo_flags.split()]
    times = {}
    for name, argv in stages.items():
        result = timing.run_stage([os.path.join(ROOT, argv[0]), *argv[1:]], workdir, "experiments/other_envs.py")
        times[name] = result["wall_s"]
        print(f"  {env_id} seed {seed} {name}: {result['wall_s']:.1f} s", flush=True)
        with open(os.path.join(workdir, "seconds.json"), "w") as f:
            json.dump(times, f)
    return collect(env_id, seed, workdir, args, method)


def learned_value(model, agent, env_spec, gamma, n_episodes=5, seed=100_000):
    """The mean discounted return under the learned reward (as PPO sees it: normalized, and the
    absorbing state's reward for ever after a termination, 0 where the model has that input) of the
    agent's greedy episodes. Read for
    both agents, it says whether the learned reward prefers the behaviour the env reward taught: if
    it does, a gap in true return is PPO's optimization on the learned reward, not an exploit."""
    from rlhf import reward_model as rm

    vec = envs.make_vector_env(env_spec, n_episodes)
    obs, _ = vec.reset(seed=seed)
    policy, running = agent.numpy_policy(), np.ones(n_episodes, dtype=bool)
    value, discount = np.zeros(n_episodes), np.ones(n_episodes)
    null = np.broadcast_to(env_spec.null_action(), (n_episodes, *np.shape(env_spec.null_action())))
    normalize = lambda r: rm.transform_rewards(r, "normalize", model.normalization())  # as ppo_rlhf.py does
    absorbing_reward = normalize(model.reward(obs, null, obs, np.ones(n_episodes, bool)))
    while running.any():
        out = policy(obs)[0]
        action = out.argmax(1) if agent.discrete else np.clip(out, env_spec.action_low, env_spec.action_high).astype(np.float32)
        next_obs, _, terminated, truncated, info = vec.step(action)
        value += np.where(running, discount * normalize(model.reward(obs, action, envs.last_observations(next_obs, info), None, terminated)), 0.0)
        discount *= gamma
        value += np.where(running & terminated, discount / (1 - gamma) * absorbing_reward, 0.0)
        running &= ~(terminated | truncated)
        obs = next_obs
    vec.close()
    return float(value.mean())


def collect(env_id, seed, workdir, args, method):
    """The figures of one seed's finished pipeline, read from its folder."""
    from rlhf import agent as agent_lib
    from rlhf import db
    from rlhf import reward_model as rm

    env_spec = envs.spec(env_id)
    if method == "loop":
        with open(os.path.join(workdir, "loop", "rounds.json")) as f:
            records = json.load(f)["rounds"]
        last = os.path.join(workdir, "loop", f"round_{records[-1]['round']}")
        model, agent_file, db_file = rm.load(os.path.join(last, "reward_model.pt")), os.path.join(last, "agent.pt"), os.path.join(workdir, "loop", "preferences.db")
        run_dirs = sorted(glob.glob(os.path.join(workdir, "loop", "round_*", f"{env_id}__ppo_rlhf__*")))
        held_out = records[-1]["held_out_accuracy"]  # on the loop's evaluation.db: random-policy pairs outside the budget
    else:
        model, agent_file, db_file = rm.load(os.path.join(workdir, "reward_model.pt")), os.path.join(workdir, "agent_rlhf.pt"), os.path.join(workdir, "preferences.db")
        run_dirs = glob.glob(os.path.join(workdir, "runs_rlhf", "*"))
        held_out = model.summary["val_accuracy"]
    counts = db.count_by_status(db_file)
    if os.path.exists(os.path.join(workdir, "seconds.json")):
        with open(os.path.join(workdir, "seconds.json")) as f:
            times = json.load(f)
    else:  # a folder written before seconds.json was: the loop's own clock and PPO's training time
        times = {"loop": records[-1]["wall_seconds"]} if method == "loop" else {}
        times["ppo_env"] = agent_lib.load(os.path.join(workdir, "agent_env.pt"))[1]["summary"]["train_seconds"]
    figures = {"seed": seed, "method": method, "rounds": records[-1]["round"] if method == "loop" else None,
               "labels": counts["labeled"] + counts["incomparable"], "seconds": times,
               "held_out_accuracy": held_out, "reward_correlation": model.summary.get("reward_correlation")}
    for condition, path, dirs in (("rlhf", agent_file, run_dirs), ("env", os.path.join(workdir, "agent_env.pt"), glob.glob(os.path.join(workdir, "runs_env", "*")))):
        agent, checkpoint = agent_lib.load(path)
        summary, gamma = checkpoint["summary"], envs.defaults(env_id, "ppo_rlhf", continuous=not env_spec.discrete).get("gamma", 0.99)
        figures[condition] = {"greedy": summary["greedy"], "sampled": summary["sampled"], "global_step": summary["global_step"],
                              "learned_value": learned_value(model, agent, env_spec, gamma)}
        curves = [episodic_returns(d) for d in dirs]
        figures[condition]["curve"] = [np.concatenate([c[0] for c in curves]).tolist(), np.concatenate([c[1] for c in curves]).tolist()]
    return figures


def plot(path, env_id, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    last = max(max(r[c]["global_step"] for c in ("rlhf", "env")) for r in results)
    grid = np.linspace(0, last, 200)
    for condition, label, colour in (("env", "PPO on the env reward", "C0"), ("rlhf", "PPO on the learned reward (--rlhf)", "C1")):
        curves = np.array([smoothed(*map(np.asarray, r[condition]["curve"]), grid) for r in results])
        with warnings.catch_warnings():  # before a seed's first episode ends, its curve is NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = np.nanmean(curves, 0), np.nanmin(curves, 0), np.nanmax(curves, 0)
        ax.plot(grid, mean, color=colour, label=f"{label}, mean of {len(results)} seeds")
        ax.fill_between(grid, low, high, color=colour, alpha=0.2, linewidth=0)
    labels, method = results[0]["labels"], results[0]["method"]
    method = f"loop, {results[0]['rounds']} rounds" if results[0].get("rounds") else method
    ax.set(xlabel="env steps", ylabel="true episodic return (rolling 20 episodes)",
           title=f"{env_id}: {labels} synthetic labels ({envs.DEFAULT_ORACLE.get(env_id, 'reward')} oracle, {method});"
                 " band: min-max over seeds", )
    ax.title.set_fontsize(9)
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(env_id, results):
    goal = GOALS.get(env_id)
    lines = [f"| seed | labels | held-out accuracy | reward corr. (last model) | rlhf greedy | rlhf sampled | rlhf terminated (greedy) | env greedy | env sampled"
             f" | env terminated (greedy) | learned-reward value: rlhf / env agent | wall s (each stage; the loop's in one; last: env PPO) |"
             f"{' goal met |' if goal else ''}", "|" + "---|" * (13 if goal else 12)]
    for r in results:
        cells = [r["seed"], r["labels"], f"{r['held_out_accuracy']:.3f}", f"{r['reward_correlation']:.3f}",
                 f"{r['rlhf']['greedy']['true_return']:.1f}", f"{r['rlhf']['sampled']['true_return']:.1f}",
                 f"{r['rlhf']['greedy']['terminated_fraction']:.0%}", f"{r['env']['greedy']['true_return']:.1f}",
                 f"{r['env']['sampled']['true_return']:.1f}", f"{r['env']['greedy']['terminated_fraction']:.0%}",
                 f"{r['rlhf']['learned_value']:.1f} / {r['env']['learned_value']:.1f}",
                 " / ".join(f"{v:.0f}" for v in r["seconds"].values())]
        if goal:
            cells.append("yes" if goal[2](r["rlhf"], r["env"]) and r["labels"] <= goal[0] else "**no**")
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return lines


def main(args):
    print(f"machine: {timing.machine()}")
    for env_id in args.env_ids:
        method = args.method or METHOD.get(env_id, "loop")
        out = os.path.join(args.out_dir, f"{env_id}_{method}")
        os.makedirs(out, exist_ok=True)
        results = []
        for seed in args.seeds:
            workdir = os.path.join(out, f"seed{seed}")
            if args.collect:
                results.append(collect(env_id, seed, workdir, args, method))
                continue
            shutil.rmtree(workdir, ignore_errors=True)
            results.append(run_pipeline(env_id, seed, workdir, args, method))
        goal = GOALS.get(env_id)
        met = [goal[2](r["rlhf"], r["env"]) and r["labels"] <= goal[0] for r in results] if goal else None
        flags = {name: getattr(args, name) for name in ("rounds", "label_budget", "total_timesteps", "loop_flags", "generator_flags", "trainer_flags", "ppo_flags")}
        report = {"env_id": env_id, "method": method, "seeds": args.seeds, "quick": args.quick, "flags": flags, "machine": timing.machine(), "results": results,
                  "goal": goal[1] if goal else None, "goal_labels": goal[0] if goal else None, "goal_met_every_seed": all(met) if goal else None}
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(report, f, indent=1)
        plot(os.path.join(out, "curves.png"), env_id, results)
        lines = table(env_id, results)
        summary = (f"{env_id}, {method}: goal ({goal[1]}, <= {goal[0]} labels) met on {sum(met)}/{len(met)} seeds" if goal else f"{env_id}: no goal set")
        with open(os.path.join(out, "results.md"), "w") as f:
            f.write("\n".join([summary, "", *lines, ""]))
        print("\n".join([summary, *lines]), flush=True)


if __name__ == "__main__":
    main(parse_args())
