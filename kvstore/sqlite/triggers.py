"""The SQLite triggers that keep ``counts`` exact, as versioned DDL constants.

Migrations import the version they introduced and the models attach the current one, so a
trigger's text lives in exactly one place. Published versions are never edited: a change is
a new constant and a new migration (tests/test_triggers.py pins each version's digest).

Why the design has more than three triggers: ``INSERT OR REPLACE``, ``REPLACE INTO`` and
``UPDATE OR REPLACE`` delete the row they displace *without* firing DELETE triggers unless the
connection has ``PRAGMA recursive_triggers=ON`` (off by default, per connection, not stored
in the file). So each BEFORE trigger notes the rows the write could displace in
``items_displaced``; a DELETE trigger that does fire clears its row's note; an AFTER trigger
that still finds a note knows the row vanished silently and uncounts its value. The result is
exact for every write form at either pragma setting (see tests/test_triggers.py).

Decrements delete the ``counts`` row when ``n`` is 1 *before* decrementing, because
``CHECK (n > 0)`` would reject ``n = 0`` and a count row must vanish with its last key.
"""

from __future__ import annotations

import sqlite3

# Introduced by revision 0002.
TRIGGERS_V1: tuple[str, ...] = (
    """CREATE TRIGGER items_before_insert BEFORE INSERT ON items
BEGIN
    DELETE FROM items_displaced WHERE key = NEW.key;
    INSERT INTO items_displaced (key, value) SELECT key, value FROM items WHERE key = NEW.key;
END""",
    """CREATE TRIGGER items_after_insert AFTER INSERT ON items
BEGIN
    DELETE FROM counts WHERE n = 1 AND value = (SELECT value FROM items_displaced WHERE key = NEW.key);
    UPDATE counts SET n = n - 1 WHERE value = (SELECT value FROM items_displaced WHERE key = NEW.key);
    DELETE FROM items_displaced WHERE key = NEW.key;
    INSERT INTO counts (value, n) VALUES (NEW.value, 1) ON CONFLICT (value) DO UPDATE SET n = n + 1;
END""",
    """CREATE TRIGGER items_after_delete AFTER DELETE ON items
BEGIN
    DELETE FROM items_displaced WHERE key = OLD.key;
    DELETE FROM counts WHERE n = 1 AND value = OLD.value;
    UPDATE counts SET n = n - 1 WHERE value = OLD.value;
END""",
    # An upsert that takes the DO UPDATE branch fired BEFORE INSERT (which left a note for
    # its own, surviving, row) and then the UPDATE triggers: clearing OLD.key here drops it.
    """CREATE TRIGGER items_after_update AFTER UPDATE ON items
BEGIN
    DELETE FROM items_displaced WHERE key = OLD.key;
END""",
    """CREATE TRIGGER items_after_update_value AFTER UPDATE OF value ON items
WHEN NEW.value IS NOT OLD.value
BEGIN
    DELETE FROM counts WHERE n = 1 AND value = OLD.value;
    UPDATE counts SET n = n - 1 WHERE value = OLD.value;
    INSERT INTO counts (value, n) VALUES (NEW.value, 1) ON CONFLICT (value) DO UPDATE SET n = n + 1;
END""",
    """CREATE TRIGGER items_before_update_key BEFORE UPDATE OF key ON items
WHEN NEW.key IS NOT OLD.key
BEGIN
    DELETE FROM items_displaced WHERE key = NEW.key;
    INSERT INTO items_displaced (key, value) SELECT key, value FROM items WHERE key = NEW.key;
END""",
    """CREATE TRIGGER items_after_update_key AFTER UPDATE OF key ON items
WHEN NEW.key IS NOT OLD.key
BEGIN
    DELETE FROM counts WHERE n = 1 AND value = (SELECT value FROM items_displaced WHERE key = NEW.key);
    UPDATE counts SET n = n - 1 WHERE value = (SELECT value FROM items_displaced WHERE key = NEW.key);
    DELETE FROM items_displaced WHERE key = NEW.key;
END""",
)


