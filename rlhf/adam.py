"""Adam (Kingma & Ba 2015) over one flat buffer that holds every parameter and one that holds
every gradient, so that a step is a handful of kernels whatever the number of tensors.

Shared by train_reward_model.py and ppo_rlhf.py. torch.optim's optimizers import
torch._dynamo the first time one is built, which costs longer than the reward model takes to
train, and on CPU a foreach update still runs each kernel once per tensor (docs/performance.md).
This is the same arithmetic, element by element, as ``torch.optim.Adam`` (L2 weight decay, no
AMSGrad), and ``state_dict`` has its layout, so the moments saved in either's format load in the
other.
"""

from __future__ import annotations

import math

import torch


class Adam:
    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = list(params)
        if len({(p.dtype, p.device) for p in self.params}) != 1:
            raise ValueError("Adam: the parameters must share one dtype and one device")
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), tuple(betas), float(eps), float(weight_decay)
        self.steps = 0
        with torch.no_grad():
            self.flat = torch.cat([p.reshape(-1) for p in self.params])
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        for p in self.params:  # each parameter and its gradient become views of the flat buffers
            n = p.numel()
            p.data = self.flat[offset:offset + n].view_as(p)
            p.grad = self.grad[offset:offset + n].view_as(p)  # backward accumulates into it in place
            offset += n
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(self.flat), torch.zeros_like(self.flat)

    def zero_grad(self):
        self.grad.zero_()

    @torch.no_grad()
    def step(self):
        beta1, beta2 = self.betas
        self.steps += 1
        grad = self.grad.add(self.flat, alpha=self.weight_decay) if self.weight_decay else self.grad
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** self.steps)).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denom, value=-self.lr / (1 - beta1 ** self.steps))

    def _slices(self, flat):
        offset = 0
        for p in self.params:
            yield flat[offset:offset + p.numel()].view_as(p)
            offset += p.numel()

    def state_dict(self):
        """torch.optim.Adam's layout: per-parameter state by index, one param group."""
        state = {i: {"step": torch.tensor(float(self.steps)), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
                 for i, (m, v) in enumerate(zip(self._slices(self.exp_avg), self._slices(self.exp_avg_sq)))} if self.steps else {}
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
        for i, (m, v) in enumerate(zip(self._slices(self.exp_avg), self._slices(self.exp_avg_sq))):
            m.copy_(state[i]["exp_avg"])
            v.copy_(state[i]["exp_avg_sq"])
        self.steps = int(state[0]["step"])
