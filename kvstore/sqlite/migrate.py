"""Bringing a file to the current schema: create it, check it, or upgrade it with Alembic.

The common case, a file already at head, costs a header read and one short read-only
connection (three pragma/SELECT round trips) and imports neither SQLAlchemy nor Alembic.
Creating a file imports SQLAlchemy (``create_all``) and Alembic (to stamp the revision);
upgrading imports both.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from kvstore.history import alembic_config
from kvstore.sqlite import files
from kvstore.sqlite.connection import Options, connect
from kvstore.sqlite.pool import opening
from kvstore.errors import (
    Error,
    MigrationError,
    NotAKvstoreFileError,
    ReadOnlyError,
    STORAGE,
    primary_code,
    SchemaTooNewError,
    translate,
)

from kvstore.constants import HEAD_REVISION, KNOWN_REVISIONS  # noqa: F401 (re-exported)
from kvstore.sqlite import APPLICATION_ID  # noqa: F401 (re-exported)

log = logging.getLogger("kvstore.migrate")  # the documented name (README, the CLI), kept when this module moved
"""Says when a file is being upgraded (INFO), since that can take a while."""


def ensure_schema(path: str, options: Options) -> None:
    """Create ``path`` or bring it to the current schema; refuse anything that is not ours.

    The file's header is read before SQLite may open it (kvstore.sqlite.files.classify), and the
    revision is then read on a read-only connection: a read-write connection would replay a
    hot journal or checkpoint a pending WAL, so a refused file must never get one. Holds
    OPENING throughout, so that no fork() happens while one of these connections is open.
    """
    with opening(path):
        if not os.path.exists(path):
            if options.readonly:
                raise Error(f"{path}: no such file; a read-only store cannot create it")
            files.create(path, options)
        _prepare(path, options)
        with _connected(path, replace(options, readonly=True)) as conn:
            revision = _read_revision(conn, path)
            (journal,) = conn.execute("PRAGMA journal_mode").fetchone()
        if revision == HEAD_REVISION and (journal == "wal" or options.readonly):
            return
        if options.readonly:
            raise Error(
                f"{path}: the file is at schema revision {revision} and needs an upgrade "
                "to be used, which a read-only store cannot do; run `kvstore migrate` on it "
                "or open it writable once"
            )
        with _connected(path, options) as conn:
            if revision != HEAD_REVISION:
                _run_alembic(conn, path, lambda cfg, command, current: _upgrade(conn, path, command, cfg, current))
            # WAL lets readers run beside one writer; the mode is stored in the file.
            _switch_to_wal(conn, options.timeout)


def _switch_to_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """``PRAGMA journal_mode = WAL``, waiting up to ``timeout`` for other writers.

    The switch reads page 1 and then upgrades to a write lock; SQLite never runs the busy
    handler for a read-to-write upgrade (it could deadlock), so another opener's BEGIN
    IMMEDIATE makes it fail at once with SQLITE_BUSY. A failed attempt holds no lock, so
    retrying cannot deadlock. (It cannot run inside the upgrade's transaction: SQLite does
    not change into WAL mode inside a transaction.)
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if primary_code(exc) != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _prepare(path: str, options: Options) -> None:
    """Make the existing ``path`` examinable: roll back a hot journal, fill an empty file.

    Only a kvstore file's journal is rolled back (a foreign file is refused by its header
    first, journal untouched); an interrupted creation rolls back to an empty file, which
    then becomes a new store, as an empty file does for sqlite3.
    """
    kind = files.classify(path, clear=not options.readonly)
    if kind == "ours" and files.has_hot_journal(path):
        if options.readonly:
            raise ReadOnlyError(
                f"{path}: a write to this file was interrupted (its rollback journal is "
                "still there), and only a writable open can roll it back; open it once "
                "without readonly, or as a user who may write the file and its directory"
            )
        try:
            files.roll_back_journal(path, options)
        except sqlite3.Error as exc:
            raise translate(exc, path) from exc
        kind = files.classify(path, clear=not options.readonly)
    if kind == "empty":
        if options.readonly:
            raise Error(f"{path}: the file is empty, so there is nothing to read; "
                        "open it writable to make it a new store")
        files.initialize(path, options)


@contextmanager
def _connected(path: str, options: Options) -> Iterator[sqlite3.Connection]:
    """A connection to the kvstore file at ``path``, with sqlite3 errors translated.

    Held under OPENING: no fork() happens while this connection is open (see kvstore.sqlite.pool).
    """
    with opening(path):
        try:
            conn = connect(path, options)
            try:
                yield conn
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise translate(exc, path) from exc


