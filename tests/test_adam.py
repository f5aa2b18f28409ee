"""adam.py: the same update as torch.optim.Adam, bit for bit, over flat parameter and gradient
buffers; its state_dict loads into torch's Adam and back; bad parameter sets are refused."""

import pytest
import torch

from rlhf import adam


def two_nets(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    twin = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    twin.load_state_dict(net.state_dict())
    return net, twin


def train(net, optimizer, steps, seed=1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 3, generator=generator)
        optimizer.zero_grad()
        (net(x) ** 2).mean().backward()
        optimizer.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_the_update_is_torchs_adam_bit_for_bit(weight_decay):
    net, twin = two_nets()
    ours = adam.Adam(net.parameters(), lr=1e-2, eps=1e-5, weight_decay=weight_decay)
    theirs = torch.optim.Adam(twin.parameters(), lr=1e-2, eps=1e-5, weight_decay=weight_decay, foreach=True)
    train(net, ours, 60)
    train(twin, theirs, 60)
    for p, q in zip(net.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    assert ours.steps == 60


def test_parameters_and_gradients_are_views_of_the_flat_buffers():
    net, _ = two_nets()
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = adam.Adam(net.parameters(), lr=1e-3)
    assert optimizer.flat.numel() == sum(p.numel() for p in net.parameters())
    for p, value in zip(net.parameters(), before):
        assert torch.equal(p, value)  # flattening keeps the values
        assert p.untyped_storage().data_ptr() == optimizer.flat.untyped_storage().data_ptr()
        assert p.grad.untyped_storage().data_ptr() == optimizer.grad.untyped_storage().data_ptr()
    train(net, optimizer, 1)
    # backward accumulated into the flat gradient, and the step moved the parameters through the flat buffer
    assert optimizer.grad.abs().sum() > 0
    assert all(not torch.equal(p, value) for p, value in zip(net.parameters(), before))
    optimizer.zero_grad()
    assert optimizer.grad.abs().sum() == 0 and all(p.grad.abs().sum() == 0 for p in net.parameters())


def test_state_dict_round_trips_through_torchs_adam():
    net, twin = two_nets()
    ours = adam.Adam(net.parameters(), lr=1e-2, eps=1e-5)
    train(net, ours, 10)
    theirs = torch.optim.Adam(twin.parameters(), lr=1e-2, eps=1e-5, foreach=True)
    twin.load_state_dict(net.state_dict())
    theirs.load_state_dict(ours.state_dict())
    assert float(theirs.state_dict()["state"][0]["step"]) == 10
    train(net, ours, 5, seed=2)
    train(twin, theirs, 5, seed=2)
    for p, q in zip(net.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    # and back: torch's moments into ours
    again = adam.Adam(two_nets()[0].parameters(), lr=1e-2)
    again.load_state_dict(theirs.state_dict())
    assert again.steps == 15 and torch.equal(again.exp_avg, torch.cat([theirs.state[p]["exp_avg"].reshape(-1) for p in twin.parameters()]))


def test_a_state_for_other_parameters_and_mixed_dtypes_are_refused():
    net, _ = two_nets()
    optimizer = adam.Adam(net.parameters(), lr=1e-3)
    other = adam.Adam([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    with pytest.raises(ValueError, match="parameters"):
        other.load_state_dict(optimizer.state_dict())
    with pytest.raises(ValueError, match="dtype"):
        adam.Adam([torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))], lr=1e-3)
