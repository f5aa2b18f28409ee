"""The labeling app (label_preferences.py) and its DB functions: every route and every bad
request through Flask's test client, leases under concurrency, the trainer on human labels,
the clips of an env other than the moving dot (Mountain Car, CartPole: the env's own rendering
of each segment), the command line, and end-to-end runs in a real headless chromium."""

import io
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import gymnasium as gym
import numpy as np
import pytest
from in_process import run_script
from PIL import Image

import label_preferences as lp
import make_preferences_db
import train_reward_model
from rlhf import db, envs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEASE = 300.0
COLUMNS = "id, split, status, mu1, mu2, label_source, labeler, labeled_at IS NOT NULL, batch"


def make_queries(path, n_comparisons=20, segment_length=3, oracle="none", append=False, seed=1, env_id=envs.DEFAULT_ENV_ID):
    """A DB of unlabeled queries, as the README's demo makes it (10% held out)."""
    make_preferences_db.main(make_preferences_db.parse_args([
        "--seed", str(seed), "--db", str(path), "--env-id", env_id, "--oracle", oracle, "--segment-length", str(segment_length),
        "--n-segments", str(2 * n_comparisons), "--n-comparisons", str(n_comparisons), *(["--append"] if append else [])]))
    return str(path)


def rows(path, columns=COLUMNS):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT {columns} FROM comparisons ORDER BY id").fetchall()
    finally:
        conn.close()


def dump(path):
    """Everything about the comparisons, to check that a refused request changed nothing."""
    return rows(path, "*")