def current_revision(path: str, options: Options) -> str | None:
    """The Alembic revision recorded in the kvstore file at ``path`` (None before the first)."""
    if files.classify(path, clear=False) == "empty":  # ensure_schema() and migrate() prepare the file first
        raise NotAKvstoreFileError(f"{path}: the file is empty (0 bytes); open it with "
                                   "kvstore.open() to make it a new store")
    with _connected(path, replace(options, readonly=True)) as conn:
        return _read_revision(conn, path)


def migrate(path: str, revision: str, options: Options) -> None:
    """Upgrade or downgrade the kvstore file at ``path`` to ``revision``, atomically."""
    with opening(path):
        _prepare(path, options)
    with _connected(path, replace(options, readonly=True)) as conn:
        _read_revision(conn, path)  # refuse a foreign file before opening it for writing
    with _connected(path, options) as conn:
        _run_alembic(conn, path, lambda cfg, command, current: _move(conn, path, command, cfg, current, revision))


def _move(conn: sqlite3.Connection, path: str, command: Any, cfg: Any, current: str | None, target: str) -> None:
    revisions = (None, *KNOWN_REVISIONS)
    if target == "head":
        target = HEAD_REVISION
    if target not in ("base", *KNOWN_REVISIONS):
        raise MigrationError(f"unknown revision {target!r}; known: base, {', '.join(KNOWN_REVISIONS)}")
    goal = None if target == "base" else target
    if revisions.index(goal) >= revisions.index(current):
        _upgrade(conn, path, command, cfg, current, target)
    else:
        command.downgrade(cfg, target)


def _upgrade(conn: sqlite3.Connection, path: str, command: Any, cfg: Any, current: str | None,
             target: str = HEAD_REVISION) -> None:
    """Upgrade, first saying so on the ``kvstore.migrate`` logger (the CLI shows it on stderr).

    Revision 0003 copies every row, which takes seconds per million items, so whoever waits
    should know why. Silent in a library unless its host configures logging.
    """
    if current != target and log.isEnabledFor(logging.INFO):
        has_items = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'items'").fetchone()
        (items,) = conn.execute("SELECT count(*) FROM items").fetchone() if has_items else (0,)
        log.info("upgrading %s to revision %s (%s items)…", path, target, f"{items:,}")
    command.upgrade(cfg, target)


def _read_revision(conn: sqlite3.Connection, path: str) -> str | None:
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    if app_id != APPLICATION_ID:  # the header said otherwise; a WAL may hold a newer page 1
        raise files._foreign(path, app_id)
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    ).fetchone()
    if not has_table:  # before the first revision
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    revision = row[0] if row else None
    if revision is not None and revision not in KNOWN_REVISIONS:
        raise SchemaTooNewError(
            f"{path}: the file has schema revision {revision!r}, newer than this kvstore knows "
            f"(up to {HEAD_REVISION}); upgrade the kvstore package to open it"
        )
    return revision


def _run_alembic(
    conn: sqlite3.Connection, path: str, action: Callable[[Any, Any, str | None], None]
) -> None:
    """Run an Alembic command inside one ``BEGIN IMMEDIATE`` transaction on ``conn``.

    Holding the write lock from the re-check through the commit makes concurrent openers wait
    and then see the new revision; one transaction makes the whole move all-or-nothing.
    """
    import sqlalchemy as sa
    from alembic import command

    engine = sa.create_engine("sqlite://", creator=lambda: conn, poolclass=sa.pool.StaticPool)
    with engine.connect() as sa_conn:
        try:
            sa_conn.exec_driver_sql("BEGIN IMMEDIATE")
            current = _read_revision(conn, path)  # re-read under the lock
            action(alembic_config(sa_conn), command, current)
            sa_conn.commit()
        except Error:
            sa_conn.rollback()
            raise
        except Exception as exc:
            sa_conn.rollback()
            raise migration_error(exc, path) from exc


def migration_error(exc: Exception, path: str) -> Exception:
    """A storage problem keeps its own kvstore exception; anything else is a failed migration."""
    orig = getattr(exc, "orig", exc)  # SQLAlchemy wraps the sqlite3 exception
    if isinstance(orig, sqlite3.Error) and primary_code(orig) in STORAGE:
        return translate(orig, path)
    return MigrationError(
        f"{path}: migrating the schema failed and was rolled back; the file keeps "
        f"its previous revision ({orig})"
    )
