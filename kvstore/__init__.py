"""kvstore: a persistent key-value store on one SQLite file whose count(value) is instant.

    import kvstore
    with kvstore.open("foods.db") as db:
        db[42] = "apple"
        db.count("apple")   # 1: one primary-key lookup, however many items there are
"""

from kvstore.errors import (
    BusyError,
    CorruptError,
    Error,
    MigrationError,
    NotAKvstoreFileError,
    ReadOnlyError,
    SchemaTooNewError,
    StorageFullError,
)
from kvstore.store import Store, open
from kvstore.upkeep import ForeignRow, Mismatch, Problem, SchemaProblem

__version__ = "0.1.0"

__all__ = [
    "BusyError",
    "CorruptError",
    "Error",
    "ForeignRow",
    "MigrationError",
    "Mismatch",
    "NotAKvstoreFileError",
    "Problem",
    "ReadOnlyError",
    "SchemaProblem",
    "SchemaTooNewError",
    "StorageFullError",
    "Store",
    "open",
]
