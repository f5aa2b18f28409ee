"""The PPO stage (ppo_rlhf.py): a short run and what it writes, behaviour that follows the reward
actually used (hand-built reward models towards and away from the centre, in both forms),
determinism, the truncation bootstrap in the advantages and the next observation the learned
reward reads at a truncation, the episode bookkeeping, bad flags and bad files."""

import glob
import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hand_built import manhattan_potential_model
from in_process import run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ppo_rlhf as ppo
from rlhf import agent as agent_lib
from rlhf import cli
from rlhf import envs as env_lib
from rlhf import moving_dot as md
from rlhf import reward_model as rm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "ppo_rlhf.py")
DOT = env_lib.spec("MovingDot-v0")

SHORT = ["--total-timesteps", 20000, "--num-envs", 8, "--num-steps", 64, "--eval-episodes", 10]
TAGS = ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
        "charts/normalized_return", "losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl",
        "losses/old_approx_kl", "losses/clipfrac", "losses/explained_variance", "eval/greedy_true_return",
        "eval/greedy_normalized_return", "eval/sampled_true_return", "eval/sampled_normalized_return")


def run(tmp, *flags, save=True):
    """ppo_rlhf.main with everything written under ``tmp``; returns (summary, run folder, agent file)."""
    argv = ["--run-dir", str(tmp / "runs"), "--no-progress", *map(str, flags)]
    if save:
        argv += ["--save-path", str(tmp / "agent.pt")]
    summary = ppo.main(ppo.parse_args(argv))
    runs = glob.glob(str(tmp / "runs" / "MovingDot-v0__*"))
    assert len(runs) == 1
    return summary, runs[0], str(tmp / "agent.pt") if save else os.path.join(runs[0], "agent.pt")


def scalars(run_dir, tag):
    events = EventAccumulator(run_dir, purge_orphaned_data=False)
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def scalar_tags(run_dir):
    events = EventAccumulator(run_dir)
    events.Reload()
    return set(events.Tags()["scalars"])


def hand_built_reward_model(sign=1.0, scale=0.1, sharp=2000.0, gate=5000.0):
    """A one-member state-action reward model (the write-up's r(o, a), tanh) whose weights are written so that it computes
    ``sign`` x (+-1 for a move towards / away from the centre, 0 for noop), i.e. the true reward
    (or its negation) everywhere except at the walls (where the true reward of a bump is 0).

    Layer 1 has two units per move: tanh(sharp (threshold - coordinate) + gate (one_hot - 1)),
    and its mirror, both -1 unless the move is taken; their half-difference is the side of the
    threshold. Layer 2 sums them (small weights: tanh is almost linear), layer 3 undoes the scale.
    """
    model = rm.RewardModel("normalized", ensemble_size=1, hidden_size=8, form="state-action", activation="tanh")
    scaled = lambda v, c: 2 * (v - md.OBS_LOW[c]) / (md.OBS_HIGH[c] - md.OBS_LOW[c]) - 1
    cx, cy = md.CENTRE
    # (action, coordinate, threshold: the action helps on the low side (+1) or the high side (-1))
    rules = [(2, 0, scaled(cx - 0.5, 0), 1), (4, 0, scaled(cx + 0.5, 0), -1),
             (1, 1, scaled(cy - 0.5, 1), 1), (3, 1, scaled(cy + 0.5, 1), -1)]
    w1, b1, w2, w3 = torch.zeros(7, 8), torch.zeros(8), torch.zeros(8, 8), torch.zeros(8, 1)
    for i, (action, coordinate, threshold, low_side) in enumerate(rules):
        for j, s in enumerate((1, -1)):
            unit = 2 * i + j
            w1[coordinate, unit] = -sharp * low_side * s
            w1[2 + action, unit] = gate
            b1[unit] = sharp * low_side * s * threshold - gate
            w2[unit, 0] = s * scale / 2
    w3[0, 0] = sign / scale
    with torch.no_grad():
        model.net[0].weight.copy_(w1[None])
        model.net[0].bias.copy_(b1[None, None])
        model.net[2].weight.copy_(w2[None])
        model.net[2].bias.zero_()
        model.net[4].weight.copy_(w3[None])
        model.net[4].bias.zero_()
    return model.eval()


def manhattan_phi(obs, scale=1.0):
    return -scale * np.abs(np.asarray(obs, dtype=np.float64) - md.CENTRE).sum(-1)


@pytest.fixture(scope="module")
def reward_models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reward_models")
    paths = {}
    for name, sign in (("towards", 1.0), ("away", -1.0)):
        paths[name] = str(tmp / f"{name}.pt")
        rm.save(hand_built_reward_model(sign), paths[name], {"hand_built": name})
    # potential form: phi = -Manhattan / 2 (rewards +-0.5, so clipping leaves them as they are) and its negation
    for name, scale in (("towards_potential", 0.5), ("away_potential", -0.5)):
        paths[name] = str(tmp / f"{name}.pt")
        rm.save(manhattan_potential_model(scale), paths[name], {"hand_built": name})
    return paths


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("short")
    return run(tmp, *SHORT, "--seed", 1, "--capture-video")


# --- a short run on the env reward ----------------------------------------------------------------

