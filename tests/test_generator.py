"""The generator (make_preferences_db.py): oracle labels, simulated-teacher noise, the
validation split, determinism, append/overwrite, bad flags, and the command line."""

import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from in_process import run_script

import make_preferences_db as gen
from rlhf import db, envs
from rlhf import moving_dot as md

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "make_preferences_db.py")
ALL_STATUSES = ("pending", "incomparable", "labeled")


def generate(path, *flags):
    gen.main(gen.parse_args(["--db", str(path), *map(str, flags)]))
    return str(path)


def distance(obs):
    """Euclidean distance to the centre of integer positions (..., 2), computed like the env
    does (sqrt of an exact integer), so that equal distances are equal floats."""
    d = obs.astype(np.int64) - np.array([105, 80])
    return np.sqrt((d ** 2).sum(-1))


def distance_score(obs):
    return distance(obs[:, 0]) - distance(obs[:, -1])


def step_rewards(obs):
    """True per-step rewards (n, k) recomputed from the positions alone."""
    d = obs.astype(np.int64) - np.array([105, 80])
    sq = (d ** 2).sum(-1)
    return np.sign(sq[:, :-1] - sq[:, 1:]).astype(np.float64)


def states_of(obs):
    """Flat states of stored observations: the dot's positions, integers held exactly as float32."""
    assert obs.dtype == np.float32 and np.array_equal(obs, np.round(obs))
    return md.position_to_state(obs.astype(np.int64))


def table_rewards(obs, actions):
    states = states_of(obs)
    return md.TRUE_REWARD[states[:, :-1], actions].astype(np.float64)


def rational(score1, score2):
    return np.where(score1 > score2, 1.0, np.where(score1 < score2, 0.0, 0.5))


# --- oracle labels ----------------------------------------------------------------------------

def test_distance_oracle_labels_segments_of_length_1(tmp_path):
    path = generate(tmp_path / "p.db", "--oracle", "distance", "--segment-length", 1,
                    "--n-segments", 1000, "--n-comparisons", 2000, "--seed", 3)
    c = db.load_comparisons(path)
    assert len(c) == 2000
    assert c.obs1.shape == (2000, 2, 2) and c.actions1.shape == (2000, 1)
    s1, s2 = distance_score(c.obs1), distance_score(c.obs2)
    expected = rational(s1, s2)
    np.testing.assert_array_equal(c.mu1, expected)
    np.testing.assert_array_equal(c.mu2, 1 - expected)
    ties = s1 == s2
    assert 20 <= ties.sum() <= 200  # noop vs noop (or wall bumps) tie, about 4% of pairs
    both_still = (c.actions1[:, 0] == 0) & (c.actions2[:, 0] == 0)
    assert both_still.sum() > 0 and np.all(c.mu1[both_still] == 0.5)
    assert (c.mu1 == 1).sum() > 700 and (c.mu1 == 0).sum() > 700
    # segments of length 1 are single real transitions, stored with their true reward
    for obs, actions, rewards in ((c.obs1, c.actions1, c.rewards1), (c.obs2, c.actions2, c.rewards2)):
        states = states_of(obs)
        np.testing.assert_array_equal(states[:, 1], md.NEXT_STATE[states[:, 0], actions[:, 0]])
        np.testing.assert_array_equal(rewards, table_rewards(obs, actions))
    assert not c.absorbing1.any() and not c.absorbing2.any()


