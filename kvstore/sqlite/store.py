"""The Store: a persistent MutableMapping whose count(value) is one index lookup.

This module holds the public surface (opening, the mapping, counting, upkeep); the plumbing
is elsewhere: kvstore.sqlite.session (calls, transactions, paging), kvstore.sqlite.reads (get(),
count() and the batch reads), kvstore.sqlite.bulk (update() and its set-based path),
kvstore.sqlite.pool (connections, fork and close()), kvstore.sqlite.files (paths and files).
It stays a little over 400 lines because it is the whole API in one class, one short method each.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import ItemsView, Iterator, KeysView
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kvstore import ranges
from kvstore.api import MISSING as _MISSING, Items, StoreAPI
from kvstore.errors import Error
from kvstore.sqlite import COUNTS_INDEX, KEY_INDEX, VALUE_INDEX, connection, files, sql
from kvstore.sqlite.connection import MEMORY, Options, connect
from kvstore.sqlite.migrate import ensure_schema
from kvstore.sqlite.files import initialize
from kvstore.sqlite.bulk import BulkWrites
from kvstore.sqlite.reads import Reads
from kvstore.sqlite.pool import OPENING, ConnectionPool
from kvstore.sqlite.session import PAGE  # noqa: F401 (re-exported: iteration's page size)

if TYPE_CHECKING:  # kvstore.sqlite.upkeep is imported by verify() and repair(), not at start-up
    from kvstore.problems import Problem
from kvstore.validate import Key, Value, check_key, check_stored_key, check_value



class Store(BulkWrites, Reads, StoreAPI):
    """A dict-like store of ``key -> value`` on one SQLite file, with instant ``count(value)``.

    Thread-safe: each thread gets its own connection (see kvstore.sqlite.pool, which also makes the
    store safe across ``os.fork()``). Several processes may use one file at once (WAL mode;
    writers wait up to ``timeout`` seconds for each other).
    """

    def __init__(self, path: str | os.PathLike[str], options: Options | None = None) -> None:
        path = files.check_path(path)
        if connection.refused:
            raise Error(f"{path}: {connection.refused}")
        self.options = options or Options()
        self._keeper: sqlite3.Connection | None = None
        if path == MEMORY:
            self.path = MEMORY
            self._pool = self._in_memory()
            return
        # Resolved once: after os.chdir() new threads and forked children use the same file.
        self.path = os.path.abspath(path)
        if not self.options.readonly and os.path.exists(self.path) and not files.writable(self.path):
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

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as "this file, these options": the receiving process (multiprocessing with
        # the spawn method, a ProcessPoolExecutor) opens its own store on the same file.
        if self._pool.closed:
            raise Error(f"{self.path}: {self._pool.closed}")
        if self.path == MEMORY:
            raise TypeError("an in-memory store cannot be pickled: its data lives in this "
                            "process only; use a file path to share a store between processes")
        return (Store, (self.path, self.options))

    def __repr__(self) -> str:
        state = "closed" if self._pool.closed else "open"
        return f"<kvstore.Store {self.path!r} ({state})>"

    # -- the mapping ---------------------------------------------------------------------

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
            return Items(self)
        queries = (sql.ITEMS_FROM, sql.ITEMS_AFTER, sql.ITEMS_FROM_BEFORE, sql.ITEMS_AFTER_BEFORE)
        return self._range(queries, start, stop, prefix)

    def _range(self, queries: tuple[str, str, str, str], start: Any, stop: Any, prefix: Any) -> Iterator[Any]:
        lower, upper = ranges.bounds(start, stop, prefix)
        first, after, first_before, after_before = queries
        if upper is None:
            return self._pages(first, after, (lower,), keep=())
        return self._pages(first_before, after_before, (lower, upper), keep=(upper,))

    # -- counting ------------------------------------------------------------------------

    def counts(self) -> dict[Value, int]:
        """Every stored value with how many keys hold it, largest count first."""
        return dict(self._all(sql.COUNTS, ()))

    def most_common(self, n: int | None = None) -> list[tuple[Value, int]]:
        """The ``n`` most held values with their counts, largest first (all when n is None)."""
        n = self._checked_n(n)
        if n == 0:
            return []
        # fetchmany() takes a C int; no store holds 2**31 distinct values anyway.
        return self._all(sql.COUNTS, (), limit=n if n is not None and n < 2**31 else None)

    def keys_for(self, value: Value, limit: int | None = None) -> Iterator[Key]:
        """The keys holding ``value`` (at most ``limit``), in key order, from the value index."""
        check_value(value)
        limit = self._checked_limit(limit)
        keys = (key for (key,) in self._pages(sql.KEYS_FOR_FIRST, sql.KEYS_FOR_AFTER, (value,)))
        return keys if limit is None else itertools.islice(keys, limit)

    # -- transactions --------------------------------------------------------------------

    # -- upkeep --------------------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Every difference between the file and kvstore's model; empty when counts are exact.

        Mismatched counts, tables, the value index and triggers missing or altered, foreign
        triggers that may write counts, rows outside kvstore's types (see kvstore.sqlite.upkeep).
        Reads one consistent snapshot; O(rows); a missing table is reported, not raised.
        """
        problems = []
        problem = None if self.path == MEMORY else files.links_problem(self.path, clear=False)
        if problem:
            from kvstore.problems import SchemaProblem

            problems.append(SchemaProblem("file", problem, fixable=False))
        with self._snapshot() as conn:
            return problems + self._problems(conn)

    def repair(self) -> int:
        """Restore what verify() reports, in one transaction; returns the problems fixed.

        Rows outside kvstore's types are data and stay; kvstore.sqlite.upkeep says what else cannot
        be repaired, and why.
        """
        with self.transaction(), self._using() as conn:
            from kvstore.sqlite import upkeep

            return upkeep.repair(conn, self.path)

    def _problems(self, conn: sqlite3.Connection) -> list[Problem]:
        from kvstore.sqlite import upkeep

        return upkeep.problems(conn)

    def stats(self) -> dict[str, dict[str, int]]:
        """Rows and bytes on disk of ``items``, its value index and ``counts`` (from ``dbstat``).

        ``items`` includes its key index and ``counts`` the index that finds a value's row.
        """
        with self._snapshot() as conn:
            sizes = dict(conn.execute(sql.SIZES, ("items", KEY_INDEX, VALUE_INDEX, "counts", COUNTS_INDEX)))
            (rows,) = conn.execute(sql.ITEM_ROWS).fetchone()
            (value_rows,) = conn.execute(sql.VALUE_ROWS).fetchone()
            (page_count,) = conn.execute("PRAGMA page_count").fetchone()
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        return {
            "items": {"rows": rows, "bytes": sizes.get("items", 0) + sizes.get(KEY_INDEX, 0)},
            "value_index": {"rows": rows, "bytes": sizes.get(VALUE_INDEX, 0)},
            "counts": {"rows": value_rows, "bytes": sizes.get("counts", 0) + sizes.get(COUNTS_INDEX, 0)},
            "file": {"rows": rows, "bytes": page_count * page_size},
        }

    def backup(self, dest: str | os.PathLike[str]) -> None:
        """Copy the store to the new file ``dest``: a consistent snapshot, while others write.

        SQLite's online backup copies every page inside one read transaction, so writers go
        on meanwhile and the copy is the store as of one moment. The copy is built beside
        ``dest`` and linked into place; an existing ``dest`` is refused, never overwritten.
        Works from an in-memory store too.
        """
        self._outside_transaction("backup()", "the copy restarts whenever its connection writes")
        target = os.path.abspath(files.check_path(dest))
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
        self._outside_transaction("vacuum()", "SQLite runs VACUUM only outside transactions")
        slot = self._pool.enter()
        try:
            slot.conn.execute("VACUUM")
            slot.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # hand the freed pages back
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()

    # -- helpers -------------------------------------------------------------------------

    def _item_pages(self) -> Iterator[tuple[Key, Value]]:
        """Every (key, value) pair in key order, PAGE at a time."""
        return self._pages(sql.ITEMS_FIRST, sql.ITEMS_AFTER, ())
