"""The Store: a persistent MutableMapping whose count(value) is one primary-key lookup."""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, MutableMapping, ValuesView
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, cast

from kvstore import files, ranges, sql, triggers
from kvstore.connection import MEMORY, Options, connect
from kvstore.constants import VALUE_INDEX
from kvstore.errors import Error, translate
from kvstore.migrate import ensure_schema
from kvstore.files import initialize
from kvstore.pool import DISCONNECTED, OPENING, ConnectionPool, Slot
if TYPE_CHECKING:  # kvstore.upkeep is imported by verify() and repair(), not at start-up
    from kvstore.upkeep import Problem
from kvstore.validate import Key, Value, check_key, check_pair, check_stored_key, check_value

Strategy = Literal["counts", "group_by", "scan"]
_COUNT_SQL = {"counts": sql.COUNT, "group_by": sql.COUNT_GROUP_BY, "scan": sql.COUNT_SCAN}

PAGE = 1000
"""Rows fetched per query when iterating; no statement stays open while the caller runs."""

CHUNK = 10_000
"""Pairs per executemany() in update()."""

BULK_MIN = CHUNK
"""update() never takes the set-based path for fewer pairs than this (nor before one full CHUNK)."""

BULK_RATIO = 25
VALUE_WEIGHT = 8
"""update() switches to the set-based path (triggers dropped, counts rebuilt with one GROUP BY
at the end) before the chunk that brings the pairs written to at least BULK_MIN and
``(rows + VALUE_WEIGHT * distinct values) / BULK_RATIO`` of what the store held. Measured at
1M rows: the rebuild costs ~60 ns per row plus ~0.5 µs per distinct value; the triggers add
1.5-6 µs per written pair (the more the store outgrows the page cache, the more)."""

_MISSING = object()


