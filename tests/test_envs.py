"""Other envs (envs.py): spec checks and their one-line refusals, the three stages end to end at
tiny sizes on every supported env and on a user's own, absorbing steps after a termination, the
oracles per env, refusals of a DB, model or agent made for another env, the absorbing-state tail
of PPO's learned reward, and running observation statistics that survive the agent file."""

import os
import sqlite3

import custom_envs  # registers the tests' envs
import gymnasium as gym
import numpy as np
import pytest
import torch
from in_process import run_script

import make_preferences_db as gen
import ppo_rlhf as ppo
import train_reward_model as trm
from rlhf import agent as agent_lib
from rlhf import db, envs
from rlhf import moving_dot as md
from rlhf import reward_model as rm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_STATUSES = ("pending", "incomparable", "labeled")
ENV_IDS = ("MountainCar-v0", "CartPole-v1", "Acrobot-v1", "Pendulum-v1", "LunarLander-v3", "Hopper-v5", "custom_envs:TestReach-v0")
GEN = ("--n-segments", 40, "--n-comparisons", 20, "--segment-length", 5)
TRAIN = ("--max-steps", 20, "--eval-every", 10, "--no-plot", "--no-progress")
PPO = ("--total-timesteps", 512, "--num-envs", 2, "--num-steps", 128, "--num-minibatches", 2, "--update-epochs", 1,
       "--eval-episodes", 2, "--no-progress")
DOT = envs.spec("MovingDot-v0")
CARTPOLE = envs.spec("CartPole-v1")
pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning")  # Box2D's SWIG, on import


def generate(path, *flags):
    gen.main(gen.parse_args(["--db", str(path), *map(str, flags)]))
    return str(path)


def train(db_path, out, *flags):
    return trm.main(trm.parse_args(["--db", str(db_path), "--out", str(out), "--run-dir", str(out) + ".runs", *map(str, TRAIN),
                                    *map(str, flags)]))


def run_ppo(save_path, *flags):
    return ppo.main(ppo.parse_args(["--save-path", str(save_path), "--run-dir", str(save_path) + ".runs", *map(str, PPO),
                                    *map(str, flags)]))


def rational(score1, score2):
    return np.where(score1 > score2, 1.0, np.where(score1 < score2, 0.0, 0.5))


def db_contents(path):
    """Every row of a DB but its timestamps."""
    conn = sqlite3.connect(path)
    rows = {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() for table in ("segments", "steps")}
    rows["comparisons"] = conn.execute("SELECT id, segment1_id, segment2_id, split, status, mu1, mu2, label_source, labeler, batch"
                                       " FROM comparisons ORDER BY id").fetchall()
    conn.close()
    meta = db.read_metadata(path)
    rows["runs"] = [{k: v for k, v in run.items() if k not in ("created_at", "args")} | {"args": {k: v for k, v in run["args"].items() if k != "db"}}
                    for run in meta.pop("generator_runs")]
    rows["metadata"] = meta
    return rows


def untimed(summary):
    return {k: v for k, v in summary.items() if k not in ("train_seconds", "sps")}


def finite_numbers(d):
    return all(np.isfinite(v) for v in d.values() if isinstance(v, float))


# --- envs.spec: what is supported, and a one-line refusal of the rest ------------------------

def test_spec_of_every_supported_env():
    expected = {"MovingDot-v0": (2, 5, None, 2000), "MountainCar-v0": (2, 3, None, 200), "CartPole-v1": (4, 2, None, 500),
                "Acrobot-v1": (6, 3, None, 500), "LunarLander-v3": (8, 4, None, 1000), "Pendulum-v1": (3, None, 1, 200),
                "Hopper-v5": (11, None, 3, 1000)}
    assert set(expected) == set(envs.SUPPORTED)
    for env_id, (obs_dim, n_actions, action_dim, limit) in expected.items():
        spec = envs.spec(env_id)
        assert (spec.env_id, spec.obs_dim, spec.n_actions, spec.max_episode_steps) == (env_id, obs_dim, n_actions, limit)
        assert spec.discrete == (n_actions is not None) and spec.action_dim == (action_dim or 1)
        assert spec.obs_low.shape == spec.obs_high.shape == (obs_dim,)
        assert spec.tabular == (env_id == "MovingDot-v0") and (spec.native is md) == spec.tabular
        params = spec.params()
        assert params["env_id"] == env_id and params["observation_shape"] == [obs_dim] and params["max_episode_steps"] == limit
        assert ("native" in params) == spec.tabular
        rng = np.random.default_rng(0)
        actions = spec.random_actions(rng, (7, 3))
        if spec.discrete:
            assert params["action_space"] == {"type": "Discrete", "n": n_actions} and spec.null_action() == 0
            assert actions.shape == (7, 3) and actions.min() >= 0 and actions.max() < n_actions
        else:
            assert params["action_space"]["type"] == "Box" and len(params["action_space"]["low"]) == action_dim
            assert actions.shape == (7, 3, action_dim) and actions.dtype == np.float32
            assert np.all((actions >= spec.action_low) & (actions <= spec.action_high))
            np.testing.assert_array_equal(spec.null_action(), np.zeros(action_dim, np.float32))
    assert DOT.params()["native"] == md.ENV_PARAMS


def test_an_unknown_env_is_one_line_naming_the_supported_ones():
    with pytest.raises(envs.EnvError) as e:
        envs.spec("Nope-v0")
    message = str(e.value)
    assert "\n" not in message and "'Nope-v0'" in message and "not a registered gymnasium env" in message
    assert all(env_id in message for env_id in envs.SUPPORTED) and "your_module:YourEnv-v0" in message
    with pytest.raises(envs.EnvError, match=r"did you mean CartPole-v1\?"):
        envs.spec("Cartpole-v1")


@pytest.mark.parametrize("stage", [gen, trm, ppo])
def test_every_stage_refuses_an_unknown_env_with_one_argparse_line(stage, capsys):
    with pytest.raises(SystemExit) as e:
        stage.parse_args(["--env-id", "Nope-v0"])
    assert e.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "'Nope-v0' is not a registered gymnasium env" in errors[0]


