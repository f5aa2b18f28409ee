"""The reward model (reward_model.py) and its trainer (train_reward_model.py): the preference
loss against hand-computed values and at extreme returns, the network's shapes and encodings,
scoring against the true reward, the model file and its errors, and short trainings that must
learn the true reward's action order."""

import glob
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import torch
from hand_built import manhattan_potential_model
from in_process import run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import make_preferences_db as gen
import train_reward_model as trm
from rlhf import db, envs
from rlhf import moving_dot as md
from rlhf import reward_model as rm
from rlhf import value_iteration as vi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_reward_model.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DOT = envs.spec("MovingDot-v0")
TRAINED_STEPS = 1200  # the `trained` model's budget: enough to stop early, and to learn the order (0.999 agreement)
DOT_SPACES = {"obs_dim": 2, "n_actions": 5, "action_low": None, "action_high": None, "absorbing_state": False, "terminal_input": False}  # the config's env part, the dot's


def generate(path, *flags, n=3000):
    gen.main(gen.parse_args(["--db", str(path), "--n-segments", str(n), "--n-comparisons", str(n), *map(str, flags)]))
    return str(path)


def train(db_path, out, run_dir, *flags):
    args = trm.parse_args(["--db", str(db_path), "--out", str(out), "--run-dir", str(run_dir), "--no-progress",
                           *map(str, flags)])
    return trm.main(args)


def run_cli(*flags, cwd, own_process=False):
    """The command line: in this process (tests/in_process.py), or as a process of its own."""
    if own_process:
        return subprocess.run([sys.executable, SCRIPT, "--no-progress", *map(str, flags)], capture_output=True,
                              text=True, cwd=cwd, timeout=120)
    return run_script(SCRIPT, "--no-progress", *flags, cwd=cwd)


@pytest.fixture(scope="module")
def prefs_db(tmp_path_factory):
    """3000 single-step comparisons labeled by the distance oracle (300 held out)."""
    return generate(tmp_path_factory.mktemp("db") / "p.db", "--seed", 1)


@pytest.fixture(scope="module")
def trained(prefs_db, tmp_path_factory):
    """A model of the defaults (potential form, normalized encoding, ReLU, 3 members) trained with
    early stopping on a budget of TRAINED_STEPS steps (measured: it stops at step 1000, best at 600)."""
    tmp = tmp_path_factory.mktemp("trained")
    out = tmp / "model.pt"
    summary = train(prefs_db, out, tmp / "runs", "--max-steps", TRAINED_STEPS, "--seed", 1)
    return summary, out, tmp


# --- the preference loss --------------------------------------------------------------------------

def naive_loss(r1, r2, mu1, mu2, eps=0.0):
    """C17's formula written out in float64, exp and all."""
    r1, r2 = np.float64(r1), np.float64(r2)
    p1 = np.exp(r1) / (np.exp(r1) + np.exp(r2))
    p2 = np.exp(r2) / (np.exp(r1) + np.exp(r2))
    p1, p2 = (1 - eps) * p1 + eps / 2, (1 - eps) * p2 + eps / 2
    return -(mu1 * np.log(p1) + mu2 * np.log(p2))


RETURN_PAIRS = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (2.5, -1.5), (-3.0, 4.0), (10.0, 9.0), (-7.25, -7.5)]
LABELS = [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)]


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_preference_loss_equals_the_hand_computed_cross_entropy(eps):
    for r1, r2 in RETURN_PAIRS:
        for mu1, mu2 in LABELS:
            got = rm.preference_loss(torch.tensor(r1, dtype=torch.float64), torch.tensor(r2, dtype=torch.float64),
                                     torch.tensor(mu1, dtype=torch.float64), torch.tensor(mu2, dtype=torch.float64),
                                     label_noise=eps).item()
            assert got == pytest.approx(naive_loss(r1, r2, mu1, mu2, eps), rel=1e-9, abs=1e-12), (r1, r2, mu1, mu2)


def test_preference_loss_special_values_and_batching():
    r1 = torch.tensor([0.0, 3.0, 3.0, 3.0])
    r2 = torch.tensor([0.0, 1.0, 1.0, 1.0])
    mu1 = torch.tensor([0.5, 1.0, 0.0, 0.5])
    loss = rm.preference_loss(r1, r2, mu1, 1 - mu1)
    assert loss.shape == (4,)
    assert loss[0].item() == pytest.approx(np.log(2))  # equal returns: -log(1/2) whatever the label
    # the wrong side costs exactly the margin more than the right side
    assert (loss[2] - loss[1]).item() == pytest.approx(2.0, rel=1e-5)
    # an 'equal' label is the mean of the two hard labels
    assert loss[3].item() == pytest.approx((loss[1] + loss[2]).item() / 2, rel=1e-6)
    # label noise bounds the loss of a confident mistake by -log(eps / 2)
    big = rm.preference_loss(torch.tensor(50.0), torch.tensor(0.0), torch.tensor(0.0), torch.tensor(1.0), label_noise=0.1)
    assert big.item() == pytest.approx(-np.log(0.9 * np.exp(-50.0) / (1 + np.exp(-50.0)) + 0.05), rel=1e-5)
    assert big.item() < -np.log(0.05) + 1e-6


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")
@pytest.mark.parametrize("magnitude", [1000.0, 1e4])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_preference_loss_and_gradient_stay_finite_at_huge_returns(magnitude, eps):
    # the naive formula overflows here, so the check is meaningful
    assert not np.isfinite(naive_loss(magnitude, -magnitude, 0.0, 1.0))
    assert not np.isfinite(naive_loss(magnitude, magnitude, 0.5, 0.5))
    r1 = torch.tensor([magnitude, -magnitude, magnitude, magnitude, -magnitude], requires_grad=True)
    r2 = torch.tensor([-magnitude, magnitude, magnitude, -magnitude, -magnitude], requires_grad=True)
    mu1 = torch.tensor([0.0, 1.0, 0.5, 1.0, 0.5])
    loss = rm.preference_loss(r1, r2, mu1, 1 - mu1, label_noise=eps)
    assert torch.isfinite(loss).all(), loss
    loss.sum().backward()
    assert torch.isfinite(r1.grad).all() and torch.isfinite(r2.grad).all()
    if eps == 0:
        # a confident mistake costs the margin; the right answer costs nothing
        assert loss[0].item() == pytest.approx(2 * magnitude, rel=1e-6)
        assert loss[3].item() == pytest.approx(0.0, abs=1e-6)
        assert r1.grad[0].item() == pytest.approx(1.0) and r2.grad[0].item() == pytest.approx(-1.0)
    else:
        assert loss[0].item() == pytest.approx(-np.log(0.05), rel=1e-5)
    assert loss[2].item() == pytest.approx(np.log(2), rel=1e-5)


def test_preference_accuracy_counts_strict_labels_only():
    acc = rm.preference_accuracy(np.array([1.0, -1.0, 2.0, 0.5]), np.zeros(4), np.array([1.0, 1.0, 0.5, 0.0]),
                                 np.array([0.0, 0.0, 0.5, 1.0]))
    assert acc == pytest.approx(1 / 3)
    assert np.isnan(rm.preference_accuracy(np.ones(2), np.zeros(2), np.full(2, 0.5), np.full(2, 0.5)))


# --- the network ----------------------------------------------------------------------------------


def phi(model, obs):
    """Member outputs (E, ...) of a potential-form model at positions (..., 2)."""
    return model.member_outputs(model.features(obs)).detach()


