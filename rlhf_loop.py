"""C17's loop: ask about the agent's own behaviour, in rounds, and learn from few labels.

    python rlhf_loop.py --label-budget 100 --rounds 3                    # synthetic teacher (its time: docs/rlhf_loop.md)
    python rlhf_loop.py --label-budget 100 --rounds 3 --teacher human --db queries.db
    python labeling/label_preferences.py --db queries.db                          # in a second shell: answer the queries

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
code path as on the command line, without a torch import per stage and round (docs/rlhf_loop.md).

Stopping and resuming: every stage is recorded as done (round_<r>/stages.json, replaced
atomically) as soon as its output is written, so a loop stopped at any point (Ctrl+C, a crash,
a reboot) goes on with

    python rlhf_loop.py --resume --out-dir runs/<the loop>

which keeps the finished rounds, reruns the stage that was cut short from its inputs (every stage
is seeded, so the records come out as in an uninterrupted run) and reuses the queries already
written and every answer given to them: no query is asked twice. It runs with the loop's own
flags; a flag given with --resume that would change the loop is refused (--poll-seconds and
--progress may change). --overwrite never deletes people's answers: a DB holding human labels
is only replaced with --discard-human-labels.

Writes under --out-dir (default runs/MovingDot-v0__rlhf_loop__<seed>__<time>/):
  preferences.db     every query and label (one generator batch per round), unless --db is given
  evaluation.db      a fixed set of random-policy comparisons labeled by the true reward, never
                     trained on and not counted in the budget: the held-out accuracy of every round
  round_<r>/         reward_model.pt (+ .png in the last round), agent.pt, the stages' TensorBoard runs, log.txt,
                     stages.json (the stages done, with their figures)
  rounds.json        the arguments and one record per round (rewritten after every round)
  label_efficiency.png, the loop's own TensorBoard events (x-axis: labels used), and loop.lock
  (held while a loop runs, so that two loops never ask the same person the same queries)
"""

