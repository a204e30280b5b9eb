"""The Python API: mapping behaviour, bad input, read-only files, threads, fork, errors."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import MutableMapping
from pathlib import Path

import pytest

import kvstore


@pytest.fixture
def db(any_db: kvstore.StoreAPI) -> kvstore.StoreAPI:
    """This module's tests use the public API only: each runs on SQLite and on PostgreSQL."""
    return any_db

REJECTED_KEYS = [
    (None, TypeError, "NoneType"),
    (True, TypeError, "bool would come back as int"),
    (1.5, TypeError, "must be int, str or bytes"),
    (2**63, OverflowError, "64-bit"),
    (-(2**63) - 1, OverflowError, "64-bit"),
    ("\ud800", ValueError, "surrogate"),
    (bytearray(b"x"), TypeError, "bytes\\(x\\)"),
    ((1, 2), TypeError, "tuple"),
]
REJECTED_VALUES = [
    (None, TypeError, "NoneType"),
    (False, TypeError, "bool would come back as int"),
    (float("nan"), ValueError, "NaN"),
    (2**64, OverflowError, "64-bit"),
    ("a\udc80", ValueError, "surrogate"),
    ([1], TypeError, "list"),
    ({"a": 1}, TypeError, "dict"),
    (memoryview(b"x"), TypeError, "bytes\\(x\\)"),
]


def test_is_a_mutable_mapping(db):
    assert isinstance(db, MutableMapping)
    db.update({3: "c", 1: "a"}, z="kw")
    db.update([(2, "b")])
    assert list(db) == [1, 2, 3, "z"]
    assert list(db.keys()) == [1, 2, 3, "z"]
    assert list(db.values()) == ["a", "b", "c", "kw"]
    assert list(db.items()) == [(1, "a"), (2, "b"), (3, "c"), ("z", "kw")]
    assert (1, "a") in db.items() and (1, "b") not in db.items()
    assert db.get(99) is None and db.get(99, "d") == "d"
    with pytest.raises(KeyError):
        db[99]
    with pytest.raises(KeyError):
        del db[99]
    assert db.pop(1) == "a" and 1 not in db
    assert db.setdefault(5, "e") == "e" and db[5] == "e"
    assert len(db) == 4


def test_values_keep_their_exact_type(db):
    samples = {1: "1", 2: 1, 3: 1.0, 4: b"1", 5: -0.0, 6: float("inf"), 7: "a\x00b", 8: b"\x00" * 3, 9: 2**63 - 1, 10: ""}
    db.update(samples)
    for key, value in samples.items():
        assert type(db[key]) is type(value) and db[key] == value
    assert str(db[5]) == "-0.0"


def test_numbers_count_as_python_compares_them(db):
    db.update({1: 1, 2: 1.0, 3: "1", 4: b"1"})
    assert db.count(1) == db.count(1.0) == 2
    assert db.count("1") == 1 and db.count(b"1") == 1


def test_iteration_is_paged_and_tolerates_writes(db, monkeypatch):
    monkeypatch.setattr(kvstore.sqlite.session, "PAGE", 7)
    db.update((i, i % 3) for i in range(100))
    seen = []
    for key in db:
        seen.append(key)
        db[key + 1000] = "later"  # writing while iterating neither fails nor repeats keys
        if key == 99:
            break
    assert seen == list(range(100))
    assert sorted(db.keys_for(0)) == list(range(0, 100, 3))
    assert db.most_common(1) == [("later", 100)]
    assert db.most_common(0) == []


@pytest.mark.parametrize("key,error,message", REJECTED_KEYS, ids=[repr(k) for k, _, _ in REJECTED_KEYS])
def test_rejected_keys_change_nothing(db, key, error, message):
    db["kept"] = "v"
    with pytest.raises(error, match=message):
        db[key] = "v"
    with pytest.raises(error, match=message):
        db.update([("ok", "v"), (key, "v")])
    with pytest.raises(error):
        db.get(key)
    assert dict(db.items()) == {"kept": "v"} and db.verify() == []