def test_short_run_summary_and_agent_file(short_run):
    summary, run_dir, save_path = short_run
    assert summary["global_step"] == 39 * 512  # 20000 // (8 x 64) iterations of 512 steps
    for name in ("greedy", "sampled"):
        result = summary[name]
        assert set(result) == {"true_return", "return_std", "optimal_return", "normalized_return"}
        assert 0 <= result["return_std"] <= md.MAX_EPISODE_STEPS
        assert result["normalized_return"] == pytest.approx(result["true_return"] / result["optimal_return"])
        assert abs(result["true_return"]) <= md.MAX_EPISODE_STEPS
    # the eval starts are fixed: optimal returns of starts 100000..100009, whatever the agent
    envs = md.MovingDotVectorEnv(num_envs=10)
    _, info = envs.reset(seed=100_000)
    assert summary["greedy"]["optimal_return"] == summary["sampled"]["optimal_return"] == info["optimal_return"].mean()
    # 20k steps on the env reward already learn: the bound leaves them a wide margin (docs/testing.md)
    assert summary["greedy"]["normalized_return"] > 0.5
    agent, checkpoint = agent_lib.load(save_path)
    assert isinstance(agent, agent_lib.Agent) and not agent.training
    assert checkpoint["global_step"] == summary["global_step"]
    assert checkpoint["summary"]["greedy"] == summary["greedy"]
    assert checkpoint["args"]["num_envs"] == 8 and checkpoint["args"]["rlhf"] is False
    assert checkpoint["optimizer"] is not None
    # the saved agent is the evaluated one
    assert agent_lib.evaluate(agent, DOT, 10, 100_000, greedy=True) == summary["greedy"]
    assert agent_lib.evaluate(agent, DOT, 10, 100_000, greedy=False) == summary["sampled"]
    # --save-path given: no agent file in the run folder
    assert not os.path.exists(os.path.join(run_dir, "agent.pt"))


def test_short_run_event_files(short_run):
    summary, run_dir, _ = short_run
    assert glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    tags = scalar_tags(run_dir)
    assert set(TAGS) <= tags, set(TAGS) - tags
    assert "charts/learned_return" not in tags  # env reward: nothing learned to report
    # all 8 dots start together and are truncated together after 2000 steps, at global step 16000
    lengths = scalars(run_dir, "charts/episodic_length")
    assert lengths == [(16000, 2000.0)] * 8
    returns = scalars(run_dir, "charts/episodic_return")
    assert [s for s, _ in returns] == [16000] * 8
    values = np.array([v for _, v in returns])
    assert np.all(values == np.round(values)) and np.all(np.abs(values) <= 2000)
    assert len(scalars(run_dir, "charts/normalized_return")) >= 7  # all but a (rare) start at the centre
    # one update entry per iteration, and the learning rate annealed linearly from 2.5e-4
    lr = scalars(run_dir, "charts/learning_rate")
    assert [s for s, _ in lr] == [512 * i for i in range(1, 40)]
    np.testing.assert_allclose([v for _, v in lr], [2.5e-4 * (1 - i / 39) for i in range(39)], rtol=1e-5)
    for tag in ("losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac", "charts/SPS"):
        assert len(scalars(run_dir, tag)) == 39, tag
    entropy = [v for _, v in scalars(run_dir, "losses/entropy")]
    assert entropy[0] == pytest.approx(math.log(5), abs=0.01) and entropy[-1] < entropy[0]
    greedy = scalars(run_dir, "eval/greedy_true_return")
    assert greedy == [(summary["global_step"], pytest.approx(summary["greedy"]["true_return"]))]


def test_same_seed_same_returns(short_run, tmp_path):
    summary, run_dir, save_path = short_run
    again, again_dir, again_path = run(tmp_path, *SHORT, "--seed", 1)
    assert again["greedy"] == summary["greedy"] and again["sampled"] == summary["sampled"]
    assert scalars(again_dir, "charts/episodic_return") == scalars(run_dir, "charts/episodic_return")
    assert [v for _, v in scalars(again_dir, "losses/value_loss")] == [v for _, v in scalars(run_dir, "losses/value_loss")]
    a, b = agent_lib.load(save_path)[0].state_dict(), agent_lib.load(again_path)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_other_seed_other_run(tmp_path):
    small = ["--total-timesteps", 1024, "--num-envs", 8, "--num-steps", 64, "--eval-episodes", 10]
    (one, one_dir, _), (two, two_dir, _) = (run(tmp_path / str(seed), *small, "--seed", seed) for seed in (1, 2))
    assert scalars(one_dir, "losses/value_loss") != scalars(two_dir, "losses/value_loss")
    assert one["sampled"] != two["sampled"]


def test_default_save_path_is_in_the_run_folder(tmp_path):
    summary, run_dir, save_path = run(tmp_path, "--total-timesteps", 256, "--num-envs", 2, "--num-steps", 128,
                                      "--eval-episodes", 1, save=False)
    assert os.path.basename(run_dir).startswith("MovingDot-v0__ppo_rlhf__1__")
    assert agent_lib.load(save_path)[1]["global_step"] == summary["global_step"] == 256
    assert not os.path.exists(os.path.join(run_dir, "agent.gif"))  # no --capture-video, no GIF