@pytest.mark.parametrize("k", [5, 2000])
def test_reward_oracle_labels_real_rollouts(tmp_path, k):
    # k = 2000, a whole episode, is the longest --segment-length allowed
    n_segments, n_comparisons, val = (600, 1500, 0.1) if k == 5 else (6, 10, 0.0)
    path = generate(tmp_path / "p.db", "--oracle", "reward", "--segment-length", k, "--validation-fraction", val,
                    "--n-segments", n_segments, "--n-comparisons", n_comparisons, "--seed", 4)
    assert db.read_metadata(path)["segment_length"] == k
    c = db.load_comparisons(path)
    assert len(c) == n_comparisons and c.obs1.shape == (n_comparisons, k + 1, 2)
    for obs, actions, rewards in ((c.obs1, c.actions1, c.rewards1), (c.obs2, c.actions2, c.rewards2)):
        assert np.all((obs >= [4, 4]) & (obs <= [205, 155]))
        assert np.all((actions >= 0) & (actions < 5))
        # consecutive observations follow the env's dynamics for the stored actions
        states = states_of(obs)
        np.testing.assert_array_equal(states[:, 1:], md.NEXT_STATE[states[:, :-1], actions])
        np.testing.assert_array_equal(table_rewards(obs, actions), step_rewards(obs))
        np.testing.assert_array_equal(rewards, table_rewards(obs, actions))  # the env's reward, as stepped
    assert not c.absorbing1.any() and not c.absorbing2.any()  # the dot never terminates
    r1, r2 = table_rewards(c.obs1, c.actions1).sum(1), table_rewards(c.obs2, c.actions2).sum(1)
    np.testing.assert_array_equal(c.mu1, rational(r1, r2))
    if k == 5:
        assert (r1 == r2).sum() > 50 and set(np.unique(c.mu1).tolist()) == {0.0, 0.5, 1.0}
        # segments start from the env's start distribution, not all from one place
        assert len(np.unique(c.obs1[:, 0], axis=0)) > 300


def test_oracle_none_stores_pending_queries(tmp_path):
    path = generate(tmp_path / "p.db", "--oracle", "none", "--n-segments", 200, "--n-comparisons", 300)
    assert len(db.load_comparisons(path)) == 0
    pending = db.load_comparisons(path, statuses=("pending",))
    assert len(pending) == 300
    assert np.isnan(pending.mu1).all() and np.isnan(pending.mu2).all()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM comparisons WHERE status = 'pending' AND label_source IS NULL"
                        " AND labeler IS NULL AND labeled_at IS NULL").fetchone()[0] == 300
    conn.close()


def test_labeler_records_the_oracle(tmp_path):
    path = generate(tmp_path / "p.db", "--oracle", "reward", "--segment-length", 2, "--n-segments", 50,
                    "--n-comparisons", 50)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT DISTINCT labeler, label_source FROM comparisons").fetchall() == [("oracle:reward", "synthetic")]
    assert conn.execute("SELECT DISTINCT source FROM segments").fetchall() == [("random_policy",)]
    conn.close()


# --- simulated teacher ------------------------------------------------------------------------

def test_eps_mistake_flips_strict_labels_at_the_given_rate(tmp_path):
    n = 5000
    path = generate(tmp_path / "p.db", "--teacher-eps-mistake", 0.2, "--n-segments", 1000,
                    "--n-comparisons", n, "--seed", 5)
    c = db.load_comparisons(path)
    s1, s2 = distance_score(c.obs1), distance_score(c.obs2)
    strict = s1 != s2
    assert np.all(c.mu1[~strict] == 0.5)  # ties stay equal
    assert np.all(np.isin(c.mu1[strict], [0.0, 1.0]))
    wrong = c.mu1[strict] != rational(s1, s2)[strict]
    p, m = wrong.mean(), strict.sum()
    assert abs(p - 0.2) < 4 * np.sqrt(0.2 * 0.8 / m), p


def test_no_noise_by_default(tmp_path):
    path = generate(tmp_path / "p.db", "--n-segments", 300, "--n-comparisons", 1000, "--seed", 6)
    c = db.load_comparisons(path)
    np.testing.assert_array_equal(c.mu1, rational(distance_score(c.obs1), distance_score(c.obs2)))


def test_eps_equal_makes_close_pairs_equal(tmp_path):
    path = generate(tmp_path / "p.db", "--teacher-eps-equal", 0.5, "--n-segments", 1000,
                    "--n-comparisons", 3000, "--seed", 7)
    c = db.load_comparisons(path)
    diff = distance_score(c.obs1) - distance_score(c.obs2)
    close = np.abs(diff) <= 0.5
    assert close.sum() > 300 and (~close).sum() > 300
    assert np.all(c.mu1[close] == 0.5)
    np.testing.assert_array_equal(c.mu1[~close], (diff[~close] > 0).astype(np.float32))


