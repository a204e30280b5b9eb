"""One store's connections: one per thread, never used by two at once, safe across fork().

Two hazards shape this module.

**Closing a connection another thread is inside** crashes the process (SIGSEGV): sqlite3's
``check_same_thread=False`` lets ``close()`` run beside a call in progress. So every call holds
its thread's slot lock while it is inside SQLite, and ``close()`` takes each lock before
closing that connection: a call in progress completes (or fails cleanly), and every later
call raises ``kvstore.Error``.

**fork().** SQLite's unix VFS keeps the lock state of each open file (per-inode lock counts,
the WAL shared-memory node) in the *process*, shared by every connection of that process to
the file. A child made by ``fork()`` inherits the parent's copy, and even a *new* connection
it opens to the same file reuses it: the child believes it holds locks that only the parent
holds (POSIX advisory locks are not inherited), so the parent may checkpoint and delete the
WAL under the child's writes, or both may write at once. SQLite's "How To Corrupt An SQLite
Database File" (sections 2.2 and 2.6) describes this; measured on kvstore it lost every write
a child made and corrupted B-trees. A child forked while another thread was inside SQLite can
also inherit a held SQLite mutex and hang on its first call.

What is safe is a fork at which the process holds no SQLite connection to the file and no
thread is inside SQLite. So, before every ``os.fork()`` (``os.register_at_fork``), kvstore
waits for the calls in progress on every open store to finish (taking every slot lock, and
the lock that creation and upgrades hold, all at once: it lets go of them all whenever one is
busy, so that a thread in the middle of a transaction can finish it), then closes each idle
connection; both processes reconnect lazily afterwards, each with state of its own. A
connection inside a transaction cannot be closed without losing that transaction, so it
stays open in the parent, and in the child its file is *poisoned*: every kvstore use of that
file in the child (through the inherited store or a new ``kvstore.open()``) raises
``kvstore.Error`` before touching SQLite, and the inherited connection is deliberately leaked
so that no finaliser in the child ever closes (and so checkpoints or unlocks) the parent's
state. Closing costs the parent one checkpoint at fork time and one reconnect (~100 µs) per
thread afterwards. The fork-time half of this module (from ``_Fork`` on) is its second job;
it stays here because it works on the pools' private locks.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

from kvstore.sqlite import checkpointer, connection
from kvstore.sqlite.connection import Options, connect
from kvstore.errors import Error, translate

_pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()
OPENING = threading.RLock()
"""Held while a store is created, examined or upgraded (those connections are not in a pool),
and while a pool is made, so that a fork never happens while one of them is open."""

_opening: list[str] = []
"""The files being created, examined or upgraded under OPENING (by any thread)."""

FORK_WAIT = 1.0
"""Seconds fork() waits for calls in progress when the forking thread itself holds a
transaction(): another thread may then be waiting inside SQLite for that very lock, so the wait
must end; the child may then use no store at all (a thread still inside SQLite at the fork can
leave one of SQLite's process-wide mutexes held in the child for ever). Otherwise fork() waits
for calls in progress however long they take."""

STEP = 0.02
"""Seconds fork() waits for any one lock before letting go of all it took and trying again."""


@contextmanager
def opening(path: str) -> Iterator[None]:
    """Hold OPENING while ``path`` is created, examined or upgraded (fork waits for it)."""
    with OPENING:
        _opening.append(path)
        try:
            yield
        finally:
            _opening.remove(path)

_leaked: list[sqlite3.Connection] = []


def _disconnected() -> tuple[sqlite3.Connection, sqlite3.Cursor]:
    conn = sqlite3.connect(":memory:")
    cursor = conn.cursor()
    conn.close()
    return conn, cursor


DISCONNECTED, NO_CURSOR = _disconnected()
"""A closed connection standing in for "none", and a cursor of it: using either raises
sqlite3.ProgrammingError, and ``slot.conn``/``slot.cursor`` stay a Connection and a Cursor
for the type checker and for the hot path."""


class Slot:
    """One thread's connection, and the lock held while a call is inside it."""

    __slots__ = ("conn", "cursor", "lock", "depth", "lost", "thread", "dead", "held_at_fork")

    def __init__(self) -> None:
        self.conn = DISCONNECTED
        self.cursor: sqlite3.Cursor | None = NO_CURSOR
        """A cursor of ``conn`` made when it connected, kept for :meth:`fetchall`: reusing it
        saves making one per call (``conn.execute()`` does), and keeping it here saves a
        thread-local lookup of its own (~60 ns of a ~3.5 µs count()). None while a call is
        using it (see :meth:`fetchall`)."""
        # Reentrant: a generator passed to update() may itself read the store on this thread.
        self.lock = threading.RLock()
        self.depth = 0
        """Nesting depth of transaction() blocks on this thread."""
        self.lost: Exception | None = None
        """An error after which SQLite rolled back the open transaction by itself."""
        self.thread = threading.current_thread()
        self.dead: str | None = None
        """Why this slot can never be used again (its store closed, or inherited by fork)."""
        self.held_at_fork = False
        """Whether the fork in progress holds this slot's lock (it gave up waiting otherwise)."""

    def fetchall(self, query: str, params: tuple[Any, ...]) -> list[Any]:
        """Every row of ``query`` on the kept cursor; the caller holds ``lock`` (get(), count()).

        The cursor is taken for the call (``cursor`` is None meanwhile): a signal handler or a
        finaliser runs between two bytecodes of its thread, and the lock is reentrant, so a
        call it makes may run inside this one, between execute() and fetchall(); run on the
        same cursor it would reset this call's statement (which then answered None or 0), so
        such a call makes a cursor of its own. A call that fails between its step and its
        fetch (text another program stored that is not UTF-8, KeyboardInterrupt) leaves its
        statement stepping, and so a read transaction open (stale reads, writes that cannot
        upgrade it, checkpoints that cannot complete) until the cursor runs another statement:
        the cursor is closed, which resets it, and replaced.
        """
        cursor = self.cursor
        if cursor is None:  # inside another call on this thread
            with closing(self.conn.cursor()) as own:
                return own.execute(query, params).fetchall()
        self.cursor = None
        try:
            rows = cursor.execute(query, params).fetchall()
        except BaseException:
            if cursor.connection is self.conn:  # else close() or a reconnect replaced both
                cursor.close()
                self.cursor = self.conn.cursor()
            raise
        if self.cursor is None:  # else close() or a reconnect replaced it meanwhile
            self.cursor = cursor
        return rows


class ConnectionPool:
    """The connections of one store: a slot per thread, closed together, fork-aware."""

    def __init__(self, path: str, options: Options, target: str | None = None) -> None:
        self.path = path
        """The store's path, as messages show it."""
        self.target = target or path
        """What connections open: the path, or an in-memory database's name."""
        self.options = options
        self.file = connection.file_id(path) if target is None else None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._slots: list[Slot] = []
        self.closed: str | None = None
        """Why the pool may not be used (closed, or poisoned by fork); None while usable."""
        self._kept_at_fork = False
        with OPENING:
            _pools.add(self)

    def enter(self) -> Slot:
        """This thread's slot, locked and connected; the caller releases ``slot.lock``."""
        try:
            slot: Slot = self._local.slot
        except AttributeError:
            slot = self._new_slot()
        slot.lock.acquire()
        # Once close() has begun, new calls are refused at once, even on connections it has
        # not reached yet: a thread it is waiting for must not starve behind them.
        if slot.conn is DISCONNECTED or self.closed:
            try:
                self._reconnect(slot)  # raises for a closed pool
            except BaseException:
                slot.lock.release()
                raise
        return slot

    def current(self) -> Slot | None:
        """This thread's slot if it has one (not locked, maybe not connected)."""
        return getattr(self._local, "slot", None)

    def _new_slot(self) -> Slot:
        with self._lock:
            if self.closed:
                raise Error(f"{self.path}: {self.closed}")
            self._close_finished_threads()
            slot = Slot()
            self._slots.append(slot)
        self._local.slot = slot
        return slot

    def _reconnect(self, slot: Slot) -> None:
        if slot.dead or self.closed:
            raise Error(f"{self.path}: {slot.dead or self.closed}")
        if slot.depth:
            # Never reconnect silently inside a transaction: the rest of the block would
            # autocommit piecemeal outside it.
            raise Error(f"{self.path}: the connection of this transaction() block was closed; "
                        "nothing written in the block was kept")
        try:
            conn = connect(self.target, self.options)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
        slot.conn, slot.cursor = conn, conn.cursor()
        checkpointer.watch(self)

    def _close_finished_threads(self) -> None:
        """Close the connections of threads that have ended (caller holds ``_lock``)."""
        alive = []
        for slot in self._slots:
            if slot.thread.is_alive():
                alive.append(slot)
            else:
                with slot.lock:
                    _close(slot, "the thread that used this connection has ended")
        self._slots = alive

    def slot_count(self) -> int:
        """How many threads hold a slot (for tests and stats)."""
        with self._lock:
            return len(self._slots)

    def close(self, reason: str) -> None:
        """Close every connection, waiting for calls in progress; later calls raise Error."""
        with self._lock:
            if self.closed:
                return
            self.closed = reason
            slots = list(self._slots)
        # The slots stay listed until closed, so a fork meanwhile still waits for their calls
        # and closes (or refuses) their connections.
        for slot in slots:
            with slot.lock:
                _close(slot, reason)
        with self._lock:
            self._slots = []
        _pools.discard(self)

    # -- fork --------------------------------------------------------------------------------

    def holds_transaction(self) -> bool:
        """Whether the calling thread has a transaction open on this store."""
        slot = self.current()
        if slot is None or slot.conn is DISCONNECTED:
            return False
        try:
            return slot.depth > 0 or slot.conn.in_transaction
        except sqlite3.ProgrammingError:  # closed by close() meanwhile
            return slot.depth > 0

    def _close_idle_connections(self) -> None:
        """Before fork: close the connections no call is using; remember any still in use."""
        for slot in list(self._slots):
            conn = slot.conn
            if conn is DISCONNECTED:
                continue
            if not slot.held_at_fork or slot.depth or conn.in_transaction:
                self._kept_at_fork = True
            else:
                slot.conn, slot.cursor = DISCONNECTED, NO_CURSOR
                conn.close()

    def _after_fork_in_parent(self) -> None:
        self._kept_at_fork = False

    def _after_fork_in_child(self, refused: str | None) -> None:
        """Forget the parent's threads; refuse this file (or, given ``refused``, everything)."""
        reason = refused or (
            "this process was forked while a transaction on this file was open in its parent "
            "(a transaction() block, or an update() or update_in_batches() reading its source "
            "of pairs between two chunks), so it inherited SQLite's lock state for the file "
            "and may not use it: fork while no thread is writing, or start the process with "
            "multiprocessing's 'spawn' method"
        )
        if self._kept_at_fork or refused:
            self.closed = reason  # this store, in-memory ones included
            if self.file is not None:
                connection.poisoned[self.file] = reason  # and every other store of the file
        for slot in self._slots:
            # Leaked on purpose: closing or finalising a connection that holds the parent's
            # lock state would release (or checkpoint) what belongs to the parent.
            if slot.conn is not DISCONNECTED:
                _leak(slot.conn)
                slot.conn, slot.cursor = DISCONNECTED, NO_CURSOR
            slot.dead = "this store was inherited through fork() in the middle of a " \
                        "transaction() block; nothing written in the block is committed here"
        self._kept_at_fork = False
        # Fresh locks: a lock held at the fork by another thread would stay held here forever.
        self._lock = threading.Lock()
        self._local = threading.local()  # the other threads' slots do not exist here
        self._slots = []


def _close(slot: Slot, reason: str) -> None:
    conn, slot.conn, slot.cursor = slot.conn, DISCONNECTED, NO_CURSOR
    slot.dead = reason
    if conn is not DISCONNECTED:  # the stand-in was made by the importing thread: only it may close it
        conn.close()  # rolls back a transaction that another thread left open


def _leak(conn: sqlite3.Connection) -> None:
    import ctypes  # only ever needed in a child forked mid-transaction

    _leaked.append(conn)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))  # never freed, even at interpreter exit