def test_features_normalized_and_raw():
    obs = np.array([[4.0, 4.0], [205.0, 155.0], [104.5, 79.5]], dtype=np.float32)
    actions = np.array([0, 2, 4])
    # state-action: the position and the action (one-hot, or the index as one float)
    f = rm.RewardModel("normalized", form="state-action").features(obs, actions)
    assert f.shape == (3, 7)
    np.testing.assert_allclose(f[:, :2].numpy(), [[-1, -1], [1, 1], [0, 0]], atol=1e-6)
    np.testing.assert_array_equal(f[:, 2:].numpy(), np.eye(5)[actions])
    raw = rm.RewardModel("raw", form="state-action").features(obs, actions)
    assert raw.shape == (3, 3)
    np.testing.assert_array_equal(raw.numpy(), np.c_[obs, actions])
    assert rm.RewardModel("raw", form="state-action").net[0].weight.shape[1] == 3
    assert rm.RewardModel("normalized", form="state-action").net[0].weight.shape[1] == 7
    # potential (the default): the position only, with or without actions
    potential = rm.RewardModel("normalized")
    assert potential.form == "potential" and potential.net[0].weight.shape[1] == 2
    np.testing.assert_allclose(potential.features(obs).numpy(), [[-1, -1], [1, 1], [0, 0]], atol=1e-6)
    np.testing.assert_array_equal(potential.features(obs, actions).numpy(), potential.features(obs).numpy())
    np.testing.assert_array_equal(rm.RewardModel("raw").features(obs).numpy(), obs)
    assert rm.RewardModel("raw").net[0].weight.shape[1] == 2
    # the activation
    assert isinstance(rm.RewardModel().net[1], torch.nn.ReLU) and isinstance(rm.RewardModel().net[3], torch.nn.ReLU)
    assert isinstance(rm.RewardModel(activation="tanh").net[1], torch.nn.Tanh)
    for kwargs, name in (({"encoding": "pixels"}, "encoding"), ({"form": "linear"}, "form"), ({"activation": "sigmoid"}, "activation")):
        with pytest.raises(ValueError, match=name):
            rm.RewardModel(**kwargs)


@pytest.mark.parametrize("form", rm.FORMS)
@pytest.mark.parametrize("encoding", rm.ENCODINGS)
@pytest.mark.parametrize("batch", [(), (5,), (4, 3), (2, 3, 4)])
def test_output_shapes(encoding, form, batch):
    torch.manual_seed(0)
    model = rm.RewardModel(encoding, ensemble_size=3, hidden_size=16, form=form)
    rng = np.random.default_rng(0)
    obs = rng.integers(4, 150, size=(*batch, 2)).astype(np.float32)
    next_obs = rng.integers(4, 150, size=(*batch, 2)).astype(np.float32)
    actions = rng.integers(5, size=batch)
    features = model.features(obs, actions)
    in_features = 2 if form == "potential" else 7 if encoding == "normalized" else 3
    assert features.shape == (*batch, in_features)
    outputs = model.member_outputs(features)
    assert outputs.shape == (3, *batch)
    members = model.member_rewards(obs, actions, next_obs)
    assert members.shape == (3, *batch)
    if form == "potential":  # phi(o') - phi(o)
        torch.testing.assert_close(members, model.member_outputs(model.features(next_obs)) - outputs)
    else:  # r(o, a): o' is not read
        torch.testing.assert_close(members, outputs)
    mean = model(obs, actions, next_obs)
    assert mean.shape == batch
    torch.testing.assert_close(mean, members.mean(0))
    assert model.reward(obs, actions, next_obs).shape == batch


@pytest.mark.parametrize("form", rm.FORMS)
def test_ensemble_members_differ_at_init_and_each_is_its_own_network(form):
    torch.manual_seed(0)
    model = rm.RewardModel("normalized", ensemble_size=3, form=form)
    states = np.arange(0, md.N_STATES, 997)
    positions, actions = md.OBS_TABLE[states], np.arange(len(states)) % 5
    next_positions = md.OBS_TABLE[md.NEXT_STATE[states, actions]]
    members = model.member_rewards(positions, actions, next_positions).detach()
    for i in range(3):
        for j in range(i):
            assert not torch.allclose(members[i], members[j])
    # member 1 equals a one-member model holding member 1's weights
    single = rm.RewardModel("normalized", ensemble_size=1, form=form)
    with torch.no_grad():
        for big, small in zip(model.parameters(), single.parameters()):
            small.copy_(big[1:2])
    torch.testing.assert_close(single(positions, actions, next_positions), members[1])
    # per_member: each member on its own inputs
    feats = model.features(positions, actions)
    outputs = model.member_outputs(feats).detach()
    own = torch.stack([feats, feats.flip(0), feats])
    per = model.member_outputs(own, per_member=True).detach()
    torch.testing.assert_close(per[0], outputs[0])
    torch.testing.assert_close(per[1], outputs[1].flip(0))
    assert not torch.allclose(per[1], outputs[1])


@pytest.mark.parametrize("form", rm.FORMS)
def test_reward_accepts_numpy_and_torch_and_returns_numpy(form):
    torch.manual_seed(1)
    model = rm.RewardModel("normalized", ensemble_size=2, form=form)
    obs = np.array([[10, 20], [100, 80], [200, 150]], dtype=np.float32)
    next_obs = np.array([[11, 20], [100, 81], [199, 150]], dtype=np.float32)
    actions = np.array([1, 2, 3])
    from_numpy = model.reward(obs, actions, next_obs)
    from_torch = model.reward(torch.as_tensor(obs), torch.as_tensor(actions), torch.as_tensor(next_obs))
    from_int = model.reward(obs.astype(np.int64), actions, next_obs.astype(np.int64))
    for out in (from_numpy, from_torch, from_int):
        assert isinstance(out, np.ndarray) and out.shape == (3,)
    np.testing.assert_array_equal(from_numpy, from_torch)
    np.testing.assert_array_equal(from_numpy, from_int)
    # no autograd graph leaks out of reward()
    assert not model(obs, actions, next_obs).detach().requires_grad and model(obs, actions, next_obs).requires_grad


def test_potential_reward_is_the_difference_of_phi_whatever_the_action():
    torch.manual_seed(5)
    model = rm.RewardModel("normalized", ensemble_size=3)
    rng = np.random.default_rng(5)
    obs, next_obs = (rng.integers(4, 150, size=(40, 2)).astype(np.float32) for _ in range(2))
    actions = rng.integers(5, size=40)
    expected = (phi(model, next_obs) - phi(model, obs)).mean(0).numpy()
    np.testing.assert_allclose(model.reward(obs, actions, next_obs), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model.reward(obs, actions, next_obs), model.reward(obs, (actions + 1) % 5, next_obs))
    np.testing.assert_allclose(model.reward(obs, actions, next_obs), -model.reward(next_obs, actions, obs), atol=1e-6)
    assert np.all(model.reward(obs, actions, obs) == 0)  # staying put earns exactly nothing
    # the hand-built phi = -Manhattan computes the true reward on every transition of the grid
    table = rm.reward_table(manhattan_potential_model())
    np.testing.assert_allclose(table, md.TRUE_REWARD, atol=1e-4)


def test_state_action_segment_returns_sum_the_member_rewards_over_steps():
    torch.manual_seed(2)
    model = rm.RewardModel("normalized", ensemble_size=3, form="state-action")
    rng = np.random.default_rng(2)
    obs = rng.integers(4, 150, size=(6, 5, 2))  # k + 1 = 5 observations, k = 4 actions
    actions = rng.integers(5, size=(6, 4))
    inputs = model.segment_inputs(obs, actions)
    assert inputs.shape == (6, 4, 7)
    returns = rm.segment_returns(model, inputs)
    assert returns.shape == (3, 6)
    manual = torch.zeros(3, 6)
    for t in range(4):
        manual += model.member_rewards(obs[:, t], actions[:, t], obs[:, t + 1]).detach()
    torch.testing.assert_close(returns.detach(), manual)
    # per member: (E, n, k, in) inputs
    per = rm.segment_returns(model, torch.stack([inputs, inputs.flip(0), inputs]), per_member=True)
    torch.testing.assert_close(per[1].detach(), manual[1].flip(0))
    # the intermediate steps count: changing one changes the return
    other = obs.copy()
    other[:, 2] = rng.integers(4, 150, size=(6, 2))
    assert not torch.allclose(rm.segment_returns(model, model.segment_inputs(other, actions)), returns)


