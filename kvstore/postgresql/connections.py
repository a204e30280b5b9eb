"""Connections to a PostgreSQL store: one per thread (or a bounded shared set), never shared across a fork.

Prepared statements live on a connection, so each thread keeps its own (a pool checkout per
call costs more than the statement, see the guide). A connection inherited through
``os.fork()`` belongs to the parent's server session: the child never uses or closes it
(psycopg's libpq wrapper finishes a connection only in the process that opened it), and
opens its own on first use. A ``transaction()`` block open at the fork cannot go on in the
child: its writes would silently autocommit one by one, so they are refused.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from kvstore.errors import BusyError, Error
from kvstore.postgresql.errors import translate
from kvstore.postgresql.urls import redacted, secret

_inherited: list[Any] = []
"""Connections a forked child found: kept referenced so that nothing ever finalizes them here."""


@dataclass(frozen=True)
class Settings:
    """What every connection of one store is opened with."""

    url: str
    """A libpq URL (``postgresql://``), without SQLAlchemy's ``+psycopg``."""
    timeout: float = 5.0
    durable: bool = False
    readonly: bool = False

    @property
    def where(self) -> str:
        """The URL without its password, for messages."""
        return redacted(self.url)



def connect(settings: Settings) -> psycopg.Connection[Any]:
    """A new autocommit connection with the store's session settings.

    The settings travel in the startup packet (no extra round trip): ``lock_timeout`` is the
    store's ``timeout`` (a write waiting longer for another writer's row lock raises
    BusyError, as on SQLite); ``durable=True`` insists on ``synchronous_commit = on`` even if
    the server or role defaults to off; ``readonly=True`` makes every transaction read-only.
    """
    # READ COMMITTED whatever the server's or role's default: the counting trigger relies on
    # seeing the rows other transactions committed in its shard.
    options = [f"-c lock_timeout={_millis(settings.timeout)}", "-c default_transaction_isolation=read\\ committed"]
    if settings.durable:
        options.append("-c synchronous_commit=on")
    if settings.readonly:
        options.append("-c default_transaction_read_only=on")
    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 1}
    if math.isfinite(settings.timeout):
        kwargs["connect_timeout"] = max(2, math.ceil(settings.timeout))
    try:
        given = conninfo_to_dict(settings.url).get("options")  # the URL's own options= are kept
        conninfo = make_conninfo(settings.url, options=" ".join([str(given or ""), *options]).strip())
    except psycopg.Error:
        raise Error(f"{settings.where}: not a PostgreSQL URL libpq can read; check its form "
                    "(postgresql://user:password@host:port/database) and percent-encode special "
                    "characters in the user and password (e.g. %23 for #, %40 for @)") from None
    try:
        return psycopg.connect(conninfo, **kwargs)
    except psycopg.Error as exc:
        raise translate(exc, settings.where, secret(settings.url)) from exc


def _millis(seconds: float) -> int:
    if not math.isfinite(seconds):
        return 0  # PostgreSQL: no limit
    return max(1, round(seconds * 1000))


