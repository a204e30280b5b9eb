"""A PostgreSQL store's access to its server: each call on this thread's connection, transactions.

:class:`Session` is the base of :class:`kvstore.postgresql.store.PostgresStore`, as
kvstore.sqlite.session is of SQLite's Store: every statement goes through ``_run`` (one
statement on this thread's connection, prepared, errors translated, a deadlock retried when
no block is open) or runs inside ``transaction()``; ``_snapshot`` gives several reads one
REPEATABLE READ snapshot, ``_pages`` reads in key order a page at a time. The connections
themselves live in :mod:`kvstore.postgresql.connections`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self, TypeVar

import psycopg

from kvstore import ranges
from kvstore.api import StoreAPI
from kvstore.errors import Error, RetryableError
from kvstore.postgresql.connections import Connections
from kvstore.postgresql.errors import lost, translate
from kvstore.postgresql.encoding import encode
from kvstore.postgresql.statements import Statements

T = TypeVar("T")

PAGE = 1000
"""Rows fetched per query when iterating; no statement stays open while the caller runs."""
RETRIES = 5
"""Times a single statement is run again after PostgreSQL broke a deadlock or conflict."""


class Session(StoreAPI):
    """The plumbing of a PostgreSQL store: set ``path``, ``schema``, ``_conns`` and ``_sql`` before use."""

    schema: str
    _conns: Connections
    _sql: Statements

    def close(self) -> None:
        """Close every connection; using the store afterwards raises kvstore.Error."""
        self._conns.close("the store is closed; open it again with kvstore.open()")

    def _run(self, query: str, params: Any = ()) -> list[Any]:
        """Run one statement on this thread's connection; its rows (empty for a write).

        Outside transaction() a deadlock or serialization failure is retried (the statement
        was rolled back whole; see :meth:`_retried`); inside, it ends the block with a
        RetryableError.
        """
        return self._retried(lambda: self._once(query, params))

    def _once(self, query: str, params: Any) -> list[Any]:
        conns = self._conns
        conn = conns.get()
        lost_error = conns.lost
        if lost_error is not None:
            raise Error(f"{self.path}: the transaction was aborted by an earlier error ({lost_error}); "
                        "nothing written in this transaction() block will be kept: let the block end and run it again")
        try:
            cursor = conn.execute(query, params, prepare=True, binary=True)
            return cursor.fetchall() if cursor.description is not None else []
        except psycopg.Error as exc:
            raise self._failed(exc) from exc
        finally:
            if conns.limit:
                conns.release()  # a shared connection goes back between calls (not inside a block)

    def _retried(self, call: Callable[[], T]) -> T:
        """``call()`` (which runs its own transaction), run again after a deadlock or conflict
        when no block is open: PostgreSQL rolled it back whole, so nothing of it was kept."""
        for attempt in itertools.count():
            try:
                return call()
            except RetryableError:
                if self._conns.depth or attempt >= RETRIES:
                    raise
                time.sleep(0.001 * 2 ** attempt)
        raise AssertionError("unreachable")

    def _failed(self, exc: psycopg.Error) -> Exception:
        error = translate(exc, self.path)
        conns = self._conns
        if conns.closed:
            return Error(f"{self.path}: {conns.closed}")
        if conns.depth:
            # PostgreSQL aborted the block's transaction, or its connection is gone: either way
            # the rest of the block must not run (let alone autocommit on a new connection).
            conns.lost = error
        elif lost(exc):
            conns.forget()
        return error

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """Make the writes inside the block atomic; nested blocks are savepoints.

        Commits when the outermost block ends normally and rolls back (to the block's start,
        for a nested one) when it raises. A deadlock or serialization failure inside raises
        kvstore.RetryableError: the block was rolled back whole; run it again.
        """
        conns = self._conns
        depth = conns.depth
        conn = conns.get()
        conns.depth = depth + 1  # before the BEGIN: a shared connection stays this thread's until the end
        try:
            self._run("BEGIN" if depth == 0 else f"SAVEPOINT kvstore_{depth}")
        except BaseException:
            conns.depth = depth
            conns.lost = None
            conns.release()
            raise
        try:
            yield self
        except BaseException:
            self._end(conn, depth, commit=False)
            raise
        self._end(conn, depth, commit=True)

    def _end(self, conn: psycopg.Connection[Any], depth: int, commit: bool) -> None:
        try:
            self._finish(conn, depth, commit)
        finally:
            if depth == 0:
                self._conns.release()  # a shared connection goes back when the outermost block ends

    def _finish(self, conn: psycopg.Connection[Any], depth: int, commit: bool) -> None:
        conns = self._conns
        if conns.closed or conns.current() is not conn:
            if commit:
                raise Error(f"{self.path}: {conns.closed or 'the connection was lost'}; nothing written in the "
                            "transaction() block was kept")
            return
        conns.depth = depth
        name = f"kvstore_{depth}"
        lost_error = conns.lost
        if not commit or lost_error is not None:
            try:
                conn.execute("ROLLBACK" if depth == 0 else f"ROLLBACK TO SAVEPOINT {name}")
                if depth:
                    conn.execute(f"RELEASE SAVEPOINT {name}")
                conns.lost = None  # back to a healthy transaction (or none)
            except psycopg.Error:  # the connection itself is gone, and the transaction with it
                if depth == 0:
                    conns.forget()
            if commit and lost_error is not None:
                raise (type(lost_error) if isinstance(lost_error, Error) else Error)(
                    f"{self.path}: the transaction was rolled back after an error that the block caught "
                    f"({lost_error}); nothing written in the block was kept: run it again")
            return
        try:
            conn.execute("COMMIT" if depth == 0 else f"RELEASE SAVEPOINT {name}")
        except psycopg.Error as exc:
            error = translate(exc, self.path)
            if depth:
                conns.lost = error
            elif lost(exc) or conn.closed:
                conns.forget()
            else:
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error:
                    conns.forget()
            raise error from exc

    def _outside_transaction(self, what: str, why: str) -> None:
        if self._conns.depth:
            raise Error(f"{self.path}: {what} cannot run inside transaction() ({why}); call it outside")

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One REPEATABLE READ transaction (or the caller's), so that several queries agree."""
        conns = self._conns
        if conns.depth:
            yield
            return
        conn = conns.get()
        conns.depth = 1
        try:
            self._run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield
        finally:
            conns.depth = 0
            conns.lost = None
            try:
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                if lost(exc):
                    conns.forget()  # the next call reconnects instead of failing once more
            conns.release()

    def _pages(self, first: str, after: str, params: tuple[Any, ...], lower: bytes | None = None) -> Iterator[Any]:
        """Rows in key order, PAGE at a time, paging by "key after the last one seen"."""
        start = encode(ranges.LOWEST) if lower is None else lower
        rows = self._run(first, (*params, start, PAGE))
        while rows:
            yield from rows
            if len(rows) < PAGE:
                return
            rows = self._run(after, (*params, rows[-1][0], PAGE))
