"""The preferences database: every SQL statement of the project lives here.

An SQLite file with four tables (docs/file_formats.md documents them):
  metadata(key, value)            format, schema version, the env (id, spaces, time limit),
                                  segment length, and one entry per generator run (its arguments and seed)
  segments(id, length, source, batch, reset_seed, start_step, replay_actions)
                                  where a segment came from: the episode's reset seed, the step
                                  it starts at and the episode's actions up to its end, so that
                                  it can be replayed and rendered for a person (NULL for the
                                  moving dot's single steps, which are drawn, not rolled out)
  steps(segment_id, t, obs, action, reward, absorbing)
                                  observation o_t (float32 bytes), action a_t (int64 bytes for a
                                  Discrete action, float32 bytes for a Box) and the env's reward
                                  for t < length; the observation after the last action at
                                  t = length (action and reward NULL). absorbing = 1 for a step
                                  after the episode terminated: the segment stays in the terminal
                                  observation with reward 0 (C17 removed variable-length episodes;
                                  a fixed length with an absorbing end keeps every segment
                                  comparable, and a segment that ends an episode early can be told
                                  from one that does not). At t = length it says whether the
                                  segment's last step ended the episode (or came after its end).
  comparisons(id, segment1_id, segment2_id, split, status, mu1, mu2, label_source, labeler,
              labeled_at, created_at, batch, lease_token, lease_expires)

status is 'labeled' (mu1 + mu2 = 1: (1, 0), (0, 1) or (0.5, 0.5) for equal), 'incomparable'
(kept, never trained on, as in C17) or 'pending' (a query waiting for a label).

Writes are transactional, foreign keys are on and the journal is WAL, so that a labeling
process can write while a trainer reads. A new file is built under a temporary name and
renamed into place only once complete, so a crash never leaves half a database behind.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

FORMAT = "moving-dot-rlhf-preferences"
SCHEMA_VERSION = 2  # 2: any env (observations and actions as bytes, the env reward, replay info)
SPLITS = ("train", "validation")
STATUSES = ("pending", "labeled", "incomparable")
LABEL_SOURCES = ("synthetic", "human")

_SCHEMA = """
CREATE TABLE metadata (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                     -- JSON
);
CREATE TABLE segments (
    id             INTEGER PRIMARY KEY,
    length         INTEGER NOT NULL CHECK (length >= 1),
    source         TEXT NOT NULL,           -- uniform | random_policy | policy
    batch          INTEGER NOT NULL,        -- index of the generator run that made it
    reset_seed     INTEGER,                 -- the episode's env.reset(seed=...) ...
    start_step     INTEGER,                 -- ... the step of the episode where the segment starts ...
    replay_actions BLOB                     -- ... and the episode's actions up to the segment's end
);
CREATE TABLE steps (
    segment_id INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    t          INTEGER NOT NULL CHECK (t >= 0),
    obs        BLOB NOT NULL,               -- float32 bytes
    action     BLOB,                        -- NULL at t = length
    reward     REAL,                        -- the env's reward of step t, NULL at t = length
    absorbing  INTEGER NOT NULL DEFAULT 0 CHECK (absorbing IN (0, 1)),
    PRIMARY KEY (segment_id, t)
) WITHOUT ROWID;
CREATE TABLE comparisons (
    id            INTEGER PRIMARY KEY,
    segment1_id   INTEGER NOT NULL REFERENCES segments(id),
    segment2_id   INTEGER NOT NULL REFERENCES segments(id),
    split         TEXT NOT NULL CHECK (split IN ('train', 'validation')),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'labeled', 'incomparable')),
    mu1           REAL CHECK (mu1 BETWEEN 0 AND 1),
    mu2           REAL CHECK (mu2 BETWEEN 0 AND 1),
    label_source  TEXT CHECK (label_source IN ('synthetic', 'human')),
    labeler       TEXT,                     -- who answered: a labeling session, or the oracle
    labeled_at    TEXT,                     -- ISO 8601, UTC
    created_at    TEXT NOT NULL,
    batch         INTEGER NOT NULL,
    lease_token   TEXT,                     -- a pending pair handed out to a labeler ...
    lease_expires REAL,                     -- ... until this Unix time
    CHECK (segment1_id != segment2_id),
    CHECK ((status = 'labeled') = (mu1 IS NOT NULL AND mu2 IS NOT NULL)),
    CHECK (mu1 IS NULL OR abs(mu1 + mu2 - 1) < 1e-6),
    CHECK ((status = 'pending') = (label_source IS NULL))
);
CREATE INDEX comparisons_by_status ON comparisons(status, split);
"""


class PreferencesDBError(Exception):
    """A preferences DB that cannot be used; the message names the file and the fix."""


@dataclass
class Comparisons:
    """Comparisons with their two segments, as arrays ready for training.

    obs*: (n, k + 1, d) float32 observations o_0..o_k; actions*: (n, k) int64 for a Discrete
    action, (n, k, d) float32 for a Box; rewards*: (n, k) float32, the env's; absorbing*: (n, k)
    bool, the steps after the episode terminated; terminal*: (n, k) bool, the step that terminated
    it; mu*: (n,) float32 (NaN where not labeled); validation: (n,) bool, True for the held-out split.
    """

    ids: np.ndarray
    obs1: np.ndarray
    actions1: np.ndarray
    rewards1: np.ndarray
    absorbing1: np.ndarray
    terminal1: np.ndarray
    obs2: np.ndarray
    actions2: np.ndarray
    rewards2: np.ndarray
    absorbing2: np.ndarray
    terminal2: np.ndarray
    mu1: np.ndarray
    mu2: np.ndarray
    validation: np.ndarray

    def __len__(self):
        return len(self.ids)

    def subset(self, mask) -> Comparisons:
        return Comparisons(**{name: getattr(self, name)[mask] for name in self.__dataclass_fields__})


def action_dtype(env_params: dict):
    """How a DB stores the env's actions: int64 indices for a Discrete space, float32 vectors for a Box."""
    return np.int64 if env_params["action_space"]["type"] == "Discrete" else np.float32


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _connect(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _check(conn: sqlite3.Connection, path: str) -> dict:
    """Metadata of a preferences DB, or a clear error for a foreign or outdated file."""
    regenerate = f"regenerate it with `python make_preferences_db.py --db {path} --overwrite`"
    foreign = f"{path} is an SQLite database but not a preferences DB"
    try:
        rows = conn.execute("SELECT key, value FROM metadata").fetchall()
        meta = {key: json.loads(value) for key, value in rows}
    except sqlite3.OperationalError as e:  # no such table / column: somebody else's database
        raise PreferencesDBError(f"{foreign} ({e}); point --db at a file made by make_preferences_db.py") from None
    except (sqlite3.DatabaseError, TypeError, ValueError) as e:
        if isinstance(e, sqlite3.DatabaseError) and "not a database" in str(e):
            raise PreferencesDBError(f"{path} is not an SQLite database (corrupt, or another kind of file); point --db at a file made by make_preferences_db.py") from None
        raise PreferencesDBError(f"{foreign}, or a damaged one ({e}); point --db at a file made by make_preferences_db.py") from None
    if meta.get("format") != FORMAT:
        raise PreferencesDBError(f"{path} is not a preferences DB (format {meta.get('format')!r}); point --db at a file made by make_preferences_db.py")
    if meta.get("schema_version") == 1:
        raise PreferencesDBError(f"{path} has schema version 1 (the moving dot only); migrate it, keeping every label, with"
                                 f" `python make_preferences_db.py --migrate --db {path}` (the old file is kept as {path}.v1)")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise PreferencesDBError(f"{path} has schema version {meta.get('schema_version')}, this code reads version {SCHEMA_VERSION}; {regenerate}")
    return meta


def connect(path: str, write: bool = False) -> tuple[sqlite3.Connection, dict]:
    """Open an existing preferences DB (never creates one) and return it with its metadata."""
    if not os.path.exists(path):
        raise PreferencesDBError(f"preferences DB {path} not found; create it with `python make_preferences_db.py --db {path}`")
    if os.path.isdir(path):
        raise PreferencesDBError(f"{path} is a directory, not a preferences DB file")
    conn = _connect(f"file:{path}?mode={'rw' if write else 'ro'}")
    try:
        return conn, _check(conn, path)
    except BaseException:
        conn.close()
        raise


def read_metadata(path: str) -> dict:
    conn, meta = connect(path)
    conn.close()
    return meta


def refuse_existing(path: str, overwrite: bool) -> None:
    """Refuse an existing DB unless ``overwrite`` (or an append): the generator checks before any work, a new file before it is built."""
    if os.path.exists(path) and not overwrite:
        raise PreferencesDBError(f"{path} already exists; pass --overwrite to replace it or --append to add to it")


def _build_new(path: str, overwrite: bool, fill) -> None:
    """Create a DB under a temporary name, let ``fill(conn)`` write it, then rename it into place."""
    refuse_existing(path, overwrite)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    conn = _connect(f"file:{tmp}?mode=rwc")
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        # statement by statement: executescript would commit mid-way
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        fill(conn)
        conn.execute("COMMIT")
        conn.close()
        # a stale WAL of the replaced file must not be replayed onto the new one
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        os.replace(tmp, path)
    except BaseException:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(tmp + suffix):
                os.remove(tmp + suffix)
        raise


def write_generation(path: str, mode: str, *, env_params: dict, run_info: dict, obs, actions, source: str,
                     pairs, validation, status, mu1, rewards=None, absorbing=None, terminal=None, replay=None,
                     labeler: str | None = None) -> dict:
    """Store one generator run: segments (obs (S, k+1, d), actions (S, k) or (S, k, d), the env's
    rewards (S, k), absorbing and terminal (S, k) bool (the steps after the episode terminated, the
    step that terminated it: the steps table's absorbing flag of o_0..o_k holds both); replay: None, or (reset_seed (S,), start_step (S,),
    replay_actions: S arrays) to replay each segment from its episode's reset) and comparisons
    (pairs (n, 2) indices into those segments, validation (n,) bool, status (n,) strings, mu1 (n,)
    floats, NaN where not labeled). All or nothing.

    mode: 'create' (refuses an existing file), 'overwrite' (replaces it atomically) or
    'append' (adds to an existing DB with the same env and segment length).
    Returns the run's entry in the metadata.
    """
    obs, actions = np.asarray(obs, dtype=np.float32), np.asarray(actions, dtype=action_dtype(env_params))
    n_segments, k = actions.shape[:2]
    if obs.ndim == 2:  # one number per observation
        obs = obs[..., None]
    rewards = np.zeros((n_segments, k)) if rewards is None else np.asarray(rewards, dtype=np.float64)
    absorbing = np.zeros((n_segments, k), dtype=bool) if absorbing is None else np.asarray(absorbing, dtype=bool)
    terminal = np.zeros((n_segments, k), dtype=bool) if terminal is None else np.asarray(terminal, dtype=bool)
    ended = np.concatenate([absorbing, absorbing[:, -1:] | terminal[:, -1:]], 1)  # o_t is past the episode's end, t = 0..k
    pairs, status, mu1 = np.asarray(pairs, dtype=np.int64), np.asarray(status), np.asarray(mu1, dtype=np.float64)
    bad_status = set(np.unique(status).tolist()) - set(STATUSES)
    if bad_status:
        raise ValueError(f"unknown status {sorted(bad_status)}; expected one of {STATUSES}")

    def fill(conn: sqlite3.Connection, meta: dict | None):
        runs = meta["generator_runs"] if meta else []
        batch = len(runs)
        seg0 = conn.execute("SELECT IFNULL(MAX(id), 0) + 1 FROM segments").fetchone()[0]
        cmp0 = conn.execute("SELECT IFNULL(MAX(id), 0) + 1 FROM comparisons").fetchone()[0]
        seg_ids = seg0 + np.arange(n_segments)
        if replay is None:
            segment_rows = ((int(i), k, source, batch, None, None, None) for i in seg_ids)
        else:
            seeds, starts, episode_actions = replay
            segment_rows = ((int(i), k, source, batch, int(seed), int(start), np.asarray(a, actions.dtype).tobytes())
                            for i, seed, start, a in zip(seg_ids, seeds, starts, episode_actions))
        conn.executemany("INSERT INTO segments (id, length, source, batch, reset_seed, start_step, replay_actions)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", segment_rows)
        conn.executemany("INSERT INTO steps (segment_id, t, obs, action, reward, absorbing) VALUES (?, ?, ?, ?, ?, ?)",
                         _step_rows(seg_ids, obs, actions, rewards, ended))
        now = _now()
        labeled = status != "pending"
        mu1_sql = np.where(status == "labeled", mu1, np.nan)
        comparison_rows = zip(
            (cmp0 + np.arange(len(pairs))).tolist(), seg_ids[pairs[:, 0]].tolist(), seg_ids[pairs[:, 1]].tolist(),
            np.where(validation, "validation", "train").tolist(), status.tolist(),
            [None if np.isnan(m) else m for m in mu1_sql.tolist()],
            np.where(labeled, "synthetic", None).tolist(), np.where(labeled, labeler, None).tolist(),
            np.where(labeled, now, None).tolist(),
        )
        conn.executemany(
            "INSERT INTO comparisons (id, segment1_id, segment2_id, split, status, mu1, mu2, label_source, labeler, labeled_at, created_at, batch)"
            " VALUES (?, ?, ?, ?, ?, ?, 1.0 - ?6, ?7, ?8, ?9, ?10, ?11)",
            ((*row, now, batch) for row in comparison_rows),
        )
        entry = {**run_info, "batch": batch, "created_at": now, "n_segments": int(n_segments), "n_comparisons": int(len(pairs))}
        _set_metadata(conn, {"format": FORMAT, "schema_version": SCHEMA_VERSION, "env": env_params,
                             "segment_length": int(k), "generator_runs": runs + [entry]})
        return entry

    if mode == "append":
        conn, meta = connect(path, write=True)
        try:
            if meta["env"] != env_params:
                stored = meta["env"].get("env_id", "?")
                raise PreferencesDBError(f"{path} was made for {stored}{' with other parameters' if stored == env_params.get('env_id') else ''}"
                                         f" ({meta['env']}); pass --env-id {stored} or use a new --db")
            if meta["segment_length"] != k:
                raise PreferencesDBError(f"{path} holds segments of length {meta['segment_length']}, not {k}; pass --segment-length {meta['segment_length']} or use a new --db")
            conn.execute("BEGIN IMMEDIATE")
            try:
                entry = fill(conn, meta)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return entry
        finally:
            conn.close()
    if mode not in ("create", "overwrite"):
        raise ValueError(f"mode must be create, overwrite or append, not {mode!r}")
    result = {}
    _build_new(path, mode == "overwrite", lambda conn: result.update(fill(conn, None)))
    return result


def _as_bytes(array, rows):
    """Each of ``rows`` rows of ``array`` as one bytes object (a numpy void view: no per-row calls)."""
    flat = np.ascontiguousarray(array).reshape(rows, -1)
    return flat.view(f"V{flat.shape[1] * flat.itemsize}")[:, 0].tolist()


def _step_rows(seg_ids, obs, actions, rewards, ended):
    """The steps table's rows of segments (obs (S, k+1, d), actions (S, k[, d]), rewards (S, k)
    and ended (S, k + 1): o_t is past the episode's end); the step t = k has no action and no reward."""
    n_segments, k = actions.shape[:2]
    pad = np.zeros((n_segments, 1, *actions.shape[2:]), dtype=actions.dtype)
    action_rows = _as_bytes(np.concatenate([actions.reshape(n_segments, k, -1), pad.reshape(n_segments, 1, -1)], 1), n_segments * (k + 1))
    last = np.tile(np.arange(k + 1) == k, n_segments).tolist()
    reward_rows = np.concatenate([rewards, np.zeros((n_segments, 1))], 1).ravel().tolist()
    absorbing_rows = ended.ravel().astype(int).tolist()
    return ((seg, t, o, None if end else a, None if end else r, b) for seg, t, o, a, r, b, end in zip(
        np.repeat(seg_ids, k + 1).tolist(), np.tile(np.arange(k + 1), n_segments).tolist(), _as_bytes(obs, n_segments * (k + 1)),
        action_rows, reward_rows, absorbing_rows, last))


def _set_metadata(conn: sqlite3.Connection, items: dict) -> None:
    conn.executemany("INSERT OR REPLACE INTO metadata (key, value) VALUES (?, ?)",
                     [(key, json.dumps(value)) for key, value in items.items()])


def load_comparisons(path: str, statuses=("labeled",), label_source: str = "all") -> Comparisons:
    """Comparisons with the given statuses (and label source: synthetic, human or all),
    ordered by id, with their segments gathered into arrays. One query per table, no
    per-row Python work."""
    if label_source not in ("all", *LABEL_SOURCES):
        raise ValueError(f"label_source must be all, synthetic or human, not {label_source!r}")
    conn, meta = connect(path)
    try:
        conn.execute("BEGIN")  # one snapshot for both queries, even while a labeler writes
        where = f"status IN ({', '.join('?' * len(statuses))})"
        params = list(statuses)
        if label_source != "all":
            where += " AND label_source = ?"
            params.append(label_source)
        rows = conn.execute(
            f"SELECT id, segment1_id, segment2_id, split = 'validation', IFNULL(mu1, 'NaN'), IFNULL(mu2, 'NaN')"
            f" FROM comparisons WHERE {where} ORDER BY id", params).fetchall()
        segment_ids, obs, actions, rewards, absorbing, terminal = segments_arrays(conn, meta)
        conn.execute("COMMIT")
    finally:
        conn.close()
    table = np.array(rows, dtype=np.float64).reshape(-1, 6)
    first, second = (np.searchsorted(segment_ids, table[:, c].astype(np.int64)) for c in (1, 2))
    return Comparisons(
        ids=table[:, 0].astype(np.int64),
        obs1=obs[first], actions1=actions[first], rewards1=rewards[first], absorbing1=absorbing[first], terminal1=terminal[first],
        obs2=obs[second], actions2=actions[second], rewards2=rewards[second], absorbing2=absorbing[second], terminal2=terminal[second],
        mu1=table[:, 4].astype(np.float32), mu2=table[:, 5].astype(np.float32),
        validation=table[:, 3].astype(bool),
    )


def segments_arrays(conn: sqlite3.Connection, meta: dict, where: str = "", params=()):
    """Every segment's (ids (S,), obs (S, k+1, d), actions (S, k[, d]), rewards (S, k), absorbing (S, k),
    terminal (S, k)), ordered by id: the steps' bytes joined once and read as one array each. A DB
    written before 2026-12-07 flagged no final observation as ended: there a termination on a
    segment's last step reads as none."""
    k, d = meta["segment_length"], meta["env"]["observation_shape"][0]
    dtype = action_dtype(meta["env"])
    steps = conn.execute(f"SELECT segment_id, obs, IFNULL(action, X''), IFNULL(reward, 0), absorbing FROM steps {where}"
                         " ORDER BY segment_id, t", params).fetchall()
    n = len(steps) // (k + 1)
    if not steps:
        shape = (0, k) if dtype == np.int64 else (0, k, len(meta["env"]["action_space"]["low"]))
        return (np.zeros(0, np.int64), np.zeros((0, k + 1, d), np.float32), np.zeros(shape, dtype), np.zeros((0, k), np.float32),
                np.zeros((0, k), bool), np.zeros((0, k), bool))
    ids, obs, action, reward, absorbing = zip(*steps)
    obs = np.frombuffer(b"".join(obs), dtype=np.float32).reshape(n, k + 1, d).copy()  # writable, as torch wants
    actions = np.frombuffer(b"".join(action), dtype=dtype).reshape(n, k, -1).copy()
    if dtype == np.int64:
        actions = actions[..., 0]
    rewards = np.array(reward, dtype=np.float32).reshape(n, k + 1)[:, :k]
    ended = np.array(absorbing, dtype=bool).reshape(n, k + 1)
    absorbing, terminal = ended[:, :k], ended[:, 1:] & ~ended[:, :k]
    return np.array(ids[::k + 1], dtype=np.int64), obs, actions, rewards, absorbing, terminal


def migrate_v1(path: str) -> str:
    """Rewrite a schema-version-1 DB (the moving dot, positions as x, y columns) as version 2,
    keeping every segment, comparison, label and lease; the old file is kept as ``path.v1``.
    Returns the backup's path."""
    from rlhf import moving_dot as md  # version 1 only ever held the moving dot

    backup = path + ".v1"
    if not os.path.exists(path):
        raise PreferencesDBError(f"preferences DB {path} not found")
    if os.path.exists(backup):
        raise PreferencesDBError(f"{backup} already exists (an earlier migration's backup); move it away first")
    old = _connect(f"file:{path}?mode=ro")
    try:
        meta = {key: json.loads(value) for key, value in old.execute("SELECT key, value FROM metadata")}
        if meta.get("format") != FORMAT or meta.get("schema_version") != 1:
            raise PreferencesDBError(f"{path} is not a version-1 preferences DB (schema version {meta.get('schema_version')}); nothing to migrate")
        segments = old.execute("SELECT id, length, source, batch FROM segments ORDER BY id").fetchall()
        steps = old.execute("SELECT segment_id, t, x, y, action FROM steps ORDER BY segment_id, t").fetchall()
        columns = [row[1] for row in old.execute("PRAGMA table_info(comparisons)")]
        comparisons = old.execute(f"SELECT {', '.join(columns)} FROM comparisons ORDER BY id").fetchall()
    except sqlite3.DatabaseError as e:
        raise PreferencesDBError(f"{path} cannot be read as a version-1 preferences DB ({e})") from None
    finally:
        old.close()
    from rlhf import envs  # the dot's spec, as version 2 stores it

    env_params = envs.spec(envs.DEFAULT_ENV_ID).params()

    def fill(conn):
        conn.executemany("INSERT INTO segments (id, length, source, batch) VALUES (?, ?, ?, ?)", segments)
        table = np.array([(sid, x, y, -1 if a is None else a) for sid, _, x, y, a in steps], dtype=np.int64).reshape(len(segments), -1, 4)
        positions, actions = table[..., 1:3], table[:, :-1, 3]
        rewards = md.TRUE_REWARD[md.position_to_state(positions[:, :-1]), actions]  # the dot's reward is a function of (o, a)
        conn.executemany("INSERT INTO steps (segment_id, t, obs, action, reward, absorbing) VALUES (?, ?, ?, ?, ?, ?)",
                         _step_rows(table[:, 0, 0], positions.astype(np.float32), actions, rewards,
                                    np.zeros(positions.shape[:2], bool)))
        conn.executemany(f"INSERT INTO comparisons ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", comparisons)
        _set_metadata(conn, {**meta, "schema_version": SCHEMA_VERSION, "env": env_params, "migrated_from": {"schema_version": 1, "env": meta.get("env")}})

    tmp = f"{path}.migrating"
    _build_new(tmp, True, fill)
    os.replace(path, backup)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, backup + suffix)
    os.replace(tmp, path)
    return backup