import argparse
import contextlib
import fcntl
import gc
import glob
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import make_preferences_db
import ppo_rlhf
import train_reward_model
from rlhf import agent as agent_lib
from rlhf import checkpoints, cli, db, envs
from rlhf import moving_dot as md
from rlhf import reward_model as rm


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="C17's RLHF loop: query the agent's own behaviour in rounds, on a label budget.")
    p.add_argument("--seed", type=cli.nonnegative_int, default=1, help="seed of the loop; every stage of every round gets its own")
    p.add_argument("--out-dir", default=None, help="folder of everything the loop writes (default: runs/<run name>)")
    p.add_argument("--db", default=None, help="the preferences DB of every round (default: <out-dir>/preferences.db)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the DB and the files of an earlier loop in --out-dir (a DB with human labels: see the next flag)")
    p.add_argument("--discard-human-labels", action="store_true",
                   help="with --overwrite: replace the DB even though it holds people's answers (they are lost)")
    p.add_argument("--resume", action="store_true",
                   help="continue the stopped loop in --out-dir with its own flags: finished stages are kept, no query is asked twice")
    p.add_argument("--env-id", default=envs.DEFAULT_ENV_ID, help="the env of every stage (envs.py)")
    p.add_argument("--label-budget", type=cli.positive_int, default=100, help="labels in all, over all rounds")
    p.add_argument("--rounds", type=cli.nonnegative_int, default=3, help="rounds on the agent's own behaviour after round 0")
    p.add_argument("--initial-share", type=cli.probability, default=0.25,
                   help="share of the budget spent in round 0 on a uniformly random policy (C17: 25%%)")
    p.add_argument("--segment-length", type=cli.positive_int, default=25, help="steps per segment (C17: 25; 1 is the write-up's single steps)")
    p.add_argument("--select", choices=("random", "disagreement"), default="disagreement",
                   help="which pairs to ask about from round 1 on (C17 2.2.4: disagreement); round 0 is always random")
    p.add_argument("--after-end-share", type=cli.fraction_below_one, default=None,
                   help="make_preferences_db.py's, for every DB the loop makes: share of segments cut after their episode ended"
                        " (default: the generator's)")
    p.add_argument("--candidate-factor", type=cli.positive_int, default=10, help="with --select disagreement: candidate pairs per query (B-Pref: 10)")
    # the reward model's flags: the trainer's names, with reward- where PPO has a flag of that name (or it would read as PPO's)
    p.add_argument("--ensemble-size", type=cli.positive_int, default=3, help="train_reward_model.py's --ensemble-size (C17: 3)")
    p.add_argument("--reward-max-steps", type=cli.positive_int, default=1000,
                   help="train_reward_model.py's --max-steps, each round: all of them (no labels are held out for early stopping)")
    p.add_argument("--reward-batch-size", type=cli.positive_int, default=32, help="train_reward_model.py's --batch-size")
    p.add_argument("--reward-learning-rate", type=cli.positive_float, default=1e-2, help="train_reward_model.py's --learning-rate")
    p.add_argument("--total-timesteps", type=cli.positive_int, default=None,
                   help="PPO env steps in all, split evenly over the rounds (default: 100,000 a round, the fast preset's)")
    p.add_argument("--preset", choices=tuple(ppo_rlhf.PRESETS), default="fast", help="ppo_rlhf.py's preset")
    p.add_argument("--reward-transform", choices=rm.TRANSFORMS, default=rm.TRANSFORMS[0],
                   help="ppo_rlhf.py's --reward-transform (C17: normalize; clipping a learned reward ties actions)")
    p.add_argument("--eval-episodes", type=cli.positive_int, default=100, help="fixed-start episodes of each round's agent evaluation")
    p.add_argument("--eval-comparisons", type=cli.positive_int, default=1000, help="comparisons in evaluation.db (not counted in the budget)")
    p.add_argument("--teacher", choices=("synthetic", "human"), default="synthetic", help="who answers: the generator's oracle, or people")
    p.add_argument("--oracle", default="reward",
                   help="synthetic teacher: true reward sum (C17), or one of the env's own (envs.ORACLES: distance, height, tip-height)")
    p.add_argument("--teacher-beta", type=cli.positive_float, default=None, help="synthetic teacher: make_preferences_db.py's --teacher-beta")
    p.add_argument("--teacher-gamma", type=cli.discount, default=1.0, help="synthetic teacher: --teacher-gamma")
    p.add_argument("--teacher-eps-mistake", type=cli.probability, default=0.0, help="synthetic teacher: --teacher-eps-mistake")
    p.add_argument("--teacher-eps-skip", type=cli.finite_float, default=None, help="synthetic teacher: --teacher-eps-skip")
    p.add_argument("--teacher-eps-equal", type=cli.nonnegative_float, default=0.0, help="synthetic teacher: --teacher-eps-equal")
    p.add_argument("--poll-seconds", type=cli.positive_float, default=2.0, help="human teacher: seconds between looks at the DB")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress line while waiting for people")
    args_spec = cli.env_spec_with_defaults(p, argv, "rlhf_loop")
    args = p.parse_args(argv)
    if args.oracle not in envs.oracle_names(args_spec.env_id):
        p.error(f"--oracle {args.oracle} is not an oracle for {args_spec.env_id}; choose from {', '.join(envs.oracle_names(args_spec.env_id))}")
    if args.resume and args.overwrite:
        p.error("--resume and --overwrite exclude each other: --resume keeps the loop in --out-dir, --overwrite replaces it")
    if args.discard_human_labels and not args.overwrite:
        p.error("--discard-human-labels only goes with --overwrite")
    if args.resume:
        args = resumed_args(p, args, argv)
    else:
        args.run_name = f"{args.env_id}__rlhf_loop__{args.seed}__{int(time.time())}"
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
    if make_preferences_db.after_end_error(args.after_end_share, args_spec):
        p.error(make_preferences_db.after_end_error(args.after_end_share, args_spec))
    if args.rounds and args_spec.tabular and args.segment_length > md.MAX_EPISODE_STEPS - 200:  # make_preferences_db.py's --max-start-step
        p.error(f"--segment-length {args.segment_length} leaves no room in an episode for the agent's segments; use at most"
                f" {md.MAX_EPISODE_STEPS - 200}")
    return args


