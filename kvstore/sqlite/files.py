"""Store files on disk: recognise one without letting SQLite touch it, create one atomically.

A file is examined byte by byte before SQLite opens it, because SQLite acts on what it opens:
a read-write connection replays a hot journal and checkpoints a pending WAL when it closes,
so a file kvstore refuses must never get one. A new store is built beside its path and
hard-linked into place, so nobody ever sees it half-made; where the filesystem has no hard
links, an empty file is claimed with ``O_EXCL`` instead and the schema is created inside it in
one ``BEGIN IMMEDIATE`` transaction, which concurrent creators wait for.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable
from typing import Literal

from kvstore.sqlite.connection import Options, connect
from kvstore.sqlite import APPLICATION_ID, SQLITE_HEADER
from kvstore.errors import CorruptError, Error, NotAKvstoreFileError, StorageFullError

Kind = Literal["ours", "empty"]


def classify(path: str, clear: bool = True) -> Kind:
    """"ours" for a kvstore file, "empty" for a 0-byte file; raise for anything else.

    Reads only the 100-byte header (and, for a 0-byte file with a pending WAL, asks a
    read-only connection): a refused file is never modified, its journal or WAL included.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(100)  # the whole SQLite file header
            st = os.fstat(f.fileno())
            size = st.st_size
    except IsADirectoryError:
        raise NotAKvstoreFileError(f"{path}: is a directory, not a kvstore file") from None
    except PermissionError:
        raise Error(f"{path}: permission denied: you may not read this file; "
                    "ask its owner for read permission") from None
    except OSError as exc:
        raise Error(f"{path}: cannot read the file: {exc.strerror}") from None
    if st.st_nlink > 1:
        check_links(path, clear)
    if not header:
        return _empty_or_pending(path)
    if header[: len(SQLITE_HEADER)] != SQLITE_HEADER:
        raise NotAKvstoreFileError(
            f"{path}: not a kvstore file (it is not an SQLite database); "
            "choose another path for a new store"
        )
    # SQLite only ever writes whole pages. A file cut inside a page opens without complaint and
    # then reads the missing bytes as zeros: rows come back silently wrong (NULL values).
    page_size = int.from_bytes(header[16:18], "big") if len(header) == 100 else 0
    page_size = 65536 if page_size == 1 else page_size
    if len(header) < 100 or page_size < 512 or page_size & (page_size - 1) or size % page_size:
        raise CorruptError(
            f"{path}: the file is truncated or damaged ({size} bytes is not a whole number of "
            f"{page_size or 'valid'}-byte pages); restore it from a backup"
        )
    app_id = int.from_bytes(header[68:72], "big")
    if app_id != APPLICATION_ID:
        raise _foreign(path, app_id)
    return "ours"


def check_links(path: str, clear: bool = True) -> None:
    """Refuse a file with more than one name (see :func:`links_problem`)."""
    problem = links_problem(path, clear)
    if problem:
        raise Error(f"{path}: {problem}")


def links_problem(path: str, clear: bool = True) -> str | None:
    """What is wrong with a file that has more than one name, or None. SQLite finds a database's -wal, -shm and -journal
    (and its locks' bookkeeping) by the name it was opened with, so two names for one file are
    two databases to SQLite, and using both corrupts it ("How To Corrupt An SQLite Database
    File", section 2.3). The one extra name kvstore makes itself, the temporary name a new
    store is built under (beside the file a symlink points to), is removed here if its creator
    was killed before removing it, unless ``clear`` is False (a read-only open changes nothing)."""
    real = os.path.realpath(path)
    if os.stat(real).st_nlink < 2:
        return None
    directory, base = os.path.split(real)
    try:
        names = [name for name in os.listdir(directory or ".")
                 if name.startswith(f".{base}.") and name.endswith(".creating")] if clear else []
    except OSError:
        names = []
    for name in names:
        other = os.path.join(directory, name)
        try:
            if os.path.samefile(other, real):
                os.remove(other)  # linked into place: it names the store, and nothing else uses it
        except OSError:
            pass
    links = os.stat(real).st_nlink
    if links < 2:
        return None
    return (f"this file has {links} names (hard links); SQLite keeps a database's WAL and "
            "locks by name, so a store used through two names is corrupted: remove the other names "
            f"(find them with `find / -xdev -samefile {path}`), or copy the file with `cp` while "
            "no program has it open and use the copy")