def count_by_label(path: str) -> dict:
    """Counts per label class and split: keys like ('train', 'segment1'), ('validation', 'pending')."""
    conn, _ = connect(path)
    try:
        rows = conn.execute(
            "SELECT split, CASE WHEN status != 'labeled' THEN status WHEN mu1 > mu2 THEN 'segment1'"
            " WHEN mu2 > mu1 THEN 'segment2' ELSE 'equal' END AS label, COUNT(*)"
            " FROM comparisons GROUP BY split, label").fetchall()
    finally:
        conn.close()
    return {(split, label): n for split, label, n in rows}


# --- human labeling (label_preferences.py): hand out pending pairs, store answers, undo ---------
#
# A pending comparison is handed to one labeler at a time: a lease (lease_token, lease_expires)
# taken in a BEGIN IMMEDIATE transaction, so that two pages, or two labeling servers on the same
# file, never get the same pair at once; a lease that is not answered in time lapses and the pair
# goes back to the pool. The first answer to a pending pair wins. An answered pair keeps the
# token of the lease that answered it, so that a repeated submission is recognised as harmless
# and only the page that answered can undo it.


class UnknownComparison(LookupError):
    """No comparison with this id in the DB."""


class LabelConflict(Exception):
    """An answer or undo that contradicts what the DB already holds; the DB is left unchanged."""


