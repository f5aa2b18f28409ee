"""The exact optimal policy of a reward on the moving-dot grid, and its true return.

The field has 202 x 152 positions and 5 deterministic moves, so the policy that a reward
r(s, a), learned or true, asks for can be computed exactly by value iteration over every
state at once, with no RL and no sampling noise. Rolling that policy out on the true env
says whether the reward, optimized perfectly, produces the behaviour we want: a learned
reward can order the actions at every position well and still pay more for stepping back
and forth than for reaching the centre (docs/results.md, "Judging a learned reward").

Shared by train_reward_model.py (which reports it for every model) and the benchmarks.
"""

from __future__ import annotations

import numpy as np

from rlhf import moving_dot as md

_NEXT_T = np.ascontiguousarray(md.NEXT_STATE.T)  # (N_ACTIONS, N_STATES)


def value_iteration(reward, gamma=0.99, horizon=None, tol=1e-6, max_iterations=20_000):
    """Optimal action per state of ``reward`` (N_STATES, N_ACTIONS) under the env's moves.

    ``horizon=None``: the discounted, infinite-horizon problem PPO solves (gamma as PPO's),
    iterated until no value changes by more than ``tol``; returns (N_STATES,) actions.
    ``horizon=H``: the exact H-step episode return (gamma applies per step, 1.0 for the
    undiscounted episode return); returns (H, N_STATES) actions, row t for step t.
    Returns (actions, values of the start of the episode or of the fixed point).
    """
    # actions on the first axis: numpy reduces over 5 rows of 30,704 far faster than over 30,704 rows of 5
    reward = np.ascontiguousarray(np.asarray(reward, dtype=np.float64).T)
    values = np.zeros(md.N_STATES)
    if horizon is None:
        for _ in range(max_iterations):
            new_values = (reward + gamma * values[_NEXT_T]).max(0)  # every state and action at once
            converged = np.abs(new_values - values).max() < tol
            values = new_values
            if converged:
                break
        else:
            raise RuntimeError(f"value iteration did not converge in {max_iterations} iterations (gamma {gamma})")
        return (reward + gamma * values[_NEXT_T]).argmax(0), values
    policy = np.empty((horizon, md.N_STATES), dtype=np.int8)
    for t in reversed(range(horizon)):  # backwards from the last step: values = best return of steps t..H-1
        q = reward + gamma * values[_NEXT_T]
        policy[t] = q.argmax(0)
        values = np.take_along_axis(q, policy[t][None].astype(np.intp), 0)[0]
    return policy, values


def true_returns(policy, starts=None, steps=md.MAX_EPISODE_STEPS):
    """True env return of a deterministic policy (from value_iteration) over one episode from
    each start state; ``starts`` default: every position, the env's uniform start distribution."""
    states = np.arange(md.N_STATES) if starts is None else np.asarray(starts)
    if policy.ndim == 1:
        # a stationary policy: jump by doubling (2^j steps' next state and return), log2(steps) gathers
        flat = np.arange(md.N_STATES) * md.N_ACTIONS + policy
        jump, gain, total = md.NEXT_STATE.ravel()[flat], md.TRUE_REWARD.ravel()[flat].astype(np.int64), np.zeros(len(states), np.int64)
        while steps:
            if steps & 1:
                total += gain[states]
                states = jump[states]
            gain, jump, steps = gain + gain[jump], jump[jump], steps >> 1
        return total.astype(np.float64)
    total = np.zeros(len(states))
    reward, next_state = md.TRUE_REWARD.ravel(), md.NEXT_STATE.ravel()
    for t in range(steps):  # a policy per step: a loop over time; every start moves at once
        flat = states * md.N_ACTIONS + policy[t, states]
        total += reward[flat]
        states = next_state[flat]
    return total