class _Fork:
    """What the fork in progress holds: OPENING, and every pool's lock, or not all of them."""

    opening = False
    complete = True
    """Whether every lock was taken; if not, a thread may be inside SQLite (see _before_fork)."""
    pools: list[ConnectionPool] = []
    """The pools quiesced by the fork in progress (a pool made meanwhile waits on OPENING)."""
    pool_locks: list[ConnectionPool] = []
    """The pools whose ``_lock`` the fork holds."""
    slots: list[Slot] = []
    """The slots whose lock the fork holds."""


def _take_every_lock(step: float, partial: bool) -> bool:
    """Take OPENING, then each pool's lock and each slot lock, waiting up to ``step`` for each.

    All or nothing unless ``partial``: on a miss every lock taken is released again, so that a
    thread in the middle of a transaction() can take its own slot lock, finish, and let go of
    the SQLite lock another thread is waiting for (a fork holding the first thread's slot lock
    while waiting for the second would deadlock the three). Returns whether all were taken.
    """
    _Fork.opening = OPENING.acquire(timeout=step)
    if not _Fork.opening and not partial:
        return False
    pools = _listed()
    _Fork.pools, _Fork.pool_locks, _Fork.slots = pools, [], []
    complete = _Fork.opening
    for pool in pools:
        if pool._lock.acquire(timeout=step):
            _Fork.pool_locks.append(pool)
        else:
            complete = False
        for slot in list(pool._slots):
            slot.held_at_fork = (complete or partial) and slot.lock.acquire(timeout=step)
            if slot.held_at_fork:
                _Fork.slots.append(slot)
            complete = complete and slot.held_at_fork
        if not complete and not partial:
            _release_every_lock()
            return False
    return complete