_FREE = "status = 'pending' AND (lease_expires IS NULL OR lease_expires < :now)"


def _write_transaction(path: str, work):
    """Run ``work(conn)`` in one BEGIN IMMEDIATE transaction (the write lock taken up front, so
    that what it reads cannot change before it writes) and return its result."""
    conn, _ = connect(path, write=True)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result
    finally:
        conn.close()


def _segment(conn: sqlite3.Connection, segment_id: int) -> dict:
    meta = {key: json.loads(value) for key, value in conn.execute("SELECT key, value FROM metadata WHERE key IN ('env', 'segment_length')")}
    _, obs, actions, _, absorbing, _ = segments_arrays(conn, meta, "WHERE segment_id = ?", (segment_id,))
    replayable = conn.execute("SELECT reset_seed IS NOT NULL FROM segments WHERE id = ?", (segment_id,)).fetchone()[0]
    return {"id": segment_id, "positions": obs[0].tolist(), "actions": actions[0].tolist(),
            "absorbing": absorbing[0].tolist(), "replayable": bool(replayable)}


def segment_replay(path: str, segment_id: int):
    """What replays a segment from its episode's start: (reset_seed, start_step, the episode's
    actions up to the segment's end), or None for a segment that was drawn, not rolled out."""
    conn, meta = connect(path)
    try:
        row = conn.execute("SELECT reset_seed, start_step, replay_actions, length FROM segments WHERE id = ?", (segment_id,)).fetchone()
    finally:
        conn.close()
    if row is None:
        raise UnknownComparison(f"no segment with id {segment_id} in this DB")
    seed, start, blob, length = row
    if seed is None:
        return None
    dtype = action_dtype(meta["env"])
    actions = np.frombuffer(blob, dtype=dtype)
    if dtype != np.int64:
        actions = actions.reshape(-1, len(meta["env"]["action_space"]["low"]))
    return int(seed), int(start), actions


