"""The PostgreSQL backend: the same store, with the same exact counts, on a database server.

``kvstore.open("postgresql://...")`` returns a :class:`kvstore.postgresql.store.PostgresStore`.
Its parts: :mod:`~kvstore.postgresql.encoding` (how a typed key or value becomes one
``bytea``), :mod:`~kvstore.postgresql.ddl` (tables, triggers and the ``kv()`` functions),
:mod:`~kvstore.postgresql.connections` (a connection per thread, fork safety, errors) and
:mod:`~kvstore.postgresql.schema` (creating and upgrading a store's schema). psycopg 3 is
imported only here: ``pip install 'kvstore[postgresql]'``.
"""

from __future__ import annotations

SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def is_url(target: object) -> bool:
    """True when ``target`` names a PostgreSQL database rather than a file."""
    return isinstance(target, str) and target.startswith(SCHEMES)
