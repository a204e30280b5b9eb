"""verify() and repair() against every kind of damage another program can do through SQL.

Each test damages a store with a raw sqlite3 connection (as the sqlite3 shell or a careless
migration would), then checks that verify() reports it clearly, that repair() fixes it in one
transaction, that verify() is then empty, and that counts are exact (compared with a Counter
over items()). Rows outside kvstore's types are data: verify() lists them, repair() keeps
them, and every read, iteration and removal method works on them.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import kvstore
from kvstore.sqlite import sql, triggers, upkeep
from tests._rel_workers import integrity

COLOURS = ["red", "green", "blue", 1, 1.0, b"x"]
TRIGGERS = [triggers.trigger_name(ddl) for ddl in triggers.CURRENT]


@pytest.fixture
def path(tmp_path: Path) -> str:
    path = str(tmp_path / "damaged.db")
    with kvstore.open(path) as db:
        db.update((i, COLOURS[i % len(COLOURS)]) for i in range(60))
        db.update({"k": "red", b"b": "green"})
    return path


@pytest.fixture
def conn(path: str) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    yield conn
    conn.close()


def assert_exact(db: kvstore.Store) -> None:
    pairs = list(db.items())
    assert db.counts() == Counter(value for _, value in pairs)
    assert len(db) == len(pairs)


@contextmanager
def statements(db: kvstore.Store) -> Iterator[list[str]]:
    """Every statement this thread's connection of ``db`` runs inside the block."""
    seen: list[str] = []
    with db._using() as c:
        c.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        with db._using() as c:
            c.set_trace_callback(None)


