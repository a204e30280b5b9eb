"""Reading: get() and count() one at a time, get_many() and count_many() in one read transaction.

One call is one statement on this thread's connection, so it costs SQLite's fixed price for
an autocommit statement (in WAL mode, beginning and ending a read transaction, ~1.5-2 µs here)
plus as little Python as possible: each thread's connection slot keeps one cursor for them
(:meth:`kvstore.sqlite.pool.Slot.fetchall`), where ``conn.execute()`` would make and throw
away a cursor per call (~0.2-0.5 µs measured). A kept cursor keeps its statement (and so a
read transaction) open until the statement has run to the end, so every read fetches all its
rows (one, unless another program has removed the primary key from a table); Slot.fetchall()
also says what happens when a read fails half-way or runs inside another on its thread.

The batch reads validate every argument first, then answer with one statement per BATCH
arguments, all inside one read transaction (the caller's, inside ``transaction()``): the answer
is one state of the store even while other threads and processes write, and the fixed price is
paid once per batch instead of once per key. get_many() joins a ``VALUES`` list of the keys
to ``items``, the list as the outer loop (``CROSS JOIN`` makes SQLite keep that order), so rows
come back in the order asked, each repeat of a key again (the dict keeps the first), each with
the key as asked (an int 1 even where another program stored the float 1.0). count_many()
runs count()'s own statement once per distinct value asked, on one cursor of its own inside the
one read transaction: ``counts`` is searched through its index on a bounded head of the value
(schema revision 0003), which a ``value IN (...)`` list or a join on ``value`` cannot use.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import closing
from typing import Any

import sqlite3

from kvstore.api import Strategy
from kvstore.errors import Error
from kvstore.sqlite import VALUE_INDEX, sql
from kvstore.sqlite.session import Session
from kvstore.sqlite.triggers import PREFIX
from kvstore.validate import INT_MAX, INT_MIN, Key, Value, check_key, check_value

_COUNT_SQL = {"counts": sql.COUNT, "group_by": sql.COUNT_GROUP_BY, "scan": sql.COUNT_SCAN}

BATCH = 256
"""Arguments per statement in get_many()/count_many(), well under SQLite's smallest limit on
bound parameters (999 before 3.32). Shorter statements are padded to a power of two by
repeating an argument, so at most nine statement texts exist and all stay prepared."""

# Written beside kvstore.sqlite.sql's GET and COUNT (the same tables and columns); the model test
# checks that get_many()/count_many() agree with get()/count() on every step.
_GET_MANY = ('WITH asked(key) AS (VALUES {}) '
             'SELECT asked.key, items.value FROM asked CROSS JOIN items ON items."key" = asked.key')


SHORT_TEXT = PREFIX // 2
"""An ASCII str of at most this many characters is held whole in the value indexes (at most
PREFIX bytes) whatever the file's text encoding (UTF-8: one byte a character; UTF-16: two)."""


def _count_sql(value: Value) -> str:
    """The count statement for a valid ``value``: sql.COUNT_SHORT when the indexes hold it whole.

    The indexes hold :func:`kvstore.sqlite.triggers.head` of a value: the value itself when it
    is a number, or text or a blob of at most PREFIX bytes (text counted in the file's encoding,
    UTF-8 for files kvstore made, UTF-16 possibly for a file another program made). For such a
    value sql.COUNT's expressions on ``?1`` give (value, 0), so COUNT_SHORT, which binds the
    value as it is and computes nothing on it, finds the same row; measured ~10% cheaper per
    statement. Text is called short only if it is short in both encodings (at most 8
    characters, or SHORT_TEXT of ASCII: 4 and 2 bytes a character at most); anything else,
    every long value included, runs sql.COUNT, which is right for every value.
    """
    kind = type(value)
    if kind is str:
        short = len(value) <= 8 or (len(value) <= SHORT_TEXT and value.isascii())  # type: ignore[arg-type,union-attr]
    elif kind is bytes:
        short = len(value) <= PREFIX  # type: ignore[arg-type]
    else:  # int or float (check_value let nothing else through)
        short = True
    return sql.COUNT_SHORT if short else sql.COUNT


