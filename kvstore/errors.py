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
_BY_CODE: dict[int, tuple[type[Error], str]] = {
    5: (BusyError, "the database is busy: another connection held the write lock for longer "
                   "than the timeout; retry, or open the store with a larger timeout="),
    6: (BusyError, "a table is locked by another connection sharing this one's cache; "
                   "retry when it has finished"),
    8: (ReadOnlyError, "the store is read-only: check the file's and its directory's permissions, "
                       "or open it without readonly=True"),
    10: (Error, "a disk I/O error occurred; check the disk and the file, then retry"),
    11: (CorruptError, "the database file is damaged (corrupt); restore it from a backup"),
    13: (StorageFullError, "the disk or the database size limit is full; free some space and "
                           "retry (nothing of the failed write was kept)"),
    14: (Error, "SQLite cannot open the database file; check that the path and its "
                "directory exist and are accessible"),
    26: (NotAKvstoreFileError, "the file is not an SQLite database"),
}


def translate(exc: sqlite3.Error, path: str) -> Exception:
    """Turn a raw sqlite3 exception into the kvstore exception a user can act on."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _BY_CODE:
        cls, message = _BY_CODE[code & 0xFF]
        return cls(f"{path}: {message} (SQLite said: {exc})")
    if code is not None and code & 0xFF == 18:  # SQLITE_TOOBIG
        return ValueError(f"{path}: a key or value is larger than SQLite allows ({exc})")
    if isinstance(exc, sqlite3.DataError):
        return ValueError(f"{path}: SQLite rejected the data: {exc}")
    return Error(f"{path}: {exc}")
