"""The triggers keep counts exact for every write form, by any client, at either recursive_triggers.

Each case runs raw SQL on a plain sqlite3 connection (as the sqlite3 shell or another program
would) and then compares ``counts`` with a GROUP BY over ``items``.
"""

from __future__ import annotations

import random
import sqlite3

import pytest

import kvstore
from kvstore.sqlite import sql
from tests.helpers import scaled

SEED_ROWS = [(1, "a"), (2, "a"), (3, "b"), ("k", 1), (b"k", 1.0), (4, "c")]
# Values longer than the value indexes' 32-byte prefix: LONG1 and LONG2 share it and their length.
LONG1, LONG2, LONG3 = "x" * 40 + "1", "x" * 40 + "2", "x" * 50
SEED_LONG = SEED_ROWS + [(200, LONG1), (201, LONG2), (202, LONG1), (203, b"y" * 40), ("z", LONG3), (204, -0.0), (205, 0),
                         (206, "a\x00" + "n" * 40), (207, "a\x00" + "m" * 40)]
"""SEED_ROWS and long values beside them, on keys no write form names as new."""
L1, L2 = f"'{LONG1}'", f"'{LONG2}'"

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


# Forms only a rowid items table has (a client naming the hidden rowid), stale notes left by
# writes that did not complete, long values sharing an index prefix, and numeric identity.
RID = "(SELECT rowid FROM items WHERE key = {})"
EXTRA_FORMS: list[tuple[str, list[str]]] = [
    ("replace explicit rowid of another row", [f"INSERT OR REPLACE INTO items (rowid, key, value) VALUES ({RID.format(2)}, 77, 'z')"]),
    ("replace explicit rowid of one row and key of another", [f"INSERT OR REPLACE INTO items (rowid, key, value) VALUES ({RID.format(2)}, 1, 'z')"]),
    ("replace explicit rowid and key of the same row", [f"INSERT OR REPLACE INTO items (rowid, key, value) VALUES ({RID.format(1)}, 1, 'z')"]),
    ("replace rowid+key of two rows with the same value", [f"INSERT OR REPLACE INTO items (rowid, key, value) VALUES ({RID.format(2)}, 1, 'a')"]),
    ("insert explicit rowid conflict fails", [f"INSERT INTO items (rowid, key, value) VALUES ({RID.format(2)}, 77, 'z')"]),
    ("insert or ignore explicit rowid conflict", [f"INSERT OR IGNORE INTO items (rowid, key, value) VALUES ({RID.format(2)}, 77, 'z')"]),
    ("explicit rowid -1 then automatic rowids", ["INSERT INTO items (rowid, key, value) VALUES (-1, 60, 'm')", "INSERT INTO items VALUES (61, 'n')", "INSERT OR REPLACE INTO items VALUES (62, 'o')", "REPLACE INTO items (rowid, key, value) VALUES (-1, 63, 'p')", "INSERT INTO items VALUES (64, 'm') ON CONFLICT (key) DO UPDATE SET value = 'w'"]),
    ("explicit null rowid", ["INSERT OR REPLACE INTO items (rowid, key, value) VALUES (NULL, 1, 'nn')"]),
    ("update or replace rowid onto another row", [f"UPDATE OR REPLACE items SET rowid = {RID.format(2)} WHERE key = 1"]),
    ("update or replace shift all rowids", ["UPDATE OR REPLACE items SET rowid = rowid + 1"]),
    ("update or replace shift all rowids down", ["UPDATE OR REPLACE items SET rowid = rowid - 1"]),
    ("update or replace rowid and key onto two rows", [f"UPDATE OR REPLACE items SET rowid = {RID.format(2)}, key = 3 WHERE key = 1"]),
    ("update or ignore shift all rowids", ["UPDATE OR IGNORE items SET rowid = rowid + 1"]),
    ("update rowid onto existing fails", [f"UPDATE items SET rowid = {RID.format(2)} WHERE key = 1"]),
    ("upsert do update sets rowid onto another row", [f"INSERT INTO items VALUES (1, 'z') ON CONFLICT (key) DO UPDATE SET rowid = {RID.format(3)}"]),
    ("upsert do update sets fresh rowid", ["INSERT INTO items VALUES (1, 'z') ON CONFLICT (key) DO UPDATE SET rowid = 1000, value = 'y'"]),
    ("stale update note then value update", ["UPDATE OR IGNORE items SET key = 3 WHERE key = 1", "UPDATE items SET value = 'b' WHERE key = 1"]),
    ("stale update note then upsert", ["UPDATE OR IGNORE items SET key = 3 WHERE key = 1", "INSERT INTO items VALUES (1, 'q') ON CONFLICT (key) DO UPDATE SET value = excluded.value"]),
    ("stale insert note then value update", ["INSERT OR IGNORE INTO items VALUES (1, 'z')", "UPDATE items SET value = 'c' WHERE key = 2"]),
    ("stale insert note then delete", ["INSERT INTO items VALUES (1, 'z') ON CONFLICT DO NOTHING", "DELETE FROM items WHERE key = 2"]),
    ("delete by rowid", [f"DELETE FROM items WHERE rowid = {RID.format(3)}"]),
    ("long values sharing a prefix", [f"INSERT INTO items VALUES (70, {L1}), (71, {L2})", f"REPLACE INTO items VALUES (70, {L2})", f"UPDATE items SET value = {L1} WHERE key = 2"]),
    ("long value replaces long value", [f"INSERT INTO items VALUES (72, {L1})", f"INSERT OR REPLACE INTO items VALUES (72, {L2})", "UPDATE OR REPLACE items SET key = 72 WHERE key = 1"]),
    ("long text and blob with the same bytes", [f"INSERT INTO items VALUES (73, {L1}), (74, CAST({L1} AS BLOB))", f"REPLACE INTO items VALUES (73, CAST({L1} AS BLOB))", f"UPDATE items SET value = {L1} WHERE key = 74"]),
    ("zero and negative zero", ["INSERT INTO items VALUES (80, 0)", "INSERT INTO items VALUES (81, -0.0)", "UPDATE items SET value = 0.0 WHERE key = 80", "REPLACE INTO items VALUES (81, 0)"]),
    ("text blob integer one", ["INSERT INTO items VALUES (82, '1'), (83, x'31'), (84, 1), (85, 1.0)", "REPLACE INTO items VALUES (84, '1')"]),
    ("replace all rows with themselves", ["INSERT OR REPLACE INTO items SELECT key, value FROM items"]),
    ("replace all rows by rowid", ["INSERT OR REPLACE INTO items (rowid, key, value) SELECT rowid, key || 'r', value FROM items"]),
]
ALL_FORMS = WRITE_FORMS + EXTRA_FORMS