@pytest.mark.parametrize("value,error,message", REJECTED_VALUES, ids=[repr(v) for v, _, _ in REJECTED_VALUES])
def test_rejected_values_change_nothing(db, value, error, message):
    db["kept"] = "v"
    with pytest.raises(error, match=message):
        db["new"] = value
    with pytest.raises(error, match=message):
        db.update({"ok": "v", "new": value})
    with pytest.raises(error):
        db.count(value)
    assert dict(db.items()) == {"kept": "v"} and db.counts() == {"v": 1}


def test_update_rejects_things_that_are_not_pairs(db):
    with pytest.raises(TypeError, match="iterable of \\(key, value\\) pairs"):
        db.update([(1, "a"), (2, "b", 3)])
    with pytest.raises(TypeError, match="iterable of \\(key, value\\) pairs"):
        db.update([5])
    assert len(db) == 0


def test_unknown_count_strategy(db):
    with pytest.raises(ValueError, match="use one of: counts, group_by, scan"):
        db.count("x", strategy="guess")


def test_transactions_commit_roll_back_and_nest(db):
    with db.transaction():
        db[1] = "a"
        with pytest.raises(ZeroDivisionError):
            with db.transaction():
                db[2] = "b"
                raise ZeroDivisionError
        with db.transaction():
            db[3] = "c"
    assert dict(db.items()) == {1: "a", 3: "c"}
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.update({4: "d", 1: "z"})
            raise RuntimeError
    assert dict(db.items()) == {1: "a", 3: "c"}
    assert db.counts() == {"a": 1, "c": 1}


@pytest.mark.parametrize("any_db", ["sqlite"], indirect=True)  # reaches into SQLite itself
def test_transaction_is_invisible_to_other_connections_until_commit(path, db):
    with kvstore.open(path) as other:
        with db.transaction():
            db["x"] = "pending"
            assert other.get("x") is None and other.count("pending") == 0
        assert other["x"] == "pending" and other.count("pending") == 1


def test_threads_share_a_store(db):
    errors = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                db[(n, i).__hash__() & 0xFFFF_FFFF] = f"t{n}"
            with db.transaction():
                db.update({f"{n}-{i}": "bulk" for i in range(100)})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert db.count("bulk") == 400
    assert db.verify() == []


def test_fork_child_gets_its_own_connection(db):
    db["parent"] = "p"
    pid = os.fork()
    if pid == 0:  # child: use the inherited store, then leave without cleanup
        status = 0
        try:
            db["child"] = "c"
            status = 0 if db["parent"] == "p" else 1
        except BaseException:
            status = 2
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert db["child"] == "c" and db.verify() == []


def test_closed_store_says_so(path):
    db = kvstore.open(path)
    db[1] = "a"
    db.close()
    with pytest.raises(kvstore.Error, match="closed"):
        db[1]
    with kvstore.open(path) as again:
        assert again[1] == "a"


