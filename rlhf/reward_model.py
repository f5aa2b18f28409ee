"""The reward model r(o, a, o'): network, preference loss, batched reward, scoring, save/load.

Shared by train_reward_model.py (which fits it), ppo_rlhf.py (which uses it as the reward) and
make_preferences_db.py (which asks where the ensemble disagrees).
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

from rlhf import checkpoints
from rlhf import moving_dot as md

FORMAT = "moving-dot-reward-model"
FORMAT_VERSION = 3  # 3: any env (spaces in the config, the observation scaling in the weights)
# 2: the reward's form and the activation in the config; 1: read as state-action, tanh (both the moving dot's)
ENCODINGS = ("normalized", "raw")
FORMS = ("potential", "state-action")
ACTIVATIONS = ("relu", "tanh")
TRANSFORMS = ("normalize", "clip")  # how PPO uses the learned reward; the first is its default


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
    """An MLP (2 hidden layers, orthogonal init, zero biases), one per ensemble member, in one
    of two forms:

    form 'potential': r(o, a, o') = phi(o') - phi(o), the network is phi(o). A segment's return
    telescopes to phi(o_k) - phi(o_0), so no loop of states earns anything and the learned
    reward's optimal policy climbs phi (docs/results.md, "Judging a learned reward");
    form 'state-action': the write-up's r(o, a), the network sees the action too.

    encoding 'normalized': the position scaled to [-position_scale, position_scale] (and a one-hot
    action); 'raw': the write-up's raw pixel coordinates (and the action index as one float).
    A position_scale above 1 lets the network bend sharply within a pixel or two (MLPs fit
    smooth functions first: a learned potential's peak comes out rounded, and then the last
    steps to it pay little; docs/results.md, "Judging a learned reward").

    absorbing_state (envs that terminate): the steps after a termination are one state, DAC's
    absorbing state (Kostrikov et al. 2019): the network sees a flag and zeros, not o_T and the
    null action, so its reward is one learned number. Seen as (o_T, null), a smooth network
    has to tell the terminal observation from the live states next to it, and extrapolates.

    terminal_input (state-action form): a flag on the step that ends the episode, r(o, a, done),
    so that what ending pays (a crash, a landing) is learned on that step. Without it, a clip that
    ends in a crash can be explained as well by a low absorbing state as by a costly crash: with
    crashes in most random clips and landings in almost none, LunarLander's model paid every step
    alive above the end, and PPO hovered (docs/other_envs.md).
    """

    def __init__(self, encoding="normalized", ensemble_size=1, hidden_size=64, form="potential", activation="relu",
                 position_scale=1.0, obs_dim=2, n_actions=md.N_ACTIONS, action_low=None, action_high=None, absorbing_state=False,
                 terminal_input=False):
        super().__init__()
        for name, value, choices in (("encoding", encoding, ENCODINGS), ("form", form, FORMS), ("activation", activation, ACTIVATIONS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, not {value!r}")
        if (n_actions is None) == (action_low is None):
            raise ValueError("a reward model has either n_actions (Discrete) or action_low and action_high (Box)")
        if terminal_input and (form == "potential" or not absorbing_state):
            raise ValueError("terminal_input needs the state-action form and the absorbing state")
        self.config = {"encoding": encoding, "ensemble_size": int(ensemble_size), "hidden_size": int(hidden_size),
                       "form": form, "activation": activation, "position_scale": float(position_scale), "obs_dim": int(obs_dim),
                       "n_actions": None if n_actions is None else int(n_actions),
                       "action_low": None if action_low is None else [float(v) for v in action_low],
                       "action_high": None if action_high is None else [float(v) for v in action_high],
                       "absorbing_state": bool(absorbing_state),
                       "terminal_input": bool(terminal_input)}
        self.encoding, self.ensemble_size, self.form = encoding, int(ensemble_size), form
        self.n_actions, self.absorbing_state, self.terminal_input = n_actions, bool(absorbing_state), bool(terminal_input)
        action_features = (n_actions if encoding == "normalized" else 1) if n_actions is not None else len(action_low)
        in_features = obs_dim + (0 if form == "potential" else action_features) + int(absorbing_state) + int(terminal_input)
        act = nn.ReLU if activation == "relu" else nn.Tanh
        self.net = nn.Sequential(
            EnsembleLinear(ensemble_size, in_features, hidden_size, math.sqrt(2)), act(),
            EnsembleLinear(ensemble_size, hidden_size, hidden_size, math.sqrt(2)), act(),
            EnsembleLinear(ensemble_size, hidden_size, 1, 1.0),
        )
        # the observation box each dimension is scaled from (to [-1, 1]): the space's bounds, or for an
        # unbounded dimension mean -+ one std of the training observations (set_obs_scaling)
        low, high = (md.OBS_LOW, md.OBS_HIGH) if obs_dim == 2 else (-np.ones(obs_dim, np.float32), np.ones(obs_dim, np.float32))
        self.register_buffer("obs_low", torch.as_tensor(low, dtype=torch.float32).clone())
        self.register_buffer("obs_high", torch.as_tensor(high, dtype=torch.float32).clone())
        if n_actions is None:
            self.register_buffer("action_low", torch.as_tensor(action_low, dtype=torch.float32), persistent=False)
            self.register_buffer("action_high", torch.as_tensor(action_high, dtype=torch.float32), persistent=False)
        self.position_scale = float(position_scale)
        self.summary = {}
        self.reward_stats = None  # (mean, std) of the learned reward over the training steps: the 'normalize' transform off the grid

    @property
    def device(self):
        return self.obs_low.device

    @torch.no_grad()
    def set_obs_scaling(self, space_low, space_high, observations):
        """Scale each observation dimension from the space's bounds where they are finite (and
        under 1e6 wide), else from mean -+ one std of ``observations`` (N, d): the training data's."""
        low, high = np.asarray(space_low, np.float64), np.asarray(space_high, np.float64)
        bounded = np.isfinite(low) & np.isfinite(high) & (high - low < 1e6) & (high > low)
        data = np.asarray(observations, np.float64).reshape(-1, len(low))
        mean, std = (data.mean(0), data.std(0) + 1e-6) if len(data) else (np.zeros(len(low)), np.ones(len(low)))
        self.obs_low.copy_(torch.as_tensor(np.where(bounded, low, mean - std), dtype=torch.float32))
        self.obs_high.copy_(torch.as_tensor(np.where(bounded, high, mean + std), dtype=torch.float32))

    def features(self, obs, actions=None, absorbing=None, terminal=None):
        """Network inputs (..., in_features) for observations (..., d) and, in the state-action
        form, actions (...) or (..., d_action); ``absorbing`` (...): which rows are the absorbing state;
        ``terminal`` (...): which rows end the episode (None: none)."""
        obs = torch.as_tensor(obs, device=self.device).float()
        if self.encoding == "raw":
            position = obs
        else:
            position = self.position_scale * (2 * (obs - self.obs_low) / (self.obs_high - self.obs_low) - 1)
        if self.form == "potential":
            return self._flag(position, absorbing)
        if self.n_actions is None:  # a Box action, scaled to [-1, 1] from its bounds
            actions = torch.as_tensor(np.array(actions, dtype=np.float32) if isinstance(actions, np.ndarray) else actions, device=self.device).float()
            action = actions if self.encoding == "raw" else 2 * (actions - self.action_low) / (self.action_high - self.action_low) - 1
            return self._flag(torch.cat([position, action], -1), absorbing, terminal)
        actions = torch.as_tensor(np.array(actions, dtype=np.int64) if isinstance(actions, np.ndarray) else actions, device=self.device).long()
        action = actions.unsqueeze(-1).float() if self.encoding == "raw" else F.one_hot(actions, self.n_actions).float()
        return self._flag(torch.cat([position, action], -1), absorbing, terminal)

    def _flag(self, x, absorbing, terminal=None):
        """With absorbing_state: the absorbing rows become (0, ..., 0, 1), the others (x, 0); with
        terminal_input one more column, 1 on the rows that end the episode."""
        if not self.absorbing_state:
            return x
        as_flag = lambda f: (torch.zeros(x.shape[:-1], device=self.device) if f is None
                             else torch.as_tensor(np.asarray(f), device=self.device).float().expand(x.shape[:-1]))
        flag = as_flag(absorbing)
        columns = [x * (1 - flag).unsqueeze(-1), flag.unsqueeze(-1)]
        if self.terminal_input:
            columns.append((as_flag(terminal) * (1 - flag)).unsqueeze(-1))
        return torch.cat(columns, -1)

    def segment_inputs(self, obs, actions, absorbing=None, terminal=None):
        """What the network sees of segments with observations (..., k + 1, d), actions
        (..., k[, d_action]), absorbing steps and the terminal step (..., k): the first and last observation (..., 2, in)
        in the potential form, every (o_t, a_t) (..., k, in) in the state-action form."""
        obs = torch.as_tensor(obs)
        if self.form == "potential":
            last = None if absorbing is None else np.stack([np.zeros_like(np.asarray(absorbing)[..., 0]), np.asarray(absorbing)[..., -1]], -1)
            return self.features(obs[..., [0, -1], :], absorbing=last)
        return self.features(obs[..., :-1, :], actions, absorbing, terminal)

    def member_outputs(self, features, per_member=False):
        """Network outputs (E, ...) of every member. features (..., in), shared by the members,
        or (E, ..., in) with ``per_member=True``, one input batch per member (bootstrapping)."""
        if not per_member:
            features = features.unsqueeze(0).expand(self.ensemble_size, *features.shape)
        batch_shape = features.shape[1:-1]
        out = self.net(features.reshape(self.ensemble_size, -1, features.shape[-1]))
        return out.reshape(self.ensemble_size, *batch_shape)

    def member_rewards(self, obs, actions, next_obs, absorbing=None, terminal=None):
        """Per-step rewards (E, ...) of every member for arrays of o (..., d), a (...[, d_action]) and
        o' (..., d); ``absorbing`` (...): rows that are the absorbing state (the potential form: o' is);
        ``terminal`` (...): rows whose step ended the episode."""
        if self.form == "potential":
            flags = None if absorbing is None else np.stack([np.zeros_like(np.asarray(absorbing)), np.asarray(absorbing)], -1)
            both = self.member_outputs(self.features(torch.stack([torch.as_tensor(obs).float(), torch.as_tensor(next_obs).float()], -2),
                                                     absorbing=flags))
            return both[..., 1] - both[..., 0]  # one batched call for o and o'
        return self.member_outputs(self.features(obs, actions, absorbing, terminal))

    def forward(self, obs, actions, next_obs, absorbing=None, terminal=None):
        """Mean reward over the members, shape of ``actions``."""
        return self.member_rewards(obs, actions, next_obs, absorbing, terminal).mean(0)

    def normalization(self):
        """(shift, scale) of the 'normalize' transform off the grid (transform_rewards), or None without
        reward_stats: the learned reward's mean and std over the training steps, the shift being the
        absorbing state's reward where the model has that input, so that it pays 0 as an env's reward
        does after its episode ends (the same policies are optimal: every step, the absorbing ones
        too, moves by one constant) and PPO's critic sees no terminal spike of gamma / (1 - gamma) r."""
        if self.reward_stats is None or not self.absorbing_state:
            return self.reward_stats
        obs = np.zeros((1, self.config["obs_dim"]), np.float32)  # what the absorbing input zeroes
        action = np.zeros(1, np.int64) if self.n_actions is not None else np.zeros((1, len(self.config["action_low"])), np.float32)
        return float(self.reward(obs, action, obs, np.ones(1, bool))[0]), self.reward_stats[1]

    @torch.no_grad()
    def reward(self, obs, actions, next_obs, absorbing=None, terminal=None) -> np.ndarray:
        """The learned reward r(o, a, o') for arrays of observations o (..., d), actions (...[, d_action])
        and next observations o' (..., d), which rows are the absorbing state and which ended the
        episode: one batched call."""
        return self.forward(obs, actions, next_obs, absorbing, terminal).cpu().numpy()


