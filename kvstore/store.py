"""``kvstore.open()``: a file path opens a SQLite :class:`Store`, a PostgreSQL URL a ``PostgresStore``.

The backends live in :mod:`kvstore.sqlite` and :mod:`kvstore.postgresql`; the PostgreSQL store
(and with it psycopg) is imported only when a URL is opened. ``Store`` is the SQLite backend's
(:mod:`kvstore.sqlite.store`), re-exported here: ``from kvstore.store import Store``.
"""

from __future__ import annotations

import os

from kvstore.api import StoreAPI
from kvstore.errors import Error
from kvstore.postgresql import SCHEMES as POSTGRESQL_SCHEMES
from kvstore.sqlite.connection import DEFAULT_MMAP_SIZE, Options
from kvstore.sqlite.store import Store as Store  # re-exported: the public kvstore.store.Store


def open(  # noqa: A001 - mirrors the built-in on purpose: kvstore.open(path)
    path: str | os.PathLike[str],
    *,
    timeout: float = 5.0,
    durable: bool = False,
    readonly: bool = False,
    mmap_size: int = DEFAULT_MMAP_SIZE,
    bulk_cache: int = 160 * 2**20,
    schema: str | None = None,
    max_connections: int | None = None,
) -> StoreAPI:
    """Open (creating or upgrading as needed) the kvstore file at ``path``, or a PostgreSQL store.

    ``path`` may be a PostgreSQL URL (``postgresql://user:password@host:port/database``, or
    ``postgresql://user@/database?host=/var/run/postgresql`` for a Unix socket): the store then
    lives in the schema ``schema`` of that database (default ``kvstore``), created on first open,
    and behaves as a file's store does (see kvstore.postgresql; needs ``kvstore[postgresql]``).
    ``timeout``, ``durable`` and ``readonly`` mean the same there; ``mmap_size`` and
    ``bulk_cache`` are SQLite's and are ignored. ``max_connections``: PostgreSQL only; at most
    this many connections, shared by all threads (default: one per thread that uses the store).

    ``path``: a file path (an empty file becomes a new store), or ``":memory:"`` for a private
    in-memory store shared by this store's threads and gone when it closes. ``timeout``:
    seconds a write waits for another writer before BusyError (0 or more; ``math.inf`` waits as
    long as SQLite can, about 24.8 days). ``durable``: fsync each commit so it survives power
    loss (default: survives a crash of the process). ``readonly``: never write; also chosen
    automatically for a file without write permission, or in a directory that cannot be written.
    ``mmap_size``: bytes of the file read through a memory map (default 1 GiB on 64-bit Pythons;
    0 for a file on storage that may fail or be truncated by other programs: see
    kvstore.sqlite.connection.Options.mmap_size). ``bulk_cache``: bytes of page cache a large update()
    may use while it runs (0: the normal 32 MiB), so that loads of many millions of pairs stay
    linear.
    """
    options = Options(timeout=timeout, durable=durable, readonly=readonly, mmap_size=mmap_size, bulk_cache=bulk_cache)
    if isinstance(path, str) and path.startswith(POSTGRESQL_SCHEMES):
        try:
            from kvstore.postgresql.store import DEFAULT_SCHEMA, PostgresStore
        except ImportError as exc:
            raise Error(f"{path.split(':', 1)[0]}: URLs need the PostgreSQL driver: "
                        f"pip install 'kvstore[postgresql]' ({exc})") from exc
        return PostgresStore(path, DEFAULT_SCHEMA if schema is None else schema, options, max_connections)
    if schema is not None:
        raise ValueError("schema= names a PostgreSQL schema; it cannot be used with a file path")
    if max_connections is not None:
        raise ValueError("max_connections= bounds a PostgreSQL store's connections; a file's store "
                         "has one SQLite connection per thread, which costs no server")
    return Store(path, options)
