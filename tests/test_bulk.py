"""The set-based path of update(): the value index dropped and rebuilt only when that is cheaper,
a bigger page cache only while it runs, and a file afterwards exactly like a fresh one."""

from __future__ import annotations

import sqlite3

import pytest

import kvstore
from kvstore.sqlite import bulk
from kvstore.sqlite.connection import CACHE


def schema(path: str) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    finally:
        conn.close()


def statements(db: kvstore.Store, work) -> list[str]:
    """The SQL this thread's connection ran during ``work()``."""
    seen: list[str] = []
    with db._using() as conn:
        conn.set_trace_callback(seen.append)
    try:
        work()
    finally:
        with db._using() as conn:
            conn.set_trace_callback(None)
    return seen


def test_a_bulk_load_leaves_the_schema_of_a_fresh_store(tmp_path):
    fresh, loaded = str(tmp_path / "fresh.db"), str(tmp_path / "loaded.db")
    kvstore.open(fresh).close()
    with kvstore.open(loaded) as db:
        ran = statements(db, lambda: db.update((i, f"v{i % 7}") for i in range(3 * bulk.CHUNK)))
        assert any(s.startswith("DROP INDEX") for s in ran) and any(s.startswith("CREATE INDEX") for s in ran)
        assert db.verify() == [] and db.count("v3") == len(list(db.keys_for("v3"))) > 0
        assert db.count("v3", strategy="group_by") == db.count("v3")
    assert schema(loaded) == schema(fresh)


def test_a_merge_much_smaller_than_the_store_keeps_the_index(tmp_path):
    with kvstore.open(str(tmp_path / "s.db")) as db:
        db.update((i, f"v{i % 7}") for i in range(8 * bulk.CHUNK))
        ran = statements(db, lambda: db.update((-i, "new") for i in range(2 * bulk.CHUNK)))
        assert any("DROP TRIGGER" in s for s in ran), "the set-based path was taken"
        assert not any(s.startswith("DROP INDEX") for s in ran)
        assert db.verify() == [] and db.count("new") == 2 * bulk.CHUNK


def test_the_bulk_cache_is_used_only_while_the_update_runs(tmp_path):
    with kvstore.open(str(tmp_path / "c.db"), bulk_cache=64 * 2**20) as db:
        seen = []

        def pairs():
            for i in range(3 * bulk.CHUNK):
                if i == 2 * bulk.CHUNK:  # the set-based path is under way
                    seen.append(db._row("PRAGMA cache_size", ())[0])
                yield i, "v"

        db.update(pairs())
        assert seen == [-64 * 1024]
        assert db._row("PRAGMA cache_size", ())[0] == -(CACHE // 1024)


def test_a_failed_bulk_update_restores_the_cache_and_the_index(tmp_path):
    with kvstore.open(str(tmp_path / "f.db")) as db:
        def pairs():
            yield from ((i, "v") for i in range(3 * bulk.CHUNK))
            raise RuntimeError("the source failed")

        with pytest.raises(RuntimeError):
            db.update(pairs())
        assert len(db) == 0 and db.verify() == []
        assert db._row("PRAGMA cache_size", ())[0] == -(CACHE // 1024)


@pytest.mark.parametrize("bad", [-1, 1.5, "big"])
def test_bulk_cache_must_be_a_whole_number_of_bytes(tmp_path, bad):
    with pytest.raises(ValueError, match="bulk_cache"):
        kvstore.open(str(tmp_path / "x.db"), bulk_cache=bad)


def test_a_bulk_update_without_the_value_index_leaves_it_missing(tmp_path):
    """Another program dropped the index: update() neither fails nor silently rebuilds it."""
    path = str(tmp_path / "n.db")
    with kvstore.open(path) as db:
        db["a"] = "v"
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX ix_items_value")
    conn.close()
    with kvstore.open(path) as db:
        db.update((i, "v") for i in range(3 * bulk.CHUNK))
        assert db.count("v") == 3 * bulk.CHUNK + 1
        assert [p.name for p in db.verify()] == ["ix_items_value"]
        assert db.repair() == 1 and db.verify() == []


def test_a_bulk_update_run_from_another_ones_source_of_pairs(tmp_path):
    with kvstore.open(str(tmp_path / "nested.db")) as db:
        def outer():
            for i in range(4 * bulk.CHUNK):
                if i == 2 * bulk.CHUNK:  # the outer set-based path is under way
                    db.update((f"inner{j}", "w") for j in range(2 * bulk.CHUNK))
                yield i, "v"

        db.update(outer())
        assert db.count("v") == 4 * bulk.CHUNK and db.count("w") == 2 * bulk.CHUNK
        assert db.verify() == []


def test_repair_run_from_a_bulk_updates_source_of_pairs(tmp_path):
    with kvstore.open(str(tmp_path / "r.db")) as db:
        def pairs():
            for i in range(3 * bulk.CHUNK):
                if i == 2 * bulk.CHUNK:
                    db.repair()
                yield i, "v"

        db.update(pairs())
        assert db.count("v") == 3 * bulk.CHUNK and db.verify() == []


def test_the_sorted_runs_keep_the_last_pair_of_a_key(tmp_path):
    """The set-based path writes runs sorted by key: of two pairs with one key, the later wins."""
    n = 2 * bulk.CHUNK + bulk.RUN + 7
    source = [((i * 7919) % 5003 if i % 3 else f"k{i % 101}", f"v{i}") for i in range(n)]
    expected = dict(source)
    with kvstore.open(str(tmp_path / "d.db")) as db:
        db.update(source)
        assert dict(db.items()) == expected and db.verify() == []