# how this session runs, not what the loop learns: the only flags --resume lets change
OPERATIONAL = ("poll_seconds", "progress")
# flags renamed since a loop may have saved them (old name in rounds.json: new name), read under the new name by --resume
RENAMED = {"ensemble": "ensemble_size", "reward_steps": "reward_max_steps"}


def resumed_args(p, args, argv):
    """The flags of the loop saved in --out-dir/rounds.json, for --resume. A flag given now must
    match the saved one (the error names it), except OPERATIONAL ones, which this session sets."""
    if args.out_dir is None:
        p.error("--resume needs --out-dir, the folder of the loop to continue")
    path = os.path.join(args.out_dir, "rounds.json")
    try:
        with open(path) as f:
            saved = {RENAMED.get(key, key): value for key, value in json.load(f)["args"].items()}
    except FileNotFoundError:
        p.error(f"--resume: no loop to continue in {args.out_dir} ({path} not found); start one without --resume")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        p.error(f"--resume: {path} is not a loop's record ({e}); start a new loop in another --out-dir")
    unset = object()  # parsed again into a namespace argparse fills only with the flags actually given
    for key, value in vars(p.parse_args(argv, argparse.Namespace(**{key: unset for key in vars(args)}))).items():
        if value is unset or key in (*OPERATIONAL, "resume", "out_dir"):
            continue
        same = (os.path.abspath(value) == os.path.abspath(saved[key]) if key == "db" and saved.get(key)
                else json.loads(json.dumps(value)) == saved.get(key))
        if not same:
            p.error(f"--resume: --{key.replace('_', '-')} {value} would change the loop in {args.out_dir}, which runs with"
                    f" {saved.get(key)}; resume with its flags (or none), or start a new loop in another --out-dir")
    resumed = {**vars(args), **saved}  # a flag newer than the saved loop keeps its default
    resumed.update(out_dir=args.out_dir, resume=True, overwrite=False, discard_human_labels=False,
                   **{key: getattr(args, key) for key in OPERATIONAL})
    if saved["db"] == os.path.join(saved["out_dir"], "preferences.db"):  # the default follows the folder
        resumed["db"] = os.path.join(args.out_dir, "preferences.db")
    return argparse.Namespace(**resumed)


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
    print(f"  {n} queries waiting in {path}: answer them with `python labeling/label_preferences.py --db {path}`; Ctrl+C stops"
          f" the loop and `python rlhf_loop.py --resume --out-dir {args.out_dir}` goes on, every answer kept", flush=True)
    bar = tqdm(total=n, desc="  answered", unit="label", disable=not args.progress, dynamic_ncols=True)
    while True:
        counts = db.count_by_status(path, batch)
        bar.update(n - counts["pending"] - bar.n)
        if counts["pending"] == 0:
            bar.close()
            return time.time() - start
        time.sleep(args.poll_seconds)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def lock_out_dir(out_dir):
    """An exclusive lock on the loop's folder for as long as this process lives (the OS drops it
    when the process dies, however it dies): two loops on one folder would ask people twice."""
    lock = open(os.path.join(out_dir, "loop.lock"), "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        raise db.PreferencesDBError(f"another rlhf_loop.py (pid {lock.read().strip() or '?'}) is running on {out_dir};"
                                    " let it finish or stop it first") from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def queries_batch(path, seed, since):
    """The generator batch of the DB written with this seed (a round's queries) since the loop
    began (``since``, ISO 8601 UTC, None: any time; an earlier loop with the same seed wrote the same
    seeds), or None."""
    if not os.path.exists(path):
        return None
    found = [run["batch"] for run in db.read_metadata(path)["generator_runs"] if run.get("seed") == seed
             and (since is None or datetime.fromisoformat(run["created_at"]) >= datetime.fromisoformat(since))]
    return found[-1] if found else None