def repaired(db: kvstore.Store, found: list[kvstore.Problem]) -> int:
    """repair() in exactly one transaction; returns what it returned."""
    with statements(db) as seen:
        fixed = db.repair()
    ends = [s for s in seen if s.split()[0].upper() in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")]
    assert ends == ["BEGIN IMMEDIATE", "COMMIT"], ends
    return fixed


def check(path: str, names: set[str], *words: str, keeps_items: bool = True) -> None:
    """verify() reports exactly ``names`` (schema problems; mismatches may come too), each
    message naming ``words``; repair() fixes everything in one transaction, keeping every item;
    counts are exact afterwards and stay exact under writes of the store and of another program."""
    with kvstore.open(path) as db:
        found = db.verify()
        schema = {p.name: str(p) for p in found if isinstance(p, kvstore.SchemaProblem)}
        assert set(schema) == names, found
        for message in schema.values():
            assert all(word in message for word in words), message
        before = list(iter(db.items())) if keeps_items else []  # list(view) would ask len(): counts
        assert repaired(db, found) == len(found)
        assert db.verify() == []
        assert list(db.items()) == before
        assert db.repair() == 0
        assert_exact(db)
        db["new"] = "red"
        db.pop(0, None)
        db.update((f"bulk{i}", "blue") for i in range(20))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("REPLACE INTO items VALUES (1, 'replaced'), ('fresh', 'red')")
        other.execute("UPDATE items SET value = 'green' WHERE key = 2")
        other.close()
        assert db.verify() == []
        assert_exact(db)
        assert db.count("red", strategy="group_by") == db.count("red") == db.count("red", strategy="scan")
    assert integrity(path) == ["ok"]


def test_model_definitions_are_what_a_new_file_holds(path: str, conn: sqlite3.Connection) -> None:
    master = dict(conn.execute("SELECT name, sql FROM sqlite_master"))
    assert master["items"] == sql.ITEMS_TABLE and master["counts"] == sql.COUNTS_TABLE
    assert master["items_displaced"] == sql.DISPLACED_TABLE
    assert master["ix_items_value"] == sql.VALUE_INDEX and master["ix_counts_value"] == sql.COUNTS_INDEX
    assert [master[name] for name in TRIGGERS] == list(triggers.CURRENT)


# -- the value index -------------------------------------------------------------------------


def test_partial_value_index(path: str, conn: sqlite3.Connection) -> None:
    conn.execute("DROP INDEX ix_items_value")
    conn.execute("CREATE INDEX ix_items_value ON items(value) WHERE value > 0")
    with kvstore.open(path) as db, pytest.raises(kvstore.Error, match=r"ix_items_value.*missing or altered; run repair\(\)"):
        db.count("red", strategy="group_by")
    check(path, {"ix_items_value"}, "differs from kvstore's definition", "partial", "repair() recreates it")


def test_dropped_value_index(path: str, conn: sqlite3.Connection) -> None:
    conn.execute("DROP INDEX ix_items_value")
    with kvstore.open(path) as db, pytest.raises(kvstore.Error, match=r"missing or altered; run repair\(\)"):
        db.count("red", strategy="group_by")
    check(path, {"ix_items_value"}, "index on items.value is missing", "repair() recreates it")


# -- counts and items_displaced --------------------------------------------------------------


def test_dropped_counts(path: str, conn: sqlite3.Connection) -> None:
    conn.execute("DROP TABLE counts")
    with kvstore.open(path) as db, pytest.raises(kvstore.Error, match="no such table"):
        db["x"] = "red"  # the triggers need it
    check(path, {"counts"}, "table is missing", "repair() recreates it")


def test_dropped_counts_index(path: str, conn: sqlite3.Connection) -> None:
    conn.execute("DROP INDEX ix_counts_value")
    with kvstore.open(path) as db:
        assert db.count("red") == 11  # still right, reading all of counts
    check(path, {"ix_counts_value"}, "index on counts.value is missing", "repair() recreates it")


def test_a_second_counts_row_for_a_value(path: str, conn: sqlite3.Connection) -> None:
    """No constraint keeps counts to one row per value (revision 0003: a rowid table found
    through an index on a bounded head of the value), so a hand-written second row is a problem."""
    conn.execute("INSERT INTO counts (value, n) VALUES ('red', 7)")
    check(path, {"counts"}, "more than one row for the value 'red'", "repair() recounts it")


@pytest.mark.parametrize("definition", [
    "CREATE TABLE counts (value BLOB NOT NULL PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",  # no CHECK
    "CREATE TABLE counts (value TEXT PRIMARY KEY, n INTEGER NOT NULL CHECK (n > 0))",  # converts 1 to '1'
], ids=["without check", "text affinity"])
def test_altered_counts(path: str, conn: sqlite3.Connection, definition: str) -> None:
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE counts_copy AS SELECT * FROM counts")
    conn.execute("DROP TABLE counts")
    conn.execute(definition)
    conn.execute("INSERT INTO counts SELECT * FROM counts_copy")
    conn.execute("DROP TABLE counts_copy")
    conn.execute("COMMIT")
    check(path, {"counts"}, "table differs from kvstore's definition", "repair() recreates it")


@pytest.mark.parametrize("definition", [None, "CREATE TABLE items_displaced (key, value)"], ids=["dropped", "altered"])
def test_items_displaced(path: str, conn: sqlite3.Connection, definition: str | None) -> None:
    conn.execute("DROP TABLE items_displaced")
    if definition:
        conn.execute(definition)
    else:
        with kvstore.open(path) as db, pytest.raises(kvstore.Error, match="no such table"):
            db["x"] = "red"
    check(path, {"items_displaced"}, "bookkeeping", "repair() recreates it")


# -- triggers ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRIGGERS)
@pytest.mark.parametrize("how", ["dropped", "altered"])
def test_kvstore_trigger(path: str, conn: sqlite3.Connection, name: str, how: str) -> None:
    conn.execute(f"DROP TRIGGER {name}")
    if how == "altered":
        event = triggers.CURRENT[TRIGGERS.index(name)].split("\n")[0].split(" ", 3)[3]
        conn.execute(f"CREATE TRIGGER {name} {event} BEGIN SELECT 1; END")
    conn.execute("REPLACE INTO items VALUES (3, 'drift'), ('n', 'drift')")
    conn.execute("UPDATE items SET key = 'moved', value = 'drift2' WHERE key = 4")
    conn.execute("DELETE FROM items WHERE key = 5")
    if how == "dropped":  # already reported and repaired before kvstore.sqlite.upkeep: a regression guard
        check(path, {name}, "trigger is missing; counts will drift")
    else:
        check(path, {name}, "differs from kvstore's definition", "repair() restores it")


def test_foreign_trigger_writing_counts_is_reported_and_dropped(path: str, conn: sqlite3.Connection) -> None:
    bump = "CREATE TRIGGER bump AFTER INSERT ON items BEGIN UPDATE counts SET n = n + 1 WHERE value = NEW.value; END"
    conn.execute(bump)
    conn.execute("CREATE TRIGGER guard BEFORE DELETE ON counts BEGIN SELECT 1; END")  # attached to counts
    # Harmless foreign triggers (they never name counts) are not kvstore's business and stay.
    conn.execute("CREATE TABLE audit (key, note)")
    conn.execute("CREATE TRIGGER audit_log AFTER INSERT ON items BEGIN INSERT INTO audit VALUES (NEW.key, 'counts'); END")
    conn.execute("INSERT INTO items VALUES ('by bump', 'red')")
    check(path, {"bump", "guard"}, "is not kvstore's", "repair() drops it", "definition is: CREATE TRIGGER")
    names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert names == {*TRIGGERS, "audit_log"}


# -- items ---------------------------------------------------------------------------------


def recreate_items(conn: sqlite3.Connection, definition: str) -> None:
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE items_copy AS SELECT key, value FROM items")
    conn.execute("DROP TABLE items")
    conn.execute(definition)
    conn.execute("INSERT INTO items (key, value) SELECT key, value FROM items_copy")
    conn.execute("DROP TABLE items_copy")
    conn.execute("COMMIT")


@pytest.mark.parametrize("definition", [
    "CREATE TABLE items (key, value)",  # a rowid table without a primary key
    "CREATE TABLE items (key TEXT PRIMARY KEY, value NUMERIC NOT NULL)",  # affinity converts
], ids=["rowid table", "affinity"])
def test_items_recreated_differently_is_rebuilt(path: str, conn: sqlite3.Connection, definition: str) -> None:
    recreate_items(conn, definition)
    conn.execute("CREATE INDEX ix_theirs ON items(value, key)")  # theirs: kept across the rebuild
    conn.execute("CREATE TRIGGER veto BEFORE INSERT ON items WHEN NEW.key = 'veto' BEGIN SELECT RAISE(ABORT, 'vetoed'); END")
    check(path, {"items", "ix_items_value", *TRIGGERS}, "")
    with kvstore.open(path) as db, pytest.raises(kvstore.Error, match="vetoed"):
        db["veto"] = 1
    master = dict(conn.execute("SELECT name, sql FROM sqlite_master"))
    assert master["items"] == sql.ITEMS_TABLE and "ix_theirs" in master and "veto" in master
    assert "kvstore_items_rebuild" not in master


def test_items_rebuild_message(path: str, conn: sqlite3.Connection) -> None:
    recreate_items(conn, "CREATE TABLE items (key, value)")
    with kvstore.open(path) as db:
        before = list(db.items())
        (problem,) = [p for p in db.verify() if isinstance(p, kvstore.SchemaProblem) and p.name == "items"]
        assert "differs from kvstore's definition" in str(problem) and "copying every row" in str(problem)
        db.repair()
        assert list(db.items()) == before and db.verify() == []


def test_items_with_rows_kvstore_cannot_hold_is_kept_until_they_are_fixed(path: str, conn: sqlite3.Connection) -> None:
    recreate_items(conn, "CREATE TABLE items (key, value, note)")  # rowid: NULL keys and shared keys allowed
    conn.execute("INSERT INTO items VALUES (NULL, 'red', NULL), (7, 'green', 'twice'), (0.5, 'blue', NULL)")
    with kvstore.open(path) as db:
        found = db.verify()
        (problem,) = [p for p in found if isinstance(p, kvstore.SchemaProblem) and p.name == "items"]
        assert "cannot rebuild it without losing data" in problem.problem
        assert "columns besides key and value (note)" in problem.problem
        assert "1 row(s) hold a NULL key or value" in problem.problem
        assert "1 key(s) are held by more than one row" in problem.problem
        foreign = {p.key: p for p in found if isinstance(p, kvstore.ForeignRow)}
        assert set(foreign) == {None, 0.5} and "the key is NULL" in str(foreign[None])
        # Everything else is repaired; items stays as it is, rows and all.
        assert db.repair() == len(found) - 3
        assert {type(p) for p in db.verify()} == {kvstore.SchemaProblem, kvstore.ForeignRow}
        assert len([p for p in db.verify() if isinstance(p, kvstore.SchemaProblem)]) == 1
        assert_exact(db)
        assert db.count("green", strategy="group_by") == db.count("green")
        # Iteration and removal work on every row there, NULL key included.
        assert (None, "red") in list(db.items()) and db.pop(None) == "red"
        assert [v for k, v in db.items() if k == 7] == ["green", "green"]
    conn.execute("BEGIN")
    conn.execute("DELETE FROM items WHERE key = 7 AND note = 'twice'")
    conn.execute("CREATE TABLE keep AS SELECT key, value FROM items")
    conn.execute("DROP TABLE items")
    conn.execute("CREATE TABLE items (key, value)")
    conn.execute("INSERT INTO items SELECT * FROM keep")
    conn.execute("DROP TABLE keep")
    conn.execute("COMMIT")
    with kvstore.open(path) as db:
        assert db.repair() >= 1
        found = db.verify()
        assert [type(p) for p in found] == [kvstore.ForeignRow] and found[0].key == 0.5
        assert_exact(db)


def test_items_that_cannot_be_used_blocks_repair_and_changes_nothing(path: str, conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE items RENAME TO items_old")
    conn.execute("CREATE VIEW items AS SELECT key, value FROM items_old")
    conn.execute("DROP TABLE counts")
    master = conn.execute("SELECT * FROM sqlite_master ORDER BY name").fetchall()
    with kvstore.open(path) as db:
        found = db.verify()  # never raises
        names = {p.name for p in found if isinstance(p, kvstore.SchemaProblem)}
        assert {"items", "counts"} <= names
        assert any("is a view, not kvstore's table" in str(p) for p in found)
        with pytest.raises(kvstore.Error, match="cannot restore counts, and changed nothing.*view"):
            db.repair()
    assert conn.execute("SELECT * FROM sqlite_master ORDER BY name").fetchall() == master


def test_dropped_items(path: str, conn: sqlite3.Connection) -> None:
    conn.execute("DROP TABLE items")
    check(path, {"items", "ix_items_value", *TRIGGERS}, "", keeps_items=False)
    with kvstore.open(path) as db:
        assert len(db) == 1 + 20 + 2  # check()'s own writes, into the recreated table


# -- rows other programs wrote ---------------------------------------------------------------


def test_float_keys_are_listed_kept_read_and_removed(path: str, conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO items VALUES (0.5, 'x'), (-2.5, 'red'), (1e300, 1.5)")
    conn.execute("INSERT INTO items VALUES (?, 'inf')", (float("inf"),))
    with kvstore.open(path) as db:
        found = db.verify()
        assert all(isinstance(p, kvstore.ForeignRow) for p in found)
        assert sorted(p.key for p in found) == [-2.5, 0.5, 1e300, float("inf")]
        assert "the key is a float" in str(found[0]) and "repair() keeps it" in str(found[0])
        assert db.repair() == 0 and len(db.verify()) == 4  # data: kept
        assert_exact(db)
        keys = list(db)
        assert keys[:2] == [-2.5, 0] and 0.5 in keys and float("inf") in keys
        assert dict(db.items())[0.5] == "x" and "x" in list(db.values())
        assert -2.5 in list(db.keys_for("red"))
        assert dict(db.most_common()) == db.counts()
        with pytest.raises(TypeError, match="float"):
            db.get(0.5)  # get() validates its argument
        del db[0.5]
        assert db.pop(1e300) == 1.5 and db.delete(float("inf")) and not db.delete(float("inf"))
        assert_exact(db)
        drained = []
        while True:  # the drain loop empties the store
            try:
                drained.append(db.popitem())
            except KeyError:
                break
        assert drained[0] == (-2.5, "red") and len(db) == 0 and list(db) == []
        assert db.verify() == [] and db.counts() == {}


def test_many_foreign_rows_are_capped_with_a_total(path: str, conn: sqlite3.Connection) -> None:
    conn.executemany("INSERT INTO items VALUES (?, 'f')", [(i + 0.5,) for i in range(25)])
    with kvstore.open(path) as db:
        found = db.verify()
        assert len(found) == upkeep.FOREIGN_ROWS_LISTED
        assert "15 more such rows are not listed (25 in all)" in str(found[-1])
        db.clear()  # works on any row
        assert len(db) == 0 and db.verify() == []


def test_a_foreign_trigger_that_only_mentions_counts_in_comments_is_kept(path):
    with kvstore.open(path) as db:
        db[1] = "a"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE audit (k)")
    conn.execute("""CREATE TRIGGER audit_items AFTER INSERT ON items
BEGIN
    -- an audit log; it never touches counts
    /* nor items_displaced */
    INSERT INTO audit VALUES ('counts'' in a literal -- ' || NEW.key);
END""")
    conn.commit()
    conn.close()
    with kvstore.open(path) as db:
        assert db.verify() == [] and db.repair() == 0
        db["a new key"] = "b"
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'audit_items'").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM audit").fetchone() == (1,)
    conn.close()


def test_recount_takes_the_skip_scan_for_few_values_and_the_scan_for_many(tmp_path: Path) -> None:
    """Both recounts agree with a GROUP BY; verify() and the bulk path pick by a bounded probe."""
    for distinct, wanted in ((6, sql.RECOUNT), (3000, sql.RECOUNT_SCAN)):
        path = str(tmp_path / f"{distinct}.db")
        with kvstore.open(path) as db:
            db.update((i, f"v{i % distinct}" if i % 3 else f"v{i % distinct}" + "x" * 40) for i in range(6000))
        conn = sqlite3.connect(path)
        truth = dict(conn.execute("SELECT value, count(*) FROM items GROUP BY value"))
        assert upkeep.recount_statements(conn)[0] == wanted
        for statement in (sql.RECOUNT, sql.RECOUNT_SCAN):
            rows = conn.execute(statement).fetchall()
            assert dict(rows) == truth and len(rows) == len(truth)
        conn.close()
    conn = sqlite3.connect(":memory:")  # an items table without rowids can only be scanned
    conn.execute("CREATE TABLE items (key PRIMARY KEY, value) WITHOUT ROWID")
    assert upkeep.recount_statements(conn) == (sql.RECOUNT_SCAN, sql.REBUILD_COUNTS_SCAN)


def test_verify_lists_rows_whose_text_is_not_utf8_instead_of_failing(tmp_path: Path) -> None:
    """Another program may store text that is not valid UTF-8, which Python's sqlite3 cannot
    return as str: verify() names those rows (not a bare decode error from inside its count
    check), says counts were not compared, and is clean again once they are deleted."""
    path = str(tmp_path / "text.db")
    with kvstore.open(path) as db:
        db.update({1: "a", 2: "a"})
    with sqlite3.connect(path) as other:
        other.execute("INSERT INTO items VALUES (3, CAST(x'ff' AS TEXT))")
        other.execute("INSERT INTO items VALUES (CAST(x'41fe' AS TEXT), CAST(x'fe' AS TEXT))")
        other.execute("INSERT INTO items VALUES (4, CAST(x'41' AS TEXT))")  # valid text: not listed
    with kvstore.open(path) as db:
        found = db.verify()
        rows = {p.key: str(p) for p in found if isinstance(p, kvstore.ForeignRow)}
        assert set(rows) == {3, "A\\xfe"}, found
        assert "the value is text that is not valid UTF-8" in rows[3]
        assert "the key and the value are text" in rows["A\\xfe"]
        assert [p.name for p in found if isinstance(p, kvstore.SchemaProblem)] == ["counts"]
        assert not any(p.fixable for p in found)
        with pytest.raises(kvstore.Error, match="not valid UTF-8.*verify\\(\\) lists such rows"):
            db.get(3)
        assert db.get(1) == "a" and db.count("a") == 2  # the rest still reads
    with sqlite3.connect(path) as other:
        other.execute("DELETE FROM items WHERE CAST(value AS BLOB) IN (x'ff', x'fe')")
    with kvstore.open(path) as db:
        assert db.verify() == [] and db.count("a") == 2 and len(db) == 3


def test_verify_names_text_that_is_not_utf8_in_counts_alone(tmp_path: Path) -> None:
    """Text that is not UTF-8 written into counts by hand (items holds none): verify() says so,
    rather than pointing at rows of items it does not list; once deleted, repair() recounts."""
    path = str(tmp_path / "counts.db")
    with kvstore.open(path) as db:
        db.update({1: "a", 2: "a"})
    with sqlite3.connect(path) as other:
        other.execute("INSERT INTO counts VALUES (CAST(x'ff' AS TEXT), 3)")
    with kvstore.open(path) as db:
        found = db.verify()
        assert [(p.name, p.fixable) for p in found] == [("counts", False)], found
        assert "1 of its rows hold text that is not valid UTF-8" in str(found[0])
        assert db.count("a") == 2
    with sqlite3.connect(path) as other:
        other.execute("DELETE FROM counts WHERE CAST(value AS BLOB) = x'ff'")
    with kvstore.open(path) as db:
        assert db.verify() == []