def _listed() -> list[ConnectionPool]:
    """The open pools. Without OPENING another thread may add one meanwhile, and iterating a
    WeakSet that changes raises RuntimeError: an exception in a fork hook is printed and
    ignored, and the fork would go ahead unprepared, so retry instead."""
    while True:
        try:
            return list(_pools)
        except RuntimeError:
            continue


def _release_every_lock() -> None:
    for slot in _Fork.slots:
        slot.held_at_fork = False
        slot.lock.release()
    for pool in _Fork.pool_locks:
        pool._lock.release()
    if _Fork.opening:
        OPENING.release()
    _Fork.opening, _Fork.pools, _Fork.pool_locks, _Fork.slots = False, [], [], []


def _before_fork() -> None:
    """Wait until no thread is inside SQLite or opening a store, then close idle connections.

    The wait has no limit, except when the forking thread itself holds a transaction(): another
    thread may be waiting inside SQLite for that very lock, so after FORK_WAIT the fork goes
    ahead with what it holds, and the child may then use no store at all (_after_fork_in_child).
    """
    bounded = any(pool.holds_transaction() for pool in _listed())
    deadline = time.monotonic() + FORK_WAIT if bounded else math.inf
    pause = 0.001
    while True:
        last = time.monotonic() >= deadline
        _Fork.complete = _take_every_lock(STEP, partial=last)
        if _Fork.complete or last:
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    for pool in _Fork.pools:
        pool._close_idle_connections()


