"""Writing many pairs: update() in one transaction, update_in_batches(), and clear().

Large batches skip the per-row triggers and rebuild ``counts`` with one GROUP BY at the end,
inside the same transaction (see BULK_MIN); :meth:`BulkWrites._counts_suspended` is the one
place that suspends the triggers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import sqlite3

from kvstore.sqlite import VALUE_INDEX, sql, triggers, upkeep
from kvstore.sqlite.connection import CACHE, Options
from kvstore.errors import Error
from kvstore.api import pairs_of
from kvstore.sqlite.session import Session
from kvstore.validate import Value, check_pair

CHUNK = 10_000
"""Pairs per executemany() in update()."""

BULK_MIN = CHUNK
"""update() never takes the set-based path for fewer pairs than this (nor before one full CHUNK)."""

RUN = 100_000
"""Pairs the set-based path writes at a time, sorted by key first: the key index then takes
them in order, page after page, instead of at random (measured merging 1M pairs into 10M: 49 s
unsorted, 31 s in sorted runs of 200,000, 25 s sorted whole; a run of 100,000 pairs holds
~15 MB of Python objects)."""

INDEX_RATIO = 2
"""The set-based path also drops the value index, and builds it again at the end (one sort
instead of a random insertion per pair), when the pairs written are at least 1/INDEX_RATIO of
the rows the store held before."""

_INDEX_EXISTS = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?"

BULK_RATIO = 25
VALUE_WEIGHT = 8
"""update() switches to the set-based path (triggers dropped, counts rebuilt with one GROUP BY
at the end) before the chunk that brings the pairs written to at least BULK_MIN and
``(rows + VALUE_WEIGHT * distinct values) / BULK_RATIO`` of what the store held. Measured at
1M rows: the rebuild costs ~60 ns per row plus ~0.5 µs per distinct value; the triggers add
1.5-6 µs per written pair (the more the store outgrows the page cache, the more)."""


class BulkWrites(Session):
    """The bulk-writing methods of :class:`kvstore.Store`."""

    options: Options

    def clear(self) -> None:
        """Remove every pair in one transaction (without running the triggers once per row)."""
        with self.transaction(), self._counts_suspended(), self._using() as conn:
            conn.execute(sql.CLEAR_ITEMS)

    def update(self, other: Any = (), /, **kwargs: Value) -> None:
        """Write many pairs in one transaction; any bad pair rejects the whole batch.

        Takes a mapping, an iterable of pairs (consumed as a stream, never held in memory
        whole), and keyword pairs, like ``dict.update``. Large batches skip the per-row
        triggers and rebuild ``counts`` with one GROUP BY at the end (see BULK_MIN). A source
        of pairs that itself reads the store sees the batch's rows so far, but counts (and
        ``group_by``, whose index may be rebuilt at the end) only once update() returns.
        """
        pairs = pairs_of(other)
        expected = len(other) + len(kwargs) if hasattr(other, "__len__") else None
        if kwargs:
            pairs = itertools.chain(pairs, kwargs.items())
        with self.transaction():
            self._load(iter(pairs), expected)

    def _load(self, pairs: Iterator[Any], expected: int | None = None) -> None:
        """Write ``pairs``; ``expected`` (their number, when the source knows it) lets the
        set-based path start with the first chunk instead of once enough pairs were written."""
        written = 0
        bulk = False
        held, values = None, 0  # rows + VALUE_WEIGHT * distinct values before the update, read once
        with ExitStack() as suspended:
            while True:
                # The caller's iterator runs outside the connection's lock: it may use the store.
                size = RUN if bulk else CHUNK
                chunk = list(map(check_pair, itertools.islice(pairs, size)))
                written += len(chunk)
                projected = max(written, expected or 0)
                if not bulk and len(chunk) == CHUNK and projected >= BULK_MIN:
                    if held is None:
                        with self._using() as conn:
                            held, values = self._held(conn)
                    if projected * BULK_RATIO >= held:
                        bulk = True
                        suspended.enter_context(self._bulk_cache())
                        rows = held - VALUE_WEIGHT * values
                        suspended.enter_context(self._counts_suspended(index=projected * INDEX_RATIO >= rows))
                if bulk:
                    chunk.sort(key=in_key_order)  # stable: of two pairs with one key the later wins
                with self._using() as conn:
                    conn.executemany(sql.UPSERT, chunk)
                if len(chunk) < size:
                    break

    @contextmanager
    def _counts_suspended(self, index: bool = False) -> Iterator[None]:
        """Inside transaction(): the count triggers (and, given ``index``, the value index) are
        off for the block; when it ends normally the index is built again, counts rebuilt and
        the triggers recreated. On an exception the transaction's rollback restores everything
        (SQLite's DDL is transactional)."""
        with self._using() as conn:
            triggers.drop(conn)
            # Only an index that is there (another program may have dropped it, or an update()
            # run from this one's source of pairs dropped it already) is dropped and rebuilt.
            index = index and conn.execute(_INDEX_EXISTS, (VALUE_INDEX,)).fetchone() is not None
            if index:
                conn.execute(f"DROP INDEX {VALUE_INDEX}")
        yield
        with self._using() as conn:
            # The sorts below take as much memory as the page cache allows before spilling to
            # temporary files: back to the normal cache first (Options.bulk_cache is for the
            # random inserts above, not for sorting).
            conn.execute(f"PRAGMA cache_size = -{CACHE // 1024}")
            if index:  # IF NOT EXISTS: a repair() or update() run from the source may have built it
                conn.execute(sql.VALUE_INDEX.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))
            self._rebuild_counts(conn)

    @contextmanager
    def _bulk_cache(self) -> Iterator[None]:
        """This thread's connection gets Options.bulk_cache bytes of page cache for the block.

        Memory is bounded by that cache: the sorts that build the value index and recount
        spill to temporary files beyond it (temp_store=FILE for the block; in memory, sorting
        10M index entries took ~1 GiB), and the file is read with read() calls, not through the
        memory map, whose pages would count in the process's RSS as a whole table is scanned.
        """
        size = max(self.options.bulk_cache, CACHE)
        with self._using() as conn:
            conn.execute(f"PRAGMA cache_size = -{size // 1024}")
            conn.execute("PRAGMA temp_store = FILE")
            conn.execute("PRAGMA mmap_size = 0")
        try:
            yield
        finally:
            try:
                with self._using() as conn:
                    conn.execute(f"PRAGMA cache_size = -{CACHE // 1024}")
                    conn.execute("PRAGMA temp_store = MEMORY")
                    conn.execute(f"PRAGMA mmap_size = {self.options.mmap_size}")
                    conn.execute("PRAGMA shrink_memory")  # hand the pages beyond it back now
            except Error:  # the connection is gone (closed meanwhile): so is its cache
                pass

    def _held(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """What a rebuild of counts would cost, in rows (rows + VALUE_WEIGHT * distinct values),
        and the distinct values: read from counts (small), not items."""
        rows, values = conn.execute(sql.HELD).fetchone()
        return int(rows + VALUE_WEIGHT * values), int(values)

    def _rebuild_counts(self, conn: sqlite3.Connection) -> None:
        """Recompute counts from items and (re)create the triggers; caller holds a transaction."""
        conn.execute(sql.CLEAR_COUNTS)
        conn.execute(upkeep.recount_statements(conn)[1])
        conn.execute(sql.CLEAR_DISPLACED)
        triggers.create(conn)


def in_key_order(pair: tuple[Any, Any]) -> tuple[int, Any]:
    """SQLite's order of keys: integers, then text, then blobs (UTF-8 keeps code point order)."""
    key = pair[0]
    return (0 if type(key) is int else 1 if type(key) is str else 2), key