def _foreign(path: str, app_id: int) -> NotAKvstoreFileError:
    return NotAKvstoreFileError(
        f"{path}: an SQLite database, but not a kvstore file (application_id {app_id}); "
        "kvstore will not modify it; choose another path for a new store"
    )


def _empty_or_pending(path: str) -> Kind:
    """A 0-byte file is a new store, unless a WAL beside it holds a database already."""
    try:
        pending = os.path.getsize(companion(path, "-wal")) > 0
    except OSError:
        pending = False
    if not pending:
        return "empty"
    conn = connect(path, Options(readonly=True))
    try:
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        (objects,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        app_id, objects = -1, -1
    finally:
        conn.close()
    if app_id == APPLICATION_ID:
        return "ours"
    if app_id or objects:
        raise _foreign(path, app_id)
    return "empty"


def companion(path: str, suffix: str) -> str:
    """The -wal, -shm or -journal file of ``path``: SQLite names it after the file a symlink
    points to, not after the link."""
    return os.path.realpath(path) + suffix


def has_hot_journal(path: str) -> bool:
    """A rollback journal beside ``path`` (a writer in rollback-journal mode was interrupted)."""
    try:
        return os.path.getsize(companion(path, "-journal")) > 0
    except OSError:
        return False


def roll_back_journal(path: str, options: Options) -> None:
    """Let SQLite roll a hot journal back: only a connection that may write can do that."""
    conn = connect(path, options)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()


def create(path: str, options: Options) -> None:
    """Create a new store at the missing ``path``; a racing creator's store wins untouched."""
    tmp = _temporary_beside(path)
    try:
        initialize(tmp, options, wal=True)
        try:
            os.link(tmp, path)  # atomic, and fails if another process created path first
        except FileExistsError:
            pass
        except OSError:  # no hard links here: claim an empty file; ensure_schema fills it
            try:
                _claim(path, path)
            except FileExistsError:
                pass
    finally:
        remove_database(tmp)


def _temporary_beside(path: str) -> str:
    """A new empty file named for ``path`` in its directory, to build a file that is then
    linked into place; errors say why it could not be made, in the user's terms."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise Error(f"{path}: cannot create it: directory {parent} does not exist; create it first")
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{os.urandom(8).hex()}.creating")
    _claim(tmp, path)
    return tmp


def _claim(name: str, path: str) -> None:
    """Create the empty file ``name`` (exclusively); errors say why in the user's terms."""
    try:
        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        raise
    except OSError as exc:
        raise creation_error(exc, path) from None


def creation_error(exc: OSError, path: str) -> Error:
    """What stopped a new store from being made at ``path``, and what to do about it."""
    parent = os.path.dirname(path) or "."
    start = f"{path}: cannot create the store"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Error(f"{start}: permission denied: you may not create files in {parent}; "
                     "choose a directory you can write to, or ask its owner for write permission")
    if exc.errno == errno.EROFS:
        return Error(f"{start}: {parent} is on a read-only filesystem; choose a writable location")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(f"{start}: no space left on the device (or quota) holding {parent}; "
                                "free some space and retry")
    if exc.errno == errno.ENOENT:
        return Error(f"{start}: {parent} does not accept new files (it is a special filesystem "
                     "such as /proc); choose another directory")
    return Error(f"{start} in {parent}: {exc.strerror}")


def initialize(path: str, options: Options, wal: bool = False) -> None:
    """Create kvstore's schema inside the empty database at ``path``, in one transaction.

    The check for emptiness is repeated under ``BEGIN IMMEDIATE``: of several processes
    initialising one empty file, the first does the work and the rest find it done. ``wal``
    switches a private new file to WAL first (a shared one is switched by ensure_schema).
    """
    try:
        import sqlalchemy as sa
        from alembic import command

        from kvstore import schema
        from kvstore.history import alembic_config
    except ImportError as exc:
        raise Error(f"{path}: creating a store needs SQLAlchemy and Alembic, which are missing "
                    f"({exc}); reinstall kvstore with its dependencies") from None

    raw = connect(path, options)
    try:
        if wal:
            raw.execute("PRAGMA journal_mode = WAL")
        engine = sa.create_engine("sqlite://", creator=lambda: raw, poolclass=sa.pool.StaticPool)
        with engine.connect() as sa_conn:
            sa_conn.exec_driver_sql("BEGIN IMMEDIATE")
            (app_id,) = raw.execute("PRAGMA application_id").fetchone()
            (objects,) = raw.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if app_id == APPLICATION_ID:  # another process got here first
                sa_conn.rollback()
                return
            if app_id or objects:
                sa_conn.rollback()
                raise _foreign(path, app_id)
            raw.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            schema.create(sa_conn)
            command.stamp(alembic_config(sa_conn), "head")
            sa_conn.commit()
    except Error:
        raise
    except sqlite3.Error as exc:
        from kvstore.errors import translate

        raise translate(exc, path) from exc
    except Exception as exc:  # SQLAlchemy wraps sqlite3's errors (a full disk, say)
        from kvstore.sqlite.migrate import migration_error

        raise migration_error(exc, path) from exc
    finally:
        raw.close()  # the last connection closes: a WAL is checkpointed into the file


def copy_into_place(path: str, copy: Callable[[sqlite3.Connection], None]) -> None:
    """Make the new SQLite file ``path`` by running ``copy`` into a fresh connection beside it.

    Built in a temporary file, switched to WAL and linked into place (an existing ``path`` is
    never replaced), so an interrupted copy leaves no half-made file at ``path``.
    """
    tmp = _temporary_beside(path)
    try:
        target = sqlite3.connect(tmp, isolation_level=None)
        try:
            copy(target)
            target.execute("PRAGMA journal_mode = WAL")
        finally:
            target.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise Error(f"{path}: already exists; choose another path") from None
        except OSError:  # no hard links: claim the name, then move the copy over our claim
            _claim(path, path)
            os.replace(tmp, path)
    except sqlite3.Error as exc:
        from kvstore.errors import translate

        raise translate(exc, path) from exc
    finally:
        remove_database(tmp)


def remove_database(path: str) -> None:
    """Delete an SQLite file and its -wal, -shm and -journal companions, if present (another
    process's open may clear a creation's temporary name meanwhile: see check_links)."""
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            os.remove(name)
        except FileNotFoundError:
            pass


def writable(path: str) -> bool:
    """False for a file without write permission bits (even for root, who could write it), or
    in a directory where SQLite could not create the -wal and -shm files a writer needs."""
    if not (os.access(path, os.W_OK) and os.stat(path).st_mode & 0o222):
        return False
    if os.access(os.path.dirname(os.path.realpath(path)), os.W_OK):
        return True
    return all(os.access(companion(path, suffix), os.W_OK) for suffix in ("-wal", "-shm"))


def check_path(path: str | os.PathLike[str]) -> str:
    """The path as a str; SQLite URIs and the empty name are refused, not taken as file names."""
    name = os.fspath(path)
    if not isinstance(name, str):
        raise TypeError(f"the path must be a str or os.PathLike of str, not {type(name).__name__}")
    if name == "":
        raise ValueError("the path is empty; name a file, or pass ':memory:' for an in-memory store")
    if name.lower().startswith("file:"):
        raise ValueError(
            f"{name!r} looks like an SQLite URI, which kvstore.open() does not take: pass the "
            "file's path (with readonly=True to only read), or ':memory:' for an in-memory store; "
            f"for a file really named like that, write './{name}'"
        )
    return name
