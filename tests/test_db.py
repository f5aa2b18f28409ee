"""The preferences DB (db.py): round trips, metadata, atomic writes, clear errors, WAL reads."""

import glob
import os
import sqlite3

import numpy as np
import pytest

from rlhf import db, envs
from rlhf import moving_dot as md

DOT = envs.spec("MovingDot-v0").params()  # the env entry a moving-dot DB holds

ALL_STATUSES = ("pending", "incomparable", "labeled")


def run_info(tag="test"):
    return {"script": "test", "tag": tag}


def make_data(k, n_segments=4, seed=0, x0=10):
    """Hand-made segments of length k: segment i starts at (x0 + 10 i, 20 + i) and moves right."""
    obs = np.zeros((n_segments, k + 1, 2), dtype=np.int64)
    for i in range(n_segments):
        for t in range(k + 1):
            obs[i, t] = (x0 + 10 * i + t, 20 + i)
    actions = np.full((n_segments, k), 2, dtype=np.int64)
    actions[:, 0] = np.arange(n_segments) % 5  # not all equal, to see them come back
    return obs, actions


# five comparisons over four segments, one of each kind
PAIRS = np.array([[0, 1], [2, 3], [1, 2], [3, 0], [0, 2]])
VALIDATION = np.array([False, False, True, False, True])
STATUS = np.array(["labeled", "labeled", "pending", "incomparable", "labeled"], dtype=object)
MU1 = np.array([1.0, 0.0, np.nan, np.nan, 0.5])


def write(path, mode="create", k=1, x0=10, status=STATUS, mu1=MU1, pairs=PAIRS, validation=VALIDATION, tag="test", **kwargs):
    obs, actions = make_data(k, x0=x0)
    return db.write_generation(str(path), mode, env_params=DOT, run_info=run_info(tag), obs=obs,
                               actions=actions, source="uniform", pairs=pairs, validation=validation,
                               status=status, mu1=mu1, labeler="oracle:test", **kwargs)


def as_tuple(c):
    return tuple(np.asarray(getattr(c, f)).tolist() for f in c.__dataclass_fields__)


def assert_same(a, b):
    for field in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def tmp_leftovers(directory):
    return glob.glob(os.path.join(directory, "*.tmp-*"))


def db_files(directory):
    """Files in a directory, less the -wal/-shm files SQLite keeps beside an open (or
    read-only-closed) WAL database."""
    return sorted(f for f in os.listdir(directory) if not f.endswith(("-wal", "-shm")))


# --- round trip -----------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3])
def test_round_trip_of_labeled_comparisons(tmp_path, k):
    path = tmp_path / "p.db"
    entry = write(path, k=k)
    assert entry["batch"] == 0 and entry["n_segments"] == 4 and entry["n_comparisons"] == 5
    obs, actions = make_data(k)
    c = db.load_comparisons(str(path))
    labeled = np.flatnonzero(STATUS == "labeled")  # rows 0, 1, 4
    assert len(c) == 3
    assert c.ids.tolist() == [1, 2, 5]  # ids in insertion order, 1-based
    assert c.obs1.shape == (3, k + 1, 2) and c.actions1.shape == (3, k)
    assert c.obs1.dtype == np.float32 and c.actions1.dtype == np.int64
    assert c.rewards1.shape == c.absorbing1.shape == (3, k) and c.absorbing1.dtype == bool
    assert not c.absorbing1.any() and not c.rewards1.any()  # not given: no absorbing steps, reward 0
    np.testing.assert_array_equal(c.obs1, obs[PAIRS[labeled, 0]])
    np.testing.assert_array_equal(c.obs2, obs[PAIRS[labeled, 1]])
    np.testing.assert_array_equal(c.actions1, actions[PAIRS[labeled, 0]])
    np.testing.assert_array_equal(c.actions2, actions[PAIRS[labeled, 1]])
    np.testing.assert_array_equal(c.mu1, np.float32([1.0, 0.0, 0.5]))
    np.testing.assert_array_equal(c.mu2, np.float32([0.0, 1.0, 0.5]))
    assert c.mu1.dtype == np.float32
    np.testing.assert_array_equal(c.validation, VALIDATION[labeled])
    assert c.validation.dtype == bool


