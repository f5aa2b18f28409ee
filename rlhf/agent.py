"""The PPO agent: actor and critic networks, the agent file, and the fixed-seed evaluation.

Shared by ppo_rlhf.py (which trains it) and any stage that runs a saved agent.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from rlhf import checkpoints
from rlhf import moving_dot as md
from rlhf import value_iteration as vi

FORMAT = "moving-dot-ppo-agent"
FORMAT_VERSION = 2  # 2: any env (the spaces in the config, the observation scaling in the weights)
OBS_CLIP = 10.0  # running-normalized observations are clipped to this (CleanRL's NormalizeObservation)


class AgentFileError(Exception):
    """An agent file that cannot be used; the message names the file and the fix."""


def layer_init(layer, std=math.sqrt(2), bias_const=0.0):
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


def bounds_scaling(low, high):
    """(offset, scale) that map each bounded observation dimension to [-1, 1] and leave an
    unbounded one (or one spanning more than 1e6) as it is."""
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    bounded = np.isfinite(low) & np.isfinite(high) & (high - low < 1e6) & (high > low)
    low32, high32 = np.where(bounded, low, -1).astype(np.float32), np.where(bounded, high, 1).astype(np.float32)
    scale = 2 / (high32 - low32)  # in float32, as the networks compute
    return np.where(bounded, -1 - low32 * scale, 0).astype(np.float32), np.where(bounded, scale, 1).astype(np.float32)


class Agent(nn.Module):
    """Separate actor and critic MLPs (64-64, Tanh, orthogonal init), as CleanRL's ppo.py; for a
    Box action the actor gives a Gaussian's mean and the log std is one learned vector, as
    CleanRL's ppo_continuous_action.py. Observations are scaled by (offset, scale) before either
    network: from the bounds of the observation space (each bounded dimension to [-1, 1]), or,
    with ``norm_obs``, from running statistics (CleanRL's NormalizeObservation), clipped to +-10."""

    def __init__(self, obs_dim=2, n_actions=md.N_ACTIONS, action_dim=None, hidden_size=64, norm_obs=False,
                 obs_low=None, obs_high=None):
        super().__init__()
        if (n_actions is None) == (action_dim is None):
            raise ValueError("an agent has either n_actions (Discrete) or action_dim (Box)")
        self.config = {"obs_dim": int(obs_dim), "n_actions": None if n_actions is None else int(n_actions),
                       "action_dim": None if action_dim is None else int(action_dim), "hidden_size": int(hidden_size),
                       "norm_obs": bool(norm_obs)}
        self.discrete, self.norm_obs = n_actions is not None, bool(norm_obs)
        self.n_outputs = int(n_actions if self.discrete else action_dim)
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, self.n_outputs), std=0.01),
        )
        if not self.discrete:
            self.actor_logstd = nn.Parameter(torch.zeros(1, self.n_outputs))
        if obs_low is None:  # rebuilt from a file, whose weights hold the scaling (a version-1 file: the moving dot's bounds)
            obs_low, obs_high = (md.OBS_LOW, md.OBS_HIGH) if obs_dim == 2 else (np.full(obs_dim, -np.inf), np.full(obs_dim, np.inf))
        offset, scale = (np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)) if norm_obs else bounds_scaling(obs_low, obs_high)
        self.register_buffer("obs_offset", torch.as_tensor(offset))
        self.register_buffer("obs_scale", torch.as_tensor(scale))
        # running mean, variance and count of the observations seen (used with norm_obs)
        self.register_buffer("obs_mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("obs_var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("obs_count", torch.tensor(1e-4, dtype=torch.float64))

    def normalize(self, obs):
        x = torch.addcmul(self.obs_offset, obs, self.obs_scale)  # one kernel: this runs every env step
        return x.clamp(-OBS_CLIP, OBS_CLIP) if self.norm_obs else x

    @torch.no_grad()
    def update_obs_stats(self, batch):
        """Fold a batch of observations (B, d) into the running statistics (Chan et al.'s parallel
        update, as gymnasium's RunningMeanStd) and rescale: called once per rollout, after the
        update, so that a rollout and the update on it see the same scaling."""
        batch = torch.as_tensor(np.asarray(batch, dtype=np.float64), device=self.obs_mean.device)
        n, mean, var = batch.shape[0], batch.mean(0), batch.var(0, unbiased=False)
        delta, total = mean - self.obs_mean, self.obs_count + n
        self.obs_var.copy_((self.obs_var * self.obs_count + var * n + delta ** 2 * self.obs_count * n / total) / total)
        self.obs_mean.add_(delta * n / total)
        self.obs_count.copy_(total)
        std = torch.sqrt(self.obs_var + 1e-8)
        self.obs_scale.copy_((1 / std).float())
        self.obs_offset.copy_((-self.obs_mean / std).float())

    def get_value(self, obs):
        return self.critic(self.normalize(obs)).squeeze(-1)

    def get_action_and_value(self, obs, action):
        """(action, log-prob, entropy, value) of given actions: the update's view."""
        x = self.normalize(obs)
        if self.discrete:
            log_probs = self.actor(x).log_softmax(-1)
            log_prob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
        else:  # a diagonal Gaussian, written out: torch.distributions costs several kernels more per call
            mean, logstd = self.actor(x), self.actor_logstd.expand(x.shape[0], -1)
            log_prob = (-0.5 * ((action - mean) / logstd.exp()) ** 2 - logstd - 0.5 * math.log(2 * math.pi)).sum(-1)
            entropy = (logstd + 0.5 * (1 + math.log(2 * math.pi))).sum(-1)
        return action, log_prob, entropy, self.critic(x).squeeze(-1)

    @torch.no_grad()
    def numpy_policy(self):
        """A numpy copy of both networks for the rollout: obs (N, d) -> (outputs (N, n), values (N,)),
        the outputs being logits (Discrete) or the Gaussian's mean (Box).

        The rollout evaluates a handful of observations per env step, where torch's per-call
        overhead is most of the cost (docs/performance.md has the timings). The copy fuses the
        two networks (first layers side by side, hidden layers block-diagonal, heads into n + 1
        outputs) and folds the observation scaling into the first layer (where it is not clipped);
        it computes the same function, so it is rebuilt after every update.
        """
        actor, critic = [[layer for layer in net if isinstance(layer, nn.Linear)] for net in (self.actor, self.critic)]
        w = lambda layer: layer.weight.detach().cpu().double().numpy().T
        b = lambda layer: layer.bias.detach().cpu().double().numpy()
        scale, offset = self.obs_scale.cpu().double().numpy(), self.obs_offset.cpu().double().numpy()
        w1 = np.concatenate([w(actor[0]), w(critic[0])], 1)
        b1 = np.concatenate([b(actor[0]), b(critic[0])])
        if not self.norm_obs:
            b1, w1 = offset @ w1 + b1, scale[:, None] * w1
        h, n = w(actor[1]).shape[0], self.n_outputs
        w2 = np.zeros((2 * h, 2 * h))
        w2[:h, :h], w2[h:, h:] = w(actor[1]), w(critic[1])
        b2 = np.concatenate([b(actor[1]), b(critic[1])])
        w3 = np.zeros((2 * h, n + 1))
        w3[:h, :n], w3[h:, n:] = w(actor[2]), w(critic[2])
        b3 = np.concatenate([b(actor[2]), b(critic[2])])
        w1, b1, w2, b2, w3, b3, scale, offset = (a.astype(np.float32) for a in (w1, b1, w2, b2, w3, b3, scale, offset))
        clip = self.norm_obs

        def policy(obs):
            x = np.clip(obs * scale + offset, -OBS_CLIP, OBS_CLIP) if clip else obs
            out = np.tanh(np.tanh(x @ w1 + b1) @ w2 + b2) @ w3 + b3
            return out[:, :n], out[:, n]

        return policy

    @torch.no_grad()
    def action_std(self):
        """The Gaussian policy's standard deviation per action dimension (numpy), None for a Discrete one."""
        return None if self.discrete else self.actor_logstd.exp().cpu().numpy()[0]

    def numpy_sampler(self, low=None, high=None):
        """Sampled actions in numpy, (obs (N, d), rng) -> actions: a Gumbel-max draw of softmax(logits),
        or mean + std * N(0, 1) clipped to the action bounds (as CleanRL's ClipAction)."""
        policy, std = self.numpy_policy(), self.action_std()

        def sample(obs, rng):
            out, _ = policy(obs)
            if std is None:
                return (out - np.log(-np.log(rng.random(out.shape)))).argmax(1)
            action = out + std * rng.standard_normal(out.shape)
            return action if low is None else np.clip(action, low, high).astype(np.float32)

        return sample


def for_env(env_spec, hidden_size=64, norm_obs=False) -> Agent:
    """A new agent for the env's spaces."""
    return Agent(env_spec.obs_dim, env_spec.n_actions, None if env_spec.discrete else env_spec.action_dim, hidden_size,
                 norm_obs, env_spec.obs_low, env_spec.obs_high)


def evaluate(agent: Agent, env_spec, n_episodes=100, seed=100_000, greedy=True, capture=False):
    """The agent's true return over ``n_episodes`` full episodes, the env reset with seeds seed,
    seed + 1, ... (the same starts for every run): exactly over the moving dot's grid
    (``evaluate_on_grid``), by running the episodes elsewhere (``evaluate_episodes``)."""
    if env_spec.tabular:
        return evaluate_on_grid(agent, n_episodes, seed, greedy, capture)
    return evaluate_episodes(agent, env_spec, n_episodes, seed, greedy)


@torch.no_grad()
def evaluate_episodes(agent: Agent, env_spec, n_episodes=100, seed=100_000, greedy=True):
    """One episode in each of ``n_episodes`` envs stepped together; greedy takes the argmax (or the
    Gaussian's mean), sampled draws from the policy (rng seeded by ``seed``). Returns the mean true
    return, its standard deviation, the mean length and the share of episodes that terminated
    before the time limit (Mountain Car: reached the flag; CartPole: the pole fell)."""
    from rlhf import envs  # the agent file itself does not need gymnasium's vector envs

    vec = envs.make_vector_env(env_spec, n_episodes)
    obs, _ = vec.reset(seed=seed)
    policy, sample = agent.numpy_policy(), agent.numpy_sampler(env_spec.action_low, env_spec.action_high)
    rng = np.random.default_rng(seed)
    total, length = np.zeros(n_episodes), np.zeros(n_episodes, dtype=np.int64)
    running, terminated_at_end = np.ones(n_episodes, dtype=bool), np.zeros(n_episodes, dtype=bool)
    while running.any():  # a loop over time; the episodes step together and each counts once
        if greedy:
            out = policy(obs)[0]
            action = out.argmax(1) if agent.discrete else np.clip(out, env_spec.action_low, env_spec.action_high).astype(np.float32)
        else:
            action = sample(obs, rng)
        obs, reward, terminated, truncated, _ = vec.step(action)
        total += np.where(running, reward, 0.0)
        length += running
        terminated_at_end |= running & terminated
        running &= ~(terminated | truncated)
    vec.close()
    return {"true_return": float(total.mean()), "return_std": float(total.std()), "episode_length": float(length.mean()),
            "terminated_fraction": float(terminated_at_end.mean()), "n_episodes": int(n_episodes)}


@torch.no_grad()
def evaluate_on_grid(agent: Agent, n_episodes=100, seed=100_000, greedy=True, capture=False):
    """The moving dot's full episodes from fixed starts (the starts of env seeds seed, seed + 1, ...).

    The policy depends on the position alone, so it is computed once for every position of the
    grid: the greedy episodes are then exact table walks (value_iteration.true_returns), the
    sampled ones draw each step's actions from the table's probabilities, all dots at once.
    Returns mean true return, mean optimal return and the normalized return (their ratio),
    and with ``capture`` the positions of the first episode, (T + 1, 2), for a video.
    """
    starts = md.position_to_state(md.MovingDotVectorEnv(num_envs=n_episodes).reset(seed=seed)[0].astype(np.int64))
    logits = agent.actor(agent.normalize(torch.as_tensor(md.OBS_TABLE, device=agent.obs_scale.device))).double().cpu().numpy()
    if greedy:
        policy = logits.argmax(1)
        total = vi.true_returns(policy, starts)
        states = [starts[0]]
        for _ in range(md.MAX_EPISODE_STEPS if capture else 0):
            states.append(md.NEXT_STATE[states[-1], policy[states[-1]]])
    else:
        cumulative = np.cumsum(np.exp(logits - logits.max(1, keepdims=True)), 1)
        cumulative /= cumulative[:, -1:]
        rng, state, total, states = np.random.default_rng(seed), starts, np.zeros(n_episodes), [starts[0]]
        for u in rng.random((md.MAX_EPISODE_STEPS, n_episodes)):  # inverse-CDF sampling of every dot's action
            action = np.minimum((cumulative[state] < u[:, None]).sum(1), md.N_ACTIONS - 1)
            total += md.TRUE_REWARD[state, action]
            state = md.NEXT_STATE[state, action]
            if capture:
                states.append(state[0])
    optimal = md.MANHATTAN[starts]
    result = {"true_return": float(total.mean()), "return_std": float(total.std()), "optimal_return": float(optimal.mean()),
              "normalized_return": md.normalized_return(total, optimal)}
    if capture:
        result["path"] = md.POSITIONS[np.array(states)].astype(np.float32)
    return result


def refuse_existing(path: str, overwrite: bool) -> None:
    """Refuse to replace an existing agent file unless ``overwrite``: PPO checks before it trains, save before it writes."""
    if os.path.exists(path) and not overwrite:
        raise AgentFileError(f"{path} already exists; pass --overwrite to replace it or choose another --save-path")


def save(path: str, agent: Agent, env_params: dict, optimizer=None, extra: dict | None = None, overwrite=False):
    """Write the agent file atomically: weights, config, the env (EnvSpec.params), optimizer state
    and ``extra`` (step counts, args, evaluation), refusing to replace a file unless ``overwrite``."""
    refuse_existing(path, overwrite)
    checkpoint = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": dict(agent.config),
                  "env": dict(env_params), "state_dict": {k: v.detach().cpu() for k, v in agent.state_dict().items()},
                  "optimizer": optimizer.state_dict() if optimizer is not None else None, **(extra or {})}
    checkpoints.save_atomic(checkpoint, path)