def test_eps_skip_marks_pairs_where_both_score_low_incomparable(tmp_path):
    path = generate(tmp_path / "p.db", "--oracle", "reward", "--segment-length", 5, "--teacher-eps-skip", 0,
                    "--n-segments", 600, "--n-comparisons", 2000, "--seed", 8)
    c = db.load_comparisons(path, statuses=ALL_STATUSES)
    assert len(c) == 2000
    r1, r2 = table_rewards(c.obs1, c.actions1).sum(1), table_rewards(c.obs2, c.actions2).sum(1)
    skip = np.maximum(r1, r2) < 0
    assert 100 < skip.sum() < 1900
    incomparable = db.load_comparisons(path, statuses=("incomparable",))
    labeled = db.load_comparisons(path)
    np.testing.assert_array_equal(incomparable.ids, c.ids[skip])
    np.testing.assert_array_equal(labeled.ids, c.ids[~skip])
    assert np.isnan(incomparable.mu1).all()
    np.testing.assert_array_equal(labeled.mu1, rational(r1, r2)[~skip])


# beta 100 overflows np.exp in the generator's sigmoid (harmless: 1 / (1 + inf) = 0)
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
def test_beta_small_gives_noisy_labels_and_large_gives_rational_ones(tmp_path):
    flags = ("--oracle", "reward", "--segment-length", 5, "--n-segments", 600, "--n-comparisons", 3000, "--seed", 9)
    agreement = {}
    for beta in (0.1, 100):
        path = generate(tmp_path / f"beta{beta}.db", "--teacher-beta", beta, *flags)
        c = db.load_comparisons(path)
        r1, r2 = table_rewards(c.obs1, c.actions1).sum(1), table_rewards(c.obs2, c.actions2).sum(1)
        strict = r1 != r2
        assert np.all(c.mu1[~strict] == 0.5)  # ties are still equal, never a side
        assert np.all(np.isin(c.mu1[strict], [0.0, 1.0]))
        agree = c.mu1[strict] == rational(r1, r2)[strict]
        # Bradley-Terry: the rational side with probability sigmoid(beta |R1 - R2|)
        p_agree = 1 / (1 + np.exp(-beta * np.abs(r1 - r2)[strict]))
        expected, sd = p_agree.mean(), np.sqrt((p_agree * (1 - p_agree)).sum()) / strict.sum()
        assert abs(agree.mean() - expected) < 4 * sd + 1e-9, (beta, agree.mean(), expected)
        agreement[beta] = agree.mean()
    assert agreement[100] == 1.0
    assert agreement[0.1] < 0.7


def test_gamma_below_1_weighs_later_steps_more(tmp_path):
    gamma, k = 0.5, 5
    path = generate(tmp_path / "p.db", "--oracle", "reward", "--segment-length", k, "--teacher-gamma", gamma,
                    "--n-segments", 600, "--n-comparisons", 2000, "--seed", 10)
    c = db.load_comparisons(path)
    rew1, rew2 = table_rewards(c.obs1, c.actions1), table_rewards(c.obs2, c.actions2)
    later = gamma ** np.arange(k - 1, -1, -1)  # step t weighs gamma^(k-1-t): the last step weighs 1
    assert later[-1] == 1 and later[0] == gamma ** 4
    expected = rational(rew1 @ later, rew2 @ later)
    np.testing.assert_array_equal(c.mu1, expected)
    # the discount matters: both the undiscounted and the earlier-weighted labels disagree often
    assert (c.mu1 != rational(rew1.sum(1), rew2.sum(1))).sum() > 100
    assert (c.mu1 != rational(rew1 @ later[::-1], rew2 @ later[::-1])).sum() > 100
    # e.g. a pair whose last steps favour segment 1 while its first steps favour segment 2
    last_first = (rew1[:, -1] > rew2[:, -1]) & np.all(rew1[:, :-1] == rew2[:, :-1])
    assert np.all(c.mu1[last_first] == 1.0)


def test_gamma_below_1_with_the_distance_oracle(tmp_path):
    gamma, k = 0.5, 4
    path = generate(tmp_path / "p.db", "--oracle", "distance", "--segment-length", k, "--teacher-gamma", gamma,
                    "--n-segments", 300, "--n-comparisons", 1000, "--seed", 11)
    c = db.load_comparisons(path)
    weights = gamma ** np.arange(k - 1, -1, -1)
    score = lambda obs: (distance(obs[:, :-1]) - distance(obs[:, 1:])) @ weights
    s1, s2 = score(c.obs1), score(c.obs2)
    clear = np.abs(s1 - s2) > 1e-9  # float sums in another order: compare away from ties
    np.testing.assert_array_equal(c.mu1[clear], rational(s1, s2)[clear])