def _after_fork_in_parent() -> None:
    for pool in _Fork.pools:
        pool._after_fork_in_parent()
    _release_every_lock()


def _after_fork_in_child() -> None:
    refused = None
    if not _Fork.complete:
        refused = (
            "this process was forked while another thread of its parent was inside SQLite "
            "(the forking thread held a transaction(), so fork could not wait for it), and "
            "SQLite's internal locks may be held here for ever: this process may not use "
            "kvstore; fork outside transaction() blocks, or use multiprocessing's 'spawn' method"
        )
        connection.refused = refused
    _refuse_files_being_opened()
    for pool in _listed() if refused else _Fork.pools:
        pool._after_fork_in_child(refused)
    for slot in _Fork.slots:
        slot.held_at_fork = False
    _Fork.slots, _Fork.pools, _Fork.pool_locks = [], [], []
    if _Fork.opening:
        OPENING.release()
    else:
        OPENING._at_fork_reinit()  # type: ignore[attr-defined]  # held by a thread that is gone
    _Fork.opening = False


def _refuse_files_being_opened() -> None:
    """In a child forked while another thread was still creating or upgrading a file."""
    if not _Fork.opening:
        for path in _opening:
            file = connection.file_id(path)
            if file is not None:
                connection.poisoned[file] = (
                    "this process was forked while its parent was creating or upgrading this "
                    "file, so it inherited SQLite's state for it and may not use it"
                )
        _opening.clear()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