# -- revision 0003: rowid tables, values found through a bounded prefix --------------------

PREFIX = 32
"""Bytes of a text or blob value that the value indexes hold (revision 0003). A value of at most
PREFIX bytes, and every number, is held whole, so an index entry decides equality by itself;
a longer one is held as its first PREFIX characters (text) or bytes (blob) plus its length in
bytes, and a query checks the full value in the row."""


def _long(x: str) -> str:
    return f"typeof({x}) IN ('text', 'blob') AND length(CAST({x} AS BLOB)) > {PREFIX}"


def head(x: str) -> str:
    """SQL for what the value indexes hold of value ``x``: ``x`` itself, or a prefix of a long one.

    Built-in functions only, so any SQLite client (the ``sqlite3`` shell too) can write the
    tables. A short value is held whole, so the index alone decides equality for it (a prefix
    would not do: ``substr()`` of a text stops at its first NUL character, comparisons do
    not). The byte length (``CAST ... AS BLOB``) decides what is short, because ``length()``
    of a text also stops at a NUL: a long text with an early NUL would be held whole. A number
    stays itself, so 1 and 1.0, and 0 and -0.0, stay one value as the ``=`` operator has them.
    Text as SQLAlchemy renders the same expression (tests/test_schema.py checks), so that
    SQLite matches the indexes' expressions with these.
    """
    return f"CASE WHEN ({_long(x)}) THEN substr({x}, 1, {PREFIX}) ELSE {x} END"


def size(x: str) -> str:
    """SQL for the second indexed column: a long text or blob's length in bytes, else 0."""
    return f"CASE WHEN ({_long(x)}) THEN length(CAST({x} AS BLOB)) ELSE 0 END"


def same_value(column: str, x: str) -> str:
    """``column = x`` phrased so that SQLite searches the value index on ``column``'s table."""
    return f"{head(column)} = {head(x)} AND {size(column)} = {size(x)} AND {column} = {x}"


def _uncount_notes(condition: str) -> str:
    """Statements uncounting the displaced rows whose notes meet ``condition``.

    One value may be noted twice (the row holding the key and the row holding the rowid).
    """
    times = f"(SELECT count(*) FROM items_displaced AS x WHERE x.cid = counts.rowid AND ({condition}))"
    noted = f"(SELECT cid FROM items_displaced WHERE {condition})"
    return (f"    DELETE FROM counts WHERE rowid IN {noted} AND n <= {times};\n"
            f"    UPDATE counts SET n = n - {times} WHERE rowid IN {noted};\n")


def _count_up(x: str) -> str:
    return (f"    UPDATE counts SET n = n + 1 WHERE {same_value('value', x)};\n"
            f"    INSERT INTO counts (value, n) SELECT {x}, 1 WHERE NOT EXISTS "
            f"(SELECT 1 FROM counts WHERE {same_value('value', x)});\n")


def _count_down(x: str) -> str:
    return (f"    DELETE FROM counts WHERE n = 1 AND {same_value('value', x)};\n"
            f"    UPDATE counts SET n = n - 1 WHERE {same_value('value', x)};\n")


_NOTED_COUNT = f"(SELECT c.rowid FROM counts AS c WHERE {same_value('c.value', 'i.value')})"

