"""C17's loop: ask about the agent's own behaviour, in rounds, and learn from few labels.

    python rlhf_loop.py --label-budget 100 --rounds 3                    # synthetic teacher, ~1 min
    python rlhf_loop.py --label-budget 100 --rounds 3 --teacher human --db queries.db
    python label_preferences.py --db queries.db                          # in a second shell: answer the queries

Round 0 spends --initial-share of --label-budget on segments of a uniformly random policy (C17
Appendix A: 25%), fits the reward model and trains a PPO agent on it. Every further round
(--rounds) cuts segments from rollouts of the current agent, chooses which pairs to ask about
(--select disagreement: where the reward-model ensemble disagrees most, C17 2.2.4), gets their
labels, trains the reward model further on everything labeled so far (from the previous
round's weights) and the agent further on the new reward model (from the previous round's
weights, optimizer state and step count). --rounds 0 --initial-share 1 is the seed's way: every
label up front, one reward model, one agent.

Labels come from the generator's simulated teacher (--oracle and the --teacher-* noise knobs)
or, with --teacher human, from people on the labeling page: the round's queries are written as
pending rows and the loop waits, with a progress line, until they are all answered. Nothing here
holds the DB open while it waits or trains (the DB is in WAL mode), so the page and the loop
never block each other.

The stages run in this process, as `main(parse_args([...]))` of each stage script: the same
code path as on the command line, without a 2 s torch import per stage and round.

Writes under --out-dir (default runs/MovingDot-v0__rlhf_loop__<seed>__<time>/):
  preferences.db     every query and label (one generator batch per round), unless --db is given
  evaluation.db      a fixed set of random-policy comparisons labeled by the true reward, never
                     trained on and not counted in the budget: the held-out accuracy of every round
  round_<r>/         reward_model.pt (+ .png), agent.pt, the stages' TensorBoard runs, log.txt
  rounds.json        the arguments and one record per round (rewritten after every round)
  label_efficiency.png, and the loop's own TensorBoard events (x-axis: labels used)
"""

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import agent as agent_lib
import cli
import db
import make_preferences_db
import moving_dot as md
import ppo_rlhf
import reward_model as rm
import train_reward_model


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="C17's RLHF loop: query the agent's own behaviour in rounds, on a label budget.")
    p.add_argument("--seed", type=cli.nonnegative_int, default=1, help="seed of the loop; every stage of every round gets its own")
    p.add_argument("--out-dir", default=None, help="folder of everything the loop writes (default: runs/<run name>)")
    p.add_argument("--db", default=None, help="the preferences DB of every round (default: <out-dir>/preferences.db)")
    p.add_argument("--overwrite", action="store_true", help="replace the DB and the files of an earlier loop in --out-dir")
    p.add_argument("--label-budget", type=cli.positive_int, default=100, help="labels in all, over all rounds")
    p.add_argument("--rounds", type=cli.nonnegative_int, default=3, help="rounds on the agent's own behaviour after round 0")
    p.add_argument("--initial-share", type=cli.probability, default=0.25,
                   help="share of the budget spent in round 0 on a uniformly random policy (C17: 25%%)")
    p.add_argument("--segment-length", type=cli.positive_int, default=25, help="steps per segment (C17: 25; 1 is the write-up's single steps)")
    p.add_argument("--select", choices=("random", "disagreement"), default="disagreement",
                   help="which pairs to ask about from round 1 on (C17 2.2.4: disagreement); round 0 is always random")
    p.add_argument("--candidate-factor", type=cli.positive_int, default=10, help="with --select disagreement: candidate pairs per query (B-Pref: 10)")
    p.add_argument("--ensemble", type=cli.positive_int, default=3, help="reward-model ensemble members (C17: 3)")
    p.add_argument("--reward-steps", type=cli.positive_int, default=1000,
                   help="reward-model gradient steps per round, all of them (no labels are held out for early stopping)")
    p.add_argument("--reward-batch-size", type=cli.positive_int, default=32, help="comparisons per reward-model gradient step")
    p.add_argument("--reward-learning-rate", type=cli.positive_float, default=1e-2, help="reward-model Adam step size")
    p.add_argument("--total-timesteps", type=cli.positive_int, default=None,
                   help="PPO env steps in all, split evenly over the rounds (default: 100,000 a round, the fast preset's)")
    p.add_argument("--preset", choices=tuple(ppo_rlhf.PRESETS), default="fast", help="ppo_rlhf.py's preset")
    p.add_argument("--reward-transform", choices=rm.TRANSFORMS, default=rm.TRANSFORMS[0],
                   help="ppo_rlhf.py's --reward-transform (C17: normalize; clipping a learned reward ties actions)")
    p.add_argument("--eval-episodes", type=cli.positive_int, default=100, help="fixed-start episodes of each round's agent evaluation")
    p.add_argument("--eval-comparisons", type=cli.positive_int, default=1000, help="comparisons in evaluation.db (not counted in the budget)")
    p.add_argument("--teacher", choices=("synthetic", "human"), default="synthetic", help="who answers: the generator's oracle, or people")
    p.add_argument("--oracle", choices=("reward", "distance"), default="reward", help="synthetic teacher: true reward sum (C17) or distance moved")
    p.add_argument("--teacher-beta", type=cli.positive_float, default=None, help="synthetic teacher: make_preferences_db.py's --teacher-beta")
    p.add_argument("--teacher-gamma", type=cli.discount, default=1.0, help="synthetic teacher: --teacher-gamma")
    p.add_argument("--teacher-eps-mistake", type=cli.probability, default=0.0, help="synthetic teacher: --teacher-eps-mistake")
    p.add_argument("--teacher-eps-skip", type=cli.finite_float, default=None, help="synthetic teacher: --teacher-eps-skip")
    p.add_argument("--teacher-eps-equal", type=cli.nonnegative_float, default=0.0, help="synthetic teacher: --teacher-eps-equal")
    p.add_argument("--poll-seconds", type=cli.positive_float, default=2.0, help="human teacher: seconds between looks at the DB")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress line while waiting for people")
    args = p.parse_args(argv)
    args.run_name = f"MovingDot-v0__rlhf_loop__{args.seed}__{int(time.time())}"
    args.out_dir = args.out_dir or os.path.join("runs", args.run_name)
    args.db = args.db or os.path.join(args.out_dir, "preferences.db")
    # labels per round: round 0 first, the rest as evenly as whole labels allow
    initial = round(args.initial_share * args.label_budget)
    args.queries = [initial] + np.diff(np.round(np.linspace(0, args.label_budget - initial, args.rounds + 1))).astype(int).tolist()
    if min(args.queries) < 1:
        p.error(f"--label-budget {args.label_budget} with --initial-share {args.initial_share} and --rounds {args.rounds} leaves a"
                f" round without labels ({args.queries}); raise the budget or change the share or the rounds")
    args.total_timesteps = args.total_timesteps or 100_000 * (args.rounds + 1)
    args.ppo_steps = args.total_timesteps // (args.rounds + 1)
    if args.rounds and args.segment_length > md.MAX_EPISODE_STEPS - 200:  # make_preferences_db.py's --max-start-step
        p.error(f"--segment-length {args.segment_length} leaves no room in an episode for the agent's segments; use at most"
                f" {md.MAX_EPISODE_STEPS - 200}")
    return args


