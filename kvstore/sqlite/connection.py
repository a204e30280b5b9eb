"""Opening sqlite3 connections: every connection kvstore makes gets its pragmas here."""

from __future__ import annotations

import math
import os
import sqlite3
import sys
from dataclasses import dataclass

from kvstore.sqlite import MAX_TIMEOUT
from kvstore.errors import Error
from kvstore.sqlite.uri import file_uri

MEMORY = ":memory:"
"""The path that asks for an in-memory store; its connections name it ``:memory:<id>``."""


DEFAULT_MMAP_SIZE = 1 << 30 if sys.maxsize > 2**32 else 0
"""Bytes of a file each connection reads through memory-mapped I/O by default: 1 GiB (a store
of ~20M small pairs) on a 64-bit Python, none on a 32-bit one, whose address space (2-4 GiB for
everything) one map per thread could use up. SQLite caps it at its compile-time
SQLITE_MAX_MMAP_SIZE (2 GiB on common builds); see Options.mmap_size for the risks."""

CACHE = 32 * 2**20
"""Bytes of page cache per connection (SQLite's default is 2 MiB)."""


@dataclass(frozen=True)
class Options:
    """How a store talks to its file; shared by all of its connections."""

    timeout: float = 5.0
    """Seconds a write waits for another connection's write lock before raising BusyError."""
    durable: bool = False
    """True: fsync every commit (survives power loss, ~150 µs per commit); False: survives a
    process crash, and the last commits may be lost on power loss."""
    readonly: bool = False
    """True: open with SQLite's mode=ro; every write raises ReadOnlyError."""
    mmap_size: int = DEFAULT_MMAP_SIZE
    """Bytes at the start of the file that SQLite reads by memory-mapped I/O instead of read()
    calls (``PRAGMA mmap_size``); 0 turns it off. Reads of a large store get ~20% cheaper (no
    system call and copy per page: raw sqlite3 reads of a 10M-pair file took ~0.8x as long),
    and the mapped pages count in the process's RSS while they are resident (they are the OS
    page cache, shared, and dropped under memory pressure). Writes do not go through the map
    (SQLite's default build).

    SQLite's "Memory-Mapped I/O" page lists the risks: an I/O error on a mapped page cannot be
    caught and handled by SQLite and arrives as a signal (SIGBUS) that crashes the process, so
    a file on unreliable storage, or one truncated by another program (not by SQLite, which
    remaps as files shrink), kills a reader instead of raising kvstore.Error; and the OS must
    have a unified buffer cache (Linux has one). Network filesystems are
    unsupported anyway (WAL mode needs shared memory between the processes of one host).
    Pass 0 for files on storage you do not trust."""
    bulk_cache: int = 160 * 2**20
    """Bytes of page cache a connection may use while a large update() runs (the normal cache
    is CACHE bytes): a load that outgrows the cache re-reads the pages of the key index at
    random, which made the cost per pair grow ~3x from 1M to 10M pairs. Memory is taken only
    as pages are read, and handed back when the update() ends."""

    def __post_init__(self) -> None:
        timeout = self.timeout
        if type(timeout) not in (int, float):
            raise TypeError(f"timeout must be a number of seconds (int or float), not {type(timeout).__name__}")
        if type(timeout) is float and math.isnan(timeout):
            raise ValueError("timeout must be a number of seconds, not NaN")
        if timeout < 0:
            raise ValueError(f"timeout must be 0 seconds or more, not {timeout}")
        if timeout > MAX_TIMEOUT:  # inf included: wait as long as SQLite can (~24.8 days)
            object.__setattr__(self, "timeout", MAX_TIMEOUT)
        if type(self.mmap_size) is not int or self.mmap_size < 0:
            raise ValueError(f"mmap_size must be a whole number of bytes, 0 or more (0: no memory map); got {self.mmap_size!r}")
        if type(self.bulk_cache) is not int or self.bulk_cache < 0:
            raise ValueError(f"bulk_cache must be a whole number of bytes, 0 or more; got {self.bulk_cache!r}")