def transform_rewards(rewards, transform, table):
    """The learned reward as PPO uses it. 'normalize' (C17): zero mean and unit spread over
    ``table``, every (o, a) of the moving dot's grid (reward_table) or the learned reward of every
    step of the training segments (the model file's ``reward_stats``, as (mean, std)): an affine
    map, which keeps every policy's ranking where episodes have a fixed length or end in an
    absorbing state that the same map applies to (ppo_rlhf.py; RewardModel.normalization shifts by the
    absorbing state's reward where the model has that input); 'clip' (the write-up): to [-1, 1],
    which ties actions."""
    if transform == "clip":
        return np.clip(rewards, -1, 1)
    mean, std = (float(table.mean()), float(table.std())) if isinstance(table, np.ndarray) else table
    return (rewards - mean) / (std + 1e-8)


def segment_returns(model: RewardModel, inputs, per_member=False):
    """R(sigma) = sum_t r(o_t, a_t, o_t+1) for segment inputs (..., L, in) of segment_inputs:
    shape (E, ...). In the potential form the sum telescopes to phi(o_k) - phi(o_0)."""
    out = model.member_outputs(inputs, per_member)
    return out[..., 1] - out[..., 0] if model.form == "potential" else out.sum(-1)


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


def comparison_inputs(model: RewardModel, comparisons):
    """Network inputs of both segments of every comparison of a db.Comparisons, (n, 2, L, in): L = 2
    (first and last observation) in the potential form, k (every step) in the state-action form."""
    return torch.stack([model.segment_inputs(comparisons.obs1, comparisons.actions1, comparisons.absorbing1, comparisons.terminal1),
                        model.segment_inputs(comparisons.obs2, comparisons.actions2, comparisons.absorbing2, comparisons.terminal2)], 1)


