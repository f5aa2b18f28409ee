"""Envs registered for the tests: one the pipeline supports (as a user's own env, passed as
``custom_envs:TestReach-v0``) and one for each kind it must refuse (envs.spec)."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ReachEnv(gym.Env):
    """docs/custom_env.md's example: a point on a line should reach 0; actions 0 (left), 1 (stay), 2 (right)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-10, 10))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        before = abs(self.x)
        self.x = float(np.clip(self.x + (int(action) - 1) * 0.5, -10, 10))
        return np.array([self.x], np.float32), before - abs(self.x), False, False, {}


class SpacesEnv(gym.Env):
    """An env of given spaces that does nothing: what envs.spec reads is its spaces and time limit."""

    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


BOX = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
REFUSED = {  # id: (observation space, action space, time limit), and what the refusal names
    "TestDictObs-v0": ((spaces.Dict({"a": BOX}), spaces.Discrete(2), 10), "1-D Box"),
    "TestImageObs-v0": ((spaces.Box(0, 255, shape=(8, 8, 3), dtype=np.uint8), spaces.Discrete(2), 10), "1-D Box"),
    "TestMultiDiscrete-v0": ((BOX, spaces.MultiDiscrete([2, 3]), 10), "Discrete(n) or a bounded 1-D Box"),
    "TestUnboundedAction-v0": ((BOX, spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32), 10), "bounded 1-D Box"),
    "TestDiscreteFrom1-v0": ((BOX, spaces.Discrete(3, start=1), 10), "starts at 1"),
    "TestNoTimeLimit-v0": ((BOX, spaces.Discrete(2), None), "no time limit"),
}

gym.register(id="TestReach-v0", entry_point=ReachEnv, max_episode_steps=40)
for _env_id, ((_obs, _act, _limit), _) in REFUSED.items():
    gym.register(id=_env_id, entry_point=SpacesEnv, max_episode_steps=_limit, kwargs={"observation_space": _obs, "action_space": _act})
