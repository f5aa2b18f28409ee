"""The write-up's pipeline and ours side by side, in one call: wall, CPU, peak memory, ratios.

    python benchmarks/versus_writeup.py            # full
    python benchmarks/versus_writeup.py --quick    # the write-up's reward stage at 10,000 steps, its PPO at 100,000, extrapolated

The write-up's side is a REFERENCE-MODE reproduction (benchmarks/writeup_reference.py): the
write-up's code repository cannot be reached from here, so its three stages' workload is
reproduced from what the write-up describes, not run from its code. Ours is this repo's stage
scripts on their defaults. Each stage is its own process (as a user would run it), measured
with os.wait4 as benchmarks/benchmark.py does: wall seconds, CPU seconds (user + system),
peak resident MB. Every round runs both sides, stage by stage, alternating which side goes
first (`--repeats` rounds; figures are means over rounds, peak memory the maximum).

Rows, each with the ratio reference wall / our wall:
- the reward stage: the write-up's fixed 100,000 steps vs train_reward_model.py on its defaults
  (early stopping), each on a DB of 10,000 comparisons from its own generator, same seed;
- the write-up's own workload, PPO on the learned reward for 1,000,000 steps: the reference's
  `ppo --rlhf` vs `ppo_rlhf.py --rlhf` (whose defaults are CleanRL's, as the write-up's were);
- nothing to a trained agent: the write-up's pipeline (generate, reward, ppo --rlhf 1M) vs ours
  as `make run` runs it (make_preferences_db.py, train_reward_model.py, ppo_rlhf.py --preset
  fast --rlhf), our agent's greedy and sampled normalized return read from its agent file.

A shortened reference run (`--quick`, `--reference-reward-steps`, `--reference-total-timesteps`) is
scaled to the full workload and marked "extrapolated": its main loop's time (which the stage
reports) is scaled linearly in the steps, its start-up (imports, loading, set-up) is not.
`--total-timesteps`, `--reward-max-steps`, `--fast-total-timesteps`, `--eval-episodes` and `--n-comparisons`
shrink our side (and the PPO workload both sides are scaled to) for tests; a run that uses any
of them says so, and its ratios are not the comparison. Writes JSON (--out) with the machine.
What it measured, and how long it takes: docs/performance.md, "Side by side with the write-up".
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import timing
from rlhf import agent as agent_lib
from rlhf import cli

REFERENCE = os.path.join(ROOT, "benchmarks", "writeup_reference.py")
WRITEUP_REWARD_STEPS = 100_000  # the write-up's reward model training
WRITEUP_PPO_STEPS = 1_000_000  # the write-up's PPO runs
PPO_BATCH = 4 * 128  # CleanRL's envs x steps, both sides: a run does total // batch iterations
MODE = ("the write-up's side is a reference-mode reproduction (benchmarks/writeup_reference.py) of its workload,"
        " not its code, which cannot be reached from here")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The write-up's pipeline (reference mode) and ours side by side; prints the ratios.")
    p.add_argument("--seed", type=int, default=1, help="seed of every stage, both sides")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "versus_writeup.json"), help="JSON results file")
    p.add_argument("--repeats", type=cli.positive_int, default=1, help="rounds of both sides, alternating which goes first")
    p.add_argument("--quick", action="store_true",
                   help="the reference's reward stage at 10,000 steps and PPO at 100,000, extrapolated to the full workloads")
    p.add_argument("--reference-reward-steps", type=cli.positive_int, default=None,
                   help="steps the reference's reward stage runs (default: 100,000, the write-up's; 10,000 with --quick)")
    p.add_argument("--reference-total-timesteps", type=cli.positive_int, default=None,
                   help="steps the reference's PPO runs (default: --total-timesteps; 100,000 with --quick)")
    p.add_argument("--total-timesteps", type=cli.positive_int, default=WRITEUP_PPO_STEPS,
                   help="PPO workload of the comparison: our --rlhf run's steps, and the reference's after extrapolation (write-up: 1000000)")
    p.add_argument("--n-comparisons", type=cli.positive_int, default=10_000, help="segments and comparisons of both generators (write-up: 10000)")
    p.add_argument("--reward-max-steps", type=cli.positive_int, default=None, help="for tests: cap our reward model's steps (default: its own)")
    p.add_argument("--fast-total-timesteps", type=cli.positive_int, default=None, help="for tests: our fast preset's --total-timesteps (default: the preset's)")
    p.add_argument("--eval-episodes", type=cli.positive_int, default=None, help="for tests: our PPO runs' evaluation episodes (default: their own)")
    args = p.parse_args(argv)
    if args.total_timesteps < PPO_BATCH:
        p.error(f"--total-timesteps must be >= {PPO_BATCH} (one PPO iteration)")
    args.reference_reward_steps = args.reference_reward_steps or (10_000 if args.quick else WRITEUP_REWARD_STEPS)
    args.reference_total_timesteps = args.reference_total_timesteps or (100_000 if args.quick else args.total_timesteps)
    if args.reference_total_timesteps < PPO_BATCH or args.reference_reward_steps < 1:
        p.error(f"--reference-total-timesteps must be >= {PPO_BATCH} and --reference-reward-steps >= 1")
    args.shrunk = [flag for flag, value, default in (
        ("--total-timesteps", args.total_timesteps, WRITEUP_PPO_STEPS), ("--n-comparisons", args.n_comparisons, 10_000),
        ("--reward-max-steps", args.reward_max_steps, None), ("--fast-total-timesteps", args.fast_total_timesteps, None),
        ("--eval-episodes", args.eval_episodes, None)) if value != default]
    return args


def reported_timing(output):
    """The `timing: {...}` line a reference stage ends with: its main loop's steps, wall and CPU seconds."""
    lines = [line for line in output.splitlines() if line.startswith("timing: ")]
    return json.loads(lines[-1][len("timing: "):])


