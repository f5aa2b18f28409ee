"""PPO's loss on one minibatch (CleanRL's ppo.py: the clipped surrogate, the clipped value loss,
the entropy bonus) and its gradient, computed two ways that agree to float rounding:

- ``autograd_loss``: torch autograd on the agent's networks, the reference. Try a new loss here
  and run ppo_rlhf.py with ``--autograd``.
- ``NumpyLoss``: the same loss and its gradient written out in numpy, layer by layer, into the
  optimizer's gradient buffer. It is the default on CPU. On CleanRL's minibatches of 128 rows,
  torch's per-op and autograd overhead costs several times the arithmetic of 64-unit layers
  (docs/performance.md has the timings).

tests/test_ppo_loss.py checks that the two give the same loss, statistics and gradient for
Discrete and Box actions, with and without each option.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhf.agent import OBS_CLIP


def autograd_loss(agent, batch, mb, args):
    """The minibatch ``mb`` (indices) of ``batch`` (torch tensors: obs, actions, logprobs,
    advantages, returns, values) through the agent, ``loss.backward()`` into the parameters'
    gradients (which the caller zeroes). Returns the loss's parts and statistics as floats."""
    b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values = (t[mb] for t in batch)
    _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs, b_actions)
    logratio = newlogprob - b_logprobs
    ratio = logratio.exp()
    with torch.no_grad():
        old_approx_kl = (-logratio).mean()
        approx_kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1.0).abs() > args.clip_coef).float().mean()
    if args.norm_adv:
        b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)
    pg_loss = torch.max(-b_advantages * ratio, -b_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)).mean()
    if args.clip_vloss:
        v_clipped = b_values + torch.clamp(newvalue - b_values, -args.clip_coef, args.clip_coef)
        v_loss = 0.5 * torch.max((newvalue - b_returns) ** 2, (v_clipped - b_returns) ** 2).mean()
    else:
        v_loss = 0.5 * ((newvalue - b_returns) ** 2).mean()
    entropy_loss = entropy.mean()
    loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
    loss.backward()
    return {"policy_loss": pg_loss.item(), "value_loss": v_loss.item(), "entropy": entropy_loss.item(),
            "old_approx_kl": old_approx_kl.item(), "approx_kl": approx_kl.item(), "clipfrac": clipfrac.item()}


