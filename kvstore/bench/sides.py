"""The two sides of every comparison, as :class:`~kvstore.bench.peers.Peer` classes on
one kvstore file: kvstore through its API, and raw ``sqlite3`` running the SQL a user of
the file would write (the reference SQL below)."""

from __future__ import annotations

import abc
import os
from operator import itemgetter
from typing import Any, Literal

from kvstore.sqlite import VALUE_INDEX, sql, triggers
from kvstore.bench.data import Pair
from kvstore.bench.peers import Peer
from kvstore.bench.timing import Op
from kvstore.sqlite.connection import Options, connect

Strategy = Literal["counts", "group_by", "scan"]
STRATEGIES: tuple[Strategy, ...] = ("counts", "group_by", "scan")

# Reference SQL, written out as a user of the file would write it.
RAW_GET = "SELECT value FROM items WHERE key = ?"
# A count as a user who knows the schema writes it: through ix_counts_value's expressions
# (the plain "SELECT n FROM counts WHERE value = ?" reads every row of counts).
RAW_COUNT = sql.COUNT
RAW_INSERT = "INSERT INTO items (key, value) VALUES (?, ?)"
RAW_UPSERT = (
    "INSERT INTO items (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
RAW_COUNT_SQL: dict[str, str] = {"counts": RAW_COUNT, "group_by": sql.COUNT_GROUP_BY, "scan": sql.COUNT_SCAN}


class SqliteSide(Peer):
    """A side of the comparison on one kvstore file: counts by strategy, bulk merge."""

    survives = "crash"
    indexed_count = True

    @abc.abstractmethod
    def counter(self, strategy: Strategy) -> Op:
        """An op counting each value of its batch with ``strategy``."""

    @abc.abstractmethod
    def merge(self, pairs: list[Pair]) -> None:
        """Write ``pairs`` in bulk into a store that may hold some of their keys."""

    def count(self, values: list[str]) -> None:
        self.counter("counts")(values)

    def scan(self, values: list[str]) -> None:
        self.counter("scan")(values)


class Kvstore(SqliteSide):
    """kvstore through its public API; ``load`` and ``merge`` are ``update()``."""

    name = "kvstore"
    count_method = "counts table lookup (scan: every row)"

    def __init__(self, path: str) -> None:
        import kvstore

        self.path = path
        self.db = kvstore.open(path)
        self.db.get(0)  # open this thread's connection outside the timing

    def load(self, pairs: list[Pair]) -> None:
        self.db.update(pairs)

    merge = load

    def get(self, keys: list[Any]) -> None:
        get = self.db.get
        for key in keys:
            get(key)

    def getitem(self, keys: list[Any]) -> None:
        """``db[key]`` for each key (all of which exist)."""
        db = self.db
        for key in keys:
            db[key]

    def put(self, pairs: list[Pair]) -> None:
        put = self.db.set
        for key, value in pairs:
            put(key, value)

    def counter(self, strategy: Strategy) -> Op:
        def count(values: list[Any], count: Any = self.db.count, strategy: Strategy = strategy) -> None:
            for value in values:
                count(value, strategy)

        return count

    def file_bytes(self) -> int:
        return int(self.db.stats()["file"]["bytes"])

    def close(self) -> None:
        self.db.close()


class RawSqlite(SqliteSide):
    """Raw ``sqlite3`` on a connection with kvstore's pragmas (:func:`kvstore.sqlite.connection.connect`).

    Bulk writes are one ``executemany`` in one ``BEGIN IMMEDIATE`` transaction: a plain
    INSERT for ``load`` (into an empty store), an upsert for ``merge``; on a file whose
    triggers :func:`drop_triggers` removed, they are what kvstore's bulk path is compared to.
    """

    name = "sqlite3"
    count_method = "SELECT n FROM counts (scan: every row)"

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = connect(path, Options())

    def _bulk(self, statement: str, pairs: list[Pair]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(statement, pairs)
        self.conn.execute("COMMIT")

    def load(self, pairs: list[Pair]) -> None:
        self._bulk(RAW_INSERT, pairs)

    def merge(self, pairs: list[Pair]) -> None:
        self._bulk(RAW_UPSERT, pairs)

    def get(self, keys: list[Any]) -> None:
        execute = self.conn.execute
        for key in keys:
            execute(RAW_GET, (key,)).fetchone()

    def put(self, pairs: list[Pair]) -> None:
        execute = self.conn.execute
        for pair in pairs:
            execute(RAW_UPSERT, pair)

    def counter(self, strategy: Strategy) -> Op:
        def count(values: list[Any], execute: Any = self.conn.execute, query: str = RAW_COUNT_SQL[strategy]) -> None:
            for value in values:
                execute(query, (value,)).fetchone()

        return count

    def file_bytes(self) -> int:
        return os.path.getsize(self.path)

    def close(self) -> None:
        self.conn.close()


class NaiveLoad(RawSqlite):
    """A bulk load as a user of the file writes it: in one transaction, the count triggers
    dropped, ``executemany`` of a plain INSERT into the full schema, then counts rebuilt with
    one GROUP BY and the triggers created again (kvstore's connection settings)."""

    def load(self, pairs: list[Pair]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        triggers.drop(conn)
        conn.executemany(RAW_INSERT, pairs)
        conn.execute(sql.CLEAR_COUNTS)
        conn.execute("INSERT INTO counts (value, n) SELECT value, count(*) FROM items GROUP BY value")
        triggers.create(conn)
        conn.execute("COMMIT")


BEST_CACHE = 256 * 2**20
"""The page cache of the best raw bulk writes (kvstore's default bulk_cache is 160 MiB)."""


class BestLoad(RawSqlite):
    """The fastest bulk load found with raw ``sqlite3`` for random-order input: the input sorted
    by key first with ``sorted(pairs, key=itemgetter(0))`` (its keys are all ints, so Python's
    order is SQLite's; the key index then takes them in order, and a C-level sort key costs
    ~0.5 s per 1M pairs against ~1.6 s for a Python function), a 256 MiB page cache, the value
    index dropped and built after the rows, counts recounted through it, in one transaction.

    Measured and not faster: keeping the value index during the sorted insert (its 32 insertion
    points take appends; 4.7-4.8 s against 4.5-5.4 s at 1M, and a 4% bigger file); staging the
    pairs in a TEMP table and inserting them with one ``INSERT ... SELECT ... ORDER BY key``
    (5.0-5.5 s against 5.3-6.5 s for the Python-function sort, i.e. slower than itemgetter);
    ``PRAGMA threads = 2`` for the index build (no difference on this 2-core machine)."""

    def load(self, pairs: list[Pair]) -> None:
        conn = self.conn
        conn.execute(f"PRAGMA cache_size = -{BEST_CACHE // 1024}")
        conn.execute("BEGIN IMMEDIATE")
        triggers.drop(conn)
        conn.execute(f"DROP INDEX {VALUE_INDEX}")
        ordered: list[Pair] = sorted(pairs, key=itemgetter(0))
        conn.executemany(RAW_INSERT, ordered)
        conn.execute(sql.VALUE_INDEX)
        conn.execute(sql.CLEAR_COUNTS)
        conn.execute(sql.REBUILD_COUNTS)
        triggers.create(conn)
        conn.execute("COMMIT")


class BestMerge(RawSqlite):
    """The fastest bulk merge found with raw ``sqlite3`` into a populated store (pairs much
    fewer than the rows, so the value index is kept): the input sorted whole by key
    (``itemgetter(0)``, stable, so of two pairs with one key the later is written last and
    wins), a 256 MiB page cache, the count triggers dropped, one ``executemany`` of the
    upsert, counts rebuilt with one statement through the value index, in one transaction."""

    def merge(self, pairs: list[Pair]) -> None:
        conn = self.conn
        conn.execute(f"PRAGMA cache_size = -{BEST_CACHE // 1024}")
        conn.execute("BEGIN IMMEDIATE")
        triggers.drop(conn)
        conn.executemany(RAW_UPSERT, sorted(pairs, key=itemgetter(0)))
        conn.execute(sql.CLEAR_COUNTS)
        conn.execute(sql.REBUILD_COUNTS)
        conn.execute(sql.CLEAR_DISPLACED)
        triggers.create(conn)
        conn.execute("COMMIT")


class PlainSqlite(RawSqlite):
    """Raw ``sqlite3`` as a user opens it: SQLite's defaults (its 2 MiB page cache, a
    checkpoint by the commit that takes the WAL past 1,000 pages) with ``synchronous=NORMAL``,
    the durability kvstore promises by default, on a WAL file. The reference for autocommit
    ``set()``, each side on its own copy of the file, so checkpoints fall where they fall."""

    def __init__(self, path: str) -> None:
        import sqlite3

        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)
        self.conn.execute("PRAGMA synchronous = NORMAL")


def drop_triggers(path: str) -> None:
    """Make ``path`` the raw reference's file: same tables and index, no count triggers."""
    conn = connect(path, Options())
    try:
        triggers.drop(conn)
    finally:
        conn.close()