@pytest.mark.parametrize("env_id", sorted(custom_envs.REFUSED))
def test_unsupported_spaces_and_no_time_limit_are_refused(env_id):
    fragment = custom_envs.REFUSED[env_id][1]
    with pytest.raises(envs.EnvError) as e:
        envs.spec(f"custom_envs:{env_id}")
    assert env_id in str(e.value) and fragment in str(e.value) and "\n" not in str(e.value)


def test_a_users_own_env_by_module_and_id():
    spec = envs.spec("custom_envs:TestReach-v0")
    assert (spec.obs_dim, spec.n_actions, spec.max_episode_steps, spec.tabular) == (1, 3, 40, False)
    np.testing.assert_array_equal(spec.obs_low, [-10.0])
    with pytest.raises(envs.EnvError, match="cannot import module 'no_such_module_here'"):
        envs.spec("no_such_module_here:Env-v0")
    # not listed in envs.DEFAULTS: the generic flags
    assert envs.defaults("custom_envs:TestReach-v0", "make_preferences_db") == envs.defaults("Unlisted-v0", "make_preferences_db")
    assert envs.defaults("custom_envs:TestReach-v0", "train_reward_model")["reward_form"] == "state-action"
    assert envs.defaults("Unlisted-v0", "ppo_rlhf", continuous=True)["norm_obs"] is True
    assert envs.defaults("Unlisted-v0", "ppo_rlhf", continuous=False) == {}


def test_per_env_defaults_and_a_given_flag_wins():
    for stage in ("make_preferences_db", "train_reward_model", "ppo_rlhf"):
        assert envs.defaults("MovingDot-v0", stage) == {}
    args = gen.parse_args(["--env-id", "MountainCar-v0"])
    assert (args.n_segments, args.n_comparisons, args.segment_length, args.oracle) == (2000, 1000, 30, "swing-height")
    assert args.max_start_step == 200 - 30 + 1  # the whole episode
    args = gen.parse_args(["--env-id", "MountainCar-v0", "--segment-length", "10", "--oracle", "reward"])
    assert (args.segment_length, args.oracle, args.max_start_step) == (10, "reward", 191)
    assert gen.parse_args(["--env-id", "Acrobot-v1"]).max_start_step == 200
    assert trm.parse_args(["--env-id", "CartPole-v1"]).reward_form == "state-action"
    assert trm.parse_args(["--env-id", "CartPole-v1", "--reward-form", "potential"]).reward_form == "potential"
    pendulum = ppo.parse_args(["--env-id", "Pendulum-v1"])
    assert pendulum.norm_obs and pendulum.norm_reward and pendulum.gamma == 0.9 and pendulum.num_envs == 4
    assert not ppo.parse_args(["--env-id", "Pendulum-v1", "--no-norm-obs"]).norm_obs
    assert not ppo.parse_args(["--env-id", "CartPole-v1"]).norm_obs
    with pytest.raises(SystemExit):
        gen.parse_args(["--env-id", "MountainCar-v0", "--segment-length", "201"])  # longer than an episode


def test_the_vector_env_autoresets_on_the_same_step_and_keeps_the_last_observation():
    vec = envs.make_vector_env(CARTPOLE, 3)
    obs, _ = vec.reset(seed=0)
    rng, seen = np.random.default_rng(0), 0
    for _ in range(200):
        next_obs, _, terminated, truncated, info = vec.step(rng.integers(2, size=3))
        last = envs.last_observations(next_obs, info)
        ended = terminated | truncated
        np.testing.assert_array_equal(last[~ended], next_obs[~ended])
        if ended.any():  # the episode's last observation is past a limit; next_obs already the next episode's first
            x, theta = last[ended, 0], last[ended, 2]
            assert np.all((np.abs(x) > 2.4) | (np.abs(theta) > 12 * 2 * np.pi / 360))
            assert np.all(np.abs(next_obs[ended]) <= 0.05)
            seen += ended.sum()
    vec.close()
    assert seen > 5


# --- the three stages, end to end, at tiny sizes ------------------------------------------------

