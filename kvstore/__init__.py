"""kvstore: a persistent key-value store on one SQLite file whose count(value) is instant.

    import kvstore
    with kvstore.open("foods.db") as db:
        db[42] = "apple"
        db.count("apple")   # 1: one index lookup, however many items there are
"""

from __future__ import annotations

from kvstore.errors import (
    AccessDeniedError,
    BusyError,
    CorruptError,
    Error,
    MigrationError,
    NoSuchDatabaseError,
    NotAKvstoreFileError,
    ReadOnlyError,
    RetryableError,
    SchemaTooNewError,
    StorageFullError,
    UnreachableError,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads any such name)
if TYPE_CHECKING:
    from typing import Any

    from kvstore.api import StoreAPI
    from kvstore.store import Store, open

_UPKEEP = ("ForeignRow", "Mismatch", "Problem", "SchemaProblem")


def __getattr__(name: str) -> Any:
    # Store and open() load kvstore.store (and with it dataclasses, typing, threading) on first
    # use: `kvstore count` in a fresh process answers with sqlite3 alone (kvstore.cli.fast).
    if name in ("Store", "open"):
        from kvstore import store

        return getattr(store, name)
    if name == "StoreAPI":  # the type kvstore.open() returns, whichever backend
        from kvstore.api import StoreAPI

        return StoreAPI
    # __version__ comes from the installed metadata, read on first use: importing
    # importlib.metadata costs milliseconds that `kvstore count` should not pay.
    # The problem classes of verify() load with kvstore.problems, and the stopwatch (which
    # imports logging and inspect) with kvstore.timer, on first use: `kvstore count`
    # should not pay for them.
    if name in _UPKEEP:
        from kvstore import problems

        return getattr(problems, name)
    if name in ("stopwatch", "Stopwatch"):
        from kvstore import timer

        return getattr(timer, name)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("kvstore")
        except PackageNotFoundError:  # a source checkout on sys.path without an install
            return "0+unknown"
    raise AttributeError(f"module 'kvstore' has no attribute {name!r}")


__all__ = [
    "AccessDeniedError",
    "BusyError",
    "CorruptError",
    "Error",
    "ForeignRow",
    "MigrationError",
    "Mismatch",
    "NoSuchDatabaseError",
    "NotAKvstoreFileError",
    "Problem",
    "ReadOnlyError",
    "RetryableError",
    "SchemaProblem",
    "SchemaTooNewError",
    "StorageFullError",
    "UnreachableError",
    "Stopwatch",
    "Store",
    "StoreAPI",
    "open",
    "stopwatch",
]
