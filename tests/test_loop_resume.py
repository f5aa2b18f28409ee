"""Stopping and resuming the RLHF loop (rlhf_loop.py --resume): a loop killed with SIGKILL while
PPO trains, while the reward model trains and while it waits for people's answers, then resumed,
ends with the rounds and records of an uninterrupted run with the same seed, keeps every human
answer and never asks a query twice. --overwrite never deletes human labels; --resume refuses a
flag that would change the loop."""

import glob
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import make_preferences_db
import rlhf_loop
from rlhf import agent as agent_lib
from rlhf import db
from rlhf import moving_dot as md

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = [str(a) for a in ["--seed", 5, "--label-budget", 6, "--rounds", 1, "--initial-share", 0.5, "--total-timesteps", 4096,
                          "--reward-max-steps", 10, "--reward-batch-size", 16, "--ensemble-size", 2, "--candidate-factor", 4,
                          "--eval-episodes", 5, "--eval-comparisons", 60, "--segment-length", 5, "--no-progress"]]
SECONDS = ("wait_seconds", "round_seconds", "wall_seconds")  # wall-clock figures differ between runs; nothing else may


def loop(out_dir, *flags):
    return rlhf_loop.main(rlhf_loop.parse_args(["--out-dir", str(out_dir), *map(str, flags)]))


def without_seconds(records):
    return [{k: v for k, v in r.items() if k not in SECONDS} for r in json.loads(json.dumps(records))]


def stages(out_dir, round_):
    path = os.path.join(out_dir, f"round_{round_}", "stages.json")
    return json.load(open(path)) if os.path.exists(path) else {}


def comparisons(path):
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT id, batch, segment1_id, segment2_id, split, status, mu1, mu2 FROM comparisons ORDER BY id").fetchall()
    conn.close()
    return rows


def start(out_dir, *flags):
    """The loop as a process of its own, as a person starts it."""
    os.makedirs(out_dir.parent, exist_ok=True)
    log = open(out_dir.parent / f"stdout_{time.time_ns()}.txt", "w")
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "rlhf_loop.py"), "--out-dir", str(out_dir), *map(str, flags)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def kill_when(process, ready, timeout=120.0):
    """SIGKILL the loop (no handler runs, nothing is flushed) as soon as ``ready()``."""
    deadline = time.time() + timeout
    while not ready():
        assert process.poll() is None, f"the loop ended (exit code {process.returncode}) before it could be killed"
        if time.time() > deadline:
            process.kill()
            raise AssertionError("the loop never reached the point where it was to be killed")
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait(30) == -signal.SIGKILL