def test_runs_named_alike_get_folders_of_their_own(tmp_path, monkeypatch):
    """Two runs with the same env, seed and second (CleanRL's run name) write two folders, not one."""
    ticks = itertools.count()
    monkeypatch.setattr(ppo.time, "time", lambda: 1_800_000_000.0 + 1e-6 * next(ticks))  # both runs start in one second
    for _ in range(2):
        ppo.main(ppo.parse_args(["--run-dir", str(tmp_path / "runs"), "--no-progress", "--total-timesteps", "256", "--num-envs", "2",
                                 "--num-steps", "128", "--eval-episodes", "1"]))
    folders = sorted(glob.glob(str(tmp_path / "runs" / "*")))
    assert [os.path.basename(f) for f in folders] == ["MovingDot-v0__ppo_rlhf__1__1800000000", "MovingDot-v0__ppo_rlhf__1__1800000000_2"]
    assert all(scalars(f, "charts/SPS") for f in folders)  # each holds its own run's events
    assert cli.claim_run_dir(str(tmp_path), "x") == "x" and cli.claim_run_dir(str(tmp_path), "x") == "x_2"


# --- behaviour follows the reward actually used -----------------------------------------------------

@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_hand_built_reward_models_compute_the_true_reward_or_its_negation(sign, tmp_path):
    model = hand_built_reward_model(sign)
    table = rm.reward_table(model)
    interior = (md.POSITIONS[:, 0] > md.X_MIN) & (md.POSITIONS[:, 0] < md.X_MAX) & \
        (md.POSITIONS[:, 1] > md.Y_MIN) & (md.POSITIONS[:, 1] < md.Y_MAX)
    np.testing.assert_allclose(table[interior], sign * md.TRUE_REWARD[interior], atol=0.01)
    assert rm.action_order_agreement(table) == pytest.approx(0.998 if sign > 0 else 0.002, abs=0.002)
    # and it survives the model file
    path = str(tmp_path / "m.pt")
    rm.save(model, path)
    np.testing.assert_array_equal(rm.reward_table(rm.load(path)), table)


@pytest.mark.parametrize("scale", [0.5, -0.5])
def test_hand_built_potential_models_compute_the_true_reward_or_its_negation_everywhere(scale, tmp_path):
    model = manhattan_potential_model(scale)
    table = rm.reward_table(model)
    np.testing.assert_allclose(table, scale * md.TRUE_REWARD, atol=1e-4)  # walls included: a bump pays 0, as in the env
    assert rm.action_order_agreement(table) == (1.0 if scale > 0 else 0.0)
    obs = md.OBS_TABLE[::1013]
    next_obs = md.OBS_TABLE[::1013][::-1].copy()  # any o', not only a neighbour: phi(o') - phi(o)
    np.testing.assert_allclose(model.reward(obs, np.zeros(len(obs), dtype=np.int64), next_obs),
                               manhattan_phi(next_obs, scale) - manhattan_phi(obs, scale), atol=1e-3)
    path = str(tmp_path / "m.pt")
    rm.save(model, path)
    np.testing.assert_array_equal(rm.reward_table(rm.load(path)), table)


@pytest.mark.parametrize("name", ["towards", "away", "towards_potential", "away_potential"])
def test_rlhf_behaviour_follows_the_learned_reward(reward_models, tmp_path, name):
    # each bound leaves a wide margin to what seeds 1-3 reach on its side of 0 (40k steps, --preset fast, the default
    # --reward-transform normalize; docs/testing.md)
    summary, run_dir, _ = run(tmp_path, "--preset", "fast", "--total-timesteps", 40000, "--eval-episodes", 10,
                              "--rlhf", "--reward-model", reward_models[name], "--seed", 1)
    if name.startswith("towards"):
        assert summary["greedy"]["true_return"] > 50, summary
        assert summary["greedy"]["normalized_return"] > 0.6
    else:
        assert summary["greedy"]["true_return"] < -20, summary
        assert summary["sampled"]["true_return"] < -20, summary
    tags = scalar_tags(run_dir)
    assert "charts/learned_return" in tags and "charts/episodic_return" in tags
    learned = scalars(run_dir, "charts/learned_return")
    true = scalars(run_dir, "charts/episodic_return")
    assert [s for s, _ in learned] == [s for s, _ in true] == [32000] * 16
    # episodic_return stays the true return: it disagrees with the learned one for the away model
    mean_learned, mean_true = np.mean([v for _, v in learned]), np.mean([v for _, v in true])
    if name.startswith("away"):
        assert mean_learned > mean_true
    agent_file = agent_lib.load(str(tmp_path / "agent.pt"))[1]
    assert agent_file["args"]["rlhf"] is True and agent_file["args"]["reward_model"] == reward_models[name]
    assert agent_file["args"]["reward_transform"] == "normalize"  # the default


