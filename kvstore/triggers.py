"""The SQLite triggers that keep ``counts`` exact, as versioned DDL constants.

Migrations import the version they introduced and the models attach the current one, so a
trigger's text lives in exactly one place. Published versions are never edited: a change is
a new constant and a new migration.

Why the design has more than three triggers: ``INSERT OR REPLACE``, ``REPLACE INTO`` and
``UPDATE OR REPLACE`` delete the row they displace *without* firing DELETE triggers unless the
connection has ``PRAGMA recursive_triggers=ON`` (off by default, per connection, not stored
in the file). So each BEFORE trigger writes the row currently holding ``NEW.key`` into
``items_displaced``; a DELETE trigger that does fire clears that note; an AFTER trigger that
still finds the note knows the row vanished silently and uncounts its value. The result is
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

CURRENT: tuple[str, ...] = TRIGGERS_V1


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