def exact(conn: sqlite3.Connection) -> bool:
    """counts holds one row per distinct value, with the number of keys holding it."""
    counted = dict(conn.execute("SELECT value, count(*) FROM items GROUP BY value"))
    rows = conn.execute("SELECT value, n FROM counts").fetchall()
    distinct = conn.execute("SELECT count(DISTINCT value) FROM counts").fetchone()[0]
    return dict(rows) == counted and len(rows) == distinct


def queries_agree(conn: sqlite3.Connection) -> None:
    """The store's count / group_by / keys_for statements answer exactly for every value."""
    counted = conn.execute("SELECT value, count(*) FROM items GROUP BY value").fetchall()
    truth = dict(counted)
    for statement in (sql.RECOUNT, sql.RECOUNT_SCAN):
        recount = conn.execute(statement).fetchall()
        assert dict(recount) == truth and len(recount) == len(truth), statement
    probes = [v for v, _ in counted] + ["a", "nope", LONG1, LONG2, LONG3, 1, 1.0, 0, -0.0, "1", b"1", b"y" * 40]
    for v in probes:
        want = truth.get(v, 0)
        row = conn.execute(sql.COUNT, (v,)).fetchone()
        assert (row[0] if row else 0) == want, ("count", v)
        assert conn.execute(sql.COUNT_GROUP_BY, (v,)).fetchone()[0] == want, ("group_by", v)
        keys = [k for (k,) in conn.execute(sql.KEYS_FOR_FIRST, (v,))]
        assert keys == [k for (k,) in conn.execute("SELECT key FROM items WHERE +value = ? ORDER BY key", (v,))], v
        if keys:
            assert [k for (k,) in conn.execute(sql.KEYS_FOR_AFTER, (v, keys[0]))] == keys[1:], ("keys_for after", v)