@pytest.mark.parametrize("env_id", ENV_IDS)
def test_three_stages_end_to_end_and_deterministic(tmp_path, env_id):
    spec = envs.spec(env_id)
    # generate, twice with one seed: the same DB
    paths = [generate(tmp_path / f"{name}.db", "--env-id", env_id, *GEN, "--seed", 3) for name in "ab"]
    assert db_contents(paths[0]) == db_contents(paths[1])
    meta = db.read_metadata(paths[0])
    assert meta["env"] == spec.params() and meta["segment_length"] == 5
    oracle = envs.DEFAULT_ORACLE.get(spec.registered_id, "reward")
    assert meta["generator_runs"][0]["args"]["oracle"] == oracle
    c = db.load_comparisons(paths[0], statuses=ALL_STATUSES)
    assert len(c) == 20
    for obs, actions, rewards, absorbing in ((c.obs1, c.actions1, c.rewards1, c.absorbing1), (c.obs2, c.actions2, c.rewards2, c.absorbing2)):
        assert obs.shape == (20, 6, spec.obs_dim) and obs.dtype == np.float32 and np.isfinite(obs).all()
        assert rewards.shape == absorbing.shape == (20, 5) and rewards.dtype == np.float32 and absorbing.dtype == bool
        assert np.isfinite(rewards).all() and not absorbing[:, 0].any()  # a segment starts before its episode ends
        if spec.discrete:
            assert actions.shape == (20, 5) and actions.dtype == np.int64
            assert actions.min() >= 0 and actions.max() < spec.n_actions
        else:
            assert actions.shape == (20, 5, spec.action_dim) and actions.dtype == np.float32
            assert np.all((actions >= spec.action_low) & (actions <= spec.action_high))
    # the labels are the env's default oracle's (but for near ties: the scores are recomputed from float32 rewards)
    s1, s2 = (envs.segment_scores(oracle, spec.env_id, *arrays) for arrays in
              ((c.obs1, c.actions1, c.rewards1, c.absorbing1), (c.obs2, c.actions2, c.rewards2, c.absorbing2)))
    near_tie = (np.abs(s1 - s2) <= 1e-3) & (s1 != s2)
    assert near_tie.sum() <= 2
    np.testing.assert_array_equal(c.mu1[~near_tie], rational(s1, s2)[~near_tie])

    # train: the model is for this env, and refused by another
    out = tmp_path / "rm.pt"
    summary = train(paths[0], out, "--env-id", env_id)
    assert summary["env_id"] == spec.env_id and summary["oracle"] == oracle and summary["steps"] == 20
    assert np.isfinite([summary["val_loss"], summary["train_accuracy"]]).all()
    model = rm.load(str(out), env_spec=spec)
    assert model.config["obs_dim"] == spec.obs_dim and model.config["n_actions"] == spec.n_actions and model.form == "state-action"
    mean, std = model.reward_stats
    assert np.isfinite(mean) and std > 0
    other = DOT if env_id != "CartPole-v1" else envs.spec("Acrobot-v1")
    with pytest.raises(rm.RewardModelError, match=f"made for {spec.env_id}, not {other.env_id}"):
        rm.load(str(out), env_spec=other)

    # PPO on the learned reward, twice with one seed: the same run
    runs = [run_ppo(tmp_path / f"agent_{name}.pt", "--env-id", env_id, "--rlhf", "--reward-model", out, "--seed", 2) for name in "ab"]
    assert untimed(runs[0]) == untimed(runs[1])
    assert runs[0]["global_step"] == 512
    for policy in ("greedy", "sampled"):
        result = runs[0][policy]
        assert finite_numbers(result) and 1 <= result["episode_length"] <= spec.max_episode_steps and result["n_episodes"] == 2
        assert 0 <= result["terminated_fraction"] <= 1
    checkpoint = torch.load(str(tmp_path / "agent_a.pt"), weights_only=True)  # loading it back: test_an_agent_file_loads_back
    assert checkpoint["env"] == spec.params() and checkpoint["config"]["obs_dim"] == spec.obs_dim
    assert checkpoint["config"]["n_actions"] == spec.n_actions and checkpoint["summary"]["greedy"] == runs[0]["greedy"]
    again = torch.load(str(tmp_path / "agent_b.pt"), weights_only=True)["state_dict"]
    for name, tensor in checkpoint["state_dict"].items():
        assert torch.equal(tensor, again[name]), name
    with pytest.raises(agent_lib.AgentFileError, match=f"made for {spec.env_id}, not {other.env_id}"):
        agent_lib.load(str(tmp_path / "agent_a.pt"), env_spec=other)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_an_agent_file_loads_back_for_its_env(tmp_path, env_id):
    """The saved agent is the evaluated one, and the loop's two uses of it work: --resume, and
    the generator's segments of its behaviour (--policy)."""
    spec = envs.spec(env_id)
    path = tmp_path / "agent.pt"
    summary = run_ppo(path, "--env-id", env_id, "--total-timesteps", 256, "--num-steps", 64)
    agent, checkpoint = agent_lib.load(str(path), env_spec=spec)
    assert checkpoint["global_step"] == 256 and agent.discrete == spec.discrete
    assert agent_lib.evaluate(agent, spec, 2, 100_000, greedy=True) == summary["greedy"]
    resumed = run_ppo(tmp_path / "resumed.pt", "--env-id", env_id, "--total-timesteps", 256, "--num-steps", 64, "--resume", path)
    assert resumed["global_step"] == 512 and resumed["start_step"] == 256
    db_path = generate(tmp_path / "p.db", "--env-id", env_id, "--policy", path, *GEN)
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT DISTINCT source FROM segments").fetchall() == [("policy",)]
    conn.close()


# --- absorbing steps after a termination ------------------------------------------------------

def test_cartpole_segments_end_in_an_absorbing_state_and_never_hold_a_reset(tmp_path):
    seed, k = 5, 20
    path = generate(tmp_path / "c.db", "--env-id", "CartPole-v1", "--n-segments", 60, "--n-comparisons", 40, "--segment-length", k,
                    "--seed", seed)
    conn, meta = db.connect(path)
    try:
        ids, obs, actions, rewards, absorbing, terminal = db.segments_arrays(conn, meta)
        replay = conn.execute("SELECT reset_seed, start_step, replay_actions, source FROM segments ORDER BY id").fetchall()
    finally:
        conn.close()
    ended = absorbing.any(1)
    assert 10 <= ended.sum() <= 55  # a random policy's pole falls soon: many episodes end inside a segment (docs/testing.md)
    assert not absorbing[:, 0].any() and np.all(np.diff(absorbing.astype(int), axis=1) >= 0)  # absorbing to the end
    # after the termination: the terminal observation, reward 0, the null action
    stay = absorbing
    np.testing.assert_array_equal(obs[:, 1:][stay], obs[:, :-1][stay])
    assert np.all(rewards[stay] == 0) and np.all(actions[stay] == 0) and np.all(rewards[~stay] == 1)
    first = absorbing.argmax(1)
    final = obs[ended, first[ended]]
    fallen = lambda o: (np.abs(o[:, 0]) > 2.4) | (np.abs(o[:, 2]) > 12 * 2 * np.pi / 360)  # CartPole's limits
    assert np.all(fallen(final))
    # the step that ended the episode: the one before the absorbing steps, or the last one (its o_k is the terminal observation)
    assert np.all(terminal.sum(1) <= 1) and not (terminal & absorbing).any()
    np.testing.assert_array_equal(terminal[ended, first[ended] - 1], True)
    np.testing.assert_array_equal(fallen(obs[:, -1]), ended | terminal[:, -1])
    # C17's synthetic labels: the reward oracle is the sum of the stored rewards
    np.testing.assert_array_equal(envs.segment_scores("reward", "CartPole-v1", obs, actions, rewards, absorbing), rewards.sum(1))
    np.testing.assert_array_equal(rewards.sum(1), k - absorbing.sum(1))
    c = db.load_comparisons(path)
    np.testing.assert_array_equal(c.mu1, rational(c.rewards1.sum(1), c.rewards2.sum(1)))
    # each segment is its episode's, replayed from the reset: no reset inside, the same observations
    env = gym.make("CartPole-v1")
    for i, (reset_seed, start, blob, source) in enumerate(replay):
        assert reset_seed == seed + i and source == "random_policy"
        episode_actions = np.frombuffer(blob, np.int64)
        assert len(episode_actions) == start + k
        np.testing.assert_array_equal(episode_actions[start:], actions[i])
        o, _ = env.reset(seed=reset_seed)
        seen, done = [o], False
        for a in episode_actions:
            if not done:
                o, _, done, truncated, _ = env.step(int(a))
                assert not truncated
            seen.append(o)  # after the end: the terminal observation again
        np.testing.assert_array_equal(np.array(seen[start:start + k + 1]), obs[i])
    env.close()


