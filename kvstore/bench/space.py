"""Space: how many bytes of file a store of large values takes per byte of data.

For each value size, a fresh store is loaded with about ``total`` bytes of values, once through
one ``update()`` and once through single ``set()`` calls, with values that repeat (six distinct
ones) and with values that are all distinct. The file is measured after the store is closed
and its WAL checkpointed, and divided by the logical bytes: the keys' and values' sizes (8 per
int key, UTF-8 bytes per text). Issue 11's targets: at most 1.5× when values repeat, at most
2.5× when all are distinct.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

SIZES = (1000, 1024, 4096, 65536, 1048576)
"""Value sizes measured by default: 1 KB (decimal and binary: a row of 1,024 bytes is the worst
case of the four sizes), 4 KiB, 64 KiB, 1 MiB."""

REPEATED_DISTINCT = 6
GOALS = {"repeated": 1.5, "distinct": 2.5}

Step = Callable[[str], None]


def values(size: int, count: int, distinct: bool, seed: int = 7) -> Iterator[str]:
    """``count`` text values of ``size`` ASCII characters: all different, or six in turn.

    Random letters (not one repeated character), so the values look like documents to
    nothing but their size; each differs from the others from its first character on.
    """
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 {}:,\""
    pool = [] if distinct else ["".join(rng.choices(alphabet, k=size)) for _ in range(REPEATED_DISTINCT)]
    for i in range(count):
        yield "".join(rng.choices(alphabet, k=size)) if distinct else pool[i % REPEATED_DISTINCT]


def file_bytes_after(path: str) -> int:
    """The file's size once its WAL is checkpointed into it (as a user would copy it)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return os.path.getsize(path)


def measure_one(path: str, size: int, count: int, distinct: bool, how: str) -> dict[str, Any]:
    """Load ``count`` values of ``size`` into a new store at ``path``; its file ÷ data ratio."""
    import kvstore

    logical = 0
    with kvstore.open(path) as db:
        if how == "update":
            pairs = list(enumerate(values(size, count, distinct)))
            db.update(pairs)
        else:
            pairs = []
            for pair in enumerate(values(size, count, distinct)):
                db[pair[0]] = pair[1]
                pairs.append(pair)
        logical = sum(8 + len(value.encode()) for _, value in pairs)
        assert db.verify() == [], "counts are not exact after the load"
    file_bytes = file_bytes_after(path)
    kind = "distinct" if distinct else "repeated"
    ratio = file_bytes / logical
    return {
        "value_bytes": size, "items": count, "values": kind, "load": how,
        "logical_bytes": logical, "file_bytes": file_bytes, "ratio": ratio,
        "goal": GOALS[kind], "met": ratio <= GOALS[kind],
    }


def step_labels(sizes: tuple[int, ...] | None = None) -> list[str]:
    """The labels :func:`measure_space` calls ``step`` with, in order."""
    return [f"space {size:,} B" for size in (SIZES if sizes is None else sizes)]


def measure_space(folder: str, sizes: tuple[int, ...] | None = None, total: int = 24 << 20,
                  step: Step = lambda label: None) -> list[dict[str, Any]]:
    """One row per (value size, repeated/distinct, update/set): file ÷ logical bytes.

    ``sizes``: value sizes in bytes (default :data:`SIZES`); ``total``: bytes of values per
    store (at least twelve values each).
    """
    rows = []
    for size in SIZES if sizes is None else sizes:
        count = max(REPEATED_DISTINCT * 2, total // size)
        for distinct in (False, True):
            for how in ("update", "set"):
                path = os.path.join(folder, f"space-{size}-{int(distinct)}-{how}.db")
                try:
                    rows.append(measure_one(path, size, count, distinct, how))
                finally:
                    for suffix in ("", "-wal", "-shm"):
                        if os.path.exists(path + suffix):
                            os.remove(path + suffix)
        step(f"space {size:,} B")
    return rows
