"""The PPO agent: actor and critic networks, the agent file, and the fixed-seed evaluation.

Shared by ppo_rlhf.py (which trains it) and any stage that runs a saved agent.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

import checkpoints
import moving_dot as md
import value_iteration as vi

FORMAT = "moving-dot-ppo-agent"
FORMAT_VERSION = 1


class AgentFileError(Exception):
    """An agent file that cannot be used; the message names the file and the fix."""


def layer_init(layer, std=math.sqrt(2), bias_const=0.0):
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """Separate actor and critic MLPs (64-64, Tanh, orthogonal init), as CleanRL's ppo.py.
    Positions are scaled to [-1, 1] from the observation bounds before either network."""

    def __init__(self, hidden_size=64):
        super().__init__()
        self.config = {"hidden_size": int(hidden_size)}
        self.critic = nn.Sequential(
            layer_init(nn.Linear(2, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(2, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, hidden_size)), nn.Tanh(),
            layer_init(nn.Linear(hidden_size, md.N_ACTIONS), std=0.01),
        )
        scale = 2 / (md.OBS_HIGH - md.OBS_LOW)
        self.register_buffer("obs_scale", torch.as_tensor(scale), persistent=False)
        self.register_buffer("obs_offset", torch.as_tensor(-1 - md.OBS_LOW * scale), persistent=False)

    def normalize(self, obs):
        return torch.addcmul(self.obs_offset, obs, self.obs_scale)  # one kernel: this runs every env step

    def get_value(self, obs):
        return self.critic(self.normalize(obs)).squeeze(-1)

    def get_action_and_value(self, obs, action):
        """(action, log-prob, entropy, value) of given actions: the update's view."""
        x = self.normalize(obs)
        log_probs = self.actor(x).log_softmax(-1)
        log_prob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return action, log_prob, entropy, self.critic(x).squeeze(-1)

    @torch.no_grad()
    def numpy_policy(self):
        """A numpy copy of both networks for the rollout: obs (N, 2) -> (logits (N, 5), values (N,)).

        The rollout evaluates a handful of observations per env step, where torch's per-call
        overhead is most of the cost (about 60 us a step against 15 us here). The copy fuses the
        two networks (first layers side by side, hidden layers block-diagonal, heads into six
        outputs) and folds the observation scaling into the first layer; it computes the same
        function, so it is rebuilt after every update.
        """
        actor, critic = [[layer for layer in net if isinstance(layer, nn.Linear)] for net in (self.actor, self.critic)]
        w = lambda layer: layer.weight.detach().cpu().double().numpy().T  # noqa: E731
        b = lambda layer: layer.bias.detach().cpu().double().numpy()  # noqa: E731
        scale, offset = self.obs_scale.cpu().double().numpy(), self.obs_offset.cpu().double().numpy()
        w1 = np.concatenate([w(actor[0]), w(critic[0])], 1)
        b1 = offset @ w1 + np.concatenate([b(actor[0]), b(critic[0])])
        w1 = scale[:, None] * w1
        h = w(actor[1]).shape[0]
        w2 = np.zeros((2 * h, 2 * h))
        w2[:h, :h], w2[h:, h:] = w(actor[1]), w(critic[1])
        b2 = np.concatenate([b(actor[1]), b(critic[1])])
        w3 = np.zeros((2 * h, md.N_ACTIONS + 1))
        w3[:h, :md.N_ACTIONS], w3[h:, md.N_ACTIONS:] = w(actor[2]), w(critic[2])
        b3 = np.concatenate([b(actor[2]), b(critic[2])])
        w1, b1, w2, b2, w3, b3 = (a.astype(np.float32) for a in (w1, b1, w2, b2, w3, b3))

        def policy(obs):
            out = np.tanh(np.tanh(obs @ w1 + b1) @ w2 + b2) @ w3 + b3
            return out[:, :md.N_ACTIONS], out[:, md.N_ACTIONS]

        return policy


@torch.no_grad()
def evaluate(agent: Agent, n_episodes=100, seed=100_000, greedy=True, capture=False):
    """Full episodes from fixed starts (the starts of env seeds seed, seed + 1, ...).

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
    result = {"true_return": float(total.mean()), "optimal_return": float(optimal.mean()),
              "normalized_return": md.normalized_return(total, optimal)}
    if capture:
        result["path"] = md.POSITIONS[np.array(states)].astype(np.float32)
    return result


def save(path: str, agent: Agent, optimizer=None, extra: dict | None = None, overwrite=False):
    """Write the agent file atomically: weights, config, optimizer state and ``extra``
    (step counts, args, evaluation), refusing to replace a file unless ``overwrite``."""
    if os.path.exists(path) and not overwrite:
        raise AgentFileError(f"{path} already exists; pass --overwrite to replace it or choose another --save-path")
    checkpoint = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": dict(agent.config),
                  "env": dict(md.ENV_PARAMS), "state_dict": {k: v.detach().cpu() for k, v in agent.state_dict().items()},
                  "optimizer": optimizer.state_dict() if optimizer is not None else None, **(extra or {})}
    checkpoints.save_atomic(checkpoint, path)


def load(path: str, device="cpu") -> tuple[Agent, dict]:
    """The agent (eval mode) and the whole checkpoint dict, loaded with ``weights_only=True``."""
    if not os.path.isfile(path):
        raise AgentFileError(f"agent file {path} not found; train one with `python ppo_rlhf.py --save-path {path}`")
    try:
        checkpoint = checkpoints.load_safely(path)
    except ValueError as reason:
        raise AgentFileError(f"{path} is not a readable agent file (corrupt, truncated or foreign: {reason})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise AgentFileError(f"{path} is not an agent file (found {found!r}); pass a file written by ppo_rlhf.py")
    if checkpoint.get("format_version") != FORMAT_VERSION or checkpoint.get("env") != md.ENV_PARAMS:
        raise AgentFileError(f"{path} was written by another version of ppo_rlhf.py or for another env; retrain it")
    try:
        agent = Agent(**checkpoint["config"])
        agent.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise AgentFileError(f"{path} does not fit the network it describes ({str(e).strip().splitlines()[0]}); retrain it") from None
    return agent.to(device).eval(), checkpoint