# --- the oracles per env ------------------------------------------------------------------------

def mountain_car_clips(*positions):
    """Clips (n, k + 1, 2) of Mountain Car observations (position, velocity 0)."""
    pos = np.array(positions, dtype=np.float32)
    return np.stack([pos, np.zeros_like(pos)], -1)


def acrobot_obs(theta1, theta2):
    theta1, theta2 = np.asarray(theta1, np.float64), np.asarray(theta2, np.float64)
    return np.stack([np.cos(theta1), np.sin(theta1), np.cos(theta2), np.sin(theta2), 0 * theta1, 0 * theta2], -1)


def no_steps(n, k):
    return np.zeros((n, k), np.int64), np.zeros((n, k)), np.zeros((n, k), bool)


def test_height_oracle_prefers_the_clip_higher_up_the_hills():
    assert envs.mountain_car_height(np.pi / 6) == pytest.approx(1.0)  # the top of sin(3x)
    assert envs.mountain_car_height(-np.pi / 6) == pytest.approx(0.1)  # the valley
    clips = mountain_car_clips([-0.5, -0.5, -0.5], [-0.5, 0.3, 0.4], [0.4, -0.5, -0.5])
    scores = envs.segment_scores("height", "MountainCar-v0", clips, *no_steps(3, 2))
    expected = envs.mountain_car_height(clips[:, 1:, 0]).sum(1)  # o_1..o_k: what the clip's steps led to
    np.testing.assert_allclose(scores, expected)
    assert scores[1] > scores[0] and scores[1] > scores[2]
    assert scores[2] == pytest.approx(scores[0])  # the first observation is before the clip's first step
    # myopic: the last step weighs most
    late, early = mountain_car_clips([-0.5, -0.5, 0.4], [-0.5, 0.4, -0.5])
    myopic = envs.segment_scores("height", "MountainCar-v0", np.stack([late, early]), *no_steps(2, 2), gamma=0.5)
    assert myopic[0] > myopic[1]


def test_swing_height_is_the_height_the_cars_speed_would_carry_it_to():
    """Coasting (action 1, no push), the car trades speed for height: its swing height stays put
    while its height swings (up to the env's Euler steps), and a faster car at the same place is
    preferred, a person seeing it swing higher."""
    env = gym.make("MountainCar-v0")
    env.reset(seed=0)
    env.unwrapped.state = np.array([-0.5, 0.03])
    obs = [env.unwrapped.state.astype(np.float32)]
    for _ in range(100):
        obs.append(env.step(1)[0])
    env.close()
    obs = np.array(obs)
    swing, height = envs.mountain_car_swing_height(obs), envs.mountain_car_height(obs[:, 0])
    assert np.ptp(height) > 0.2 and np.ptp(swing) < 0.1 * np.ptp(height)
    assert swing.max() <= height.max() + 0.02  # at the top of each swing the speed is spent
    still, fast = np.array([[-0.52, 0.0]] * 3), np.array([[-0.52, 0.04]] * 3)
    scores = envs.segment_scores("swing-height", "MountainCar-v0", np.stack([still, fast]).astype(np.float32), *no_steps(2, 2))
    np.testing.assert_allclose(scores[1] - scores[0], 2 * 0.45 * 600 * 0.04 ** 2, rtol=1e-4)
    assert envs.defaults("MountainCar-v0", "rlhf_loop")["oracle"] == envs.DEFAULT_ORACLE["MountainCar-v0"] == "swing-height"


def test_swing_height_never_pays_more_for_swinging_than_for_the_flag():
    """Uncapped, the fastest car in the valley would score above a car at the flag, and a learned
    reward would pay for swinging forever; capped at the flag's height, with every step past the
    flag one above the top, the clip that reaches the flag wins, and the sooner the better."""
    flying = np.array([[-0.52, 0.07]] * 4)  # the env's top speed, at the bottom
    assert envs.mountain_car_swing_height(flying[0]) > envs.MOUNTAIN_CAR_FLAG_HEIGHT + 0.4  # what the cap is for
    at_flag = np.array([[0.45, 0.03], [0.5, 0.03], [0.5, 0.03], [0.5, 0.03]])
    later = np.array([[0.3, 0.03], [0.4, 0.03], [0.5, 0.03], [0.5, 0.03]])
    clips = np.stack([flying, at_flag, later]).astype(np.float32)
    actions, rewards, _ = no_steps(3, 3)
    absorbing = np.array([[False] * 3, [False, True, True], [False, False, True]])
    scores = envs.segment_scores("swing-height", "MountainCar-v0", clips, actions, rewards, absorbing)
    assert scores[1] > scores[2] > scores[0]
    np.testing.assert_allclose(scores[0], 3 * envs.MOUNTAIN_CAR_FLAG_HEIGHT)  # capped


