"""Stage 1: sample trajectory segments, compare pairs of them, store the comparisons.

    python make_preferences_db.py --db preferences.db --n-comparisons 10000 --segment-length 1

    python make_preferences_db.py --env-id MountainCar-v0 --db mountain_car.db    # any gymnasium env (envs.py)

Writes an SQLite preferences DB (layout in db.py and docs/file_formats.md). A segment of length k is
(o_0, a_0), ..., (o_{k-1}, a_{k-1}) plus the observation o_k after the last action.
On the moving dot, segments of length 1 are drawn uniformly over positions and actions, as in
the original write-up. Otherwise they are cut from rollouts of a uniformly random policy, or with
`--policy agent.pt` of a trained PPO agent's sampled actions (C17's loop asks about the agent's
own behaviour), all episodes stepped together in the vectorized env, each segment starting at a
uniform step of its episode (below --max-start-step and before the episode ends). An episode
that terminates inside a segment leaves the segment in the terminal observation with reward 0
for the steps that remain (db.py: absorbing steps), so that every segment has the same length.
Each segment keeps its episode's reset seed and actions, so that it can be replayed and rendered
for a person (label_preferences.py).

Pairs are compared by a synthetic oracle (envs.ORACLES: `--oracle reward`, the sum of true env
rewards, C17's synthetic labels, on any env; `--oracle distance` on the moving dot, the write-up's
heuristic, prefer the segment that brought the dot closer to the centre, d(o_0) - d(o_k); `--oracle
height` on Mountain Car, where the env's -1 a step ties nearly every pair) seen through a simulated
teacher with B-Pref's knobs (Lee et al. 2021), or stored unlabeled (`--oracle none`) as
queries for a human. Held-out comparisons (`--validation-fraction`) use their own pool of
segments, so held-out accuracy measures generalisation to unseen segments.

Which pairs are asked about: `--select random` (uniform pairs), or `--select disagreement`
with `--reward-model`: draw `--candidate-factor` times more pairs than needed and keep those
where the members of the model's ensemble disagree most about which segment is better, the
variance over members of P(1 > 2) = sigmoid(R1 - R2) (C17 2.2.4). `--append` adds the new
queries to an existing DB as a new batch, as an RLHF loop does once per round.

    python make_preferences_db.py --db prefs.db --append --segment-length 25 --policy agent.pt --select disagreement --reward-model rm.pt

`--migrate` rewrites a schema-version-1 DB (made before other envs) as version 2, keeping every label.
"""