def _comparison_for_labeler(conn: sqlite3.Connection, comparison_id: int) -> dict:
    row = conn.execute("SELECT id, segment1_id, segment2_id, split, batch, lease_token, lease_expires"
                       " FROM comparisons WHERE id = ?", (comparison_id,)).fetchone()
    cid, s1, s2, split, batch, token, expires = row
    return {"id": cid, "split": split, "batch": batch, "token": token, "lease_expires": expires,
            "segment1": _segment(conn, s1), "segment2": _segment(conn, s2)}


def lease_next_comparison(path: str, token: str, lease_seconds: float, now: float) -> dict | None:
    """Hand the next free pending comparison to the labeler holding ``token`` until
    ``now + lease_seconds`` (Unix time); None when no pending pair is free.

    Newest batch first (the queries an RLHF loop is waiting for). Within a batch the splits
    are interleaved in proportion to their size, so that a labeler who stops after a few
    answers leaves held-out labels as well as training ones (the generator puts the held-out
    rows last). Returns the pair with both segments' positions and actions."""

    def work(conn):
        found = conn.execute(f"SELECT batch FROM comparisons WHERE {_FREE} ORDER BY batch DESC LIMIT 1", {"now": now}).fetchone()
        if found is None:
            return None
        batch = found[0]
        splits = conn.execute(
            "SELECT split, COUNT(*), SUM(status != 'pending' OR IFNULL(lease_expires >= :now, 0)) FROM comparisons"
            f" WHERE batch = :batch GROUP BY split HAVING SUM({_FREE}) > 0", {"now": now, "batch": batch}).fetchall()
        # the split that would be least far along after taking one more pair
        split = min(splits, key=lambda s: ((s[2] + 1) / s[1], s[0] != "train"))[0]
        comparison_id = conn.execute(f"SELECT id FROM comparisons WHERE batch = :batch AND split = :split AND {_FREE}"
                                     " ORDER BY id LIMIT 1", {"now": now, "batch": batch, "split": split}).fetchone()[0]
        conn.execute(f"UPDATE comparisons SET lease_token = :token, lease_expires = :expires WHERE id = :id AND {_FREE}",
                     {"token": token, "expires": now + lease_seconds, "id": comparison_id, "now": now})
        return _comparison_for_labeler(conn, comparison_id)

    return _write_transaction(path, work)