def test_tip_height_oracle_prefers_the_clip_that_swung_higher():
    np.testing.assert_allclose(envs.acrobot_tip_height(acrobot_obs([0.0, np.pi, np.pi / 2, np.pi], [0.0, 0.0, 0.0, np.pi])),
                               [-2.0, 2.0, 0.0, 0.0], atol=1e-12)  # hanging, upright, horizontal, folded back
    hanging = acrobot_obs(np.zeros(4), np.zeros(4))
    swinging = acrobot_obs(np.array([0.0, 1.0, 2.0, 3.0]), np.zeros(4))
    clips = np.stack([hanging, swinging])
    scores = envs.segment_scores("tip-height", "Acrobot-v1", clips, *no_steps(2, 3))
    np.testing.assert_allclose(scores, [-6.0, (-2 * np.cos([1.0, 2.0, 3.0])).sum()])
    assert scores[1] > scores[0]


@pytest.mark.parametrize("oracle, env_id", [("reward", "CartPole-v1"), ("height", "MountainCar-v0"),
                                            ("tip-height", "Acrobot-v1"), ("distance", "MovingDot-v0")])
def test_step_scores_add_up_to_the_segment_score(oracle, env_id):
    spec = envs.spec(env_id)
    rng = np.random.default_rng(1)
    obs = rng.uniform(-1, 1, size=(6, 5, spec.obs_dim)).astype(np.float32)
    if env_id == "MovingDot-v0":
        obs = md.OBS_TABLE[rng.integers(md.N_STATES, size=(6, 5))]
    actions, rewards, absorbing = spec.random_actions(rng, (6, 4)), rng.normal(size=(6, 4)), np.zeros((6, 4), bool)
    steps = envs.step_scores(oracle, env_id, obs, actions, rewards, absorbing)
    assert steps.shape == (6, 4)
    np.testing.assert_allclose(steps.sum(1), envs.segment_scores(oracle, env_id, obs, actions, rewards, absorbing), rtol=1e-10, atol=1e-9)


def test_an_oracle_for_another_env_is_refused():
    assert envs.oracle_names("MountainCar-v0") == ["reward", "swing-height", "height"]
    assert envs.oracle_names("MovingDot-v0") == ["reward", "distance"] and envs.oracle_names("Pendulum-v1") == ["reward"]
    clips = mountain_car_clips([0.0, 0.1])
    for oracle, env_id in (("height", "CartPole-v1"), ("swing-height", "Acrobot-v1"), ("distance", "MountainCar-v0"),
                           ("tip-height", "MountainCar-v0")):
        with pytest.raises(envs.EnvError, match=f"--oracle {oracle} judges .* only; for {env_id} use one of reward"):
            envs.segment_scores(oracle, env_id, clips, *no_steps(1, 1))


def test_the_generator_refuses_an_oracle_of_another_env_in_one_argparse_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        gen.parse_args(["--db", str(tmp_path / "p.db"), "--env-id", "MountainCar-v0", "--oracle", "distance"])
    assert e.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == [errors[0]] and errors[0].endswith("--oracle distance is not an oracle for MountainCar-v0; choose from reward, swing-height, height, none")
    assert os.listdir(tmp_path) == []


# --- a DB, model or agent made for another env is refused ---------------------------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A MountainCar DB, and a reward model and an agent for each of MountainCar and CartPole."""
    tmp = tmp_path_factory.mktemp("made")
    files = {}
    for env_id in ("MountainCar-v0", "CartPole-v1"):
        name = env_id.split("-")[0].lower()
        files[f"{name}_db"] = generate(tmp / f"{name}.db", "--env-id", env_id, *GEN)
        files[f"{name}_rm"] = str(tmp / f"{name}_rm.pt")
        train(files[f"{name}_db"], files[f"{name}_rm"], "--env-id", env_id)
        files[f"{name}_agent"] = str(tmp / f"{name}_agent.pt")
        run_ppo(files[f"{name}_agent"], "--env-id", env_id, "--total-timesteps", 256, "--num-steps", 64)
    return files


def test_the_trainer_warns_when_no_segment_reaches_the_absorbing_state(made, tmp_path, capsys):
    """Mountain Car's random clips never reach the flag: the learned reward of ending an episode is
    then untrained, and the trainer says so (and counts the absorbing steps in the summary);
    CartPole's random clips fall, so there it is trained and no warning is printed."""
    summary = train(made["mountaincar_db"], tmp_path / "mc.pt", "--env-id", "MountainCar-v0")
    out = capsys.readouterr().out
    assert summary["absorbing_steps"] == 0
    assert "warning: no training segment" in out and "absorbing state) is untrained" in out
    summary = train(made["cartpole_db"], tmp_path / "cp.pt", "--env-id", "CartPole-v1")
    assert summary["absorbing_steps"] > 0 and "warning: no training segment" not in capsys.readouterr().out


