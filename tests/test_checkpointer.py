"""The background checkpointer: it copies the WAL back once writes pause, never beside them,
forgets closed stores, and restarts in a forked child.

Progress is read from the WAL index (the -shm file) rather than asked of SQLite, since asking
(``PRAGMA wal_checkpoint``) would itself checkpoint: ``mxFrame`` (frames in the WAL) is at byte 16
of its header, ``nBackfill`` (frames copied into the database) at byte 96.
"""

from __future__ import annotations

import os
import struct
import threading
import time

import pytest

import kvstore
from kvstore.sqlite import checkpointer
from tests.test_process_safety import fork_child, wait_child


def wal_progress(path: str) -> tuple[int, int]:
    """(frames in the WAL, frames copied back into the database file)."""
    with open(path + "-shm", "rb") as f:
        shm = f.read(136)
    (frames,) = struct.unpack_from("=I", shm, 16)
    (copied,) = struct.unpack_from("=I", shm, 96)
    return frames, copied


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_the_wal_is_copied_back_once_writes_pause(path):
    db = kvstore.open(path)
    for i in range(300):
        db[i] = f"v{i % 6}"  # 300 commits: far fewer pages than a writer's own checkpoint needs
    frames, copied = wal_progress(path)
    assert frames > 0 and copied < frames
    assert wait_for(lambda: wal_progress(path)[1] == wal_progress(path)[0] > 0), wal_progress(path)
    assert db.verify() == [] and len(db) == 300
    db.close()


def test_no_checkpoint_runs_while_writes_go_on(path):
    db = kvstore.open(path)
    db["warm"] = 1
    copied_during = []
    stop = time.monotonic() + 1.0
    i = 0
    while time.monotonic() < stop:
        db[i] = "x"
        i += 1
        if i % 200 == 0:
            copied_during.append(wal_progress(path)[1])
    assert len(set(copied_during[2:])) <= 1, "a checkpoint ran beside the writes"
    db.close()


def test_a_closed_store_is_forgotten_and_its_file_let_go(path):
    db = kvstore.open(path)
    db["k"] = "v"
    assert wait_for(lambda: db._pool in checkpointer._pools)
    db.close()
    assert wait_for(lambda: db._pool not in checkpointer._pools)
    fds = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not any(str(path) in target for target in fds)


def test_read_only_and_in_memory_stores_are_not_watched(path):
    kvstore.open(path).close()
    with kvstore.open(path, readonly=True) as ro, kvstore.open(":memory:") as memory:
        ro.get(1)
        memory[1] = "a"
        assert ro._pool not in checkpointer._pools and memory._pool not in checkpointer._pools


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_checkpoints_its_own_writes(path):
    db = kvstore.open(path)
    db["parent"] = 1
    assert wait_for(lambda: checkpointer._thread is not None and checkpointer._thread.is_alive())

    def child() -> None:
        for i in range(300):
            db[f"child{i}"] = i
        names = [t.name for t in threading.enumerate()]
        assert "kvstore-checkpointer" in names, names
        assert wait_for(lambda: wal_progress(str(path))[1] == wal_progress(str(path))[0] > 0), wal_progress(str(path))

    assert wait_child(fork_child(child)) == 0
    db["after"] = 2
    assert db.get("child299") == 299 and db.verify() == []
    db.close()


def test_a_dropped_store_is_not_kept_alive(tmp_path):
    """A store the program drops without close() must release its connections (and fds)."""
    import gc
    import weakref

    refs = []
    for i in range(20):
        db = kvstore.open(str(tmp_path / f"s{i % 4}.db"))
        db[i] = "v"
        refs.append(weakref.ref(db._pool))
        del db
        time.sleep(0.01)
    time.sleep(3 * checkpointer.PERIOD)
    gc.collect()
    assert wait_for(lambda: (gc.collect(), sum(r() is not None for r in refs))[1] == 0), \
        f"{sum(r() is not None for r in refs)} dropped stores still alive"


def test_a_closed_store_kept_by_its_program_costs_no_cpu(tmp_path):
    kept = kvstore.open(str(tmp_path / "open.db"))
    kept["a"] = 1
    with kvstore.open(str(tmp_path / "closed.db")) as closed:
        closed["b"] = 2
    time.sleep(0.5)
    start = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - start < 0.2, "the checkpointer spins"
    assert closed is not None
    kept.close()