class Clock:
    """Real time plus an offset that a test moves forward to let leases lapse."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.time() + self.offset


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    return make_queries(tmp_path_factory.mktemp("template") / "queries.db")


@pytest.fixture
def queries(tmp_path, template_db):
    path = str(tmp_path / "queries.db")
    shutil.copy(template_db, path)
    return path


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def client(queries, clock):
    return lp.create_app(queries, "alice", LEASE, clock=clock).test_client()


def next_pair(client):
    response = client.post("/api/next")
    assert response.status_code == 200, response.json
    return response.json["comparison"]


def answer(client, comparison, choice, token=None):
    return client.post("/api/answer", json={"comparison_id": comparison["id"], "token": token or comparison["token"], "answer": choice})


# --- the page and its assets -----------------------------------------------------------------

def test_page_and_assets_are_served_by_the_app(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/static/label.js" in html and "/static/label.css" in html and '"segment_length": 3' in html
    for asset in ("/static/label.js", "/static/label.css"):
        response = client.get(asset)
        assert response.status_code == 200
        text = response.get_data(as_text=True)
        response.close()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text  # nothing from outside
        html += text
    assert "http://" not in html and "https://" not in html


# --- handing out pairs -------------------------------------------------------------------------

def test_next_leases_a_pair_with_its_segments(client, queries):
    comparison = next_pair(client)
    assert len(comparison["token"]) == 32
    for key in ("segment1", "segment2"):
        assert len(comparison[key]["positions"]) == 4 and len(comparison[key]["actions"]) == 3
    data = db.load_comparisons(queries, statuses=("pending",))
    i = data.ids.tolist().index(comparison["id"])
    assert comparison["segment1"]["positions"] == data.obs1[i].tolist()
    assert comparison["segment2"]["actions"] == data.actions2[i].tolist()
    token, expires = rows(queries, "lease_token, lease_expires")[comparison["id"] - 1]
    assert token == comparison["token"] and expires == pytest.approx(time.time() + LEASE, abs=5)
    assert next_pair(client)["id"] != comparison["id"]  # a second page gets another pair


def test_held_out_pairs_are_interleaved_in_proportion(queries, clock):
    # 18 training and 2 held-out queries: a labeler who stops after 10 has labeled one held-out pair
    splits = [db.lease_next_comparison(queries, uuid.uuid4().hex, LEASE, clock())["split"] for _ in range(20)]
    assert splits[:10].count("validation") == 1 and splits.count("validation") == 2
    assert db.lease_next_comparison(queries, uuid.uuid4().hex, LEASE, clock()) is None


def test_newest_batch_first(queries, clock):
    make_queries(queries, n_comparisons=10, append=True, seed=2)
    comparison = db.lease_next_comparison(queries, uuid.uuid4().hex, LEASE, clock())
    assert comparison["batch"] == 1 and comparison["id"] > 20


def test_an_unanswered_lease_lapses_and_the_first_answer_wins(client, queries, clock):
    first = next_pair(client)
    clock.offset = LEASE + 1
    second = next_pair(client)
    assert second["id"] == first["id"] and second["token"] != first["token"]  # back in the pool
    assert answer(client, first, "segment1").status_code == 200  # the late answer still counts
    refused = answer(client, second, "segment2")
    assert refused.status_code == 409 and "already labeled by alice" in refused.json["error"]
    assert rows(queries)[first["id"] - 1][2:5] == ("labeled", 1.0, 0.0)


def test_release_gives_a_pair_back(client, queries):
    comparison = next_pair(client)
    response = client.post("/api/release", json={"comparison_id": comparison["id"], "token": comparison["token"]})
    assert response.status_code == 200 and response.json == {"released": True}
    assert rows(queries, "lease_token, lease_expires")[comparison["id"] - 1] == (None, None)
    again = client.post("/api/release", json={"comparison_id": comparison["id"], "token": comparison["token"]})
    assert again.json == {"released": False}
    assert next_pair(client)["id"] == comparison["id"]


def test_nothing_pending_says_so_and_gives_the_command(tmp_path):
    path = make_queries(tmp_path / "done.db", n_comparisons=10, oracle="distance")
    client = lp.create_app(path, "alice", LEASE).test_client()
    result = client.post("/api/next").json
    assert result["comparison"] is None and "No comparison is waiting" in result["message"]
    assert result["command"] == (f"python make_preferences_db.py --db {path} --append --oracle none --seed 2"
                                 " --segment-length 3 --n-segments 200 --n-comparisons 100")
    assert result["progress"]["pending"] == 0


def test_all_pending_pairs_on_other_screens(queries, client, clock):
    for _ in range(20):
        db.lease_next_comparison(queries, uuid.uuid4().hex, LEASE, clock())
    result = client.post("/api/next").json
    assert result["comparison"] is None and result["message"].startswith("All 20 pending comparisons are on other labelers' screens")


# --- answers -----------------------------------------------------------------------------------

def test_each_answer_is_stored_at_once_as_a_human_label(client, queries):
    before = rows(queries)
    answers = {"segment1": ("labeled", 1.0, 0.0), "segment2": ("labeled", 0.0, 1.0), "equal": ("labeled", 0.5, 0.5),
               "incomparable": ("incomparable", None, None)}
    answered = {}
    for choice, expected in answers.items():
        comparison = next_pair(client)
        response = answer(client, comparison, choice)
        assert response.status_code == 200 and response.json["stored"] is True
        answered[comparison["id"]] = expected
    after = rows(queries)
    for old, new in zip(before, after):
        if new[0] in answered:  # split and batch kept; label, source, labeler and time written
            assert new == (old[0], old[1], *answered[new[0]], "human", "alice", 1, old[8])
        else:
            assert new == old
    labeled_at = datetime.fromisoformat(rows(queries, "labeled_at")[next(iter(answered)) - 1][0])
    assert abs((datetime.now(UTC) - labeled_at).total_seconds()) < 60
    progress = client.get("/api/progress").json
    assert progress["labeled"] == 4 and progress["pending"] == 16 and progress["labels_per_minute"] == 4.0
    assert db.count_by_status(queries) == {"pending": 16, "labeled": 3, "incomparable": 1}
    assert db.count_by_status(queries, batch=0) == db.count_by_status(queries)
    assert db.count_by_status(queries, batch=1) == {"pending": 0, "labeled": 0, "incomparable": 0}


def test_a_repeated_answer_is_harmless(client, queries):
    comparison = next_pair(client)
    assert answer(client, comparison, "equal").json["stored"] is True
    before = dump(queries)
    repeat = answer(client, comparison, "equal")
    assert repeat.status_code == 200 and repeat.json["stored"] is False
    assert dump(queries) == before
    changed = answer(client, comparison, "segment2")  # the same page changing its mind must undo first
    assert changed.status_code == 409 and "undo it first" in changed.json["error"]
    assert dump(queries) == before


@pytest.mark.parametrize("route", ["/api/answer", "/api/undo", "/api/release"])
@pytest.mark.parametrize("body, message", [
    (None, "expected a JSON object"),
    ([1, 2], "expected a JSON object"),
    ({"token": "0" * 32, "answer": "equal"}, "missing comparison_id"),
    ({"comparison_id": "1", "token": "0" * 32, "answer": "equal"}, "comparison_id must be a positive integer"),
    ({"comparison_id": True, "token": "0" * 32, "answer": "equal"}, "comparison_id must be a positive integer"),
    ({"comparison_id": 0, "token": "0" * 32, "answer": "equal"}, "comparison_id must be a positive integer"),
    ({"comparison_id": 1, "token": "nope", "answer": "equal"}, "token must be"),
    ({"comparison_id": 1, "token": None, "answer": "equal"}, "token must be"),
])
def test_malformed_requests_are_refused(client, queries, route, body, message):
    next_pair(client)
    before = dump(queries)
    response = client.post(route, data="{not json" if body is None else None, json=body,
                           content_type="application/json" if body is None else None)
    assert response.status_code == 400 and message in response.json["error"]
    assert dump(queries) == before


@pytest.mark.parametrize("bad", [{"answer": "left"}, {"answer": None}, {}])
def test_unknown_answers_are_refused(client, queries, bad):
    comparison = next_pair(client)
    before = dump(queries)
    body = {"comparison_id": comparison["id"], "token": comparison["token"], **bad}
    response = client.post("/api/answer", json=body)
    assert response.status_code == 400
    assert ("missing answer" if not bad else "answer must be one of segment1, segment2, equal, incomparable") in response.json["error"]
    assert dump(queries) == before


@pytest.mark.parametrize("route", ["/api/answer", "/api/undo", "/api/release"])
def test_unknown_comparison_ids_are_refused(client, queries, route):
    before = dump(queries)
    response = client.post(route, json={"comparison_id": 999, "token": uuid.uuid4().hex, "answer": "equal"})
    assert response.status_code == 404 and response.json["error"] == "no comparison with id 999 in this DB"
    assert dump(queries) == before


def test_a_pair_labeled_by_someone_else_is_refused(client, queries, tmp_path):
    mine = next_pair(client)
    bob = lp.create_app(queries, "bob", LEASE).test_client()
    theirs = next_pair(bob)
    assert answer(bob, theirs, "segment2").status_code == 200
    before = dump(queries)
    response = answer(client, theirs, "segment1", token=mine["token"])
    assert response.status_code == 409
    assert f"comparison {theirs['id']} was already labeled by bob" in response.json["error"]
    assert "segment 2 better" in response.json["error"] and "not stored" in response.json["error"]
    assert client.post("/api/undo", json={"comparison_id": theirs["id"], "token": mine["token"]}).status_code == 409
    assert dump(queries) == before
    synthetic = make_queries(tmp_path / "synthetic.db", n_comparisons=10, oracle="distance")
    response = lp.create_app(synthetic, "alice", LEASE).test_client().post(
        "/api/answer", json={"comparison_id": 1, "token": uuid.uuid4().hex, "answer": "equal"})
    assert response.status_code == 409 and "already labeled by oracle:distance" in response.json["error"]


def test_undo_puts_the_pair_back_on_the_same_page(client, queries):
    comparison = next_pair(client)
    answer(client, comparison, "segment1")
    before = rows(queries)
    response = client.post("/api/undo", json={"comparison_id": comparison["id"], "token": comparison["token"]})
    assert response.status_code == 200
    again = response.json["comparison"]
    assert again["id"] == comparison["id"] and again["token"] == comparison["token"]
    assert again["segment1"] == comparison["segment1"] and response.json["progress"]["labeled"] == 0
    row = rows(queries)[comparison["id"] - 1]
    assert row == (*before[comparison["id"] - 1][:2], "pending", None, None, None, None, 0, 0)
    assert rows(queries, "lease_token")[comparison["id"] - 1] == (comparison["token"],)  # still this page's
    repeat = client.post("/api/undo", json={"comparison_id": comparison["id"], "token": comparison["token"]})
    assert repeat.status_code == 200  # a repeated undo is harmless
    other = next_pair(client)
    assert other["id"] != comparison["id"]  # not handed to anyone else meanwhile
    assert answer(client, again, "segment2").status_code == 200  # answered again, differently
    assert rows(queries)[comparison["id"] - 1][2:5] == ("labeled", 0.0, 1.0)
    never = client.post("/api/undo", json={"comparison_id": other["id"], "token": uuid.uuid4().hex})
    assert never.status_code == 409 and "is not answered yet" in never.json["error"]


def test_unknown_routes_and_methods_answer_in_json(client):
    assert client.get("/api/next").status_code == 405 and "error" in client.get("/api/next").json
    assert client.get("/api/nothing").status_code == 404 and "error" in client.get("/api/nothing").json


# --- several labelers, and the trainer reading meanwhile -----------------------------------------

def test_concurrent_labelers_never_share_a_pair_or_lose_an_answer(queries):
    def labeler(i):
        got = []
        for _ in range(6):
            token = uuid.uuid4().hex
            comparison = db.lease_next_comparison(queries, token, LEASE, time.time())
            if comparison is None:
                break
            assert db.record_human_label(queries, comparison["id"], token, "labeled", 1.0, f"labeler{i}")
            got.append(comparison["id"])
        return got

    with ThreadPoolExecutor(4) as pool:
        handed = [i for got in pool.map(labeler, range(4)) for i in got]
    assert sorted(handed) == list(range(1, 21))
    assert db.count_by_status(queries) == {"pending": 0, "labeled": 20, "incomparable": 0}


def test_the_trainer_reads_while_the_app_writes(client, queries):
    comparison = next_pair(client)
    answer(client, comparison, "segment1")
    writer = sqlite3.connect(queries, isolation_level=None)
    try:  # the app in the middle of a write transaction ...
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE comparisons SET lease_token = NULL WHERE id = 2")
        data = db.load_comparisons(queries, label_source="human")  # ... and a reader is not blocked
        assert data.ids.tolist() == [comparison["id"]]
        writer.execute("COMMIT")
        reader = sqlite3.connect(queries, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM comparisons").fetchone()  # a reader holding a snapshot ...
        assert answer(client, next_pair(client), "equal").status_code == 200  # ... does not block the app
        reader.execute("COMMIT")
        reader.close()
    finally:
        writer.close()


def test_train_reward_model_trains_on_human_labels(tmp_path):
    path = make_queries(tmp_path / "mixed.db", n_comparisons=20, oracle="distance")
    make_queries(path, n_comparisons=20, append=True, seed=2)  # batch 1: queries for a human
    client = lp.create_app(path, "alice", LEASE).test_client()
    answered = {"train": 0, "validation": 0}
    for i in range(12):
        comparison = next_pair(client)
        choice = "incomparable" if i == 0 else ("segment1", "segment2", "equal")[i % 3]
        assert answer(client, comparison, choice).status_code == 200
        answered[comparison["split"]] += choice != "incomparable"
    assert answered == {"train": 10, "validation": 1}
    summary = train_reward_model.main(train_reward_model.parse_args([
        "--db", path, "--out", str(tmp_path / "rm.pt"), "--label-source", "human", "--max-steps", "20",
        "--eval-every", "10", "--run-dir", str(tmp_path / "runs"), "--no-progress", "--no-cuda", "--no-plot"]))
    assert (summary["n_train"], summary["n_validation"]) == (10, 1)


# --- any other env: clips of the env's own rendering -------------------------------------------

@pytest.fixture(scope="module")
def car_template(tmp_path_factory):
    return make_queries(tmp_path_factory.mktemp("car") / "car.db", n_comparisons=10, segment_length=10, env_id="MountainCar-v0")


@pytest.fixture
def car_db(tmp_path, car_template):
    path = str(tmp_path / "car.db")
    shutil.copy(car_template, path)
    return path


@pytest.fixture
def car_client(car_db):
    return lp.create_app(car_db, "alice", LEASE).test_client()


def clip_frames(client, segment):
    """The frames of a segment's clip, as the page cuts them from the sheet: (k + 1, h, w, 3)."""
    clip = segment["clip"]
    response = client.get(clip["url"])
    assert response.status_code == 200 and response.mimetype == "image/png"
    sheet = np.asarray(Image.open(io.BytesIO(response.data)).convert("RGB"))
    h, w, columns = clip["height"], clip["width"], clip["columns"]
    return np.stack([sheet[i // columns * h:(i // columns + 1) * h, i % columns * w:(i % columns + 1) * w] for i in range(clip["frames"])])


def rendered_directly(env_id, path, segment, size):
    """The segment played again in a plain gymnasium env: its frames scaled to ``size`` and its
    observations, to be compared with what the DB stored."""
    env = gym.make(env_id, render_mode="rgb_array")
    seed, start, episode_actions = db.segment_replay(path, segment["id"])
    obs = env.reset(seed=seed)[0]
    for action in episode_actions[:start]:
        obs = env.step(int(action))[0]
    frames, observations = [env.render()], [obs]
    for t, action in enumerate(episode_actions[start:]):
        if not segment["absorbing"][t]:
            obs = env.step(int(action))[0]
            frames.append(env.render())
        else:
            frames.append(frames[-1])
        observations.append(obs)
    env.close()
    scale = lambda frame: np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
    return np.stack([scale(f) for f in frames]), np.array(observations, dtype=np.float32)


def test_clips_view_for_any_env_but_the_dot(car_client, client):
    result = car_client.post("/api/next").json
    assert result["view"] == "clips"
    for key in ("segment1", "segment2"):
        segment = result["comparison"][key]
        assert segment["replayable"] and segment["clip_message"] is None
        assert segment["clip"] == {"url": f"/api/clip/{segment['id']}", "frames": 11, "width": 400, "height": 267, "columns": 6}
    html = car_client.get("/").get_data(as_text=True)
    assert 'data-view="clips"' in html and "MountainCar-v0" in html and "Which clip do you prefer?" in html
    # the moving dot keeps its diagram, and has no clips
    dot = client.post("/api/next").json
    assert dot["view"] == "diagram" and "clip" not in dot["comparison"]["segment1"]
    assert 'data-view="diagram"' in client.get("/").get_data(as_text=True)
    response = client.get("/api/clip/1")
    assert response.status_code == 404 and "has no clips" in response.json["error"]


def test_a_clip_is_the_envs_own_rendering_of_the_segment(car_client, car_db):
    comparison = next_pair(car_client)
    clips = [clip_frames(car_client, comparison[key]) for key in ("segment1", "segment2")]
    for key, frames in zip(("segment1", "segment2"), clips):
        segment = comparison[key]
        expected, observations = rendered_directly("MountainCar-v0", car_db, segment, (400, 267))
        np.testing.assert_array_equal(observations, np.array(segment["positions"], dtype=np.float32))  # the stored segment ...
        np.testing.assert_array_equal(frames, expected)  # ... is what the clip shows, frame by frame
        assert len({f.tobytes() for f in frames}) > 1  # the car moves
    assert not np.array_equal(clips[0], clips[1])
    url = comparison["segment1"]["clip"]["url"]
    first = car_client.get(url)
    start = time.perf_counter()
    again = car_client.get(url)
    assert again.data == first.data and time.perf_counter() - start < 0.05  # from the cache
    assert car_client.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304


def test_a_clip_holds_its_last_frame_once_the_episode_ended(tmp_path):
    path = make_queries(tmp_path / "pole.db", n_comparisons=10, segment_length=10, env_id="CartPole-v1")
    client = lp.create_app(path, "alice", LEASE).test_client()
    for _ in range(10):  # random CartPole episodes are short: most pairs hold an episode's end
        segment = next_pair(client)["segment1"]
        if any(segment["absorbing"]):
            break
    end = segment["absorbing"].index(True)  # the observation at step `end` is the terminal one
    frames = clip_frames(client, segment)
    expected, _ = rendered_directly("CartPole-v1", path, segment, (400, 267))
    np.testing.assert_array_equal(frames, expected)
    assert all(np.array_equal(frames[end], f) for f in frames[end:]) and not np.array_equal(frames[end - 1], frames[end])


def test_a_clip_that_starts_after_its_episode_ended_is_its_last_frame_throughout(tmp_path):
    path = str(tmp_path / "pole.db")
    make_preferences_db.main(make_preferences_db.parse_args([
        "--db", path, "--env-id", "CartPole-v1", "--oracle", "none", "--segment-length", "5", "--n-segments", "20",
        "--n-comparisons", "10", "--after-end-share", "0.9"]))
    client = lp.create_app(path, "alice", LEASE).test_client()
    for _ in range(10):
        segment = next_pair(client)["segment1"]
        if all(segment["absorbing"]):
            break
    assert all(segment["absorbing"])
    frames = clip_frames(client, segment)
    env = gym.make("CartPole-v1", render_mode="rgb_array")  # the episode stepped to its end, once
    seed, start, episode_actions = db.segment_replay(path, segment["id"])
    env.reset(seed=seed)
    for action in episode_actions:
        if env.step(int(action))[2]:
            break
    expected = np.asarray(Image.fromarray(env.render()).resize((400, 267), Image.Resampling.BILINEAR))
    env.close()
    assert len(frames) == 6 and all(np.array_equal(f, expected) for f in frames)


def test_a_segment_that_cannot_be_replayed_says_why(car_client, car_db):
    conn = sqlite3.connect(car_db)
    conn.execute("UPDATE segments SET reset_seed = NULL")  # as segments drawn without a rollout are stored
    conn.commit()
    conn.close()
    segment = next_pair(car_client)["segment1"]
    assert segment["replayable"] is False and segment["clip"] is None and "cannot be replayed" in segment["clip_message"]
    response = car_client.get(f"/api/clip/{segment['id']}")
    assert response.status_code == 409 and "cannot be replayed" in response.json["error"]
    missing = car_client.get("/api/clip/999")
    assert missing.status_code == 404 and missing.json["error"] == "no segment with id 999 in this DB"


def test_the_env_comes_from_the_db_and_a_renderer_that_fails_stops_the_start(car_db, monkeypatch, capsys):
    other = run_cli("--db", car_db, "--env-id", "CartPole-v1")
    assert other.returncode != 0 and other.stdout == "" and other.stderr.count("\n") == 1
    assert f"{car_db} was made for MountainCar-v0, not CartPole-v1; pass --env-id MountainCar-v0" in other.stderr

    def no_renderer(env_spec):
        raise envs.EnvError(f"{env_spec.env_id} cannot render frames (FatalError: no GL); set MUJOCO_GL=egl")

    monkeypatch.setattr(envs, "make_render_env", no_renderer)
    with pytest.raises(envs.EnvError, match="MountainCar-v0 cannot render frames.*MUJOCO_GL=egl"):
        lp.main(lp.parse_args(["--db", car_db, "--port", "0", "--env-id", "MountainCar-v0"]))
    assert "label at" not in capsys.readouterr().out  # failed before serving
    # when nothing is pending, the page's command makes more queries for the same env
    command = lp.more_queries_command(car_db)
    assert "--env-id MountainCar-v0" in command
    make_preferences_db.main(make_preferences_db.parse_args(shlex.split(command)[2:]))
    assert db.count_by_status(car_db, batch=1)["pending"] == 100


# --- the command line --------------------------------------------------------------------------

def run_cli(*args):
    """The command line in this process (tests/in_process.py), for the refusals before serving: a
    server that starts fails the test (a traceback) instead of blocking it."""
    from unittest import mock

    from werkzeug.serving import BaseWSGIServer

    def serve_forever(self, *args, **kwargs):
        raise AssertionError("the server started")

    with mock.patch.object(BaseWSGIServer, "serve_forever", serve_forever):
        return run_script(os.path.join(ROOT, "labeling", "label_preferences.py"), *args, cwd=ROOT)


def test_bad_db_or_port_gives_a_one_line_error(tmp_path, queries):
    missing = run_cli("--db", str(tmp_path / "missing.db"))
    foreign = tmp_path / "foreign.db"
    foreign.write_text("not a database")
    bad = run_cli("--db", str(foreign))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run_cli("--db", queries, "--port", str(taken.getsockname()[1]))
    for result, message in ((missing, "not found"), (bad, "is not an SQLite database"), (busy, "pass another --port")):
        assert result.returncode != 0 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("label_preferences.py: error:") and message in result.stderr


def test_the_server_listens_on_localhost_and_prints_the_url(queries):  # the script's one test in a process of its own
    import urllib.request

    assert lp.parse_args([]).host == "127.0.0.1"
    # a suite started in the background (`make test &`) ignores SIGINT, and a child inherits that: Ctrl+C is the default here
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "labeling", "label_preferences.py"), "--db", queries, "--port", "0",
                                "--labeler", "carol"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert "20 pending" in process.stdout.readline()
        url = process.stdout.readline().split()[2]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b"Which clip" in page.read()
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
    assert process.returncode == 0 and "stopped" in out


# --- end to end, in a real browser -------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (its own browser download does not work here).
    Missing: a failure that names the fix (`make test` installs it where it can), never a skip."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("no chromium for the browser test: run tests/install_chromium.sh (or `sudo apt-get install chromium`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def serve(path):
    """The app on a free port in a thread: (its URL, a function that stops it)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, lp.create_app(path, "alice", LEASE), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        thread.join()

    return f"http://127.0.0.1:{server.server_port}/", stop


@pytest.fixture
def server(queries):
    url, stop = serve(queries)
    yield url
    stop()


def open_page(browser, url, problems):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("request", lambda request: request.url.startswith(url) or request.url.startswith("data:") or problems.append(request.url))
    page.goto(url)
    page.wait_for_selector("body[data-state=ready]:not([data-busy])")
    return page


def shown(page):
    return int(page.get_attribute("body", "data-comparison-id"))


def act(page, do):
    """Do something that changes the pair on screen, and wait until the next one is shown."""
    before = shown(page)
    do()
    page.wait_for_function("id => document.body.dataset.comparisonId !== String(id) && !document.body.dataset.busy", arg=before)
    return shown(page)


def test_label_in_a_real_browser(browser, server, queries, tmp_path):
    problems = []
    page = open_page(browser, server, problems)
    first = shown(page)
    second = act(page, lambda: page.click("#answer-left"))
    third = act(page, lambda: page.keyboard.press("ArrowRight"))
    fourth = act(page, lambda: page.keyboard.press("Equal"))
    fifth = act(page, lambda: page.click("#answer-cant-tell"))
    sixth = act(page, lambda: page.keyboard.press("x"))
    back = act(page, lambda: page.keyboard.press("z"))  # undo the last answer: that pair is shown again
    assert back == fifth and "Undid" in page.inner_text("#status")
    act(page, lambda: page.keyboard.press("ArrowDown"))  # ... and answered again
    assert "labeled by hand" in page.inner_text("#progress-text")
    page.screenshot(path=str(tmp_path / "labeling_page.png"))

    expected = {first: ("labeled", 1.0, 0.0), second: ("labeled", 0.0, 1.0), third: ("labeled", 0.5, 0.5),
                fourth: ("incomparable", None, None), fifth: ("labeled", 0.5, 0.5)}
    for row in rows(queries):
        if row[0] in expected:
            assert row[2:8] == (*expected[row[0]], "human", "alice", 1)
        else:
            assert row[2:8] == ("pending", None, None, None, None, 0)
    now_shown = shown(page)  # the pair on screen at the undo went back to the pool, and is next again
    assert now_shown == sixth and rows(queries, "lease_token IS NOT NULL")[now_shown - 1] == (1,)

    # two more pages at once get two other pairs
    pages = [browser.new_page() for _ in range(2)]
    for other in pages:
        other.goto(server)
    for other in pages:
        other.wait_for_selector("body[data-state=ready]:not([data-busy])")
    ids = {shown(other) for other in pages} | {now_shown}
    assert len(ids) == 3
    for other in pages + [page]:
        other.close()
    assert problems == []


def test_the_page_says_when_nothing_is_pending(browser, tmp_path):
    from werkzeug.serving import make_server

    path = make_queries(tmp_path / "done.db", n_comparisons=10, oracle="distance")
    server = make_server("127.0.0.1", 0, lp.create_app(path, "alice", LEASE), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{server.server_port}/")
        page.wait_for_selector("body[data-state=empty]")
        assert "No comparison is waiting" in page.inner_text("#empty")
        assert "make_preferences_db.py --db" in page.inner_text("#empty-command")
        page.close()
    finally:
        server.shutdown()
        thread.join()


CANVAS_CENTRE = """id => { const c = document.getElementById(id);
    return Array.from(c.getContext("2d").getImageData(c.width / 2, c.height / 2, 1, 1).data); }"""


def test_label_mountain_car_clips_in_a_real_browser(browser, car_db, tmp_path):
    url, stop = serve(car_db)
    problems = []
    try:
        page = open_page(browser, url, problems)
        assert page.get_attribute("body", "data-view") == "clips"
        for frame in ("10", "0"):  # both clips play to the end and loop
            page.wait_for_function("i => document.body.dataset.frame === i", arg=frame, timeout=10000)
        for side in ("canvas-left", "canvas-right"):  # a frame of the env's (its white sky), not the empty canvas
            assert min(page.evaluate(CANVAS_CENTRE, side)[:3]) > 200
        page.screenshot(path=str(tmp_path / "mountain_car_page.png"))
        first = shown(page)
        second = act(page, lambda: page.keyboard.press("ArrowLeft"))
        third = act(page, lambda: page.keyboard.press("ArrowRight"))
        # the second pair's left segment loses its replay info: shown again, it says why instead of a clip
        segment1 = rows(car_db, "segment1_id")[second - 1][0]
        conn = sqlite3.connect(car_db)
        conn.execute("UPDATE segments SET reset_seed = NULL WHERE id = ?", (segment1,))
        conn.commit()
        conn.close()
        back = act(page, lambda: page.keyboard.press("z"))
        assert back == second and "Undid" in page.inner_text("#status")
        assert page.is_visible("#message-left") and "cannot be replayed" in page.inner_text("#message-left")
        assert not page.is_visible("#message-right") and min(page.evaluate(CANVAS_CENTRE, "canvas-right")[:3]) > 200
        act(page, lambda: page.keyboard.press("ArrowDown"))  # ... and answered again
        expected = {first: ("labeled", 1.0, 0.0), second: ("labeled", 0.5, 0.5)}
        for row in rows(car_db):
            assert row[2:8] == ((*expected[row[0]], "human", "alice", 1) if row[0] in expected else ("pending", None, None, None, None, 0))
        assert shown(page) == third  # the pair on screen at the undo went back to the pool, and is next again
        page.close()
    finally:
        stop()
    assert problems == []
