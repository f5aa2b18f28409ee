"""The RLHF loop (rlhf_loop.py): a tiny loop end to end (rows, files, event files, resumed step
counts, labels that follow the true reward), the label budget split, the human teacher (the loop
waits for answers written by another connection), and bad flags."""

import glob
import json
import os
import sqlite3
import threading
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rlhf_loop
from rlhf import agent as agent_lib
from rlhf import db
from rlhf import moving_dot as md
from rlhf import reward_model as rm

TINY = ["--total-timesteps", 4096, "--reward-max-steps", 10, "--reward-batch-size", 16, "--ensemble-size", 2, "--candidate-factor", 4,
        "--eval-episodes", 5, "--eval-comparisons", 60, "--segment-length", 5, "--no-progress"]


def loop(out_dir, *flags):
    return rlhf_loop.main(rlhf_loop.parse_args(["--out-dir", str(out_dir), *map(str, TINY), *map(str, flags)]))


def scalars(run_dir, tag):
    events = EventAccumulator(run_dir)
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def true_returns(obs, actions):
    assert obs.dtype == np.float32 and np.array_equal(obs, np.round(obs))  # the dot's positions, exactly
    states = md.position_to_state(obs.astype(np.int64))
    return md.TRUE_REWARD[states[:, :-1], actions].sum(1)


def test_tiny_loop_runs_end_to_end(tmp_path):
    out = tmp_path / "loop"
    records = loop(out, "--seed", 3, "--label-budget", 6, "--rounds", 1, "--initial-share", 0.5, "--select", "disagreement")

    # the DB: one generator batch per round, 3 queries each, labeled by the true reward
    path = str(out / "preferences.db")
    runs = db.read_metadata(path)["generator_runs"]
    assert [r["batch"] for r in runs] == [0, 1] and [r["n_comparisons"] for r in runs] == [3, 3]
    assert runs[0]["args"]["select"] == "random" and runs[0]["args"]["policy"] is None
    assert runs[1]["args"]["select"] == "disagreement"
    assert runs[1]["args"]["policy"] == str(out / "round_0" / "agent.pt")
    assert runs[1]["args"]["reward_model"] == str(out / "round_0" / "reward_model.pt")
    assert runs[1]["selection"]["mean_disagreement_chosen"] >= runs[1]["selection"]["mean_disagreement_candidates"]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT batch, COUNT(*), SUM(status = 'labeled'), SUM(split = 'train') FROM comparisons GROUP BY batch"
                        " ORDER BY batch").fetchall() == [(0, 3, 3, 3), (1, 3, 3, 3)]
    assert conn.execute("SELECT DISTINCT batch, source FROM segments ORDER BY batch").fetchall() == [(0, "random_policy"), (1, "policy")]
    assert conn.execute("SELECT DISTINCT labeler FROM comparisons").fetchall() == [("oracle:reward",)]
    conn.close()
    c = db.load_comparisons(path)
    r1, r2 = true_returns(c.obs1, c.actions1), true_returns(c.obs2, c.actions2)
    np.testing.assert_array_equal(c.mu1, np.where(r1 > r2, 1.0, np.where(r1 < r2, 0.0, 0.5)))

    # the records: labels used so far, scores, and an agent trained further each round
    assert [r["labels"] for r in records] == [3, 6] and [r["queries"] for r in records] == [3, 3]
    assert [r["select"] for r in records] == ["random", "disagreement"]
    saved = json.loads((out / "rounds.json").read_text())
    assert saved["rounds"] == json.loads(json.dumps(records)) and saved["args"]["label_budget"] == 6
    for r in records:
        assert 0 <= r["held_out_accuracy"] <= 1 and 0 <= r["action_order_agreement"] <= 1
        assert -1 <= r["greedy_normalized_return"] <= 1 and r["optimal_policy_normalized_return"] is not None

    # held-out accuracy: the evaluation DB (true-reward labels, outside the budget) scored by the round's model
    evaluation = db.load_comparisons(str(out / "evaluation.db"))
    assert len(evaluation) == 60 and not evaluation.validation.any()
    model = rm.load(str(out / "round_1" / "reward_model.pt"))
    assert model.form == "potential"  # the trainer's default
    learned1 = model.reward(evaluation.obs1[:, :-1], evaluation.actions1, evaluation.obs1[:, 1:]).sum(1)  # per step, summed
    learned2 = model.reward(evaluation.obs2[:, :-1], evaluation.actions2, evaluation.obs2[:, 1:]).sum(1)
    strict = evaluation.mu1 != evaluation.mu2
    expected = ((learned1 > learned2) == (evaluation.mu1 > evaluation.mu2))[strict].mean()
    assert records[1]["held_out_accuracy"] == pytest.approx(expected, abs=1e-9)
    assert model.summary["n_train"] == 6 and model.summary["args"]["init"] == str(out / "round_0" / "reward_model.pt")

    # resume: round 1's agent continues round 0's step count (and its TensorBoard steps do too)
    steps = [agent_lib.load(str(out / f"round_{r}" / "agent.pt"))[1]["global_step"] for r in (0, 1)]
    assert steps == [r["global_step"] for r in records] and steps[0] == 2048 and steps[1] == 2 * steps[0]
    summary = agent_lib.load(str(out / "round_1" / "agent.pt"))[1]["summary"]
    assert summary["start_step"] == steps[0] and summary["resumed_from"] == str(out / "round_0" / "agent.pt")
    ppo_runs = [glob.glob(str(out / f"round_{r}" / "MovingDot-v0__ppo_rlhf__*")) for r in (0, 1)]
    assert all(len(found) == 1 for found in ppo_runs)
    assert min(step for step, _ in scalars(ppo_runs[1][0], "charts/learning_rate")) > steps[0]

    # the event files and the figure
    assert [step for step, _ in scalars(str(out), "loop/greedy_normalized_return")] == [3, 6]
    assert scalars(str(out), "loop/held_out_accuracy")[1][1] == pytest.approx(records[1]["held_out_accuracy"], abs=1e-6)
    for r in (0, 1):
        assert len(glob.glob(str(out / f"round_{r}" / "MovingDot-v0__train_reward_model__*" / "events.out.tfevents.*"))) == 1
        assert "$ python train_reward_model.py" in (out / f"round_{r}" / "log.txt").read_text()
    assert (out / "label_efficiency.png").stat().st_size > 10_000