@torch.no_grad()
def comparison_returns(model: RewardModel, inputs):
    """The members' mean segment returns R1 and R2, (n,) each, of comparisons encoded by comparison_inputs."""
    return segment_returns(model, inputs).mean(0).unbind(-1)


def preference_accuracy(returns1, returns2, mu1, mu2) -> float:
    """Share of strict preferences whose sign of R1 - R2 is right (NaN if there are none)."""
    diff, strict = np.asarray(returns1 - returns2), np.asarray(mu1 != mu2)
    if not strict.any():
        return float("nan")
    return float(((diff > 0) == (np.asarray(mu1) > np.asarray(mu2)))[strict].mean())


def comparison_accuracy(model: RewardModel, comparisons, inputs=None) -> float:
    """The held-out accuracy: preference_accuracy of the model's segment returns on a db.Comparisons
    (any k). ``inputs``: its comparison_inputs on the model's device, where the caller has them."""
    inputs = comparison_inputs(model, comparisons).to(model.device) if inputs is None else inputs
    returns1, returns2 = (returns.cpu().numpy() for returns in comparison_returns(model, inputs))
    return preference_accuracy(returns1, returns2, comparisons.mu1, comparisons.mu2)


# --- scoring against the true reward over every (position, action) of the grid ---

@torch.no_grad()
def potential_table(model: RewardModel) -> np.ndarray:
    """The members' mean potential phi at every position, (N_STATES,): the potential form only."""
    return model.member_outputs(model.features(md.OBS_TABLE)).mean(0).cpu().numpy()