import argparse
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from rlhf import cli, db, envs
from rlhf import moving_dot as md  # the write-up's single steps, drawn from the dot's tables


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Sample segments, compare pairs, store the preferences in SQLite.")
    p.add_argument("--seed", type=int, default=1, help="seed of every random draw")
    p.add_argument("--db", default="preferences.db", help="the preferences DB to write (write-up: preferences.db)")
    p.add_argument("--policy", default=None, help="agent file (ppo_rlhf.py): cut segments from its sampled rollouts (default: random policy)")
    p.add_argument("--reward-model", default=None, help="with --select disagreement: a model file with an ensemble of >= 2 members")
    p.add_argument("--env-id", default=envs.DEFAULT_ENV_ID, help="the gymnasium env (envs.py: supported envs, your own as module:Env-v0)")
    p.add_argument("--n-segments", type=cli.positive_int, default=10000, help="segments to sample (write-up: 10000)")
    p.add_argument("--n-comparisons", type=cli.positive_int, default=10000, help="pairs to compare (write-up: 10000)")
    p.add_argument("--segment-length", type=cli.positive_int, default=1, help="steps per segment, k (write-up: 1; C17: 25)")
    p.add_argument("--oracle", default=None,
                   help="who labels: reward (true reward sum, C17; any env), distance (the dot: distance moved toward the centre,"
                        " the write-up's), height (Mountain Car), none (queries for a human); default: the env's (envs.DEFAULT_ORACLE)")
    p.add_argument("--teacher-beta", type=cli.positive_float, default=None,
                   help="stochastic teacher: P(1 > 2) = sigmoid(beta (R1 - R2)); default: perfectly rational")
    p.add_argument("--teacher-gamma", type=cli.discount, default=1.0, help="myopic teacher: step t weighs gamma^(k-1-t) (default 1: not myopic)")
    p.add_argument("--teacher-eps-mistake", type=cli.probability, default=0.0, help="flip a strict answer with this probability")
    p.add_argument("--teacher-eps-skip", type=cli.finite_float, default=None, help="answer 'incomparable' when both segments score below this (default: never)")
    p.add_argument("--teacher-eps-equal", type=cli.nonnegative_float, default=0.0, help="answer 'equal' when |R1 - R2| <= this (0: exact ties only)")
    p.add_argument("--validation-fraction", type=cli.fraction_below_one, default=0.1, help="share of segments and comparisons held out for validation")
    p.add_argument("--max-start-step", type=cli.positive_int, default=None,
                   help="a rolled-out segment begins at a uniform step in [0, this) of its episode (default: the whole episode;"
                        " on the moving dot 200 with --policy, past the longest way to the centre, 177 steps, and 1 without:"
                        " its starts are already uniform over positions)")
    p.add_argument("--after-end-share", type=cli.fraction_below_one, default=0.0,
                   help="share of the rolled-out segments cut after their episode terminated (absorbing steps only): clips that ask"
                        " whether having ended beats what a live clip does (LunarLander: hovering)")
    p.add_argument("--select", choices=("random", "disagreement"), default="random",
                   help="which pairs to ask about: uniform, or where the --reward-model ensemble disagrees most (C17 2.2.4)")
    p.add_argument("--candidate-factor", type=cli.positive_int, default=10,
                   help="with --select disagreement: candidate pairs per pair kept (B-Pref: 10; C17 gives no number)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing DB (one with human labels: see the next flag)")
    mode.add_argument("--append", action="store_true", help="add to an existing DB (same env and segment length)")
    mode.add_argument("--migrate", action="store_true", help="rewrite a schema-version-1 --db as version 2, keeping every label, and stop")
    p.add_argument("--discard-human-labels", action="store_true",
                   help="with --overwrite: replace the DB even though it holds people's answers (they are lost)")
    args_spec = cli.env_spec_with_defaults(p, argv, "make_preferences_db")
    args = p.parse_args(argv)
    args.spec = args_spec
    if args.migrate:
        return args
    oracles = envs.oracle_names(args_spec.env_id)
    args.oracle = args.oracle or envs.DEFAULT_ORACLE.get(args_spec.registered_id, "reward")
    if args.oracle not in (*oracles, "none"):
        p.error(f"--oracle {args.oracle} is not an oracle for {args_spec.env_id}; choose from {', '.join(oracles)}, none")
    if args.discard_human_labels and not args.overwrite:
        p.error("--discard-human-labels only goes with --overwrite")
    if after_end_error(args.after_end_share, args_spec):
        p.error(after_end_error(args.after_end_share, args_spec))
    limit = args_spec.max_episode_steps
    if args.segment_length > limit:
        p.error(f"--segment-length {args.segment_length} is longer than an episode ({limit} steps)")
    if args.max_start_step is None:
        args.max_start_step = (200 if args.policy else 1) if args_spec.tabular else limit - args.segment_length + 1
    if args.max_start_step - 1 + args.segment_length > limit:
        p.error(f"--max-start-step {args.max_start_step} + --segment-length {args.segment_length} is longer than an episode"
                f" ({limit} steps); lower --max-start-step")
    if (args.select == "disagreement") != (args.reward_model is not None):
        p.error("--select disagreement needs --reward-model (an ensemble), and --reward-model is only used by it")
    args.n_val_segments = round(args.validation_fraction * args.n_segments)
    args.n_val_comparisons = round(args.validation_fraction * args.n_comparisons)
    if args.n_segments - args.n_val_segments < 2 or (args.n_val_comparisons > 0 and args.n_val_segments < 2):
        p.error(f"--n-segments {args.n_segments} leaves fewer than 2 segments in a split; use more segments or another --validation-fraction")
    return args


