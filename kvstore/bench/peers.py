"""The stores the benchmark drives: one protocol, one small class per store.

:class:`Peer` is the protocol (as dogpile.cache's ``CacheBackend`` is for its backends):
open on a path, bulk ``load``, then ``get``/``put``/``count``/``scan`` over batches, each
item one operation (a ``put`` is committed before the next).

:data:`PEERS` is the registry of the optional peers (``dict`` + ``Counter``, diskcache,
sqlitedict, lmdb, rocksdict: the ``bench`` extra). Each class imports its driver inside
``__init__``, so importing this module imports none; :func:`peer_status` says which can run
here and why the others cannot. kvstore and raw sqlite3, the two sides of every
comparison, are Peer classes too, in :mod:`kvstore.bench.sides`.
"""

from __future__ import annotations

import abc
import importlib
import operator
import os
from collections import Counter
from typing import Any, ClassVar

from kvstore.bench.data import Pair

PEER_CAP = 100_000
"""Peers without a bulk path whose count is a slow scan are loaded with at most this many
pairs (diskcache writes one row per call; their scans take seconds per query beyond it)."""


class Peer(abc.ABC):
    """A store the benchmark drives. Opening (``__init__``) is not timed; the rest is.

    Class attributes describe the store: ``name`` (as reported), ``requires`` (modules its
    driver needs), ``cap`` (most pairs it is loaded with; None: all), ``survives`` (what a
    returned ``put`` survives: ``"crash"``, ``"power loss"`` or ``"-"``), ``count_method``
    (how ``count``/``scan`` answer) and ``indexed_count`` (whether ``count`` exists, beside
    the ``scan`` every store can do).
    """

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    cap: ClassVar[int | None] = None
    survives: ClassVar[str]
    count_method: ClassVar[str]
    indexed_count: ClassVar[bool] = False

    @abc.abstractmethod
    def __init__(self, path: str) -> None:
        """Open the store at ``path`` (a file or folder it may create), or create it there."""

    @abc.abstractmethod
    def load(self, pairs: list[Pair]) -> None:
        """Write ``pairs`` in bulk, the fastest way the store offers, committed on return."""

    @abc.abstractmethod
    def get(self, keys: list[Any]) -> None:
        """Read each key's value."""

    @abc.abstractmethod
    def put(self, pairs: list[Pair]) -> None:
        """Set each pair, committing each one as an autocommit write would."""

    def count(self, values: list[str]) -> None:
        """How many keys hold each value, from a structure kept for it (``indexed_count``)."""
        raise NotImplementedError(f"{self.name} keeps no count per value")

    @abc.abstractmethod
    def scan(self, values: list[str]) -> None:
        """How many keys hold each value, by reading every value: O(N) per item."""

    def file_bytes(self) -> int | None:
        """Bytes the store takes on disk (None in memory)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional: most stores have something to close
        """Release the store; the benchmark removes its files afterwards."""


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


# -- the peers ------------------------------------------------------------------------------


class DictCounter(Peer):
    """A ``dict`` with a ``collections.Counter`` kept beside it: the in-memory ideal."""

    name = "dict+Counter"
    survives = "-"
    count_method = "Counter lookup (scan: operator.countOf over dict.values())"
    indexed_count = True

    def __init__(self, path: str) -> None:
        self.items: dict[Any, str] = {}
        self.counter: Counter[str] = Counter()

    def load(self, pairs: list[Pair]) -> None:
        self.items.update(pairs)
        self.counter = Counter(self.items.values())

    def get(self, keys: list[Any]) -> None:
        get = self.items.get
        for key in keys:
            get(key)

    def put(self, pairs: list[Pair]) -> None:
        items, counter = self.items, self.counter
        for key, value in pairs:
            old = items.get(key)
            if old is not None:
                counter[old] -= 1
            items[key] = value
            counter[value] += 1

    def count(self, values: list[str]) -> None:
        counter = self.counter
        for value in values:
            counter[value]

    def scan(self, values: list[str]) -> None:
        for value in values:
            operator.countOf(self.items.values(), value)


class Diskcache(Peer):
    """diskcache's ``Cache`` (SQLite underneath, one row per ``set``)."""

    name = "diskcache"
    requires = ("diskcache",)
    cap = PEER_CAP
    survives = "crash"
    count_method = "scan: get() of every key (diskcache has no query by value)"

    def __init__(self, path: str) -> None:
        import diskcache

        self.cache = diskcache.Cache(path)

    def load(self, pairs: list[Pair]) -> None:
        cache = self.cache
        with cache.transact():
            for key, value in pairs:
                cache.set(key, value)

    def get(self, keys: list[Any]) -> None:
        get = self.cache.get
        for key in keys:
            get(key)

    def put(self, pairs: list[Pair]) -> None:
        put = self.cache.set
        for key, value in pairs:
            put(key, value)

    def scan(self, values: list[str]) -> None:
        cache = self.cache
        for value in values:
            sum(1 for key in cache.iterkeys() if cache.get(key) == value)

    def file_bytes(self) -> int:
        return int(self.cache.volume())

    def close(self) -> None:
        self.cache.close()