@pytest.mark.parametrize("encoding", rm.ENCODINGS)
def test_potential_segment_returns_telescope_to_the_ends(encoding):
    """R(sigma) = sum_t phi(o_t+1) - phi(o_t) = phi(o_k) - phi(o_0), whatever the steps between."""
    torch.manual_seed(6)
    model = rm.RewardModel(encoding, ensemble_size=3)
    rng = np.random.default_rng(6)
    k = 6
    obs = rng.integers(4, 150, size=(8, k + 1, 2)).astype(np.float32)
    actions = rng.integers(5, size=(8, k))
    inputs = model.segment_inputs(obs, actions)
    assert inputs.shape == (8, 2, 2)  # the first and the last observation only
    returns = rm.segment_returns(model, inputs).detach()
    assert returns.shape == (3, 8)
    torch.testing.assert_close(returns, phi(model, obs[:, -1]) - phi(model, obs[:, 0]))
    # the per-step rewards sum to the same
    steps = sum(model.member_rewards(obs[:, t], actions[:, t], obs[:, t + 1]).detach() for t in range(k))
    torch.testing.assert_close(steps, returns, rtol=1e-5, atol=1e-5)
    # any other path between the same ends, with any actions, earns the same; other ends do not
    detour = obs.copy()
    detour[:, 1:-1] = rng.integers(4, 150, size=(8, k - 1, 2))
    torch.testing.assert_close(rm.segment_returns(model, model.segment_inputs(detour, rng.integers(5, size=(8, k)))).detach(),
                               returns, rtol=0, atol=0)
    moved = obs.copy()
    moved[:, -1] = rng.integers(4, 150, size=(8, 2))
    assert not torch.allclose(rm.segment_returns(model, model.segment_inputs(moved, actions)).detach(), returns)
    # per member: (E, n, 2, in) inputs
    per = rm.segment_returns(model, torch.stack([inputs, inputs.flip(0), inputs]), per_member=True).detach()
    torch.testing.assert_close(per[1], returns[1].flip(0))


def cycle_returns(table, moves):
    """The reward of ``moves`` from every position where they stay clear of the walls (and so
    return to the start), per start."""
    deltas = md.ACTION_DELTAS[[md.ACTION_NAMES.index(m) for m in moves]]
    assert not deltas.sum(0).any()  # a closed loop
    reach = np.abs(np.cumsum(deltas, 0)).max(0)
    x, y = md.POSITIONS.T
    clear = (x - reach[0] >= md.X_MIN) & (x + reach[0] <= md.X_MAX) & (y - reach[1] >= md.Y_MIN) & (y + reach[1] <= md.Y_MAX)
    states, total = np.flatnonzero(clear), np.zeros(clear.sum(), dtype=np.float64)
    start = states.copy()
    for move in moves:
        action = md.ACTION_NAMES.index(move)
        total += table[states, action]
        states = md.NEXT_STATE[states, action]
    np.testing.assert_array_equal(states, start)
    return total


LOOPS = [("right", "down", "left", "up"), ("left", "left", "up", "right", "right", "down"), ("up", "down"), ("noop",)]


@pytest.mark.parametrize("seed", [0, 1])
def test_no_closed_loop_earns_anything_in_the_potential_form(seed):
    torch.manual_seed(seed)
    potential = rm.reward_table(rm.RewardModel("normalized", ensemble_size=3))
    state_action = rm.reward_table(rm.RewardModel("normalized", ensemble_size=3, form="state-action"))
    step = np.abs(potential).max()
    assert step > 1e-4  # the potential model's steps pay something (a random init's phi is not flat) ...
    for moves in LOOPS:  # ... but its loops pay 0, to float32 rounding of phi
        assert np.abs(cycle_returns(potential, moves)).max() < 1e-3 * step, moves
    # the state-action form has no such property: some loop pays as much as a step
    for moves in (LOOPS[0], LOOPS[2]):
        assert np.abs(cycle_returns(state_action, moves)).max() > 0.1 * np.abs(state_action).max(), moves
    # the true reward, for the record: loops pay 0 too
    for moves in LOOPS:
        assert not cycle_returns(md.TRUE_REWARD, moves).any()


# --- scoring against the true reward --------------------------------------------------------------

@pytest.mark.parametrize("form", rm.FORMS)
def test_reward_table_matches_reward_on_sampled_pairs(form):
    torch.manual_seed(3)
    model = rm.RewardModel("normalized", ensemble_size=2, form=form)
    table = rm.reward_table(model)
    assert table.shape == (md.N_STATES, md.N_ACTIONS)
    rng = np.random.default_rng(3)
    positions = md.POSITIONS[rng.integers(md.N_STATES, size=20)]
    positions = np.r_[positions, [[4, 4], [205, 155], [105, 80]]]
    actions = rng.integers(5, size=len(positions))
    actions[-3:] = [4, 2, 0]  # into the left wall, into the right wall, noop
    states = md.position_to_state(positions)
    expected = model.reward(positions.astype(np.float32), actions, md.OBS_TABLE[md.NEXT_STATE[states, actions]])
    np.testing.assert_allclose(table[states, actions], expected, rtol=1e-5, atol=1e-6)
    if form == "potential":  # a bump into a wall leaves the dot in place: exactly 0, as noop
        assert table[states[-3], 4] == table[states[-2], 2] == 0 and not table[:, 0].any()