@pytest.mark.parametrize("name", ["towards", "towards_potential"])
def test_learned_return_with_clip_and_normalize(reward_models, tmp_path, name):
    """One dot, one rollout of exactly one episode: the trajectory is the same whatever the reward,
    so the normalized learned return is the clipped one (the identity here: the model's rewards
    lie in (-1, 1)) shifted and scaled by the grid's mean and spread."""
    flags = ["--num-envs", 1, "--num-steps", 2000, "--total-timesteps", 2000, "--num-minibatches", 1,
             "--eval-episodes", 1, "--rlhf", "--reward-model", reward_models[name]]
    results = {t: run(tmp_path / t, *flags, "--reward-transform", t) for t in ("clip", "normalize")}
    true = {t: scalars(d, "charts/episodic_return") for t, (_, d, _) in results.items()}
    learned = {t: scalars(d, "charts/learned_return") for t, (_, d, _) in results.items()}
    assert true["clip"] == true["normalize"] and len(true["clip"]) == 1 and true["clip"][0][0] == 2000
    table = rm.reward_table(rm.load(reward_models[name]))
    assert np.abs(table).max() < 1
    mean, std = float(table.mean()), float(table.std()) + 1e-8
    expected = (learned["clip"][0][1] - 2000 * mean) / std
    assert learned["normalize"][0][1] == pytest.approx(expected, rel=1e-4, abs=1e-2)
    assert learned["normalize"][0][1] != pytest.approx(learned["clip"][0][1], abs=1)
    if name == "towards":  # the true reward but for wall bumps (learned -1, true 0)
        assert learned["clip"][0][1] <= true["clip"][0][1] + 2000 * 0.01
    else:  # half the true reward on every step, walls included: the episode telescopes to (M(first) - M(last)) / 2
        assert learned["clip"][0][1] == pytest.approx(0.5 * true["clip"][0][1], abs=0.05)


# --- the truncation bootstrap -----------------------------------------------------------------------

def recording_env(episode):
    """A MovingDotVectorEnv class whose episodes last ``episode`` steps (whatever ppo_rlhf asks)
    and whose instances log every observation, reward, truncation and final observation."""

    class RecordingEnv(md.MovingDotVectorEnv):
        made = []

        def __init__(self, num_envs=1, max_episode_steps=episode, render_mode=None):
            super().__init__(num_envs, episode, render_mode)
            self.log = {"obs": [], "rewards": [], "truncated": [], "final_obs": []}
            RecordingEnv.made.append(self)

        def reset(self, **kwargs):
            obs, info = super().reset(**kwargs)
            self.log["obs"].append(obs.copy())
            return obs, info

        def step(self, actions):
            obs, rewards, terminated, truncated, info = super().step(actions)
            for key, value in (("obs", obs), ("rewards", rewards), ("truncated", truncated),
                               ("final_obs", info.get("final_obs", np.zeros_like(obs)))):
                self.log[key].append(np.array(value, copy=True))
            return obs, rewards, terminated, truncated, info

    return RecordingEnv


def test_advantages_bootstrap_from_the_value_of_the_final_observation(monkeypatch, tmp_path):
    """Episodes of 5 steps, one rollout of 12 steps in 3 envs, a value function V(o) known in
    closed form, gamma 0.9, lambda 0.8: the advantages ppo_rlhf computes must equal GAE with
    gamma V(final obs) added on the truncation steps (and not V of the next episode's first obs)."""
    episode, T, N, gamma, lam = 5, 12, 3, 0.9, 0.8
    value_fn = lambda obs: 0.05 * obs[..., 0] - 0.02 * obs[..., 1] + 1.0
    RecordingEnv = recording_env(episode)

    class KnownValueAgent(agent_lib.Agent):
        def numpy_policy(self):
            policy = super().numpy_policy()
            return lambda obs: (policy(obs)[0], value_fn(obs))

    captured = []

    def recording_gae(*args):
        captured.append(real_gae(*args))
        return captured[-1]

    real_gae = ppo.gae
    monkeypatch.setattr(md, "MovingDotVectorEnv", RecordingEnv)
    monkeypatch.setattr(agent_lib, "Agent", KnownValueAgent)
    monkeypatch.setattr(ppo, "gae", recording_gae)
    summary, run_dir, _ = run(tmp_path, "--num-envs", N, "--num-steps", T, "--total-timesteps", T * N,
                              "--num-minibatches", 2, "--gamma", gamma, "--gae-lambda", lam, "--eval-episodes", 2)
    assert len(captured) == 1  # one iteration
    log = {key: np.array(value, dtype=np.float64) for key, value in RecordingEnv.made[0].log.items()}
    obs, rewards, truncated, final_obs = log["obs"][:T + 1], log["rewards"][:T], log["truncated"][:T] > 0, log["final_obs"][:T]
    assert truncated[episode - 1].all() and truncated[2 * episode - 1].all() and truncated.sum() == 2 * N
    # the observation after a truncation is already the next episode's start, not the final one
    assert not np.array_equal(obs[episode], final_obs[episode - 1])

    def gae(final_values):
        values, advantages, last = value_fn(obs), np.zeros((T, N)), np.zeros(N)
        for t in reversed(range(T)):
            not_done = 1.0 - truncated[t]
            delta = rewards[t] + gamma * final_values[t] * truncated[t] + gamma * values[t + 1] * not_done - values[t]
            last = delta + gamma * lam * not_done * last
            advantages[t] = last
        return advantages

    expected = gae(value_fn(final_obs))
    np.testing.assert_allclose(captured[0], expected, rtol=1e-5, atol=1e-4)
    # the check can tell: no bootstrap, or the bootstrap from the wrong observation, would differ
    assert not np.allclose(captured[0], gae(np.zeros((T, N))), atol=0.1)
    assert not np.allclose(captured[0], gae(value_fn(obs[1:])), atol=0.1)
    # and the logged episodes are the env's: 5 steps each, returns summed per dot
    lengths = scalars(run_dir, "charts/episodic_length")
    assert [v for _, v in lengths] == [5.0] * (2 * N)
    expected_returns = [rewards[start:start + episode, i].sum() for i in range(N) for start in (0, episode)]
    assert [v for _, v in scalars(run_dir, "charts/episodic_return")] == expected_returns
    assert [s for s, _ in lengths] == [(t + 1) * N for i in range(N) for t in (episode - 1, 2 * episode - 1)]