def _labeled_row(conn: sqlite3.Connection, comparison_id: int):
    row = conn.execute("SELECT status, mu1, label_source, labeler, labeled_at, lease_token FROM comparisons WHERE id = ?",
                       (comparison_id,)).fetchone()
    if row is None:
        raise UnknownComparison(f"no comparison with id {comparison_id} in this DB")
    return row


def _describe(status: str, mu1) -> str:
    if status == "incomparable":
        return "incomparable"
    return {1.0: "segment 1 better", 0.0: "segment 2 better", 0.5: "equal"}.get(mu1, f"mu1 = {mu1}")


def record_human_label(path: str, comparison_id: int, token: str, status: str, mu1: float | None, labeler: str) -> bool:
    """Store a human answer to a pending comparison: status 'labeled' with mu1 in {1, 0, 0.5}
    (mu2 = 1 - mu1), or 'incomparable' with mu1 None. One transaction; the split is kept.

    Returns True when stored, False when the same answer from the same lease was already stored
    (a repeated submission changes nothing). Raises UnknownComparison for an unknown id and
    LabelConflict when the pair already holds another answer: the DB is then unchanged."""
    if status not in ("labeled", "incomparable") or (status == "labeled") != (mu1 is not None):
        raise ValueError(f"a human answer is 'labeled' with mu1, or 'incomparable' without; got {status!r}, {mu1!r}")

    def work(conn):
        current, current_mu1, source, who, when, answered_by = _labeled_row(conn, comparison_id)
        if current == "pending":
            conn.execute("UPDATE comparisons SET status = ?, mu1 = ?, mu2 = 1.0 - ?2, label_source = 'human', labeler = ?,"
                         " labeled_at = ?, lease_token = ?, lease_expires = NULL WHERE id = ?",
                         (status, mu1, labeler, _now(), token, comparison_id))
            return True
        if source == "human" and answered_by == token:
            if (current, current_mu1) == (status, mu1):
                return False
            raise LabelConflict(f"comparison {comparison_id} is already answered from this page ({_describe(current, current_mu1)});"
                                " undo it first to change the answer")
        raise LabelConflict(f"comparison {comparison_id} was already labeled by {who or source} at {when}"
                            f" ({_describe(current, current_mu1)}); your answer was not stored")

    return _write_transaction(path, work)


