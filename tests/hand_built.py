"""Reward models with hand-set weights, shared by the tests: their rewards are known exactly."""

import numpy as np
import torch

from rlhf import moving_dot as md
from rlhf import reward_model as rm


def manhattan_potential_model(scale=1.0, offset=0.0, encoding="normalized"):
    """A one-member potential-form model whose weights make phi(o) = -scale x (Manhattan distance
    of o to the centre) + offset exactly (up to float32 rounding): layer 1 holds relu(+-(x - cx))
    and relu(+-(y - cy)) in pixels, layer 2 passes them on (they are >= 0), layer 3 sums them.
    Then r(o, a, o') = phi(o') - phi(o) = scale x md.TRUE_REWARD on every transition."""
    model = rm.RewardModel(encoding, ensemble_size=1, hidden_size=4, form="potential", activation="relu")
    if encoding == "normalized":  # x_n = 2 (x - low) / (high - low) - 1, so x - cx = a (x_n - c_n)
        a = (md.OBS_HIGH - md.OBS_LOW) / 2
        c = 2 * (md.CENTRE - md.OBS_LOW) / (md.OBS_HIGH - md.OBS_LOW) - 1
    else:
        a, c = np.ones(2, dtype=np.float32), md.CENTRE.astype(np.float32)
    w1, b1 = torch.zeros(2, 4), torch.zeros(4)
    for coordinate in range(2):
        for j, s in enumerate((1.0, -1.0)):
            w1[coordinate, 2 * coordinate + j] = s * float(a[coordinate])
            b1[2 * coordinate + j] = -s * float(a[coordinate]) * float(c[coordinate])
    with torch.no_grad():
        model.net[0].weight.copy_(w1[None])
        model.net[0].bias.copy_(b1[None, None])
        model.net[2].weight.copy_(torch.eye(4)[None])
        model.net[2].bias.zero_()
        model.net[4].weight.fill_(-scale)
        model.net[4].bias.fill_(offset)
    return model.eval()
