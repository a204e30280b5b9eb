"""verify(), repair() and stats() of a PostgreSQL store.

What can go wrong is narrower than on SQLite: the schema's DDL is transactional and typed, a
CHECK keeps foreign rows out, and the same counting triggers fire for every client. What
remains: triggers disabled (``ALTER TABLE ... DISABLE TRIGGER``, ``session_replication_role =
replica``, logical replication applying changes) or dropped, the value index dropped, and
counts written by hand. repair() recreates what is missing and recounts every value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kvstore.postgresql import ddl
from kvstore.postgresql.encoding import decode
from kvstore.problems import ForeignRow, Mismatch, Problem, SchemaProblem

Run = Callable[..., list[Any]]

_TRIGGERS = "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal"
_BODY = ("SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
         "WHERE n.nspname = %s AND p.proname = %s AND p.pronargs = 0")
_INDEX = "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND tablename = 'items' AND indexname = %s"


def problems(run: Run, schema: str) -> list[Problem]:
    """Missing or disabled triggers, a missing value index, and every count that is wrong."""
    found: list[Problem] = []
    triggers = dict(run(_TRIGGERS, (f"{ddl.quoted(schema)}.items",)))
    for name in ddl.TRIGGERS:
        state = triggers.get(name)
        if state is None:
            found.append(SchemaProblem(name, "trigger on items is missing: writes no longer update counts; "
                                             "repair() recreates it and recounts every value"))
        elif state not in ("O", "A"):  # D: disabled; R: fires only for replication apply
            found.append(SchemaProblem(name, "trigger on items is disabled (ALTER TABLE ... DISABLE or ENABLE "
                                             "REPLICA TRIGGER): writes no longer update counts; repair() "
                                             "enables it and recounts"))
    for function, expected in ddl.trigger_bodies(schema).items():
        body = run(_BODY, (schema, function))
        if not body or body[0][0] != expected:
            found.append(SchemaProblem(function, "trigger function is missing or was replaced: writes may no "
                                                 "longer update counts; repair() restores it and recounts"))
    if not run(_INDEX, (schema, ddl.VALUE_INDEX)):
        found.append(SchemaProblem(ddl.VALUE_INDEX, "index on the value is missing: keys_for() and "
                                                    "count(strategy='group_by') read every row; repair() recreates it"))
    s = ddl.quoted(schema)
    for key, value in run(f"SELECT key, value FROM {s}.items WHERE NOT ({s}.valid(key) AND {s}.valid(value)) "
                          "ORDER BY key LIMIT 1000"):
        found.append(ForeignRow(_shown(key), _shown(value), "not a canonical kvstore encoding (written without "
                                f"{schema}.kv()?): it may not be found by its key or counted with its equals; "
                                "rewrite it through kv()"))
    for value, stored, actual in run(ddl.problems(schema)):
        found.append(Mismatch(decode(value), int(actual), int(stored)))
    return found


def _shown(data: bytes) -> object:
    """The decoded object, or the raw bytes when they do not decode."""
    try:
        return decode(data)
    except (ValueError, IndexError):
        return bytes(data)


def repair(run: Run, schema: str) -> int:
    """Fix everything problems() reports (inside the caller's transaction); the number fixed."""
    found = [problem for problem in problems(run, schema) if problem.fixable]
    if not found:
        return 0
    for statement in ddl.restore(schema):
        run(statement)
    for statement in ddl.rebuild(schema):
        run(statement)
    return len(found)


def stats(run: Run, schema: str) -> dict[str, dict[str, int]]:
    """Rows and bytes on disk of items (with its key index), the value index and counts."""
    s = ddl.quoted(schema)
    items, value_index, counts = (f"{s}.items", f"{s}.{ddl.quoted(ddl.VALUE_INDEX)}", f"{s}.count_shards")
    ((table, index, shards),) = run("SELECT pg_total_relation_size(%s::regclass) - pg_relation_size(%s::regclass), "
                                    "pg_relation_size(%s::regclass), pg_total_relation_size(%s::regclass)",
                                    (items, value_index, value_index, counts))
    ((rows, values),) = run(f"SELECT (SELECT count(*) FROM {s}.items), (SELECT count(*) FROM {s}.counts)")
    return {
        "items": {"rows": int(rows), "bytes": int(table)},
        "value_index": {"rows": int(rows), "bytes": int(index)},
        "counts": {"rows": int(values), "bytes": int(shards)},
        "file": {"rows": int(rows), "bytes": int(table) + int(index) + int(shards)},
    }
