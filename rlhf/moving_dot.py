"""The moving-dot environment as a gymnasium 1.x env, single and natively vectorized.

A dot sits in a 210 x 160 field and should move to the centre (105, 80). Observations are
the dot's position (x, y); actions are 0 no-op, 1 down (y+1), 2 right (x+1), 3 up (y-1),
4 left (x-1); the reward is +1 if the Euclidean distance to the centre decreased, -1 if it
increased, 0 if unchanged. Episodes never terminate and are truncated after 2000 steps
(by the registration's ``max_episode_steps``).

The state space is small (202 x 152 positions), so every transition and reward is
precomputed once into lookup tables: both envs step by indexing them, which keeps the
dynamics in one place and makes the vector env a handful of numpy operations per step.

    import gymnasium as gym, moving_dot
    env = gym.make("MovingDot-v0")
    envs = gym.make_vec("MovingDot-v0", num_envs=8, vectorization_mode="vector_entry_point")
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

WIDTH, HEIGHT = 210, 160
DOT_HALF_SIZE = 4
X_MIN, X_MAX = DOT_HALF_SIZE, WIDTH - 1 - DOT_HALF_SIZE  # 4, 205
Y_MIN, Y_MAX = DOT_HALF_SIZE, HEIGHT - 1 - DOT_HALF_SIZE  # 4, 155
CENTRE = np.array([105, 80])
MAX_EPISODE_STEPS = 2000
N_ACTIONS = 5
ACTION_NAMES = ("noop", "down", "right", "up", "left")
ACTION_DELTAS = np.array([[0, 0], [0, 1], [1, 0], [0, -1], [-1, 0]])
OBS_LOW = np.array([X_MIN, Y_MIN], dtype=np.float32)
OBS_HIGH = np.array([X_MAX, Y_MAX], dtype=np.float32)
ENV_PARAMS = {
    "width": WIDTH, "height": HEIGHT, "x_min": X_MIN, "x_max": X_MAX, "y_min": Y_MIN,
    "y_max": Y_MAX, "centre": CENTRE.tolist(), "n_actions": N_ACTIONS,
    "max_episode_steps": MAX_EPISODE_STEPS,
}

# --- lookup tables over every state s (a flat index of the position) and action a ---
N_X, N_Y = X_MAX - X_MIN + 1, Y_MAX - Y_MIN + 1  # 202, 152
N_STATES = N_X * N_Y
POSITIONS = np.stack(np.meshgrid(np.arange(X_MIN, X_MAX + 1), np.arange(Y_MIN, Y_MAX + 1), indexing="ij"), -1).reshape(-1, 2)
OBS_TABLE = POSITIONS.astype(np.float32)
SQ_DISTANCE = ((POSITIONS - CENTRE) ** 2).sum(1)  # integers, so "distance changed" is exact
DISTANCE = np.sqrt(SQ_DISTANCE)
MANHATTAN = np.abs(POSITIONS - CENTRE).sum(1)  # the optimal return from each start


def position_to_state(positions):
    """Flat state index of integer positions (..., 2)."""
    positions = np.asarray(positions)
    return (positions[..., 0] - X_MIN) * N_Y + (positions[..., 1] - Y_MIN)


def _transition_tables():
    moved = POSITIONS[:, None, :] + ACTION_DELTAS[None, :, :]
    moved = np.clip(moved, [X_MIN, Y_MIN], [X_MAX, Y_MAX])  # a move into a wall leaves the dot in place
    next_state = position_to_state(moved)
    reward = np.sign(SQ_DISTANCE[:, None] - SQ_DISTANCE[next_state]).astype(np.float32)
    return next_state, reward


NEXT_STATE, TRUE_REWARD = _transition_tables()  # (N_STATES, N_ACTIONS) each
_NEXT_FLAT, _REWARD_FLAT = NEXT_STATE.ravel(), TRUE_REWARD.ravel()


def render_frame(position) -> np.ndarray:
    """An Atari-sized 160 x 210 x 3 uint8 frame: a white 9 x 9 dot on black."""
    frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    x, y = int(position[0]), int(position[1])
    frame[y - DOT_HALF_SIZE:y + DOT_HALF_SIZE + 1, x - DOT_HALF_SIZE:x + DOT_HALF_SIZE + 1] = 255
    return frame


def _sample_start(rng: np.random.Generator) -> int:
    # uniform over the integer positions inside the bounds; mean optimal return 88.5
    return int(rng.integers(N_STATES))


def _invalid_actions_error(actions) -> ValueError:
    return ValueError(f"invalid action(s) {np.asarray(actions).ravel()[:8].tolist()}: actions must be integers in 0..{N_ACTIONS - 1} ({', '.join(ACTION_NAMES)})")


class MovingDotEnv(gym.Env):
    """One dot. ``info`` holds ``distance`` (Euclidean, to the centre now) and
    ``optimal_return`` (the start's Manhattan distance to the centre: the best true return)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported; use None or 'rgb_array'")
        self.render_mode = render_mode
        self.observation_space = spaces.Box(OBS_LOW, OBS_HIGH, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._state = 0
        self._optimal_return = 0

    def _info(self):
        return {"distance": float(DISTANCE[self._state]), "optimal_return": int(self._optimal_return)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._state = _sample_start(self.np_random)
        self._optimal_return = MANHATTAN[self._state]
        return OBS_TABLE[self._state].copy(), self._info()

    def step(self, action):
        is_integer = isinstance(action, (int, np.integer)) and not isinstance(action, (bool, np.bool_))
        is_integer = is_integer or (isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu")
        if not is_integer or not 0 <= action < N_ACTIONS:
            raise _invalid_actions_error(action)
        flat = self._state * N_ACTIONS + int(action)
        reward = float(_REWARD_FLAT[flat])
        self._state = int(_NEXT_FLAT[flat])
        return OBS_TABLE[self._state].copy(), reward, False, False, self._info()

    def render(self):
        if self.render_mode == "rgb_array":
            return render_frame(POSITIONS[self._state])
        return None


class MovingDotVectorEnv(VectorEnv):
    """N dots stepped as numpy arrays, with same-step autoreset.

    Equal step for step to ``SyncVectorEnv`` over N ``MovingDotEnv`` (with a 2000-step time
    limit) seeded ``seed, seed + 1, ...`` in ``AutoresetMode.SAME_STEP``: on the step that
    truncates an episode, ``obs`` is already the next episode's first observation, and
    ``info["final_obs"]`` (masked by ``info["_final_obs"]``) holds the last one, which a
    learner needs to bootstrap the value at truncation. ``info["final_info"]`` holds the
    finished episodes' ``distance`` and ``optimal_return``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, max_episode_steps: int = MAX_EPISODE_STEPS, render_mode: str | None = None):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported; use None or 'rgb_array'")
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.single_observation_space = spaces.Box(OBS_LOW, OBS_HIGH, shape=(2,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(N_ACTIONS)
        self.observation_space = spaces.Box(
            np.tile(OBS_LOW, (num_envs, 1)), np.tile(OBS_HIGH, (num_envs, 1)), shape=(num_envs, 2), dtype=np.float32
        )
        self.action_space = spaces.MultiDiscrete(np.full(num_envs, N_ACTIONS))
        self._rngs = [seeding.np_random(None)[0] for _ in range(num_envs)]
        self._state = np.zeros(num_envs, dtype=np.intp)
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._optimal_return = np.zeros(num_envs, dtype=np.int64)
        self._terminated = np.zeros(num_envs, dtype=bool)  # the dot never reaches a terminal state

    def _restart(self, envs):
        # one generator per dot (the SyncVectorEnv convention), so a loop over the dots being
        # reset; that happens once every max_episode_steps steps, not on the hot path
        for i in envs:
            self._state[i] = _sample_start(self._rngs[i])
        self._elapsed[envs] = 0
        self._optimal_return[envs] = MANHATTAN[self._state[envs]]

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if seed is not None:
            seeds = [int(seed) + i for i in range(self.num_envs)] if np.ndim(seed) == 0 else [int(s) for s in seed]
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        self._restart(np.arange(self.num_envs))
        return OBS_TABLE[self._state], {"distance": DISTANCE[self._state], "optimal_return": self._optimal_return.copy()}

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu" or actions.min() < 0 or actions.max() >= N_ACTIONS:
            raise _invalid_actions_error(actions)
        flat = self._state * N_ACTIONS + actions
        rewards = _REWARD_FLAT[flat]
        self._state = _NEXT_FLAT[flat]
        self._elapsed += 1
        truncated = self._elapsed >= self.max_episode_steps
        info = {}
        if truncated.any():
            done = np.flatnonzero(truncated)
            info["final_obs"] = np.where(truncated[:, None], OBS_TABLE[self._state], 0).astype(np.float32)
            info["_final_obs"] = truncated.copy()
            info["final_info"] = {
                "distance": np.where(truncated, DISTANCE[self._state], 0.0), "_distance": truncated.copy(),
                "optimal_return": np.where(truncated, self._optimal_return, 0), "_optimal_return": truncated.copy(),
            }
            info["_final_info"] = truncated.copy()
            self._restart(done)
        info["distance"] = DISTANCE[self._state]
        info["optimal_return"] = self._optimal_return.copy()
        return OBS_TABLE[self._state], rewards, self._terminated.copy(), truncated, info

    def render(self):
        if self.render_mode == "rgb_array":
            return tuple(render_frame(p) for p in POSITIONS[self._state])
        return None


def uniform_steps(n, rng):
    """The write-up's single-step segments: a uniform position and a uniform action each, as
    (observations (n, 2, 2), actions (n, 1), true rewards (n, 1))."""
    states = rng.integers(N_STATES, size=n)
    actions = rng.integers(N_ACTIONS, size=(n, 1))
    obs = OBS_TABLE[np.stack([states, NEXT_STATE[states, actions[:, 0]]], 1)]
    return obs, actions, TRUE_REWARD[states, actions[:, 0]][:, None]


def normalized_return(true_returns, optimal_returns) -> float:
    """Mean true return over mean optimal return: 1.0 is optimal. A ratio of means, not a
    mean of ratios, so that the rare start at the centre (optimum 0) is harmless."""
    total = float(np.sum(optimal_returns))
    return float(np.sum(true_returns)) / total if total > 0 else float("nan")


gym.register(
    id="MovingDot-v0",
    entry_point="rlhf.moving_dot:MovingDotEnv",
    vector_entry_point="rlhf.moving_dot:MovingDotVectorEnv",
    max_episode_steps=MAX_EPISODE_STEPS,
)
