"""value_iteration.py: the exact optimal policy of a reward on the grid, and its true return."""

import numpy as np
import pytest

from rlhf import moving_dot as md
from rlhf import value_iteration as vi

AT_CENTRE = md.position_to_state(md.CENTRE)


@pytest.fixture(scope="module")
def true_policy():
    return vi.value_iteration(md.TRUE_REWARD)[0]


@pytest.fixture(scope="module")
def two_cycle():
    """The true reward's double (+2 toward, -2 away) plus +1 for crossing the vertical axis, and
    that reward clipped, with optimal_policy_range of each (two tests read them)."""
    reward = 2.0 * md.TRUE_REWARD
    x = md.POSITIONS[:, 0]
    right, left = md.ACTION_NAMES.index("right"), md.ACTION_NAMES.index("left")
    reward[x == md.CENTRE[0], right] = reward[x == md.CENTRE[0] + 1, left] = 1.0  # a 2-cycle worth 1 per step
    clipped = np.clip(reward, -1, 1)
    return {"reward": reward, "clipped": clipped, "range": {"reward": vi.optimal_policy_range(reward),
                                                            "clipped": vi.optimal_policy_range(clipped)}}


def test_true_reward_policy_is_optimal_from_every_start(true_policy):
    assert true_policy.shape == (md.N_STATES,)
    np.testing.assert_array_equal(vi.true_returns(true_policy), md.MANHATTAN)
    assert vi.reward_scores(md.TRUE_REWARD)[0]["argmax"] == 1.0


def test_true_reward_finite_horizon_policy_is_optimal_from_every_start():
    policy, values = vi.value_iteration(md.TRUE_REWARD, gamma=1.0, horizon=md.MAX_EPISODE_STEPS)
    assert policy.shape == (md.MAX_EPISODE_STEPS, md.N_STATES)
    np.testing.assert_array_equal(values, md.MANHATTAN)  # the exact episode return of the true reward
    np.testing.assert_array_equal(vi.true_returns(policy), md.MANHATTAN)


def test_true_reward_arrows_point_toward_the_centre(true_policy):
    """Every chosen move brings the dot closer (true reward +1), and the dot stays at the centre."""
    away = np.arange(md.N_STATES) != AT_CENTRE
    moved = md.POSITIONS[md.NEXT_STATE[np.arange(md.N_STATES), true_policy]]
    closer = np.abs(moved - md.CENTRE).sum(1) < md.MANHATTAN
    assert closer[away].all()
    assert true_policy[AT_CENTRE] == 0  # noop
    # the picture: above the centre the arrows point down, left of it they point right
    above = md.position_to_state([md.CENTRE[0], 20])
    left = md.position_to_state([20, md.CENTRE[1]])
    assert md.ACTION_NAMES[true_policy[above]] == "down" and md.ACTION_NAMES[true_policy[left]] == "right"


def test_a_reward_for_any_move_is_exploited_by_oscillating():
    """+1 for every move whatever its direction: the optimal policy never settles, and its true
    return is far below the optimum."""
    reward = np.ones((md.N_STATES, md.N_ACTIONS))
    reward[:, 0] = 0.0
    scores, policy = vi.reward_scores(reward)
    assert (policy != 0).all()
    assert scores["argmax"] < 0.5


def test_a_reward_that_pays_for_moving_away_gives_a_negative_return():
    scores, policy = vi.reward_scores(-md.TRUE_REWARD)
    assert scores["argmax"] < -0.5
    corners = [md.position_to_state(c) for c in ([md.X_MIN, md.Y_MIN], [md.X_MAX, md.Y_MAX])]
    assert (vi.true_returns(policy, starts=corners) == 0).all()  # from a corner, nothing to gain: it stays


def test_oscillation_far_from_the_centre_beats_reaching_it():
    """The issue's case in miniature: the reward is the true one at every position but two, yet
    a far-away loop pays more than the centre, so the optimal policy stops short of it."""
    reward = md.TRUE_REWARD.astype(np.float64).copy()
    corner = md.position_to_state([md.X_MIN, md.Y_MIN])
    beside = md.NEXT_STATE[corner, md.ACTION_NAMES.index("right")]
    reward[corner, md.ACTION_NAMES.index("right")] = 2.0  # toward the centre: a good move, paid more
    reward[beside, md.ACTION_NAMES.index("left")] = 1.0  # away from the centre: should be -1
    policy, _ = vi.value_iteration(reward)
    assert policy[beside] == md.ACTION_NAMES.index("left") and policy[corner] == md.ACTION_NAMES.index("right")
    returns = vi.true_returns(policy)
    assert returns[corner] <= 0  # it loops in the corner forever
    assert md.normalized_return(returns, md.MANHATTAN) < 1.0


def test_discount_and_convergence_guard():
    with pytest.raises(RuntimeError, match="did not converge"):
        vi.value_iteration(md.TRUE_REWARD, gamma=0.999999, max_iterations=5)
    # a constant added to every reward does not change the discounted optimal policy
    shifted, _ = vi.value_iteration(md.TRUE_REWARD + 3.0)
    np.testing.assert_array_equal(vi.true_returns(shifted), md.MANHATTAN)


def test_true_returns_from_given_starts():
    policy = np.zeros(md.N_STATES, dtype=np.int64)  # always noop: return 0
    assert (vi.true_returns(policy, starts=[0, 5, 7]) == 0).all()
    right = np.full(md.N_STATES, md.ACTION_NAMES.index("right"))
    start = md.position_to_state([md.CENTRE[0] - 10, md.CENTRE[1]])
    # 10 steps toward the centre (+10), then 95 away (-95), then stuck at the wall (0)
    assert vi.true_returns(right, starts=[start])[0] == 10 - (md.X_MAX - md.CENTRE[0])