# --- validation split -------------------------------------------------------------------------

def test_validation_split_uses_its_own_segments(tmp_path):
    path = generate(tmp_path / "p.db", "--validation-fraction", 0.2, "--n-segments", 500,
                    "--n-comparisons", 2000, "--seed", 12)
    c = db.load_comparisons(path)
    assert c.validation.sum() == 400  # round(0.2 * 2000)
    assert not c.validation[:1600].any() and c.validation[1600:].all()
    conn = sqlite3.connect(path)
    seg = {}
    for split in ("train", "validation"):
        rows = conn.execute("SELECT segment1_id, segment2_id FROM comparisons WHERE split = ?", (split,)).fetchall()
        seg[split] = set(np.array(rows).ravel().tolist())
    assert conn.execute("SELECT COUNT(*) FROM comparisons WHERE segment1_id = segment2_id").fetchone()[0] == 0
    conn.close()
    assert seg["train"].isdisjoint(seg["validation"])
    assert len(seg["validation"]) <= 100 and len(seg["validation"]) > 90  # round(0.2 * 500) held-out segments
    assert len(seg["train"]) <= 400 and len(seg["train"]) > 380
    # and by content: no (positions, action) segment is in both splits
    key = lambda obs, act: {(tuple(o.ravel().tolist()), tuple(a.tolist())) for o, a in zip(obs, act)}
    train = key(c.obs1[~c.validation], c.actions1[~c.validation]) | key(c.obs2[~c.validation], c.actions2[~c.validation])
    val = key(c.obs1[c.validation], c.actions1[c.validation]) | key(c.obs2[c.validation], c.actions2[c.validation])
    # distinct segments can coincide by chance (1 in 202*152*5), so allow a stray one
    assert len(train & val) <= 1


def test_validation_fraction_0_holds_nothing_out(tmp_path):
    path = generate(tmp_path / "p.db", "--validation-fraction", 0, "--n-segments", 100, "--n-comparisons", 200)
    assert not db.load_comparisons(path).validation.any()


# --- determinism --------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [
    ("--segment-length", 1, "--teacher-eps-mistake", 0.1),
    ("--segment-length", 4, "--oracle", "reward", "--teacher-beta", 1),
])
def test_same_seed_same_db_and_other_seed_other_db(tmp_path, flags):
    common = ("--n-segments", 300, "--n-comparisons", 600, *flags)
    a = db.load_comparisons(generate(tmp_path / "a.db", "--seed", 1, *common), statuses=ALL_STATUSES)
    b = db.load_comparisons(generate(tmp_path / "b.db", "--seed", 1, *common), statuses=ALL_STATUSES)
    other = db.load_comparisons(generate(tmp_path / "c.db", "--seed", 2, *common), statuses=ALL_STATUSES)
    for field in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert not np.array_equal(a.obs1, other.obs1)
    assert not np.array_equal(a.mu1, other.mu1)
    meta_a, meta_b = db.read_metadata(str(tmp_path / "a.db")), db.read_metadata(str(tmp_path / "b.db"))
    strip = lambda m: [{k: v for k, v in r.items() if k not in ("created_at", "args")} for r in m["generator_runs"]]
    assert strip(meta_a) == strip(meta_b)


# --- append and overwrite -----------------------------------------------------------------------

def test_append_adds_rows_and_a_generator_run(tmp_path, capsys):
    path = generate(tmp_path / "p.db", "--n-segments", 100, "--n-comparisons", 150, "--seed", 1)
    first = db.load_comparisons(path)
    generate(path, "--append", "--n-segments", 100, "--n-comparisons", 250, "--seed", 2)
    both = db.load_comparisons(path)
    assert len(both) == 400
    for field in first.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(both, field)[:150], getattr(first, field))
    runs = db.read_metadata(path)["generator_runs"]
    assert [r["seed"] for r in runs] == [1, 2] and [r["batch"] for r in runs] == [0, 1]
    assert [r["n_comparisons"] for r in runs] == [150, 250]
    assert runs[1]["args"]["append"] is True
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0] == 200
    assert conn.execute("SELECT batch, COUNT(*) FROM comparisons GROUP BY batch").fetchall() == [(0, 150), (1, 250)]
    # appended comparisons pair only the appended segments
    assert conn.execute("SELECT COUNT(*) FROM comparisons c JOIN segments s ON s.id IN (c.segment1_id, c.segment2_id)"
                        " WHERE s.batch != c.batch").fetchone()[0] == 0
    conn.close()
    out = capsys.readouterr().out
    assert "appended" in out


