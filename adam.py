"""Adam (Kingma & Ba 2015) in a few torch._foreach kernels over all the parameters at once.

Shared by train_reward_model.py and ppo_rlhf.py. torch.optim's optimizers import
torch._dynamo the first time one is built, which costs longer than the reward model takes to
train (docs/performance.md); this is the same update as ``torch.optim.Adam(foreach=True)``
(L2 weight decay, no AMSGrad), and ``state_dict`` has torch's layout, so the moments saved in
either's format load in the other.
"""

from __future__ import annotations

import math

import torch


class Adam:
    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), tuple(betas), float(eps), float(weight_decay)
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        grads = [p.grad for p in self.params]
        beta1, beta2 = self.betas
        self.steps += 1
        if self.weight_decay:
            grads = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sq, beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(1 - beta2 ** self.steps))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, value=-self.lr / (1 - beta1 ** self.steps))

    def state_dict(self):
        """torch.optim.Adam's layout: per-parameter state by index, one param group."""
        state = {i: {"step": torch.tensor(float(self.steps)), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
                 for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq))} if self.steps else {}
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay, "amsgrad": False,
                 "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict):
        """Restore the moments and the step count (from this class or torch.optim.Adam); the
        step size and the other settings stay this optimizer's."""
        state = state_dict["state"]
        if len(state_dict["param_groups"][0]["params"]) != len(self.params):
            raise ValueError(f"optimizer state has {len(state_dict['param_groups'][0]['params'])} parameters, expected {len(self.params)}")
        if not state:
            return
        for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
            m.copy_(state[i]["exp_avg"])
            v.copy_(state[i]["exp_avg_sq"])
        self.steps = int(state[0]["step"])