def test_optimal_policy_range_exposes_ties_that_argmax_hides(two_cycle):
    """Clip the true reward's double (+2 toward, -2 away) and add +1 for crossing the vertical
    axis: with clipping, jittering across the axis pays 1 per step, exactly like approaching,
    so the optimal policies range from the best (reach the centre) to a bad one (jitter)."""
    assert vi.optimal_policy_range(md.TRUE_REWARD) == (1.0, 1.0)
    worst, best = two_cycle["range"]["clipped"]
    assert best == pytest.approx(1.0, abs=0.02)
    assert worst < 0.8
    # unclipped, approaching pays 2 per step and the cycle only 1: no bad policy is optimal
    worst_unclipped, _ = two_cycle["range"]["reward"]
    assert worst_unclipped > 0.95


def test_reward_scores_of_the_true_reward_are_perfect(true_policy):
    scores, policy = vi.reward_scores(md.TRUE_REWARD)
    assert scores == {"argmax": 1.0, "worst": 1.0, "best": 1.0, "margin": pytest.approx(1.0, abs=1e-6)}
    np.testing.assert_array_equal(policy, true_policy)  # the argmax policy, for plots
    # its negation runs away from the centre, whichever of its optimal policies is taken
    negated, _ = vi.reward_scores(-md.TRUE_REWARD)
    assert negated["best"] < 0 and negated["worst"] <= negated["argmax"] <= negated["best"]


def test_action_margin_is_the_true_rewards_at_one_and_sees_a_near_tie_before_the_tie_does():
    """1 for the true reward at any scale and shift. Make the step away from the centre cost a
    little less than 1 (the step back pays 1): the 2-cycle there comes within a hair of staying.
    At a gap of 2e-3 the worst tied policy still reads 1 (ties = 1e-3) while the margin has
    fallen to a fifth of the true reward's; at 5e-4 the jitter is tied; past 0 it is optimal."""
    assert vi.action_margin(3.0 * md.TRUE_REWARD + 7.0) == pytest.approx(1.0, abs=1e-6)
    at_centre = (md.POSITIONS == md.CENTRE).all(1)
    right = md.ACTION_NAMES.index("right")
    scores = {}
    for away in (-0.992, -0.9905, -0.98):  # Q(centre, right) - Q(centre, stay) = away + gamma
        reward = md.TRUE_REWARD.astype(np.float64)
        reward[at_centre, right] = away
        scores[away] = vi.reward_scores(reward)[0]
    assert scores[-0.992]["worst"] == 1.0 and 0.1 < scores[-0.992]["margin"] < 0.3
    assert scores[-0.9905]["worst"] < 1.0 and 0 < scores[-0.9905]["margin"] < 0.1
    assert scores[-0.98]["margin"] < 0 and scores[-0.98]["argmax"] < 1.0


def test_reward_scores_equal_the_separate_figures_and_see_the_ties(two_cycle):
    """reward_scores runs value iteration once; its figures are those of the argmax policy's true
    return and of optimal_policy_range, ties included (the clipped 2-cycle reward of the test above)."""
    worst = {}
    for name in ("reward", "clipped"):
        r = two_cycle[name]
        scores, policy = vi.reward_scores(r)
        argmax_policy = vi.value_iteration(r)[0]
        score = md.normalized_return(vi.true_returns(argmax_policy), md.MANHATTAN)
        assert scores["argmax"] == pytest.approx(score)
        np.testing.assert_array_equal(policy, argmax_policy)
        assert (scores["worst"], scores["best"]) == pytest.approx(two_cycle["range"][name])
        worst[name] = scores["worst"]
    assert worst["clipped"] < 0.8 < worst["reward"]


def _step_by_step_returns(policy, steps):
    states, total = np.arange(md.N_STATES), np.zeros(md.N_STATES)
    for _ in range(steps):
        flat = states * md.N_ACTIONS + policy[states]
        total += md.TRUE_REWARD.ravel()[flat]
        states = md.NEXT_STATE.ravel()[flat]
    return total


@pytest.mark.parametrize("steps", [0, 1, 5, 64, 333])
def test_true_returns_by_doubling_equal_the_step_by_step_rollout(steps):
    policy = np.random.default_rng(steps).integers(md.N_ACTIONS, size=md.N_STATES)
    expected = _step_by_step_returns(policy, steps)
    assert np.array_equal(vi.true_returns(policy, steps=steps), expected)
    starts = np.array([0, 17, md.N_STATES - 1])
    assert np.array_equal(vi.true_returns(policy, starts, steps=steps), expected[starts])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finite_horizon_value_stops_early_only_when_exact(seed):
    """The early stop extrapolates once V_t - V_{t-p} is constant; on masked and random rewards,
    where growth rates differ between states for a while, it must equal the full induction."""
    rng = np.random.default_rng(seed)
    reward = rng.integers(-1, 2, size=(md.N_ACTIONS, md.N_STATES)).astype(np.float64)
    allowed = rng.random(reward.shape) < 0.4
    allowed[rng.integers(md.N_ACTIONS, size=md.N_STATES), np.arange(md.N_STATES)] = True
    for reduce, excluded in ((np.min, np.inf), (np.max, -np.inf)):
        masked = np.where(allowed, reward, excluded)
        full = np.zeros(md.N_STATES)  # the full induction, one step at a time, checked at these horizons
        for step in range(1, 601):
            full = reduce(masked + full[vi._NEXT_T], axis=0)
            if step in (1, 2, 3, 250, 600):
                assert np.array_equal(vi._finite_horizon_value(masked, step, reduce), full), step