def test_missing_directory(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "x.db"
    with pytest.raises(kvstore.Error, match="does not exist; create it first"):
        kvstore.open(target)
    assert not target.parent.exists()


def test_readonly_file_reads_work_and_writes_say_why(path):
    with kvstore.open(path) as db:
        db.update({1: "a", 2: "a"})
    os.chmod(path, 0o444)
    try:
        with kvstore.open(path) as db:
            assert db[1] == "a" and db.count("a") == 2 and db.verify() == []
            for write in (lambda: db.set(3, "b"), lambda: db.delete(1), lambda: db.update({4: "c"})):
                with pytest.raises(kvstore.ReadOnlyError, match="read-only"):
                    write()
            assert len(db) == 2
    finally:
        os.chmod(path, 0o644)


def test_readonly_option_never_creates_or_writes(path):
    with pytest.raises(kvstore.Error, match="no such file"):
        kvstore.open(path, readonly=True)
    assert not os.path.exists(path)
    kvstore.open(path).close()
    with kvstore.open(path, readonly=True) as db:
        with pytest.raises(kvstore.ReadOnlyError):
            db["x"] = "y"


def test_busy_writer_gets_a_clear_error_and_can_retry(path):
    with kvstore.open(path) as db:
        db[1] = "a"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with kvstore.open(path, timeout=0.2) as db:
        with pytest.raises(kvstore.BusyError, match="busy"):
            db[2] = "b"
        assert db[1] == "a"  # WAL: reads go on beside the writer
        blocker.execute("ROLLBACK")
        db[2] = "b"
        assert db.count("b") == 1
    blocker.close()


@pytest.mark.parametrize("any_db", ["sqlite"], indirect=True)  # reaches into SQLite itself
def test_verify_and_repair_find_and_fix_damage(path, db):
    db.update({i: "v" if i % 2 else "w" for i in range(10)})
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE counts SET n = 99 WHERE value = 'v'")
    conn.execute("DROP TRIGGER items_after_delete")
    conn.execute("INSERT INTO counts VALUES ('ghost', 3)")
    problems = db.verify()
    assert {str(p) for p in problems} == {
        "items_after_delete: trigger is missing; counts will drift",
        "count of 'v': items hold 5, counts says 99",
        "count of 'ghost': items hold 0, counts says 3",
    }
    assert db.repair() == 3
    assert db.verify() == []
    del db[1]
    assert db.count("v") == 4 and db.verify() == []


def test_stats_report_rows_and_bytes(db):
    db.update((i, str(i % 10)) for i in range(5000))
    stats = db.stats()
    assert stats["items"]["rows"] == 5000 and stats["counts"]["rows"] == 10
    assert stats["items"]["bytes"] > 0 and stats["value_index"]["bytes"] > 0
    assert 0 < stats["counts"]["bytes"] < stats["items"]["bytes"]
    assert stats["file"]["bytes"] >= sum(stats[name]["bytes"] for name in ("items", "value_index", "counts"))


def test_durable_option_sets_full_sync(path):
    with kvstore.open(path, durable=True) as db:
        db[1] = "a"
        with db._using() as conn:
            assert conn.execute("PRAGMA synchronous").fetchone() == (2,)
    with kvstore.open(path) as db, db._using() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone() == (1,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_path_like_and_repr(tmp_path):
    with kvstore.open(Path(tmp_path) / "p.db") as db:
        assert "p.db" in repr(db) and "open" in repr(db)
    assert "closed" in repr(db)


def test_pop_popitem_clear_are_atomic_and_keep_counts(db):
    db.update({1: "a", 2: "a", 3: "b"})
    assert db.pop(2) == "a" and db.count("a") == 1
    assert db.pop(2, "gone") == "gone"
    with pytest.raises(KeyError):
        db.pop(2)
    assert db.popitem() == (1, "a") and db.count("a") == 0
    db.update((i, "c") for i in range(10, 1000))
    db.clear()
    assert len(db) == 0 and db.counts() == {} and db.verify() == []
    with pytest.raises(KeyError):
        db.popitem()
    db["after"] = "d"  # the triggers are back after clear()
    assert db.count("d") == 1 and db.verify() == []


@pytest.mark.parametrize("any_db", ["sqlite"], indirect=True)  # reaches into SQLite itself
def test_connections_of_finished_threads_are_closed(db):
    for _ in range(20):
        thread = threading.Thread(target=db.get, args=(1,))
        thread.start()
        thread.join()
    db.get(1)
    assert db._pool.slot_count() <= 3  # this thread, the last one (closed lazily), the checkpointer


def test_path_with_leading_double_slash(tmp_path):
    target = "/" + str(tmp_path / "x.db")  # "//tmp/..." is the same file to the OS
    with kvstore.open(target) as db:
        db[1] = "a"
    with kvstore.open(str(tmp_path / "x.db")) as db:
        assert db[1] == "a"