# Introduced by revision 0003. items is a rowid table with UNIQUE(key), so a row can be
# displaced silently through either uniqueness: its key, or its rowid (a client may name the
# rowid: INSERT OR REPLACE INTO items (rowid, key, value) ..., UPDATE OR REPLACE ... SET rowid).
# BEFORE triggers empty items_displaced and note each row the write could displace, with the
# rowid of its counts row:
#   how='k'  INSERT: the row holding NEW.key: displaced for sure if the new row is inserted;
#   how='r'  INSERT: the row holding NEW.rowid (-1 in BEFORE INSERT when the rowid is
#            automatic): displaced only if AFTER INSERT sees that very NEW.rowid;
#   how='u'  UPDATE of key or rowid: any other row holding NEW.key or NEW.rowid.
# Notes left by a write that did not complete (OR IGNORE, DO NOTHING, the DO UPDATE branch,
# errors) are stale; the next BEFORE trigger clears them and nothing else reads them.
TRIGGERS_V2: tuple[str, ...] = (
    f"""CREATE TRIGGER items_before_insert BEFORE INSERT ON items
BEGIN
    DELETE FROM items_displaced WHERE rid IS NOT NULL;
    INSERT INTO items_displaced (rid, cid, how)
        SELECT i.rowid, {_NOTED_COUNT}, CASE WHEN i.key = NEW.key THEN 'k' ELSE 'r' END
        FROM items AS i WHERE i.key = NEW.key OR i.rowid = NEW.rowid;
END""",
    f"""CREATE TRIGGER items_after_insert_displaced AFTER INSERT ON items
WHEN EXISTS (SELECT 1 FROM items_displaced)
BEGIN
{_uncount_notes("how = 'k' OR (how = 'r' AND rid = NEW.rowid)")}    DELETE FROM items_displaced;
END""",
    f"""CREATE TRIGGER items_after_insert AFTER INSERT ON items
BEGIN
{_count_up("NEW.value")}END""",
    f"""CREATE TRIGGER items_after_delete AFTER DELETE ON items
BEGIN
    DELETE FROM items_displaced WHERE rid = OLD.rowid;
{_count_down("OLD.value")}END""",
    f"""CREATE TRIGGER items_before_update_key BEFORE UPDATE ON items
WHEN NEW.key IS NOT OLD.key OR NEW.rowid IS NOT OLD.rowid
BEGIN
    DELETE FROM items_displaced WHERE rid IS NOT NULL;
    INSERT INTO items_displaced (rid, cid, how)
        SELECT i.rowid, {_NOTED_COUNT}, 'u'
        FROM items AS i WHERE (i.key = NEW.key OR i.rowid = NEW.rowid) AND i.rowid IS NOT OLD.rowid;
END""",
    # Notes of how='u' are fresh only when items_before_update_key fired for this very row
    # (it empties the table first), hence its condition again; other notes are stale (e.g.
    # an upsert's BEFORE INSERT note when it took the DO UPDATE branch) and are dropped.
    f"""CREATE TRIGGER items_after_update AFTER UPDATE ON items
WHEN EXISTS (SELECT 1 FROM items_displaced)
BEGIN
{_uncount_notes("how = 'u' AND (NEW.key IS NOT OLD.key OR NEW.rowid IS NOT OLD.rowid)")}    DELETE FROM items_displaced;
END""",
    f"""CREATE TRIGGER items_after_update_value AFTER UPDATE OF value ON items
WHEN NEW.value IS NOT OLD.value
BEGIN
{_count_down("OLD.value")}{_count_up("NEW.value")}END""",
)

CURRENT: tuple[str, ...] = TRIGGERS_V2


def trigger_name(ddl: str) -> str:
    """The name a ``CREATE TRIGGER`` statement defines."""
    return ddl.split(None, 3)[2]


def drop_statements(ddls: tuple[str, ...]) -> list[str]:
    """``DROP TRIGGER`` statements undoing ``ddls``."""
    return [f"DROP TRIGGER IF EXISTS {trigger_name(ddl)}" for ddl in ddls]


def drop(conn: sqlite3.Connection) -> None:
    """Drop the current count triggers (those present); the caller holds a write transaction."""
    for statement in drop_statements(CURRENT):
        conn.execute(statement)


def create(conn: sqlite3.Connection) -> None:
    """(Re)create the current count triggers, replacing any of the same name."""
    drop(conn)
    for ddl in CURRENT:
        conn.execute(ddl)