def _statements(template: str, parameter: str) -> dict[int, str]:
    sizes = [1 << i for i in range(BATCH.bit_length()) if 1 << i <= BATCH]
    return {size: template.format(", ".join([parameter] * size)) for size in sizes}


_GET_MANY_SQL = _statements(_GET_MANY, "(?)")


class Reads(Session):
    """The reading methods of :class:`kvstore.Store`."""

    def get(self, key: Key, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        if type(key) is not int or not INT_MIN <= key <= INT_MAX:  # an int key costs no call
            check_key(key)
        slot = self._pool.enter()
        try:
            rows = slot.fetchall(sql.GET, (key,))
        except sqlite3.Error as exc:
            raise self._error(exc, slot) from exc
        finally:
            slot.lock.release()
        return rows[0][0] if rows else default

    def count(self, value: Value, strategy: Strategy = "counts") -> int:
        """How many keys hold ``value`` (0 if none).

        ``counts`` (default) is one index lookup in the maintained counts table;
        ``group_by`` aggregates over the value index; ``scan`` reads every row. All three
        give the same answer; the last two exist to show what the counts table saves.
        Values compare as in Python: 1 and 1.0 are the same value, '1' and b'1' are not.
        """
        if type(value) is str and len(value) <= SHORT_TEXT and value.isascii():
            query = sql.COUNT_SHORT  # valid (ASCII has no lone surrogate) and short: _count_sql(), inlined
        else:
            query = _count_sql(check_value(value))
        if strategy == "counts":
            slot = self._pool.enter()
            try:
                rows = slot.fetchall(query, (value,))
            except sqlite3.Error as exc:
                raise self._error(exc, slot) from exc
            finally:
                slot.lock.release()
            if not rows:
                return 0
            n = rows[0][0]
            return n if type(n) is int else int(n)  # int() only for what another program stored
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
        return 0 if row is None else int(row[0])

    def get_many(self, keys: Iterable[Key]) -> dict[Key, Value]:
        """The stored pairs among ``keys``, as a dict in the order of ``keys``; missing keys are left out.

        ``{k: db[k] for k in keys if k in db}``, read in one read transaction (so the pairs are
        one state of the store while others write) and at a fraction of the cost per key.
        Every key is checked before anything is read: one bad key raises TypeError, ValueError
        or OverflowError as get() does. A key asked twice appears once. Use
        ``result.get(k, default)`` for a default; a stored value is never None.
        """
        asked = [check_key(key) for key in keys]
        return dict(self._batched(_GET_MANY_SQL, asked))  # in the order asked; a repeated key once

    def count_many(self, values: Iterable[Value]) -> dict[Value, int]:
        """How many keys hold each of ``values`` (0 for a value no key holds), in one read transaction.

        ``{v: db.count(v) for v in values}``, but every count is of the same state of the
        store while others write, and a fraction of the cost per value. Every value is
        checked first, as count() checks it. Values that compare equal (1 and 1.0) are one
        value, as in count() and in a dict: the first spelling asked is the key.
        """
        asked = [check_value(value) for value in values]
        found: dict[Value, int] = {}
        if asked:
            with self._snapshot() as conn, closing(conn.cursor()) as cursor:  # closed: see _batched()
                for value in dict.fromkeys(asked):  # each distinct value once (1 and 1.0 are one)
                    rows = cursor.execute(_count_sql(value), (value,)).fetchall()
                    if rows:
                        found[value] = int(rows[0][0])
        return {value: found.get(value, 0) for value in asked}

    def _batched(self, statements: dict[int, str], args: list[Any]) -> list[tuple[Any, Any]]:
        """The rows of ``statements`` run over ``args``, BATCH at a time, in one read transaction."""
        rows: list[tuple[Any, Any]] = []
        if not args:
            return rows
        # Closed however the call ends: a row that fails to convert leaves the statement open, and
        # the exception's traceback would keep the cursor (and a read transaction) alive.
        with self._snapshot() as conn, closing(conn.cursor()) as cursor:
            for start in range(0, len(args), BATCH):
                chunk = args[start:start + BATCH]
                size = 1 << (len(chunk) - 1).bit_length()
                chunk += chunk[-1:] * (size - len(chunk))  # the same statement for 33..64 keys
                rows += cursor.execute(statements[size], chunk).fetchall()
        return rows
