"""Bringing a file to the current schema: create it, check it, or upgrade it with Alembic.

The common case, a file already at head, costs a header read and one short read-only
connection (three pragma/SELECT round trips) and imports neither SQLAlchemy nor Alembic. Creating a file imports SQLAlchemy (``create_all``) and
Alembic (to stamp the revision); upgrading imports both.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from kvstore.connection import Options, connect
from kvstore.pool import OPENING
from kvstore.errors import (
    CorruptError,
    Error,
    MigrationError,
    NotAKvstoreFileError,
    SchemaTooNewError,
    translate,
)

# Stamped into the file header (PRAGMA application_id) so kvstore files can be told apart
# from other SQLite databases without reading any table: ASCII "KVST".
APPLICATION_ID = 0x4B565354
# The Alembic revision create_all() produces, and every revision this version knows;
# tests/test_migrations.py checks both against Alembic's scripts.
HEAD_REVISION = "0002"
KNOWN_REVISIONS = ("0001", "0002")

SQLITE_HEADER = b"SQLite format 3\x00"


def ensure_schema(path: str, options: Options) -> None:
    """Create ``path`` or bring it to the current schema; refuse anything that is not ours.

    The file is first examined on a read-only connection: closing a read-write connection
    would checkpoint a pending WAL or replay a hot journal, so a refused file must never get one.
    """
    if not os.path.exists(path):
        if options.readonly:
            raise Error(f"{path}: no such file; a read-only store cannot create it")
        _create(path, options)
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
            _run_alembic(conn, path, lambda cfg, command, current: command.upgrade(cfg, "head"))
        # WAL lets readers run beside one writer; the mode is stored in the file.
        conn.execute("PRAGMA journal_mode = WAL")


@contextmanager
def _connected(path: str, options: Options) -> Iterator[sqlite3.Connection]:
    """A connection to the kvstore file at ``path``, with sqlite3 errors translated.

    Held under OPENING: no fork() happens while this connection is open (see kvstore.pool).
    """
    _check_header(path)
    with OPENING:
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
    with _connected(path, replace(options, readonly=True)) as conn:
        return _read_revision(conn, path)


def migrate(path: str, revision: str, options: Options) -> None:
    """Upgrade or downgrade the kvstore file at ``path`` to ``revision``, atomically."""
    with _connected(path, replace(options, readonly=True)) as conn:
        _read_revision(conn, path)  # refuse a foreign file before opening it for writing
    with _connected(path, options) as conn:
        _run_alembic(conn, path, lambda cfg, command, current: _move(command, cfg, current, revision))


def _move(command: Any, cfg: Any, current: str | None, target: str) -> None:
    revisions = (None, *KNOWN_REVISIONS)
    if target == "head":
        target = HEAD_REVISION
    if target not in ("base", *KNOWN_REVISIONS):
        raise MigrationError(f"unknown revision {target!r}; known: base, {', '.join(KNOWN_REVISIONS)}")
    goal = None if target == "base" else target
    if revisions.index(goal) >= revisions.index(current):
        command.upgrade(cfg, target)
    else:
        command.downgrade(cfg, target)


def _check_header(path: str) -> None:
    """Refuse, without letting SQLite touch it, a file that is empty or not SQLite at all."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)  # the whole SQLite file header
            size = os.fstat(f.fileno()).st_size
    except IsADirectoryError:
        raise NotAKvstoreFileError(f"{path}: is a directory, not a kvstore file") from None
    except OSError as exc:
        raise Error(f"{path}: cannot read the file: {exc.strerror}") from None
    if not header:
        raise NotAKvstoreFileError(
            f"{path}: the file is empty (0 bytes), so it is not a kvstore file; "
            "delete it, or choose another path, to create a new store"
        )
    if header[: len(SQLITE_HEADER)] != SQLITE_HEADER:
        raise NotAKvstoreFileError(
            f"{path}: not a kvstore file (it is not an SQLite database); "
            "choose another path for a new store"
        )
    # SQLite only ever writes whole pages. A file cut inside a page opens without complaint and
    # then reads the missing bytes as zeros: rows come back silently wrong (NULL values).
    page_size = int.from_bytes(header[16:18], "big") if len(header) == 100 else 0
    page_size = 65536 if page_size == 1 else page_size
    if page_size >= 512 and page_size & (page_size - 1) == 0 and size % page_size:
        raise CorruptError(
            f"{path}: the file is truncated or damaged ({size} bytes is not a whole number of "
            f"{page_size}-byte pages); restore it from a backup"
        )


def _read_revision(conn: sqlite3.Connection, path: str) -> str | None:
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    if app_id != APPLICATION_ID:
        raise NotAKvstoreFileError(
            f"{path}: an SQLite database, but not a kvstore file (application_id {app_id}); "
            "kvstore will not modify it; choose another path for a new store"
        )
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
            raise _migration_error(exc, path) from exc


def _migration_error(exc: Exception, path: str) -> Exception:
    """A storage problem keeps its own kvstore exception; anything else is a failed migration."""
    orig = getattr(exc, "orig", exc)  # SQLAlchemy wraps the sqlite3 exception
    if isinstance(orig, sqlite3.Error) and getattr(orig, "sqlite_errorcode", 0) & 0xFF in (5, 8, 10, 11, 13, 26):
        return translate(orig, path)
    return MigrationError(
        f"{path}: migrating the schema failed and was rolled back; the file keeps "
        f"its previous revision ({orig})"
    )


def alembic_config(connection: Any = None) -> Any:
    """An Alembic Config built in code: no alembic.ini needed, the host's logging untouched."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_location() -> Path:
    """The Alembic scripts: inside the package in a wheel, the repo's migrations/ otherwise."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise Error("kvstore's migration scripts are missing from this installation; reinstall kvstore")


def _create(path: str, options: Options) -> None:
    """Build a new store beside ``path`` and link it into place, so no one sees it half-made."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise Error(f"{path}: cannot create the store: directory {parent} does not exist; create it first")
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex}.creating")
    try:
        with OPENING:  # no fork() while the new file's connection is open
            _build(tmp, options)
        try:
            os.link(tmp, path)  # atomic, and fails if another process created path first
        except FileExistsError:
            pass
        except OSError:  # filesystems without hard links
            if not os.path.exists(path):
                os.rename(tmp, path)
    except OSError as exc:
        raise Error(f"{path}: cannot create the store: {exc.strerror}") from None
    except Exception as exc:  # SQLAlchemy wraps sqlite3's errors (a full disk, say)
        raise _migration_error(exc, path) from exc
    finally:
        remove_database(tmp)


def remove_database(path: str) -> None:
    """Delete an SQLite file and its -wal, -shm and -journal companions, if present."""
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        if os.path.exists(name):
            os.remove(name)


def _build(tmp: str, options: Options) -> None:
    import sqlalchemy as sa
    from alembic import command

    from kvstore import schema

    raw = sqlite3.connect(tmp, isolation_level=None)
    try:
        raw.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        raw.execute("PRAGMA journal_mode = WAL")
        engine = sa.create_engine("sqlite://", creator=lambda: raw, poolclass=sa.pool.StaticPool)
        with engine.connect() as sa_conn:
            sa_conn.exec_driver_sql("BEGIN IMMEDIATE")
            schema.metadata.create_all(sa_conn)
            command.stamp(alembic_config(sa_conn), "head")
            sa_conn.commit()
    finally:
        raw.close()  # the last connection closes: the WAL is checkpointed into the file
