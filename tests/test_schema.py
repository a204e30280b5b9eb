"""The SQL the store runs is what the SQLAlchemy models compile to, and the schema keeps types apart."""

from __future__ import annotations

import sqlite3

from kvstore import schema, sql


def test_compiled_statements_have_not_drifted_from_the_models():
    compiled = {**schema.hot_statements(), **schema.definitions()}
    shipped = {name: value for name, value in vars(sql).items() if name.isupper()}
    assert shipped == compiled, "regenerate kvstore/sql.py with: python -m kvstore.schema"


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

    assert "USING PRIMARY KEY" in plan(sql.COUNT)
    assert "ix_items_value" in plan(sql.COUNT_GROUP_BY)
    assert plan(sql.COUNT_SCAN).startswith("SCAN items")  # every row read, no search