class Sqlitedict(Peer):
    """sqlitedict's ``SqliteDict`` with ``autocommit=True`` (a writer thread per connection)."""

    name = "sqlitedict"
    requires = ("sqlitedict",)
    cap = PEER_CAP
    survives = "power loss"
    count_method = "scan: values() (sqlitedict has no query by value)"

    def __init__(self, path: str) -> None:
        from sqlitedict import SqliteDict

        self.path = path + ".db"
        self.d = SqliteDict(self.path, autocommit=True)

    def load(self, pairs: list[Pair]) -> None:
        self.d.update(pairs)
        self.d.commit()

    def get(self, keys: list[Any]) -> None:
        get = self.d.get
        for key in keys:
            get(key)

    def put(self, pairs: list[Pair]) -> None:
        d = self.d
        for key, value in pairs:
            d[key] = value

    def scan(self, values: list[str]) -> None:
        for value in values:
            sum(1 for stored in self.d.values() if stored == value)

    def file_bytes(self) -> int:
        return os.path.getsize(self.path)

    def close(self) -> None:
        self.d.close()


class Lmdb(Peer):
    """LMDB through ``lmdb``: a transaction per get and per put (a put is fsynced on commit).

    Keys are 8-byte big-endian signed ints and values UTF-8, encoded on every call as an
    application would.
    """

    name = "lmdb"
    requires = ("lmdb",)
    survives = "power loss"
    count_method = "scan: every value in one read transaction (LMDB has no query by value)"
    MAP_SIZE = 1 << 34  # address space reserved, not disk: the file grows as pages are used

    def __init__(self, path: str) -> None:
        import lmdb

        self.env = lmdb.open(path, map_size=self.MAP_SIZE)

    def load(self, pairs: list[Pair]) -> None:
        with self.env.begin(write=True) as txn:
            txn.cursor().putmulti((key.to_bytes(8, "big", signed=True), value.encode()) for key, value in pairs)

    def get(self, keys: list[Any]) -> None:
        begin = self.env.begin
        for key in keys:
            with begin() as txn:
                txn.get(key.to_bytes(8, "big", signed=True))

    def put(self, pairs: list[Pair]) -> None:
        begin = self.env.begin
        for key, value in pairs:
            with begin(write=True) as txn:
                txn.put(key.to_bytes(8, "big", signed=True), value.encode())

    def scan(self, values: list[str]) -> None:
        for value in values:
            wanted = value.encode()
            with self.env.begin() as txn:
                sum(1 for stored in txn.cursor().iternext(keys=False, values=True) if stored == wanted)

    def file_bytes(self) -> int:
        return (int(self.env.info()["last_pgno"]) + 1) * int(self.env.stat()["psize"])

    def close(self) -> None:
        self.env.close()


class Rocksdict(Peer):
    """RocksDB through ``rocksdict``'s ``Rdict``: ``load`` is one ``WriteBatch``; puts go to
    the write-ahead log without fsync."""

    name = "rocksdict"
    requires = ("rocksdict",)
    survives = "crash"
    count_method = "scan: values() (RocksDB has no query by value)"

    def __init__(self, path: str) -> None:
        from rocksdict import Rdict

        self.path = path
        self.db = Rdict(path)

    def load(self, pairs: list[Pair]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch()
        for key, value in pairs:
            batch.put(key, value)
        self.db.write(batch)

    def get(self, keys: list[Any]) -> None:
        get = self.db.get
        for key in keys:
            get(key)

    def put(self, pairs: list[Pair]) -> None:
        db = self.db
        for key, value in pairs:
            db[key] = value

    def scan(self, values: list[str]) -> None:
        for value in values:
            sum(1 for stored in self.db.values() if stored == value)

    def file_bytes(self) -> int:
        return _folder_bytes(self.path)

    def close(self) -> None:
        self.db.close()


PEERS: dict[str, type[Peer]] = {cls.name: cls for cls in (DictCounter, Diskcache, Sqlitedict, Lmdb, Rocksdict)}
"""The registry of optional peers, in report order (kvstore and raw sqlite3 always run)."""


def peer_status(names: list[str] | None = None) -> dict[str, str | None]:
    """Each peer (default: every registered one) -> None if it can run here, else why not.

    Raises ValueError for a name not in :data:`PEERS`.
    """
    status: dict[str, str | None] = {}
    for name in PEERS if names is None else names:
        if name not in PEERS:
            raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
        status[name] = None
        for module in PEERS[name].requires:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                status[name] = f"not installed ({exc}); pip install 'kvstore[bench]'"
                break
    return status


def available_peers(names: list[str] | None = None) -> list[str]:
    """The peers that can run here: dict+Counter always, the others when installed."""
    return [name for name, reason in peer_status(names).items() if reason is None]
