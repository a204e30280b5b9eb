"""Many writers at once, and what happens when the write lock is held too long.

* Four processes (two forked from a process holding an open store, two started fresh) with two
  threads each write, delete, batch-update, run committed and rolled-back transactions and read,
  on shared and private keys, for a bounded time. No error may reach a caller (BusyError
  included: at this load the default 5 s timeout must never run out); afterwards counts are
  exact, the file is sound, and every private key holds what its writer last saw acknowledged.
* Another process holds the write lock longer than the timeout: writers get BusyError (never a
  raw sqlite3 error) after about the timeout and succeed on retry; readers never wait.
"""

from __future__ import annotations

import ast
import json
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest

import kvstore
from tests._rel_workers import (
    MISSING,
    SHARED_KEYS,
    VALUE_POOL,
    holding,
    integrity,
    many_process,
    release,
    same,
    start,
    stop,
    typed_items,
)
from tests.helpers import SCALE

DURATION = max(3.0, 4.0 * SCALE)


@pytest.mark.slow
def test_many_processes_and_threads_write_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "many.db")
    db = kvstore.open(path)
    db.update((k, VALUE_POOL[i % len(VALUE_POOL)]) for i, k in enumerate(SHARED_KEYS))
    outs = [str(tmp_path / f"proc{p}.json") for p in range(4)]
    fork = multiprocessing.get_context("fork")
    forked = [fork.Process(target=many_process, args=(db, p, DURATION, 100 + p, outs[p])) for p in (0, 2)]
    spawned = []
    try:
        for proc in forked:
            proc.start()
        spawned = [start("many", path, p, DURATION, 100 + p, outs[p]) for p in (1, 3)]
        for proc in forked:
            proc.join(DURATION + 120)
        errs = [stop(proc, DURATION + 120)[1] for proc in spawned]
    finally:
        for proc in forked:
            if proc.is_alive():
                proc.kill()
                proc.join(10)
        for proc in spawned:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert [p.exitcode for p in forked] == [0, 0]
    assert [p.returncode for p in spawned] == [0, 0], errs

    ops: Counter = Counter()
    problems = []
    drops = 0
    checked = 0
    slowest: dict[str, float] = {}
    for p, out in enumerate(outs):
        with open(out) as f:
            result = json.load(f)
        assert result["alive"] == [False, False], f"process {p}: a writer thread hung"
        drops += result["drops"]
        for t, thread in enumerate(result["threads"]):
            problems += [f"process {p} thread {t}: {e}" for e in thread["errors"]]
            ops.update(thread["ops"])
            for kind, seconds in thread["slowest"].items():
                slowest[kind] = max(slowest.get(kind, 0.0), seconds)
            model = ast.literal_eval(thread["model"])
            for key in ast.literal_eval(thread["keys"]):
                got = db.get(key, MISSING)
                if not same(got, model.get(key, MISSING)):
                    problems.append(f"private key {key!r}: {got!r}, acknowledged {model.get(key, MISSING)!r}")
                checked += 1
    assert not problems, "\n".join(problems[:20])
    assert db.verify() == []
    assert integrity(path) == ["ok"]
    assert ops["bulk_update"] == 2 and drops >= 4, "both bulk updates took the bulk path"
    assert ops["set"] > 100 and ops["transaction"] > 20 and ops["rolled_back_transaction"] > 10
    print(
        f"\nmany writers: 4 processes x 2 threads for {DURATION:.0f}s; ops {dict(ops)}; "
        f"{sum(ops.values())} in all; {checked} private keys checked; slowest op of each kind (s) { {k: round(v, 2) for k, v in slowest.items()} }"
    )
    db.close()


# -- a held write lock ---------------------------------------------------------------------


@pytest.fixture
def holder(tmp_path: Path):
    """A file with some data, and a function starting a process that holds its lock."""
    path = str(tmp_path / "busy.db")
    with kvstore.open(path) as db:
        db.update((i, f"v{i % 5}") for i in range(1000))
    with ExitStack() as stack:
        yield path, lambda how="immediate": stack.enter_context(holding(path, how))


