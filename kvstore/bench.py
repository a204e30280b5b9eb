"""``kvstore bench``: kvstore's latency, throughput and space beside raw sqlite3 and its peers.

Every kvstore figure has a reference beside it: raw ``sqlite3`` doing the same work on the
same file in the same run, on a connection with the same pragmas
(:func:`kvstore.connection.connect`). The two run in interleaved batches (kvstore, raw,
raw, kvstore, ...) so that the noise of a shared machine falls on both alike; each figure is
the median (p50) or 99th percentile (p99) of the per-operation time of those batches, and
``ratio`` is kvstore's p50 over raw's p50.

The references, operation by operation:

- ``count`` (strategy ``counts``): ``SELECT n FROM counts WHERE value = ?``; for
  ``group_by`` and ``scan`` the same SQL kvstore runs (an aggregate over the value index,
  and a full scan), so those ratios show the cost of the Python layer alone.
- ``get(key)`` and ``db[key]``: ``SELECT value FROM items WHERE key = ?``.
- ``set(key, value)`` outside a transaction, half new keys, half overwrites: one autocommit
  upsert; the file's count triggers fire for both.
- ``update()`` of N new pairs into an empty store, and of N pairs (half overwrites) into a
  store holding N: ``executemany`` of a plain INSERT (an upsert when keys may exist) into the
  same ``items`` table and index *without* the triggers, in one transaction.

Peers (the ``bench`` extra): ``dict`` + ``collections.Counter`` in memory, diskcache and
sqlitedict doing the same get/set/count work; for those two a count is a scan of every value.

The measurement functions are plain code (:func:`run`, :func:`measure_size`, ...); the click
command :data:`command` wraps them. matplotlib, tabulate and the peers are imported only
when used, so importing this module costs little more than click.
"""

from __future__ import annotations

import gc
import json
import math
import operator
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from kvstore import sql, triggers
from kvstore.connection import Options, connect
from kvstore.files import remove_database

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (500, 2_000)

PEER_CAP = 100_000
"""diskcache and sqlitedict are loaded with at most this many pairs: they have no bulk path
(diskcache writes one row per call) and their count is a scan, seconds per query beyond it."""

FOODS = (
    "apple", "apricot", "avocado", "banana", "blackberry", "blueberry", "cherry", "clementine",
    "coconut", "cranberry", "date", "fig", "grape", "grapefruit", "guava", "kiwi",
    "lemon", "lime", "lychee", "mango", "melon", "nectarine", "orange", "papaya",
    "peach", "pear", "persimmon", "pineapple", "plum", "pomegranate", "quince", "raspberry",
)  # fmt: skip
"""The values: 32 foods, each held by about 1/32 of the keys."""

