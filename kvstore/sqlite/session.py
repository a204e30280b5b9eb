"""A store's access to its file: each call on its thread's connection, transactions, snapshots.

:class:`Session` is the base of :class:`kvstore.Store`: everything that talks to SQLite goes
through ``_using``/``_row``/``_all``/``_pages`` (one call on this thread's connection, held so
that no ``fork()`` or ``close()`` happens meanwhile, errors translated) or inside
``transaction()``. The connections themselves live in :mod:`kvstore.sqlite.pool`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any, Self

from kvstore.errors import Error, translate
from kvstore.sqlite.pool import DISCONNECTED, ConnectionPool, Slot

PAGE = 1000
"""Rows fetched per query when iterating; no statement stays open while the caller runs."""


class Session:
    """The plumbing of a store: set ``path`` and ``_pool`` before use."""

    path: str
    _pool: ConnectionPool
    _keeper: sqlite3.Connection | None = None
    """An in-memory store's idle connection, which keeps its database alive until close()."""

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

    def _outside_transaction(self, what: str, why: str) -> None:
        """Refuse ``what`` inside this thread's transaction() block, saying ``why``."""
        slot = self._pool.current()
        if slot is not None and slot.depth:
            raise Error(f"{self.path}: {what} cannot run inside transaction() ({why}); call it outside")

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

    @contextmanager
    def transaction(self) -> Iterator[Self]:
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
            # Closed however the call ends: a row that fails to convert leaves the statement open,
            # and the exception's traceback would keep the cursor (and a read transaction) alive.
            with closing(slot.conn.execute(query, params)) as cursor:
                return cursor.fetchall() if limit is None else cursor.fetchmany(limit)
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()

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


def _quietly(conn: sqlite3.Connection, statement: str) -> None:
    """Run a rollback whose own failure must not hide the error being handled."""
    try:
        conn.execute(statement)
    except sqlite3.Error:
        pass