def test_transform_rewards_normalize_and_clip():
    assert rm.TRANSFORMS[0] == "normalize"  # PPO's and the trainer's default
    rng = np.random.default_rng(0)
    table = rng.normal(3.0, 2.5, size=(md.N_STATES, md.N_ACTIONS)).astype(np.float32)
    normalized = rm.transform_rewards(table, "normalize", table)
    assert abs(normalized.mean()) < 1e-4 and normalized.std() == pytest.approx(1.0, rel=1e-4)
    # any rewards are mapped by the table's mean and spread: an affine map, the same for every batch
    rewards = table[:7, 2]
    np.testing.assert_allclose(rm.transform_rewards(rewards, "normalize", table), normalized[:7, 2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rm.transform_rewards(rewards, "normalize", table), (rewards - table.mean()) / table.std(), rtol=1e-4)
    # it keeps every order: the same argmax action everywhere
    np.testing.assert_array_equal(normalized.argmax(1), table.argmax(1))
    clipped = rm.transform_rewards(table, "clip", table)
    assert clipped.min() == -1 and clipped.max() == 1
    np.testing.assert_array_equal(clipped, np.clip(table, -1, 1))
    # a constant table does not divide by zero
    assert np.isfinite(rm.transform_rewards(np.ones(3), "normalize", np.ones((2, 2)))).all()


def test_true_reward_scores_perfectly_and_its_negation_scores_zero():
    assert rm.action_order_agreement(md.TRUE_REWARD) == 1.0
    assert rm.reward_correlation(md.TRUE_REWARD) == pytest.approx(1.0)
    assert rm.action_order_agreement(-md.TRUE_REWARD) == 0.0
    assert rm.reward_correlation(-md.TRUE_REWARD) == pytest.approx(-1.0)
    # scale and shift change neither; a constant reward orders nothing
    assert rm.action_order_agreement(3 * md.TRUE_REWARD + 7) == 1.0
    assert rm.reward_correlation(3 * md.TRUE_REWARD + 7) == pytest.approx(1.0)
    assert rm.action_order_agreement(np.zeros_like(md.TRUE_REWARD)) == 0.0


def test_action_order_agreement_counts_the_pairs_by_hand():
    # noop 0, right +1, left -1 (others wall-like 0) at one position, learned gets one pair wrong
    true = np.array([[0.0, 0.0, 1.0, 0.0, -1.0]])
    learned = np.array([[0.0, 0.0, 1.0, 0.0, 0.5]])  # ranks left above noop, down and up
    # strict pairs: (0,2) (0,4) (1,2) (1,4) (2,3) (2,4) (3,4) = 7; left (4) wrong against 0, 1, 3
    assert rm.action_order_agreement(learned, true) == pytest.approx(4 / 7)


# --- EPIC distance ----------------------------------------------------------------------------------

def test_the_true_reward_is_the_manhattan_potential_difference():
    """What epic_distance compares with: M(s) - M(s') is the env's reward on every transition."""
    np.testing.assert_array_equal(md.MANHATTAN[:, None] - md.MANHATTAN[md.NEXT_STATE], md.TRUE_REWARD)


@pytest.mark.parametrize("encoding", rm.ENCODINGS)
def test_epic_distance_is_zero_for_phi_minus_manhattan_at_any_scale_and_offset(encoding):
    for scale, offset in ((1.0, 0.0), (0.01, 0.0), (25.0, -3.0), (1.0, 40.0)):
        model = manhattan_potential_model(scale, offset, encoding)
        np.testing.assert_allclose(phi(model, md.OBS_TABLE)[0].numpy(), -scale * md.MANHATTAN + offset, rtol=1e-5, atol=1e-3)
        assert rm.epic_distance(model) == pytest.approx(0.0, abs=1e-3), (scale, offset)
        for gamma in (0.9, 0.5):
            assert rm.epic_distance(model, gamma=gamma) == pytest.approx(0.0, abs=1e-3), (scale, offset, gamma)


def test_epic_distance_is_one_for_phi_plus_manhattan():
    for scale in (1.0, 0.05):
        assert rm.epic_distance(manhattan_potential_model(-scale)) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("form", rm.FORMS)
def test_epic_distance_of_a_random_init_lies_strictly_between(form):
    distances = []
    for seed in range(3):
        torch.manual_seed(seed)
        distances.append(rm.epic_distance(rm.RewardModel("normalized", ensemble_size=2, form=form)))
    assert all(0.1 < d < 0.9 for d in distances), distances
    assert len(set(distances)) == 3  # it reads the model
    # a positive scale of the network's output changes nothing, a negative one mirrors it: D(-R) = sqrt(1 - D(R)^2)
    torch.manual_seed(0)
    model = rm.RewardModel("normalized", ensemble_size=2, form=form)
    before = rm.epic_distance(model)
    with torch.no_grad():
        model.net[4].weight.mul_(7.0)
    assert rm.epic_distance(model) == pytest.approx(before, abs=1e-6)
    with torch.no_grad():
        model.net[4].weight.mul_(-1.0)
    assert rm.epic_distance(model) == pytest.approx(np.sqrt(1 - before ** 2), abs=1e-6)


@pytest.mark.parametrize("form", rm.FORMS)
def test_epic_distance_of_a_constant_reward_is_undefined_not_zero(form):
    """A network whose output does not depend on its input (a dead ReLU net, say) has no
    direction to correlate: until this was fixed, max(0, nan) reported it as distance 0, the
    true reward itself."""
    model = rm.RewardModel("normalized", ensemble_size=2, form=form)
    with torch.no_grad():
        model.net[4].weight.zero_()
        model.net[4].bias.fill_(3.0)
    assert np.isnan(rm.epic_distance(model))


class TrueRewardStateAction(rm.RewardModel):
    """A state-action 'model' that returns md.TRUE_REWARD[s, a] exactly."""

    def __init__(self):
        super().__init__(form="state-action")

    def reward(self, obs, actions, next_obs):
        return md.TRUE_REWARD[md.position_to_state(np.asarray(obs).astype(np.int64)), np.asarray(actions)]


def test_epic_distance_of_a_state_action_reward_equal_to_the_true_one_on_every_transition_is_zero():
    model = TrueRewardStateAction()
    np.testing.assert_array_equal(rm.reward_table(model), md.TRUE_REWARD)
    assert rm.epic_distance(model) == pytest.approx(0.0, abs=1e-6)  # the true reward is written in the model's own form


# --- the model file -------------------------------------------------------------------------------

@pytest.mark.parametrize("form, activation", [("potential", "relu"), ("potential", "tanh"), ("state-action", "tanh"),
                                              ("state-action", "relu")])
@pytest.mark.parametrize("encoding", rm.ENCODINGS)
def test_save_load_round_trip(tmp_path, encoding, form, activation):
    torch.manual_seed(4)
    model = rm.RewardModel(encoding, ensemble_size=2, hidden_size=32, form=form, activation=activation)
    path = str(tmp_path / "m.pt")
    summary = {"val_accuracy": 0.875, "note": "hello", "steps": 12}
    rm.save(model, path, summary)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["format_version"] == rm.FORMAT_VERSION == 3
    assert checkpoint["env"] == DOT.params()  # the moving dot's by default
    torch.testing.assert_close(checkpoint["state_dict"]["obs_low"], torch.as_tensor(md.OBS_LOW))  # the scaling is in the file
    torch.testing.assert_close(checkpoint["state_dict"]["obs_high"], torch.as_tensor(md.OBS_HIGH))
    loaded = rm.load(path, env_spec=DOT)
    assert not loaded.training
    assert loaded.config == {"encoding": encoding, "ensemble_size": 2, "hidden_size": 32, "form": form, "activation": activation,
                              "position_scale": 1.0, **DOT_SPACES}
    assert loaded.form == form and type(loaded.net[1]) is type(model.net[1])
    assert loaded.summary == summary
    np.testing.assert_array_equal(rm.reward_table(loaded), rm.reward_table(model))
    features = model.features(md.OBS_TABLE[:50], np.arange(50) % 5)
    torch.testing.assert_close(loaded.member_outputs(features), model.member_outputs(features), rtol=0, atol=0)
    assert [f for f in os.listdir(tmp_path) if ".tmp-" in f] == []
    # the model's own summary is saved when none is given
    model.summary = {"a": 1}
    rm.save(model, str(tmp_path / "m2.pt"))
    assert rm.load(str(tmp_path / "m2.pt")).summary == {"a": 1}


@pytest.mark.parametrize("encoding", rm.ENCODINGS)
def test_a_version_1_file_loads_as_the_state_action_tanh_model(tmp_path, encoding):
    """A file written before the potential form: format version 1, a config of three keys, the
    weights of the write-up's r(o, a) with tanh."""
    torch.manual_seed(8)
    old = rm.RewardModel(encoding, ensemble_size=2, hidden_size=16, form="state-action", activation="tanh")
    path = str(tmp_path / "v1.pt")
    torch.save({"format": rm.FORMAT, "format_version": 1,
                "config": {"encoding": encoding, "ensemble_size": 2, "hidden_size": 16},
                "env": dict(md.ENV_PARAMS), "state_dict": {k: v.detach().clone() for k, v in old.state_dict().items()},
                "summary": {"val_accuracy": 0.9}}, path)
    loaded = rm.load(path)
    assert loaded.form == "state-action" and loaded.config["activation"] == "tanh"
    assert loaded.config == {"encoding": encoding, "ensemble_size": 2, "hidden_size": 16, "form": "state-action", "activation": "tanh",
                             "position_scale": 1.0, **DOT_SPACES}
    torch.testing.assert_close(loaded.obs_low, torch.as_tensor(md.OBS_LOW))  # not in a version-1 file: the dot's bounds
    torch.testing.assert_close(loaded.obs_high, torch.as_tensor(md.OBS_HIGH))
    assert rm.load(path, env_spec=DOT).config == loaded.config  # a version-1 file is the dot's
    assert isinstance(loaded.net[1], torch.nn.Tanh) and loaded.summary == {"val_accuracy": 0.9}
    np.testing.assert_array_equal(rm.reward_table(loaded), rm.reward_table(old))
    # read with relu the same weights give another reward; as today's default, the potential form, they do not fit
    relu = rm.RewardModel(encoding, ensemble_size=2, hidden_size=16, form="state-action", activation="relu")
    relu.load_state_dict(old.state_dict())
    assert not np.allclose(rm.reward_table(relu), rm.reward_table(loaded))
    with pytest.raises(RuntimeError):
        rm.RewardModel(encoding, ensemble_size=2, hidden_size=16).load_state_dict(old.state_dict())
    # saved again, it is a version-3 file that says what it is
    rm.save(loaded, str(tmp_path / "v3.pt"))
    resaved = torch.load(str(tmp_path / "v3.pt"), weights_only=True)
    assert resaved["format_version"] == 3 and resaved["config"]["form"] == "state-action" and resaved["config"]["activation"] == "tanh"
    np.testing.assert_array_equal(rm.reward_table(rm.load(str(tmp_path / "v3.pt"))), rm.reward_table(old))
    # a version-1 file with potential-form weights (which version 1 never wrote) does not fit
    torch.save({**torch.load(path, weights_only=True), "state_dict": rm.RewardModel(encoding, 2, 16).state_dict()}, path)
    with pytest.raises(rm.RewardModelError, match="does not fit"):
        rm.load(path)


@pytest.mark.parametrize("form", rm.FORMS)
def test_a_version_2_file_loads_with_the_dots_bounds(tmp_path, form):
    """A file written before other envs: format version 2, a config of six keys, the dot's
    ENV_PARAMS, and no observation bounds among the weights (they were not persistent)."""
    torch.manual_seed(9)
    model = rm.RewardModel("normalized", ensemble_size=2, hidden_size=16, form=form, position_scale=10.0)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if k not in ("obs_low", "obs_high")}
    config = {k: model.config[k] for k in ("encoding", "ensemble_size", "hidden_size", "form", "activation", "position_scale")}
    path = str(tmp_path / "v2.pt")
    torch.save({"format": rm.FORMAT, "format_version": 2, "config": config, "env": dict(md.ENV_PARAMS), "state_dict": state,
                "summary": {"steps": 3}}, path)
    for loaded in (rm.load(path), rm.load(path, env_spec=DOT)):
        assert loaded.config == model.config and loaded.summary == {"steps": 3} and loaded.reward_stats is None
        np.testing.assert_array_equal(rm.reward_table(loaded), rm.reward_table(model))
    with pytest.raises(rm.RewardModelError, match="made for MovingDot-v0, not CartPole-v1") as e:
        rm.load(path, env_spec=envs.spec("CartPole-v1"))
    assert path in str(e.value) and "--env-id MovingDot-v0" in str(e.value)
    # a version-3 file must hold its bounds: without them it does not fit
    rm.save(model, str(tmp_path / "v3.pt"))
    checkpoint = torch.load(str(tmp_path / "v3.pt"), weights_only=True)
    torch.save({**checkpoint, "state_dict": state}, str(tmp_path / "v3.pt"))
    with pytest.raises(rm.RewardModelError, match="does not fit"):
        rm.load(str(tmp_path / "v3.pt"))