poisoned: dict[tuple[int, int], str] = {}
"""In a process forked mid-transaction: files whose SQLite state it inherited, with why it
may not use them (see kvstore.sqlite.pool). Every connection kvstore makes checks this first."""


AUTOCHECKPOINT = 65536
"""WAL pages after which the committing writer checkpoints by itself (256 MiB of 4 KiB pages;
reached only by writes that never pause for kvstore.sqlite.checkpointer). Measured on a 1M-item
store of revision 0003, whose autocommit set() writes ~6 pages: autocommit set() cost 0.80-1.02x
a plain sqlite3 connection's at 16,384 pages, 0.64-0.67x at 65,536."""

WAL_LIMIT = 64 * 2**20
"""Bytes a WAL file is truncated to after a checkpoint has emptied it."""

refused: str | None = None
"""In a process forked while another thread was inside SQLite: why it may use no store at all
(see kvstore.sqlite.pool). Checked before every connection and every open."""


def file_id(path: str) -> tuple[int, int] | None:
    """The (device, inode) pair that identifies the file at ``path`` (None if it is missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def connect(path: str, options: Options) -> sqlite3.Connection:
    """A connection to ``path`` in autocommit mode with kvstore's pragmas applied.

    ``isolation_level=None`` stops Python's sqlite3 from issuing its own deferred ``BEGIN``:
    kvstore begins write transactions itself with ``BEGIN IMMEDIATE``, because a deferred
    transaction that reads and then writes can deadlock on the lock upgrade, and the busy
    timeout cannot wait that out.
    """
    if refused:
        raise Error(f"{path}: {refused}")
    if poisoned:
        file = file_id(path)
        if file in poisoned:
            raise Error(f"{path}: {poisoned[file]}")
    conn = sqlite3.connect(
        _uri(path, options),
        uri=True,
        timeout=options.timeout,
        isolation_level=None,
        check_same_thread=False,  # only so close() may close it; one thread uses it at a time
        cached_statements=256,
    )
    try:
        apply_pragmas(conn, options)
    except BaseException:
        conn.close()
        raise
    return conn


def _uri(path: str, options: Options) -> str:
    if path.startswith(MEMORY):
        # memdb: one in-memory database shared by every connection of this process that names
        # it, with ordinary locking (busy_timeout works), alive while one connection is open.
        return f"file:/kvstore-{path[len(MEMORY):]}?vfs=memdb"
    return file_uri(path, options.readonly)


def apply_pragmas(conn: sqlite3.Connection, options: Options) -> None:
    """Per-connection settings; none of these is stored in the file, so each connection sets them."""
    # NORMAL in WAL mode: a commit survives a crash of the process (the WAL is synced at
    # checkpoints); FULL syncs the WAL at each commit, which also survives power loss.
    conn.execute(f"PRAGMA synchronous = {'FULL' if options.durable else 'NORMAL'}")
    conn.execute(f"PRAGMA busy_timeout = {int(options.timeout * 1000)}")
    # Temp B-trees (sorts, GROUP BY) in memory rather than in temp files.
    conn.execute("PRAGMA temp_store = MEMORY")
    # 32 MiB of page cache instead of 2 MiB: bulk loads into a random-key B-tree touch many
    # pages, and a small cache turns that into repeated reads.
    conn.execute(f"PRAGMA cache_size = -{CACHE // 1024}")
    conn.execute(f"PRAGMA mmap_size = {options.mmap_size}")
    # A longer WAL before a writer checkpoints by itself (SQLite's default is 1,000 pages):
    # kvstore.sqlite.checkpointer copies the WAL back when writes pause, so a commit rarely pays
    # for a checkpoint; the WAL file is cut back to journal_size_limit after one.
    conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