def test_append_with_another_segment_length_fails(tmp_path):
    path = generate(tmp_path / "p.db", "--n-segments", 50, "--n-comparisons", 50)
    before = open(path, "rb").read()
    with pytest.raises(db.PreferencesDBError, match="length 1"):
        generate(path, "--append", "--segment-length", 3, "--n-segments", 50, "--n-comparisons", 50)
    assert open(path, "rb").read() == before


def test_overwrite_replaces(tmp_path):
    path = generate(tmp_path / "p.db", "--n-segments", 100, "--n-comparisons", 150, "--seed", 1)
    generate(path, "--overwrite", "--segment-length", 3, "--oracle", "reward", "--n-segments", 60,
             "--n-comparisons", 70, "--seed", 2)
    meta = db.read_metadata(path)
    assert meta["segment_length"] == 3
    assert [r["seed"] for r in meta["generator_runs"]] == [2]
    c = db.load_comparisons(path)
    assert len(c) == 70 and c.obs1.shape == (70, 4, 2)
    assert [f for f in os.listdir(tmp_path) if ".tmp-" in f] == []


def test_overwrite_keeps_a_db_with_human_labels_unless_told_to_discard_them(tmp_path):
    path = generate(tmp_path / "p.db", "--n-segments", 40, "--n-comparisons", 10, "--oracle", "none")
    pair = db.lease_next_comparison(path, "token", 300, 0.0)
    assert db.record_human_label(path, pair["id"], "token", "labeled", 1.0, "alice")
    before = open(path, "rb").read()
    with pytest.raises(db.PreferencesDBError, match="holds 1 human label .*--discard-human-labels"):
        generate(path, "--overwrite", "--n-segments", 40, "--n-comparisons", 10)
    assert open(path, "rb").read() == before and db.count_human_labels(path) == 1
    with pytest.raises(SystemExit):  # the flag only means something with --overwrite
        gen.parse_args(["--db", path, "--discard-human-labels"])
    generate(path, "--overwrite", "--discard-human-labels", "--n-segments", 40, "--n-comparisons", 10)
    assert db.count_human_labels(path) == 0 and len(db.load_comparisons(path)) == 10


def test_create_refuses_an_existing_db(tmp_path):
    path = generate(tmp_path / "p.db", "--n-segments", 50, "--n-comparisons", 50)
    before = open(path, "rb").read()
    with pytest.raises(db.PreferencesDBError, match="already exists"):
        generate(path, "--n-segments", 50, "--n-comparisons", 50, "--seed", 2)
    assert open(path, "rb").read() == before


def test_summary_counts(tmp_path, capsys):
    path = generate(tmp_path / "p.db", "--n-segments", 200, "--n-comparisons", 300, "--seed", 3)
    out = capsys.readouterr().out
    assert "wrote 200 MovingDot-v0 segments of length 1 and 300 comparisons" in out
    counts = db.count_by_label(path)
    assert sum(counts.values()) == 300
    train_line = next(line for line in out.splitlines() if line.startswith("train "))
    assert [int(v) for v in train_line.split()[1:]] == [counts.get(("train", k), 0) for k in
                                                        ("segment1", "segment2", "equal", "incomparable", "pending")]


