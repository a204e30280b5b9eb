"""The SQLite backend: a store on one file whose count(value) is one index lookup.

``kvstore.open(path)`` returns a :class:`kvstore.sqlite.store.Store`. Its parts:
:mod:`~kvstore.sqlite.store` (the public surface: the mapping, counting, upkeep, backup),
:mod:`~kvstore.sqlite.reads` (``get()``, ``count()`` and the batch reads),
:mod:`~kvstore.sqlite.bulk` (``update()`` and its set-based path, ``clear()``),
:mod:`~kvstore.sqlite.session` (one call on this thread's connection, transactions, paging),
:mod:`~kvstore.sqlite.pool` (one connection per thread; what ``fork()`` and ``close()`` do),
:mod:`~kvstore.sqlite.connection` (every connection's pragmas; ``Options``),
:mod:`~kvstore.sqlite.uri` (the SQLite URI of a file, without importing dataclasses),
:mod:`~kvstore.sqlite.checkpointer` (the thread that checkpoints each store when its writes pause),
:mod:`~kvstore.sqlite.files` (recognising a file by its header, creating one atomically, paths),
:mod:`~kvstore.sqlite.migrate` (create / check / upgrade a file on open),
:mod:`~kvstore.sqlite.sql` (the statements compiled from :mod:`kvstore.schema`'s models, both
backends' models, as text, so no call imports SQLAlchemy),
:mod:`~kvstore.sqlite.triggers` (the trigger DDL, versioned) and
:mod:`~kvstore.sqlite.upkeep` (``verify()`` and ``repair()``).

This module holds the facts about kvstore files that several of those modules need, and
imports nothing: ``kvstore count`` in a fresh process (:mod:`kvstore.cli.fast`) pays for the
package and these facts as one module.
"""

APPLICATION_ID = 0x4B565354
"""Stamped into the file header (``PRAGMA application_id``, bytes 68-71) so kvstore files can be
told apart from other SQLite databases without reading any table: ASCII "KVST"."""

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