def extrapolate(measured, target_steps):
    """A reference stage's figures at target_steps: its loop's wall and CPU (steps, loop_wall_s,
    loop_cpu_s) scaled linearly in the steps, the rest of the process (start-up, loading) as
    measured, peak memory as measured."""
    factor = target_steps / measured["steps"]
    if factor == 1:
        return {**measured, "extrapolated": False, "factor": 1.0}
    return {**measured, "wall_s": measured["wall_s"] + (factor - 1) * measured["loop_wall_s"],
            "cpu_s": measured["cpu_s"] + (factor - 1) * measured["loop_cpu_s"], "extrapolated": True, "factor": factor,
            "measured_wall_s": measured["wall_s"], "measured_cpu_s": measured["cpu_s"]}


def stage_commands(args):
    """(name, command) of each stage of each side, in pipeline order."""
    seed = ["--seed", str(args.seed)]
    evaluation = ["--eval-episodes", str(args.eval_episodes)] if args.eval_episodes else []
    ours = [
        ("generate", ["make_preferences_db.py", *seed, "--db", "prefs.db", "--n-segments", str(args.n_comparisons),
                      "--n-comparisons", str(args.n_comparisons)]),
        ("reward", ["train_reward_model.py", *seed, "--no-progress", "--db", "prefs.db", "--out", "rm.pt",
                    *(["--max-steps", str(args.reward_max_steps)] if args.reward_max_steps else [])]),
        ("ppo", ["ppo_rlhf.py", *seed, "--no-progress", "--rlhf", "--reward-model", "rm.pt", "--total-timesteps",
                 str(args.total_timesteps), "--save-path", "agent_rlhf.pt", *evaluation]),
        ("fast", ["ppo_rlhf.py", *seed, "--no-progress", "--preset", "fast", "--rlhf", "--reward-model", "rm.pt",
                  "--save-path", "agent.pt", *(["--total-timesteps", str(args.fast_total_timesteps)] if args.fast_total_timesteps else []), *evaluation]),
    ]
    reference = [
        ("generate", [REFERENCE, "generate", *seed, "--db", "preferences.db", "--n-segments", str(args.n_comparisons),
                      "--n-comparisons", str(args.n_comparisons)]),
        ("reward", [REFERENCE, "reward", *seed, "--db", "preferences.db", "--out", "rewards_model", "--steps",
                    str(args.reference_reward_steps)]),
        ("ppo", [REFERENCE, "ppo", *seed, "--rlhf", "rewards_model", "--total-timesteps", str(args.reference_total_timesteps)]),
    ]
    return [(name, [os.path.join(ROOT, script), *rest]) for name, (script, *rest) in ours], reference


def mean_over_rounds(runs):
    """One stage over rounds: the mean of every float figure, the largest peak memory, the rest
    (step counts, flags) from the first round, and each round's wall, CPU and peak."""
    stage = {k: (float(np.mean([r[k] for r in runs])) if isinstance(v, float) else v) for k, v in runs[0].items()}
    stage["peak_mb"] = max(r["peak_mb"] for r in runs)
    stage["rounds"] = [{k: r[k] for k in ("wall_s", "cpu_s", "peak_mb")} for r in runs]
    return stage


def combine(stages):
    """A pipeline of stage processes run one after the other: summed time, the largest peak."""
    return {"wall_s": sum(s["wall_s"] for s in stages), "cpu_s": sum(s["cpu_s"] for s in stages),
            "peak_mb": max(s["peak_mb"] for s in stages), "extrapolated": any(s.get("extrapolated") for s in stages)}


def fmt_steps(n):
    return f"{n:,}"


