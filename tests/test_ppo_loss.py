"""rlhf/ppo_loss.py: the hand-written numpy loss and gradient against torch autograd, for Discrete and
Box agents, with each of the loss's options on and off, on minibatches where the clips are active;
and a whole update of ppo_rlhf.py done either way ends at the same weights."""

import argparse

import numpy as np
import pytest
import torch
from in_process import run_script

from rlhf import adam, ppo_loss
from rlhf import agent as agent_lib
from rlhf import envs as env_lib


def loss_args(**overrides):
    args = {"clip_coef": 0.2, "ent_coef": 0.01, "vf_coef": 0.5, "norm_adv": True, "clip_vloss": True, **overrides}
    return argparse.Namespace(**args)


def make_batch(agent, n, seed):
    """A batch whose log-probs and values are far enough from the agent's that both clips bite on
    some rows and not on others."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-3, 3, (n, agent.config["obs_dim"])).astype(np.float32)
    with torch.no_grad():
        if agent.discrete:
            actions = rng.integers(0, agent.n_outputs, n)
        else:
            actions = rng.normal(0, 1.5, (n, agent.n_outputs)).astype(np.float32)
        _, logprob, _, value = agent.get_action_and_value(torch.as_tensor(obs), torch.as_tensor(actions))
    logprobs = (logprob.numpy() + rng.normal(0, 0.3, n)).astype(np.float32)
    values = (value.numpy() + rng.normal(0, 0.4, n)).astype(np.float32)
    returns = (values + rng.normal(0, 1, n)).astype(np.float32)
    advantages = rng.normal(0.3, 2, n).astype(np.float32)
    return obs, actions, logprobs, advantages, returns, values


def both_gradients(agent, args, n=96, seed=0):
    optimizer = adam.Adam(agent.parameters(), lr=1e-3, eps=1e-5)
    batch = make_batch(agent, n, seed)
    mb = np.random.default_rng(seed + 1).permutation(n)[: n // 2 + 7]
    optimizer.zero_grad()
    expected = ppo_loss.autograd_loss(agent, tuple(torch.as_tensor(a) for a in batch), torch.as_tensor(mb), args)
    expected_grad = optimizer.grad.clone()
    optimizer.grad.fill_(np.nan)  # the numpy loss must write every entry
    numpy_loss = ppo_loss.NumpyLoss(agent, optimizer)
    got = numpy_loss((numpy_loss.observations(batch[0]), *batch[1:]), mb, args)
    return expected, expected_grad, got, optimizer.grad.clone()


@pytest.mark.parametrize("kind", ["discrete", "box"])
@pytest.mark.parametrize("options", [{}, {"norm_adv": False}, {"clip_vloss": False}, {"ent_coef": 0.3, "vf_coef": 2.0, "clip_coef": 0.05}])
@pytest.mark.parametrize("norm_obs", [False, True])
def test_numpy_loss_and_gradient_match_autograd(kind, options, norm_obs):
    torch.manual_seed(3)
    agent = agent_lib.Agent(3, 5, norm_obs=norm_obs) if kind == "discrete" else agent_lib.Agent(3, None, 2, norm_obs=norm_obs)
    if norm_obs:  # scaling that the clip to +-10 cuts on some rows
        agent.update_obs_stats(np.random.default_rng(0).normal(0, 0.2, (50, 3)))
    with torch.no_grad():  # a log std away from 0, so that its gradient is not the entropy's alone
        for p in agent.parameters():
            if p.ndim == 2 and p.shape[0] == 1:
                p.fill_(-0.4)
    args = loss_args(**options)
    expected, expected_grad, got, grad = both_gradients(agent, args)
    assert torch.isfinite(grad).all()
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key
    assert 0 < got["clipfrac"] < 1  # the surrogate's clip is active on some rows, not all
    scale = expected_grad.abs().max().item()
    assert scale > 1e-3
    assert (grad - expected_grad).abs().max().item() < 1e-5 * scale


def test_numpy_loss_refuses_parameters_without_a_flat_gradient_buffer():
    agent = agent_lib.Agent(2, 4)
    with pytest.raises(ValueError, match="adam.Adam"):
        ppo_loss.NumpyLoss(agent, None)


def test_a_run_with_the_numpy_gradient_and_one_with_autograd_end_close(tmp_path):
    """Two iterations of ppo_rlhf.py each way from the same seed: the weights differ by float
    rounding only (the update's arithmetic is the same, in another order)."""
    agents = {}
    for name, flags in (("numpy", []), ("autograd", ["--autograd"])):
        path = tmp_path / f"{name}.pt"
        run_script("ppo_rlhf.py", "--total-timesteps", "1024", "--eval-episodes", "2", "--no-progress", "--run-dir",
                   str(tmp_path / "runs"), "--exp-name", name, "--save-path", str(path), *flags)
        agents[name] = agent_lib.load(str(path))[0].state_dict()
    torch.manual_seed(1)  # the run's initial weights
    initial = agent_lib.for_env(env_lib.spec("MovingDot-v0")).state_dict()
    moved = max((agents["numpy"][key] - initial[key]).abs().max().item() for key in initial)
    assert moved > 1e-3  # the updates ran
    for key, value in agents["numpy"].items():
        assert torch.allclose(value, agents["autograd"][key], atol=1e-5 * moved), key
