"""The exceptions kvstore raises for storage problems.

Python-level misuse (a missing key, a value of the wrong type) raises the usual
KeyError/TypeError/ValueError/OverflowError instead; everything that goes wrong with the
file itself is a subclass of :class:`Error`, so one ``except kvstore.Error`` catches it.
"""

from __future__ import annotations

import sqlite3


class Error(Exception):
    """Base class for every storage problem kvstore reports."""


class NotAKvstoreFileError(Error):
    """The path holds something other than a kvstore database (empty, not SQLite, or foreign)."""


class SchemaTooNewError(Error):
    """The file was written by a newer kvstore whose schema this version does not know."""


class MigrationError(Error):
    """Bringing the file to the current schema failed; the file keeps its previous revision."""


class BusyError(Error):
    """Another connection held the file's write lock for longer than the busy timeout."""


class ReadOnlyError(Error):
    """A write was attempted on a store that can only be read."""


class StorageFullError(Error):
    """The disk (or the file's size limit) is full; nothing of the failed write was kept."""


class CorruptError(Error):
    """SQLite found the file damaged."""


# SQLite primary result codes (the low byte of an extended code) and what they mean to a user.
# Storage problems (STORAGE) keep their own exception wherever they happen, migrations included.
_BY_CODE: dict[int, tuple[type[Error], str]] = {
    sqlite3.SQLITE_BUSY: (BusyError, "the database is busy: another connection held the write "
                                     "lock for longer than the timeout; retry, or wait longer "
                                     "(timeout= in Python, --timeout on the command line)"),
    sqlite3.SQLITE_LOCKED: (BusyError, "a table is locked by another connection sharing this "
                                       "one's cache; retry when it has finished"),
    sqlite3.SQLITE_READONLY: (ReadOnlyError, "the store is read-only: check the file's and its "
                                             "directory's permissions, or open it for writing "
                                             "(without readonly=True in Python)"),
    sqlite3.SQLITE_IOERR: (Error, "a disk I/O error occurred; check the disk and the file, then retry"),
    sqlite3.SQLITE_CORRUPT: (CorruptError, "the database file is damaged (corrupt); restore it from a backup"),
    sqlite3.SQLITE_FULL: (StorageFullError, "the disk or the database size limit is full; free some "
                                            "space and retry (nothing of the failed write was kept)"),
    sqlite3.SQLITE_CANTOPEN: (Error, "SQLite cannot open the database file; check that the path "
                                     "and its directory exist and are accessible"),
    sqlite3.SQLITE_NOTADB: (NotAKvstoreFileError, "the file is not an SQLite database"),
}

STORAGE = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR,
                     sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL, sqlite3.SQLITE_NOTADB})
"""Result codes that say the storage failed, not the statement: never a "migration failed"."""


def primary_code(exc: BaseException) -> int | None:
    """The SQLite primary result code of a sqlite3 exception, or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def translate(exc: sqlite3.Error, path: str) -> Exception:
    """Turn a raw sqlite3 exception into the kvstore exception a user can act on."""
    code = primary_code(exc)
    if code in _BY_CODE:
        cls, message = _BY_CODE[code]
        return cls(f"{path}: {message} (SQLite said: {exc})")
    if code == sqlite3.SQLITE_TOOBIG:
        return ValueError(f"{path}: a key or value is larger than SQLite allows ({exc})")
    if isinstance(exc, sqlite3.DataError):
        return ValueError(f"{path}: SQLite rejected the data: {exc}")
    if UNDECODABLE in str(exc):
        return Error(f"{path}: a key or value in the file is text that is not valid UTF-8 (another program "
                     "wrote it), which kvstore cannot read; verify() lists such rows:"
                     f" rewrite or delete them with another program (SQLite said: {exc})")
    return Error(f"{path}: {exc}")


UNDECODABLE = "Could not decode to UTF-8"
"""What Python's sqlite3 says when a text value it reads is not valid UTF-8."""


class UnreachableError(Error):
    """The database server could not be reached (down, wrong host or port, network)."""


class AccessDeniedError(Error):
    """The server refused the credentials, or the role may not use the database or schema."""


class NoSuchDatabaseError(Error):
    """The URL names a database that does not exist on the server."""


class RetryableError(BusyError):
    """PostgreSQL broke a deadlock or a serialization conflict by rolling back a transaction.

    A single call is retried by kvstore (a few times); inside a ``transaction()`` block the
    error reaches the block, whose transaction PostgreSQL has aborted: nothing written in the
    block is kept; run the whole block again.
    """