@pytest.mark.parametrize("transform", rm.TRANSFORMS)
def test_the_learned_reward_at_a_truncation_is_that_of_the_final_move(monkeypatch, tmp_path, reward_models, transform):
    """Episodes of 5 steps, one rollout of 12 steps in 3 envs, the potential model phi = -Manhattan / 2:
    r(o_t, a_t, o_t+1) on a truncation step must be that of the episode's last move, not one into
    the next episode's first observation (which the env already returns there). Then every
    episode's learned return telescopes to half its true return."""
    episode, T, N = 5, 12, 3
    RecordingEnv = recording_env(episode)
    monkeypatch.setattr(md, "MovingDotVectorEnv", RecordingEnv)
    _, run_dir, _ = run(tmp_path, "--num-envs", N, "--num-steps", T, "--total-timesteps", T * N, "--num-minibatches", 2,
                        "--eval-episodes", 2, "--rlhf", "--reward-model", reward_models["towards_potential"],
                        "--reward-transform", transform)
    log = {key: np.array(value, dtype=np.float64) for key, value in RecordingEnv.made[0].log.items()}
    obs, rewards, truncated, final_obs = log["obs"][:T + 1], log["rewards"][:T], log["truncated"][:T] > 0, log["final_obs"][:T]
    assert truncated[episode - 1].all() and truncated[2 * episode - 1].all() and truncated.sum() == 2 * N
    # the check can tell: there the env's observation is the next episode's start, and phi of it differs
    assert not np.array_equal(obs[episode], final_obs[episode - 1])
    wrong = manhattan_phi(obs[episode], 0.5) - manhattan_phi(obs[episode - 1], 0.5)
    assert not np.allclose(wrong, 0.5 * rewards[episode - 1], atol=0.1)
    # the logged learned returns are the transformed rewards summed per episode: half the true ones
    true_returns = [v for _, v in scalars(run_dir, "charts/episodic_return")]
    learned_returns = np.array([v for _, v in scalars(run_dir, "charts/learned_return")])
    assert true_returns == [rewards[start:start + episode, i].sum() for i in range(N) for start in (0, episode)]
    if transform == "normalize":
        table = rm.reward_table(rm.load(reward_models["towards_potential"]))
        learned_returns = learned_returns * (float(table.std()) + 1e-8) + episode * float(table.mean())
    np.testing.assert_allclose(learned_returns, 0.5 * np.array(true_returns), atol=1e-3)


# --- episode bookkeeping ----------------------------------------------------------------------------

def brute_force_episode_sums(values, dones, carry):
    sums, ts, envs, carry = [], [], [], carry.astype(np.float64).copy()
    for env in range(values.shape[1]):
        for t in range(values.shape[0]):
            carry[env] += values[t, env]
            if dones[t, env]:
                sums.append(carry[env]), ts.append(t), envs.append(env)
                carry[env] = 0.0
    return np.array(sums), np.array(ts, dtype=int), np.array(envs, dtype=int), carry


def test_episode_sums_by_hand():
    values = np.array([[1.0, 10.0, 100.0],
                       [2.0, 20.0, 200.0],
                       [3.0, 30.0, 300.0],
                       [4.0, 40.0, 400.0]])
    dones = np.array([[False, False, True],
                      [False, True, False],
                      [False, False, True],
                      [False, False, False]])
    carry = np.array([0.5, 5.0, 50.0])
    sums, t, env, new_carry = ppo.episode_sums(values, dones, carry)
    # env 0: no end, carries 0.5 + 10; env 1: one end at t=1 (5 + 10 + 20), then 30 + 40 open;
    # env 2: ends at t=0 (50 + 100) and t=2 (200 + 300), then 400 open
    np.testing.assert_allclose(sums, [35.0, 150.0, 500.0])
    np.testing.assert_array_equal(t, [1, 0, 2])
    np.testing.assert_array_equal(env, [1, 2, 2])
    np.testing.assert_allclose(new_carry, [10.5, 70.0, 400.0])
    # no episode ends at all
    sums, t, env, new_carry = ppo.episode_sums(values, np.zeros_like(dones), carry)
    assert len(sums) == len(t) == len(env) == 0
    np.testing.assert_allclose(new_carry, carry + values.sum(0))
    # an end on the last step leaves nothing open
    last = np.zeros_like(dones)
    last[-1] = True
    sums, _, _, new_carry = ppo.episode_sums(values, last, carry)
    np.testing.assert_allclose(sums, carry + values.sum(0))
    np.testing.assert_array_equal(new_carry, [0.0, 0.0, 0.0])