def stage_seed(seed, round_, stage):
    """A seed per loop seed, round and stage (0: queries, 1: reward model, 2: PPO, 3: evaluation DB)."""
    return int(np.random.SeedSequence([seed, round_, stage]).generate_state(1)[0])


class StageError(Exception):
    """A stage refused the flags the loop passed it; the message names the stage's log."""


def run_stage(module, argv, log):
    """A stage script's main(parse_args(argv)) with its printout in ``log``; returns what main returns."""
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"$ python {module.__name__}.py {' '.join(argv)}", flush=True)
        try:
            args = module.parse_args(argv)
        except SystemExit:  # argparse's error went to the log
            raise StageError(f"{module.__name__}.py rejected the flags the loop gave it; see {log.name}") from None
        return module.main(args)


def wait_for_labels(path, batch, n, args):
    """Poll the DB until no comparison of ``batch`` is pending: people answer on the labeling page."""
    start = time.time()
    print(f"  {n} queries waiting in {path}: answer them with `python label_preferences.py --db {path}`")
    bar = tqdm(total=n, desc="  answered", unit="label", disable=not args.progress, dynamic_ncols=True)
    while True:
        counts = db.count_by_status(path, batch)
        bar.update(n - counts["pending"] - bar.n)
        if counts["pending"] == 0:
            bar.close()
            return time.time() - start
        time.sleep(args.poll_seconds)


