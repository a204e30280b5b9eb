"""What is measured: kvstore beside raw sqlite3 on one file (bulk loads, latencies, space),
and each peer on its own. The numbers come from :mod:`.timing`, the stores from :mod:`.sides`
and :mod:`.peers`."""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable
from typing import Any

from kvstore.bench.data import Pair, Workload, key_of, merge_pairs, pairs, value_of
from kvstore.bench.peers import Peer
from kvstore.bench.sides import STRATEGIES, BestLoad, BestMerge, Kvstore, NaiveLoad, PlainSqlite, RawSqlite, drop_triggers
from kvstore.bench.timing import (
    Summary,
    compare,
    compare_runs,
    measure,
    summarize,
    time_once,
)
from kvstore.sqlite.files import remove_database

Step = Callable[[str], None]

# Performance targets: the largest kvstore/raw ratio accepted, per operation, at TARGET_N items
# (smaller stores show the target for reference; below update()'s CHUNK the triggers fire per row).
TARGET_N = 1_000_000
TARGETS = {
    "count counts": 1.5,
    "get(key)": 1.5,
    "db[key]": 1.5,
    "set(key, value)": 0.7,
    "update: load": 1.3,
    "bulk load vs naive raw": 0.55,
    "bulk load vs best raw": 1.25,
    "update: merge": 1.5,
    "bulk merge vs best raw": 1.25,
}

SET_BATCH = 2000
"""set() batches hold at least this many autocommit writes, so that each batch's mean counts the
checkpoints wherever they land (SQLite's default runs one about every 300 such writes)."""

LOAD_STEPS = ("update(): load", "update(): merge")
LATENCY_STEPS = (*(f"count {s}" for s in STRATEGIES), "get(key)", "db[key]", "set(key, value)")
SPACE_STEP = "space"


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


def row(name: str, n: int, kv: Summary, raw: Summary, kind: str = "latency") -> dict[str, Any]:
    """One comparison: both sides' summaries, the ratio of their p50s, the target if any."""
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


def _load_row(name: str, n: int, kv_ns: list[int], raw_ns: list[int], pairs_n: int) -> dict[str, Any]:
    kv = {**summarize([t / pairs_n for t in kv_ns]), "seconds": [t / 1e9 for t in kv_ns]}
    raw = {**summarize([t / pairs_n for t in raw_ns]), "seconds": [t / 1e9 for t in raw_ns]}
    for side in (kv, raw):
        side["pairs_per_s"] = 1e9 / side["p50_ns"]
    return row(name, n, kv, raw, kind="bulk")


def _compare_loads(files: Files, source: str | None, batch: list[Pair], repeat: int) -> tuple[list[int], list[int], str]:
    """Interleaved bulk writes of ``batch``: kvstore's ``update()`` into a kvstore file, raw
    ``executemany`` into the same file without the count triggers. The file is a new empty
    store when ``source`` is None (a plain INSERT for raw), else a copy of ``source`` (an
    upsert). Returns both sides' ns and the first kvstore file written, which is kept."""
    keep: list[str] = []

    def one(side: type[Kvstore | RawSqlite]) -> int:
        path = files.empty_store() if source is None else files.copy(source, "merge")
        if side is RawSqlite:
            drop_triggers(path)
        store = side(path)
        try:
            write = store.load if source is None else store.merge
            return time_once(lambda: write(batch))
        finally:
            store.close()
            if side is Kvstore and not keep:
                keep.append(path)
            else:
                files.remove(path)

    kv_ns, raw_ns = compare_runs(lambda: one(Kvstore), lambda: one(RawSqlite), repeat)
    return kv_ns, raw_ns, keep[0]


def measure_loads(files: Files, n: int, repeat: int, merge: bool, step: Step) -> tuple[list[dict[str, Any]], str]:
    """Bulk loads at size ``n``; returns the rows and a kvstore file holding pairs 0..n.

    kvstore's ``update()`` against raw ``executemany`` without the count triggers: N new
    pairs into an empty store, then (``merge``) N more pairs, half of them overwrites, into
    a store holding N.
    """
    kv_ns, raw_ns, loaded = _compare_loads(files, None, list(pairs(0, n)), repeat)
    rows = [_load_row("update: load", n, kv_ns, raw_ns, n)]
    step(LOAD_STEPS[0])
    if merge:
        more = merge_pairs(n)
        kv_ns, raw_ns, merged = _compare_loads(files, loaded, more, repeat)
        files.remove(merged)
        rows.append(_load_row("update: merge", n, kv_ns, raw_ns, len(more)))
        step(LOAD_STEPS[1])
    return rows, loaded


def compare_bulk_loads(files: Files, n: int, repeat: int) -> list[dict[str, Any]]:
    """``update()`` of ``n`` random-order pairs into an empty store against the naive and the
    best raw loads (:class:`NaiveLoad`, :class:`BestLoad`), interleaved whole runs; two rows."""
    batch = list(pairs(0, n))
    times: dict[type[Kvstore | RawSqlite], list[int]] = {Kvstore: [], NaiveLoad: [], BestLoad: []}

    def one(side: type[Kvstore | RawSqlite]) -> int:
        path = files.empty_store()
        store = side(path)
        try:
            return time_once(lambda: store.load(batch))
        finally:
            store.close()
            files.remove(path)

    for r in range(repeat):
        for side in (list(times) if r % 2 == 0 else list(reversed(times))):
            times[side].append(one(side))
    return [_load_row(name, n, times[Kvstore], times[side], n)
            for name, side in (("bulk load vs naive raw", NaiveLoad), ("bulk load vs best raw", BestLoad))]


