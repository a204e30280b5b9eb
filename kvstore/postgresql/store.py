"""The Store on PostgreSQL: the same mapping, counting and upkeep API as on SQLite.

Every key and value travels as one ``bytea`` (kvstore.postgresql.encoding); counts are kept
by row triggers into each transaction's own shard (kvstore.postgresql.ddl), so a call here
is one statement and the hot paths are raw psycopg on this thread's connection, prepared on
first use.
Differences from SQLite, all on the server's side: a key's encoding is limited to about
2,700 bytes (a B-tree entry), ``backup()`` writes a SQLite file, and an error inside a
``transaction()`` block aborts the whole block (PostgreSQL cannot go on after a failed
statement), which then raises when it ends.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import ItemsView, Iterable, Iterator, KeysView
from typing import TYPE_CHECKING, Any, cast


from kvstore import ranges
from kvstore.api import MISSING, Items, Strategy
from kvstore.sqlite.connection import Options
from kvstore.errors import Error
from kvstore.postgresql import schema as schemas
from kvstore.postgresql.connections import Connections, Settings
from kvstore.postgresql.urls import libpq_url, redacted
from kvstore.postgresql.encoding import decode, encode, value_id
from kvstore.postgresql.bulk import BulkWrites
from kvstore.postgresql.statements import Statements
from kvstore.validate import Key, Value, check_key, check_stored_key, check_value, INT_MAX, INT_MIN

if TYPE_CHECKING:
    from kvstore.problems import Problem

DEFAULT_SCHEMA = "kvstore"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


class PostgresStore(BulkWrites):
    """A dict-like store of ``key -> value`` in one PostgreSQL schema, with instant ``count(value)``.

    Thread-safe (a connection per thread) and fork-safe (a child opens its own); any number
    of processes on any number of machines may use one store at once.
    """

    def __init__(self, url: str, schema: str = DEFAULT_SCHEMA, options: Options | None = None,
                 max_connections: int | None = None) -> None:
        if type(schema) is not str or not _NAME.match(schema) or schema.lower().startswith("pg_"):
            raise ValueError(f"schema must be a plain PostgreSQL name (letters, digits, _; at most 63; "
                             f"not starting with pg_, which PostgreSQL reserves), not {schema!r}")
        self.url = url
        self.schema = schema
        self.options = options or Options()
        self.path = f"{redacted(url)} (schema {schema})"
        settings = Settings(libpq_url(url), self.options.timeout, self.options.durable, self.options.readonly)
        if max_connections is not None and (type(max_connections) is not int or max_connections < 1):
            raise ValueError(f"max_connections must be a whole number 1 or more, or None; got {max_connections!r}")
        schemas.ensure(settings, schema)
        self.max_connections = max_connections
        self._conns = Connections(settings, max_connections)
        self._sql = Statements.for_schema(schema)

    def __reduce__(self) -> tuple[Any, ...]:
        if self._conns.closed:
            raise Error(f"{self.path}: {self._conns.closed}")
        return (PostgresStore, (self.url, self.schema, self.options, self.max_connections))

    def __repr__(self) -> str:
        return f"<kvstore.PostgresStore {self.path!r} ({'closed' if self._conns.closed else 'open'})>"

    # -- the mapping ---------------------------------------------------------------------------

    def get(self, key: Key, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        if type(key) is not int or not INT_MIN <= key <= INT_MAX:
            check_key(key)
        rows = self._run(self._sql.get, (encode(key),))
        return decode(rows[0][0]) if rows else default

    def set(self, key: Key, value: Value) -> None:
        """Insert or overwrite; committed when this returns unless inside ``transaction()``."""
        check_key(key)
        check_value(value)
        self._run(self._sql.upsert, (encode(key), encode(value)))

    __setitem__ = set

    def delete(self, key: Key) -> bool:
        """Remove ``key``; True if it was there."""
        check_stored_key(key)
        if key is None:
            return False
        return bool(self._run(self._sql.pop, (encode(key),)))

    def pop(self, key: Key, default: Any = MISSING) -> Any:
        """Remove ``key`` and return its value (``default``, or KeyError, when missing); atomic."""
        check_stored_key(key)
        rows = self._run(self._sql.pop, (encode(key),)) if key is not None else []
        if rows:
            return decode(rows[0][0])
        if default is MISSING:
            raise KeyError(key)
        return default

    def setdefault(self, key: Key, default: Any = None) -> Any:
        """The value under ``key``; if missing, store ``default`` and return it. Atomic."""
        check_key(key)
        check_value(default)
        encoded = encode(key), encode(default)
        while True:
            value = self.get(key, MISSING)
            if value is not MISSING:
                return value
            if self._run(self._sql.insert_new, encoded):
                return default
            # Another writer stored the key between our read and our insert: read it again.

    def incr(self, key: Key, delta: int | float = 1) -> int | float:
        """Add ``delta`` to the number under ``key`` (a missing key starts at 0); the new value.

        Atomic across threads, processes and machines (the row is locked while it changes).
        Refused, changing nothing: a stored value that is not a number (TypeError), an int sum
        beyond 64 bits (OverflowError), a NaN sum (ValueError).
        """
        check_key(key)
        if type(delta) not in (int, float):
            raise TypeError(f"incr() adds an int or a float, not {type(delta).__name__}")
        check_value(delta)
        encoded = encode(key)
        return self._retried(lambda: self._add(key, encoded, delta))

    def _add(self, key: Key, encoded: bytes, delta: int | float) -> int | float:
        """incr() in one transaction (a savepoint inside the caller's): the row locked while it changes."""
        with self.transaction():
            rows = self._run(self._sql.lock_row, (encoded,))
            if not rows:
                if self._run(self._sql.insert_new, (encoded, encode(delta))):
                    return delta
                rows = self._run(self._sql.lock_row, (encoded,))
            current = decode(rows[0][0])
            if type(current) not in (int, float):
                raise TypeError(f"incr(): the value under {key!r} is {type(current).__name__} "
                                f"{current!r:.40}, not a number; nothing was changed")
            total = current + delta
            if type(total) is int and not INT_MIN <= total <= INT_MAX:
                raise OverflowError(f"incr(): {current!r} + {delta!r} does not fit in a signed 64-bit "
                                    "integer; nothing was changed (add a float to count beyond it)")
            if total != total:
                raise ValueError(f"incr(): {key!r} + {delta!r} is not a number (NaN); nothing was changed")
            self._run(self._sql.update, (encode(total), encoded))
            return cast("int | float", total)

    def popitem(self) -> tuple[Key, Value]:
        """Remove and return the pair with the smallest key; KeyError when empty."""
        while True:
            rows = self._run(self._sql.pop_first)
            if rows:
                return decode(rows[0][0]), decode(rows[0][1])
            if not self._run(self._sql.any_row):
                raise KeyError("popitem(): the store is empty")

    def __len__(self) -> int:
        return int(self._run(self._sql.length)[0][0])

    def __iter__(self) -> Iterator[Key]:
        return (decode(key) for (key,) in self._pages(self._sql.keys_first, self._sql.keys_after, ()))

    def keys(  # type: ignore[override]
        self, start: Key | None = None, stop: Key | None = None, *, prefix: str | bytes | None = None
    ) -> KeysView[Key] | Iterator[Key]:
        """The keys in key order (ints, then strings, then bytes); ranges as on SQLite."""
        if start is None and stop is None and prefix is None:
            return KeysView(self)
        return (key for key, _ in self._range(start, stop, prefix, self._sql.keys_first, self._sql.keys_after))

    def items(  # type: ignore[override]
        self, start: Key | None = None, stop: Key | None = None, *, prefix: str | bytes | None = None
    ) -> ItemsView[Key, Value] | Iterator[tuple[Key, Value]]:
        """``(key, value)`` pairs in key order, read a page at a time; ranges as for keys()."""
        if start is None and stop is None and prefix is None:
            return Items(self)
        return self._range(start, stop, prefix, self._sql.items_first, self._sql.items_after)

    def _range(self, start: Any, stop: Any, prefix: Any, first: str, after: str) -> Iterator[Any]:
        lower, upper = ranges.bounds(start, stop, prefix)
        bound = None if upper is None else encode(upper)
        for row in self._pages(first, after, (), lower=encode(lower)):
            if bound is not None and row[0] >= bound:
                return
            yield (decode(row[0]), decode(row[1]) if len(row) > 1 else None)

    def _item_pages(self) -> Iterator[tuple[Key, Value]]:
        return ((decode(k), decode(v))
                for k, v in self._pages(self._sql.items_first, self._sql.items_after, ()))

    # -- counting ------------------------------------------------------------------------------

    def count(self, value: Value, strategy: Strategy = "counts") -> int:
        """How many keys hold ``value`` (0 if none); strategies as on SQLite.

        ``counts`` sums the value's few shard rows (one index range); ``group_by`` counts its
        entries in the value index; ``scan`` reads every row.
        """
        check_value(value)
        queries = {"counts": self._sql.count, "group_by": self._sql.count_group_by, "scan": self._sql.count_scan}
        try:
            query = queries[strategy]
        except (KeyError, TypeError):
            raise ValueError(f"unknown count strategy {strategy!r}; use one of: {', '.join(queries)}") from None
        return int(self._run(query, (value_id(value),))[0][0])

    def get_many(self, keys: Iterable[Key]) -> dict[Key, Value]:
        """The stored pairs among ``keys``, in the order of ``keys``, in one statement (one snapshot)."""
        asked = [check_key(key) for key in keys]
        if not asked:
            return {}
        encoded = [encode(key) for key in asked]
        found = dict(self._run(self._sql.get_many, (encoded,)))
        result: dict[Key, Value] = {}
        for key, data in zip(asked, encoded, strict=True):
            if data in found and key not in result:
                result[key] = decode(found[data])
        return result

    def count_many(self, values: Iterable[Value]) -> dict[Value, int]:
        """How many keys hold each of ``values``, all counted in one statement (one snapshot)."""
        asked = [check_value(value) for value in values]
        if not asked:
            return {}
        ids = [value_id(value) for value in asked]
        found = dict(self._run(self._sql.count_many, (list(dict.fromkeys(ids)),)))
        return {value: int(found.get(vid, 0)) for value, vid in zip(asked, ids, strict=True)}

    def counts(self) -> dict[Value, int]:
        """Every stored value with how many keys hold it, largest count first."""
        return {decode(value): int(n) for value, n in self._run(self._sql.counts)}

    def most_common(self, n: int | None = None) -> list[tuple[Value, int]]:
        """The ``n`` most held values with their counts, largest first (all when n is None)."""
        n = self._checked_n(n)
        if n == 0:
            return []
        rows = self._run(self._sql.counts)
        return [(decode(value), int(count)) for value, count in rows[:n]]

    def keys_for(self, value: Value, limit: int | None = None) -> Iterator[Key]:
        """The keys holding ``value`` (at most ``limit``), in key order, from the value index."""
        check_value(value)
        limit = self._checked_limit(limit)
        vid = value_id(value)
        keys = (decode(row[0]) for row in self._pages(self._sql.keys_for_first, self._sql.keys_for_after, (vid,)))
        return keys if limit is None else itertools.islice(keys, limit)

    # -- upkeep --------------------------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Every difference between the store and kvstore's model; empty when counts are exact."""
        from kvstore.postgresql import upkeep

        with self._snapshot():
            return upkeep.problems(self._run, self.schema)

    def repair(self) -> int:
        """Restore what verify() reports, in one transaction; returns the problems fixed."""
        from kvstore.postgresql import upkeep

        with self.transaction():
            return upkeep.repair(self._run, self.schema)

    def stats(self) -> dict[str, dict[str, int]]:
        """Rows and bytes of ``items`` (with its key index), the value index and ``counts``."""
        from kvstore.postgresql import upkeep

        with self._snapshot():
            return upkeep.stats(self._run, self.schema)

    def backup(self, dest: str | os.PathLike[str]) -> None:
        """Copy the store, as of one moment, into the new kvstore SQLite file ``dest``.

        Reads in one REPEATABLE READ snapshot while others go on writing; the file is a
        complete embedded store (``kvstore.open(dest)``). An existing ``dest`` is refused.
        """
        self._outside_transaction("backup()", "it reads its own snapshot")
        from kvstore.sqlite import files
        from kvstore.sqlite.store import Store

        target = os.path.abspath(files.check_path(dest))
        if os.path.lexists(target):
            raise Error(f"{target}: already exists; backup() writes a new file only: "
                        "choose another path or remove it first")
        # Built under another name and linked into place whole: a failure half-way leaves no
        # partial store at dest (to be mistaken for a backup, or to block the retry).
        building = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{os.urandom(6).hex()}.backup")
        try:
            with self._snapshot(), Store(building) as out:
                out.update(self._item_pages())
            try:
                os.link(building, target)
            except FileExistsError:
                raise Error(f"{target}: already exists (made while the backup ran); nothing was overwritten") from None
        finally:
            files.remove_database(building)

    def vacuum(self) -> None:
        """Rewrite the tables without dead space (VACUUM FULL: blocks the store while it runs)."""
        self._outside_transaction("vacuum()", "PostgreSQL runs VACUUM only outside transactions")
        s = f'"{self.schema}"'
        self._run(f"VACUUM FULL {s}.items, {s}.count_shards")


__all__ = ["DEFAULT_SCHEMA", "PostgresStore"]
