"""Facts about kvstore files that several modules need; imports nothing of kvstore (no cycles)."""

APPLICATION_ID = 0x4B565354
"""Stamped into the file header (``PRAGMA application_id``, bytes 68-71) so kvstore files can be
told apart from other SQLite databases without reading any table: ASCII "KVST"."""

HEAD_REVISION = "0003"
"""The Alembic revision ``create_all()`` produces; tests/test_migrations.py checks it."""

KNOWN_REVISIONS = ("0001", "0002", "0003")
"""Every revision this version knows, oldest first."""

VALUE_INDEX = "ix_items_value"
"""The index on items' values (the model names it; verify(), stats() and the group_by hint use it)."""

KEY_INDEX = "sqlite_autoindex_items_1"
"""The index SQLite makes for items' UNIQUE (key) (revision 0003 on)."""

COUNTS_INDEX = "ix_counts_value"
"""The index through which counts rows are found by value (revision 0003 on)."""

SQLITE_HEADER = b"SQLite format 3\x00"

MAX_TIMEOUT = (2**31 - 1) / 1000
"""The longest busy timeout SQLite can wait: its ``sqlite3_busy_timeout`` takes a C int of
milliseconds (about 24.8 days)."""