def load(path: str, device="cpu", env_spec=None) -> tuple[Agent, dict]:
    """The agent (eval mode) and the whole checkpoint dict, loaded with ``weights_only=True``;
    with ``env_spec``, a file made for another env is refused."""
    if not os.path.isfile(path):
        raise AgentFileError(f"agent file {path} not found; train one with `python ppo_rlhf.py --save-path {path}`")
    try:
        checkpoint = checkpoints.load_safely(path)
    except ValueError as reason:
        raise AgentFileError(f"{path} is not a readable agent file (corrupt, truncated or foreign: {reason})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise AgentFileError(f"{path} is not an agent file (found {found!r}); pass a file written by ppo_rlhf.py")
    version = checkpoint.get("format_version")
    if version not in (1, FORMAT_VERSION) or (version == 1 and checkpoint.get("env") != md.ENV_PARAMS):
        raise AgentFileError(f"{path} was written by another version of ppo_rlhf.py; retrain it")
    if env_spec is not None:
        from rlhf import envs

        stored = {"env_id": "MovingDot-v0", "native": md.ENV_PARAMS} if version == 1 else checkpoint.get("env", {})
        try:
            envs.check_params(stored if version != 1 or not env_spec.tabular else env_spec.params(), env_spec, f"agent file {path}", "retrain it")
        except envs.EnvError as e:
            raise AgentFileError(str(e)) from None
    try:
        agent = Agent(**checkpoint["config"])
        missing, unexpected = agent.load_state_dict(checkpoint["state_dict"], strict=False)
        if unexpected or (missing and (version != 1 or not set(missing) <= {"obs_offset", "obs_scale", "obs_mean", "obs_var", "obs_count"})):
            raise RuntimeError(f"missing {missing}, unexpected {unexpected}")  # version 1 kept no scaling: the bounds' is rebuilt
    except (KeyError, TypeError, RuntimeError) as e:
        raise AgentFileError(f"{path} does not fit the network it describes ({str(e).strip().splitlines()[0]}); retrain it") from None
    return agent.to(device).eval(), checkpoint