def test_a_model_for_another_env_keeps_its_spaces_scaling_and_reward_stats(tmp_path):
    """CartPole: 4 numbers, two of them unbounded (scaled from the data's mean -+ one std);
    Pendulum: a Box action, scaled from its bounds. Both round-trip through the file, and are
    refused by another env."""
    cartpole, pendulum = envs.spec("CartPole-v1"), envs.spec("Pendulum-v1")
    rng = np.random.default_rng(0)
    model = rm.for_env(cartpole, ensemble_size=2, hidden_size=8, form="state-action")
    assert model.config["obs_dim"] == 4 and model.config["n_actions"] == 2 and model.net[0].weight.shape[1] == 4 + 2 + 1  # + the absorbing flag
    data = rng.normal([0.0, 1.0, 0.0, -2.0], [1.0, 3.0, 0.1, 0.5], size=(500, 4))
    model.set_obs_scaling(cartpole.obs_low, cartpole.obs_high, data)
    mean, std = data.mean(0), data.std(0) + 1e-6
    bounded = np.isfinite(cartpole.obs_low)  # x and theta have bounds; their velocities do not
    assert bounded.tolist() == [True, False, True, False]
    np.testing.assert_allclose(model.obs_low.numpy(), np.where(bounded, cartpole.obs_low, mean - std), rtol=1e-6)
    np.testing.assert_allclose(model.obs_high.numpy(), np.where(bounded, cartpole.obs_high, mean + std), rtol=1e-6)
    model.reward_stats = (0.25, 2.0)
    path = str(tmp_path / "cartpole.pt")
    rm.save(model, path, {"n_train": 1}, env_params=cartpole.params())
    loaded = rm.load(path, env_spec=cartpole)
    torch.testing.assert_close(loaded.obs_low, model.obs_low, rtol=0, atol=0)
    torch.testing.assert_close(loaded.obs_high, model.obs_high, rtol=0, atol=0)
    assert loaded.reward_stats == (0.25, 2.0)
    obs, actions = data[:10].astype(np.float32), np.arange(10) % 2
    np.testing.assert_array_equal(loaded.reward(obs, actions, obs), model.eval().reward(obs, actions, obs))
    for wrong in (DOT, pendulum):
        with pytest.raises(rm.RewardModelError, match=f"made for CartPole-v1, not {wrong.env_id}; pass --env-id CartPole-v1"):
            rm.load(path, env_spec=wrong)

    box = rm.for_env(pendulum, ensemble_size=1, hidden_size=8, form="state-action")
    assert box.config["n_actions"] is None and box.config["action_low"] == [-2.0] and box.net[0].weight.shape[1] == 3 + 1 + 1
    features = box.features(np.zeros((3, 3), np.float32), np.array([[-2.0], [0.0], [2.0]], np.float32))
    np.testing.assert_allclose(features[:, 3].numpy(), [-1.0, 0.0, 1.0])  # the action scaled from its bounds
    rm.save(box, str(tmp_path / "pendulum.pt"), env_params=pendulum.params())
    again = rm.load(str(tmp_path / "pendulum.pt"), env_spec=pendulum)
    torch.testing.assert_close(again.features(np.ones((2, 3)), np.ones((2, 1))), box.features(np.ones((2, 3)), np.ones((2, 1))))


def test_save_refuses_an_existing_file_unless_overwrite(tmp_path):
    path = str(tmp_path / "m.pt")
    rm.save(rm.RewardModel(), path, {"first": True})
    before = open(path, "rb").read()
    with pytest.raises(rm.RewardModelError, match="already exists") as e:
        rm.save(rm.RewardModel(), path, {"second": True})
    assert path in str(e.value)
    assert open(path, "rb").read() == before
    rm.save(rm.RewardModel("raw"), path, {"second": True}, overwrite=True)
    assert rm.load(path).summary == {"second": True} and rm.load(path).encoding == "raw"
    assert [f for f in os.listdir(tmp_path) if ".tmp-" in f] == []


