"""Stage 1: sample trajectory segments, compare pairs of them, store the comparisons.

    python make_preferences_db.py --db preferences.db --n-comparisons 10000 --segment-length 1

Writes an SQLite preferences DB (layout in db.py and the README). A segment of length k is
(o_0, a_0), ..., (o_{k-1}, a_{k-1}) plus the observation o_k after the last action.
Segments of length 1 are drawn uniformly over positions and actions, as in the original
write-up; longer ones are rollouts of a uniformly random policy in the vectorized env, each
starting from the env's own start distribution (uniform over positions). With `--policy
agent.pt` they are cut from rollouts of a trained PPO agent's sampled actions instead, each
starting at a random step of its episode (C17's loop asks about the agent's own behaviour).

Pairs are compared by a synthetic oracle (`--oracle distance`: the write-up's heuristic,
prefer the segment that brought the dot closer to the centre, d(o_0) - d(o_k); `--oracle
reward`: the sum of true env rewards, C17's synthetic labels) seen through a simulated
teacher with B-Pref's knobs (Lee et al. 2021), or stored unlabeled (`--oracle none`) as
queries for a human. Held-out comparisons (`--validation-fraction`) use their own pool of
segments, so held-out accuracy measures generalisation to unseen segments.

Which pairs are asked about: `--select random` (uniform pairs), or `--select disagreement`
with `--reward-model`: draw `--candidate-factor` times more pairs than needed and keep those
where the members of the model's ensemble disagree most about which segment is better, the
variance over members of P(1 > 2) = sigmoid(R1 - R2) (C17 2.2.4). `--append` adds the new
queries to an existing DB as a new batch, as an RLHF loop does once per round.

    python make_preferences_db.py --db prefs.db --append --segment-length 25 --policy agent.pt --select disagreement --reward-model rm.pt
"""

import argparse
import os
import sys
import time

import numpy as np

import cli
import db
import moving_dot as md


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Sample segments, compare pairs, store the preferences in SQLite.")
    p.add_argument("--seed", type=int, default=1, help="seed of every random draw")
    p.add_argument("--db", default="preferences.db", help="the preferences DB to write (write-up: preferences.db)")
    p.add_argument("--policy", default=None, help="agent file (ppo_rlhf.py): cut segments from its sampled rollouts (default: random policy)")
    p.add_argument("--reward-model", default=None, help="with --select disagreement: a model file with an ensemble of >= 2 members")
    p.add_argument("--n-segments", type=cli.positive_int, default=10000, help="segments to sample (write-up: 10000)")
    p.add_argument("--n-comparisons", type=cli.positive_int, default=10000, help="pairs to compare (write-up: 10000)")
    p.add_argument("--segment-length", type=cli.positive_int, default=1, help="steps per segment, k (write-up: 1; C17: 25)")
    p.add_argument("--oracle", choices=("distance", "reward", "none"), default="distance",
                   help="who labels: distance moved toward the centre (write-up), true reward sum (C17), none (queries for a human)")
    p.add_argument("--teacher-beta", type=cli.positive_float, default=None,
                   help="stochastic teacher: P(1 > 2) = sigmoid(beta (R1 - R2)); default: perfectly rational")
    p.add_argument("--teacher-gamma", type=cli.discount, default=1.0, help="myopic teacher: step t weighs gamma^(k-1-t) (default 1: not myopic)")
    p.add_argument("--teacher-eps-mistake", type=cli.probability, default=0.0, help="flip a strict answer with this probability")
    p.add_argument("--teacher-eps-skip", type=cli.finite_float, default=None, help="answer 'incomparable' when both segments score below this (default: never)")
    p.add_argument("--teacher-eps-equal", type=cli.nonnegative_float, default=0.0, help="answer 'equal' when |R1 - R2| <= this (0: exact ties only)")
    p.add_argument("--validation-fraction", type=cli.fraction_below_one, default=0.1, help="share of segments and comparisons held out for validation")
    p.add_argument("--max-start-step", type=cli.positive_int, default=200,
                   help="with --policy: a segment begins at a uniform step in [0, this) of its episode (default 200:"
                        " past the longest way to the centre, 177 steps, so that the approach and the stay both appear)")
    p.add_argument("--select", choices=("random", "disagreement"), default="random",
                   help="which pairs to ask about: uniform, or where the --reward-model ensemble disagrees most (C17 2.2.4)")
    p.add_argument("--candidate-factor", type=cli.positive_int, default=10,
                   help="with --select disagreement: candidate pairs per pair kept (B-Pref: 10; C17 gives no number)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing DB (one with human labels: see the next flag)")
    mode.add_argument("--append", action="store_true", help="add to an existing DB (same segment length)")
    p.add_argument("--discard-human-labels", action="store_true",
                   help="with --overwrite: replace the DB even though it holds people's answers (they are lost)")
    args = p.parse_args(argv)
    if args.discard_human_labels and not args.overwrite:
        p.error("--discard-human-labels only goes with --overwrite")
    if args.segment_length > md.MAX_EPISODE_STEPS:
        p.error(f"--segment-length {args.segment_length} is longer than an episode ({md.MAX_EPISODE_STEPS} steps)")
    if args.policy and args.max_start_step + args.segment_length > md.MAX_EPISODE_STEPS:
        p.error(f"--max-start-step {args.max_start_step} + --segment-length {args.segment_length} is longer than an episode"
                f" ({md.MAX_EPISODE_STEPS} steps); lower --max-start-step")
    if (args.select == "disagreement") != (args.reward_model is not None):
        p.error("--select disagreement needs --reward-model (an ensemble), and --reward-model is only used by it")
    args.n_val_segments = round(args.validation_fraction * args.n_segments)
    args.n_val_comparisons = round(args.validation_fraction * args.n_comparisons)
    if args.n_segments - args.n_val_segments < 2 or (args.n_val_comparisons > 0 and args.n_val_segments < 2):
        p.error(f"--n-segments {args.n_segments} leaves fewer than 2 segments in a split; use more segments or another --validation-fraction")
    return args