def test_round_trip_with_every_status(tmp_path):
    path = tmp_path / "p.db"
    write(path, k=3)
    obs, actions = make_data(3)
    c = db.load_comparisons(str(path), statuses=ALL_STATUSES)
    assert c.ids.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(c.obs1, obs[PAIRS[:, 0]])
    np.testing.assert_array_equal(c.obs2, obs[PAIRS[:, 1]])
    np.testing.assert_array_equal(c.actions1, actions[PAIRS[:, 0]])
    np.testing.assert_array_equal(c.actions2, actions[PAIRS[:, 1]])
    np.testing.assert_array_equal(c.mu1, np.float32(MU1))  # NaN where not labeled
    assert np.isnan(c.mu2[[2, 3]]).all()
    np.testing.assert_array_equal(c.validation, VALIDATION)

    pending = db.load_comparisons(str(path), statuses=("pending",))
    assert pending.ids.tolist() == [3]
    incomparable = db.load_comparisons(str(path), statuses=("incomparable",))
    assert incomparable.ids.tolist() == [4]


def test_label_source_filter(tmp_path):
    path = tmp_path / "p.db"
    write(path)
    assert db.load_comparisons(str(path), label_source="synthetic").ids.tolist() == [1, 2, 5]
    assert len(db.load_comparisons(str(path), label_source="human")) == 0
    assert db.load_comparisons(str(path), statuses=ALL_STATUSES, label_source="synthetic").ids.tolist() == [1, 2, 4, 5]
    with pytest.raises(ValueError):
        db.load_comparisons(str(path), label_source="robot")
    # a row relabeled by a human is picked out by the filter
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE comparisons SET label_source = 'human' WHERE id = 2")
    conn.close()
    assert db.load_comparisons(str(path), label_source="human").ids.tolist() == [2]
    assert db.load_comparisons(str(path), label_source="synthetic").ids.tolist() == [1, 5]


def test_stored_rows(tmp_path):
    path = tmp_path / "p.db"
    write(path, k=3)
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT status, label_source, labeler, labeled_at IS NOT NULL, split, batch FROM comparisons ORDER BY id").fetchall()
    assert rows == [
        ("labeled", "synthetic", "oracle:test", 1, "train", 0),
        ("labeled", "synthetic", "oracle:test", 1, "train", 0),
        ("pending", None, None, 0, "validation", 0),
        ("incomparable", "synthetic", "oracle:test", 1, "train", 0),
        ("labeled", "synthetic", "oracle:test", 1, "validation", 0),
    ]
    assert conn.execute("SELECT COUNT(*), MIN(length), MAX(length) FROM segments").fetchone() == (4, 3, 3)
    # o_0..o_3 per segment, the last with a NULL action
    assert conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0] == 16
    assert conn.execute("SELECT COUNT(*) FROM steps WHERE action IS NULL").fetchone()[0] == 4
    assert conn.execute("SELECT MIN(t) FROM steps WHERE action IS NULL").fetchone()[0] == 3
    conn.close()
    assert db.count_by_label(str(path)) == {
        ("train", "segment1"): 1, ("train", "segment2"): 1, ("train", "incomparable"): 1,
        ("validation", "pending"): 1, ("validation", "equal"): 1,
    }


def test_empty_selection_has_the_right_shapes(tmp_path):
    path = tmp_path / "p.db"
    write(path, k=3, status=np.array(["pending"] * 5, dtype=object), mu1=np.full(5, np.nan))
    c = db.load_comparisons(str(path))
    assert len(c) == 0
    assert c.obs1.shape == (0, 4, 2) and c.actions1.shape == (0, 3) and c.mu1.shape == (0,)
    assert c.rewards1.shape == c.absorbing1.shape == (0, 3)
    assert c.obs1.dtype == np.float32 and c.actions1.dtype == np.int64


def test_subset(tmp_path):
    path = tmp_path / "p.db"
    write(path)
    c = db.load_comparisons(str(path))
    v = c.subset(c.validation)
    assert v.ids.tolist() == [5] and v.obs1.shape == (1, 2, 2)


# --- metadata and pragmas -------------------------------------------------------------------

