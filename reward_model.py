"""The reward model r(o, a): network, preference loss, batched reward, scoring, save/load.

Shared by train_reward_model.py (which fits it) and ppo_rlhf.py (which uses it as the reward).
An ensemble of N members is one module whose layers hold N weight matrices each, so that
every call, for one member or many, is one batched matrix product per layer.

The model file is one dict (``torch.save``): format and version, the config needed to
rebuild the network, the env bounds it was trained for, the weights and a training summary.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import checkpoints
import moving_dot as md

FORMAT = "moving-dot-reward-model"
FORMAT_VERSION = 1
ENCODINGS = ("normalized", "raw")


class RewardModelError(Exception):
    """A reward model file that cannot be used; the message names the file and the fix."""


class EnsembleLinear(nn.Module):
    """N independent linear layers applied as one batched product: (N, B, in) -> (N, B, out)."""

    def __init__(self, n_members, in_features, out_features, std):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_members, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(n_members, 1, out_features))
        for member in range(n_members):  # orthogonal init per member, as PPO's layer_init
            nn.init.orthogonal_(self.weight.data[member].T, std)

    def forward(self, x):
        return torch.baddbmm(self.bias, x, self.weight)


class RewardModel(nn.Module):
    """The write-up's MLP (2 hidden layers of 64, Tanh, orthogonal init, zero biases), one per
    ensemble member.

    encoding 'normalized': the position scaled to [-1, 1] and a one-hot action (7 inputs);
    'raw': the write-up's raw pixel coordinates and the action index as one float (3 inputs).
    """

    def __init__(self, encoding="normalized", ensemble_size=1, hidden_size=64):
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, not {encoding!r}")
        self.config = {"encoding": encoding, "ensemble_size": int(ensemble_size), "hidden_size": int(hidden_size)}
        self.encoding, self.ensemble_size = encoding, ensemble_size
        in_features = 2 + md.N_ACTIONS if encoding == "normalized" else 3
        self.net = nn.Sequential(
            EnsembleLinear(ensemble_size, in_features, hidden_size, math.sqrt(2)), nn.Tanh(),
            EnsembleLinear(ensemble_size, hidden_size, hidden_size, math.sqrt(2)), nn.Tanh(),
            EnsembleLinear(ensemble_size, hidden_size, 1, 1.0),
        )
        self.register_buffer("obs_low", torch.as_tensor(md.OBS_LOW), persistent=False)
        self.register_buffer("obs_high", torch.as_tensor(md.OBS_HIGH), persistent=False)
        self.summary = {}

    @property
    def device(self):
        return self.obs_low.device

    def features(self, obs, actions):
        """Network inputs (..., in_features) for positions (..., 2) and actions (...)."""
        obs = torch.as_tensor(obs, device=self.device).float()
        actions = torch.as_tensor(actions, device=self.device).long()
        if self.encoding == "raw":
            return torch.cat([obs, actions.unsqueeze(-1).float()], -1)
        position = 2 * (obs - self.obs_low) / (self.obs_high - self.obs_low) - 1
        return torch.cat([position, F.one_hot(actions, md.N_ACTIONS).float()], -1)

    def member_rewards(self, features, per_member=False):
        """Rewards (E, ...) of every member. features (..., in), shared by the members, or
        (E, ..., in) with ``per_member=True``, one input batch per member (bootstrapping)."""
        if not per_member:
            features = features.unsqueeze(0).expand(self.ensemble_size, *features.shape)
        batch_shape = features.shape[1:-1]
        out = self.net(features.reshape(self.ensemble_size, -1, features.shape[-1]))
        return out.reshape(self.ensemble_size, *batch_shape)

    def forward(self, obs, actions):
        """Mean reward over the members, shape of ``actions``."""
        return self.member_rewards(self.features(obs, actions)).mean(0)

    @torch.no_grad()
    def reward(self, obs, actions) -> np.ndarray:
        """The learned reward for arrays of positions (..., 2) and actions (...): one batched call."""
        return self.forward(obs, actions).cpu().numpy()


def segment_returns(model: RewardModel, features, per_member=False):
    """R(sigma) = sum_t r(o_t, a_t) for segment features (..., k, in): shape (E, ...)."""
    return model.member_rewards(features, per_member).sum(-1)


def preference_loss(returns1, returns2, mu1, mu2, label_noise=0.0):
    """C17's cross-entropy -(mu1 log P1 + mu2 log P2), with P1 = exp(R1) / (exp(R1) + exp(R2)),
    computed as log-sigmoids of R1 - R2 so that it stays finite for any returns.

    label_noise: C17 2.2.3 assumes the human answers uniformly at random this often (they
    used 0.1), so P1 = (1 - eps) sigmoid(R1 - R2) + eps / 2.
    """
    log_p1, log_p2 = F.logsigmoid(returns1 - returns2), F.logsigmoid(returns2 - returns1)
    if label_noise > 0:
        log_keep, log_random = math.log1p(-label_noise), math.log(label_noise / 2)
        log_p1 = torch.logaddexp(log_p1 + log_keep, torch.full_like(log_p1, log_random))
        log_p2 = torch.logaddexp(log_p2 + log_keep, torch.full_like(log_p2, log_random))
    return -(mu1 * log_p1 + mu2 * log_p2)


def preference_accuracy(returns1, returns2, mu1, mu2) -> float:
    """Share of strict preferences whose sign of R1 - R2 is right (NaN if there are none)."""
    diff, strict = np.asarray(returns1 - returns2), np.asarray(mu1 != mu2)
    if not strict.any():
        return float("nan")
    return float(((diff > 0) == (np.asarray(mu1) > np.asarray(mu2)))[strict].mean())


@torch.no_grad()
def comparison_accuracy(model: RewardModel, comparisons) -> float:
    """preference_accuracy of the model's segment returns on a db.Comparisons (any k)."""
    k = comparisons.actions1.shape[1]
    returns1 = model.reward(comparisons.obs1[:, :k], comparisons.actions1).sum(-1)
    returns2 = model.reward(comparisons.obs2[:, :k], comparisons.actions2).sum(-1)
    return preference_accuracy(returns1, returns2, comparisons.mu1, comparisons.mu2)


