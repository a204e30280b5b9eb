"""Writing many pairs: update() in one transaction, update_in_batches(), and clear().

Large batches skip the per-row triggers and rebuild ``counts`` with one GROUP BY at the end,
inside the same transaction (see BULK_MIN); :meth:`BulkWrites._counts_suspended` is the one
place that suspends the triggers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from operator import itemgetter
from typing import Any

import sqlite3

from kvstore.sqlite import VALUE_INDEX, sql, triggers, upkeep
from kvstore.sqlite.connection import CACHE, Options
from kvstore.errors import Error
from kvstore.api import pairs_of
from kvstore.sqlite.session import Session
from kvstore.validate import INT_MAX, INT_MIN, Key, Value, check_pair

CHUNK = 10_000
"""Pairs per executemany() in update()."""

BULK_MIN = CHUNK
"""update() never takes the set-based path for fewer pairs than this (nor before one full CHUNK)."""

RUN = 100_000
"""Pairs the set-based path writes at a time, sorted by key first: the key index then takes
them in order, page after page, instead of at random (measured merging 1M pairs into 10M: 49 s
unsorted, 31 s in sorted runs of 200,000, 25 s sorted whole; a run of 100,000 pairs holds
~15 MB of Python objects). A list or tuple (whose pairs are in memory already) is sorted and
written whole, as one run: its pairs cost a reference each; 1M pairs into 10M then take about
as long as raw sqlite3 sorting them whole (see kvstore.bench.sides.BestMerge).