@torch.no_grad()
def reward_table(model: RewardModel) -> np.ndarray:
    """The learned reward for every state and action, (N_STATES, N_ACTIONS), in one call
    (the potential form evaluates phi once per position)."""
    if model.form == "potential":
        phi = potential_table(model)
        return phi[md.NEXT_STATE] - phi[:, None]
    positions = np.repeat(md.OBS_TABLE[:, None, :], md.N_ACTIONS, axis=1)
    actions = np.tile(np.arange(md.N_ACTIONS), (md.N_STATES, 1))
    return model.reward(positions, actions, md.OBS_TABLE[md.NEXT_STATE])


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


def epic_distance(model: RewardModel, gamma: float = 0.99) -> float:
    """EPIC pseudometric (Gleave et al. 2020) between the learned and the true reward, exact over
    the grid: both rewards canonicalized with S, S' uniform over positions and A uniform over
    actions, C(R)(s, a, s') = R(s, a, s') + gamma E[R(s', A, S')] - E[R(s, A, S')] - gamma E[R(S, A, S')],
    then the Pearson distance sqrt((1 - rho) / 2) over the env's transitions (s uniform, a uniform).
    0: the same reward up to shaping and scale; 1: the opposite one.

    EPIC evaluates rewards on pairs of positions the env never connects, so it depends on how the
    true reward is written there; it is written in the learned reward's own form, each equal to
    the env's sign(d(s) - d(s')) on every transition the env makes: R(s, a, s') = M(s) - M(s')
    (M the Manhattan distance to the centre; a move changes |dx| or |dy| by one) for the potential
    form, the env's r(s, a) for the state-action form. Compare EPIC within a form, not across."""
    manhattan = md.MANHATTAN.astype(np.float64)
    # E[R(x, A, S')] for every position x, for the learned and the true reward
    if model.form == "potential":  # phi(S') - phi(x), in expectation over S'
        phi = potential_table(model).astype(np.float64)
        learned, learned_mean = phi[md.NEXT_STATE] - phi[:, None], phi.mean() - phi
        true, true_mean = manhattan[:, None] - manhattan[md.NEXT_STATE], manhattan - manhattan.mean()
    else:  # r(x, a) does not depend on s'
        learned, true = reward_table(model).astype(np.float64), md.TRUE_REWARD.astype(np.float64)
        learned_mean, true_mean = learned.mean(1), true.mean(1)
    canonical = [table + gamma * mean[md.NEXT_STATE] - mean[:, None] - gamma * mean.mean()
                 for table, mean in ((learned, learned_mean), (true, true_mean))]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.corrcoef(canonical[0].ravel(), canonical[1].ravel())[0, 1]
    if not np.isfinite(rho):  # a constant learned reward: the distance is undefined, not 0 (max(0, nan) is 0)
        return float("nan")
    return float(np.sqrt(max(0.0, (1 - rho) / 2)))


