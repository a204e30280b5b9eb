"""The SQL text a PostgreSQL store runs, for one schema (names quoted once, at open)."""

from __future__ import annotations

from dataclasses import dataclass

from kvstore.postgresql.ddl import quoted


@dataclass(frozen=True)
class Statements:
    """Every statement of :class:`kvstore.postgresql.store.PostgresStore`, schema-qualified."""

    get: str
    upsert: str
    insert_new: str
    update: str
    pop: str
    pop_first: str
    lock_row: str
    any_row: str
    length: str
    count: str
    count_group_by: str
    count_scan: str
    count_many: str
    get_many: str
    counts: str
    keys_first: str
    keys_after: str
    keys_for_first: str
    keys_for_after: str
    items_first: str
    items_after: str

    @classmethod
    def for_schema(cls, schema: str) -> Statements:
        s = quoted(schema)
        return cls(
            get=f"SELECT value FROM {s}.items WHERE key = %s",
            upsert=f"INSERT INTO {s}.items (key, value) VALUES (%s, %s) "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            insert_new=f"INSERT INTO {s}.items (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING RETURNING 1",
            update=f"UPDATE {s}.items SET value = %s WHERE key = %s",
            pop=f"DELETE FROM {s}.items WHERE key = %s RETURNING value",
            # The first key, locked; a row another transaction deletes meanwhile yields nothing (try again).
            pop_first=f"DELETE FROM {s}.items WHERE key = (SELECT key FROM {s}.items ORDER BY key LIMIT 1 "
                      "FOR UPDATE) RETURNING key, value",
            lock_row=f"SELECT value FROM {s}.items WHERE key = %s FOR UPDATE",
            any_row=f"SELECT 1 FROM {s}.items LIMIT 1",
            length=f"SELECT coalesce(sum(n), 0)::bigint FROM {s}.count_shards",
            count=f"SELECT coalesce(sum(n), 0)::bigint FROM {s}.count_shards WHERE vid = %s",
            count_group_by=f"SELECT count(*) FROM {s}.items WHERE {s}.vid(value) = %s",
            # OFFSET 0 keeps the planner from pushing the condition into an index search.
            count_scan=f"SELECT count(*) FROM (SELECT value FROM {s}.items OFFSET 0) AS t WHERE {s}.vid(t.value) = %s",
            count_many=f"SELECT vid, sum(n)::bigint FROM {s}.count_shards WHERE vid = ANY(%s) GROUP BY vid",
            get_many=f"SELECT key, value FROM {s}.items WHERE key = ANY(%s)",
            counts=f"SELECT value, n FROM {s}.counts ORDER BY n DESC, value",
            keys_first=f"SELECT key FROM {s}.items WHERE key >= %s ORDER BY key LIMIT %s",
            keys_after=f"SELECT key FROM {s}.items WHERE key > %s ORDER BY key LIMIT %s",
            keys_for_first=f"SELECT key FROM {s}.items WHERE {s}.vid(value) = %s AND key >= %s ORDER BY key LIMIT %s",
            keys_for_after=f"SELECT key FROM {s}.items WHERE {s}.vid(value) = %s AND key > %s ORDER BY key LIMIT %s",
            items_first=f"SELECT key, value FROM {s}.items WHERE key >= %s ORDER BY key LIMIT %s",
            items_after=f"SELECT key, value FROM {s}.items WHERE key > %s ORDER BY key LIMIT %s",
        )