def undo_human_label(path: str, comparison_id: int, token: str, lease_seconds: float, now: float) -> dict:
    """Take back a human answer given under ``token``: the comparison is pending again and
    leased to the same token, so the page can show it again. Undoing a pair that is already
    pending under that token only renews the lease. Raises UnknownComparison or LabelConflict
    (someone else's answer, a synthetic label, a pair never answered); the DB is then unchanged."""

    def work(conn):
        current, _, source, who, _, answered_by = _labeled_row(conn, comparison_id)
        if answered_by != token or (current != "pending" and source != "human"):
            what = "is not answered yet" if current == "pending" else f"was labeled by {who or source}, not from this page"
            raise LabelConflict(f"comparison {comparison_id} {what}; only this page's own answers can be undone")
        conn.execute("UPDATE comparisons SET status = 'pending', mu1 = NULL, mu2 = NULL, label_source = NULL, labeler = NULL,"
                     " labeled_at = NULL, lease_expires = ? WHERE id = ?", (now + lease_seconds, comparison_id))
        return _comparison_for_labeler(conn, comparison_id)

    return _write_transaction(path, work)


def release_lease(path: str, comparison_id: int, token: str) -> bool:
    """Give a pending pair held under ``token`` back to the pool (a page closed or moved on).
    Returns whether there was such a lease; raises UnknownComparison for an unknown id."""

    def work(conn):
        _labeled_row(conn, comparison_id)
        return conn.execute("UPDATE comparisons SET lease_token = NULL, lease_expires = NULL"
                            " WHERE id = ? AND status = 'pending' AND lease_token = ?", (comparison_id, token)).rowcount > 0

    return _write_transaction(path, work)


