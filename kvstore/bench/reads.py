"""The read targets of ``python -m kvstore.targets``: reads of a large store against raw sqlite3
with default settings, the batch reads against a loop of single reads, and ``kvstore count``
in a fresh process against a Python one-liner.

The reference for single reads is what a user of the file writes: ``sqlite3.connect(path)``
with nothing changed, and ``conn.execute(query, (arg,)).fetchone()`` per call. Both sides
run in interleaved batches on the same file (:func:`kvstore.bench.timing.compare`), after the
same number of warm-up reads each, each side with random keys of its own.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from kvstore.bench.data import Workload, pairs
from kvstore.bench.sides import RAW_COUNT, RAW_GET
from kvstore.bench.timing import compare, summarize, time_batch

Row = dict[str, Any]
Step = Callable[[str], None]

READ_TARGET = 0.9
"""get() and count() at most this fraction of raw sqlite3's time with default settings."""
BATCH_TARGET = 0.5
"""get_many()/count_many() per key at most this fraction of a loop of get()/count()."""
COLD_TARGET = 2.0
"""`kvstore count` in a fresh process at most this multiple of the sqlite3 one-liner."""
BATCH = 64
"""Single reads per timed batch (each side runs a whole batch in turn): long enough that the
two sides' alternation does not dominate what is timed (the timer's default would be 2-3
reads), short enough that the noise of a shared machine still falls on both alike."""
MANY = 1000
"""Keys (values) per get_many() (count_many()) call in the batch targets."""
WARM_READS = 200_000
"""Random get()s per side before timing: a memory map (kvstore's) or the OS page cache (raw)
holds what they touched, as in a process that has been reading for a while."""


def build(path: str, n: int, step: Step) -> None:
    """A kvstore file at ``path`` holding the benchmark's pairs 0..n (streamed, one update())."""
    import kvstore

    with kvstore.open(path) as db:
        db.update(pairs(0, n))
    step(f"reads: built {n:,} pairs")


def row(target: str, kv: dict[str, Any], raw: dict[str, Any], goal: float, reference: str) -> Row:
    ratio = kv["p50_ns"] / raw["p50_ns"]
    return {"target": target, "kvstore_ns": kv["p50_ns"], "reference_ns": raw["p50_ns"], "reference": reference,
            "ratio": ratio, "goal": goal, "met": ratio <= goal, "detail": {"kvstore": kv, "reference": raw}}


def measure_reads(path: str, n: int, budget_s: float, step: Step, seed: int = 5) -> list[Row]:
    """get() and count() against raw sqlite3 with default settings; the batch reads against loops."""
    import kvstore

    work = Workload(n, seed)
    db = kvstore.open(path)
    raw = sqlite3.connect(path)
    try:
        raw_execute = raw.execute

        def raw_get(keys: list[Any]) -> None:
            for key in keys:
                raw_execute(RAW_GET, (key,)).fetchone()

        def raw_count(values: list[Any]) -> None:
            for value in values:
                raw_execute(RAW_COUNT, (value,)).fetchone()

        def kv_get(keys: list[Any], get: Any = db.get) -> None:
            for key in keys:
                get(key)

        def kv_count(values: list[Any], count: Any = db.count) -> None:
            for value in values:
                count(value)

        def apart(args: Callable[[int], list[Any]]) -> Callable[[int], tuple[list[Any], list[Any]]]:
            # Each side its own random keys: a batch must not find its pages warmed by the
            # other side's batch of the same keys just before.
            def make(count: int) -> tuple[list[Any], list[Any]]:
                return args(count), args(count)

            return make

        warm = work.keys(min(WARM_READS, 20 * n))
        kv_get(warm)
        raw_get(warm)
        rows = [
            row(f"get(key), {n:,} items", *compare(kv_get, raw_get, apart(work.keys), budget_s, BATCH), READ_TARGET,
                "raw sqlite3, default settings"),
            row(f"count(value), {n:,} items", *compare(kv_count, raw_count, apart(work.values), budget_s, BATCH), READ_TARGET,
                "raw sqlite3, default settings"),
        ]
        step("reads: get, count")
        rows.append(row(f"get_many() of {MANY:,} keys, per key", *_batch_vs_loop(db.get_many, kv_get, work.keys, budget_s),
                        BATCH_TARGET, "a loop of get()"))
        rows.append(row(f"count_many() of {MANY:,} values, per value",
                        *_batch_vs_loop(db.count_many, kv_count, work.values, budget_s), BATCH_TARGET, "a loop of count()"))
        step("reads: get_many, count_many")
        return rows
    finally:
        raw.close()
        db.close()


def _batch_vs_loop(batch_op: Callable[[list[Any]], object], loop_op: Callable[[list[Any]], object],
                   args: Callable[[int], list[Any]], budget_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-argument ns of ``batch_op`` and of ``loop_op``, each over MANY random arguments of its own, interleaved."""
    batch_ns: list[float] = []
    loop_ns: list[float] = []
    deadline = time.perf_counter() + budget_s
    r = 0
    while time.perf_counter() < deadline or r < 7:
        sides = ((batch_op, batch_ns), (loop_op, loop_ns))
        for op, out in sides if r % 2 else sides[::-1]:
            out.append(time_batch(op, args(MANY)))
        r += 1
    return summarize(batch_ns, MANY), summarize(loop_ns, MANY)


ONE_LINER = ("import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("
             "'SELECT n FROM counts WHERE value = ?', (sys.argv[2],)).fetchone()[0])")


def measure_cold_start(path: str, runs: int, value: str = "clementine") -> Row:
    """``kvstore count PATH VALUE`` in fresh processes against the sqlite3 one-liner, interleaved.

    Both run with bytecode caching on (in a scratch PYTHONPYCACHEPREFIX, one warm-up run each),
    as an installed package runs, whatever PYTHONDONTWRITEBYTECODE says here.
    """
    exe = shutil.which("kvstore")
    if exe is None:
        raise RuntimeError("the kvstore console script is not on PATH; pip install the project first")
    ours, theirs = [exe, "count", path, value], [sys.executable, "-c", ONE_LINER, path, value]
    cache = tempfile.mkdtemp(prefix="kvstore-pyc-")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    times: dict[int, list[float]] = {0: [], 1: []}
    try:
        first = [subprocess.run(argv, check=True, capture_output=True, env=env).stdout for argv in (ours, theirs)]
        if first[0] != first[1]:
            raise RuntimeError(f"kvstore count and the one-liner disagree: {first[0]!r} != {first[1]!r}")
        for r in range(runs):
            for side in (0, 1) if r % 2 else (1, 0):
                start = time.perf_counter()
                subprocess.run((ours, theirs)[side], check=True, capture_output=True, env=env)
                times[side].append(time.perf_counter() - start)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    kv = {"p50_ns": statistics.median(times[0]) * 1e9, "seconds": times[0]}
    raw = {"p50_ns": statistics.median(times[1]) * 1e9, "seconds": times[1]}
    return row(f"kvstore count FILE {value}, fresh process", kv, raw, COLD_TARGET, "python -c 'import sqlite3; …'")