def merge_batch(stored: int, n: int, seed: int = 3) -> list[Pair]:
    """``n`` pairs in random order for a store of the benchmark's pairs 0..``stored``: half
    overwrite stored keys (with other foods), half are new (like :func:`merge_pairs`)."""
    rng = random.Random(seed)
    half = n // 2
    old = [(key_of(i), value_of(i + 7919)) for i in rng.sample(range(stored), half)]
    batch = old + list(pairs(stored, stored + (n - half)))
    rng.shuffle(batch)
    return batch


def compare_bulk_merge(files: Files, source: str, stored: int, n: int, repeat: int) -> dict[str, Any]:
    """``update()`` of a list of ``n`` pairs (:func:`merge_batch`) into a copy of ``source`` (a
    kvstore file of pairs 0..``stored``) against the best raw merge (:class:`BestMerge`) into
    another copy; whole runs interleaved, the side going first alternating; one row."""
    batch = merge_batch(stored, n)
    times: dict[type[Kvstore | RawSqlite], list[int]] = {Kvstore: [], BestMerge: []}

    def one(side: type[Kvstore | RawSqlite]) -> int:
        path = files.copy(source, "merge")
        try:
            store = side(path)
            try:
                return time_once(lambda: store.merge(batch))
            finally:
                store.close()
        finally:
            files.remove(path)

    for r in range(repeat):
        for side in (list(times) if r % 2 == 0 else list(reversed(times))):
            times[side].append(one(side))
    found = _load_row("bulk merge vs best raw", stored, times[Kvstore], times[BestMerge], n)
    found["met"] = None if stored < 10 * TARGET_N else found["ratio"] <= found["target"]
    return found


def compare_autocommit(path: str, work: Workload, budget_s: float) -> tuple[Summary, Summary]:
    """Autocommit ``set()`` against raw upserts (:class:`PlainSqlite`), each side writing its own
    copy of ``path`` (count triggers included) in interleaved batches of SET_BATCH writes."""
    copies = [path + suffix for suffix in (".set-kv", ".set-raw")]
    for copy in copies:
        shutil.copyfile(path, copy)
    kv, raw = Kvstore(copies[0]), PlainSqlite(copies[1])
    try:
        return compare(kv.put, raw.put, lambda count: (work.writes(count), work.writes(count)), budget_s,
                       min_batch=SET_BATCH)
    finally:
        kv.close()
        raw.close()
        for copy in copies:
            remove_database(copy)


def measure_store(path: str, n: int, budget_s: float, step: Step, seed: int = 1) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """count/get/set latencies on the kvstore file ``path`` (holding pairs 0..n), and its space.

    kvstore and raw sqlite3 read the same file in interleaved batches; ``set`` is measured on
    two copies of it (:func:`compare_autocommit`).
    """
    work = Workload(n, seed)
    rows: list[dict[str, Any]] = []
    kv = Kvstore(path)
    try:
        raw = RawSqlite(path)
    except BaseException:
        kv.close()
        raise
    try:

        def values(count: int) -> tuple[list[Any], list[Any]]:
            chosen = work.values(count)
            return chosen, chosen

        def keys(count: int) -> tuple[list[Any], list[Any]]:
            chosen = work.keys(count)
            return chosen, chosen

        # The budget sets the rounds; a scan at 1M (~40 ms) still gets MIN_ROUNDS per side.
        for strategy in STRATEGIES:
            name = f"count {strategy}"
            rows.append(row(name, n, *compare(kv.counter(strategy), raw.counter(strategy), values, budget_s)))
            step(name)
        for name, op in (("get(key)", kv.get), ("db[key]", kv.getitem)):
            rows.append(row(name, n, *compare(op, raw.get, keys, budget_s)))
            step(name)
        name = "set(key, value)"
        rows.append(row(name, n, *compare_autocommit(path, work, budget_s)))
        step(name)

        stats = kv.db.stats()
        space = {
            "n": n,
            "items_bytes": stats["items"]["bytes"],
            "value_index_bytes": stats["value_index"]["bytes"],
            "counts_bytes": stats["counts"]["bytes"],
            "file_bytes": stats["file"]["bytes"],
            "rows": stats["items"]["rows"],
            "distinct_values": stats["counts"]["rows"],
            "counts_exact": kv.db.verify() == [],
        }
        step(SPACE_STEP)
    finally:
        raw.close()
        kv.close()
    return rows, space


def peer_size(peer: type[Peer], n: int) -> int:
    """How many pairs ``peer`` is loaded with for a store of ``n``."""
    return n if peer.cap is None else min(n, peer.cap)


def measure_peer(peer: type[Peer], n: int, folder: str, budget_s: float, seed: int = 2) -> dict[str, Any]:
    """Load ``n`` pairs into a new ``peer`` in ``folder``, then time get, put (committed each
    time), count (when the peer keeps one) and a scan."""
    work = Workload(n, seed)
    batch = list(pairs(0, n))
    slug = peer.name.replace("+", "-")
    store = peer(os.path.join(folder, f"{slug}-{n}"))
    try:
        start = time.perf_counter_ns()
        store.load(batch)
        load_ns = max(1, time.perf_counter_ns() - start)
        del batch
        return {
            "peer": peer.name,
            "n": n,
            "count_method": peer.count_method,
            "survives": peer.survives,
            "load": {"p50_ns": load_ns / n, "pairs_per_s": n * 1e9 / load_ns, "seconds": load_ns / 1e9},
            "get": measure(store.get, work.keys, budget_s),
            "set": measure(store.put, work.writes, budget_s),
            "count": measure(store.count, work.values, budget_s) if peer.indexed_count else None,
            # A scan is O(n): a handful of them is the budget.
            "scan": measure(store.scan, work.values, min(budget_s, 0.05), min_rounds=3),
            "file_bytes": store.file_bytes(),
        }
    finally:
        store.close()