@pytest.mark.parametrize("seed", range(6))
def test_episode_sums_match_a_brute_force_loop(seed):
    rng = np.random.default_rng(seed)
    T, N = rng.integers(1, 30), rng.integers(1, 6)
    values = rng.normal(size=(T, N))
    dones = rng.random((T, N)) < [0.0, 0.05, 0.3, 1.0, 0.5][seed % 5]
    carry = rng.normal(size=N)
    expected = brute_force_episode_sums(values, dones, carry)
    got = ppo.episode_sums(values, dones, carry)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-10)
    # chained over rollouts, the sums equal those of the whole stream
    values2, dones2 = rng.normal(size=(T, N)), rng.random((T, N)) < 0.2
    first = ppo.episode_sums(values, dones, carry)
    second = ppo.episode_sums(values2, dones2, first[3])
    whole = brute_force_episode_sums(np.r_[values, values2], np.r_[dones, dones2], carry)
    both = np.r_[first[0], second[0]]
    order = np.lexsort((np.r_[first[1], second[1] + T], np.r_[first[2], second[2]]))
    np.testing.assert_allclose(both[order], whole[0], atol=1e-10)
    np.testing.assert_allclose(second[3], whole[3], atol=1e-10)


# --- bad flags, bad files ---------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [
    ["--num-envs", "0"],
    ["--learning-rate", "-1"],
    ["--learning-rate", "nan"],
    ["--num-envs", "3", "--num-steps", "5", "--num-minibatches", "4"],
    ["--gamma", "0"],
    ["--gamma", "1.5"],
    ["--gae-lambda", "1.5"],
    ["--total-timesteps", "0"],
    ["--clip-coef", "0"],
    ["--ent-coef", "-0.1"],
    ["--preset", "turbo"],
    ["--reward-transform", "tanh"],
])
def test_bad_flags_exit_with_code_2(flags, capsys):
    with pytest.raises(SystemExit) as e:
        ppo.parse_args(flags)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_presets_and_derived_sizes():
    args = ppo.parse_args(["--num-envs", "3", "--num-steps", "5", "--num-minibatches", "5"])
    assert (args.batch_size, args.minibatch_size, args.num_iterations) == (15, 3, 1_000_000 // 15)
    fast = ppo.parse_args(["--preset", "fast"])
    assert (fast.num_envs, fast.num_steps, fast.total_timesteps, fast.learning_rate) == (16, 64, 150_000, 1e-3)
    assert fast.reward_transform == ppo.parse_args([]).reward_transform == "normalize"  # the default, preset or not
    assert ppo.parse_args(["--reward-transform", "clip"]).reward_transform == "clip"
    assert fast.batch_size == 1024 and fast.minibatch_size == 512
    mixed = ppo.parse_args(["--num-envs", "4", "--preset", "fast"])  # a flag given wins over the preset
    assert mixed.num_envs == 4 and mixed.num_steps == 64 and mixed.batch_size == 256
    assert ppo.parse_args(["--total-timesteps", "10"]).num_iterations == 1


def test_missing_reward_model_fails_before_any_work(tmp_path):
    missing = str(tmp_path / "nope.pt")
    with pytest.raises(rm.RewardModelError, match="not found") as e:
        run(tmp_path, "--rlhf", "--reward-model", missing)
    assert missing in str(e.value)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "agent.pt").exists()


def test_a_foreign_file_as_reward_model_fails_clearly(tmp_path):
    agent_file = str(tmp_path / "agent_file.pt")
    agent_lib.save(agent_file, agent_lib.Agent(), DOT.params())
    text = tmp_path / "notes.pt"
    text.write_text("not a model\n")
    for path, fragment in ((agent_file, "'moving-dot-ppo-agent'"), (str(text), "not a readable reward model file")):
        with pytest.raises(rm.RewardModelError) as e:
            run(tmp_path, "--rlhf", "--reward-model", path)
        assert path in str(e.value) and fragment in str(e.value)
    assert not (tmp_path / "runs").exists()


def test_an_unused_reward_model_is_not_loaded(tmp_path):
    summary, _, _ = run(tmp_path, "--reward-model", str(tmp_path / "nope.pt"), "--total-timesteps", 128,
                        "--num-envs", 1, "--num-steps", 128, "--eval-episodes", 1)
    assert summary["global_step"] == 128


def test_existing_save_path_without_overwrite_fails_before_training(tmp_path):
    (tmp_path / "agent.pt").write_bytes(b"precious")
    with pytest.raises(agent_lib.AgentFileError, match="already exists"):
        run(tmp_path, "--total-timesteps", 128, "--num-envs", 1, "--num-steps", 128)
    assert (tmp_path / "agent.pt").read_bytes() == b"precious"
    assert not (tmp_path / "runs").exists()
    run(tmp_path, "--total-timesteps", 128, "--num-envs", 1, "--num-steps", 128, "--eval-episodes", 1, "--overwrite")
    assert agent_lib.load(str(tmp_path / "agent.pt"))[1]["global_step"] == 128