def test_metadata(tmp_path):
    path = tmp_path / "p.db"
    write(path, k=3, tag="first")
    meta = db.read_metadata(str(path))
    assert meta["format"] == db.FORMAT == "moving-dot-rlhf-preferences"
    assert meta["schema_version"] == db.SCHEMA_VERSION
    assert meta["env"] == DOT and meta["env"]["env_id"] == "MovingDot-v0"
    assert meta["segment_length"] == 3
    assert len(meta["generator_runs"]) == 1
    run = meta["generator_runs"][0]
    assert run["tag"] == "first" and run["batch"] == 0 and run["n_segments"] == 4 and run["n_comparisons"] == 5

    entry = write(path, mode="append", k=3, tag="second")
    meta = db.read_metadata(str(path))
    assert [r["tag"] for r in meta["generator_runs"]] == ["first", "second"]
    assert [r["batch"] for r in meta["generator_runs"]] == [0, 1]
    assert entry == meta["generator_runs"][1]


def test_foreign_keys_on_and_journal_mode_wal(tmp_path):
    path = tmp_path / "p.db"
    write(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    # connections made by db.py enforce foreign keys
    conn, _ = db.connect(str(path), write=True)
    try:
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO steps (segment_id, t, obs, action) VALUES (999, 0, ?, NULL)", (np.zeros(2, np.float32).tobytes(),))
    finally:
        conn.close()
    ro, _ = db.connect(str(path))
    try:
        assert ro.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        with pytest.raises(sqlite3.OperationalError):  # read-only
            ro.execute("DELETE FROM comparisons")
    finally:
        ro.close()


# --- appending and overwriting ----------------------------------------------------------------

def test_append_adds_rows_with_fresh_ids(tmp_path):
    path = tmp_path / "p.db"
    write(path, k=3)
    write(path, mode="append", k=3, x0=100)
    c = db.load_comparisons(str(path), statuses=ALL_STATUSES)
    assert c.ids.tolist() == list(range(1, 11))
    obs_a, _ = make_data(3)
    obs_b, _ = make_data(3, x0=100)
    np.testing.assert_array_equal(c.obs1[:5], obs_a[PAIRS[:, 0]])
    np.testing.assert_array_equal(c.obs1[5:], obs_b[PAIRS[:, 0]])  # new segments, not the old ones
    np.testing.assert_array_equal(c.obs2[5:], obs_b[PAIRS[:, 1]])
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT batch, COUNT(*) FROM segments GROUP BY batch").fetchall() == [(0, 4), (1, 4)]
    assert conn.execute("SELECT batch, COUNT(*) FROM comparisons GROUP BY batch").fetchall() == [(0, 5), (1, 5)]
    conn.close()


def test_overwrite_replaces(tmp_path):
    path = tmp_path / "p.db"
    write(path, k=3)
    write(path, mode="overwrite", k=1, x0=100, tag="new")
    meta = db.read_metadata(str(path))
    assert meta["segment_length"] == 1 and [r["tag"] for r in meta["generator_runs"]] == ["new"]
    c = db.load_comparisons(str(path), statuses=ALL_STATUSES)
    obs, _ = make_data(1, x0=100)
    assert c.ids.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(c.obs1, obs[PAIRS[:, 0]])
    assert tmp_leftovers(tmp_path) == []


def test_create_refuses_an_existing_file(tmp_path):
    path = tmp_path / "p.db"
    write(path)
    before = path.read_bytes()
    with pytest.raises(db.PreferencesDBError, match="--overwrite") as e:
        write(path, x0=100)
    assert str(path) in str(e.value)
    assert path.read_bytes() == before
    assert tmp_leftovers(tmp_path) == []


def test_append_with_another_segment_length_fails_and_changes_nothing(tmp_path):
    path = tmp_path / "p.db"
    write(path, k=3)
    before_bytes = path.read_bytes()
    before = db.load_comparisons(str(path), statuses=ALL_STATUSES)
    with pytest.raises(db.PreferencesDBError, match="length 3") as e:
        write(path, mode="append", k=1)
    assert "--segment-length 3" in str(e.value) and str(path) in str(e.value)
    assert path.read_bytes() == before_bytes
    assert_same(db.load_comparisons(str(path), statuses=ALL_STATUSES), before)
    assert len(db.read_metadata(str(path))["generator_runs"]) == 1


def test_append_with_other_env_parameters_fails(tmp_path):
    path = tmp_path / "p.db"
    write(path)
    before = path.read_bytes()
    obs, actions = make_data(1)
    wider = {**DOT, "native": {**DOT["native"], "width": 300}}
    with pytest.raises(db.PreferencesDBError, match="other parameters"):
        db.write_generation(str(path), "append", env_params=wider, run_info=run_info(),
                            obs=obs, actions=actions, source="uniform", pairs=PAIRS, validation=VALIDATION,
                            status=STATUS, mu1=MU1)
    # another env altogether: the message names the env the DB was made for
    cartpole = envs.spec("CartPole-v1").params()
    with pytest.raises(db.PreferencesDBError, match="made for MovingDot-v0") as e:
        db.write_generation(str(path), "append", env_params=cartpole, run_info=run_info(),
                            obs=np.zeros((4, 2, 4)), actions=np.zeros((4, 1)), source="random_policy", pairs=PAIRS,
                            validation=VALIDATION, status=STATUS, mu1=MU1)
    assert "--env-id MovingDot-v0" in str(e.value) and "\n" not in str(e.value)
    assert len(db.read_metadata(str(path))["generator_runs"]) == 1
    assert path.read_bytes() == before


def test_append_to_a_missing_file_fails_without_creating_it(tmp_path):
    path = tmp_path / "missing.db"
    with pytest.raises(db.PreferencesDBError, match="not found"):
        write(path, mode="append")
    assert not path.exists()


def test_unknown_mode_and_status_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        write(tmp_path / "p.db", mode="replace")
    with pytest.raises(ValueError, match="unknown status"):
        write(tmp_path / "p.db", status=np.array(["labeled", "labeled", "maybe", "pending", "labeled"], dtype=object))
    assert os.listdir(tmp_path) == []


# --- atomicity --------------------------------------------------------------------------------

BAD_MU1 = np.array([1.0, 2.0, np.nan, np.nan, 0.5])  # mu1 = 2 violates a CHECK on a labeled row


def fail_metadata(monkeypatch):
    def boom(conn, items):
        raise RuntimeError("simulated crash while writing metadata")
    monkeypatch.setattr(db, "_set_metadata", boom)


@pytest.mark.parametrize("failure", ["check", "metadata"])
def test_failed_create_leaves_no_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "p.db"
    if failure == "check":
        with pytest.raises(sqlite3.IntegrityError):
            write(path, mu1=BAD_MU1)
    else:
        fail_metadata(monkeypatch)
        with pytest.raises(RuntimeError, match="simulated"):
            write(path)
    assert os.listdir(tmp_path) == []  # no DB, no temporary file, no -wal/-shm


@pytest.mark.parametrize("mode", ["overwrite", "append"])
@pytest.mark.parametrize("failure", ["check", "metadata"])
def test_failed_overwrite_or_append_leaves_the_old_db_intact(tmp_path, monkeypatch, mode, failure):
    path = tmp_path / "p.db"
    write(path, k=3)
    before_bytes = path.read_bytes()
    before = db.load_comparisons(str(path), statuses=ALL_STATUSES)
    before_meta = db.read_metadata(str(path))
    files_before = db_files(tmp_path)
    if failure == "check":
        with pytest.raises(sqlite3.IntegrityError):
            write(path, mode=mode, k=3, x0=100, mu1=BAD_MU1)
    else:
        fail_metadata(monkeypatch)
        with pytest.raises(RuntimeError, match="simulated"):
            write(path, mode=mode, k=3, x0=100)
        monkeypatch.undo()
    assert tmp_leftovers(tmp_path) == []
    assert db_files(tmp_path) == files_before
    assert path.read_bytes() == before_bytes
    assert_same(db.load_comparisons(str(path), statuses=ALL_STATUSES), before)
    assert db.read_metadata(str(path)) == before_meta
    # and the DB is still usable: a good append works afterwards
    write(path, mode="append", k=3, x0=100)
    assert len(db.load_comparisons(str(path), statuses=ALL_STATUSES)) == 10


# --- bad inputs -------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope.db"
    for call in (lambda: db.load_comparisons(str(path)), lambda: db.read_metadata(str(path)),
                 lambda: db.count_by_label(str(path))):
        with pytest.raises(db.PreferencesDBError, match="not found") as e:
            call()
        assert str(path) in str(e.value)
        assert "make_preferences_db.py" in str(e.value)
    assert os.listdir(tmp_path) == []


def test_directory(tmp_path):
    path = tmp_path / "a_dir"
    path.mkdir()
    with pytest.raises(db.PreferencesDBError, match="directory") as e:
        db.load_comparisons(str(path))
    assert str(path) in str(e.value)


def test_text_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are not the preferences you are looking for\n" * 20)
    before = path.read_bytes()
    with pytest.raises(db.PreferencesDBError, match="not an SQLite database") as e:
        db.load_comparisons(str(path))
    # a file we did not make is never something to --overwrite
    assert str(path) in str(e.value) and "--overwrite" not in str(e.value)
    assert path.read_bytes() == before


def test_empty_file(tmp_path):
    # sqlite3 reads an empty file as an empty database: no metadata table
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(db.PreferencesDBError, match="not a preferences DB") as e:
        db.load_comparisons(str(path))
    assert str(path) in str(e.value)
    assert path.read_bytes() == b""


def test_sqlite_db_with_an_unrelated_table(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    conn.close()
    with pytest.raises(db.PreferencesDBError, match="not a preferences DB") as e:
        db.load_comparisons(str(path))
    assert str(path) in str(e.value)


def test_sqlite_db_with_a_foreign_json_metadata_table(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE metadata (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO metadata VALUES ('format', '\"something-else\"')")
    conn.close()
    with pytest.raises(db.PreferencesDBError, match="not a preferences DB") as e:
        db.load_comparisons(str(path))
    assert str(path) in str(e.value) and "something-else" in str(e.value)


def test_sqlite_db_with_a_foreign_plain_text_metadata_table(tmp_path):
    # a foreign app's metadata(key, value) table with plain (non-JSON) text values must give
    # the same clear error, not a json.JSONDecodeError
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE metadata (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO metadata VALUES ('format', 'pbf')")
    conn.close()
    with pytest.raises(db.PreferencesDBError) as e:
        db.load_comparisons(str(path))
    assert str(path) in str(e.value)


def test_outdated_schema_version(tmp_path):
    path = tmp_path / "p.db"
    write(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE metadata SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    for call in (lambda: db.load_comparisons(str(path)), lambda: db.read_metadata(str(path))):
        with pytest.raises(db.PreferencesDBError, match="schema version") as e:
            call()
        message = str(e.value)
        assert str(path) in message and "--overwrite" in message and "99" in message
    with pytest.raises(db.PreferencesDBError, match="schema version"):
        write(path, mode="append")


# --- concurrent reads (WAL) -------------------------------------------------------------------

def test_reader_sees_committed_state_while_a_writer_holds_a_transaction(tmp_path):
    path = tmp_path / "p.db"
    write(path, k=3)
    before = db.load_comparisons(str(path), statuses=ALL_STATUSES)
    writer = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE comparisons SET status = 'labeled', mu1 = 1.0, mu2 = 0.0, label_source = 'human'"
                       " WHERE id = 3")
        writer.execute("DELETE FROM comparisons WHERE id = 1")
        # the write transaction is open: readers still load, and see the committed state
        during = db.load_comparisons(str(path), statuses=ALL_STATUSES)
        assert_same(during, before)
        assert db.load_comparisons(str(path)).ids.tolist() == [1, 2, 5]
        assert len(db.load_comparisons(str(path), label_source="human")) == 0
        assert db.read_metadata(str(path))["segment_length"] == 3
        writer.execute("COMMIT")
    finally:
        writer.close()
    after = db.load_comparisons(str(path))
    assert after.ids.tolist() == [2, 3, 5]
    assert db.load_comparisons(str(path), label_source="human").ids.tolist() == [3]


def test_sqlite_db_with_a_foreign_metadata_table_of_other_columns(tmp_path):
    # e.g. an MBTiles file: metadata(name, value). It is readable SQLite, just not ours; the
    # error should say so (not 'not a readable SQLite database ... --overwrite', which would
    # advise destroying someone else's file)
    path = tmp_path / "tiles.mbtiles"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        conn.execute("INSERT INTO metadata VALUES ('format', 'pbf')")
    conn.close()
    with pytest.raises(db.PreferencesDBError) as e:
        db.load_comparisons(str(path))
    assert str(path) in str(e.value)
    assert "not a preferences DB" in str(e.value)


# --- any env: float observations, Box actions, the env reward, absorbing steps, replay info -----

def test_box_actions_rewards_absorbing_and_replay_round_trip(tmp_path):
    path = tmp_path / "p.db"
    pendulum = envs.spec("Pendulum-v1").params()  # observations of 3 numbers, a Box(1) action
    rng = np.random.default_rng(0)
    n, k = 4, 3
    obs = rng.normal(size=(n, k + 1, 3)).astype(np.float32)  # not integers: every bit must come back
    actions = rng.uniform(-2, 2, size=(n, k, 1)).astype(np.float32)
    rewards = rng.normal(size=(n, k))
    absorbing = np.zeros((n, k), dtype=bool)
    absorbing[1, 2] = absorbing[3, 1:] = True
    terminal = np.zeros((n, k), dtype=bool)
    terminal[0, 2] = terminal[1, 1] = terminal[3, 0] = True  # segment 0 ends its episode on its last step
    episode_actions = [rng.uniform(-2, 2, size=(s + k, 1)).astype(np.float32) for s in (0, 2, 5, 1)]
    replay = (np.array([10, 11, 12, 13]), np.array([0, 2, 5, 1]), episode_actions)
    db.write_generation(str(path), "create", env_params=pendulum, run_info=run_info(), obs=obs, actions=actions,
                        rewards=rewards, absorbing=absorbing, terminal=terminal, replay=replay, source="random_policy", pairs=PAIRS,
                        validation=VALIDATION, status=STATUS, mu1=MU1)
    c = db.load_comparisons(str(path), statuses=ALL_STATUSES)
    assert c.obs1.dtype == np.float32 and c.obs1.shape == (5, k + 1, 3)
    assert c.actions1.dtype == np.float32 and c.actions1.shape == (5, k, 1)
    assert c.rewards1.dtype == np.float32 and c.absorbing1.dtype == bool
    for side, column in ((1, 0), (2, 1)):
        np.testing.assert_array_equal(getattr(c, f"obs{side}"), obs[PAIRS[:, column]])
        np.testing.assert_array_equal(getattr(c, f"actions{side}"), actions[PAIRS[:, column]])
        np.testing.assert_array_equal(getattr(c, f"rewards{side}"), rewards[PAIRS[:, column]].astype(np.float32))
        np.testing.assert_array_equal(getattr(c, f"absorbing{side}"), absorbing[PAIRS[:, column]])
        np.testing.assert_array_equal(getattr(c, f"terminal{side}"), terminal[PAIRS[:, column]])
    assert db.read_metadata(str(path))["env"] == pendulum

    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT reset_seed, start_step, replay_actions FROM segments ORDER BY id").fetchall()
    assert [r[:2] for r in rows] == [(10, 0), (11, 2), (12, 5), (13, 1)]
    for (_, _, blob), expected in zip(rows, episode_actions):
        np.testing.assert_array_equal(np.frombuffer(blob, np.float32).reshape(-1, 1), expected)
    # the step after the last action has no action and no reward; it is absorbing where the episode ended by then
    assert conn.execute("SELECT COUNT(*) FROM steps WHERE t = ? AND action IS NULL AND reward IS NULL", (k,)).fetchone()[0] == n
    assert conn.execute("SELECT segment_id, t FROM steps WHERE absorbing = 1 ORDER BY segment_id, t").fetchall() == [
        (1, 3), (2, 2), (2, 3), (4, 1), (4, 2), (4, 3)]
    assert {len(o) for (o,) in conn.execute("SELECT obs FROM steps")} == {3 * 4}  # float32 bytes
    conn.close()


def test_discrete_actions_are_stored_as_int64_bytes(tmp_path):
    path = tmp_path / "p.db"
    write(path, k=3)
    conn = sqlite3.connect(path)
    stored = conn.execute("SELECT action FROM steps WHERE segment_id = 2 ORDER BY t").fetchall()
    conn.close()
    assert [np.frombuffer(a, np.int64).tolist() if a is not None else None for (a,) in stored] == [[1], [2], [2], None]
    assert db.read_metadata(str(path))["segment_length"] == 3 and len(stored) == 4


# --- schema version 1 (before other envs): refused with the fix, migrated losslessly ----------

V1_COMPARISONS = [
    {"segment1_id": 1, "segment2_id": 2, "split": "train", "status": "labeled", "mu1": 1.0, "label_source": "synthetic",
     "labeler": "oracle:reward", "labeled_at": "2024-01-01T00:00:01.000+00:00"},
    {"segment1_id": 3, "segment2_id": 4, "split": "train", "status": "labeled", "mu1": 0.5, "label_source": "human",
     "labeler": "ada", "labeled_at": "2024-01-02T00:00:00.000+00:00"},
    {"segment1_id": 2, "segment2_id": 5, "split": "validation", "status": "pending", "lease_token": "tok", "lease_expires": 1.7e9},
    {"segment1_id": 5, "segment2_id": 6, "split": "validation", "status": "incomparable", "label_source": "human", "labeler": "bob",
     "labeled_at": "2024-01-03T00:00:00.000+00:00"},
    {"segment1_id": 6, "segment2_id": 1, "split": "train", "status": "labeled", "mu1": 0.0, "label_source": "synthetic",
     "labeler": "oracle:reward", "labeled_at": "2024-01-01T00:00:01.000+00:00"},
]
V1_COLUMNS = "id, segment1_id, segment2_id, split, status, mu1, mu2, label_source, labeler, labeled_at, created_at, batch, lease_token, lease_expires"


def v1_db(path, k=3):
    from v1_db import random_segments, write_v1
    positions, actions = random_segments(6, k, seed=0)
    write_v1(str(path), positions, actions, V1_COMPARISONS)
    return positions, actions


def comparison_rows(path):
    conn = sqlite3.connect(path)
    rows = conn.execute(f"SELECT {V1_COLUMNS} FROM comparisons ORDER BY id").fetchall()
    conn.close()
    return rows


def test_a_version_1_db_is_refused_with_the_migrate_command(tmp_path):
    path = tmp_path / "old.db"
    v1_db(path)
    before = path.read_bytes()
    for call in (lambda: db.load_comparisons(str(path)), lambda: db.read_metadata(str(path)), lambda: write(path, mode="append", k=3)):
        with pytest.raises(db.PreferencesDBError, match="schema version 1") as e:
            call()
        assert f"python make_preferences_db.py --migrate --db {path}" in str(e.value) and "\n" not in str(e.value)
    assert path.read_bytes() == before


def test_migrate_keeps_every_segment_comparison_and_label(tmp_path):
    import make_preferences_db as gen
    path = tmp_path / "old.db"
    positions, actions = v1_db(path)
    rows_before = comparison_rows(path)
    old_bytes = path.read_bytes()
    gen.main(gen.parse_args(["--migrate", "--db", str(path)]))
    assert (tmp_path / "old.db.v1").read_bytes() == old_bytes  # the old file, untouched
    assert comparison_rows(path) == rows_before  # every comparison, label, labeler, lease
    meta = db.read_metadata(str(path))
    assert meta["schema_version"] == db.SCHEMA_VERSION and meta["env"] == DOT and meta["segment_length"] == 3
    assert meta["migrated_from"] == {"schema_version": 1, "env": dict(md.ENV_PARAMS)}
    assert [r["seed"] for r in meta["generator_runs"]] == [1]
    c = db.load_comparisons(str(path), statuses=ALL_STATUSES)
    first, second = (np.array([r[i] for r in rows_before]) - 1 for i in (1, 2))
    np.testing.assert_array_equal(c.obs1, positions[first])
    np.testing.assert_array_equal(c.obs2, positions[second])
    np.testing.assert_array_equal(c.actions1, actions[first])
    np.testing.assert_array_equal(c.actions2, actions[second])
    np.testing.assert_array_equal(c.mu1, np.float32([1.0, 0.5, np.nan, np.nan, 0.0]))
    np.testing.assert_array_equal(c.mu2, np.float32([0.0, 0.5, np.nan, np.nan, 1.0]))
    np.testing.assert_array_equal(c.validation, [False, False, True, True, False])
    # the dot's reward is a function of (position, action): the migration fills it in
    np.testing.assert_array_equal(c.rewards1, md.TRUE_REWARD[md.position_to_state(positions[first][:, :-1]), actions[first]])
    assert not c.absorbing1.any() and not c.absorbing2.any()
    assert db.count_by_label(str(path))[("train", "equal")] == 1
    assert not list(tmp_path.glob("*.migrating*")) and tmp_leftovers(tmp_path) == []


def test_migrate_refuses_a_second_run_and_a_current_db(tmp_path):
    path = tmp_path / "old.db"
    v1_db(path)
    db.migrate_v1(str(path))
    migrated = path.read_bytes()
    with pytest.raises(db.PreferencesDBError, match="already exists"):
        db.migrate_v1(str(path))  # the backup would be lost
    (tmp_path / "old.db.v1").unlink()
    with pytest.raises(db.PreferencesDBError, match="nothing to migrate"):
        db.migrate_v1(str(path))
    assert path.read_bytes() == migrated and not (tmp_path / "old.db.v1").exists()
    with pytest.raises(db.PreferencesDBError, match="not found"):
        db.migrate_v1(str(tmp_path / "missing.db"))