def _checkpoint(path, model_kwargs=None, **changes):
    rm.save(rm.RewardModel(hidden_size=16, **(model_kwargs or {})), str(path), {"val_accuracy": 0.5})
    checkpoint = torch.load(str(path), weights_only=True)
    for key, value in changes.items():
        if key == "config":
            checkpoint["config"] = {**checkpoint["config"], **value}
        else:
            checkpoint[key] = value
    torch.save(checkpoint, str(path))
    return str(path)


def bad_files(tmp_path):
    real = str(tmp_path / "real.pt")
    rm.save(rm.RewardModel(), real)
    data = open(real, "rb").read()
    (tmp_path / "truncated.pt").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.pt").write_text("this is a reward model, honest\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"format": "something-else", "weights": torch.zeros(3)}, str(tmp_path / "foreign.pt"))
    torch.save([1, 2, 3], str(tmp_path / "list.pt"))
    return {
        "missing": (str(tmp_path / "missing.pt"), "not found"),
        "directory": (str(tmp_path), "not found"),
        "truncated": (str(tmp_path / "truncated.pt"), "not a readable reward model file"),
        "text": (str(tmp_path / "text.pt"), "not a readable reward model file"),
        "empty": (str(tmp_path / "empty.pt"), "not a readable reward model file"),
        "foreign": (str(tmp_path / "foreign.pt"), "'something-else'"),
        "list": (str(tmp_path / "list.pt"), "not a reward model file"),
        "version": (_checkpoint(tmp_path / "version.pt", format_version=99), "format version 99"),
        "env": (_checkpoint(tmp_path / "env.pt", env={**DOT.params(), "native": {**md.ENV_PARAMS, "width": 300}}), "other parameters"),
        "other_env": (_checkpoint(tmp_path / "other_env.pt", env=envs.spec("CartPole-v1").params()), "--env-id CartPole-v1"),
        "version_2_env": (_checkpoint(tmp_path / "v2env.pt", format_version=2, env={**md.ENV_PARAMS, "width": 300}), "other env parameters"),
        "hidden_size": (_checkpoint(tmp_path / "hidden.pt", config={"hidden_size": 32}), "does not fit"),
        "ensemble": (_checkpoint(tmp_path / "ensemble.pt", config={"ensemble_size": 2}), "does not fit"),
        # in the potential form both encodings read 2 numbers, so the encoding is checked on a state-action file
        "encoding": (_checkpoint(tmp_path / "encoding.pt", {"form": "state-action"}, config={"encoding": "raw"}), "does not fit"),
        "bad_encoding": (_checkpoint(tmp_path / "bad_encoding.pt", config={"encoding": "pixels"}), "does not fit"),
        "form": (_checkpoint(tmp_path / "form.pt", config={"form": "state-action"}), "does not fit"),
        "form_back": (_checkpoint(tmp_path / "form_back.pt", {"form": "state-action"}, config={"form": "potential"}), "does not fit"),
        "bad_form": (_checkpoint(tmp_path / "bad_form.pt", config={"form": "linear"}), "does not fit"),
        "bad_activation": (_checkpoint(tmp_path / "bad_activation.pt", config={"activation": "sigmoid"}), "does not fit"),
        "version_1_potential": (_checkpoint(tmp_path / "v1.pt", format_version=1, env=dict(md.ENV_PARAMS)), "does not fit"),  # read as state-action
        "no_state": (_checkpoint(tmp_path / "no_state.pt", state_dict={}), "does not fit"),
    }


def test_load_errors_name_the_file(tmp_path):
    for name, (path, fragment) in bad_files(tmp_path).items():
        with pytest.raises(rm.RewardModelError) as e:
            rm.load(path, env_spec=DOT)  # as the stages load it: for the env they run on
        message = str(e.value)
        assert path in message, (name, message)
        assert fragment in message, (name, message)
        assert "\n" not in message, (name, message)


# --- training -------------------------------------------------------------------------------------

def test_training_learns_the_true_reward_order(trained, prefs_db):
    summary, out, tmp = trained
    assert summary["val_accuracy"] >= 0.95, summary
    assert summary["action_order_agreement"] >= 0.95, summary
    assert summary["reward_correlation"] >= 0.8, summary
    assert summary["n_train"] == 2700 and summary["n_validation"] == 300 and summary["segment_length"] == 1
    assert 0 < summary["best_step"] <= summary["steps"] <= TRAINED_STEPS
    assert summary["best_step"] % summary["args"]["eval_every"] == 0  # evaluated every --eval-every steps
    assert summary["stopped_early"] == (summary["steps"] < TRAINED_STEPS)
    assert np.isfinite(summary["val_loss"]) and summary["val_loss"] < np.log(2)
    # the file holds the scored (best) weights and the summary
    model = rm.load(str(out))
    assert model.config == {"encoding": "normalized", "ensemble_size": 3, "hidden_size": 64, "form": "potential", "activation": "relu",
                            "position_scale": 30.0, **DOT_SPACES}
    assert summary["args"]["patience"] == 4
    assert model.summary["val_accuracy"] == summary["val_accuracy"]
    assert model.summary["db"] == prefs_db
    table = rm.reward_table(model)
    assert rm.action_order_agreement(table) == pytest.approx(summary["action_order_agreement"])
    assert rm.reward_correlation(table) == pytest.approx(summary["reward_correlation"])
    assert rm.epic_distance(model) == pytest.approx(summary["epic_distance"])
    assert 0 <= summary["epic_distance"] < 0.3  # between a trained model and a random init (docs/testing.md)
    # the optimal policy of the learned reward as PPO uses it by default (normalized), recomputed,
    # and it is a good one on this easy task
    assert summary["reward_transform"] == "normalize" and "optimal_policy_normalized_return_unclipped" not in summary
    scores, _ = vi.reward_scores(rm.transform_rewards(table, "normalize", table))
    assert summary["optimal_policy_normalized_return"] == pytest.approx(scores["argmax"])
    assert summary["optimal_policy_worst_normalized_return"] == pytest.approx(scores["worst"])
    assert vi.reward_scores(table)[0]["argmax"] == pytest.approx(summary["optimal_policy_normalized_return"])  # an affine map
    assert summary["optimal_policy_worst_normalized_return"] <= summary["optimal_policy_normalized_return"] + 1e-9
    assert summary["optimal_policy_worst_normalized_return"] > 0.9 and summary["score_seconds"] > 0  # timed by the benchmark, not here
    # the held-out accuracy recomputed from the DB, from the per-step reward r(o_0, a_0, o_1)
    val = db.load_comparisons(prefs_db)
    val = val.subset(val.validation)
    diff = model.reward(val.obs1[:, 0].astype(np.float32), val.actions1[:, 0], val.obs1[:, 1].astype(np.float32)) - \
        model.reward(val.obs2[:, 0].astype(np.float32), val.actions2[:, 0], val.obs2[:, 1].astype(np.float32))
    assert rm.preference_accuracy(diff, 0.0, val.mu1, val.mu2) == pytest.approx(summary["val_accuracy"])
    assert rm.comparison_accuracy(model, val) == pytest.approx(summary["val_accuracy"])
    train_pairs = db.load_comparisons(prefs_db)
    train_pairs = train_pairs.subset(~train_pairs.validation)
    assert rm.comparison_accuracy(model, train_pairs) == pytest.approx(summary["train_accuracy"])
    assert summary["train_accuracy"] >= 0.95