def count_by_status(path: str, batch: int | None = None) -> dict:
    """Comparisons per status ('pending', 'labeled', 'incomparable'), of one generator batch or
    of all: cheap enough to poll while waiting for a human to answer a batch."""
    conn, _ = connect(path)
    try:
        where, params = ("WHERE batch = ?", (batch,)) if batch is not None else ("", ())
        rows = conn.execute(f"SELECT status, COUNT(*) FROM comparisons {where} GROUP BY status", params).fetchall()
    finally:
        conn.close()
    return {status: 0 for status in STATUSES} | dict(rows)


def count_human_labels(path: str) -> int:
    """People's answers in the DB (labeled or incomparable): what an --overwrite must not delete unasked."""
    conn, _ = connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM comparisons WHERE label_source = 'human'").fetchone()[0]
    finally:
        conn.close()


def labeling_progress(path: str, now: float, window_seconds: float = 600.0) -> dict:
    """What the labeling page shows: pending pairs (and how many are on someone's screen),
    human answers per split, and human answers in the last ``window_seconds`` with the time of
    the oldest of them (for a labels-per-minute rate)."""
    since = datetime.fromtimestamp(now - window_seconds, UTC).isoformat(timespec="milliseconds")
    conn, _ = connect(path)
    try:
        pending, leased, human_train, human_validation, recent, oldest_recent = conn.execute(
            "SELECT IFNULL(SUM(status = 'pending'), 0), IFNULL(SUM(status = 'pending' AND lease_expires >= :now), 0),"
            " IFNULL(SUM(label_source = 'human' AND split = 'train'), 0), IFNULL(SUM(label_source = 'human' AND split = 'validation'), 0),"
            " IFNULL(SUM(label_source = 'human' AND labeled_at >= :since), 0),"
            " MIN(CASE WHEN label_source = 'human' AND labeled_at >= :since THEN labeled_at END) FROM comparisons",
            {"now": now, "since": since}).fetchone()
    finally:
        conn.close()
    return {"pending": pending, "leased": leased, "human_train": human_train, "human_validation": human_validation,
            "recent": recent, "oldest_recent": oldest_recent}