def test_the_trainer_refuses_a_db_of_another_env_in_one_line(made, tmp_path):
    result = run_script(os.path.join(ROOT, "train_reward_model.py"), "--db", made["mountaincar_db"], "--out", tmp_path / "rm.pt",
                        "--run-dir", tmp_path / "runs", "--no-progress", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "made for MountainCar-v0, not MovingDot-v0; pass --env-id MountainCar-v0" in lines[0] and made["mountaincar_db"] in lines[0]
    assert not (tmp_path / "rm.pt").exists() and not (tmp_path / "runs").exists()
    with pytest.raises(envs.EnvError, match="made for MountainCar-v0, not CartPole-v1"):
        train(made["mountaincar_db"], tmp_path / "rm2.pt", "--env-id", "CartPole-v1")
    with pytest.raises(rm.RewardModelError, match="made for CartPole-v1, not MountainCar-v0"):  # --init of another env's model
        train(made["mountaincar_db"], tmp_path / "rm3.pt", "--env-id", "MountainCar-v0", "--init", made["cartpole_rm"])


def test_ppo_refuses_a_reward_model_or_an_agent_of_another_env(made, tmp_path):
    with pytest.raises(rm.RewardModelError, match="made for CartPole-v1, not MountainCar-v0; pass --env-id CartPole-v1"):
        run_ppo(tmp_path / "agent.pt", "--env-id", "MountainCar-v0", "--rlhf", "--reward-model", made["cartpole_rm"])
    with pytest.raises(rm.RewardModelError, match="made for MountainCar-v0, not MovingDot-v0"):
        run_ppo(tmp_path / "agent.pt", "--rlhf", "--reward-model", made["mountaincar_rm"])
    with pytest.raises(agent_lib.AgentFileError, match="made for CartPole-v1, not MountainCar-v0"):
        run_ppo(tmp_path / "agent.pt", "--env-id", "MountainCar-v0", "--resume", made["cartpole_agent"])
    assert os.listdir(tmp_path) == []  # refused before any work


def test_the_generator_refuses_to_append_to_or_use_files_of_another_env(made, tmp_path):
    before = open(made["mountaincar_db"], "rb").read()
    with pytest.raises(db.PreferencesDBError, match="made for MountainCar-v0, not CartPole-v1; pass --env-id MountainCar-v0"):
        generate(made["mountaincar_db"], "--env-id", "CartPole-v1", "--append", *GEN)
    with pytest.raises(db.PreferencesDBError, match="made for MountainCar-v0, not MovingDot-v0"):
        generate(made["mountaincar_db"], "--append", "--n-segments", 40, "--n-comparisons", 20)
    assert open(made["mountaincar_db"], "rb").read() == before
    with pytest.raises(gen.InputFileError, match="--policy: .*made for CartPole-v1, not MountainCar-v0"):
        generate(tmp_path / "p.db", "--env-id", "MountainCar-v0", "--policy", made["cartpole_agent"], *GEN)
    assert not (tmp_path / "p.db").exists()
    # the same env appends, with its own agent's segments
    generate(made["mountaincar_db"], "--env-id", "MountainCar-v0", "--append", "--policy", made["mountaincar_agent"], *GEN, "--seed", 2)
    assert len(db.read_metadata(made["mountaincar_db"])["generator_runs"]) == 2


# --- PPO on a learned reward, in an env that terminates ----------------------------------------

def action_reward_model(path, spec, r_null, r_other, reward_stats, r_absorbing=0.0, r_terminal=None):
    """A state-action model for a two-action env whose reward is ``r_null`` for action 0 (the
    null action), ``r_other`` for action 1, whatever the observation, and ``r_absorbing`` in the
    absorbing state; with ``r_terminal``, a terminal input that adds it on the step that ends the episode."""
    units = 3 if r_terminal is None else 4
    model = rm.for_env(spec, ensemble_size=1, hidden_size=units, form="state-action", activation="relu", terminal_input=units == 4)
    with torch.no_grad():
        for layer in (model.net[0], model.net[2], model.net[4]):
            layer.weight.zero_()
            layer.bias.zero_()
        d = spec.obs_dim  # the features: the observation, the one-hot action, the absorbing flag (and the terminal one)
        for unit in range(units):
            model.net[0].weight[0, d + unit, unit] = model.net[2].weight[0, unit, unit] = 1.0
        model.net[4].weight[0, :, 0] = torch.tensor([r_null, r_other, r_absorbing, *([] if r_terminal is None else [r_terminal])])
    model.reward_stats = reward_stats
    rm.save(model, str(path), env_params=spec.params())
    return str(path)


def test_a_new_reward_model_sees_the_absorbing_state_as_one_input():
    """Off the dot the steps after a termination are one state: whatever o_T and the action, the
    network's input is (0, ..., 0, 1), so the learned reward there is one number (DAC's absorbing state)."""
    model = rm.for_env(envs.spec("CartPole-v1"), ensemble_size=2, form="state-action")
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    actions = np.array([0, 1, 0, 1, 0, 1])
    absorbing = np.array([False, False, False, True, True, True])
    features = model.features(obs, actions, absorbing).numpy()
    assert features.shape == (6, 4 + 2 + 1)
    np.testing.assert_array_equal(features[3:], np.tile([0, 0, 0, 0, 0, 0, 1], (3, 1)))
    assert (features[:3, -1] == 0).all() and np.abs(features[:3, :4]).sum() > 0
    rewards = model.reward(obs, actions, obs, absorbing)
    assert np.ptp(rewards[3:]) == 0 and np.ptp(rewards[:3]) > 0
    assert not rm.for_env(envs.spec("MovingDot-v0")).absorbing_state  # the dot never terminates: its inputs are as before


def test_segments_after_the_end_hold_the_terminal_observation_only(tmp_path):
    """--after-end-share: that share of the segments whose episode terminated start at its end, so
    that a teacher is asked whether having ended beats a live clip; the others are as without it."""
    flags = ("--env-id", "CartPole-v1", "--n-segments", 400, "--n-comparisons", 200, "--segment-length", 10)
    plain = db.load_comparisons(generate(tmp_path / "plain.db", *flags))
    assert not plain.absorbing1[:, 0].any()
    c = db.load_comparisons(generate(tmp_path / "after.db", *flags, "--after-end-share", 0.5))
    after = c.absorbing1.all(1)
    assert 0.35 < after.mean() < 0.65  # random CartPole episodes all terminate long before the horizon
    assert not c.terminal1[after].any() and np.all(c.rewards1[after] == 0) and np.all(c.actions1[after] == 0)
    np.testing.assert_array_equal(c.obs1[after], np.repeat(c.obs1[after][:, :1], 11, 1))  # the terminal observation throughout
    fallen = (np.abs(c.obs1[after][:, 0, 0]) > 2.4) | (np.abs(c.obs1[after][:, 0, 2]) > 12 * 2 * np.pi / 360)
    assert fallen.all()
    assert not c.absorbing1[~after, 0].any()  # the others start in their episode, as without the flag


def test_the_terminal_input_flags_the_step_that_ends_the_episode():
    """With terminal_input, a live step's features gain one column, 1 where that step ended the
    episode; the absorbing state stays one input whatever the flag; segments derive it from their steps."""
    model = rm.for_env(envs.spec("CartPole-v1"), form="state-action", terminal_input=True)
    obs = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    actions = np.array([0, 1, 0, 0])
    features = model.features(obs, actions, np.array([False, False, True, True]), np.array([False, True, False, True])).numpy()
    assert features.shape == (4, 4 + 2 + 2)
    np.testing.assert_array_equal(features[:, -1], [0, 1, 0, 0])
    np.testing.assert_array_equal(features[2], features[3])  # the absorbing state ignores the flag
    np.testing.assert_array_equal(model.features(obs, actions)[:, -1].numpy(), 0)  # not given: no step ended it
    inputs = model.segment_inputs(np.zeros((1, 4, 4), np.float32), np.zeros((1, 3), np.int64), np.array([[False, False, True]]),
                                  np.array([[False, True, False]]))
    np.testing.assert_array_equal(inputs[0, :, -1].numpy(), [0, 1, 0])
    with pytest.raises(ValueError, match="terminal_input needs the state-action form"):
        rm.for_env(envs.spec("CartPole-v1"), form="potential", terminal_input=True)
    with pytest.raises(SystemExit):
        trm.parse_args(["--terminal-input"])  # the dot never terminates


def test_the_terminal_input_puts_a_crash_on_the_crash_step(tmp_path):
    """LunarLander's random clips mostly end in a crash (-100 on one step). Told which step ended the
    episode, the model learns the crash there; without it, the same labels are as well explained by a
    low absorbing state after every live step, and the learned reward of the steps is unrelated to
    the env's (docs/other_envs.md)."""
    path = generate(tmp_path / "ll.db", "--env-id", "LunarLander-v3", "--n-segments", 600, "--n-comparisons", 300)
    c = db.load_comparisons(path)
    crash, alive = c.terminal1 & (c.rewards1 < -50), ~c.absorbing1 & ~c.terminal1
    assert crash.sum() >= 30
    seen = {}
    for flag in ("--terminal-input", "--no-terminal-input"):
        summary = train(path, tmp_path / f"{flag}.pt", "--env-id", "LunarLander-v3", flag, "--max-steps", 300)
        model = rm.load(str(tmp_path / f"{flag}.pt"), env_spec=envs.spec("LunarLander-v3"))
        learned = rm.transform_rewards(trm._step_rewards(model, c.obs1, c.actions1, c.absorbing1, c.terminal1), "normalize", model.normalization())
        seen[flag] = (summary["reward_correlation"], learned[crash].mean() - learned[alive].mean())
    assert seen["--terminal-input"][0] > 0.6 and seen["--terminal-input"][0] > seen["--no-terminal-input"][0] + 0.3, seen
    assert seen["--terminal-input"][1] < -4 and seen["--no-terminal-input"][1] > -2, seen  # the crash, in std of the learned reward


@pytest.mark.parametrize("transform, r_null, r_absorbing, stats, r_terminal, learned_null, learned_other, learned_absorbing, learned_terminal", [
    ("normalize", 1.0, 3.0, (0.5, 2.0), None, -1.0, -2.0, 0.0, 0.0),  # (r - r_absorbing) / 2: the absorbing state pays 0
    ("clip", 3.0, -2.0, None, None, 1.0, -1.0, -1.0, 0.0),
    ("normalize", 1.0, 3.0, (0.5, 2.0), 5.0, -1.0, -2.0, 0.0, 2.5),  # the terminal input: the step that ends the episode pays 5 / 2 more
])
def test_a_termination_pays_the_absorbing_states_learned_reward_for_ever(tmp_path, monkeypatch, transform, r_null, r_absorbing, stats, r_terminal,
                                                                         learned_null, learned_other, learned_absorbing, learned_terminal):
    """The reward GAE sees at a terminal step is the step's learned reward (with the terminal input:
    the model told that this step ended the episode) plus gamma / (1 - gamma) r(absorbing state),
    transformed as every other step's (ppo_rlhf.py); the normalize transform shifts the learned
    reward so that the absorbing state's is 0."""
    path = action_reward_model(tmp_path / "rm.pt", CARTPOLE, r_null, -1.0, stats, r_absorbing, r_terminal)
    seen = []
    original = ppo.gae

    def recording_gae(rewards, values, dones, next_value, gamma, lam):
        seen.append((rewards.copy(), dones.copy(), gamma))
        return original(rewards, values, dones, next_value, gamma, lam)

    monkeypatch.setattr(ppo, "gae", recording_gae)
    summary = run_ppo(tmp_path / "agent.pt", "--env-id", "CartPole-v1", "--rlhf", "--reward-model", path, "--reward-transform", transform,
                      "--total-timesteps", 256)
    assert finite_numbers(summary["greedy"]) and finite_numbers(summary["sampled"])
    rewards, dones, gamma = (np.concatenate([s[i] for s in seen]) if i < 2 else seen[0][2] for i in range(3))
    assert 3 <= dones.sum() < 200  # CartPole ends within the rollouts; nothing reaches the 500-step limit here
    tail = gamma / (1 - gamma) * learned_absorbing + learned_terminal
    assert set(np.unique(rewards[~dones]).tolist()) <= {learned_null, learned_other}
    terminal = rewards[dones]
    assert np.all(np.isclose(terminal, learned_null + tail, rtol=1e-5) | np.isclose(terminal, learned_other + tail, rtol=1e-5)), terminal


def test_the_env_reward_has_no_absorbing_tail(tmp_path, monkeypatch):
    seen = []
    original = ppo.gae
    monkeypatch.setattr(ppo, "gae", lambda rewards, *rest: seen.append(rewards.copy()) or original(rewards, *rest))
    run_ppo(tmp_path / "agent.pt", "--env-id", "CartPole-v1", "--total-timesteps", 256)
    assert np.all(np.concatenate(seen) == 1.0)  # CartPole's +1 a step, the terminal one too


def test_normalizing_needs_the_models_reward_statistics(tmp_path):
    path = action_reward_model(tmp_path / "rm.pt", CARTPOLE, 1.0, -1.0, None)
    with pytest.raises(rm.RewardModelError, match="no reward statistics"):
        run_ppo(tmp_path / "agent.pt", "--env-id", "CartPole-v1", "--rlhf", "--reward-model", path)
    run_ppo(tmp_path / "agent.pt", "--env-id", "CartPole-v1", "--rlhf", "--reward-model", path, "--reward-transform", "clip",
            "--total-timesteps", 256)


# --- running observation statistics (--norm-obs) ------------------------------------------------

def test_running_observation_statistics_are_the_data_s():
    agent = agent_lib.for_env(envs.spec("Pendulum-v1"), norm_obs=True)
    rng = np.random.default_rng(0)
    batches = [rng.normal([1.0, -2.0, 5.0], [0.5, 2.0, 3.0], size=(n, 3)) for n in (50, 70)]
    for batch in batches:
        agent.update_obs_stats(batch)
    data = np.concatenate(batches)
    assert float(agent.obs_count) == pytest.approx(120 + 1e-4)
    np.testing.assert_allclose(agent.obs_mean.numpy(), data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(agent.obs_var.numpy(), data.var(0), rtol=1e-4)
    np.testing.assert_allclose(agent.obs_scale.numpy(), 1 / np.sqrt(data.var(0)), rtol=1e-4)
    # the numpy copy normalizes and clips as the torch networks do
    obs = np.concatenate([data[:5], [[1e3, -1e3, 0.0]]]).astype(np.float32)  # the last one is clipped to +-10
    outputs, values = agent.numpy_policy()(obs)
    with torch.no_grad():
        x = agent.normalize(torch.as_tensor(obs))
        assert x.abs().max() == agent_lib.OBS_CLIP
        np.testing.assert_allclose(outputs, agent.actor(x).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(values, agent.get_value(torch.as_tensor(obs)).numpy(), rtol=1e-5, atol=1e-5)


def test_a_norm_obs_agent_saves_and_reloads_its_running_statistics(tmp_path):
    pendulum = envs.spec("Pendulum-v1")
    summary = run_ppo(tmp_path / "agent.pt", "--env-id", "Pendulum-v1", "--norm-obs")
    agent, checkpoint = agent_lib.load(str(tmp_path / "agent.pt"), env_spec=pendulum)
    assert agent.norm_obs and checkpoint["config"]["norm_obs"] and checkpoint["args"]["norm_obs"]
    assert float(agent.obs_count) == pytest.approx(512 + 1e-4)  # every rollout's observations
    assert not np.allclose(agent.obs_var.numpy(), 1.0) and not np.allclose(agent.obs_mean.numpy(), 0.0)
    # the saved agent is the evaluated one: its statistics came back with it
    assert agent_lib.evaluate(agent, pendulum, 2, 100_000, greedy=True) == summary["greedy"]
    assert agent_lib.evaluate(agent, pendulum, 2, 100_000, greedy=False) == summary["sampled"]
    agent_lib.save(str(tmp_path / "again.pt"), agent, pendulum.params())
    again = agent_lib.load(str(tmp_path / "again.pt"), env_spec=pendulum)[0]
    obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32) * [1, 1, 8]
    for a, b in zip(agent.numpy_policy()(obs), again.numpy_policy()(obs)):
        np.testing.assert_array_equal(a, b)
    # without the statistics (a fresh agent's) the same weights compute another policy
    fresh = agent_lib.Agent(**checkpoint["config"])
    fresh.load_state_dict({k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("obs_")}, strict=False)
    assert not np.allclose(fresh.numpy_policy()(obs)[0], agent.numpy_policy()(obs)[0])


# --- a user's env by module, and Box actions as the env executed them ----------------------------

def test_the_refusal_of_a_users_env_names_an_env_id_that_works(tmp_path):
    path = generate(tmp_path / "reach.db", "--env-id", "custom_envs:TestReach-v0", *GEN)
    with pytest.raises(envs.EnvError) as e:
        train(path, tmp_path / "rm.pt")  # the default env, the dot
    assert "pass --env-id custom_envs:TestReach-v0" in str(e.value)


def test_policy_segments_of_a_box_action_env_hold_actions_in_the_box(tmp_path):
    pendulum = envs.spec("Pendulum-v1")
    run_ppo(tmp_path / "agent.pt", "--env-id", "Pendulum-v1", "--total-timesteps", 256, "--num-steps", 64)
    path = generate(tmp_path / "p.db", "--env-id", "Pendulum-v1", "--policy", tmp_path / "agent.pt", *GEN, "--seed", 4)
    c = db.load_comparisons(path, statuses=ALL_STATUSES)
    actions = np.concatenate([c.actions1, c.actions2])  # an untrained agent: N(0, 1) draws, 2.3% of them beyond +-2
    assert np.all((actions >= pendulum.action_low) & (actions <= pendulum.action_high)), (actions.min(), actions.max())


def test_the_learned_reward_of_a_box_action_is_that_of_the_action_executed(tmp_path, monkeypatch):
    pendulum = envs.spec("Pendulum-v1")
    model = rm.for_env(pendulum, ensemble_size=1, hidden_size=2, form="state-action", activation="relu")
    with torch.no_grad():  # r(o, a) = relu(a scaled to [-1, 1]): at most 1 for an action in the box
        for layer in (model.net[0], model.net[2], model.net[4]):
            layer.weight.zero_()
            layer.bias.zero_()
        model.net[0].weight[0, 3, 0] = model.net[2].weight[0, 0, 0] = model.net[4].weight[0, 0, 0] = 1.0
    model.reward_stats = (0.0, 1.0)
    rm.save(model, str(tmp_path / "rm.pt"), env_params=pendulum.params())
    seen = []
    original = ppo.gae
    monkeypatch.setattr(ppo, "gae", lambda rewards, *rest: seen.append(rewards.copy()) or original(rewards, *rest))
    run_ppo(tmp_path / "agent.pt", "--env-id", "Pendulum-v1", "--rlhf", "--reward-model", tmp_path / "rm.pt", "--no-norm-reward",
            "--total-timesteps", 256)  # 128 steps an env: no truncation (200), no bootstrap in the rewards
    rewards = np.concatenate(seen)
    assert rewards.min() >= 0 and rewards.max() > 0.5
    assert rewards.max() <= 1 + 1e-6, rewards.max()