# --- scoring against the true reward over every (position, action) of the grid ---

def reward_table(model: RewardModel) -> np.ndarray:
    """The learned reward for every state and action, (N_STATES, N_ACTIONS), in one call."""
    positions = np.repeat(md.OBS_TABLE[:, None, :], md.N_ACTIONS, axis=1)
    actions = np.tile(np.arange(md.N_ACTIONS), (md.N_STATES, 1))
    return model.reward(positions, actions)


def action_order_agreement(table: np.ndarray, true_table: np.ndarray = md.TRUE_REWARD) -> float:
    """Share of the pairs of actions at the same position that the true reward orders
    strictly and the learned reward orders the same way."""
    a, b = np.triu_indices(md.N_ACTIONS, 1)
    true_order = np.sign(true_table[:, a] - true_table[:, b])
    learned_order = np.sign(table[:, a] - table[:, b])
    strict = true_order != 0
    return float((true_order == learned_order)[strict].mean())


def reward_correlation(table: np.ndarray, true_table: np.ndarray = md.TRUE_REWARD) -> float:
    """Pearson correlation of the learned and the true reward over every (position, action)."""
    return float(np.corrcoef(table.ravel(), true_table.ravel())[0, 1])


# --- the model file ---

def save(model: RewardModel, path: str, summary: dict | None = None, overwrite: bool = False) -> None:
    """Write the model file atomically; refuse to replace an existing file unless ``overwrite``."""
    if os.path.exists(path) and not overwrite:
        raise RewardModelError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    checkpoint = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "config": dict(model.config),
        "env": dict(md.ENV_PARAMS), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "summary": dict(summary if summary is not None else model.summary),
    }
    checkpoints.save_atomic(checkpoint, path)


def load(path: str, device="cpu") -> RewardModel:
    """Rebuild a model from its file (loaded with ``weights_only=True``), in eval mode."""
    retrain = f"retrain it with `python train_reward_model.py --out {path} --overwrite`"
    if not os.path.isfile(path):
        raise RewardModelError(f"reward model file {path} not found; train one with `python train_reward_model.py --out {path}`")
    try:
        checkpoint = checkpoints.load_safely(path)
    except ValueError as reason:
        raise RewardModelError(f"{path} is not a readable reward model file (corrupt, truncated or foreign: {reason}); {retrain}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise RewardModelError(f"{path} is not a reward model file (found {found!r}); pass a file written by train_reward_model.py")
    if checkpoint.get("format_version") != FORMAT_VERSION:
        raise RewardModelError(f"{path} has format version {checkpoint.get('format_version')}, this code reads {FORMAT_VERSION}; {retrain}")
    if checkpoint.get("env") != md.ENV_PARAMS:
        raise RewardModelError(f"{path} was trained for other env parameters ({checkpoint.get('env')}); {retrain}")
    try:
        model = RewardModel(**checkpoint["config"])
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0]
        raise RewardModelError(f"{path} does not fit the network it describes ({reason}); {retrain}") from None
    model.summary = checkpoint.get("summary", {})
    return model.to(device).eval()