def sampled_epic_distance(learned, true, obs, actions, next_obs, random_actions, gamma=0.99, n_canonical=256, seed=0) -> float:
    """EPIC (Gleave et al. 2020) estimated from samples, for envs without a grid: the transitions
    (obs, actions, next_obs) (N, ...) are the coverage distribution, and the canonicalization draws
    S and S' from their observations and A from ``random_actions(rng, n)`` (uniform over the action
    space). ``learned`` and ``true`` are rewards R(o, a, o') on arrays. Each expectation is a mean
    over ``n_canonical`` draws, the same draws for both rewards."""
    rng = np.random.default_rng(seed)
    n, m = len(obs), n_canonical
    states = obs[rng.integers(n, size=m)]
    next_states = next_obs[rng.integers(n, size=m)]
    sampled_actions = random_actions(rng, m)

    def canonical(reward):
        def mean_from(x):  # E[R(x, A, S')] for each row of x (K, d): K * m evaluations in one call
            k = len(x)
            values = reward(np.repeat(x, m, 0), np.tile(sampled_actions, (k, *[1] * (sampled_actions.ndim - 1))), np.tile(next_states, (k, 1)))
            return np.asarray(values, np.float64).reshape(k, m).mean(1)

        baseline = mean_from(states).mean()  # E[R(S, A, S')]
        return np.asarray(reward(obs, actions, next_obs), np.float64) + gamma * mean_from(next_obs) - mean_from(obs) - gamma * baseline

    learned_c, true_c = canonical(learned), canonical(true)
    if learned_c.std() == 0 or true_c.std() == 0:
        return float("nan")
    rho = float(np.corrcoef(learned_c, true_c)[0, 1])
    return float(np.sqrt(max(0.0, (1 - rho) / 2)))