# --- bad flags ----------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [
    ["--n-comparisons", "0"],
    ["--n-comparisons", "-3"],
    ["--n-segments", "1"],
    ["--teacher-eps-mistake", "1.5"],
    ["--teacher-eps-mistake", "-0.1"],
    ["--teacher-eps-equal", "-1"],
    ["--teacher-beta", "0"],
    ["--teacher-gamma", "0"],
    ["--teacher-gamma", "1.1"],
    ["--validation-fraction", "1.0"],
    ["--validation-fraction", "-0.1"],
    ["--segment-length", "3000"],
    ["--segment-length", "0"],
    ["--overwrite", "--append"],
    ["--oracle", "magic"],
    ["--seed", "x"],
    ["--after-end-share", "0.1"],  # the dot never terminates
    ["--after-end-share", "1"],
])
def test_bad_flags_exit_with_code_2(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as e:
        gen.parse_args(["--db", str(tmp_path / "p.db"), *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert os.listdir(tmp_path) == []


def test_after_end_share_is_refused_where_no_episode_ends(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        gen.parse_args(["--db", str(tmp_path / "p.db"), "--after-end-share", "0.1"])
    assert e.value.code == 2 and "the moving dot never terminates" in capsys.readouterr().err
    assert gen.parse_args(["--db", str(tmp_path / "p.db"), "--env-id", "CartPole-v1", "--after-end-share", "0.1"]).after_end_share == 0.1


def test_good_flags_parse(tmp_path):
    args = gen.parse_args(["--db", str(tmp_path / "p.db"), "--segment-length", "2000", "--teacher-gamma", "1",
                           "--teacher-eps-mistake", "1", "--validation-fraction", "0"])
    assert args.segment_length == 2000 and args.teacher_gamma == 1.0 and args.n_val_comparisons == 0
    args = gen.parse_args([])
    assert (args.n_segments, args.n_comparisons, args.segment_length, args.oracle) == (10000, 10000, 1, "distance")
    assert args.n_val_segments == 1000 and args.n_val_comparisons == 1000
    assert args.max_start_step == 1 and args.spec.env_id == "MovingDot-v0"  # the dot's starts are already uniform
    assert gen.parse_args(["--policy", "a.pt", "--segment-length", "25"]).max_start_step == 200


# --- command line -------------------------------------------------------------------------------

def test_cli_help():  # the script's one test in a process of its own; the others run its __main__ in this one
    out = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0
    for flag in ("--db", "--n-comparisons", "--segment-length", "--oracle", "--teacher-beta", "--teacher-eps-skip",
                 "--validation-fraction", "--overwrite", "--append"):
        assert flag in out.stdout


def test_cli_refuses_an_existing_db_with_a_one_line_error(tmp_path):
    path = generate(tmp_path / "p.db", "--n-segments", 50, "--n-comparisons", 50)
    before = open(path, "rb").read()
    out = run_script(SCRIPT, "--db", path, "--n-segments", "50", "--n-comparisons", "50", cwd=ROOT)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "already exists" in lines[0] and path in lines[0] and "Traceback" not in out.stderr
    assert open(path, "rb").read() == before
    assert [f for f in os.listdir(tmp_path) if ".tmp-" in f] == []


# --- the RLHF loop's flags: segments of a saved agent, disagreement selection -------------------

def always_right_agent(path):
    """An agent whose sampled action is 'right' (logit gap 50) everywhere."""
    import torch

    from rlhf import agent as agent_lib
    agent = agent_lib.Agent()
    with torch.no_grad():
        agent.actor[-1].weight.zero_()
        agent.actor[-1].bias.copy_(torch.tensor([0.0, 0.0, 50.0, 0.0, 0.0]))
    agent_lib.save(str(path), agent, envs.spec("MovingDot-v0").params())
    return str(path)


def right_counting_ensemble(path=None):
    """Two state-action members (tanh): r = +g and -g for 'right' (g = tanh(tanh(1))), 0 for every other action. For
    segments with n1 and n2 rights they give P(1 > 2) = sigmoid(+-g (n1 - n2)): they agree only
    where n1 = n2, and the variance of P over them is (sigmoid(g (n1 - n2)) - 0.5)^2."""
    import torch

    from rlhf import reward_model as rm
    model = rm.RewardModel("normalized", ensemble_size=2, hidden_size=2, form="state-action", activation="tanh")
    with torch.no_grad():
        for layer in (model.net[0], model.net[2], model.net[4]):
            layer.weight.zero_()
            layer.bias.zero_()
        model.net[0].weight[:, 2 + 2, 0] = 1.0  # the one-hot input of action 2, right
        model.net[2].weight[:, 0, 0] = 1.0
        model.net[4].weight[0, 0, 0], model.net[4].weight[1, 0, 0] = 1.0, -1.0
    if path is not None:
        rm.save(model, str(path))
    return model


def x_climbing_ensemble():
    """Two potential-form members (raw encoding, ReLU): phi = +g x and -g x, x in pixels, g as in
    right_counting_ensemble. A segment's return is +-g (x_k - x_0), its net move to the right
    whatever the path: the members disagree as right_counting_ensemble's do, on the net move."""
    import torch

    from rlhf import reward_model as rm
    model = rm.RewardModel("raw", ensemble_size=2, hidden_size=2, form="potential", activation="relu")
    with torch.no_grad():
        for layer in (model.net[0], model.net[2], model.net[4]):
            layer.weight.zero_()
            layer.bias.zero_()
        model.net[0].weight[:, 0, 0] = 1.0  # x
        model.net[2].weight[:, 0, 0] = 1.0
        g = float(np.tanh(np.tanh(1.0)))
        model.net[4].weight[0, 0, 0], model.net[4].weight[1, 0, 0] = g, -g
    return model


def segments_of(states, actions):
    """The generator's Segments of the dot's states (n, k + 1) and actions (n, k)."""
    rewards = md.TRUE_REWARD[states[:, :-1], actions]
    return gen.Segments(md.OBS_TABLE[states], actions, rewards, np.zeros(actions.shape, bool), np.zeros(actions.shape, bool))


def right_variance(d):
    g = np.tanh(np.tanh(1.0))
    return (1 / (1 + np.exp(-g * d)) - 0.5) ** 2


def test_policy_segments_are_the_agents_sampled_rollouts_from_random_steps_of_an_episode(tmp_path):
    agent_path = always_right_agent(tmp_path / "agent.pt")
    walls = {}
    for max_start in (1, 150):
        path = generate(tmp_path / f"p{max_start}.db", "--policy", agent_path, "--max-start-step", max_start, "--oracle", "reward",
                        "--segment-length", 5, "--n-segments", 400, "--n-comparisons", 300, "--seed", 13)
        c = db.load_comparisons(path)
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT DISTINCT source FROM segments").fetchall() == [("policy",)]
        conn.close()
        for obs, actions in ((c.obs1, c.actions1), (c.obs2, c.actions2)):
            assert np.all(actions == 2)
            states = states_of(obs)
            np.testing.assert_array_equal(states[:, 1:], md.NEXT_STATE[states[:, :-1], actions])
        walls[max_start] = (c.obs1[:, 0, 0] == md.X_MAX).mean()
    # starting at step 0 the dot is where the env put it (uniform); later, many have walked into the right wall
    assert walls[1] < 0.03 and walls[150] > 0.2, walls


def test_disagreement_is_the_variance_of_p1_over_the_members():
    model = right_counting_ensemble()
    rights = np.array([0, 1, 2, 5, 3])  # segments of 5 steps with this many rights, the rest noops
    actions = (np.arange(5)[None, :] < rights[:, None]) * 2
    states = np.full((5, 6), md.position_to_state(md.CENTRE))
    pairs = np.array([[0, 1], [3, 0], [2, 4], [1, 1], [4, 3]])
    variance = gen.disagreement(model, segments_of(states, actions))(pairs)
    np.testing.assert_allclose(variance, right_variance(rights[pairs[:, 0]] - rights[pairs[:, 1]]), rtol=1e-6)
    assert variance[3] == 0 and variance.argmax() == 1


def test_disagreement_of_a_potential_ensemble_reads_the_first_and_the_last_observation():
    """The potential form's segment return is phi(o_k) - phi(o_0): the disagreement must read the
    k + 1 observations of a segment (its last one included), not its k first ones."""
    noop, right, left = (md.ACTION_NAMES.index(name) for name in ("noop", "right", "left"))
    actions = np.array([[noop] * 5, [right] + [noop] * 4, [right] * 2 + [noop] * 3, [right] * 5,
                        [right] * 3 + [left] * 2, [right, left, right, left, right]])
    net = np.array([0, 1, 2, 5, 1, 1])  # net moves to the right
    states = np.empty((6, 6), dtype=np.int64)
    states[:, 0] = md.position_to_state(md.CENTRE)
    for t in range(5):
        states[:, t + 1] = md.NEXT_STATE[states[:, t], actions[:, t]]
    np.testing.assert_array_equal(md.POSITIONS[states[:, -1], 0] - md.CENTRE[0], net)
    pairs = np.array([[0, 1], [3, 0], [2, 4], [4, 5], [1, 4], [3, 5]])
    variance = gen.disagreement(x_climbing_ensemble(), segments_of(states, actions))(pairs)
    np.testing.assert_allclose(variance, right_variance(net[pairs[:, 0]] - net[pairs[:, 1]]), rtol=1e-5)
    assert variance[3] == variance[4] == 0 and variance.argmax() == 1  # the same net move: no disagreement
    # the state-action ensemble that counts rights disagrees on pair 4 (1 right against 3)
    assert gen.disagreement(right_counting_ensemble(), segments_of(states, actions))(pairs)[4] > 0.01


def test_select_pairs_keeps_the_highest_scoring_distinct_candidates():
    score = lambda pairs: (np.abs(pairs[:, 0] - pairs[:, 1]) % 7).astype(float)  # (many ties)
    chosen, chosen_scores, candidate_scores = gen.select_pairs(12, 3, 20, np.random.default_rng(4), score, 5)
    candidates = gen.sample_pairs(60, 3, 20, np.random.default_rng(4))  # the same draw
    seen, distinct = set(), []
    for pair in candidates.tolist():
        if frozenset(pair) not in seen:
            seen.add(frozenset(pair))
            distinct.append(pair)
    expected = sorted(distinct, key=lambda p: -(abs(p[0] - p[1]) % 7))[:12]  # sorted() is stable: ties keep the drawing order
    assert chosen.tolist() == expected
    np.testing.assert_array_equal(chosen_scores, score(chosen))
    assert len(candidate_scores) == len(distinct)


def test_select_disagreement_stores_the_pairs_the_ensemble_disagrees_on(tmp_path, capsys):
    model_path = tmp_path / "ensemble.pt"
    right_counting_ensemble(model_path)
    flags = ("--oracle", "reward", "--segment-length", 5, "--n-segments", 60, "--n-comparisons", 8, "--validation-fraction", 0,
             "--seed", 14)
    path = generate(tmp_path / "p.db", *flags, "--select", "disagreement", "--reward-model", model_path)
    c = db.load_comparisons(path)
    variance = right_variance((c.actions1 == 2).sum(1) - (c.actions2 == 2).sum(1))
    selection = db.read_metadata(path)["generator_runs"][0]["selection"]
    assert selection["n_candidates"] > 60
    assert variance.mean() == pytest.approx(selection["mean_disagreement_chosen"], rel=1e-5)
    assert np.all(np.diff(variance) <= 1e-12)  # stored most informative first: the labeling page asks those first
    assert variance.min() > selection["mean_disagreement_candidates"]
    conn = sqlite3.connect(path)  # no pair asked twice
    assert conn.execute("SELECT COUNT(DISTINCT min(segment1_id, segment2_id) || '-' || max(segment1_id, segment2_id))"
                        " FROM comparisons").fetchone()[0] == 8
    conn.close()
    random_pick = db.load_comparisons(generate(tmp_path / "r.db", *flags))
    assert right_variance((random_pick.actions1 == 2).sum(1) - (random_pick.actions2 == 2).sum(1)).mean() < variance.mean() / 2
    assert "where the ensemble disagrees most" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--select", "disagreement"], "needs --reward-model"),
    (["--reward-model", "m.pt"], "only used by it"),
    (["--policy", "a.pt", "--segment-length", "1900", "--max-start-step", "200"], "longer than an episode"),
    (["--max-start-step", "0"], "positive"),
])
def test_bad_loop_flags_exit_with_code_2(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as e:
        gen.parse_args(["--db", str(tmp_path / "p.db"), *flags])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_one_member_model_cannot_choose_by_disagreement(tmp_path):
    from rlhf import reward_model as rm
    rm.save(rm.RewardModel(ensemble_size=1), str(tmp_path / "one.pt"))
    with pytest.raises(gen.InputFileError, match="one member"):
        generate(tmp_path / "p.db", "--select", "disagreement", "--reward-model", tmp_path / "one.pt", "--n-segments", 50)
    assert not (tmp_path / "p.db").exists()


def test_cli_bad_policy_file_is_a_one_line_error(tmp_path):
    (tmp_path / "agent.pt").write_bytes(b"not an agent")
    out = run_script(SCRIPT, "--db", tmp_path / "p.db", "--policy", tmp_path / "agent.pt", "--segment-length", "5",
                     "--n-segments", "20", "--n-comparisons", "5", cwd=ROOT)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--policy" in lines[0] and "agent.pt" in lines[0]
    assert not (tmp_path / "p.db").exists()
