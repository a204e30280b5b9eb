"""The triggers keep counts exact for every write form, by any client, at either recursive_triggers.

Each case runs raw SQL on a plain sqlite3 connection (as the sqlite3 shell or another program
would) and then compares ``counts`` with a GROUP BY over ``items``.
"""

from __future__ import annotations

import random
import sqlite3

import pytest

import kvstore
from tests.helpers import scaled

SEED_ROWS = [(1, "a"), (2, "a"), (3, "b"), ("k", 1), (b"k", 1.0), (4, "c")]

# (description, statements). Statements may fail (constraint errors are part of the matrix).
WRITE_FORMS: list[tuple[str, list[str]]] = [
    ("plain insert new", ["INSERT INTO items VALUES (10, 'a')"]),
    ("plain insert duplicate fails", ["INSERT INTO items VALUES (1, 'z')"]),
    ("upsert do update new", ["INSERT INTO items VALUES (10, 'b') ON CONFLICT(key) DO UPDATE SET value = excluded.value"]),
    ("upsert do update existing", ["INSERT INTO items VALUES (1, 'b') ON CONFLICT(key) DO UPDATE SET value = excluded.value"]),
    ("upsert do update same value", ["INSERT INTO items VALUES (1, 'a') ON CONFLICT(key) DO UPDATE SET value = excluded.value"]),
    ("upsert do nothing existing", ["INSERT INTO items VALUES (1, 'z') ON CONFLICT DO NOTHING"]),
    ("upsert do nothing new", ["INSERT INTO items VALUES (11, 'z') ON CONFLICT DO NOTHING"]),
    ("upsert do update where false", ["INSERT INTO items VALUES (1, 'z') ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE 0"]),
    ("upsert do update where true", ["INSERT INTO items VALUES (1, 'z') ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE items.value = 'a'"]),
    ("upsert changes key", ["INSERT INTO items VALUES (1, 'z') ON CONFLICT(key) DO UPDATE SET key = 99"]),
    ("insert or ignore existing", ["INSERT OR IGNORE INTO items VALUES (1, 'z')"]),
    ("insert or ignore new", ["INSERT OR IGNORE INTO items VALUES (12, 'z')"]),
    ("insert or replace existing", ["INSERT OR REPLACE INTO items VALUES (1, 'z')"]),
    ("insert or replace same value", ["INSERT OR REPLACE INTO items VALUES (1, 'a')"]),
    ("insert or replace new", ["INSERT OR REPLACE INTO items VALUES (13, 'z')"]),
    ("replace into existing", ["REPLACE INTO items VALUES (3, 'a')"]),
    ("insert or fail existing", ["INSERT OR FAIL INTO items VALUES (1, 'z')"]),
    ("insert or abort existing", ["INSERT OR ABORT INTO items VALUES (1, 'z')"]),
    ("insert or rollback existing", ["BEGIN", "INSERT INTO items VALUES (20, 'q')", "INSERT OR ROLLBACK INTO items VALUES (1, 'z')"]),
    ("multi-row insert select", ["INSERT INTO items SELECT key || 'x', value FROM items"]),
    ("multi-row replace select with duplicates", ["INSERT OR REPLACE INTO items SELECT 1, value FROM items"]),
    ("multi-row replace values", ["REPLACE INTO items VALUES (1, 'p'), (1, 'q'), (2, 'q'), (50, 'q')"]),
    ("multi-row insert or fail half way", ["INSERT OR FAIL INTO items VALUES (30, 'f'), (1, 'f'), (31, 'f')"]),
    ("multi-row upsert", ["INSERT INTO items SELECT key, 'u' FROM items WHERE 1 ON CONFLICT(key) DO UPDATE SET value = excluded.value || items.value"]),
    ("update value one", ["UPDATE items SET value = 'b' WHERE key = 1"]),
    ("update value all", ["UPDATE items SET value = 'same'"]),
    ("update value to equal number", ["UPDATE items SET value = 1.0 WHERE key = 'k'"]),
    ("update key to new", ["UPDATE items SET key = 100 WHERE key = 1"]),
    ("update key onto existing fails", ["UPDATE items SET key = 2 WHERE key = 1"]),
    ("update key and value", ["UPDATE items SET key = 101, value = 'kv' WHERE key = 3"]),
    ("update or replace key onto existing", ["UPDATE OR REPLACE items SET key = 3 WHERE key = 1"]),
    ("update or replace key and value onto existing", ["UPDATE OR REPLACE items SET key = 3, value = 'n' WHERE key = 1"]),
    ("update or replace shift all keys", ["UPDATE OR REPLACE items SET key = key + 1 WHERE typeof(key) = 'integer'"]),
    ("update or ignore key onto existing", ["UPDATE OR IGNORE items SET key = 3 WHERE key = 1"]),
    ("update or ignore shift all keys", ["UPDATE OR IGNORE items SET key = key + 1 WHERE typeof(key) = 'integer'"]),
    ("delete one", ["DELETE FROM items WHERE key = 1"]),
    ("delete all", ["DELETE FROM items"]),
    ("rolled back transaction", ["BEGIN", "INSERT INTO items VALUES (40, 'r')", "REPLACE INTO items VALUES (1, 'r')", "ROLLBACK"]),
    ("savepoint rolled back", ["BEGIN", "INSERT INTO items VALUES (41, 's')", "SAVEPOINT sp", "REPLACE INTO items VALUES (2, 's')", "DELETE FROM items WHERE key = 3", "ROLLBACK TO sp", "RELEASE sp", "COMMIT"]),
    ("savepoint released", ["SAVEPOINT sp", "REPLACE INTO items VALUES (2, 's')", "UPDATE OR REPLACE items SET key = 4 WHERE key = 3", "RELEASE sp"]),
]