# --- the model file ---

def for_env(env_spec, encoding="normalized", ensemble_size=1, hidden_size=64, form="potential", activation="relu",
            position_scale=1.0, terminal_input=False) -> RewardModel:
    """A new reward model for the env's spaces (envs.EnvSpec)."""
    discrete = env_spec.discrete
    model = RewardModel(encoding, ensemble_size, hidden_size, form, activation, position_scale, env_spec.obs_dim,
                        env_spec.n_actions, None if discrete else env_spec.action_low, None if discrete else env_spec.action_high,
                        absorbing_state=not env_spec.tabular, terminal_input=terminal_input)  # the moving dot never terminates
    model.set_obs_scaling(env_spec.obs_low, env_spec.obs_high, np.zeros((0, env_spec.obs_dim)))  # the trainer adds the data's
    return model


def refuse_existing(path: str, overwrite: bool) -> None:
    """Refuse to replace an existing model file unless ``overwrite``: the trainer checks before it trains, save before it writes."""
    if os.path.exists(path) and not overwrite:
        raise RewardModelError(f"{path} already exists; pass --overwrite to replace it or choose another --out")


def save(model: RewardModel, path: str, summary: dict | None = None, overwrite: bool = False, env_params: dict | None = None) -> None:
    """Write the model file atomically; refuse to replace an existing file unless ``overwrite``.
    ``env_params``: the env it was trained for (EnvSpec.params; default the moving dot's)."""
    refuse_existing(path, overwrite)
    if env_params is None:
        from rlhf import envs

        env_params = envs.spec(envs.DEFAULT_ENV_ID).params()
    checkpoint = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "config": dict(model.config),
        "env": dict(env_params), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "summary": dict(summary if summary is not None else model.summary),
        "reward_stats": list(model.reward_stats) if getattr(model, "reward_stats", None) else None,
    }
    checkpoints.save_atomic(checkpoint, path)


def load(path: str, device="cpu", env_spec=None) -> RewardModel:
    """Rebuild a model from its file (loaded with ``weights_only=True``), in eval mode; with
    ``env_spec``, a model trained for another env is refused."""
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
    version = checkpoint.get("format_version")
    if version not in (1, 2, FORMAT_VERSION):
        raise RewardModelError(f"{path} has format version {version}, this code reads 1 to {FORMAT_VERSION}; {retrain}")
    if version in (1, 2) and checkpoint.get("env") != md.ENV_PARAMS:
        raise RewardModelError(f"{path} was trained for other env parameters ({checkpoint.get('env')}); {retrain}")
    if env_spec is not None:
        from rlhf import envs

        stored = env_spec.params() if version in (1, 2) and env_spec.tabular else checkpoint.get("env", {})
        if version in (1, 2) and not env_spec.tabular:
            stored = {"env_id": envs.DEFAULT_ENV_ID}
        try:
            envs.check_params(stored, env_spec, f"reward model {path}", f"train one for it with `python train_reward_model.py --env-id {env_spec.env_id}`")
        except envs.EnvError as e:
            raise RewardModelError(str(e)) from None
    try:
        config = dict(checkpoint["config"])
        if version == 1:  # before the potential form: the write-up's r(o, a), tanh
            config.update(form="state-action", activation="tanh")
        model = RewardModel(**config)
        missing, unexpected = model.load_state_dict(checkpoint["state_dict"], strict=False)
        if unexpected or (missing and (version == FORMAT_VERSION or set(missing) != {"obs_low", "obs_high"})):
            raise RuntimeError(f"missing {missing}, unexpected {unexpected}")  # versions 1 and 2 kept the dot's bounds out of the file
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0]
        raise RewardModelError(f"{path} does not fit the network it describes ({reason}); {retrain}") from None
    model.summary = checkpoint.get("summary", {})
    model.reward_stats = tuple(checkpoint["reward_stats"]) if checkpoint.get("reward_stats") else None
    return model.to(device).eval()