def plot(path, records, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["labels"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    left.plot(labels, [r["greedy_normalized_return"] for r in records], "o-", label="agent, greedy")
    left.plot(labels, [r["sampled_normalized_return"] for r in records], "s--", label="agent, sampled")
    if all(r["optimal_policy_normalized_return"] is not None for r in records):
        left.plot(labels, [r["optimal_policy_normalized_return"] for r in records], "^:", label="optimal policy of the learned reward")
    left.axhline(0.95, color="grey", lw=0.8)
    left.set(xlabel="labels used", ylabel="normalized true return", ylim=(min(0, *left.get_ylim()), 1.05),
             title=f"{args.select} queries, segments of {args.segment_length}, seed {args.seed}")
    left.legend(loc="lower right")
    right.plot(labels, [r["held_out_accuracy"] for r in records], "o-", label="held-out accuracy (evaluation.db)")
    right.plot(labels, [r["action_order_agreement"] for r in records], "s-", label="action-order agreement (whole grid)")
    right.set(xlabel="labels used", ylim=(0.4, 1.02), title="reward model")
    right.legend(loc="lower right")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(args):
    start = time.time()
    rounds_path = os.path.join(args.out_dir, "rounds.json")
    for path in (rounds_path, args.db):  # fail before any work, not after
        if os.path.exists(path) and not args.overwrite:
            raise db.PreferencesDBError(f"{path} already exists; pass --overwrite to replace it or choose another --out-dir / --db")
    os.makedirs(args.out_dir, exist_ok=True)
    writer = SummaryWriter(args.out_dir)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))
    overwrite = ["--overwrite"] if args.overwrite else []
    teacher = (["--oracle", "none"] if args.teacher == "human" else
               ["--oracle", args.oracle, "--teacher-gamma", args.teacher_gamma, "--teacher-eps-mistake", args.teacher_eps_mistake,
                "--teacher-eps-equal", args.teacher_eps_equal]
               + (["--teacher-beta", args.teacher_beta] if args.teacher_beta is not None else [])
               + (["--teacher-eps-skip", args.teacher_eps_skip] if args.teacher_eps_skip is not None else []))

    # the evaluation set: random-policy comparisons labeled by the true reward, outside the budget
    evaluation_db = os.path.join(args.out_dir, "evaluation.db")
    with open(os.path.join(args.out_dir, "log.txt"), "w") as log:
        run_stage(make_preferences_db, [str(a) for a in [
            "--seed", stage_seed(args.seed, 0, 3), "--db", evaluation_db, "--segment-length", args.segment_length, "--oracle", "reward",
            "--n-segments", 2 * args.eval_comparisons, "--n-comparisons", args.eval_comparisons, "--validation-fraction", 0, *overwrite]], log)
    evaluation = db.load_comparisons(evaluation_db)

    records, agent_path, model_path, labels = [], None, None, 0
    for round_ in range(args.rounds + 1):
        round_start = time.time()
        round_dir = os.path.join(args.out_dir, f"round_{round_}")
        os.makedirs(round_dir, exist_ok=True)
        n = args.queries[round_]
        select = args.select if round_ > 0 else "random"
        with open(os.path.join(round_dir, "log.txt"), "w") as log:
            # queries: segments of a random policy in round 0, of the current agent after
            n_segments = 2 * n * (args.candidate_factor if select == "disagreement" else 1)
            run_stage(make_preferences_db, [str(a) for a in [
                "--seed", stage_seed(args.seed, round_, 0), "--db", args.db, "--segment-length", args.segment_length,
                "--n-segments", max(n_segments, 2), "--n-comparisons", n, "--validation-fraction", 0, *teacher,
                *(["--policy", agent_path] if agent_path else []),
                *(["--select", "disagreement", "--reward-model", model_path, "--candidate-factor", args.candidate_factor]
                  if select == "disagreement" else []),
                *(["--append"] if round_ > 0 else ["--overwrite"] if args.overwrite else [])]], log)
        batch = db.read_metadata(args.db)["generator_runs"][-1]["batch"]

        # labels: written by the synthetic teacher already, or by people on the labeling page
        print(f"round {round_}/{args.rounds}: {n} queries on {'a random policy' if agent_path is None else 'the agent'}'s segments"
              f" ({select})", flush=True)
        wait_seconds = wait_for_labels(args.db, batch, n, args) if args.teacher == "human" else 0.0
        labels += n

        with open(os.path.join(round_dir, "log.txt"), "a") as log:
            # reward model: every label so far, from the previous round's weights
            previous_model, model_path = model_path, os.path.join(round_dir, "reward_model.pt")
            reward_summary = run_stage(train_reward_model, [str(a) for a in [
                "--seed", stage_seed(args.seed, round_, 1), "--db", args.db, "--out", model_path, "--run-dir", round_dir,
                "--ensemble-size", args.ensemble, "--max-steps", args.reward_steps, "--eval-every", args.reward_steps,
                "--batch-size", args.reward_batch_size, "--learning-rate", args.reward_learning_rate, "--no-progress", *overwrite,
                *(["--init", previous_model] if previous_model else [])]], log)
            accuracy = rm.comparison_accuracy(rm.load(model_path), evaluation)

            # agent: further on the new reward model, from the previous round's agent
            previous_agent, agent_path = agent_path, os.path.join(round_dir, "agent.pt")
            ppo_summary = run_stage(ppo_rlhf, [str(a) for a in [
                "--seed", stage_seed(args.seed, round_, 2), "--reward-model", model_path, "--save-path", agent_path,
                "--run-dir", round_dir, "--preset", args.preset, "--rlhf", "--reward-transform", args.reward_transform,
                "--total-timesteps", args.ppo_steps, "--eval-episodes", args.eval_episodes, "--no-progress", *overwrite,
                *(["--resume", previous_agent] if previous_agent else [])]], log)

        # log the round; the trainer scores the learned reward's optimal policy as PPO's default transform uses it
        optimal_key = "optimal_policy_normalized_return" if args.reward_transform == rm.TRANSFORMS[0] else None
        record = {
            "round": round_, "queries": n, "labels": labels, "select": select,
            "labeled": reward_summary["n_train"] + reward_summary["n_validation"],
            "held_out_accuracy": accuracy, "action_order_agreement": reward_summary["action_order_agreement"],
            "reward_correlation": reward_summary["reward_correlation"],
            "optimal_policy_normalized_return": reward_summary[optimal_key] if optimal_key else None,
            "global_step": ppo_summary["global_step"],
            "greedy_normalized_return": ppo_summary["greedy"]["normalized_return"],
            "sampled_normalized_return": ppo_summary["sampled"]["normalized_return"],
            "wait_seconds": wait_seconds, "round_seconds": time.time() - round_start, "wall_seconds": time.time() - start,
        }
        records.append(record)
        for key in ("greedy_normalized_return", "sampled_normalized_return", "held_out_accuracy", "action_order_agreement",
                    "reward_correlation", "optimal_policy_normalized_return", "global_step", "wall_seconds"):
            if record[key] is not None:
                writer.add_scalar(f"loop/{key}", record[key], labels)
        with open(rounds_path, "w") as f:
            json.dump({"args": vars(args), "rounds": records}, f, indent=1)
        optimal = record["optimal_policy_normalized_return"]
        print(f"  {labels} labels: held-out accuracy {accuracy:.3f}, action-order agreement {record['action_order_agreement']:.3f}"
              + (f", optimal policy of the learned reward {optimal:.3f}" if optimal is not None else "")
              + f"; agent at {record['global_step']} steps: greedy {record['greedy_normalized_return']:.3f},"
              f" sampled {record['sampled_normalized_return']:.3f} ({record['round_seconds']:.1f} s)", flush=True)

    # the label-efficiency figure
    writer.close()
    plot(os.path.join(args.out_dir, "label_efficiency.png"), records, args)
    print(f"{labels} labels, {records[-1]['global_step']} PPO steps in {time.time() - start:.1f} s: greedy normalized return"
          f" {records[-1]['greedy_normalized_return']:.3f}; wrote {args.db}, {rounds_path} and {args.out_dir}/label_efficiency.png")
    return records


if __name__ == "__main__":
    try:
        main(parse_args())
    except (db.PreferencesDBError, rm.RewardModelError, agent_lib.AgentFileError, make_preferences_db.InputFileError, StageError) as e:
        sys.exit(f"rlhf_loop.py: error: {e}")