def sample_segments(n, k, seed, rng):
    """States (n, k + 1) and actions (n, k) of n segments of length k."""
    if k == 1:  # the write-up's way: a uniform position and a uniform action
        states = rng.integers(md.N_STATES, size=n)
        actions = rng.integers(md.N_ACTIONS, size=(n, 1))
        return np.stack([states, md.NEXT_STATE[states, actions[:, 0]]], 1), actions
    envs = md.MovingDotVectorEnv(num_envs=n, max_episode_steps=k + 1)  # no reset inside a segment
    obs, _ = envs.reset(seed=seed)
    observations, actions = [obs], rng.integers(md.N_ACTIONS, size=(n, k))
    for t in range(k):  # a loop over time; the n rollouts step together
        obs, *_ = envs.step(actions[:, t])
        observations.append(obs)
    return md.position_to_state(np.stack(observations, 1).astype(np.int64)), actions


def sample_policy_segments(n, k, seed, rng, policy, max_start_step):
    """States (n, k + 1) and actions (n, k) of n segments of length k cut from rollouts of a
    PPO agent's sampled actions: each rollout starts from the env's start distribution and the
    segment begins at a uniform step in [0, max_start_step), so that a good agent's segments
    show both its way to the centre and its stay there. The n rollouts step together."""
    starts = rng.integers(max_start_step, size=n)
    horizon = int(starts.max()) + k
    envs = md.MovingDotVectorEnv(num_envs=n, max_episode_steps=horizon + 1)  # no reset inside a rollout
    obs, _ = envs.reset(seed=seed)
    observations, actions = [obs], np.zeros((n, horizon), dtype=np.int64)
    for t in range(horizon):
        logits, _ = policy(obs)
        actions[:, t] = (logits - np.log(-np.log(rng.random(logits.shape)))).argmax(1)  # Gumbel-max: a sample of softmax(logits)
        obs, *_ = envs.step(actions[:, t])
        observations.append(obs)
    states = md.position_to_state(np.stack(observations, 1).astype(np.int64))
    window = starts[:, None] + np.arange(k + 1)
    return np.take_along_axis(states, window, 1), np.take_along_axis(actions, window[:, :k], 1)


class InputFileError(Exception):
    """A --policy or --reward-model file that cannot be used; the message names the file."""


def load_policy(path):
    """The agent's rollout policy, obs (N, 2) -> (logits, values), in numpy."""
    import agent as agent_lib  # torch only when asked for: the plain generator starts in 0.2 s instead of 2 s
    try:
        return agent_lib.load(path)[0].numpy_policy()
    except agent_lib.AgentFileError as e:
        raise InputFileError(f"--policy: {e}") from None


