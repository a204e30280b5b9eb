"""Checkpoints off the write path: one background thread per process keeps each store's WAL short.

With SQLite's defaults the commit that takes the WAL past 1,000 pages runs the checkpoint itself,
copying the WAL's pages into the database file and syncing both: measured on a 1M-item store,
about 40% of the mean cost of an autocommit ``set()``, paid by whichever call lands on it.
kvstore raises that threshold to AUTOCHECKPOINT pages (see kvstore.sqlite.connection), which still
bounds the WAL, and this thread checkpoints (``PRAGMA wal_checkpoint(PASSIVE)``, which never
waits for or blocks a reader or writer) each store that was written, once its writes pause
for PERIOD seconds. It waits for the pause because, measured, a checkpoint beside a stream of
writes (its syncs, its share of the GIL) costs the writers more than it saves them. An idle
store is looked at less and less often, up to every IDLE seconds.

Durability is unchanged: a checkpoint only moves committed pages from the WAL into the file,
and the file is synced before the WAL is reused (``synchronous=NORMAL`` or ``FULL``, as before).

The thread uses each store's connection pool like any other thread (kvstore.sqlite.pool), so
``fork()`` waits for a checkpoint in progress and closes its connection, and ``close()`` waits
for it too.
A forked child starts a thread of its own when it first connects to a store.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
import weakref
from typing import TYPE_CHECKING

from kvstore.errors import Error

if TYPE_CHECKING:
    from kvstore.sqlite.pool import ConnectionPool

PERIOD = 0.1
"""Seconds between two looks at a store that is being written: a checkpoint runs at the first
look that finds no write since the one before."""

IDLE = 2.0
"""The longest pause between two looks at a store nobody writes (doubling from PERIOD)."""

_lock = threading.Lock()
_wake = threading.Event()
_pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()
_thread: threading.Thread | None = None
_done: weakref.WeakKeyDictionary[ConnectionPool, int] = weakref.WeakKeyDictionary()
"""The data version each store was last checkpointed at (no second checkpoint until it changes)."""


def watch(pool: ConnectionPool) -> None:
    """Checkpoint ``pool``'s file in the background from now on (called when it connects)."""
    global _thread
    if pool.options.readonly or pool.file is None:  # nothing to write back, or no file at all
        return
    with _lock:
        if pool in _pools and _thread is not None:
            return
        _pools.add(pool)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="kvstore-checkpointer", daemon=True)
            _thread.start()
    _wake.set()


def _run() -> None:
    """Visit the watched stores as they fall due, waking at most once per PERIOD seconds
    however many stores are open."""
    seen: weakref.WeakKeyDictionary[ConnectionPool, int | None] = weakref.WeakKeyDictionary()
    due: weakref.WeakKeyDictionary[ConnectionPool, tuple[float, float]] = weakref.WeakKeyDictionary()
    while True:
        now = time.monotonic()
        if not _round(seen, due, now):
            _wake.wait()
        else:
            next_at = min((at for at, _ in due.values()), default=now + IDLE)
            _wake.wait(max(PERIOD * math.ceil((next_at - time.monotonic()) / PERIOD), PERIOD))
        _wake.clear()


def _round(seen: weakref.WeakKeyDictionary[ConnectionPool, int | None],
           due: weakref.WeakKeyDictionary[ConnectionPool, tuple[float, float]], now: float) -> bool:
    """Visit each store that is due; whether any store is watched. The stores are held only
    while this runs: between rounds the thread must not keep alive a store its program
    dropped (its connections, and their file descriptors)."""
    with _lock:
        pools = list(_pools)
    for pool in pools:
        at, pause = due.get(pool, (now, PERIOD))
        if at > now:
            continue
        version = _visit(pool, seen.get(pool))
        if version is None:  # closed, or refused in this process
            with _lock:
                _pools.discard(pool)
            due.pop(pool, None)
            seen.pop(pool, None)
            continue
        # Look again soon while the store is being written; less and less often once idle.
        pause = PERIOD if version != seen.get(pool) else min(pause * 2, IDLE)
        seen[pool] = version
        due[pool] = (now + pause, pause)
    return bool(pools)


def _visit(pool: ConnectionPool, seen: int | None) -> int | None:
    """Checkpoint ``pool``'s file if it was written and has been idle since the last look.

    Returns the file's data version (it changes with every commit by another connection), or
    None if the pool is gone. A checkpoint waits for a pause in the writes: run beside them it
    competes with them for the disk (its syncs) and for Python's GIL, which costs the writers
    more than it saves them.
    """
    if pool.closed:
        return None
    try:
        slot = pool.enter()
    except Error:
        return None
    except sqlite3.Error:  # could not connect just now: look again later
        return -1
    try:
        (version,) = slot.conn.execute("PRAGMA data_version").fetchone()
        if version == seen and _done.get(pool) != version:
            slot.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            _done[pool] = version
        return int(version)
    except sqlite3.Error:  # closed meanwhile, or busy: look again later
        return -1
    finally:
        slot.lock.release()


def _forget_in_child() -> None:
    global _thread, _lock, _wake
    _thread = None  # the parent's thread does not exist here; watch() starts one when needed
    _pools.clear()  # and only the stores this process connects to again are watched
    _lock, _wake = threading.Lock(), threading.Event()  # either may have been held at the fork


os.register_at_fork(after_in_child=_forget_in_child)
