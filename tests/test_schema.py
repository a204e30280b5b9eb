"""The SQL the store runs is what the SQLAlchemy models compile to, and the schema keeps types apart."""

from __future__ import annotations

import hashlib
import sqlite3


from kvstore import schema
from kvstore.sqlite import sql, triggers

V1_DIGEST = "1cc491b8c04ba7d5"
V2_DIGEST = "1cac2e4df153a36a"


def test_compiled_statements_have_not_drifted_from_the_models():
    compiled = {**schema.hot_statements(), **schema.definitions()}
    shipped = {name: value for name, value in vars(sql).items() if name.isupper()}
    assert shipped == compiled, "regenerate kvstore/sqlite/sql.py with: python -m kvstore.schema"


def test_columns_have_no_converting_affinity(db, path):
    db.update({"1": "1", 1: 1, b"1": b"1"})
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT typeof(key), typeof(value) FROM items ORDER BY key").fetchall()
    assert rows == [("integer", "integer"), ("text", "text"), ("blob", "blob")]
    assert db.counts() == {"1": 1, 1: 1, b"1": 1}


def test_counts_row_vanishes_with_its_last_key(db, path):
    db["a"] = "x"
    db["a"] = "y"
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value, n FROM counts").fetchall() == [("y", 1)]
    del db["a"]
    assert conn.execute("SELECT count(*) FROM counts").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM items_displaced").fetchone() == (0,)


def test_count_strategies_use_the_intended_plans(db, path):
    conn = sqlite3.connect(path)

    def plan(query: str) -> str:
        return " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + query, ("x",)))

    assert plan(sql.COUNT).startswith("SEARCH counts USING INDEX ix_counts_value (<expr>=? AND <expr>=?)")
    assert plan(sql.COUNT_GROUP_BY).startswith("SEARCH items USING INDEX ix_items_value (<expr>=? AND <expr>=?)")
    assert plan(sql.COUNT_SCAN).startswith("SCAN items")  # every row read, no search
    # keys_for() pages through the index in key order: no sort, no scan.
    assert plan(sql.KEYS_FOR_FIRST).startswith("SEARCH items USING INDEX ix_items_value (<expr>=? AND <expr>=?)")
    assert "TEMP B-TREE" not in plan(sql.KEYS_FOR_FIRST)
    after = " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql.KEYS_FOR_AFTER, ("x", 1)))
    assert after.startswith("SEARCH items USING INDEX ix_items_value (<expr>=? AND <expr>=? AND key>?)")


def test_trigger_expressions_are_the_indexed_ones():
    """SQLite searches an expression index only for the very expression it indexes: the
    triggers' text (plain strings, no SQLAlchemy at run time) must be what the models render."""
    value = schema.items.c.value
    for text, expr in ((triggers.head("items.value"), schema.head(value)), (triggers.size("items.value"), schema.size(value))):
        assert text == schema.compile_sql(expr)


def test_published_trigger_versions_are_never_edited():
    """Files already carry these texts; an edit needs a new version and a migration instead."""
    digests = {name: hashlib.sha256("\n".join(ddls).encode()).hexdigest()[:16]
               for name, ddls in (("V1", triggers.TRIGGERS_V1), ("V2", triggers.TRIGGERS_V2))}
    assert digests == {"V1": V1_DIGEST, "V2": V2_DIGEST}


def test_long_values_sharing_a_prefix_are_told_apart(db, path):
    """Values longer than the indexed prefix: same prefix, same length, text with NUL inside."""
    prefix = "p" * triggers.PREFIX
    values = [prefix + "a", prefix + "b", prefix + "a" + "x" * 100, (prefix + "a").encode(), "a\x00" + "b" * 40,
              "a\x00" + "c" * 40, "a\x00b", "a\x00c", 1, 1.0, -0.0, 0, "1", b"1", "é" * 17, "é" * 16]
    for i, value in enumerate(values):
        db[i] = value
        db[-i - 1] = value
    conn = sqlite3.connect(path)
    for value in values:
        held = sorted(k for k, v in enumerate(values) if v == value and type(v) is type(value) or
                      (isinstance(v, (int, float)) and isinstance(value, (int, float)) and v == value))
        want = 2 * len(held)
        assert db.count(value) == db.count(value, "group_by") == db.count(value, "scan") == want, value
        assert sorted(db.keys_for(value)) == sorted(held + [-k - 1 for k in held]), value
    assert dict(conn.execute(sql.RECOUNT)) == dict(conn.execute("SELECT value, count(*) FROM items GROUP BY value"))
    assert db.verify() == []


def test_the_value_indexes_hold_a_bounded_head_of_any_value(db, path):
    """Long texts (one with a NUL near its start, where length() stops) and blobs leave index
    entries of a few dozen bytes: the indexes stay small whatever the values' sizes."""
    db.update((i, kind + str(i) * 2000) for i in range(100) for kind in ("t", "a\x00"))
    db.update((-i - 1, (str(i) * 2000).encode()) for i in range(100))
    conn = sqlite3.connect(path)
    sizes = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat WHERE name LIKE 'ix_%' GROUP BY name"))
    assert sizes["ix_items_value"] <= 8 * 4096 and sizes["ix_counts_value"] <= 8 * 4096, sizes
    assert db.count("a\x00" + "7" * 2000) == 1 and db.verify() == []