def test_after_end_share_reaches_every_db_the_loop_makes(tmp_path):
    out = tmp_path / "loop"
    loop(out, "--env-id", "CartPole-v1", "--label-budget", 8, "--rounds", 1, "--initial-share", 0.5, "--after-end-share", 0.5)
    for name in ("preferences.db", "evaluation.db"):
        assert {run["args"]["after_end_share"] for run in db.read_metadata(str(out / name))["generator_runs"]} == {0.5}
    c = db.load_comparisons(str(out / "evaluation.db"))
    assert 0.3 < np.concatenate([c.absorbing1, c.absorbing2]).all(1).mean() < 0.7  # random CartPole episodes end: about half


def test_the_budget_is_split_over_the_rounds():
    args = rlhf_loop.parse_args(["--label-budget", "100"])  # C17's 25% up front, then 3 rounds
    assert args.queries == [25, 25, 25, 25] and args.ppo_steps == 100_000  # the loop's default, every round (not the fast preset's 150,000)
    args = rlhf_loop.parse_args(["--label-budget", "10", "--rounds", "4", "--initial-share", "0.3"])
    assert args.queries[0] == 3 and sum(args.queries) == 10 and sorted(args.queries[1:]) == [1, 2, 2, 2]
    args = rlhf_loop.parse_args(["--label-budget", "40", "--rounds", "0", "--initial-share", "1", "--total-timesteps", "1000"])
    assert args.queries == [40] and args.ppo_steps == 1000
    # Hopper's default is 6 rounds (envs.DEFAULTS): 1M steps in 7 rounds, 25% of 700 labels up front; a flag given wins
    args = rlhf_loop.parse_args(["--env-id", "Hopper-v5", "--label-budget", "700", "--total-timesteps", "1000000"])
    assert args.rounds == 6 and args.queries[0] == 175 and sum(args.queries) == 700 and len(args.queries) == 7
    assert args.ppo_steps == 1_000_000 // 7
    assert rlhf_loop.parse_args(["--env-id", "Hopper-v5", "--rounds", "3"]).rounds == 3


@pytest.mark.parametrize("flags", [
    ["--label-budget", "3", "--rounds", "3"],          # a round without labels
    ["--initial-share", "0"],                           # no labels for the first reward model
    ["--segment-length", "1900"],                        # no room for the agent's segments in an episode
    ["--select", "best"],
    ["--teacher", "robot"],
    ["--after-end-share", "0.1"],                        # the dot never terminates
])
def test_bad_flags_exit_with_code_2(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as e:
        rlhf_loop.parse_args(["--out-dir", str(tmp_path / "x"), *flags])
    assert e.value.code == 2 and "error:" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_refuses_an_existing_db_before_any_work(tmp_path):
    existing = tmp_path / "queries.db"
    existing.write_bytes(b"mine")
    with pytest.raises(db.PreferencesDBError, match="already exists"):
        loop(tmp_path / "loop", "--db", existing)
    assert existing.read_bytes() == b"mine" and not (tmp_path / "loop").exists()


def test_human_teacher_waits_for_answers_from_another_connection(tmp_path, capsys):
    out, path = tmp_path / "loop", str(tmp_path / "queries.db")
    answered_at, stop = [], threading.Event()

    def labeler():  # a labeling page elsewhere: leases and answers pending pairs through its own connections
        while not stop.is_set():
            try:
                pair = db.lease_next_comparison(path, "a" * 32, 60.0, time.time())
            except db.PreferencesDBError:  # the loop has not written the DB yet
                pair = None
            if pair is None:
                time.sleep(0.1)
                continue
            time.sleep(0.3)  # a person takes a while
            status, mu1 = ("incomparable", None) if pair["id"] == 2 else ("labeled", 1.0)
            db.record_human_label(path, pair["id"], "a" * 32, status, mu1, "tester")
            answered_at.append(time.time())

    thread = threading.Thread(target=labeler, daemon=True)
    thread.start()
    try:
        records = loop(out, "--db", path, "--teacher", "human", "--poll-seconds", 0.05, "--label-budget", 6, "--rounds", 1,
                       "--initial-share", 0.5)
    finally:
        stop.set()
        thread.join(10)

    assert len(answered_at) == 6
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT status, label_source, labeler, COUNT(*) FROM comparisons GROUP BY status ORDER BY status").fetchall() == [
        ("incomparable", "human", "tester", 1), ("labeled", "human", "tester", 5)]
    conn.close()
    # each round waited for its three answers (three people-seconds at least) before training on them
    assert all(r["wait_seconds"] >= 0.8 for r in records) and [r["labels"] for r in records] == [3, 6]
    for r, last_answer in ((0, answered_at[2]), (1, answered_at[5])):
        assert os.path.getmtime(out / f"round_{r}" / "reward_model.pt") > last_answer
    assert rm.load(str(out / "round_0" / "reward_model.pt")).summary["n_train"] == 2  # the incomparable one is not trained on
    assert f"label_preferences.py --db {path}" in capsys.readouterr().out