def main(args):
    ours_commands, reference_commands = stage_commands(args)
    ours_runs = {name: [] for name, _ in ours_commands}
    reference_runs = {name: [] for name, _ in reference_commands}
    reward_target, ppo_target = WRITEUP_REWARD_STEPS, args.total_timesteps // PPO_BATCH * PPO_BATCH
    targets = {"generate": args.n_comparisons, "reward": reward_target, "ppo": ppo_target}
    load_start = os.getloadavg()
    print(f"versus_writeup: {MODE}.")
    for round_ in range(args.repeats):
        with tempfile.TemporaryDirectory() as our_dir, tempfile.TemporaryDirectory() as reference_dir:
            # the round: stage by stage, both sides, the first side alternating between rounds
            for i in range(len(ours_commands)):
                sides = [("ours", ours_commands, ours_runs, our_dir), ("reference", reference_commands, reference_runs, reference_dir)]
                for side, commands, runs, workdir in (sides if round_ % 2 == 0 else sides[::-1]):
                    if i >= len(commands):
                        continue
                    name, command = commands[i]
                    print(f"round {round_ + 1}/{args.repeats}: {side} {name} ...", flush=True)
                    result = timing.run_stage(command, workdir, "versus_writeup")
                    output = result.pop("output")
                    if side == "reference":
                        result = extrapolate({**result, **reported_timing(output)}, targets[name])
                    elif name in ("ppo", "fast"):
                        summary = agent_lib.load(os.path.join(workdir, "agent_rlhf.pt" if name == "ppo" else "agent.pt"))[1]["summary"]
                        result.update(steps=summary["global_step"], greedy=summary["greedy"]["normalized_return"],
                                      sampled=summary["sampled"]["normalized_return"])
                    runs[name].append(result)

    ours = {name: mean_over_rounds(runs) for name, runs in ours_runs.items()}
    reference = {name: mean_over_rounds(runs) for name, runs in reference_runs.items()}

    # the rows: what is compared, our figures, the reference's, the ratio of walls
    rows = [
        {"row": "reward stage", "what": f"reference: {fmt_steps(reward_target)} fixed steps; ours: train_reward_model.py defaults",
         "ours": ours["reward"], "reference": reference["reward"]},
        {"row": "PPO --rlhf (the write-up's workload)",
         "what": f"{fmt_steps(ppo_target)} steps, CleanRL's defaults, both sides; ours includes its final evaluation",
         "ours": ours["ppo"], "reference": reference["ppo"]},
        {"row": "nothing -> trained agent", "what": "reference: generate + reward + ppo --rlhf; ours: `make run` (fast preset)",
         "ours": combine([ours["generate"], ours["reward"], ours["fast"]]),
         "reference": combine([reference["generate"], reference["reward"], reference["ppo"]])},
    ]
    rows[2]["ours"].update(greedy=ours["fast"]["greedy"], sampled=ours["fast"]["sampled"])
    for row in rows:
        row["extrapolated"] = bool(row["reference"].get("extrapolated"))
        row["ratio_wall"] = row["reference"]["wall_s"] / row["ours"]["wall_s"]

    # print
    print()
    print(f"Versus the write-up, seed {args.seed}, {args.repeats} round(s). {MODE[0].upper() + MODE[1:]}.")
    if args.shrunk:
        print(f"SHRUNK for a test ({', '.join(args.shrunk)}): these ratios are not the comparison.")
    header = f"{'row':<38}{'ours wall':>10}{'CPU':>8}{'MB':>6}{'reference wall':>16}{'CPU':>9}{'MB':>6}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        o, r = row["ours"], row["reference"]
        note = "  extrapolated" if row["extrapolated"] else ""
        print(f"{row['row']:<38}{o['wall_s']:>10.1f}{o['cpu_s']:>8.1f}{o['peak_mb']:>6.0f}{r['wall_s']:>16.1f}{r['cpu_s']:>9.1f}"
              f"{r['peak_mb']:>6.0f}{row['ratio_wall']:>7.1f}x{note}")
        print(f"{'':<4}{row['what']}")
    print("ratio: reference wall / our wall. wall and CPU in seconds, peak resident memory in MB.")
    load_end = os.getloadavg()
    print(f"load average (1 min) at the start {load_start[0]:.2f}, at the end {load_end[0]:.2f}, on {os.cpu_count()} CPUs: the"
          f" reference runs torch on its default threads, as the write-up did, which other busy processes slow far more"
          f" than our single-threaded stages")
    for name in ("reward", "ppo"):
        r = reference[name]
        if r["extrapolated"]:
            print(f"extrapolated: the reference's {name} stage ran {fmt_steps(r['steps'])} steps in {r['measured_wall_s']:.1f} s"
                  f" (loop {r['loop_wall_s']:.1f} s); its loop scaled x{r['factor']:.2f} to {fmt_steps(targets[name])} steps,"
                  f" its start-up not scaled")
    print(f"our agents' normalized return (greedy, sampled): fast preset {ours['fast']['greedy']:.4f}, {ours['fast']['sampled']:.4f};"
          f" {fmt_steps(ours['ppo']['steps'])}-step --rlhf run {ours['ppo']['greedy']:.4f}, {ours['ppo']['sampled']:.4f}."
          f" The reference does not evaluate its agent (the write-up reports training returns only).")

    machine = timing.machine()
    record = {"machine": machine, "load_average": {"start": load_start, "end": load_end}, "reference_mode": MODE,
              "quick": args.quick, "seed": args.seed, "repeats": args.repeats, "shrunk": args.shrunk, "targets": targets,
              "reference_steps": {"reward": args.reference_reward_steps, "ppo": args.reference_total_timesteps},
              "rows": rows, "stages": {"ours": ours, "reference": reference}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main(parse_args())