def log_has(path, text):
    return lambda: os.path.exists(path) and text in open(path).read()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted loop with the synthetic teacher: what every resumed loop must end with."""
    out = tmp_path_factory.mktemp("reference") / "loop"
    return out, loop(out, *FLAGS)


def test_a_loop_killed_while_training_and_resumed_ends_as_an_uninterrupted_one(reference, tmp_path):
    reference_dir, reference_records = reference
    out = tmp_path / "loop"

    # killed while PPO trains round 0's agent: its queries, labels and reward model are recorded, the agent not
    kill_when(start(out, *FLAGS), log_has(out / "round_0" / "log.txt", "$ python ppo_rlhf.py"))
    assert {"queries", "labels", "reward_model"} <= stages(out, 0).keys() and "agent" not in stages(out, 0)
    assert json.loads((out / "rounds.json").read_text())["rounds"] == []

    # resumed with --resume alone (the loop's flags are saved), killed again while round 1's reward model trains
    kill_when(start(out, "--resume", "--no-progress"), log_has(out / "round_1" / "log.txt", "$ python train_reward_model.py"))
    assert "queries" in stages(out, 1) and "reward_model" not in stages(out, 1)
    assert [r["round"] for r in json.loads((out / "rounds.json").read_text())["rounds"]] == [0]

    # resumed to the end: the rounds and records of the uninterrupted loop
    records = loop(out, "--resume")
    assert without_seconds(records) == without_seconds(reference_records)
    assert json.loads((out / "rounds.json").read_text())["rounds"] == json.loads(json.dumps(records))
    assert records[1]["wall_seconds"] > records[0]["wall_seconds"] > 0

    # the same queries and labels, one generator batch per round (none written twice), the same final agent
    assert comparisons(out / "preferences.db") == comparisons(reference_dir / "preferences.db")
    assert [run["batch"] for run in db.read_metadata(str(out / "preferences.db"))["generator_runs"]] == [0, 1]
    weights = [agent_lib.load(str(d / "round_1" / "agent.pt"))[0].state_dict() for d in (out, reference_dir)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])

    # one TensorBoard run per stage and round (a killed stage's partial run is replaced), the loop's scalars once a round
    for r in (0, 1):
        for stage in ("train_reward_model", "ppo_rlhf"):
            assert len(glob.glob(str(out / f"round_{r}" / f"MovingDot-v0__{stage}__*"))) == 1
    assert len(glob.glob(str(out / "events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(out))
    events.Reload()
    assert [e.step for e in events.Scalars("loop/greedy_normalized_return")] == [3, 6]
    assert not glob.glob(str(out / "**" / "*.tmp-*"), recursive=True)


class OracleLabeler:
    """A person on the labeling page, in another thread with its own connections: answers each
    pair as the synthetic teacher would (the true reward sum), up to ``allowed`` answers."""

    def __init__(self, path, allowed):
        self.path, self.allowed, self.answered, self.conflicts = path, allowed, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            pair = None
            if self.allowed is None or self.answered < self.allowed:
                try:
                    pair = db.lease_next_comparison(self.path, "b" * 32, 60.0, time.time())
                except db.PreferencesDBError:  # the loop has not written the DB yet
                    pass
            if pair is None:
                time.sleep(0.02)
                continue
            r1, r2 = (md.TRUE_REWARD[md.position_to_state(np.asarray(pair[s]["positions"]).astype(np.int64))[:-1], pair[s]["actions"]].sum()
                      for s in ("segment1", "segment2"))  # positions come as floats (schema 2: float32 observations)
            try:
                db.record_human_label(self.path, pair["id"], "b" * 32, "labeled", 1.0 if r1 > r2 else 0.0 if r1 < r2 else 0.5, "tester")
                self.answered += 1
            except db.LabelConflict:
                self.conflicts += 1

    def close(self):
        self.stop.set()
        self.thread.join(10)


def test_a_loop_killed_while_waiting_for_people_keeps_every_answer(reference, tmp_path):
    _, reference_records = reference
    out = tmp_path / "loop"
    path = str(out / "preferences.db")
    labeler = OracleLabeler(path, allowed=4)  # round 0's three queries and one of round 1's
    try:
        kill_when(start(out, *FLAGS, "--teacher", "human", "--poll-seconds", 0.05),
                  lambda: labeler.answered == 4 and "queries" in stages(out, 1))
        assert "labels" not in stages(out, 1)  # killed while it waited for the other two
        conn = sqlite3.connect(path)
        given = conn.execute("SELECT id, status, mu1, label_source, labeler, labeled_at FROM comparisons"
                             " WHERE label_source = 'human' ORDER BY id").fetchall()
        conn.close()
        assert len(given) == 4

        labeler.allowed = None  # the person goes on answering; the loop goes on waiting for the same batch
        records = loop(out, "--resume", "--poll-seconds", 0.05)
    finally:
        labeler.close()

    # every answer kept as given, every query asked once, no new batch for the round that was cut short
    assert labeler.answered == 6 and labeler.conflicts == 0
    conn = sqlite3.connect(path)
    assert [row for row in conn.execute("SELECT id, status, mu1, label_source, labeler, labeled_at FROM comparisons"
                                        " ORDER BY id") if row[0] in {g[0] for g in given}] == given
    assert conn.execute("SELECT batch, COUNT(*), SUM(label_source = 'human') FROM comparisons GROUP BY batch").fetchall() == [
        (0, 3, 3), (1, 3, 3)]
    conn.close()
    # answers like the synthetic teacher's: the records of the uninterrupted synthetic loop
    assert without_seconds(records) == without_seconds(reference_records)


def test_resuming_a_finished_loop_changes_nothing(reference, tmp_path):
    out = tmp_path / "loop"
    shutil.copytree(reference[0], out)
    agent_mtime = os.path.getmtime(out / "round_1" / "agent.pt")
    assert loop(out, "--resume") == json.loads(json.dumps(reference[1]))
    assert os.path.getmtime(out / "round_1" / "agent.pt") == agent_mtime
    assert comparisons(out / "preferences.db") == comparisons(reference[0] / "preferences.db")


def test_a_second_loop_on_the_same_folder_is_refused(reference, tmp_path):
    out = tmp_path / "loop"
    shutil.copytree(reference[0], out)
    lock = rlhf_loop.lock_out_dir(str(out))  # a loop already running there
    try:
        with pytest.raises(db.PreferencesDBError, match=f"another rlhf_loop.py \\(pid {os.getpid()}\\) is running"):
            loop(out, "--resume")
    finally:
        lock.close()


@pytest.mark.parametrize("flags, named", [
    (["--label-budget", "8"], "--label-budget 8"),
    (["--seed", "6"], "--seed 6"),
    (["--teacher", "human"], "--teacher human"),
    (["--reward-max-steps", "11"], "--reward-max-steps 11"),
])
def test_resume_refuses_a_flag_that_would_change_the_loop(reference, capsys, flags, named):
    with pytest.raises(SystemExit) as e:
        rlhf_loop.parse_args(["--out-dir", str(reference[0]), "--resume", *FLAGS, *flags])
    assert e.value.code == 2 and f"error: --resume: {named} would change the loop" in capsys.readouterr().err


def test_resume_takes_the_saved_flags_and_this_sessions_polling(reference):
    args = rlhf_loop.parse_args(["--out-dir", str(reference[0]), "--resume", "--poll-seconds", "9", "--progress", *FLAGS[:4]])
    assert (args.seed, args.label_budget, args.queries, args.ppo_steps, args.poll_seconds, args.progress) == (5, 6, [3, 3], 2048, 9.0, True)
    assert args.db == os.path.join(str(reference[0]), "preferences.db") and args.resume and not args.overwrite


def test_resume_reads_a_loop_saved_with_the_old_flag_names(tmp_path, capsys):
    """rounds.json of a loop started before --ensemble and --reward-steps took the trainer's names."""
    out = tmp_path / "loop"
    saved = vars(rlhf_loop.parse_args(["--out-dir", str(out), *FLAGS]))
    saved["ensemble"], saved["reward_steps"] = saved.pop("ensemble_size"), saved.pop("reward_max_steps")
    out.mkdir()
    (out / "rounds.json").write_text(json.dumps({"args": saved, "rounds": []}))
    args = rlhf_loop.parse_args(["--out-dir", str(out), "--resume", "--ensemble-size", "2"])
    assert (args.ensemble_size, args.reward_max_steps) == (2, 10) and not {"ensemble", "reward_steps"} & set(vars(args))
    with pytest.raises(SystemExit):
        rlhf_loop.parse_args(["--out-dir", str(out), "--resume", "--reward-max-steps", "11"])
    assert "--reward-max-steps 11 would change the loop" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [
    ["--resume", "--overwrite"],
    ["--discard-human-labels"],
    ["--resume"],  # no loop in that folder
])
def test_bad_resume_flags_exit_with_code_2(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as e:
        rlhf_loop.parse_args(["--out-dir", str(tmp_path / "x"), *flags])
    assert e.value.code == 2 and "error:" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_a_plain_rerun_on_a_loop_names_resume(reference):
    with pytest.raises(db.PreferencesDBError, match="pass --resume to continue that loop"):
        loop(reference[0], *FLAGS)


def test_overwrite_never_deletes_human_labels(tmp_path):
    path = str(tmp_path / "queries.db")
    # written with the seed of round 0's queries of the loop below: a replaced DB's batch must not pass for the loop's own
    make_preferences_db.main(make_preferences_db.parse_args(["--db", path, "--oracle", "none", "--segment-length", "5",
                                                             "--n-segments", "8", "--n-comparisons", "4",
                                                             "--seed", str(rlhf_loop.stage_seed(1, 0, 0))]))
    pair = db.lease_next_comparison(path, "c" * 32, 60.0, time.time())
    db.record_human_label(path, pair["id"], "c" * 32, "labeled", 1.0, "tester")
    before = comparisons(path)
    small = ["--rounds", 0, "--initial-share", 1, "--label-budget", 2, *FLAGS[8:]]

    with pytest.raises(db.PreferencesDBError, match="holds 1 human label .*--resume.*--discard-human-labels"):
        loop(tmp_path / "loop", "--db", path, "--overwrite", *small)
    assert comparisons(path) == before and not (tmp_path / "loop").exists()

    (tmp_path / "foreign.db").write_bytes(b"mine")  # a file that cannot be read cannot be said to hold no answers
    with pytest.raises(db.PreferencesDBError, match="cannot tell whether"):
        loop(tmp_path / "loop", "--db", tmp_path / "foreign.db", "--overwrite", *small)
    assert (tmp_path / "foreign.db").read_bytes() == b"mine"

    loop(tmp_path / "loop", "--db", path, "--overwrite", "--discard-human-labels", *small)  # said explicitly: replaced
    assert db.count_human_labels(path) == 0 and len(comparisons(path)) == 2


def test_resume_never_takes_a_replaced_loops_queries_for_its_own(reference, tmp_path):
    out = tmp_path / "loop"
    shutil.copytree(reference[0], out)
    before = comparisons(out / "preferences.db")
    # what `--overwrite` writes first, had it been killed before round 0 replaced the DB: same seed, nothing done yet
    saved = json.loads((out / "rounds.json").read_text())
    saved["args"].update(run_name="MovingDot-v0__rlhf_loop__5__2", overwrite=True)
    (out / "rounds.json").write_text(json.dumps({"args": saved["args"], "started_at": "2999-01-01T00:00:00.000+00:00",
                                                 "evaluation_db": False, "elapsed": 0.0, "rounds": []}))
    with pytest.raises(db.PreferencesDBError, match="holds none of this loop's queries.*--overwrite instead of --resume"):
        loop(out, "--resume")
    assert comparisons(out / "preferences.db") == before