def exact(conn: sqlite3.Connection) -> bool:
    counted = dict(conn.execute("SELECT value, count(*) FROM items GROUP BY value"))
    stored = dict(conn.execute("SELECT value, n FROM counts"))
    return counted == stored


def seeded_file(path: str) -> None:
    with kvstore.open(path) as db:
        db.update(SEED_ROWS)


def raw(path: str, recursive: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA recursive_triggers = {recursive}")
    return conn


@pytest.mark.parametrize("recursive", [0, 1])
@pytest.mark.parametrize("name,statements", WRITE_FORMS, ids=[name for name, _ in WRITE_FORMS])
def test_write_form_keeps_counts_exact(path, name, statements, recursive):
    seeded_file(path)
    conn = raw(path, recursive)
    before = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    for statement in statements:
        try:
            conn.execute(statement)
        except sqlite3.IntegrityError:
            pass
    if conn.in_transaction:
        conn.execute("COMMIT")
    assert exact(conn), name
    conn.close()
    with kvstore.open(path) as db:
        assert db.verify() == []
        assert len(db) == sum(db.counts().values())
    assert before == len(SEED_ROWS)


def test_replace_without_recursive_triggers_would_overcount_a_naive_design(path):
    """The trap the design exists for: REPLACE removes a row without firing DELETE triggers."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(
        """
        CREATE TABLE items(key PRIMARY KEY, value) WITHOUT ROWID;
        CREATE TABLE counts(value PRIMARY KEY, n);
        CREATE TRIGGER i AFTER INSERT ON items BEGIN
          INSERT INTO counts VALUES (NEW.value, 1) ON CONFLICT(value) DO UPDATE SET n = n + 1; END;
        CREATE TRIGGER d AFTER DELETE ON items BEGIN UPDATE counts SET n = n - 1 WHERE value = OLD.value; END;
        INSERT INTO items VALUES (1, 'a');
        REPLACE INTO items VALUES (1, 'b');
        """
    )
    assert dict(conn.execute("SELECT value, n FROM counts")) == {"a": 1, "b": 1}  # over-counted
    seeded_file(path)
    ours = raw(path, 0)
    ours.execute("REPLACE INTO items VALUES (1, 'b')")
    assert exact(ours)


RANDOM_FORMS = [
    "INSERT OR REPLACE INTO items VALUES ({k}, {v})",
    "REPLACE INTO items VALUES ({k}, {v})",
    "INSERT OR IGNORE INTO items VALUES ({k}, {v})",
    "INSERT INTO items VALUES ({k}, {v}) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    "INSERT INTO items VALUES ({k}, {v}) ON CONFLICT DO NOTHING",
    "INSERT INTO items VALUES ({k}, {v})",
    "UPDATE items SET value = {v} WHERE key = {k}",
    "UPDATE OR REPLACE items SET key = {k2} WHERE key = {k}",
    "UPDATE OR IGNORE items SET key = {k2} WHERE key = {k}",
    "UPDATE OR REPLACE items SET key = {k2}, value = {v} WHERE key = {k}",
    "DELETE FROM items WHERE key = {k}",
    "INSERT OR REPLACE INTO items SELECT key + 1, value FROM items WHERE key BETWEEN {k} AND {k2}",
    "UPDATE OR REPLACE items SET key = key + 1 WHERE key BETWEEN {k} AND {k2}",
]


@pytest.mark.parametrize("seed", range(4))
def test_long_random_sequences_of_raw_writes(path, seed):
    rng = random.Random(seed)
    seeded_file(path)
    conns = [raw(path, 0), raw(path, 1)]
    values = ["'a'", "'b'", "1", "1.0", "x'61'", "2.5"]
    for step in range(scaled(1500, 200)):
        conn = rng.choice(conns)
        form = rng.choice(RANDOM_FORMS)
        k, k2 = sorted(rng.sample(range(30), 2))
        statement = form.format(k=k, k2=k2, v=rng.choice(values))
        in_txn = rng.random() < 0.1
        if in_txn:
            conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(statement)
        except sqlite3.IntegrityError:
            pass
        if in_txn:
            conn.execute("ROLLBACK" if rng.random() < 0.5 else "COMMIT")
        if step % 50 == 0:
            assert exact(conn), statement
    assert exact(conns[0])
