"""The moving-dot env: dynamics, rewards, time limit, start distribution, rendering, and the
native vector env's equality with gymnasium's SyncVectorEnv."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from rlhf import moving_dot as md

INTERIOR = (50, 60)
EXPECTED_MOVE = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1), 4: (-1, 0)}


def env_at(position):
    """A bare MovingDotEnv with the dot put at ``position``."""
    env = md.MovingDotEnv()
    env.reset(seed=0)
    env._state = int(md.position_to_state(np.array(position)))
    env._optimal_return = int(md.MANHATTAN[env._state])
    return env


def sq_dist(p):
    return (p[0] - 105) ** 2 + (p[1] - 80) ** 2


def expected_reward(before, after):
    return float(np.sign(sq_dist(before) - sq_dist(after)))


def greedy_action(obs):
    x, y = int(obs[0]), int(obs[1])
    if x < 105:
        return 2
    if x > 105:
        return 4
    if y < 80:
        return 1
    if y > 80:
        return 3
    return 0


# --- dynamics and rewards -------------------------------------------------------------------

@pytest.mark.parametrize("action", range(5))
def test_each_action_moves_the_dot_from_an_interior_position(action):
    env = env_at(INTERIOR)
    obs, reward, terminated, truncated, info = env.step(action)
    dx, dy = EXPECTED_MOVE[action]
    after = (INTERIOR[0] + dx, INTERIOR[1] + dy)
    assert obs.dtype == np.float32 and obs.shape == (2,)
    assert tuple(obs.tolist()) == after
    assert reward == expected_reward(INTERIOR, after)
    assert terminated is False and truncated is False
    assert info["distance"] == pytest.approx(np.sqrt(sq_dist(after)))


def test_action_reward_signs_from_an_interior_position():
    # (50, 60) is left of and above the centre (105, 80): right and down move closer
    expected = {0: 0.0, 1: 1.0, 2: 1.0, 3: -1.0, 4: -1.0}
    for action, reward in expected.items():
        assert env_at(INTERIOR).step(action)[1] == reward


@pytest.mark.parametrize("position, action", [
    ((4, 60), 4), ((205, 60), 2), ((50, 4), 3), ((50, 155), 1),
    ((4, 4), 4), ((4, 4), 3), ((205, 155), 2), ((205, 155), 1),
])
def test_moving_into_a_wall_leaves_the_dot_in_place_with_zero_reward(position, action):
    env = env_at(position)
    obs, reward, *_ = env.step(action)
    assert tuple(obs.tolist()) == position
    assert reward == 0.0


def test_walls_allow_moving_away():
    assert tuple(env_at((4, 60)).step(2)[0].tolist()) == (5, 60)
    assert tuple(env_at((205, 60)).step(4)[0].tolist()) == (204, 60)
    assert tuple(env_at((50, 4)).step(1)[0].tolist()) == (50, 5)
    assert tuple(env_at((50, 155)).step(3)[0].tolist()) == (50, 154)


def test_tables_match_a_brute_force_computation_over_all_states_and_actions():
    positions = md.POSITIONS
    assert positions.shape == (202 * 152, 2)
    assert positions[:, 0].min() == 4 and positions[:, 0].max() == 205
    assert positions[:, 1].min() == 4 and positions[:, 1].max() == 155
    assert len(np.unique(positions, axis=0)) == len(positions)
    assert np.array_equal(md.position_to_state(positions), np.arange(len(positions)))

    deltas = np.array([EXPECTED_MOVE[a] for a in range(5)])
    moved = positions[:, None, :] + deltas[None]
    in_field = (moved[..., 0] >= 4) & (moved[..., 0] <= 205) & (moved[..., 1] >= 4) & (moved[..., 1] <= 155)
    expected_next = np.where(in_field[..., None], moved, positions[:, None, :])
    assert np.array_equal(positions[md.NEXT_STATE], expected_next)

    centre = np.array([105.0, 80.0])
    d_before = np.linalg.norm(positions - centre, axis=1)[:, None]
    d_after = np.linalg.norm(expected_next - centre, axis=-1)
    expected_reward_table = np.where(d_after < d_before, 1.0, np.where(d_after > d_before, -1.0, 0.0))
    assert np.array_equal(md.TRUE_REWARD, expected_reward_table)
    assert np.all(md.TRUE_REWARD[:, 0] == 0)  # noop never pays
    assert np.all(md.TRUE_REWARD[~in_field] == 0)  # nor does bumping into a wall
    # every interior move changes the distance, so only noops and walls give 0
    assert np.all(md.TRUE_REWARD[:, 1:][in_field[:, 1:]] != 0)
    assert np.allclose(md.DISTANCE, d_before[:, 0])
    assert np.array_equal(md.SQ_DISTANCE, ((positions - [105, 80]) ** 2).sum(1)) and md.SQ_DISTANCE.dtype.kind == "i"  # exact
    assert np.array_equal(md.MANHATTAN, np.abs(positions - [105, 80]).sum(1))
    # the true reward is the Manhattan potential difference on every transition (reward_model.epic_distance relies on it)
    assert np.array_equal(md.TRUE_REWARD, md.MANHATTAN[:, None] - md.MANHATTAN[md.NEXT_STATE])


def test_env_step_agrees_with_the_tables_on_random_states():
    rng = np.random.default_rng(0)
    env = md.MovingDotEnv()
    env.reset(seed=0)
    for s, a in zip(rng.integers(md.N_STATES, size=300), rng.integers(5, size=300)):
        env._state = int(s)
        obs, reward, *_ = env.step(int(a))
        assert tuple(obs.tolist()) == tuple(md.POSITIONS[md.NEXT_STATE[s, a]].tolist())
        assert reward == md.TRUE_REWARD[s, a]
        assert reward == expected_reward(md.POSITIONS[s], obs)


# --- gymnasium integration -----------------------------------------------------------------

def test_make_truncates_exactly_at_step_2000_and_never_terminates():
    env = gym.make("MovingDot-v0")
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    for t in range(1, 2001):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(5)))
        assert not terminated
        assert truncated == (t == 2000), t
    assert md.MAX_EPISODE_STEPS == 2000
    assert env.spec.max_episode_steps == 2000


def test_check_env_passes():
    env = gym.make("MovingDot-v0")
    check_env(env.unwrapped)


def test_spaces():
    env = md.MovingDotEnv()
    assert env.action_space == gym.spaces.Discrete(5)
    assert np.array_equal(env.observation_space.low, [4, 4])
    assert np.array_equal(env.observation_space.high, [205, 155])
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)


# --- resets and start distribution ----------------------------------------------------------

def test_reset_with_a_seed_is_reproducible():
    env = gym.make("MovingDot-v0")
    first = [env.reset(seed=s)[0].tolist() for s in range(20)]
    second = [env.reset(seed=s)[0].tolist() for s in range(20)]
    assert first == second
    # and the episode that follows is reproducible too (same seed, same actions)
    traj = []
    for _ in range(2):
        obs, _ = env.reset(seed=11)
        traj.append([obs.tolist()] + [env.step(a)[0].tolist() for a in [1, 2, 3, 4, 0, 2]])
    assert traj[0] == traj[1]


def test_different_seeds_give_different_starts():
    env = md.MovingDotEnv()
    starts = {tuple(env.reset(seed=s)[0].tolist()) for s in range(50)}
    assert len(starts) >= 45


def test_unseeded_resets_continue_the_seeded_stream():
    env = md.MovingDotEnv()
    env.reset(seed=5)
    a = [env.reset()[0].tolist() for _ in range(5)]
    env.reset(seed=5)
    b = [env.reset()[0].tolist() for _ in range(5)]
    assert a == b
    assert len({tuple(x) for x in a}) > 1


def test_mean_optimal_return_over_all_states_is_88_5():
    assert md.MANHATTAN.mean() == 88.5


def test_sampled_starts_cover_the_field():
    env = md.MovingDotEnv()
    starts, optimal = [], []
    for s in range(3000):
        obs, info = env.reset(seed=s)
        starts.append(obs)
        optimal.append(info["optimal_return"])
    starts, optimal = np.array(starts), np.array(optimal)
    sd = md.MANHATTAN.std()
    assert abs(optimal.mean() - 88.5) < 4 * sd / np.sqrt(len(optimal))
    # uniform over the field: reaches near every wall and has the uniform means
    assert starts[:, 0].min() <= 8 and starts[:, 0].max() >= 201
    assert starts[:, 1].min() <= 8 and starts[:, 1].max() >= 151
    assert abs(starts[:, 0].mean() - 104.5) < 4 * 58.3 / np.sqrt(3000)
    assert abs(starts[:, 1].mean() - 79.5) < 4 * 43.9 / np.sqrt(3000)
    assert np.all((starts >= [4, 4]) & (starts <= [205, 155]))


def test_info_has_distance_and_constant_optimal_return():
    env = gym.make("MovingDot-v0")
    obs, info = env.reset(seed=21)
    start = obs.copy()
    expected_optimal = abs(int(start[0]) - 105) + abs(int(start[1]) - 80)
    assert info["optimal_return"] == expected_optimal
    assert info["distance"] == pytest.approx(np.hypot(start[0] - 105, start[1] - 80))
    rng = np.random.default_rng(21)
    for _ in range(300):
        obs, _, _, _, info = env.step(int(rng.integers(5)))
        assert info["optimal_return"] == expected_optimal
        assert info["distance"] == pytest.approx(np.hypot(obs[0] - 105, obs[1] - 80))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_greedy_policy_earns_exactly_the_manhattan_distance(seed):
    env = gym.make("MovingDot-v0")
    obs, info = env.reset(seed=seed)
    optimal = info["optimal_return"]
    assert optimal == abs(int(obs[0]) - 105) + abs(int(obs[1]) - 80)
    total, steps, truncated = 0.0, 0, False
    while not truncated:
        obs, reward, terminated, truncated, info = env.step(greedy_action(obs))
        assert not terminated
        assert reward >= 0  # greedy moves never move away
        total += reward
        steps += 1
    assert steps == 2000
    assert tuple(obs.tolist()) == (105, 80)
    assert total == optimal
    assert md.normalized_return([total], [optimal]) == 1.0


def test_normalized_return_is_a_ratio_of_means():
    assert md.normalized_return([10, 0], [10, 10]) == 0.5
    assert md.normalized_return([1, 9], [2, 18]) == 0.5
    assert md.normalized_return([0, 0], [0, 10]) == 0.0
    assert np.isnan(md.normalized_return([0], [0]))


# --- invalid actions ------------------------------------------------------------------------

@pytest.mark.parametrize("action", [5, -1, 2.5, "a", np.float32(1.0), None])
def test_invalid_actions_raise_value_error(action):
    env = md.MovingDotEnv()
    env.reset(seed=0)
    state = env._state
    with pytest.raises(ValueError, match=r"actions must be integers in 0\.\.4"):
        env.step(action)
    assert env._state == state


def test_valid_numpy_integer_actions_are_accepted():
    env = md.MovingDotEnv()
    env.reset(seed=0)
    env.step(np.int64(2))
    env.step(np.array(3))
    env.step(np.uint8(1))


@pytest.mark.parametrize("actions", [
    np.array([0, 1]),                 # too few
    np.array([0, 1, 2, 3]),           # too many
    np.array([[0, 1, 2]]),            # wrong rank
    np.array([0, 1, 5]),              # out of range
    np.array([0, -1, 2]),             # negative
    np.array([0.0, 1.0, 2.0]),        # floats
    np.array(["a", "b", "c"]),        # strings
])
def test_vector_env_invalid_actions_raise_value_error(actions):
    envs = gym.make_vec("MovingDot-v0", num_envs=3, vectorization_mode="vector_entry_point")
    obs, _ = envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must be integers in 0\.\.4"):
        envs.step(actions)
    # nothing moved
    assert np.array_equal(envs.step(np.zeros(3, dtype=np.int64))[0], obs)


# --- rendering ------------------------------------------------------------------------------

@pytest.mark.parametrize("position", [(105, 80), (4, 4), (205, 155), (30, 140)])
def test_render_draws_a_white_9x9_square_at_the_dot(position):
    env = gym.make("MovingDot-v0", render_mode="rgb_array")
    env.reset(seed=0)
    env.unwrapped._state = int(md.position_to_state(np.array(position)))
    frame = env.render()
    assert frame.shape == (160, 210, 3) and frame.dtype == np.uint8
    x, y = position
    expected = np.zeros((160, 210, 3), dtype=np.uint8)
    expected[y - 4:y + 5, x - 4:x + 5] = 255
    assert np.array_equal(frame, expected)
    assert (frame == 255).all(-1).sum() == 81
    assert set(np.unique(frame).tolist()) == {0, 255}


def test_render_follows_the_dot_after_reset_and_steps():
    env = gym.make("MovingDot-v0", render_mode="rgb_array")
    obs, _ = env.reset(seed=4)
    for action in [None, 1, 2, 2, 3]:
        if action is not None:
            obs, *_ = env.step(action)
        frame = env.render()
        ys, xs = np.nonzero((frame == 255).all(-1))
        assert (xs.min() + 4, ys.min() + 4) == (int(obs[0]), int(obs[1]))
        assert (xs.max() - xs.min(), ys.max() - ys.min()) == (8, 8)


def test_render_without_mode_returns_none_and_bad_mode_fails():
    env = md.MovingDotEnv()
    env.reset(seed=0)
    assert env.render() is None
    with pytest.raises(ValueError):
        md.MovingDotEnv(render_mode="human")


# --- vector env -----------------------------------------------------------------------------

def test_vector_env_equals_sync_vector_env_step_for_step():
    n, n_steps = 3, 4100  # two truncations: at step 2000 and 4000
    native = gym.make_vec("MovingDot-v0", num_envs=n, vectorization_mode="vector_entry_point")
    sync = gym.make_vec("MovingDot-v0", num_envs=n, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    assert isinstance(native.unwrapped, md.MovingDotVectorEnv)
    assert native.unwrapped.max_episode_steps == 2000
    obs_a, info_a = native.reset(seed=7)
    obs_b, info_b = sync.reset(seed=7)
    assert np.array_equal(obs_a, obs_b) and obs_a.dtype == obs_b.dtype == np.float32
    assert np.array_equal(info_a["distance"], info_b["distance"])
    assert np.array_equal(info_a["optimal_return"], info_b["optimal_return"])

    rng = np.random.default_rng(0)
    actions = rng.integers(5, size=(n_steps, n))
    n_truncation_steps = 0
    seen_starts = [obs_a.copy()]
    for t in range(n_steps):
        obs_a, rew_a, term_a, trunc_a, info_a = native.step(actions[t])
        obs_b, rew_b, term_b, trunc_b, info_b = sync.step(actions[t])
        assert np.array_equal(obs_a, obs_b), t
        assert np.array_equal(rew_a, rew_b), t
        assert np.array_equal(term_a, term_b) and not term_a.any(), t
        assert np.array_equal(trunc_a, trunc_b), t
        assert np.array_equal(info_a["distance"], info_b["distance"]), t
        assert np.array_equal(info_a["optimal_return"], info_b["optimal_return"]), t
        assert ("final_obs" in info_a) == ("final_obs" in info_b) == trunc_a.any(), t
        if trunc_a.any():
            n_truncation_steps += 1
            assert t + 1 in (2000, 4000)
            mask = info_a["_final_obs"]
            assert np.array_equal(mask, info_b["_final_obs"]) and np.array_equal(mask, trunc_a)
            assert info_a["final_obs"].shape == (n, 2)
            assert np.array_equal(info_a["final_obs"][mask], np.stack(info_b["final_obs"][mask]))
            fi_a, fi_b = info_a["final_info"], info_b["final_info"]
            assert np.array_equal(fi_a["optimal_return"][mask], fi_b["optimal_return"][mask])
            assert np.array_equal(fi_a["distance"][mask], fi_b["distance"][mask])
            # the reset obs is a fresh start, not the final obs
            assert not np.array_equal(obs_a, info_a["final_obs"])
            seen_starts.append(obs_a.copy())
    assert n_truncation_steps == 2
    assert len({tuple(map(tuple, s.tolist())) for s in seen_starts}) == 3


def test_vector_env_metadata_declares_same_step_autoreset():
    envs = gym.make_vec("MovingDot-v0", num_envs=2, vectorization_mode="vector_entry_point")
    assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert md.MovingDotVectorEnv.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP


def test_vector_env_seeds_each_dot_like_single_envs():
    envs = md.MovingDotVectorEnv(num_envs=4)
    obs, info = envs.reset(seed=10)
    for i in range(4):
        single_obs, single_info = md.MovingDotEnv().reset(seed=10 + i)
        assert np.array_equal(obs[i], single_obs)
        assert info["optimal_return"][i] == single_info["optimal_return"]
    obs2, _ = envs.reset(seed=[10, 11, 12, 13])
    assert np.array_equal(obs, obs2)
    with pytest.raises(ValueError):
        envs.reset(seed=[1, 2])


def test_vector_env_respects_a_custom_time_limit():
    envs = md.MovingDotVectorEnv(num_envs=2, max_episode_steps=5)
    envs.reset(seed=0)
    truncs = [envs.step(np.array([0, 0]))[3].copy() for _ in range(10)]
    assert [bool(t.all()) for t in truncs] == [False] * 4 + [True] + [False] * 4 + [True]