@pytest.mark.parametrize("form", rm.FORMS)
def test_comparison_accuracy_sums_the_steps_of_long_segments(tmp_path, form):
    comparisons = db.load_comparisons(generate(tmp_path / "k5.db", "--seed", 2, "--segment-length", 5, n=200))
    assert comparisons.obs1.shape[1:] == (6, 2) and comparisons.actions1.shape[1:] == (5,)
    torch.manual_seed(0)
    model = rm.RewardModel("normalized", form=form)
    returns = [model.reward(obs[:, :5].astype(np.float32), actions, obs[:, 1:].astype(np.float32)).sum(1)
               for obs, actions in ((comparisons.obs1, comparisons.actions1), (comparisons.obs2, comparisons.actions2))]
    expected = rm.preference_accuracy(*returns, comparisons.mu1, comparisons.mu2)
    assert 0 < expected < 1 and rm.comparison_accuracy(model, comparisons) == pytest.approx(expected)
    swapped = db.Comparisons(**{**vars(comparisons), "mu1": comparisons.mu2, "mu2": comparisons.mu1})
    assert rm.comparison_accuracy(model, swapped) == pytest.approx(1 - expected)


def test_training_writes_a_png_and_event_files(trained):
    summary, out, tmp = trained
    png = os.path.splitext(str(out))[0] + ".png"  # default --plot: --out with .png
    assert summary["args"]["plot"] == png
    with open(png, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    assert os.path.getsize(png) > 10_000
    runs = glob.glob(str(tmp / "runs" / "MovingDot-v0__train_reward_model__1__*"))
    assert len(runs) == 1
    assert glob.glob(os.path.join(runs[0], "events.out.tfevents.*"))
    events = EventAccumulator(runs[0])
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/accuracy", "reward/action_order_agreement", "reward/reward_correlation",
            "reward/epic_distance", "reward/optimal_policy_normalized_return", "reward/optimal_policy_worst_normalized_return"} <= scalars
    assert not {"reward/correlation", "reward/optimal_policy_normalized_return_unclipped"} & scalars  # the old names are gone
    for key in ("reward_correlation", "epic_distance", "optimal_policy_worst_normalized_return"):
        logged = events.Scalars(f"reward/{key}")
        assert len(logged) == 1 and logged[0].value == pytest.approx(summary[key], rel=1e-6, abs=1e-7), key
    optimal = events.Scalars("reward/optimal_policy_normalized_return")
    assert len(optimal) == 1 and optimal[0].value == pytest.approx(summary["optimal_policy_normalized_return"], rel=1e-6)
    assert any(tag.startswith("val/r_diff_") for tag in events.Tags()["histograms"])
    agreement = events.Scalars("reward/action_order_agreement")
    assert len(agreement) == 1 and agreement[0].value == pytest.approx(summary["action_order_agreement"], rel=1e-6)
    steps = [e.step for e in events.Scalars("val/accuracy")]
    assert steps == list(range(100, summary["steps"] + 1, 100))
    # early stopping keeps the best held-out weights: the summary scores those, not the last ones
    val_loss = {e.step: e.value for e in events.Scalars("val/loss")}
    assert summary["val_loss"] == pytest.approx(val_loss[summary["best_step"]], rel=1e-5)
    assert val_loss[summary["best_step"]] <= min(val_loss.values()) + 1e-3  # --min-delta
    if summary["stopped_early"]:
        assert summary["steps"] - summary["best_step"] == 4 * 100  # --patience (default 4) evaluations (--eval-every 100) without progress
        assert val_loss[summary["steps"]] != pytest.approx(summary["val_loss"], rel=1e-5)
    # nothing written into the working directory
    assert not os.path.exists(os.path.join(ROOT, "runs", os.path.basename(runs[0])))


def test_early_stopping_stops_and_restores_the_best_weights(prefs_db, tmp_path):
    # --min-delta 1: nothing after the first evaluation counts as better, so with --patience 2
    # the run stops at the third evaluation and keeps the weights of the first
    summary = train(prefs_db, tmp_path / "m.pt", tmp_path / "runs", "--max-steps", 1000, "--eval-every", 20,
                    "--patience", 2, "--min-delta", 1, "--no-plot")
    assert (summary["steps"], summary["best_step"], summary["stopped_early"]) == (60, 20, True)
    events = EventAccumulator(glob.glob(str(tmp_path / "runs" / "*"))[0])
    events.Reload()
    val_loss = {e.step: e.value for e in events.Scalars("val/loss")}
    assert sorted(val_loss) == [20, 40, 60]
    assert summary["val_loss"] == pytest.approx(val_loss[20], rel=1e-5)
    assert val_loss[60] != pytest.approx(val_loss[20], rel=1e-3)
    # the default --patience is 4 evaluations
    default = train(prefs_db, tmp_path / "d.pt", tmp_path / "default_runs", "--max-steps", 1000, "--eval-every", 20, "--min-delta", 1,
                    "--no-plot")
    assert (default["steps"], default["best_step"], default["stopped_early"]) == (100, 20, True)


@pytest.mark.parametrize("form, activation", [("potential", "relu"), ("state-action", "tanh")])  # the default, the write-up's
def test_raw_encoding_learns_worse_than_normalized_on_the_same_budget(prefs_db, tmp_path, form, activation):
    results = {enc: train(prefs_db, tmp_path / f"{enc}.pt", tmp_path / "runs", "--max-steps", 200, "--encoding", enc,
                          "--seed", 1, "--reward-form", form, "--activation", activation, "--no-plot") for enc in rm.ENCODINGS}
    raw = rm.load(str(tmp_path / "raw.pt"))
    assert raw.config["encoding"] == "raw" and raw.form == form and raw.config["activation"] == activation
    # the margin is well inside the gap seeds 1-3 show in both forms (docs/testing.md)
    assert results["raw"]["action_order_agreement"] < results["normalized"]["action_order_agreement"] - 0.05
    assert results["raw"]["val_accuracy"] < results["normalized"]["val_accuracy"]


def test_flipped_labels_learn_the_opposite_reward(tmp_path):
    path = generate(tmp_path / "flipped.db", "--seed", 2)
    conn = sqlite3.connect(path)
    with conn:
        n = conn.execute("UPDATE comparisons SET mu1 = 1 - mu1, mu2 = 1 - mu2 WHERE status = 'labeled'").rowcount
    conn.close()
    assert n == 3000
    # measured (300 steps, seeds 1-3): accuracy 0.986-0.990, agreement 0.001-0.002, correlation -0.92..-0.93, EPIC 0.994
    summary = train(path, tmp_path / "away.pt", tmp_path / "runs", "--max-steps", 300, "--no-plot")
    assert summary["val_accuracy"] >= 0.9  # it fits the (flipped) labels it was given ...
    assert summary["action_order_agreement"] <= 0.05  # ... which order the actions backwards
    assert summary["reward_correlation"] <= -0.7
    assert summary["epic_distance"] >= 0.8  # phi climbs away from the centre: nearly the opposite reward


