"""Writing many pairs to a PostgreSQL store: update() and clear().

Few pairs are upserted one by one, in key order; more are streamed with binary COPY into a
temporary table and merged with the whole load's count deltas in one statement
(kvstore.postgresql.ddl.bulk_merge), so a load of millions costs no trigger call per pair.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg

from kvstore.api import pairs_of
from kvstore.postgresql import ddl
from kvstore.postgresql.encoding import encode
from kvstore.postgresql.session import Session
from kvstore.validate import Value, check_pair

SMALL = 64
"""update() of fewer pairs runs plain upserts; more go through COPY and one merge statement."""
CHUNK = 10_000
"""Pairs per COPY statement in update(): the source of pairs runs between them."""


class BulkWrites(Session):
    """The bulk-writing methods of :class:`kvstore.postgresql.store.PostgresStore`."""

    def update(self, other: Any = (), /, **kwargs: Value) -> None:
        """Write many pairs in one transaction; any bad pair rejects the whole batch.

        Few pairs are upserted one by one, in key order (so two update()s lock their rows in
        one order; a deadlock with another transaction is retried, as for set()). More are
        streamed with COPY into a temporary table, CHUNK at a time (between chunks the source
        may read the store, which it sees as before the update), then merged with their count
        deltas in one statement each (ddl.bulk_merge). A key given twice keeps its last value.
        """
        pairs: Iterable[Any] = pairs_of(other)
        if kwargs:
            pairs = itertools.chain(pairs, kwargs.items())
        stream = iter(pairs)
        first = [_encoded(pair) for pair in itertools.islice(stream, SMALL)]
        if len(first) < SMALL:
            if first:
                # Stable: of two pairs with one key the later still wins.
                self._small(sorted(first, key=lambda pair: pair[0]))
            return
        with self.transaction():
            self._copy(itertools.chain(first, map(_encoded, stream)))

    def _small(self, rows: list[tuple[bytes, bytes]]) -> None:
        def write() -> None:  # the pairs are still here to write again after a rollback
            with self.transaction():
                self._many(rows)

        self._retried(write)

    def _many(self, rows: list[tuple[bytes, bytes]]) -> None:
        conn = self._conns.get()
        try:
            conn.cursor().executemany(self._sql.upsert, rows)
        except psycopg.Error as exc:
            raise self._failed(exc) from exc

    def _copy(self, rows: Iterator[tuple[bytes, bytes]]) -> None:
        """Stream the pairs with binary COPY, then merge them with one delta per value (ddl.bulk_merge)."""
        conn = self._conns.get()
        try:
            conn.execute("CREATE TEMPORARY TABLE kvstore_load (seq bigint, key bytea, value bytea)")
            seq = itertools.count()
            while True:
                # The source runs between COPY statements, never inside one: it may read the store
                # on this connection (a query in the middle of a COPY would wait for ever).
                chunk = list(itertools.islice(rows, CHUNK))
                if not chunk:
                    break
                with conn.cursor().copy("COPY pg_temp.kvstore_load (seq, key, value) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["int8", "bytea", "bytea"])
                    for key, value in chunk:
                        copy.write_row((next(seq), key, value))
            for statement in ddl.bulk_merge(self.schema):
                cursor = conn.execute(statement)
            (emptied,) = cursor.fetchone() or ([],)  # the last statement's answer
            if emptied:
                conn.execute(ddl.bulk_emptied(self.schema), (emptied,))
            for statement in ddl.bulk_finish(self.schema):
                conn.execute(statement)
        except psycopg.Error as exc:
            raise self._failed(exc) from exc

    def clear(self) -> None:
        """Remove every pair in one transaction, counts with them (other writers wait meanwhile)."""
        with self.transaction():
            for statement in ddl.clear(self.schema):
                self._run(statement)


def _encoded(pair: Any) -> tuple[bytes, bytes]:
    key, value = check_pair(pair)
    return encode(key), encode(value)