def timed(fn):
    t = time.monotonic()
    try:
        fn()
        error = None
    except BaseException as exc:  # noqa: BLE001
        error = exc
    return time.monotonic() - t, error


def test_write_lock_held_past_timeout_raises_busy_error_and_retry_succeeds(holder) -> None:
    path, hold = holder
    timeout = 0.5
    proc = hold()
    db = kvstore.open(path, timeout=timeout)
    try:

        def in_transaction():
            with db.transaction():
                db["t"] = "t"

        writes = {
            "set": lambda: db.set("new", "x"),
            "delete": lambda: db.delete(1),
            "del item": lambda: db.__delitem__(2),
            "update": lambda: db.update({"a": 1, "b": 2}),
            "transaction": in_transaction,
            "repair": db.repair,
        }
        for name, write in writes.items():
            elapsed, error = timed(write)
            assert isinstance(error, kvstore.BusyError), f"{name}: {error!r}"
            assert "timeout" in str(error) and "retry" in str(error), str(error)
            assert timeout * 0.8 <= elapsed < timeout + 3, f"{name} waited {elapsed:.2f}s"
        before = typed_items(db)

        # Readers are never blocked by the writer (WAL) and do not see its uncommitted write.
        reads = {
            "get": lambda: db.get(3),
            "contains": lambda: "held" in db,
            "len": lambda: len(db),
            "count": lambda: db.count("v1"),
            "counts": db.counts,
            "keys_for": lambda: list(db.keys_for("v2")),
            "items": lambda: list(db.items()),
            "verify": db.verify,
            "stats": db.stats,
        }
        for name, read in reads.items():
            elapsed, error = timed(read)
            assert error is None, f"{name}: {error!r}"
            assert elapsed < timeout * 0.8, f"{name} took {elapsed:.2f}s: it waited for the writer"
        assert "held" not in db and db.count("uncommitted") == 0 and len(db) == 1000

        release(proc, "commit")
        db["new"] = "x"  # the retry works
        in_transaction()
        db.update({"a": 1, "b": 2})
        assert db["held"] == "uncommitted" and db["new"] == "x" and db["t"] == "t"
        assert db.verify() == []
        assert len(typed_items(db)) == len(before) + 5
    finally:
        db.close()


def test_writer_waits_for_a_short_lock_and_a_killed_holder_frees_the_lock(holder) -> None:
    path, hold = holder
    db = kvstore.open(path)  # default timeout: 5 s
    try:
        proc = hold()
        timer = threading.Timer(0.5, release, args=(proc, "rollback"))
        timer.start()
        try:
            elapsed, error = timed(lambda: db.set("waited", 1))
        finally:
            timer.join()
        assert error is None and 0.3 <= elapsed < 4, (elapsed, error)

        proc = hold()
        os.kill(proc.pid, signal.SIGKILL)  # dies holding the lock with an uncommitted write
        proc.wait(10)
        elapsed, error = timed(lambda: db.set("after kill", 1))
        assert error is None and elapsed < 2, (elapsed, error)
        assert "held" not in db and db["waited"] == 1
        assert db.verify() == [] and integrity(path) == ["ok"]
    finally:
        db.close()


def test_readers_are_not_blocked_by_a_store_transaction(tmp_path: Path) -> None:
    path = str(tmp_path / "rw.db")
    with kvstore.open(path) as db:
        db.update((i, "old") for i in range(70_000))
    writer = kvstore.open(path)
    reader = kvstore.open(path, timeout=1.0)
    inside, done = threading.Event(), threading.Event()

    def write():
        with writer.transaction():
            writer.update((i, "new") for i in range(70_000))  # the bulk path: triggers dropped
            inside.set()
            done.wait(30)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert inside.wait(30)
        t = time.monotonic()
        assert reader.count("old") == 70_000 and reader.count("new") == 0
        assert reader.verify() == []  # the reader's snapshot has its triggers and exact counts
        assert reader[5] == "old"
        assert time.monotonic() - t < 0.9, "the reader waited for the writer"
        with pytest.raises(kvstore.BusyError):
            reader[5] = "third"
    finally:
        done.set()
        thread.join(30)
    assert reader.count("new") == 70_000 and reader.verify() == []
    writer.close()
    reader.close()