class NumpyLoss:
    """``autograd_loss`` by hand, on numpy views of the agent's parameters and of the optimizer's
    flat gradient buffer (so ``adam.Adam.step`` sees the gradient and the networks see each
    step). CPU only: the views share memory with the tensors."""

    def __init__(self, agent, optimizer):
        params = dict(agent.named_parameters())
        grads = {name: p.grad for name, p in params.items()}
        if any(g is None for g in grads.values()) or any(p.device.type != "cpu" for p in params.values()):
            raise ValueError("NumpyLoss needs CPU parameters whose gradients are views of an adam.Adam buffer")
        self.w = {name: p.detach().numpy() for name, p in params.items()}
        self.g = {name: g.numpy() for name, g in grads.items()}
        self.agent, self.optimizer = agent, optimizer

    def observations(self, obs):
        """The networks' input for a batch of raw observations (Agent.normalize, in numpy): it
        does not change during an update, so it is computed once per rollout."""
        a = self.agent
        x = obs * a.obs_scale.numpy() + a.obs_offset.numpy()
        return np.clip(x, -OBS_CLIP, OBS_CLIP) if a.norm_obs else x

    def _forward(self, x, net):
        w = self.w
        h1 = np.tanh(x @ w[f"{net}.0.weight"].T + w[f"{net}.0.bias"])
        h2 = np.tanh(h1 @ w[f"{net}.2.weight"].T + w[f"{net}.2.bias"])
        return h1, h2, h2 @ w[f"{net}.4.weight"].T + w[f"{net}.4.bias"]

    def _backward(self, x, h1, h2, d_out, net):
        """Write the gradient of one MLP's parameters, given d loss / d output (B, n)."""
        w, g = self.w, self.g
        g[f"{net}.4.weight"][:] = d_out.T @ h2
        g[f"{net}.4.bias"][:] = d_out.sum(0)
        d2 = (d_out @ w[f"{net}.4.weight"]) * (1 - h2 * h2)  # tanh' = 1 - tanh^2
        g[f"{net}.2.weight"][:] = d2.T @ h1
        g[f"{net}.2.bias"][:] = d2.sum(0)
        d1 = (d2 @ w[f"{net}.2.weight"]) * (1 - h1 * h1)
        g[f"{net}.0.weight"][:] = d1.T @ x
        g[f"{net}.0.bias"][:] = d1.sum(0)

    def __call__(self, batch, mb, args):
        """``batch``: numpy arrays (x from ``observations``, actions, logprobs, advantages,
        returns, values); writes the gradient of the minibatch ``mb``'s loss, returns what
        ``autograd_loss`` returns."""
        x, actions, old_logprob, advantages, returns, old_values = (a[mb] for a in batch)
        n, clip = len(mb), args.clip_coef
        h1, h2, out = self._forward(x, "actor")
        c1, c2, value = self._forward(x, "critic")
        value = value[:, 0]
        if self.agent.discrete:
            z = out - out.max(1, keepdims=True)
            log_probs = z - np.log(np.exp(z).sum(1, keepdims=True))
            probs, rows = np.exp(log_probs), np.arange(n)
            newlogprob = log_probs[rows, actions]
            entropy = -(probs * log_probs).sum(1)
        else:
            logstd = self.w["actor_logstd"]
            std = np.exp(logstd)
            scaled = (actions - out) / std
            newlogprob = (-0.5 * scaled ** 2 - logstd - 0.5 * np.log(2 * np.pi)).sum(1)
            entropy = np.broadcast_to((logstd + 0.5 * (1 + np.log(2 * np.pi))).sum(), (n,))
        logratio = newlogprob - old_logprob
        ratio = np.exp(logratio)
        if args.norm_adv:
            advantages = (advantages - advantages.mean()) / (advantages.std(ddof=1) + 1e-8)
        pg1, pg2 = -advantages * ratio, -advantages * np.clip(ratio, 1 - clip, 1 + clip)
        if args.clip_vloss:
            v_clipped = old_values + np.clip(value - old_values, -clip, clip)
            l1, l2 = (value - returns) ** 2, (v_clipped - returns) ** 2
            v_loss = 0.5 * np.maximum(l1, l2).mean()
            # max(l1, l2): l1's gradient where it is the larger; l2's moves only where the clip is not active
            d_value = np.where(l1 >= l2, value - returns, (v_clipped - returns) * (np.abs(value - old_values) <= clip))
        else:
            v_loss = 0.5 * ((value - returns) ** 2).mean()
            d_value = value - returns
        d_value = d_value * (args.vf_coef / n)

        # d loss / d log-prob: the surrogate's gradient flows through the unclipped term where it is the max
        d_logprob = np.where(pg1 >= pg2, -advantages, 0) * ratio / n
        if self.agent.discrete:  # d log p_a / d z = onehot(a) - p; d H / d z = -p (log p + H)
            d_out = -d_logprob[:, None] * probs
            d_out[rows, actions] += d_logprob
            d_out += (args.ent_coef / n) * probs * (log_probs + entropy[:, None])
        else:  # d log N / d mean = (a - mean) / std^2; d log N / d logstd = scaled^2 - 1; d H / d logstd = 1
            d_out = d_logprob[:, None] * scaled / std
            self.g["actor_logstd"][:] = (d_logprob[:, None] * (scaled ** 2 - 1)).sum(0) - args.ent_coef
        self._backward(x, h1, h2, d_out.astype(np.float32, copy=False), "actor")
        self._backward(x, c1, c2, d_value[:, None].astype(np.float32, copy=False), "critic")
        return {"policy_loss": float(np.maximum(pg1, pg2).mean()), "value_loss": float(v_loss), "entropy": float(entropy.mean()),
                "old_approx_kl": float(-logratio.mean()), "approx_kl": float(((ratio - 1) - logratio).mean()),
                "clipfrac": float((np.abs(ratio - 1.0) > clip).mean())}