def optimal_policy_range(reward, gamma=0.99, ties=1e-3, steps=md.MAX_EPISODE_STEPS, values=None):
    """Normalized true return (over every start) of the worst and of the best policy among the
    optimal ones of ``reward``: every action whose discounted Q-value is within ``ties`` of the
    best counts as optimal (value iteration stops within about 1e-4 of the fixed point).

    A clipped learned reward ties often (every move worth >= 1 pays exactly 1), and then the
    argmax policy's return is luck: PPO may settle on any optimal policy, the worst one
    included. Exact: backward induction of the true return over ``steps``, minimizing
    (maximizing) over the optimal actions at every state. ``values``: the fixed point of
    ``value_iteration(reward, gamma)``, when the caller has it already.
    """
    if values is None:
        _, values = value_iteration(reward, gamma)
    q = np.asarray(reward, dtype=np.float64).T + gamma * values[_NEXT_T]
    optimal = q >= q.max(0) - ties
    true_reward = md.TRUE_REWARD.T.astype(np.float64)
    # an action outside the optimal set is worth +inf to the minimum and -inf to the maximum
    reward_for_worst, reward_for_best = np.where(optimal, true_reward, np.inf), np.where(optimal, true_reward, -np.inf)
    worst = _finite_horizon_value(reward_for_worst, steps, np.min)
    best = _finite_horizon_value(reward_for_best, steps, np.max)
    return md.normalized_return(worst, md.MANHATTAN), md.normalized_return(best, md.MANHATTAN)


def _finite_horizon_value(reward, steps, reduce, max_period=2):
    """The ``steps``-step return V = reduce_a (reward[a] + V'[next[a]]) by backward induction,
    stopping early, exactly, once V_t - V_{t-p} is one constant c for a period p <= max_period:
    the update commutes with adding a constant, so from then on every p more steps add c."""
    history = [np.zeros(md.N_STATES)]
    for t in range(1, steps + 1):
        history.append(reduce(reward + history[-1][_NEXT_T], axis=0))
        for p in range(1, min(max_period, t) + 1):
            shift = history[-1] - history[-1 - p]
            if shift.min() == shift.max():  # V_{t+kp+j} = V_{t-p+j} + (k+1) c from here on
                repeats, rest = divmod(steps - t, p)
                return history[-1 - p + rest] + (repeats + 1) * shift[0]
        del history[:-max_period - 1]
    return history[-1]


def _smallest_margin(reward, gamma, values):
    """min over states of Q(best right move) - Q(best mistake): how much the reward, optimized,
    prefers a right move where it prefers it least (negative: a mistake is optimal). The right
    moves are the true reward's best: a step that shortens the Manhattan way to the centre, or
    staying there."""
    q = np.asarray(reward, dtype=np.float64).T + gamma * values[_NEXT_T]
    mistake = md.TRUE_REWARD.T < md.TRUE_REWARD.T.max(0)
    return float((np.where(mistake, -np.inf, q).max(0) - np.where(mistake, q, -np.inf).max(0)).min())


def action_margin(reward, gamma=0.99, values=None):
    """``_smallest_margin`` of ``reward`` over that of the true reward, each in units of its std over
    the grid (a shift changes no margin): 1 is the true reward's own margin, one step's worth of
    discounting at the centre. ``optimal_policy_range`` sees a mistake only once its
    Q-value comes within ``ties``; this says how far each learned reward is from that (a few
    percent of the true margin puts a jitter at the centre within float noise of optimal)."""
    if values is None:
        _, values = value_iteration(reward, gamma)
    return float(_smallest_margin(reward, gamma, values) / np.std(reward, dtype=np.float64) / _true_margin(gamma))


def _true_margin(gamma):
    """``_smallest_margin`` of the normalized true reward. Its optimal policy is known (every
    argmax of the true reward: the shortest way, then staying), so its values come from
    discounted doubling (2^12 steps, past float precision) instead of value iteration."""
    true = (md.TRUE_REWARD - md.TRUE_REWARD.mean()) / md.TRUE_REWARD.std()
    states, policy = np.arange(md.N_STATES), md.TRUE_REWARD.argmax(1)
    gain, jump, discount = true[states, policy], md.NEXT_STATE[states, policy], gamma
    for _ in range(12):  # gain: the discounted return of 2^k steps from each state; jump: where they end
        gain, jump, discount = gain + discount * gain[jump], jump[jump], discount * discount
    return _smallest_margin(true, gamma, gain)


def reward_scores(reward, gamma=0.99):
    """The exact figures of a reward (N_STATES, N_ACTIONS) as PPO would optimize it: the
    normalized true return of its argmax optimal policy and of the worst and best of its tied
    optimal policies, its action margin, with the argmax policy (for plots). Value iteration
    runs once (the true reward's margin comes from its known policy)."""
    policy, values = value_iteration(reward, gamma)
    worst, best = optimal_policy_range(reward, gamma, values=values)
    return {"argmax": md.normalized_return(true_returns(policy), md.MANHATTAN), "worst": worst, "best": best,
            "margin": action_margin(reward, gamma, values)}, policy