@dataclass
class Segments:
    """n segments of length k: observations (n, k + 1, d), actions (n, k[, d]), the env's rewards
    (n, k), absorbing (n, k) (after the episode terminated), terminal (n, k) (the step that
    terminated it), and how to replay each one (reset seeds, start steps, the episodes' actions
    up to each segment's end; None if drawn)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    absorbing: np.ndarray
    terminal: np.ndarray
    replay: tuple | None = None


def after_end_error(after_end_share, env_spec):
    """The one-line refusal of --after-end-share on an env that never terminates (the loop's check too), or None."""
    if after_end_share and env_spec.tabular:
        return f"--after-end-share {after_end_share}: the moving dot never terminates, so no segment can start after its end; drop it"
    return None


def rollout_segments(env_spec, n, k, seed, rng, max_start_step, policy=None, after_end_share=0.0):
    """n segments of length k cut from n episodes (env i reset with seed + i) of a uniformly
    random policy or of ``policy`` (an agent's numpy sampler), all stepped together: segment i
    starts at a uniform step below max_start_step and below the step its episode terminated at,
    and after a termination stays in the terminal observation with reward 0 (absorbing). With
    after_end_share, that share of the segments whose episode terminated start at its end instead."""
    starts = rng.integers(max_start_step, size=n) if max_start_step > 1 else np.zeros(n, dtype=np.int64)
    horizon = int(starts.max()) + k
    vec = envs.make_vector_env(env_spec, n, max_episode_steps=horizon + 1)  # no truncation inside the horizon
    obs, _ = vec.reset(seed=seed)
    random_actions = env_spec.random_actions(rng, (n, horizon)) if policy is None else None
    null = np.broadcast_to(np.asarray(env_spec.null_action()), random_actions.shape[2:] if policy is None else np.shape(env_spec.null_action()))
    observations, actions, rewards, absorbing = [obs], [], [], []
    absorbed = np.zeros(n, dtype=bool)
    end = np.full(n, horizon)  # the step after which each episode terminated
    for t in range(horizon):  # a loop over time; the n episodes step together, an ended one no longer
        action = random_actions[:, t] if policy is None else policy(obs, rng)
        last, reward, terminated = envs.step_running(vec, action, ~absorbed)  # no autoreset: a segment never holds a reset
        stay = absorbed[:, None]
        observations.append(np.where(stay, observations[-1], last))
        actions.append(np.where(absorbed.reshape(-1, *[1] * (np.ndim(action) - 1)), null, action))
        rewards.append(np.where(absorbed, 0.0, reward))
        absorbing.append(absorbed.copy())
        end = np.where(terminated & ~absorbed, t + 1, end)
        obs = np.where(absorbed[:, None], obs, last)
        absorbed = absorbed | terminated
        if absorbed.all():  # every episode has ended: the rest is absorbing steps, no need to step the envs
            for _ in range(t + 1, horizon):
                observations.append(observations[-1])
                actions.append(np.broadcast_to(null, actions[-1].shape))
                rewards.append(np.zeros(n))
                absorbing.append(absorbed.copy())
            break
    absorbing.append(absorbed.copy())  # after the last step: whether o_horizon is past the episode's end
    vec.close()
    observations, actions = np.stack(observations, 1).astype(np.float32), np.stack(actions, 1)
    rewards, absorbing = np.stack(rewards, 1), np.stack(absorbing, 1)
    # a start beyond the episode's end moves back into it, in proportion: uniform over the episode
    starts = np.where(end < max_start_step, starts * end // max_start_step, starts)
    if after_end_share > 0:  # these start at the episode's end: the terminal observation and absorbing steps only
        after = (rng.random(n) < after_end_share) & (end < horizon)
        starts = np.where(after, np.minimum(end, horizon - k), starts)
    window = starts[:, None] + np.arange(k + 1)
    take = lambda a, w: np.take_along_axis(a, w.reshape(*w.shape, *[1] * (a.ndim - 2)), 1)
    ended = take(absorbing, window)  # o_t past the episode's end, t = 0..k
    return Segments(take(observations, window), take(actions, window[:, :k]), take(rewards, window[:, :k]),
                    ended[:, :k], ended[:, 1:] & ~ended[:, :k],
                    replay=(seed + np.arange(n), starts, [a[:s + k] for a, s in zip(actions, starts)]))


class InputFileError(Exception):
    """A --policy or --reward-model file that cannot be used; the message names the file."""


def load_policy(path, env_spec):
    """The agent's sampled actions, (obs (N, d), rng) -> actions (N[, d]), in numpy."""
    from rlhf import agent as agent_lib  # torch only when asked for: the plain generator's start-up skips its import (docs/performance.md)
    try:
        return agent_lib.load(path, env_spec=env_spec)[0].numpy_sampler(env_spec.action_low, env_spec.action_high)  # clipped, as executed
    except (agent_lib.AgentFileError, envs.EnvError) as e:
        raise InputFileError(f"--policy: {e}") from None


def load_ensemble(path, env_spec):
    from rlhf import reward_model as rm  # as above
    try:
        model = rm.load(path, env_spec=env_spec)
    except (rm.RewardModelError, envs.EnvError) as e:
        raise InputFileError(f"--reward-model: {e}") from None
    if model.ensemble_size < 2:
        raise InputFileError(f"--reward-model {path} has one member, and one member cannot disagree with itself;"
                             " train one with `python train_reward_model.py --ensemble-size 3`")
    return model


def disagreement(model, segments):
    """C17 2.2.4: for pairs (n, 2) of these segments, the variance over the ensemble members of
    P(1 > 2) = sigmoid(R1 - R2). Each segment's return is computed once, for every member."""
    import torch  # as above

    from rlhf import reward_model as rm
    with torch.no_grad():
        returns = rm.segment_returns(model, model.segment_inputs(segments.obs, segments.actions, segments.absorbing, segments.terminal)).cpu().double().numpy()  # (E, S)

    def pair_variance(pairs):
        p1 = 0.5 * (1 + np.tanh((returns[:, pairs[:, 0]] - returns[:, pairs[:, 1]]) / 2))  # sigmoid that cannot overflow
        return p1.var(0)

    return pair_variance


def select_pairs(n, first, last, rng, score, factor):
    """The n of ``factor * n`` uniform candidate pairs of [first, last) that score highest;
    a pair drawn twice counts once (its copies go last), ties keep the order of drawing."""
    candidates = sample_pairs(n * factor, first, last, rng)
    key = np.minimum(*candidates.T) * last + np.maximum(*candidates.T)
    duplicate = np.ones(len(candidates), dtype=bool)
    duplicate[np.unique(key, return_index=True)[1]] = False
    scores = score(candidates)
    order = np.lexsort((-scores, duplicate))[:n]  # distinct pairs first, then the highest scores
    return candidates[order], scores[order], scores[~duplicate]


def teacher_labels(score1, score2, args, rng):
    """B-Pref's simulated teacher: (status, mu1) for each pair."""
    diff = score1 - score2
    if args.teacher_beta is None:
        mu1 = (diff > 0).astype(np.float64)
    else:  # Bradley-Terry answers, sampled as hard labels as B-Pref does
        p1 = 0.5 * (1 + np.tanh(args.teacher_beta * diff / 2))  # sigmoid that cannot overflow
        mu1 = (rng.random(len(diff)) < p1).astype(np.float64)
    mistake = rng.random(len(diff)) < args.teacher_eps_mistake
    mu1 = np.where(mistake, 1 - mu1, mu1)
    mu1[np.abs(diff) <= args.teacher_eps_equal] = 0.5  # ties are equal, never a silent side
    status = np.full(len(diff), "labeled", dtype=object)
    if args.teacher_eps_skip is not None:
        status[np.maximum(score1, score2) < args.teacher_eps_skip] = "incomparable"
    return status, mu1


def sample_pairs(n, first, last, rng):
    """n pairs of distinct segment indices drawn uniformly from [first, last)."""
    i = rng.integers(first, last, size=n)
    j = rng.integers(first, last - 1, size=n)
    return np.stack([i, j + (j >= i)], 1)


def main(args):
    start = time.perf_counter()
    if args.migrate:
        backup = db.migrate_v1(args.db)
        print(f"migrated {args.db} to schema version {db.SCHEMA_VERSION}, every segment and label kept; the old file is {backup}")
        return
    rng = np.random.default_rng(args.seed)
    k = args.segment_length
    db.refuse_existing(args.db, args.overwrite or args.append)  # say so before the work, not after
    if args.overwrite and os.path.exists(args.db) and not args.discard_human_labels:  # people's answers are never lost unasked
        try:
            human = db.count_human_labels(args.db)
        except db.PreferencesDBError:
            human = 0  # not a preferences DB: nobody's answers are in it
        if human:
            raise db.PreferencesDBError(f"{args.db} holds {human} human label{'s' * (human != 1)} (people's answers), which --overwrite"
                                        " would delete; --append adds to it, another --db keeps it, --discard-human-labels deletes them")

    if args.append:  # a DB made for another env fails here, before any work
        try:
            envs.check_params(db.read_metadata(args.db)["env"], args.spec, args.db, "use a new --db")
        except envs.EnvError as e:
            raise db.PreferencesDBError(str(e)) from None
    policy = load_policy(args.policy, args.spec) if args.policy else None  # bad files fail here, before any work
    ensemble = load_ensemble(args.reward_model, args.spec) if args.select == "disagreement" else None

    # segments: the first n_train are the training pool, the rest are held out
    if args.spec.tabular and k == 1 and policy is None:
        segments = Segments(*md.uniform_steps(args.n_segments, rng), *np.zeros((2, args.n_segments, 1), bool))
    else:
        segments = rollout_segments(args.spec, args.n_segments, k, args.seed, rng, args.max_start_step, policy, args.after_end_share)
    n_train_segments = args.n_segments - args.n_val_segments
    n_train = args.n_comparisons - args.n_val_comparisons
    pools = ((n_train, 0, n_train_segments), (args.n_val_comparisons, n_train_segments, args.n_segments))
    selection = {}
    if ensemble is None:
        pairs = np.concatenate([sample_pairs(n, first, last, rng) for n, first, last in pools])
    else:  # each split chooses from its own pool the same way, so that held-out pairs are like training ones
        score = disagreement(ensemble, segments)
        chosen = [select_pairs(n, first, last, rng, score, args.candidate_factor) for n, first, last in pools if n]
        pairs = np.concatenate([c[0] for c in chosen])
        selection = {"n_candidates": int(sum(len(c[2]) for c in chosen)),
                     "mean_disagreement_chosen": float(np.concatenate([c[1] for c in chosen]).mean()),
                     "mean_disagreement_candidates": float(np.concatenate([c[2] for c in chosen]).mean())}
    validation = np.arange(args.n_comparisons) >= n_train

    # labels
    if args.oracle == "none":
        status, mu1 = np.full(args.n_comparisons, "pending", dtype=object), np.full(args.n_comparisons, np.nan)
    else:
        scores = envs.segment_scores(args.oracle, args.spec.env_id, segments.obs, segments.actions, segments.rewards,
                                     segments.absorbing, args.teacher_gamma)
        status, mu1 = teacher_labels(scores[pairs[:, 0]], scores[pairs[:, 1]], args, rng)

    # store
    run_info = {"script": "make_preferences_db.py", "seed": args.seed,
                "args": cli.recorded(args),
                **({"selection": selection} if selection else {})}
    mode = "append" if args.append else "overwrite" if args.overwrite else "create"
    db.write_generation(args.db, mode, env_params=args.spec.params(), run_info=run_info, obs=segments.obs,
                        actions=segments.actions, rewards=segments.rewards, absorbing=segments.absorbing, terminal=segments.terminal, replay=segments.replay,
                        source="policy" if policy else "uniform" if segments.replay is None else "random_policy", pairs=pairs,
                        validation=validation, status=status, mu1=mu1,
                        labeler=None if args.oracle == "none" else f"oracle:{args.oracle}")

    # summary
    counts = db.count_by_label(args.db)
    print(f"wrote {args.n_segments} {args.spec.env_id} segments of length {k} and {args.n_comparisons} comparisons to {args.db} "
          f"({'appended' if args.append else 'new file'}, {time.perf_counter() - start:.2f} s)")
    if selection:
        print(f"chose the pairs of {selection['n_candidates']} distinct candidates where the ensemble disagrees most: mean variance"
              f" of P(1 > 2) {selection['mean_disagreement_chosen']:.4f} (candidates: {selection['mean_disagreement_candidates']:.4f})")
    print("the DB now holds:")
    print(f"{'split':<11}" + "".join(f"{c:>14}" for c in ("segment1", "segment2", "equal", "incomparable", "pending")))
    for split in db.SPLITS:
        print(f"{split:<11}" + "".join(f"{counts.get((split, c), 0):>14}" for c in ("segment1", "segment2", "equal", "incomparable", "pending")))


if __name__ == "__main__":
    try:
        main(parse_args())
    except (db.PreferencesDBError, InputFileError, envs.EnvError) as e:
        sys.exit(f"make_preferences_db.py: error: {e}")
