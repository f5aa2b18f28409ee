"""A schema-version-1 preferences DB, written as the code before other envs wrote it (db.py at
d8bcbc8): positions as integer x, y columns, actions as integers, the moving dot's ENV_PARAMS
as the env. Used to test that such a file is refused with the fix and migrated losslessly."""

import json
import sqlite3

import numpy as np

from rlhf import moving_dot as md

SCHEMA = """
CREATE TABLE metadata (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE segments (
    id     INTEGER PRIMARY KEY,
    length INTEGER NOT NULL CHECK (length >= 1),
    source TEXT NOT NULL,
    batch  INTEGER NOT NULL
);
CREATE TABLE steps (
    segment_id INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    t          INTEGER NOT NULL CHECK (t >= 0),
    x          INTEGER NOT NULL,
    y          INTEGER NOT NULL,
    action     INTEGER CHECK (action BETWEEN 0 AND 4),
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
    labeler       TEXT,
    labeled_at    TEXT,
    created_at    TEXT NOT NULL,
    batch         INTEGER NOT NULL,
    lease_token   TEXT,
    lease_expires REAL,
    CHECK (segment1_id != segment2_id),
    CHECK ((status = 'labeled') = (mu1 IS NOT NULL AND mu2 IS NOT NULL)),
    CHECK (mu1 IS NULL OR abs(mu1 + mu2 - 1) < 1e-6),
    CHECK ((status = 'pending') = (label_source IS NULL))
);
CREATE INDEX comparisons_by_status ON comparisons(status, split);
"""


def random_segments(n, k, seed):
    """n random-walk segments of length k on the field: positions (n, k + 1, 2) ints, actions (n, k)."""
    rng = np.random.default_rng(seed)
    states = [rng.integers(md.N_STATES, size=n)]
    actions = rng.integers(md.N_ACTIONS, size=(n, k))
    for t in range(k):
        states.append(md.NEXT_STATE[states[-1], actions[:, t]])
    return md.POSITIONS[np.stack(states, 1)].astype(np.int64), actions


def write_v1(path, positions, actions, comparisons, generator_runs=None):
    """A version-1 DB: segments (positions (S, k + 1, 2), actions (S, k)) and comparison rows as
    dicts (segment1_id, segment2_id 1-based; split, status, mu1, label_source, labeler, labeled_at,
    lease_token, lease_expires)."""
    n, k = actions.shape
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(SCHEMA)
        conn.executemany("INSERT INTO segments VALUES (?, ?, ?, ?)", [(i + 1, k, "random_policy", 0) for i in range(n)])
        conn.executemany("INSERT INTO steps VALUES (?, ?, ?, ?, ?)",
                         [(i + 1, t, int(positions[i, t, 0]), int(positions[i, t, 1]), int(actions[i, t]) if t < k else None)
                          for i in range(n) for t in range(k + 1)])
        for i, c in enumerate(comparisons):
            mu1 = c.get("mu1")
            conn.execute("INSERT INTO comparisons (id, segment1_id, segment2_id, split, status, mu1, mu2, label_source, labeler,"
                         " labeled_at, created_at, batch, lease_token, lease_expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (i + 1, c["segment1_id"], c["segment2_id"], c["split"], c["status"], mu1, None if mu1 is None else 1 - mu1,
                          c.get("label_source"), c.get("labeler"), c.get("labeled_at"), "2024-01-01T00:00:00.000+00:00", 0,
                          c.get("lease_token"), c.get("lease_expires")))
        runs = generator_runs or [{"script": "make_preferences_db.py", "seed": 1, "batch": 0, "n_segments": n,
                                   "n_comparisons": len(comparisons), "args": {"oracle": "reward"}}]
        conn.executemany("INSERT INTO metadata VALUES (?, ?)", [(key, json.dumps(value)) for key, value in {
            "format": "moving-dot-rlhf-preferences", "schema_version": 1, "env": md.ENV_PARAMS, "segment_length": k,
            "generator_runs": runs}.items()])
    conn.close()