def load_ensemble(path):
    import reward_model as rm  # as above
    try:
        model = rm.load(path)
    except rm.RewardModelError as e:
        raise InputFileError(f"--reward-model: {e}") from None
    if model.ensemble_size < 2:
        raise InputFileError(f"--reward-model {path} has one member, and one member cannot disagree with itself;"
                             " train one with `python train_reward_model.py --ensemble-size 3`")
    return model


def disagreement(model, states, actions):
    """C17 2.2.4: for pairs (n, 2) of these segments, the variance over the ensemble members of
    P(1 > 2) = sigmoid(R1 - R2). Each segment's return is computed once, for every member."""
    import torch  # as above

    import reward_model as rm
    with torch.no_grad():
        returns = rm.segment_returns(model, model.segment_inputs(md.OBS_TABLE[states], actions)).cpu().double().numpy()  # (E, S)

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


def oracle_scores(states, actions, oracle, gamma):
    """Per-segment score of the oracle, each step weighted gamma^(k-1-t) (B-Pref's myopia)."""
    k = actions.shape[1]
    if oracle == "distance" and gamma == 1.0:
        return md.DISTANCE[states[:, 0]] - md.DISTANCE[states[:, -1]]  # exact, so ties stay ties
    if oracle == "distance":
        per_step = md.DISTANCE[states[:, :-1]] - md.DISTANCE[states[:, 1:]]
    else:
        per_step = md.TRUE_REWARD[states[:, :-1], actions]
    return per_step @ (gamma ** np.arange(k - 1, -1, -1))


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
    rng = np.random.default_rng(args.seed)
    k = args.segment_length
    if os.path.exists(args.db) and not (args.overwrite or args.append):  # say so before the work, not after
        raise db.PreferencesDBError(f"{args.db} already exists; pass --overwrite to replace it or --append to add to it")
    if args.overwrite and os.path.exists(args.db) and not args.discard_human_labels:  # people's answers are never lost unasked
        try:
            human = db.count_human_labels(args.db)
        except db.PreferencesDBError:
            human = 0  # not a preferences DB: nobody's answers are in it
        if human:
            raise db.PreferencesDBError(f"{args.db} holds {human} human label{'s' * (human != 1)} (people's answers), which --overwrite"
                                        " would delete; --append adds to it, another --db keeps it, --discard-human-labels deletes them")

    policy = load_policy(args.policy) if args.policy else None  # bad files fail here, before any work
    ensemble = load_ensemble(args.reward_model) if args.select == "disagreement" else None

    # segments: the first n_train are the training pool, the rest are held out
    if policy is None:
        states, actions = sample_segments(args.n_segments, k, args.seed, rng)
    else:
        states, actions = sample_policy_segments(args.n_segments, k, args.seed, rng, policy, args.max_start_step)
    n_train_segments = args.n_segments - args.n_val_segments
    n_train = args.n_comparisons - args.n_val_comparisons
    pools = ((n_train, 0, n_train_segments), (args.n_val_comparisons, n_train_segments, args.n_segments))
    selection = {}
    if ensemble is None:
        pairs = np.concatenate([sample_pairs(n, first, last, rng) for n, first, last in pools])
    else:  # each split chooses from its own pool the same way, so that held-out pairs are like training ones
        score = disagreement(ensemble, states, actions)
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
        scores = oracle_scores(states, actions, args.oracle, args.teacher_gamma)
        status, mu1 = teacher_labels(scores[pairs[:, 0]], scores[pairs[:, 1]], args, rng)

    # store
    run_info = {"script": "make_preferences_db.py", "seed": args.seed, "args": {key: value for key, value in vars(args).items()},
                **({"selection": selection} if selection else {})}
    mode = "append" if args.append else "overwrite" if args.overwrite else "create"
    db.write_generation(args.db, mode, env_params=md.ENV_PARAMS, run_info=run_info, obs=md.POSITIONS[states],
                        actions=actions, source="policy" if policy else "uniform" if k == 1 else "random_policy", pairs=pairs,
                        validation=validation, status=status, mu1=mu1,
                        labeler=None if args.oracle == "none" else f"oracle:{args.oracle}")

    # summary
    counts = db.count_by_label(args.db)
    print(f"wrote {args.n_segments} segments of length {k} and {args.n_comparisons} comparisons to {args.db} "
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
    except (db.PreferencesDBError, InputFileError) as e:
        sys.exit(f"make_preferences_db.py: error: {e}")