class Store(MutableMapping):  # type: ignore[type-arg]
    """A dict-like store of ``key -> value`` on one SQLite file, with instant ``count(value)``.

    Thread-safe: each thread gets its own connection (see kvstore.pool, which also makes the
    store safe across ``os.fork()``). Several processes may use one file at once (WAL mode;
    writers wait up to ``timeout`` seconds for each other).
    """

    def __init__(self, path: str | os.PathLike[str], options: Options | None = None) -> None:
        path = _check_path(path)
        self.options = options or Options()
        self._keeper: sqlite3.Connection | None = None
        if path == MEMORY:
            self.path = MEMORY
            self._pool = self._in_memory()
            return
        # Resolved once: after os.chdir() new threads and forked children use the same file.
        self.path = os.path.abspath(path)
        if not self.options.readonly and os.path.exists(self.path) and not _writable(self.path):
            self.options = replace(self.options, readonly=True)
        ensure_schema(self.path, self.options)
        self._pool = ConnectionPool(self.path, self.options)

    def _in_memory(self) -> ConnectionPool:
        """A private in-memory database, kept alive by one idle connection until close()."""
        if self.options.readonly:
            raise ValueError("an in-memory store cannot be read-only: it starts empty")
        target = f"{MEMORY}{os.urandom(8).hex()}"
        with OPENING:  # no fork() while the schema is being made
            self._keeper = connect(target, self.options)
            try:
                initialize(target, self.options)
            except BaseException:
                self._keeper.close()
                raise
        return ConnectionPool(self.path, self.options, target=target)

    def _error(self, exc: sqlite3.Error, slot: Slot) -> Exception:
        if isinstance(exc, sqlite3.ProgrammingError) and (slot.dead or self._pool.closed):
            return Error(f"{self.path}: {slot.dead or self._pool.closed}")
        error = translate(exc, self.path)
        conn = slot.conn
        if slot.depth and conn is not DISCONNECTED and not conn.in_transaction:
            # SQLite rolled back the whole transaction by itself (it may after SQLITE_FULL, IOERR
            # or NOMEM). A stand-in transaction keeps the rest of the transaction() block from
            # autocommitting piecemeal; the block rolls it back and fails when it ends.
            slot.lost = error
            _quietly(conn, "BEGIN")
            error = type(error)(
                f"{error}; SQLite rolled back the whole transaction: nothing written in this "
                "transaction() block is kept"
            )
        return error

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, held (no fork or close() meanwhile), errors translated."""
        slot = self._pool.enter()
        try:
            yield slot.conn
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()

    def close(self) -> None:
        """Close every connection of this store; using it afterwards raises kvstore.Error.

        Calls in progress in other threads finish first; a transaction() block still open in
        another thread is rolled back, and that block raises kvstore.Error.
        """
        self._pool.close("the store is closed; open it again with kvstore.open()")
        if self._keeper is not None:
            self._keeper.close()  # the last connection: an in-memory database is gone

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as "this file, these options": the receiving process (multiprocessing with
        # the spawn method, a ProcessPoolExecutor) opens its own store on the same file.
        if self._pool.closed:
            raise Error(f"{self.path}: {self._pool.closed}")
        if self.path == MEMORY:
            raise TypeError("an in-memory store cannot be pickled: its data lives in this "
                            "process only; use a file path to share a store between processes")
        return (Store, (self.path, self.options))

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # A store is a handle on a file: equal only to itself (compare dict(a) == dict(b) to
    # compare contents), and hashable so it can be tracked for fork safety.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        state = "closed" if self._pool.closed else "open"
        return f"<kvstore.Store {self.path!r} ({state})>"

    # -- the mapping ---------------------------------------------------------------------

    def get(self, key: Key, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        check_key(key)
        slot = self._pool.enter()
        try:
            row = slot.conn.execute(sql.GET, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()
        return default if row is None else row[0]

    def __getitem__(self, key: Key) -> Value:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return cast(Value, value)

    def set(self, key: Key, value: Value) -> None:
        """Insert or overwrite; committed when this returns unless inside ``transaction()``."""
        check_key(key)
        check_value(value)
        slot = self._pool.enter()
        try:
            slot.conn.execute(sql.UPSERT, (key, value))
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()

    __setitem__ = set

    def delete(self, key: Key) -> bool:
        """Remove ``key``; True if it was there.

        Also takes the float and None keys that iteration returns for rows other programs wrote.
        """
        check_stored_key(key)
        slot = self._pool.enter()
        try:
            return slot.conn.execute(sql.DELETE, (key,)).rowcount > 0
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()

    def __delitem__(self, key: Key) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def pop(self, key: Key, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value (``default``, or KeyError, when missing); atomic.

        Also takes the float and None keys that iteration returns for rows other programs wrote.
        """
        check_stored_key(key)
        row = self._row(sql.POP, (key,))
        if row is not None:
            return row[0]
        if default is _MISSING:
            raise KeyError(key)
        return default

    def setdefault(self, key: Key, default: Any = None) -> Any:
        """The value under ``key``; if missing, store ``default`` and return it. Atomic.

        MutableMapping's version reads, then writes: two threads or processes could each be
        handed their own default while the store kept one. Here the write path re-reads under
        the write lock, so every caller gets the value that the store holds.
        """
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        check_value(default)
        with self.transaction():  # BEGIN IMMEDIATE: no writer between the re-read and the set
            value = self.get(key, _MISSING)
            if value is not _MISSING:
                return value
            self.set(key, default)
        return default

    def incr(self, key: Key, delta: int | float = 1) -> int | float:
        """Add ``delta`` to the number under ``key`` (a missing key starts at 0); the new value.

        One statement, so atomic across threads and processes. The sum keeps Python's types
        (int + int is an int, anything + float a float). Refused, changing nothing: a stored
        value that is not a number (TypeError), an int sum beyond 64 bits (OverflowError), a
        NaN sum (ValueError).
        """
        check_key(key)
        if type(delta) not in (int, float):
            raise TypeError(f"incr() adds an int or a float, not {type(delta).__name__}")
        check_value(delta)
        slot = self._pool.enter()
        try:
            row = slot.conn.execute(sql.INCR, (key, delta)).fetchone()
        except sqlite3.IntegrityError as exc:  # NOT NULL: SQLite stores a NaN sum as NULL
            raise ValueError(f"incr(): {key!r} + {delta!r} is not a number (NaN); nothing was changed") from exc
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()
        if row is not None:
            return row[0]  # type: ignore[no-any-return]
        current = self.get(key)
        if type(current) not in (int, float):
            raise TypeError(f"incr(): the value under {key!r} is {type(current).__name__} "
                            f"{current!r:.40}, not a number; nothing was changed")
        raise OverflowError(f"incr(): {current} + {delta} does not fit in SQLite's signed 64-bit "
                            "integer; nothing was changed (add a float to count beyond it)")

    def popitem(self) -> tuple[Key, Value]:
        """Remove and return the pair with the smallest key; KeyError when empty.

        Works on whatever row is there, unvalidated: a row another program wrote with a key
        kvstore would refuse (a float) must not stop a drain loop.
        """
        while True:
            rows = self._all(sql.ITEMS_FIRST, (), limit=1)
            if not rows:
                raise KeyError("popitem(): the store is empty")
            key, value = rows[0]
            row = self._row(sql.POP_ROW, (key, value))
            if row is not None:  # else another writer changed or took it first: try again
                return key, row[0]

    def clear(self) -> None:
        """Remove every pair in one transaction (without running the triggers once per row)."""
        with self.transaction(), self._counts_suspended(), self._using() as conn:
            conn.execute(sql.CLEAR_ITEMS)

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self._row(sql.LEN, ())[0])

    def __iter__(self) -> Iterator[Key]:
        # Keys only: values (maybe megabytes each) are not read to list the keys.
        return (key for (key,) in self._pages(sql.KEYS_FIRST, sql.KEYS_AFTER, ()))

    def keys(  # type: ignore[override]
        self, start: Key | None = None, stop: Key | None = None, *, prefix: str | bytes | None = None
    ) -> KeysView[Key] | Iterator[Key]:
        """The keys in key order; with ``start``/``stop`` (stop excluded) or ``prefix``, only those.

        Without arguments, a view (like a dict's); with them, an iterator. Order across types:
        ints, then strings, then bytes (see kvstore.ranges).
        """
        if start is None and stop is None and prefix is None:
            return KeysView(self)
        queries = (sql.KEYS_FROM, sql.KEYS_AFTER, sql.KEYS_FROM_BEFORE, sql.KEYS_AFTER_BEFORE)
        return (key for (key,) in self._range(queries, start, stop, prefix))

    def items(  # type: ignore[override]
        self, start: Key | None = None, stop: Key | None = None, *, prefix: str | bytes | None = None
    ) -> ItemsView[Key, Value] | Iterator[tuple[Key, Value]]:
        """``(key, value)`` pairs in key order, read a page at a time; ranges as for keys()."""
        if start is None and stop is None and prefix is None:
            return _Items(self)
        queries = (sql.ITEMS_FROM, sql.ITEMS_AFTER, sql.ITEMS_FROM_BEFORE, sql.ITEMS_AFTER_BEFORE)
        return self._range(queries, start, stop, prefix)

    def _range(self, queries: tuple[str, str, str, str], start: Any, stop: Any, prefix: Any) -> Iterator[Any]:
        lower, upper = ranges.bounds(start, stop, prefix)
        first, after, first_before, after_before = queries
        if upper is None:
            return self._pages(first, after, (lower,))
        return self._pages(first_before, after_before, (lower, upper), keep=(upper,))

    def values(self) -> ValuesView[Value]:
        """A view of the values in key order, read a page at a time."""
        return _Values(self)

    def update(self, other: Any = (), /, **kwargs: Value) -> None:
        """Write many pairs in one transaction; any bad pair rejects the whole batch.

        Takes a mapping, an iterable of pairs (consumed as a stream, never held in memory
        whole), and keyword pairs, like ``dict.update``. Large batches skip the per-row
        triggers and rebuild ``counts`` with one GROUP BY at the end (see BULK_MIN).
        """
        pairs = _pairs(other)
        if kwargs:
            pairs = itertools.chain(pairs, kwargs.items())
        with self.transaction():
            self._load(iter(pairs))

    def update_in_batches(self, pairs: Any, batch: int = 100_000, pause: float = 0.1) -> int:
        """Write many pairs as a series of update() transactions of ``batch`` pairs; the count.

        For loads of many millions: between batches the write lock is free for ``pause``
        seconds, so writers in other threads and processes get in instead of waiting for the
        whole load (SQLite's waiting writers poll at most every 100 ms). Each batch is
        all-or-nothing; a crash or a bad pair half-way keeps the batches already committed
        (the count returned so far tells how many) and nothing of the failing batch. Use
        update() when the whole load must be all-or-nothing.
        """
        if type(batch) is not int or batch < 1:
            raise ValueError(f"batch must be a whole number of pairs, 1 or more; got {batch!r}")
        if not 0 <= pause < 60:
            raise ValueError(f"pause must be 0 to 60 seconds; got {pause!r}")
        slot = self._pool.current()
        if slot is not None and slot.depth:
            raise Error(f"{self.path}: update_in_batches() commits as it goes, so it cannot run "
                        "inside transaction(); use update() there")
        stream, written = iter(_pairs(pairs)), 0
        while True:
            chunk = list(itertools.islice(stream, batch))
            if not chunk:
                return written
            if written:
                time.sleep(pause)
            self.update(chunk)
            written += len(chunk)
            if len(chunk) < batch:
                return written

    def _load(self, pairs: Iterator[Any]) -> None:
        written = 0
        bulk = False
        held = None  # rows + VALUE_WEIGHT * distinct values before the update, read once
        with ExitStack() as suspended:
            while True:
                # The caller's iterator runs outside the connection's lock: it may use the store.
                chunk = list(map(check_pair, itertools.islice(pairs, CHUNK)))
                written += len(chunk)
                if not bulk and len(chunk) == CHUNK and written >= BULK_MIN:
                    if held is None:
                        with self._using() as conn:
                            held = self._held(conn)
                    if written * BULK_RATIO >= held:
                        bulk = True
                        suspended.enter_context(self._counts_suspended())
                with self._using() as conn:
                    conn.executemany(sql.UPSERT, chunk)
                if len(chunk) < CHUNK:
                    break

    @contextmanager
    def _counts_suspended(self) -> Iterator[None]:
        """Inside transaction(): the count triggers are off for the block; when it ends normally
        counts are rebuilt with one GROUP BY and the triggers recreated. On an exception the
        transaction's rollback restores everything (SQLite's DDL is transactional)."""
        with self._using() as conn:
            triggers.drop(conn)
        yield
        with self._using() as conn:
            self._rebuild_counts(conn)

    def _held(self, conn: sqlite3.Connection) -> int:
        """What a rebuild of counts would cost, in rows: read from counts (small), not items."""
        rows, values = conn.execute(sql.HELD).fetchone()
        return int(rows + VALUE_WEIGHT * values)

    def _rebuild_counts(self, conn: sqlite3.Connection) -> None:
        """Recompute counts from items and (re)create the triggers; caller holds a transaction."""
        conn.execute(sql.CLEAR_COUNTS)
        conn.execute(sql.REBUILD_COUNTS)
        conn.execute(sql.CLEAR_DISPLACED)
        triggers.create(conn)

    # -- counting ------------------------------------------------------------------------

    def count(self, value: Value, strategy: Strategy = "counts") -> int:
        """How many keys hold ``value`` (0 if none).

        ``counts`` (default) is one primary-key lookup in the maintained counts table;
        ``group_by`` aggregates over the value index; ``scan`` reads every row. All three
        give the same answer; the last two exist to show what the counts table saves.
        Values compare as in Python: 1 and 1.0 are the same value, '1' and b'1' are not.
        """
        check_value(value)
        try:
            query = _COUNT_SQL[strategy]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown count strategy {strategy!r}; use one of: {', '.join(_COUNT_SQL)}"
            ) from None
        try:
            row = self._row(query, (value,))
        except Error as exc:
            cause = str(exc.__cause__)
            if strategy == "group_by" and ("no query solution" in cause or "no such index" in cause):
                raise Error(
                    f"{self.path}: count(strategy='group_by') needs kvstore's index "
                    f"{VALUE_INDEX} on items.value, which is missing or altered; run "
                    "repair() (or `kvstore repair FILE`) to restore it"
                ) from exc
            raise
        return 0 if row is None else row[0]

    def counts(self) -> dict[Value, int]:
        """Every stored value with how many keys hold it, largest count first."""
        return dict(self._all(sql.COUNTS, ()))

    def most_common(self, n: int | None = None) -> list[tuple[Value, int]]:
        """The ``n`` most held values with their counts, largest first (all when n is None)."""
        if n is not None and n <= 0:
            return []
        return self._all(sql.COUNTS, (), limit=n)

    def keys_for(self, value: Value, limit: int | None = None) -> Iterator[Key]:
        """The keys holding ``value`` (at most ``limit``), in key order, from the value index."""
        check_value(value)
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ValueError(f"limit must be a whole number 0 or more, or None; got {limit!r}")
        keys = (key for (key,) in self._pages(sql.KEYS_FOR_FIRST, sql.KEYS_FOR_AFTER, (value,)))
        return keys if limit is None else itertools.islice(keys, limit)

    # -- transactions --------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Make the writes inside the block atomic; nested blocks are savepoints.

        Commits when the outermost block ends normally and rolls back (to the block's start,
        for a nested one) when it raises. The write lock is taken at the start
        (``BEGIN IMMEDIATE``), so the block never fails half-way for lack of it.
        """
        slot = self._pool.enter()
        depth = slot.depth
        try:
            slot.conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT kvstore_{depth}")
            slot.depth = depth + 1
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()
        try:
            yield self
        except BaseException:
            self._end(slot, depth, commit=False)
            raise
        self._end(slot, depth, commit=True)

    def _end(self, slot: Slot, depth: int, commit: bool) -> None:
        """Commit or roll back the transaction() block at ``depth`` (a savepoint when nested)."""
        name = f"kvstore_{depth}"
        with slot.lock:
            slot.depth = depth
            conn = slot.conn
            if conn is DISCONNECTED:  # closed by close() in another thread, or inherited by fork
                if commit:
                    raise Error(
                        f"{self.path}: {slot.dead or self._pool.closed}; nothing written in the "
                        "transaction() block was kept"
                    )
                return
            if not commit:
                _quietly(conn, "ROLLBACK" if depth == 0 else f"ROLLBACK TO {name}")
                if depth:
                    _quietly(conn, f"RELEASE {name}")
                else:
                    slot.lost = None
                return
            lost = slot.lost
            if lost is not None:  # the block caught an error after which SQLite rolled back
                if depth == 0:
                    slot.lost = None
                    _quietly(conn, "ROLLBACK")
                raise (type(lost) if isinstance(lost, Error) else Error)(
                    f"{self.path}: the transaction was rolled back after an error that the block "
                    f"caught ({lost}); nothing written in the block was kept: run it again"
                )
            try:
                conn.execute("COMMIT" if depth == 0 else f"RELEASE {name}")
            except sqlite3.Error as exc:
                if depth == 0:
                    _quietly(conn, "ROLLBACK")
                raise self._error(exc, slot) from exc

    # -- upkeep --------------------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Every difference between the file and kvstore's model; empty when counts are exact.

        Mismatched counts, tables, the value index and triggers missing or altered, foreign
        triggers that may write counts, rows outside kvstore's types (see kvstore.upkeep).
        Reads one consistent snapshot; O(rows); a missing table is reported, not raised.
        """
        with self._snapshot() as conn:
            return self._problems(conn)

    def repair(self) -> int:
        """Restore what verify() reports, in one transaction; returns the problems fixed.

        Rows outside kvstore's types are data and stay; kvstore.upkeep says what else cannot
        be repaired, and why.
        """
        with self.transaction(), self._using() as conn:
            from kvstore import upkeep

            return upkeep.repair(conn, self.path)

    def _problems(self, conn: sqlite3.Connection) -> list[Problem]:
        from kvstore import upkeep

        return upkeep.problems(conn)

    def stats(self) -> dict[str, dict[str, int]]:
        """Rows and bytes on disk of ``items``, its value index and ``counts`` (from ``dbstat``)."""
        with self._snapshot() as conn:
            sizes = dict(
                conn.execute(
                    "SELECT name, sum(pgsize) FROM dbstat WHERE name IN (?, ?, ?) GROUP BY name",
                    ("items", VALUE_INDEX, "counts"),
                )
            )
            rows = conn.execute("SELECT count(*) FROM items").fetchone()[0]
            value_rows = conn.execute("SELECT count(*) FROM counts").fetchone()[0]
            (page_count,) = conn.execute("PRAGMA page_count").fetchone()
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        return {
            "items": {"rows": rows, "bytes": sizes.get("items", 0)},
            "value_index": {"rows": rows, "bytes": sizes.get(VALUE_INDEX, 0)},
            "counts": {"rows": value_rows, "bytes": sizes.get("counts", 0)},
            "file": {"rows": rows, "bytes": page_count * page_size},
        }

    def backup(self, dest: str | os.PathLike[str]) -> None:
        """Copy the store to the new file ``dest``: a consistent snapshot, while others write.

        SQLite's online backup copies every page inside one read transaction, so writers go
        on meanwhile and the copy is the store as of one moment. The copy is built beside
        ``dest`` and linked into place; an existing ``dest`` is refused, never overwritten.
        Works from an in-memory store too.
        """
        target = os.path.abspath(_check_path(dest))
        if os.path.lexists(target):
            raise Error(f"{target}: already exists; backup() writes a new file only: "
                        "choose another path or remove it first")
        with self._using() as conn:
            files.copy_into_place(target, conn.backup)

    def vacuum(self) -> None:
        """Rebuild the file without free pages (after many deletes); the file then shrinks.

        Needs room for a second copy of the store while it runs, and waits for the write
        lock like any write. Not inside transaction().
        """
        slot = self._pool.enter()
        try:
            if slot.depth:
                raise Error(f"{self.path}: vacuum() cannot run inside transaction(); call it outside")
            slot.conn.execute("VACUUM")
            slot.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # hand the freed pages back
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()

    # -- helpers -------------------------------------------------------------------------

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction (or the caller's transaction), so several queries agree."""
        slot = self._pool.enter()
        try:
            conn = slot.conn
            outer = slot.depth == 0
            if outer:
                conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if outer:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()

    def _row(self, query: str, params: tuple[Any, ...]) -> Any:
        slot = self._pool.enter()
        try:
            return slot.conn.execute(query, params).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()

    def _all(self, query: str, params: tuple[Any, ...], limit: int | None = None) -> list[Any]:
        slot = self._pool.enter()
        try:
            cursor = slot.conn.execute(query, params)
            rows = cursor.fetchall() if limit is None else cursor.fetchmany(limit)
            cursor.close()
            return rows
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()

    def _item_pages(self) -> Iterator[tuple[Key, Value]]:
        """Every (key, value) pair in key order, PAGE at a time."""
        return self._pages(sql.ITEMS_FIRST, sql.ITEMS_AFTER, ())

    def _pages(
        self, first: str, after: str, params: tuple[Any, ...], keep: tuple[Any, ...] | None = None
    ) -> Iterator[Any]:
        """Rows in key order, PAGE at a time; between pages no statement is open.

        Paging by "key greater than the last one seen" rather than holding a cursor means the
        caller may write to the store while iterating, from this thread or another. ``after``
        takes the last key followed by ``keep`` (default: ``params`` come first, then the key).
        """
        rows = self._all(first, params, limit=PAGE)
        while rows:
            yield from rows
            if len(rows) < PAGE:
                return
            last = rows[-1][0]
            rows = self._all(after, (*params, last) if keep is None else (last, *keep), limit=PAGE)


class _Items(ItemsView):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[tuple[Key, Value]]:
        store = cast(Store, self._mapping)  # type: ignore[attr-defined]  # set by MappingView
        return store._item_pages()


class _Values(ValuesView):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[Value]:
        store = cast(Store, self._mapping)  # type: ignore[attr-defined]  # set by MappingView
        return (value for _, value in store._item_pages())


def _pairs(other: Any) -> Iterable[Any]:
    """The (key, value) pairs of a mapping, of an object with keys(), or of an iterable."""
    if isinstance(other, Mapping):
        return other.items()
    if hasattr(other, "keys"):
        return ((k, other[k]) for k in other.keys())
    return cast(Iterable[Any], other)


def _quietly(conn: sqlite3.Connection, statement: str) -> None:
    """Run a rollback whose own failure must not hide the error being handled."""
    try:
        conn.execute(statement)
    except sqlite3.Error:
        pass


def _writable(path: str) -> bool:
    """False for a file without write permission bits (even for root, who could write it), or
    in a directory where SQLite could not create the -wal and -shm files a writer needs."""
    if not (os.access(path, os.W_OK) and os.stat(path).st_mode & 0o222):
        return False
    if os.access(os.path.dirname(path), os.W_OK):
        return True
    return all(os.access(path + suffix, os.W_OK) for suffix in ("-wal", "-shm"))


def _check_path(path: str | os.PathLike[str]) -> str:
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


def open(  # noqa: A001 - mirrors the built-in on purpose: kvstore.open(path)
    path: str | os.PathLike[str],
    *,
    timeout: float = 5.0,
    durable: bool = False,
    readonly: bool = False,
) -> Store:
    """Open (creating or upgrading as needed) the kvstore file at ``path``.

    ``path``: a file path (an empty file becomes a new store), or ``":memory:"`` for a private
    in-memory store shared by this store's threads and gone when it closes. ``timeout``:
    seconds a write waits for another writer before BusyError (0 or more; ``math.inf`` waits as
    long as SQLite can, about 24.8 days). ``durable``: fsync each commit so it survives power
    loss (default: survives a crash of the process). ``readonly``: never write; also chosen
    automatically for a file without write permission, or in a directory that cannot be written.
    """
    return Store(path, Options(timeout=timeout, durable=durable, readonly=readonly))