def clear_partial(paths, log, runs=None):
    """Before a stage runs (again): the temporary files of saves it did not finish (checkpoints and
    db.py write ``<file>.tmp-*`` and rename), and its earlier TensorBoard runs, which a run cut
    short leaves behind and a finished one would duplicate."""
    for path in [tmp for stage_file in paths for tmp in glob.glob(f"{glob.escape(stage_file)}.tmp-*")] + (glob.glob(runs) if runs else []):
        print(f"# removed {path}: left by a stage that did not finish", file=log, flush=True)
        (shutil.rmtree if os.path.isdir(path) else os.remove)(path)


def _score(record, policy):
    """A round's agent figure: the normalized return on the moving dot, the true return elsewhere
    (records written before other envs have no true return)."""
    normalized = record.get(f"{policy}_normalized_return")
    return normalized if normalized is not None else record[f"{policy}_return"]


def add_scalars(writer, record):
    for key in ("greedy_normalized_return", "sampled_normalized_return", "greedy_return", "sampled_return", "held_out_accuracy",
                "action_order_agreement", "reward_correlation", "optimal_policy_normalized_return", "global_step", "wall_seconds"):
        if record.get(key) is not None:
            writer.add_scalar(f"loop/{key}", record[key], record["labels"])


def plot(path, records, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["labels"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    normalized = records[0]["greedy_normalized_return"] is not None
    left.plot(labels, [_score(r, "greedy") for r in records], "o-", label="agent, greedy")
    left.plot(labels, [_score(r, "sampled") for r in records], "s--", label="agent, sampled")
    if all(r["optimal_policy_normalized_return"] is not None for r in records):
        left.plot(labels, [r["optimal_policy_normalized_return"] for r in records], "^:", label="optimal policy of the learned reward")
    if normalized:
        left.axhline(0.95, color="grey", lw=0.8)
        left.set(ylim=(min(0, *left.get_ylim()), 1.05))
    left.set(xlabel="labels used", ylabel="normalized true return" if normalized else "true return",
             title=f"{args.select} queries, segments of {args.segment_length}, seed {args.seed}")
    left.legend(loc="lower right")
    right.plot(labels, [r["held_out_accuracy"] for r in records], "o-", label="held-out accuracy (evaluation.db)")
    if normalized:
        right.plot(labels, [r["action_order_agreement"] for r in records], "s-", label="action-order agreement (whole grid)")
    right.set(xlabel="labels used", ylim=(0.4, 1.02), title="reward model")
    right.legend(loc="lower right")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(args):
    session_start = time.time()
    rounds_path = os.path.join(args.out_dir, "rounds.json")
    # the folder and the DB: new, resumed or replaced; a person's answers are never deleted unasked
    if not args.resume:
        for path, hint in ((rounds_path, "pass --resume to continue that loop, --overwrite to replace it"),
                           (args.db, "pass --overwrite to replace it")):
            if os.path.exists(path) and not args.overwrite:  # fail before any work, not after
                raise db.PreferencesDBError(f"{path} already exists; {hint}, or choose another --out-dir / --db")
        if args.overwrite and os.path.exists(args.db) and not args.discard_human_labels:
            try:
                human = db.count_human_labels(args.db)
            except db.PreferencesDBError as e:
                raise db.PreferencesDBError(f"--overwrite: cannot tell whether {args.db} holds people's answers ({e}); move it"
                                            " away yourself, or pass --discard-human-labels to replace it anyway") from None
            if human:
                raise db.PreferencesDBError(
                    f"{args.db} holds {human} human label{'s' * (human != 1)} (people's answers), which --overwrite would delete;"
                    f" continue their loop with `--resume --out-dir {args.out_dir}`, choose another --db, or pass"
                    " --discard-human-labels to delete them")
    was_loop = os.path.exists(rounds_path)  # resumed or replaced: a folder this script made
    os.makedirs(args.out_dir, exist_ok=True)
    lock = lock_out_dir(args.out_dir)  # noqa: F841  (held until the process ends)
    torch.set_num_threads(1)  # as every stage sets it: the same arithmetic whichever stage a resumed loop starts with

    # what earlier sessions of this loop finished: rounds, and the stages of the round cut short
    state = read_json(rounds_path) if args.resume else {}
    records = state.get("rounds", [])
    stages_of = {}
    for round_ in range(len(records), args.rounds + 1) if args.resume else ():
        path = os.path.join(args.out_dir, f"round_{round_}", "stages.json")
        if os.path.exists(path) and read_json(path).get("run_name") == args.run_name:  # not a replaced loop's
            stages_of[round_] = read_json(path)
    offset = max([state.get("elapsed", 0.0)] + [stages.get("elapsed", 0.0) for stages in stages_of.values()])

    def clock():  # seconds of this loop's work over all its sessions (what a stage cut short did is not counted)
        return offset + time.time() - session_start

    # when the loop began: a batch of the DB older than that is a replaced loop's, even with this loop's seeds
    started_at = state.get("started_at") if args.resume else datetime.now(UTC).isoformat(timespec="milliseconds")

    def save_state(evaluation_done):
        checkpoints.write_json(rounds_path, {"args": vars(args), "started_at": started_at, "evaluation_db": evaluation_done,
                                 "elapsed": clock(), "rounds": records})

    save_state(state.get("evaluation_db", False))
    if args.resume:
        cut = f"; round {len(records)} goes on from its last finished stage" if len(records) <= args.rounds else ""
        print(f"resuming the loop in {args.out_dir}: {len(records)} of {args.rounds + 1} rounds finished{cut}", flush=True)
    for path in glob.glob(os.path.join(glob.escape(args.out_dir), "events.out.tfevents.*")) if was_loop else ():
        os.remove(path)  # the loop's own events are rewritten from rounds.json: a killed writer may have lost its last ones
    writer = SummaryWriter(args.out_dir)
    writer.add_text("hyperparameters", cli.hyperparameters_text(args))
    env = ["--env-id", args.env_id]
    after_end = [] if args.after_end_share is None else ["--after-end-share", args.after_end_share]
    for record in records:
        add_scalars(writer, record)
    redo = ["--overwrite"] if args.overwrite or args.resume else []  # a stage (re)run replaces what an unfinished run left
    teacher = (["--oracle", "none"] if args.teacher == "human" else
               ["--oracle", args.oracle, "--teacher-gamma", args.teacher_gamma, "--teacher-eps-mistake", args.teacher_eps_mistake,
                "--teacher-eps-equal", args.teacher_eps_equal]
               + (["--teacher-beta", args.teacher_beta] if args.teacher_beta is not None else [])
               + (["--teacher-eps-skip", args.teacher_eps_skip] if args.teacher_eps_skip is not None else []))

    # the evaluation set: random-policy comparisons labeled by the true reward, outside the budget
    evaluation_db = os.path.join(args.out_dir, "evaluation.db")
    if not (state.get("evaluation_db") and os.path.exists(evaluation_db)):
        with open(os.path.join(args.out_dir, "log.txt"), "a" if args.resume else "w") as log:
            clear_partial([evaluation_db], log)
            run_stage(make_preferences_db, [str(a) for a in [
                "--seed", stage_seed(args.seed, 0, 3), "--db", evaluation_db, *env, "--segment-length", args.segment_length,
                "--oracle", args.oracle, "--n-segments", 2 * args.eval_comparisons, "--n-comparisons", args.eval_comparisons,
                "--validation-fraction", 0, *after_end, *redo]], log)
        save_state(True)
    evaluation = db.load_comparisons(evaluation_db)

    agent_path = model_path = None
    for round_ in range(args.rounds + 1):
        round_dir = os.path.join(args.out_dir, f"round_{round_}")
        previous_agent, previous_model = agent_path, model_path
        agent_path, model_path = os.path.join(round_dir, "agent.pt"), os.path.join(round_dir, "reward_model.pt")
        if round_ < len(records):  # finished in an earlier session
            continue
        os.makedirs(round_dir, exist_ok=True)
        stages_path = os.path.join(round_dir, "stages.json")
        stages = stages_of.get(round_) or {"run_name": args.run_name, "round": round_, "started": clock()}

        def done(stage, result, stages=stages, stages_path=stages_path):  # the stage is recorded as soon as its output is written
            stages[stage] = result
            stages["elapsed"] = clock()
            checkpoints.write_json(stages_path, stages)

        n = args.queries[round_]
        select = args.select if round_ > 0 else "random"
        seeds = [stage_seed(args.seed, round_, stage) for stage in range(3)]
        with open(os.path.join(round_dir, "log.txt"), "a" if args.resume else "w") as log:
            kept = [stage for stage in ("queries", "labels", "reward_model", "agent") if stage in stages]
            if args.resume:
                print(f"# resumed at {time.strftime('%Y-%m-%d %H:%M:%S')}; stages done before: {', '.join(kept) or 'none'}",
                      file=log, flush=True)
            # queries: segments of a random policy in round 0, of the current agent after; never written twice
            batch = queries_batch(args.db, seeds[0], started_at) if args.resume else None  # a replaced DB's are not this loop's
            if "queries" in stages and batch != stages["queries"]["batch"]:
                raise db.PreferencesDBError(f"{args.db} no longer holds the queries of round {round_} (batch"
                                            f" {stages['queries']['batch']}); was it replaced? Restore it to resume this loop")
            if batch is None and round_ == 0 and os.path.exists(args.db) and args.resume:
                raise db.PreferencesDBError(f"{args.db} holds none of this loop's queries: the loop stopped before it replaced"
                                            " the file; start it again with --overwrite instead of --resume")
            if batch is None:
                n_segments = 2 * n * (args.candidate_factor if select == "disagreement" else 1)
                clear_partial([args.db], log)
                run_stage(make_preferences_db, [str(a) for a in [
                    "--seed", seeds[0], "--db", args.db, *env, "--segment-length", args.segment_length,
                    "--n-segments", max(n_segments, 2), "--n-comparisons", n, "--validation-fraction", 0, *teacher, *after_end,
                    *(["--policy", previous_agent] if previous_agent else []),
                    *(["--select", "disagreement", "--reward-model", previous_model, "--candidate-factor", args.candidate_factor]
                      if select == "disagreement" else []),
                    *(["--append"] if round_ > 0 else ["--overwrite"] if args.overwrite else []),
                    *(["--discard-human-labels"] if round_ == 0 and args.discard_human_labels else [])]], log)
                batch = queries_batch(args.db, seeds[0], started_at)
            elif "queries" not in stages:
                print(f"# the queries of round {round_} were written before the loop stopped (batch {batch}): kept",
                      file=log, flush=True)
            if "queries" not in stages:
                done("queries", {"batch": batch, "n": n, "select": select})

            # labels: written by the synthetic teacher already, or by people on the labeling page
            print(f"round {round_}/{args.rounds}: {n} queries on {'a random policy' if previous_agent is None else 'the agent'}'s"
                  f" segments ({select})" + (f"; resumed, kept: {', '.join(kept)}" if kept else ""), flush=True)
            if "labels" not in stages:
                done("labels", {"wait_seconds": wait_for_labels(args.db, batch, n, args) if args.teacher == "human" else 0.0})

            # reward model: every label so far, from the previous round's weights
            if not ("reward_model" in stages and os.path.exists(model_path)):
                clear_partial([model_path], log, os.path.join(glob.escape(round_dir), f"{args.env_id}__train_reward_model__{seeds[1]}__*"))
                reward_summary = run_stage(train_reward_model, [str(a) for a in [
                    "--seed", seeds[1], "--db", args.db, "--out", model_path, "--run-dir", round_dir, *env,
                    "--ensemble-size", args.ensemble_size, "--max-steps", args.reward_max_steps, "--eval-every", args.reward_max_steps,
                    "--batch-size", args.reward_batch_size, "--learning-rate", args.reward_learning_rate, "--no-anneal-lr",
                    "--no-progress", *redo, *(["--no-plot"] if round_ < args.rounds else []),  # the figure of the last round only
                    *(["--init", previous_model] if previous_model else [])]], log)
                # the trainer scores the learned reward's optimal policy as PPO's default transform uses it
                optimal_key = "optimal_policy_normalized_return" if args.reward_transform == rm.TRANSFORMS[0] else None
                done("reward_model", {
                    "labeled": reward_summary["n_train"] + reward_summary["n_validation"],
                    "held_out_accuracy": rm.comparison_accuracy(rm.load(model_path), evaluation),
                    "action_order_agreement": reward_summary.get("action_order_agreement"),  # the moving dot's exact scores
                    "reward_correlation": reward_summary["reward_correlation"],
                    "optimal_policy_normalized_return": reward_summary.get(optimal_key) if optimal_key else None})

            # agent: further on the new reward model, from the previous round's agent
            if not ("agent" in stages and os.path.exists(agent_path)):
                clear_partial([agent_path], log, os.path.join(glob.escape(round_dir), f"{args.env_id}__ppo_rlhf__{seeds[2]}__*"))
                ppo_summary = run_stage(ppo_rlhf, [str(a) for a in [
                    "--seed", seeds[2], "--reward-model", model_path, "--save-path", agent_path, *env,
                    "--run-dir", round_dir, "--preset", args.preset, "--rlhf", "--reward-transform", args.reward_transform,
                    "--total-timesteps", args.ppo_steps, "--eval-episodes", args.eval_episodes, "--no-progress", *redo,
                    *(["--resume", previous_agent] if previous_agent else [])]], log)
                done("agent", {"global_step": ppo_summary["global_step"],
                               "greedy_normalized_return": ppo_summary["greedy"].get("normalized_return"),  # the moving dot's
                               "sampled_normalized_return": ppo_summary["sampled"].get("normalized_return"),
                               "greedy_return": ppo_summary["greedy"]["true_return"],
                               "sampled_return": ppo_summary["sampled"]["true_return"]})

        # log the round
        record = {"round": round_, "queries": n, "labels": sum(args.queries[:round_ + 1]), "select": select,
                  **stages["reward_model"], **stages["agent"], "wait_seconds": stages["labels"]["wait_seconds"],
                  "round_seconds": clock() - stages["started"], "wall_seconds": clock()}
        records.append(record)
        add_scalars(writer, record)
        save_state(True)
        optimal, agreement = record["optimal_policy_normalized_return"], record["action_order_agreement"]
        greedy, sampled = _score(record, "greedy"), _score(record, "sampled")
        print(f"  {record['labels']} labels: held-out accuracy {record['held_out_accuracy']:.3f}"
              + (f", action-order agreement {agreement:.3f}" if agreement is not None else "")
              + (f", optimal policy of the learned reward {optimal:.3f}" if optimal is not None else "")
              + f"; agent at {record['global_step']} steps: greedy {greedy:.3f},"
              f" sampled {sampled:.3f} ({record['round_seconds']:.1f} s)", flush=True)

    # the label-efficiency figure
    writer.close()
    plot(os.path.join(args.out_dir, "label_efficiency.png"), records, args)
    print(f"{records[-1]['labels']} labels, {records[-1]['global_step']} PPO steps in {clock():.1f} s: greedy"
          f" {'normalized ' if records[-1]['greedy_normalized_return'] is not None else ''}return"
          f" {_score(records[-1], 'greedy'):.3f}; wrote {args.db}, {rounds_path} and {args.out_dir}/label_efficiency.png")
    return records


if __name__ == "__main__":
    gc.freeze()  # the imports' objects (torch's are many) skip every collection, the exit's too (docs/performance.md)
    args = parse_args()
    try:
        main(args)
    except KeyboardInterrupt:
        print(f"\nrlhf_loop.py: stopped; the finished stages and every answer are kept: go on with"
              f" `python rlhf_loop.py --resume --out-dir {args.out_dir}`", file=sys.stderr)
        sys.exit(130)
    except (db.PreferencesDBError, rm.RewardModelError, agent_lib.AgentFileError, make_preferences_db.InputFileError, StageError) as e:
        sys.exit(f"rlhf_loop.py: error: {e}")