# Reference SQL, written out as a user of the file would write it.
RAW_GET = "SELECT value FROM items WHERE key = ?"
RAW_COUNT = "SELECT n FROM counts WHERE value = ?"
RAW_INSERT = "INSERT INTO items (key, value) VALUES (?, ?)"
RAW_UPSERT = (
    "INSERT INTO items (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
RAW_COUNT_SQL = {"counts": RAW_COUNT, "group_by": sql.COUNT_GROUP_BY, "scan": sql.COUNT_SCAN}

# Performance targets: the largest kvstore/raw ratio accepted, per operation, at TARGET_N items
# (smaller stores show the target for reference; below update()'s CHUNK the triggers fire per row).
TARGET_N = 1_000_000
TARGETS = {
    "count counts": 1.5,
    "get(key)": 1.5,
    "db[key]": 1.5,
    "set(key, value)": 1.3,
    "update: load": 1.3,
    "update: merge": 1.5,
}

BATCH_NS = 20_000
"""Aim for batches of about this long: long enough that the timer's own cost (~50 ns) is
lost in them, short enough that p99 still sees slow single operations."""
MAX_BATCH = 64
MIN_ROUNDS = 7
SET_BATCH = 32
"""set() batches hold at least this many writes: kvstore and raw write the same file in turn,
and the first statement after the other connection's commit re-reads its pages (SQLite drops
a connection's page cache when another one has changed the file)."""
MAX_ROUNDS = 5_000

_MULT = 0x9E3779B97F4A7C15  # odd, so i -> i * _MULT mod 2**63 is a bijection
_MASK = (1 << 63) - 1


# -- data ----------------------------------------------------------------------------------


def key_of(i: int) -> int:
    """The ``i``-th key: distinct for distinct ``i``, scattered over the signed 64-bit range."""
    return (i * _MULT) & _MASK


def value_of(i: int) -> str:
    """The value of the ``i``-th pair: a food, pseudo-randomly but reproducibly chosen."""
    return FOODS[((i * 0xD1B54A32D192ED03) & _MASK) >> 58 & 31]


def pairs(start: int, stop: int) -> Iterator[tuple[int, str]]:
    """Pairs ``start`` to ``stop`` as a stream: distinct random-looking keys, food values."""
    return ((key_of(i), value_of(i)) for i in range(start, stop))


def merge_pairs(n: int, seed: int = 3) -> list[tuple[int, str]]:
    """``n`` pairs for a store holding pairs 0..n: half overwrite existing keys, half are new."""
    rng = random.Random(seed)
    half = n // 2
    old = [(key_of(i), value_of(i + 7919)) for i in rng.sample(range(n), half)]
    new = list(pairs(n, n + (n - half)))
    batch = old + new
    rng.shuffle(batch)
    return batch


# -- timing --------------------------------------------------------------------------------


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(samples: Sequence[float], batch: int = 1) -> dict[str, Any]:
    """p50/p99 of per-operation times in ns, each sample being one batch's time per op."""
    ordered = sorted(samples)
    return {
        "p50_ns": statistics.median(ordered),
        "p99_ns": _percentile(ordered, 0.99),
        "samples": len(ordered),
        "ops_per_sample": batch,
    }


def _time_batch(op: Callable[[list[Any]], Any], batch: list[Any]) -> float:
    start = time.perf_counter_ns()
    op(batch)
    return (time.perf_counter_ns() - start) / len(batch)


def _plan(
    op: Callable[[list[Any]], Any], probe: list[Any], budget_s: float, min_rounds: int = MIN_ROUNDS
) -> tuple[int, int]:
    """Batch size and number of rounds for ``op``, from two timed runs over ``probe``."""
    _time_batch(op, probe)  # warm the statement cache and the pages
    per_op = max(_time_batch(op, probe), 20.0)
    batch = int(min(MAX_BATCH, max(1, BATCH_NS // per_op)))
    rounds = int(budget_s * 1e9 / (2 * per_op * batch))
    return batch, min(MAX_ROUNDS, max(min_rounds, rounds))


def compare(
    kv_op: Callable[[list[Any]], Any],
    raw_op: Callable[[list[Any]], Any],
    make_args: Callable[[int], tuple[list[Any], list[Any]]],
    budget_s: float,
    min_batch: int = 1,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Time kvstore's ``kv_op`` and raw sqlite3's ``raw_op`` in interleaved batches.

    Each op runs one batch: one operation per item of the list it gets. ``make_args(count)``
    returns ``count`` arguments for each side (separate lists, so writes need not collide).
    The order alternates every round so neither side always runs on the other's warm cache.
    ``min_batch``: for writes, whose every first statement after the other side's commit
    finds its page cache invalidated (SQLite's WAL check), which batches must amortize.
    """
    kv_probe, raw_probe = make_args(3)
    batch, rounds = _plan(kv_op, kv_probe, budget_s)
    if batch < min_batch:
        rounds = max(MIN_ROUNDS, rounds * batch // min_batch)
        batch = min_batch
    _time_batch(raw_op, raw_probe)
    kv_args, raw_args = make_args(batch * rounds)
    kv_samples: list[float] = []
    raw_samples: list[float] = []
    for r in range(rounds):
        kv_batch = kv_args[r * batch : (r + 1) * batch]
        raw_batch = raw_args[r * batch : (r + 1) * batch]
        if r % 2:
            raw_samples.append(_time_batch(raw_op, raw_batch))
            kv_samples.append(_time_batch(kv_op, kv_batch))
        else:
            kv_samples.append(_time_batch(kv_op, kv_batch))
            raw_samples.append(_time_batch(raw_op, raw_batch))
    return summarize(kv_samples, batch), summarize(raw_samples, batch)


def measure(
    op: Callable[[list[Any]], Any],
    make_args: Callable[[int], list[Any]],
    budget_s: float,
    min_rounds: int = MIN_ROUNDS,
) -> dict[str, Any]:
    """Time ``op`` alone (for peers, which have no raw reference), in batches like compare()."""
    batch, rounds = _plan(op, make_args(1), budget_s, min_rounds)
    args = make_args(batch * rounds)
    samples = [_time_batch(op, args[r * batch : (r + 1) * batch]) for r in range(rounds)]
    return summarize(samples, batch)


def compare_runs(kv_run: Callable[[], int], raw_run: Callable[[], int], repeat: int) -> tuple[list[int], list[int]]:
    """Interleave whole runs (bulk loads); each callable does its own setup and returns the ns it timed."""
    kv_ns: list[int] = []
    raw_ns: list[int] = []
    for r in range(repeat):
        for side in ((raw_run, raw_ns), (kv_run, kv_ns)) if r % 2 else ((kv_run, kv_ns), (raw_run, raw_ns)):
            gc.collect()
            side[1].append(side[0]())
    return kv_ns, raw_ns


def _row(name: str, n: int, kv: dict[str, Any], raw: dict[str, Any], kind: str = "latency") -> dict[str, Any]:
    ratio = kv["p50_ns"] / raw["p50_ns"] if raw["p50_ns"] else float("nan")
    target = TARGETS.get(name)
    return {
        "n": n,
        "operation": name,
        "kind": kind,
        "kvstore": kv,
        "sqlite3": raw,
        "ratio": ratio,
        "target": target,
        "met": None if target is None or n < TARGET_N else ratio <= target,
    }


# -- files ---------------------------------------------------------------------------------


class Files:
    """Scratch files in one folder: an empty kvstore file made once, and copies of it."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._serial = 0
        self._empty: str | None = None

    def new_path(self, stem: str) -> str:
        self._serial += 1
        return os.path.join(self.folder, f"{stem}-{self._serial}.db")

    def empty_store(self) -> str:
        """A new empty kvstore file (creating the first one imports SQLAlchemy; copies do not)."""
        if self._empty is None:
            import kvstore

            self._empty = self.new_path("empty")
            kvstore.open(self._empty).close()
        return self.copy(self._empty, "store")

    def copy(self, path: str, stem: str) -> str:
        target = self.new_path(stem)
        shutil.copyfile(path, target)
        return target

    def cleanup(self) -> None:
        if self._empty is not None:
            self.remove(self._empty)
            self._empty = None

    remove = staticmethod(remove_database)


def drop_triggers(path: str) -> None:
    """Make ``path`` the raw reference's file: same tables and index, no count triggers."""
    conn = connect(path, Options())
    try:
        for statement in triggers.drop_statements(triggers.CURRENT):
            conn.execute(statement)
    finally:
        conn.close()


def _raw_load(path: str, statement: str, batch: list[tuple[Any, Any]]) -> int:
    conn = connect(path, Options())
    try:
        start = time.perf_counter_ns()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(statement, batch)
        conn.execute("COMMIT")
        return time.perf_counter_ns() - start
    finally:
        conn.close()


def _kv_load(path: str, batch: list[tuple[Any, Any]]) -> int:
    import kvstore

    db = kvstore.open(path)
    try:
        db.get(0)  # open the thread's connection outside the timing
        start = time.perf_counter_ns()
        db.update(batch)
        return time.perf_counter_ns() - start
    finally:
        db.close()


def _load_row(name: str, n: int, kv_ns: list[int], raw_ns: list[int], pairs_n: int) -> dict[str, Any]:
    kv = {**summarize([t / pairs_n for t in kv_ns]), "seconds": [t / 1e9 for t in kv_ns]}
    raw = {**summarize([t / pairs_n for t in raw_ns]), "seconds": [t / 1e9 for t in raw_ns]}
    for side in (kv, raw):
        side["pairs_per_s"] = 1e9 / side["p50_ns"]
    return _row(name, n, kv, raw, kind="bulk")


# -- kvstore against raw sqlite3 -----------------------------------------------------------


def measure_loads(files: Files, n: int, repeat: int, merge: bool, step: Callable[[str], None]) -> tuple[list[dict[str, Any]], str]:
    """Bulk loads at size ``n``; returns the rows and a kvstore file holding pairs 0..n."""
    batch = list(pairs(0, n))
    keep: list[str] = []

    def kv_run() -> int:
        path = files.empty_store()
        elapsed = _kv_load(path, batch)
        if keep:
            files.remove(path)
        else:
            keep.append(path)
        return elapsed

    def raw_run() -> int:
        path = files.empty_store()
        drop_triggers(path)
        try:
            return _raw_load(path, RAW_INSERT, batch)
        finally:
            files.remove(path)

    kv_ns, raw_ns = compare_runs(kv_run, raw_run, repeat)
    rows = [_load_row("update: load", n, kv_ns, raw_ns, n)]
    step("update(): load")
    del batch
    if merge:
        more = merge_pairs(n)

        def kv_merge() -> int:
            path = files.copy(keep[0], "merge")
            try:
                return _kv_load(path, more)
            finally:
                files.remove(path)

        def raw_merge() -> int:
            path = files.copy(keep[0], "merge")
            drop_triggers(path)
            try:
                return _raw_load(path, RAW_UPSERT, more)
            finally:
                files.remove(path)

        kv_ns, raw_ns = compare_runs(kv_merge, raw_merge, repeat)
        rows.append(_load_row("update: merge", n, kv_ns, raw_ns, len(more)))
        step("update(): merge")
    return rows, keep[0]


def measure_store(path: str, n: int, budget_s: float, step: Callable[[str], None], seed: int = 1) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """count/get/set latencies on the kvstore file ``path`` (holding pairs 0..n), and its space."""
    import kvstore

    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    db = kvstore.open(path)
    raw = connect(path, Options())
    try:

        def values(count: int) -> tuple[list[Any], list[Any]]:
            chosen = [FOODS[rng.randrange(len(FOODS))] for _ in range(count)]
            return chosen, chosen

        for strategy in ("counts", "group_by", "scan"):
            query = RAW_COUNT_SQL[strategy]

            def kv_count(batch: list[Any], count=db.count, strategy=strategy) -> None:
                for value in batch:
                    count(value, strategy)

            def raw_count(batch: list[Any], execute=raw.execute, query=query) -> None:
                for value in batch:
                    execute(query, (value,)).fetchone()

            # The budget sets the rounds; a scan at 1M (~40 ms) still gets MIN_ROUNDS per side.
            kv, ref = compare(kv_count, raw_count, values, budget_s)
            rows.append(_row(f"count {strategy}", n, kv, ref))
            step(f"count {strategy}")

        def keys(count: int) -> tuple[list[Any], list[Any]]:
            chosen = [key_of(rng.randrange(n)) for _ in range(count)]
            return chosen, chosen

        def raw_get(batch: list[Any], execute=raw.execute) -> None:
            for key in batch:
                execute(RAW_GET, (key,)).fetchone()

        def kv_get(batch: list[Any], get=db.get) -> None:
            for key in batch:
                get(key)

        def kv_getitem(batch: list[Any], db=db) -> None:
            for key in batch:
                db[key]

        for name, op in (("get(key)", kv_get), ("db[key]", kv_getitem)):
            kv, ref = compare(op, raw_get, keys, budget_s)
            rows.append(_row(name, n, kv, ref))
            step(name)

        fresh = iter(range(n, 1 << 62))

        def writes(count: int) -> tuple[list[Any], list[Any]]:
            # Alternating new keys and overwrites; each side gets its own new keys.
            sides: tuple[list[Any], list[Any]] = ([], [])
            for side in sides:
                for j in range(count):
                    i = next(fresh) if j % 2 == 0 else rng.randrange(n)
                    side.append((key_of(i), FOODS[rng.randrange(len(FOODS))]))
            return sides

        def kv_set(batch: list[Any], put=db.set) -> None:
            for key, value in batch:
                put(key, value)

        def raw_set(batch: list[Any], execute=raw.execute) -> None:
            for pair in batch:
                execute(RAW_UPSERT, pair)

        kv, ref = compare(kv_set, raw_set, writes, budget_s, min_batch=SET_BATCH)
        rows.append(_row("set(key, value)", n, kv, ref))
        step("set(key, value)")

        stats = db.stats()
        problems = db.verify()
        space = {
            "n": n,
            "items_bytes": stats["items"]["bytes"],
            "value_index_bytes": stats["value_index"]["bytes"],
            "counts_bytes": stats["counts"]["bytes"],
            "file_bytes": stats["file"]["bytes"],
            "rows": stats["items"]["rows"],
            "distinct_values": stats["counts"]["rows"],
            "counts_exact": problems == [],
        }
        step("space")
    finally:
        raw.close()
        db.close()
    return rows, space


# -- peers -----------------------------------------------------------------------------------


def available_peers() -> list[str]:
    """The peers that can run here: dict+Counter always, the others when installed."""
    found = ["dict+Counter"]
    for name, module in (("diskcache", "diskcache"), ("sqlitedict", "sqlitedict")):
        try:
            __import__(module)
        except ImportError:
            continue
        found.append(name)
    return found


def measure_peer(peer: str, n: int, folder: str, budget_s: float, seed: int = 2) -> dict[str, Any]:
    """Load ``n`` pairs into ``peer``, then time get, set (committed each time) and count."""
    from collections import Counter

    rng = random.Random(seed)
    batch = list(pairs(0, n))
    fresh = iter(range(n, 1 << 62))

    def keys(count: int) -> list[Any]:
        return [key_of(rng.randrange(n)) for _ in range(count)]

    def writes(count: int) -> list[Any]:
        return [
            (key_of(next(fresh) if j % 2 == 0 else rng.randrange(n)), FOODS[rng.randrange(len(FOODS))])
            for j in range(count)
        ]

    def values(count: int) -> list[Any]:
        return [FOODS[rng.randrange(len(FOODS))] for _ in range(count)]

    result: dict[str, Any] = {"peer": peer, "n": n}
    file_bytes = None
    if peer == "dict+Counter":
        start = time.perf_counter_ns()
        d = dict(batch)
        counter = Counter(d.values())
        load_ns = time.perf_counter_ns() - start

        def get(b: list[Any]) -> None:
            for key in b:
                d.get(key)

        def put(b: list[Any]) -> None:
            for key, value in b:
                old = d.get(key)
                if old is not None:
                    counter[old] -= 1
                d[key] = value
                counter[value] += 1

        def count(b: list[Any]) -> None:
            for value in b:
                counter[value]

        def scan(b: list[Any]) -> None:
            for value in b:
                operator.countOf(d.values(), value)

        result["count_method"] = "Counter lookup (scan: operator.countOf over dict.values())"
        close: Callable[[], None] = lambda: None
    elif peer == "diskcache":
        import diskcache

        cache = diskcache.Cache(os.path.join(folder, f"diskcache-{n}"))
        start = time.perf_counter_ns()
        with cache.transact():
            for key, value in batch:
                cache.set(key, value)
        load_ns = time.perf_counter_ns() - start

        def get(b: list[Any]) -> None:
            for key in b:
                cache.get(key)

        def put(b: list[Any]) -> None:
            for key, value in b:
                cache.set(key, value)

        count = None

        def scan(b: list[Any]) -> None:
            for value in b:
                sum(1 for key in cache.iterkeys() if cache.get(key) == value)

        result["count_method"] = "scan: get() of every key (diskcache has no query by value)"
        close = cache.close
        file_bytes = lambda: cache.volume()  # noqa: E731
    elif peer == "sqlitedict":
        from sqlitedict import SqliteDict

        path = os.path.join(folder, f"sqlitedict-{n}.db")
        d_sql = SqliteDict(path, autocommit=True)
        start = time.perf_counter_ns()
        d_sql.update(batch)
        d_sql.commit()
        load_ns = time.perf_counter_ns() - start

        def get(b: list[Any]) -> None:
            for key in b:
                d_sql.get(key)

        def put(b: list[Any]) -> None:
            for key, value in b:
                d_sql[key] = value

        count = None

        def scan(b: list[Any]) -> None:
            for value in b:
                sum(1 for stored in d_sql.values() if stored == value)

        result["count_method"] = "scan: values() (sqlitedict has no query by value)"
        close = d_sql.close
        file_bytes = lambda: os.path.getsize(path)  # noqa: E731
    else:
        raise ValueError(f"unknown peer {peer!r}")
    try:
        result["load"] = {"p50_ns": load_ns / n, "pairs_per_s": n * 1e9 / load_ns, "seconds": load_ns / 1e9}
        result["get"] = measure(get, keys, budget_s)
        result["set"] = measure(put, writes, budget_s)
        result["count"] = measure(count, values, budget_s) if count is not None else None
        # A scan is O(n): a handful of them is the budget.
        result["scan"] = measure(scan, values, min(budget_s, 0.05), min_rounds=3)
        result["file_bytes"] = file_bytes() if file_bytes is not None else None
    finally:
        close()
    return result


# -- the whole run ---------------------------------------------------------------------------


def plan_steps(sizes: Sequence[int], peers: Sequence[str], merge: bool) -> int:
    """How many times run() calls progress(): per size, the loads, 6 latencies, space, peers."""
    return len(sizes) * (7 + int(merge) + len(peers))


def run(
    sizes: Sequence[int],
    *,
    folder: str | None = None,
    budget_s: float = 0.4,
    repeat: int | None = None,
    peers: Sequence[str] | None = None,
    merge: bool = True,
    progress: Callable[[str], None] = lambda label: None,
) -> dict[str, Any]:
    """Run the benchmark at each of ``sizes`` and return the report (what ``--json`` prints).

    ``budget_s``: seconds spent timing each latency comparison (both sides together).
    ``repeat``: runs of each bulk load per side (default 3 at 1M and above, else 5).
    ``peers``: which peers to measure (default: all installed; ``[]`` for none).
    ``progress(label)`` is called after each step.
    """
    import kvstore

    peers = available_peers() if peers is None else list(peers)
    report: dict[str, Any] = {
        "kvstore_version": kvstore.__version__,
        "sqlite_version": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "sizes": list(sizes),
        "results": [],
        "space": [],
        "peers": [],
        "notes": [
            f"latencies: time per operation over batches (set(): {SET_BATCH} writes a batch); "
            "p50 = median, p99 = 99th percentile; "
            "kvstore and raw sqlite3 batches interleaved on the same file; ratio = kvstore p50 / raw p50",
            "raw sqlite3: a connection from kvstore.connection.connect (same pragmas); "
            "bulk references insert into the same items table and index without the count triggers",
            f"peers diskcache and sqlitedict are loaded with at most {PEER_CAP:,} pairs; "
            "their count is a scan of every value",
        ],
    }
    peer_cache: dict[tuple[str, int], dict[str, Any]] = {}
    own_folder = folder is None
    folder = tempfile.mkdtemp(prefix="kvstore-bench-") if folder is None else folder
    os.makedirs(folder, exist_ok=True)
    files = Files(folder)
    try:
        for n in sizes:
            reps = repeat if repeat is not None else (3 if n >= 1_000_000 else 5)

            def step(label: str, n: int = n) -> None:
                progress(f"n={n:,} {label}")

            rows, path = measure_loads(files, n, reps, merge, step)
            store_rows, space = measure_store(path, n, budget_s, step)
            files.remove(path)
            report["results"].extend(store_rows + rows)
            report["space"].append(space)
            for peer in peers:
                size = n if peer == "dict+Counter" else min(n, PEER_CAP)
                if (peer, size) not in peer_cache:
                    peer_folder = tempfile.mkdtemp(prefix=f"{peer.replace('+', '-')}-", dir=folder)
                    peer_cache[peer, size] = measure_peer(peer, size, peer_folder, budget_s)
                    shutil.rmtree(peer_folder, ignore_errors=True)
                report["peers"].append({**peer_cache[peer, size], "for_n": n})
                step(peer)
    finally:
        files.cleanup()
        if own_folder:
            shutil.rmtree(folder, ignore_errors=True)
    return report


# -- output ----------------------------------------------------------------------------------


def fmt_time(ns: float | None) -> str:
    """A duration with three significant digits and a readable unit."""
    if ns is None or ns != ns:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def _verdict(row: dict[str, Any]) -> str:
    if row["target"] is None:
        return ""
    if row["met"] is None:
        return f"(≤{row['target']}× at {TARGET_N:,})"
    return f"≤{row['target']}× {'ok' if row['met'] else 'MISSED'}"


def render_table(report: dict[str, Any]) -> str:
    """The report as readable tables (tabulate), one section per kind of measurement."""
    sections = [
        _section("Latency per operation: kvstore beside raw sqlite3 on the same file",
                 ["N", "operation", "kvstore p50", "p99", "sqlite3 p50", "p99", "ratio", "target"],
                 _latency_rows(report)),
        _section("Bulk update(): kvstore (counts kept exact) beside raw executemany without triggers",
                 ["N", "update()", "kvstore", "pairs/s", "sqlite3", "pairs/s", "ratio", "target"],
                 _bulk_rows(report)),
        _section("Space on disk (dbstat)",
                 ["N", "items", "value index", "counts", "file", "file/item", "counts exact"],
                 _space_rows(report)),
    ]
    if report["peers"]:
        sections.append(
            _section("Peers (p50 per operation; load is per pair; count by scan is O(N))",
                     ["N", "store", "items held", "load", "get", "set", "count (index)", "count (scan)"],
                     _peer_rows(report))
        )
    notes = "\n".join(f"- {note}" for note in report["notes"])
    return "\n\n".join([*sections, notes])


def _section(title: str, headers: list[str], rows: list[list[str]]) -> str:
    from tabulate import tabulate

    return title + "\n" + tabulate(rows, headers=headers, disable_numparse=True)


def _latency_rows(report: dict[str, Any]) -> list[list[str]]:
    return [
        [
            f"{r['n']:,}",
            r["operation"],
            fmt_time(r["kvstore"]["p50_ns"]),
            fmt_time(r["kvstore"]["p99_ns"]),
            fmt_time(r["sqlite3"]["p50_ns"]),
            fmt_time(r["sqlite3"]["p99_ns"]),
            f"{r['ratio']:.2f}×",
            _verdict(r),
        ]
        for r in report["results"]
        if r["kind"] == "latency"
    ]


def _bulk_rows(report: dict[str, Any]) -> list[list[str]]:
    return [
        [
            f"{r['n']:,}",
            "load N new pairs" if r["operation"] == "update: load" else "N more, half overwrites",
            f"{statistics.median(r['kvstore']['seconds']):.3g} s",
            f"{r['kvstore']['pairs_per_s']:,.0f}/s",
            f"{statistics.median(r['sqlite3']['seconds']):.3g} s",
            f"{r['sqlite3']['pairs_per_s']:,.0f}/s",
            f"{r['ratio']:.2f}×",
            _verdict(r),
        ]
        for r in report["results"]
        if r["kind"] == "bulk"
    ]


def _space_rows(report: dict[str, Any]) -> list[list[str]]:
    return [
        [
            f"{s['n']:,}",
            fmt_bytes(s["items_bytes"]),
            fmt_bytes(s["value_index_bytes"]),
            fmt_bytes(s["counts_bytes"]),
            fmt_bytes(s["file_bytes"]),
            f"{s['file_bytes'] / max(1, s['rows']):.0f} B",
            "yes" if s["counts_exact"] else "NO",
        ]
        for s in report["space"]
    ]


def _peer_rows(report: dict[str, Any]) -> list[list[str]]:
    """kvstore's own figures, then each peer's, for every size."""
    kv = {(r["n"], r["operation"]): r for r in report["results"]}
    rows = []
    for n in report["sizes"]:
        if (n, "get(key)") in kv:
            rows.append(
                [
                    f"{n:,}",
                    "kvstore",
                    f"{n:,}",
                    *(fmt_time(kv[n, op]["kvstore"]["p50_ns"])
                      for op in ("update: load", "get(key)", "set(key, value)", "count counts", "count scan")),
                ]
            )
        for p in report["peers"]:
            if p["for_n"] != n:
                continue
            rows.append(
                [
                    "",
                    p["peer"],
                    f"{p['n']:,}" + (" (capped)" if p["n"] < n else ""),
                    fmt_time(p["load"]["p50_ns"]),
                    fmt_time(p["get"]["p50_ns"]),
                    fmt_time(p["set"]["p50_ns"]),
                    fmt_time(p["count"]["p50_ns"]) if p["count"] else "-",
                    fmt_time(p["scan"]["p50_ns"]),
                ]
            )
    return rows


def plot(report: dict[str, Any], path: str) -> None:
    """Count latency against N (log-log) per strategy and peer, and bytes per structure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    series: dict[str, list[tuple[int, float]]] = {}
    for r in report["results"]:
        if r["operation"].startswith("count "):
            strategy = r["operation"].split(" ", 1)[1]
            series.setdefault(f"kvstore count ({strategy})", []).append((r["n"], r["kvstore"]["p50_ns"]))
            if strategy == "counts":
                series.setdefault("raw sqlite3 counts lookup", []).append((r["n"], r["sqlite3"]["p50_ns"]))
    seen: set[tuple[str, int]] = set()
    for p in report["peers"]:
        if (p["peer"], p["n"]) in seen:
            continue
        seen.add((p["peer"], p["n"]))
        if p["count"]:
            series.setdefault(f"{p['peer']} (Counter)", []).append((p["n"], p["count"]["p50_ns"]))
        series.setdefault(f"{p['peer']} (scan)", []).append((p["n"], p["scan"]["p50_ns"]))
    for label, points in series.items():
        points.sort()
        style = "-o" if label.startswith("kvstore") else "--."
        left.plot([x for x, _ in points], [y / 1e3 for _, y in points], style, label=label)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("N (items)")
    left.set_ylabel("count(value) latency, p50 (µs)")
    left.set_title("count(value): constant time vs linear time")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize="small")

    space = report["space"]
    labels = [f"{s['n']:,}" for s in space]
    width = 0.27
    for i, (key, name) in enumerate(
        (("items_bytes", "items"), ("value_index_bytes", "value index"), ("counts_bytes", "counts"))
    ):
        xs = [j + (i - 1) * width for j in range(len(space))]
        right.bar(xs, [max(1, s[key]) for s in space], width, label=name)
    right.set_xticks(range(len(space)), labels)
    right.set_yscale("log")
    right.set_xlabel("N (items)")
    right.set_ylabel("bytes on disk (dbstat)")
    right.set_title("space per structure")
    right.grid(True, axis="y", which="both", alpha=0.3)
    right.legend(fontsize="small")
    fig.suptitle(
        f"kvstore {report['kvstore_version']} · SQLite {report['sqlite_version']} · Python {report['python']}"
    )
    fig.savefig(path, dpi=110)


# -- the command -----------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    """``"10k,100k,1M"`` -> ``[10000, 100000, 1000000]``."""
    sizes = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1].lower(), 1)
        number = part[:-1] if scale != 1 else part
        try:
            value = int(float(number) * scale)
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a size; write e.g. 10k,100k,1M") from None
        if value < 100:
            raise click.BadParameter(f"size {part!r} is too small; use at least 100")
        sizes.append(value)
    if not sizes:
        raise click.BadParameter("give at least one size, e.g. 10k,100k,1M")
    return sizes


@contextmanager
def _progress_bar(total: int, quiet: bool) -> Iterator[Callable[[str], None]]:
    with click.progressbar(
        length=total,
        label="kvstore bench",
        file=sys.stderr,
        hidden=quiet,
        item_show_func=lambda label: label,
        show_pos=True,
    ) as bar:
        yield lambda label: bar.update(1, label)


@click.command("bench")
@click.option(
    "--sizes",
    default="10k,100k,1M",
    show_default=True,
    help="Store sizes to measure, comma-separated (k = thousand, M = million).",
)
@click.option("--quick", is_flag=True, help=f"Tiny sizes ({', '.join(map(str, QUICK_SIZES))}) and short timings: a smoke test.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON instead of tables.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, writable=True), help="Also write a PNG: count latency against N, and space per structure.")
@click.option("--peers/--no-peers", default=True, show_default=True, help="Also measure dict+Counter, diskcache and sqlitedict (when installed).")
@click.option("--merge/--no-merge", default=True, show_default=True, help="Also time update() of N pairs (half overwrites) into a store of N.")
@click.option("--budget", type=click.FloatRange(min=0.001), default=0.4, show_default=True, help="Seconds spent timing each latency comparison.")
@click.option("--repeat", type=click.IntRange(min=1), help="Runs of each bulk load per side [default: 3 at 1M and above, else 5].")
@click.option("--dir", "folder", type=click.Path(file_okay=False), help="Folder for the scratch files [default: a temporary folder, removed after].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar on stderr.")
def command(
    sizes: str,
    quick: bool,
    as_json: bool,
    plot_path: str | None,
    peers: bool,
    merge: bool,
    budget: float,
    repeat: int | None,
    folder: str | None,
    quiet: bool,
) -> None:
    """Measure count/get/set latency, bulk loads and space, beside raw sqlite3 and peers.

    Each kvstore figure is shown beside raw sqlite3 doing the same work on the same file,
    with the ratio kvstore/raw (lower is better; 1.00× means no overhead).
    """
    size_list = list(QUICK_SIZES) if quick else parse_sizes(sizes)
    if quick:
        budget = min(budget, 0.01)
        repeat = repeat or 1
    peer_list = available_peers() if peers else []
    total = plan_steps(size_list, peer_list, merge)
    with _progress_bar(total, quiet) as step:
        report = run(
            size_list,
            folder=folder,
            budget_s=budget,
            repeat=repeat,
            peers=peer_list,
            merge=merge,
            progress=step,
        )
    if plot_path:
        plot(report, plot_path)
        report["plot"] = plot_path
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(render_table(report))
        if plot_path:
            click.echo(f"\nPlot written to {plot_path}")


if __name__ == "__main__":  # python -m kvstore.bench [OPTIONS]
    command()