def test_cli_bad_reward_model_exits_with_a_one_line_error(tmp_path):
    (tmp_path / "notes.pt").write_text("hello\n")
    for path, fragment in ((tmp_path / "nope.pt", "not found"), (tmp_path / "notes.pt", "not a readable")):
        # a small budget: in this process (tests/in_process.py) a refusal that regressed would otherwise train 1M steps
        result = run_script(SCRIPT, "--rlhf", "--reward-model", path, "--no-progress", "--run-dir", tmp_path / "runs",
                            "--total-timesteps", "512", cwd=tmp_path)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("ppo_rlhf.py: error:") and fragment in lines[0] and str(path) in lines[0]
    assert not (tmp_path / "runs").exists()


def test_cli_bad_flag_exits_with_code_2(tmp_path):  # the script's one test in a process of its own
    result = subprocess.run([sys.executable, SCRIPT, "--num-envs", "0", "--run-dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "--num-envs" in result.stderr and "error:" in result.stderr
    assert os.listdir(tmp_path) == []


# --- video ------------------------------------------------------------------------------------------

def test_capture_video_writes_a_gif(short_run):
    from PIL import Image

    summary, run_dir, _ = short_run
    gif = os.path.join(run_dir, "agent.gif")
    with open(gif, "rb") as f:
        assert f.read(4) == b"GIF8"
    with Image.open(gif) as image:
        assert image.size == (2 * md.WIDTH, 2 * md.HEIGHT)
        # the greedy agent reaches the centre: the GIF stops 40 steps later (every 2nd step a frame)
        assert 1 < image.n_frames < 500
    assert "path" not in summary["greedy"]  # the positions go into the GIF, not the summary


def test_make_gif_stops_40_steps_after_the_centre(tmp_path):
    from PIL import Image

    start = md.CENTRE - [10, 0]
    path = np.array([start + [min(t, 10), 0] for t in range(2001)], dtype=np.float32)  # centre at step 10
    gif = str(tmp_path / "a.gif")
    ppo.make_gif(gif, path)
    with Image.open(gif) as image:
        first = np.array(image.convert("RGB"))
        durations = []
        for frame in range(image.n_frames):
            image.seek(frame)
            durations.append(image.info["duration"])
    assert sum(durations) == 40 * 25  # positions 0..49, every 2nd one, 40 ms each
    x, y = (2 * start).tolist()  # frames are drawn at twice the size
    assert first[y, x].min() == 255 and first[2 * 10, 2 * 10].max() == 0  # the dot at the start, black elsewhere


# --- the rollout's numpy copy of the networks ----------------------------------------------------

def test_numpy_policy_computes_the_torch_networks():
    torch.manual_seed(3)
    agent = agent_lib.Agent()
    with torch.no_grad():  # move off the init (zero biases, tiny actor head) so every block matters
        for param in agent.parameters():
            param.add_(0.3 * torch.randn_like(param))
    obs = md.OBS_TABLE[np.random.default_rng(0).integers(md.N_STATES, size=64)]
    logits, values = agent.numpy_policy()(obs)
    with torch.no_grad():
        x = agent.normalize(torch.as_tensor(obs))
        np.testing.assert_allclose(logits, agent.actor(x).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(values, agent.get_value(torch.as_tensor(obs)).numpy(), rtol=1e-5, atol=1e-5)
    assert logits.dtype == values.dtype == np.float32 and logits.shape == (64, md.N_ACTIONS) and values.shape == (64,)
    with torch.no_grad():  # a copy: later weight changes need a new one
        agent.critic[-1].bias.add_(1.0)
    assert np.allclose(agent.numpy_policy()(obs)[1], values + 1.0, atol=1e-5)


def test_rollout_log_probs_match_the_update(tmp_path):
    """One minibatch, one epoch: the update sees the rollout's own policy, so ratio 1 and KL 0;
    a wrong log-prob in the rollout (say, an unnormalized logit) would show here."""
    _, run_dir, _ = run(tmp_path, "--num-envs", 4, "--num-steps", 32, "--total-timesteps", 128,
                        "--num-minibatches", 1, "--update-epochs", 1, "--eval-episodes", 1)
    assert abs(scalars(run_dir, "losses/old_approx_kl")[0][1]) < 1e-6
    assert scalars(run_dir, "losses/clipfrac")[0][1] == 0.0


# --- --resume -------------------------------------------------------------------------------------

def test_resume_continues_weights_optimizer_and_step_count(tmp_path):
    first, _, first_file = run(tmp_path / "a", "--total-timesteps", 1024, "--num-envs", 4, "--num-steps", 64,
                               "--eval-episodes", 2)
    _, saved = agent_lib.load(first_file)
    second, run_dir, second_file = run(tmp_path / "b", "--resume", first_file, "--total-timesteps", 1024, "--num-envs", 4,
                                       "--num-steps", 64, "--eval-episodes", 2)
    assert first["global_step"] == 1024 and second["global_step"] == 2048 and second["start_step"] == 1024
    assert min(step for step, _ in scalars(run_dir, "charts/SPS")) > 1024  # the x-axis goes on
    _, resumed = agent_lib.load(second_file)
    adam_steps = lambda ckpt: float(next(iter(ckpt["optimizer"]["state"].values()))["step"])
    assert adam_steps(resumed) == 2 * adam_steps(saved) == 2 * 4 * 4 * 4  # 4 iterations x 4 epochs x 4 minibatches each
    # the second run started from the first one's weights, not from a fresh init (of another seed)
    fresh, _, fresh_file = run(tmp_path / "c", "--seed", 2, "--total-timesteps", 1024, "--num-envs", 4, "--num-steps", 64,
                               "--eval-episodes", 2)
    _, fresh_ckpt = agent_lib.load(fresh_file)
    weight = "actor.0.weight"
    start_distance = (resumed["state_dict"][weight] - saved["state_dict"][weight]).abs().max()
    fresh_distance = (resumed["state_dict"][weight] - fresh_ckpt["state_dict"][weight]).abs().max()
    assert start_distance < fresh_distance


def test_resume_from_a_bad_file_fails_before_any_work(tmp_path):
    bad = tmp_path / "old_agent.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(agent_lib.AgentFileError, match="not a readable agent file"):
        run(tmp_path, "--resume", str(bad), "--total-timesteps", 512)
    assert not (tmp_path / "runs").exists()


def test_make_gif_of_an_agent_that_never_lands_on_the_centre_is_short(tmp_path):
    from PIL import Image

    hover = md.CENTRE + [1, 0]
    path = np.array([hover + [t % 2, 0] for t in range(2001)], dtype=np.float32)  # jitters beside the centre
    ppo.make_gif(str(tmp_path / "b.gif"), path)
    with Image.open(str(tmp_path / "b.gif")) as image:  # identical frames merge: count the time they last
        total = 0
        for frame in range(image.n_frames):
            image.seek(frame)
            total += image.info["duration"]
    assert total == 40 * ((int(md.MANHATTAN.max()) + 40 + 1) // 2)  # the longest way to the centre and 40 steps, not 2000


# --- the evaluation from the policy's table -----------------------------------------------------

def _stepped_returns(agent, n_episodes, seed, greedy, rng=None):
    """The evaluation done the slow way: the env stepped with the torch actor's actions."""
    envs = md.MovingDotVectorEnv(num_envs=n_episodes)
    obs, info = envs.reset(seed=seed)
    optimal, total = info["optimal_return"], np.zeros(n_episodes)
    with torch.no_grad():
        for _ in range(envs.max_episode_steps):
            logits = agent.actor(agent.normalize(torch.as_tensor(obs)))
            action = logits.argmax(-1) if greedy else torch.multinomial(logits.softmax(-1), 1, generator=rng).squeeze(-1)
            obs, reward, _, _, _ = envs.step(action.numpy())
            total += reward
    return total, optimal


def test_greedy_evaluation_walks_the_table_exactly_as_the_env_steps():
    torch.manual_seed(3)
    agent = agent_lib.Agent().eval()  # an untrained agent: a policy with no reason to reach the centre
    total, optimal = _stepped_returns(agent, 8, 123, greedy=True)
    result = agent_lib.evaluate(agent, DOT, 8, 123, greedy=True, capture=True)
    assert result["true_return"] == pytest.approx(total.mean()) and result["optimal_return"] == pytest.approx(optimal.mean())
    assert result["return_std"] == pytest.approx(total.std())
    assert {k: v for k, v in result.items() if k != "path"} == agent_lib.evaluate_on_grid(agent, 8, 123, greedy=True)
    assert result["normalized_return"] == pytest.approx(md.normalized_return(total, optimal))
    path = result["path"]  # the first episode, start included, one position per step
    assert path.shape == (md.MAX_EPISODE_STEPS + 1, 2)
    assert np.abs(np.diff(path, axis=0)).sum(1).max() <= 1


def test_sampled_evaluation_draws_from_the_policy():
    """A sharp policy (logits scaled up) samples its argmax nearly always: the sampled figure is the
    greedy one; a flat one (all logits 0) wanders: its return is far below the greedy walk's."""
    torch.manual_seed(4)
    agent = agent_lib.Agent().eval()
    with torch.no_grad():
        agent.actor[-1].weight.mul_(1e7)
        agent.actor[-1].bias.mul_(1e7)
    sharp = agent_lib.evaluate(agent, DOT, 10, 7, greedy=False)
    assert sharp == agent_lib.evaluate(agent, DOT, 10, 7, greedy=True)
    with torch.no_grad():
        agent.actor[-1].weight.zero_()
        agent.actor[-1].bias.zero_()
    flat = agent_lib.evaluate(agent, DOT, 50, 7, greedy=False)
    total, _ = _stepped_returns(agent, 50, 7, greedy=False, rng=torch.Generator().manual_seed(0))
    assert abs(flat["true_return"]) < 10 and abs(total.mean()) < 10  # a random walk's mean true return is about 0
    assert flat == agent_lib.evaluate(agent, DOT, 50, 7, greedy=False)  # seeded: the same draws every time