class Connections:
    """The connections of one store: this thread's on demand, all of them closed by close().

    With ``limit`` (``max_connections=``), at most that many are open, shared by all threads:
    a thread holds one for a call, or for a whole ``transaction()`` block, and gives it back
    with :meth:`release`; a thread finding all in use waits up to the store's ``timeout``.
    """

    def __init__(self, settings: Settings, limit: int | None = None) -> None:
        self.settings = settings
        self.limit = limit
        self.closed: str | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pid = os.getpid()
        self._open: dict[int, tuple[weakref.ref[threading.Thread], psycopg.Connection[Any]]] = {}
        self._pooled: set[psycopg.Connection[Any]] = set()  # with a limit: every open one
        self._free: list[psycopg.Connection[Any]] = []
        self._slots = threading.BoundedSemaphore(limit) if limit else None
        _ALL.add(self)

    def get(self) -> psycopg.Connection[Any]:
        """This thread's connection (opened on first use, or first use after a fork)."""
        if self.closed:
            raise Error(f"{self.settings.where}: {self.closed}")
        local = self._local
        conn: psycopg.Connection[Any] | None = getattr(local, "conn", None)
        if conn is not None and local.pid == _PID[0]:
            return conn
        return self._checkout() if self.limit else self._new()

    def current(self) -> psycopg.Connection[Any] | None:
        """This thread's connection if it holds one now (never opens or takes one)."""
        local = self._local
        return getattr(local, "conn", None) if getattr(local, "pid", None) == _PID[0] else None

    def release(self) -> None:
        """With a limit: give this thread's connection back, outside any transaction() block."""
        local = self._local
        conn = getattr(local, "conn", None)
        if not self.limit or conn is None or self.depth or local.pid != _PID[0]:
            return
        local.conn = None
        with self._lock:
            if conn.closed or self.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self._pooled.discard(conn)
                broken = True
            else:
                self._free.append(conn)
                broken = False
        if broken:
            _close(conn)
        assert self._slots is not None
        self._slots.release()

    def _refuse_a_forked_block(self) -> None:
        local = self._local
        if getattr(local, "depth", 0) and getattr(local, "pid", None) != _PID[0]:
            raise Error(f"{self.settings.where}: this process was forked inside a transaction() "
                        "block, which cannot go on here (its connection belongs to the parent); "
                        "fork outside transaction() blocks")

    def _disown_the_parents(self) -> None:
        """On first use in a forked child (under the lock): the parent's connections are not ours."""
        if self._pid != _PID[0]:
            _inherited.extend(conn for _, conn in self._open.values())
            _inherited.extend(self._pooled)
            self._open.clear()
            self._pooled, self._free = set(), []
            if self.limit:
                self._slots = threading.BoundedSemaphore(self.limit)
            self._pid = _PID[0]

    def _checkout(self) -> psycopg.Connection[Any]:
        """With a limit: a free connection (or a new one while fewer than the limit are open)."""
        local = self._local
        self._refuse_a_forked_block()
        with self._lock:
            self._disown_the_parents()
        assert self._slots is not None
        timeout = self.settings.timeout if math.isfinite(self.settings.timeout) else None
        if not self._slots.acquire(timeout=timeout):
            raise BusyError(f"{self.settings.where}: all {self.limit} connections of this store were in "
                            f"use for longer than the timeout ({self.settings.timeout:g} s); raise "
                            "max_connections= or the timeout, or hold transaction() blocks for less time")
        try:
            with self._lock:
                conn = self._free.pop() if self._free else None
            if conn is None:
                conn = connect(self.settings)
                with self._lock:
                    if self.closed:
                        _close(conn)
                        raise Error(f"{self.settings.where}: {self.closed}")
                    self._pooled.add(conn)
        except BaseException:
            self._slots.release()
            raise
        local.conn, local.pid, local.depth, local.lost = conn, _PID[0], 0, None
        return conn

    @property
    def depth(self) -> int:
        """How many transaction() blocks this thread has open on its connection."""
        return getattr(self._local, "depth", 0) if getattr(self._local, "pid", None) == _PID[0] else 0

    @depth.setter
    def depth(self, value: int) -> None:
        self._local.depth = value

    @property
    def lost(self) -> Exception | None:
        """The error that aborted this thread's open transaction, if one did."""
        return getattr(self._local, "lost", None)

    @lost.setter
    def lost(self, error: Exception | None) -> None:
        self._local.lost = error

    def _new(self) -> psycopg.Connection[Any]:
        local = self._local
        self._refuse_a_forked_block()
        with self._lock:
            self._disown_the_parents()
            finished = []
            for ident, (thread, old) in list(self._open.items()):
                if thread() is None or not thread().is_alive():  # type: ignore[union-attr]
                    del self._open[ident]
                    finished.append(old)
        for old in finished:  # network I/O: outside the lock, which a fork must never find held
            _close(old)
        conn = connect(self.settings)
        with self._lock:
            if self.closed:
                _close(conn)
                raise Error(f"{self.settings.where}: {self.closed}")
            me = threading.current_thread()
            self._open[me.ident or 0] = (weakref.ref(me), conn)
        local.conn, local.pid, local.depth, local.lost = conn, _PID[0], 0, None
        return conn

    def forget(self) -> None:
        """Drop this thread's connection (after the server closed it); the next call reconnects."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        self._local.depth = 0
        self._local.lost = None
        if conn is not None:
            with self._lock:
                self._open.pop(threading.get_ident(), None)
                pooled = conn in self._pooled
                self._pooled.discard(conn)
            _close(conn)
            if pooled and self._slots is not None:
                self._slots.release()

    def close(self, reason: str) -> None:
        """Close every connection; calls in progress in other threads finish first."""
        with self._lock:
            if self.closed:
                return
            self.closed = reason
            conns = [conn for _, conn in self._open.values()] + list(self._pooled) if self._pid == _PID[0] else []
            self._open.clear()
            self._pooled, self._free = set(), []
        for conn in conns:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
                try:  # a statement waiting for a lock (perhaps for ever) is cancelled, not waited for
                    conn.cancel_safe(timeout=1.0)
                except (psycopg.Error, AttributeError):
                    pass
            with conn.lock:  # psycopg holds this lock while a statement runs
                _close(conn)


def _close(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.close()
    except psycopg.Error:
        pass


_PID = [os.getpid()]


_ALL: weakref.WeakSet[Connections] = weakref.WeakSet()


def _after_fork() -> None:
    _PID[0] = os.getpid()
    for connections in list(_ALL):  # another thread may have held it at the fork: never again
        connections._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