def test_ensemble_with_label_noise_trains_and_round_trips(prefs_db, tmp_path):
    plot = tmp_path / "sub.png"
    summary = train(prefs_db, tmp_path / "ens.pt", tmp_path / "runs", "--max-steps", 300, "--ensemble-size", 3,
                    "--label-noise", 0.1, "--weight-decay", 1e-4, "--hidden-size", 32, "--plot", plot)
    with open(plot, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    assert not os.path.exists(tmp_path / "ens.png")
    model = rm.load(str(tmp_path / "ens.pt"))
    assert model.config == {"encoding": "normalized", "ensemble_size": 3, "hidden_size": 32, "form": "potential", "activation": "relu",
                            "position_scale": 30.0, **DOT_SPACES}
    states, actions = np.arange(0, md.N_STATES, 1000), np.arange(31) % 5
    members = model.member_rewards(md.OBS_TABLE[states], actions, md.OBS_TABLE[md.NEXT_STATE[states, actions]])
    assert not torch.allclose(members[0], members[1]) and not torch.allclose(members[1], members[2])
    assert summary["action_order_agreement"] > 0.8 and np.isfinite(summary["val_loss"])


def test_same_seed_same_model_other_seed_other_model(prefs_db, tmp_path):
    tables, summaries = {}, {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        summaries[name] = train(prefs_db, tmp_path / f"{name}.pt", tmp_path / name / "runs", "--max-steps", 100,
                                "--seed", seed, "--eval-every", 50, "--no-plot")
        tables[name] = rm.reward_table(rm.load(str(tmp_path / f"{name}.pt")))
    np.testing.assert_array_equal(tables["a"], tables["b"])
    assert summaries["a"]["val_loss"] == summaries["b"]["val_loss"]
    assert summaries["a"]["best_step"] == summaries["b"]["best_step"]
    assert not np.allclose(tables["a"], tables["c"])


# --- errors ---------------------------------------------------------------------------------------

def test_label_source_human_without_human_labels_fails(prefs_db, tmp_path):
    out = tmp_path / "m.pt"
    with pytest.raises(db.PreferencesDBError, match="no labeled training comparisons") as e:
        train(prefs_db, out, tmp_path / "runs", "--label-source", "human")
    assert prefs_db in str(e.value) and "human" in str(e.value)
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_cli_missing_db_exits_with_a_one_line_error(tmp_path):
    result = run_cli("--db", tmp_path / "nope.db", "--out", tmp_path / "m.pt", "--run-dir", tmp_path / "runs",
                     cwd=tmp_path, own_process=True)  # the script's one test in a process of its own
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("train_reward_model.py: error:") and "not found" in lines[0]
    assert str(tmp_path / "nope.db") in lines[0]
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.png").exists()
    assert not (tmp_path / "runs").exists()


def test_cli_existing_out_without_overwrite_fails_before_training(prefs_db, tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"precious")
    result = run_cli("--db", prefs_db, "--out", out, "--run-dir", tmp_path / "runs", cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "already exists" in lines[0] and str(out) in lines[0] and "--overwrite" in lines[0]
    assert out.read_bytes() == b"precious"
    assert not (tmp_path / "runs").exists()  # no run was started
    assert not (tmp_path / "m.png").exists()


def test_overwrite_replaces_an_existing_out(prefs_db, tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"old")
    summary = train(prefs_db, out, tmp_path / "runs", "--max-steps", 50, "--overwrite", "--no-plot")
    assert rm.load(str(out)).summary["steps"] == summary["steps"] == 50


@pytest.mark.parametrize("flags", [
    ["--learning-rate", "0"], ["--batch-size", "0"], ["--max-steps", "-1"], ["--label-noise", "1"],
    ["--encoding", "pixels"], ["--label-source", "robot"], ["--ensemble-size", "0"], ["--weight-decay", "-1"],
    ["--reward-form", "linear"], ["--activation", "sigmoid"], ["--patience", "0"],
])
def test_bad_flags_exit_with_code_2(flags, capsys):
    with pytest.raises(SystemExit) as e:
        trm.parse_args(flags)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["out", "plot"])
def test_out_or_plot_in_a_missing_folder_is_created_or_fails_cleanly(prefs_db, tmp_path, which):
    """--out or --plot in a folder that does not exist. At commit c7c8de4 both trained the whole
    budget and then crashed with a traceback: reward_model.save did not create the folder
    (torch.save's RuntimeError; agent.save does create it), and train_reward_model.plot's
    fig.savefig raises FileNotFoundError after the model file is already written. Either create
    the folder or fail with the scripts' one-line error."""
    out, plot = tmp_path / "m.pt", tmp_path / "m.png"
    if which == "out":
        out, plot = tmp_path / "new" / "m.pt", tmp_path / "new" / "m.png"
    else:
        plot = tmp_path / "new" / "sub" / "m.png"
    result = run_cli("--db", prefs_db, "--out", out, "--plot", plot, "--run-dir", tmp_path / "runs",
                     "--max-steps", 20, cwd=tmp_path)
    if result.returncode == 0:
        assert rm.load(str(out)).summary["steps"] == 20
        with open(plot, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE
    else:
        assert "Traceback" not in result.stderr, result.stderr[-600:]
        assert len(result.stderr.strip().splitlines()) == 1


def test_init_continues_from_a_model_file_with_its_architecture(prefs_db, tmp_path):
    """The second run passes none of the architecture flags: the form and the activation (not
    the defaults, potential and relu) come from the file, as the sizes do."""
    first = tmp_path / "first.pt"
    train(prefs_db, first, tmp_path / "runs", "--ensemble-size", 2, "--hidden-size", 16, "--max-steps", 100, "--eval-every", 50,
          "--reward-form", "state-action", "--activation", "tanh", "--position-scale", 3, "--no-plot")
    start = rm.load(str(first))
    # one tiny step from the first model: the result is the first model, nearly; a fresh init is not
    summary = train(prefs_db, tmp_path / "second.pt", tmp_path / "runs", "--init", first, "--max-steps", 1,
                    "--learning-rate", 1e-9, "--eval-every", 1, "--no-plot")
    second = rm.load(str(tmp_path / "second.pt"))
    assert second.config == start.config == {"encoding": "normalized", "ensemble_size": 2, "hidden_size": 16,
                                             "form": "state-action", "activation": "tanh", "position_scale": 3.0, **DOT_SPACES}
    for (name, a), b in zip(start.state_dict().items(), second.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    np.testing.assert_allclose(rm.reward_table(second), rm.reward_table(start), atol=1e-4)  # tanh, as the first
    assert summary["args"]["init"] == str(first) and summary["args"]["ensemble_size"] == 2
    assert summary["args"]["reward_form"] == "state-action" and summary["args"]["activation"] == "tanh"
    with pytest.raises(rm.RewardModelError, match="not found"):
        train(prefs_db, tmp_path / "third.pt", tmp_path / "runs", "--init", tmp_path / "missing.pt")


def test_without_held_out_labels_early_stopping_watches_the_training_loss(tmp_path):
    """A handful of human labels leave no held-out split: training must still stop, not run 100,000 steps."""
    path = generate(tmp_path / "p.db", "--validation-fraction", 0, n=200)
    summary = train(path, tmp_path / "m.pt", tmp_path / "runs", "--eval-every", 50, "--patience", 3, "--max-steps", 100_000)
    assert summary["n_validation"] == 0 and np.isnan(summary["val_accuracy"])
    assert summary["stopped_early"] and summary["steps"] < 20_000
    assert summary["steps"] - summary["best_step"] == 3 * 50
    assert os.path.getsize(tmp_path / "m.png") > 10_000


def test_ema_weights_are_what_is_evaluated_and_kept(trained, prefs_db, tmp_path):
    """--ema-decay 0 keeps the raw Adam weights; the default (the `trained` model) keeps their
    moving average: a different model from the same seed, batches and budget, and one that still
    learns the order."""
    averaged, averaged_path, _ = trained
    # measured: both stop at step 1000, held-out accuracy 0.996, first-layer weights up to 0.08 apart
    raw = train(prefs_db, tmp_path / "raw.pt", tmp_path / "runs", "--max-steps", TRAINED_STEPS, "--seed", 1, "--ema-decay", 0,
                "--no-plot")
    assert averaged["args"]["ema_decay"] == 0.999 and raw["args"]["ema_decay"] == 0.0
    assert averaged["args"]["max_steps"] == raw["args"]["max_steps"] and averaged["args"]["seed"] == raw["args"]["seed"]
    a, b = rm.load(str(tmp_path / "raw.pt")), rm.load(str(averaged_path))
    assert not torch.allclose(a.net[0].weight, b.net[0].weight)
    assert raw["val_accuracy"] >= 0.93 and averaged["val_accuracy"] >= 0.93
