"""Opening sqlite3 connections: every connection kvstore makes gets its pragmas here."""

from __future__ import annotations

import math
import os
import sqlite3
from dataclasses import dataclass

from kvstore.constants import MAX_TIMEOUT
from kvstore.errors import Error

MEMORY = ":memory:"
"""The path that asks for an in-memory store; its connections name it ``:memory:<id>``."""


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
    bulk_cache: int = 256 * 2**20
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
        if type(self.bulk_cache) is not int or self.bulk_cache < 0:
            raise ValueError(f"bulk_cache must be a whole number of bytes, 0 or more; got {self.bulk_cache!r}")


poisoned: dict[tuple[int, int], str] = {}
"""In a process forked mid-transaction: files whose SQLite state it inherited, with why it
may not use them (see kvstore.pool). Every connection kvstore makes checks this first."""


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
    # "file://" + an absolute path gives an empty URI authority; "file:" + "//x/..." would
    # read x as a host and fail.
    uri = f"file://{_quote(os.path.abspath(path))}?mode={'ro' if options.readonly else 'rw'}"
    if options.readonly and _read_immutable(path):
        uri += "&immutable=1"
    return uri


def _read_immutable(path: str) -> bool:
    """Read a WAL file as immutable when a reader cannot, or should not, create its -shm.

    A WAL database needs its -shm file. When a writer has the file open, the -shm exists and
    a read-only connection uses it (SQLite >= 3.22) and sees consistent snapshots. When none
    exists, every change is in the main file; SQLite would create -shm (and -wal) to read it,
    which fails in a directory the reader cannot write, and as another user (not root, whom
    SQLite hands the files back from) leaves files the owner cannot open later. Reading with
    ``immutable=1`` then writes nothing; the price is that a writer who starts meanwhile is
    not seen (README, Guarantees).
    """
    # SQLite names -wal/-shm/-journal after the file a symlink points to.
    if os.path.exists(os.path.realpath(path) + "-shm"):
        return False
    try:
        with open(path, "rb") as f:
            header = f.read(20)
        st = os.stat(path)
    except OSError:
        return False
    if len(header) < 20 or header[18] != 2:  # not WAL: a rollback-journal reader needs no -shm
        return False
    euid = os.geteuid()
    others_file = euid != 0 and st.st_uid != euid
    return others_file or not os.access(os.path.dirname(os.path.realpath(path)) or ".", os.W_OK)


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


def _quote(path: str) -> str:
    """Escape the characters that mean something in an SQLite URI filename."""
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