Measured and not taken for generators: staging the pairs in a TEMP table (temp_store=FILE) and
writing them with one ``INSERT ... SELECT ... ORDER BY key``, which gives one key order with
bounded Python memory: a streamed 10M load took 90 s (stage 32 s, sorted insert 33 s, value
index 22 s) against ~85 s in runs, and peaked at 434 MiB RSS against ~275 MiB."""

INDEX_RATIO = 2
"""The set-based path also drops the value index, and builds it again at the end (one sort
instead of a random insertion per pair), when the pairs written are at least 1/INDEX_RATIO of
the rows the store held before."""

SORT_SHARE = 2
"""The set-based path keeps Options.bulk_cache for the sorts at its end (the value index, the
recount) when SORT_SHARE times the store's bytes fit in it: the page cache then holds at most
the store, and the sorter's memory (SQLite gives a sort as much as the page cache) at most the
index entries, which are fewer bytes than the store. Bigger stores sort with the normal cache,
spilling to temporary files. Measured: update() of a list of 1M pairs into an empty store, 6
runs a side interleaved on a busy machine, medians 5.1 s with the bulk cache for the sorts,
5.8 s with the 32 MiB cache (ranges 4.7-6.8 s and 4.4-6.4 s). Judged by bytes, not rows: 1.2M
pairs with 100-character keys kept the bulk cache under a rule by rows and peaked at 529 MiB
(276 MiB with the normal cache). Bigger stores with half the bulk cache for the sorts instead
of the normal cache: a streamed 10M load no faster (55.0 and 55.1 s against 58.2 and 52.6 s)
and 97 MiB more at its peak."""

SORT_THREADS = 2
"""Helper threads SQLite may start for each sort of the set-based path (``PRAGMA threads``):
while one thread reads rows into a sorted run, others sort and write the runs before it, and
the runs are merged by several threads. Used only by sorts too big for memory (a 10M-pair
store's value index), each run then SORT_CACHE bytes. Measured on a streamed 10M load, two
cores, 4 runs a side interleaved after 2 first ones: median 51.0 s (46.8-57.2) against 58.4 s
(57.9-59.8) with no helper thread and 32 MiB runs, the peak RSS 7-8 MiB higher."""

SORT_CACHE = CACHE // 2
"""Bytes of page cache (which is also the size of each sorted run held in memory) for the
sorts of a store too big to sort in the bulk cache (see SORT_SHARE): with SORT_THREADS, up to
1 + SORT_THREADS runs are in memory at once, so each is smaller than the normal cache."""

_INDEX_EXISTS = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?"
_STORE_BYTES = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"

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
        whole; a list or tuple is sorted whole, at a reference per pair, see RUN), and keyword
        pairs, like ``dict.update``. Large batches skip the per-row triggers and rebuild
        ``counts`` with one GROUP BY at the end (see BULK_MIN). A source of pairs that itself
        reads the store sees the rows of the chunks and runs written so far, but counts (and
        ``group_by``, whose index may be rebuilt at the end) only once update() returns.
        """
        pairs = pairs_of(other)
        expected = len(other) + len(kwargs) if hasattr(other, "__len__") else None
        if kwargs:
            pairs = itertools.chain(pairs, kwargs.items())
        whole = type(other) in (list, tuple) and not kwargs
        with self.transaction():
            self._load(iter(pairs), expected, whole)

    def _load(self, pairs: Iterator[Any], expected: int | None = None, whole: bool = False) -> None:
        """Write ``pairs``; ``expected`` (their number, when the source knows it) lets the
        set-based path start with the first chunk instead of once enough pairs were written;
        ``whole`` (the source is a list or tuple, whose pairs are in memory already) lets it
        sort and write them as one run."""
        written = 0
        bulk = False
        held, values = None, 0  # rows + VALUE_WEIGHT * distinct values before the update, read once
        with ExitStack() as suspended:
            while True:
                # The caller's iterator runs outside the connection's lock: it may use the store.
                size = RUN if bulk else CHUNK
                chunk = list(itertools.islice(pairs, size))
                last = len(chunk) < size
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
                        if whole:  # one run, in one key order: a list's pairs cost a reference each
                            chunk += pairs
                            last = True
                checked, order = checked_pairs(chunk)
                if bulk:
                    checked.sort(key=order)  # stable: of two pairs with one key the later wins
                with self._using() as conn:
                    conn.executemany(sql.UPSERT, checked)
                if last:
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
            # temporary files (times 1 + SORT_THREADS runs): down to SORT_CACHE first
            # (Options.bulk_cache is for the random inserts above), unless the store is small
            # enough that its pages and the sort together fit in the bulk cache (see SORT_SHARE).
            (stored,) = conn.execute(_STORE_BYTES).fetchone()
            if SORT_SHARE * stored > self.options.bulk_cache:
                conn.execute(f"PRAGMA cache_size = -{SORT_CACHE // 1024}")
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
        Sorts may use SORT_THREADS helper threads for the block.
        """
        size = max(self.options.bulk_cache, CACHE)
        with self._using() as conn:
            # Given back at the end as they were: the normal settings, or, for an update() run
            # from the source of pairs of another, the outer one's, which it still needs (its
            # final sorts would not spill with temp_store = MEMORY).
            cache, threads, temp_store = (
                conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("cache_size", "threads", "temp_store")
            )
            mapped = conn.execute("PRAGMA mmap_size").fetchone()  # no row for an in-memory store
            mmap_size = self.options.mmap_size if mapped is None else mapped[0]
            conn.execute(f"PRAGMA cache_size = -{size // 1024}")
            conn.execute("PRAGMA mmap_size = 0")
            # SQLite refuses to change temp_store inside a transaction once the connection's
            # temp database is open (something used a TEMP object on it): the sorts then stay
            # in memory rather than failing the update().
            spilled = _quietly(conn, "PRAGMA temp_store = FILE")
            conn.execute(f"PRAGMA threads = {SORT_THREADS}")
        try:
            yield
        finally:
            try:
                with self._using() as conn:
                    conn.execute(f"PRAGMA cache_size = {int(cache)}")
                    conn.execute(f"PRAGMA threads = {int(threads)}")
                    if spilled:  # may fail likewise (a TEMP object used meanwhile): FILE stays, harmless
                        _quietly(conn, f"PRAGMA temp_store = {int(temp_store)}")
                    conn.execute(f"PRAGMA mmap_size = {int(mmap_size)}")
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


def _quietly(conn: sqlite3.Connection, pragma: str) -> bool:
    """Run ``pragma``; False if SQLite refused it (OperationalError)."""
    try:
        conn.execute(pragma)
    except sqlite3.OperationalError:
        return False
    return True


def in_key_order(pair: tuple[Any, Any]) -> tuple[int, Any]:
    """SQLite's order of keys: integers, then text, then blobs (UTF-8 keeps code point order)."""
    key = pair[0]
    return (0 if type(key) is int else 1 if type(key) is str else 2), key


SLICE = RUN
"""Pairs checked_pairs() looks at per pass (bounds the lists of keys and values it makes)."""

_first, _second = itemgetter(0), itemgetter(1)


def checked_pairs(items: list[Any]) -> tuple[list[tuple[Key, Value]], Callable[[Any], Any]]:
    """``check_pair`` of every item of ``items`` (a list update() made, checked in place), and
    a sort key putting them in SQLite's key order.

    The common case (a slice of tuples of two, keys all ints, all str or all bytes, values of
    one plain type) is checked with a few passes of C-level calls (~0.2 µs a pair instead of
    ~0.7 µs for a Python call per pair). Any other slice goes through ``check_pair`` item by
    item, which raises its precise error; a tuple of two that passes is kept as it is, and
    only another kind of pair (a list of two) is replaced by its checked tuple, so the check
    costs no memory per pair whichever path it takes. When every key is of one kind the sort
    key is ``itemgetter(0)`` (~0.5 s instead of ~1.6 s for 1M pairs with
    :func:`in_key_order`): one type of key sorts in Python as SQLite orders it.
    """
    kinds: set[type] = set()
    for start in range(0, len(items), SLICE):
        part = items[start:start + SLICE] if len(items) > SLICE else items
        key_kinds = _fast(part)
        if key_kinds is None:
            for i, pair in enumerate(part, start):
                checked = check_pair(pair)
                if type(pair) is not tuple or len(pair) != 2:
                    items[i] = checked
            key_kinds = set(map(type, map(_first, items[start:start + SLICE])))
        kinds |= key_kinds
    return items, (_first if len(kinds) <= 1 else in_key_order)


def _fast(part: list[Any]) -> set[type] | None:
    """The key type of ``part`` if every item is a tuple of two whose key and value pass, by
    whole-list passes (keys of one type, values of one type); None if not."""
    if not (set(map(type, part)) == {tuple} and set(map(len, part)) == {2}):
        return None
    keys, values = list(map(_first, part)), list(map(_second, part))
    key_kinds = set(map(type, keys))
    return key_kinds if _plain(keys, key_kinds, key=True) and _plain(values, set(map(type, values))) else None


def _plain(objects: list[Any], kinds: set[type], key: bool = False) -> bool:
    """Whether ``objects`` (all of one of ``kinds``) pass check_key/check_value, by whole-list passes."""
    if len(kinds) != 1:
        return False
    (kind,) = kinds
    if kind is str:
        return all(map(str.isascii, objects))  # non-ASCII text: check_pair checks its encoding
    if kind is int:
        return bool(INT_MIN <= min(objects) and max(objects) <= INT_MAX)
    if kind is bytes:
        return True
    if kind is float and not key:
        return not any(map(math.isnan, objects))
    return False