def oracle(rows: list[tuple]) -> sqlite3.Connection:
    """The same items table without triggers or counts: what every write must do to items."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(sql.ITEMS_TABLE)
    conn.execute(sql.VALUE_INDEX)  # scan order decides which row a multi-row REPLACE keeps
    conn.executemany(sql.UPSERT, rows)
    return conn


def contents(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute("SELECT rowid, key, value FROM items ORDER BY key").fetchall()


def seeded_file(path: str, rows: list[tuple] = SEED_ROWS) -> None:
    with kvstore.open(path) as db:
        for key, value in rows:  # one by one: the rowids are the oracle's
            db[key] = value


def raw(path: str, recursive: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA recursive_triggers = {recursive}")
    return conn


@pytest.mark.parametrize("recursive", [0, 1])
@pytest.mark.parametrize("name,statements", ALL_FORMS, ids=[name for name, _ in ALL_FORMS])
def test_write_form_keeps_counts_exact(path, name, statements, recursive):
    rows = SEED_LONG
    seeded_file(path, rows)
    conn = raw(path, recursive)
    plain = oracle(rows)
    assert contents(conn) == contents(plain)
    for statement in statements:
        for c in (conn, plain):
            try:
                c.execute(statement)
            except sqlite3.IntegrityError:
                pass
    for c in (conn, plain):
        if c.in_transaction:
            c.execute("COMMIT")
    assert exact(conn), name
    assert contents(conn) == contents(plain), "the triggers changed what the write did"
    queries_agree(conn)
    conn.close()
    with kvstore.open(path) as db:
        assert db.verify() == []
        assert len(db) == sum(db.counts().values())


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
    # Forms naming the rowid, and key- or rowid-changing upserts.
    "INSERT OR REPLACE INTO items (rowid, key, value) VALUES ({r}, {k}, {v})",
    "INSERT OR IGNORE INTO items (rowid, key, value) VALUES ({r}, {k}, {v})",
    "INSERT INTO items (rowid, key, value) VALUES ({r}, {k}, {v}) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    "UPDATE OR REPLACE items SET rowid = {r} WHERE key = {k}",
    "UPDATE OR REPLACE items SET rowid = rowid + 1 WHERE key BETWEEN {k} AND {k2}",
    "UPDATE OR IGNORE items SET rowid = {r}, key = {k2} WHERE key = {k}",
    "UPDATE OR REPLACE items SET rowid = {r}, key = {k2}, value = {v} WHERE key = {k}",
    "INSERT INTO items VALUES ({k}, {v}) ON CONFLICT (key) DO UPDATE SET key = {k2}",
    "INSERT INTO items VALUES ({k}, {v}) ON CONFLICT (key) DO UPDATE SET rowid = {r}",
    "DELETE FROM items WHERE rowid = {r}",
]


@pytest.mark.parametrize("seed", range(4))
def test_long_random_sequences_of_raw_writes(path, seed):
    rng = random.Random(seed)
    seeded_file(path)
    conns = [raw(path, 0), raw(path, 1)]
    plain = oracle(SEED_ROWS)
    values = ["'a'", "'b'", "1", "1.0", "x'61'", "2.5", "0", "-0.0", "'1'", L1, L2, f"'{LONG3}'", "x'" + "79" * 40 + "'"]
    for step in range(scaled(1500, 200)):
        conn = rng.choice(conns)
        form = rng.choice(RANDOM_FORMS)
        k, k2 = sorted(rng.sample(range(30), 2))
        statement = form.format(k=k, k2=k2, v=rng.choice(values), r=rng.choice([-1, 1, 2, 3, 5, 8, 13, 21, 34, 1000]))
        in_txn = rng.random() < 0.1
        end = "ROLLBACK" if rng.random() < 0.5 else "COMMIT"
        for c in (conn, plain):
            if in_txn:
                c.execute("BEGIN IMMEDIATE")
            try:
                c.execute(statement)
            except sqlite3.IntegrityError:
                pass
            if in_txn:
                c.execute(end)
        if step % 50 == 0:
            assert exact(conn), statement
            assert contents(conn) == contents(plain), statement
    assert exact(conns[0])
    assert contents(conns[0]) == contents(plain)
    queries_agree(conns[0])
