"""incr(), key ranges and prefixes, keys_for(limit=), backup(), vacuum(), and most_common's ties."""

from __future__ import annotations

import multiprocessing
import os
import threading

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import kvstore
from kvstore import ranges


@pytest.fixture
def db(any_db: kvstore.StoreAPI) -> kvstore.StoreAPI:
    """This module's tests use the public API only: each runs on SQLite and on PostgreSQL."""
    return any_db


def order(key: object) -> tuple[int, object]:
    """SQLite's order of kvstore keys: ints, then strings (by code point), then bytes."""
    rank = {int: 0, str: 1, bytes: 2}[type(key)]
    return rank, key


# -- incr -------------------------------------------------------------------------------------


def test_incr_adds_with_pythons_types(db):
    assert db.incr("n") == 1 and type(db["n"]) is int
    assert db.incr("n", 41) == 42
    assert db.incr("n", -0.5) == 41.5 and type(db["n"]) is float
    assert db.incr("f", 2.5) == 2.5
    assert db.count(41.5) == 1 and db.verify() == []


@pytest.mark.parametrize("stored, delta, error", [
    ("text", 1, TypeError), (b"x", 1, TypeError), (2**63 - 1, 1, OverflowError),
    (-(2**63), -1, OverflowError), (float("inf"), float("-inf"), ValueError),
])
def test_incr_refuses_and_changes_nothing(db, stored, delta, error):
    db["k"] = stored
    with pytest.raises(error, match="nothing was changed"):
        db.incr("k", delta)
    assert db["k"] == stored and db.count(stored) == 1 and db.verify() == []


@pytest.mark.parametrize("delta", [True, "1", None, float("nan"), 2**64])
def test_incr_refuses_bad_deltas(db, delta):
    with pytest.raises((TypeError, ValueError, OverflowError)):
        db.incr("k", delta)
    assert "k" not in db


def test_incr_at_the_int64_edges(db):
    db["top"] = 2**63 - 2
    assert db.incr("top") == 2**63 - 1
    db["bottom"] = -(2**63) + 5
    with pytest.raises(OverflowError):
        db.incr("bottom", -6)
    assert db.incr("bottom", -5) == -(2**63)


def _incr_many(args: tuple[str, int]) -> None:
    path, n = args
    with kvstore.open(path, timeout=30) as db:
        for _ in range(n):
            db.incr("counter")


def test_incr_is_atomic_across_threads_and_processes(path):
    db = kvstore.open(path, timeout=30)
    threads = [threading.Thread(target=lambda: [db.incr("counter") for _ in range(300)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_incr_many, [(path, 300)] * 2)
    for thread in threads:
        thread.join(60)
    assert db["counter"] == 6 * 300 and db.count(1800) == 1
    db.close()


# -- ranges -----------------------------------------------------------------------------------

keys = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.text(alphabet=st.sampled_from("ab\x00é\U0010ffff\ud7ff\ue000"), max_size=4),
    st.binary(max_size=3).map(lambda b: b.replace(b"\x02", b"\xff")),
)


@settings(max_examples=150, deadline=None)
@given(st.sets(keys, max_size=25), st.one_of(st.none(), keys), st.one_of(st.none(), keys))
def test_ranges_agree_with_a_sorted_model(tmp_path_factory, stored, start, stop):
    path = str(tmp_path_factory.mktemp("r") / "r.db")
    with kvstore.open(path) as db:
        db.update((k, 1) for k in stored)
        model = sorted(stored, key=order)
        expected = [k for k in model
                    if (start is None or order(k) >= order(start)) and (stop is None or order(k) < order(stop))]
        if start is None and stop is None:
            assert list(db.keys()) == model
        else:
            assert list(db.keys(start, stop)) == expected
            assert [k for k, _ in db.items(start=start, stop=stop)] == expected
        for prefix in {k[:1] for k in stored if not isinstance(k, int)} | {"", b""}:
            want = [k for k in model if type(k) is type(prefix) and k.startswith(prefix)]
            assert list(db.keys(prefix=prefix)) == want, prefix


def test_ranges_page_past_a_thousand(db):
    db.update((f"k{i:05}", i) for i in range(2500))
    db.update((i, i) for i in range(10))
    assert list(db.keys("k00500", "k02100")) == [f"k{i:05}" for i in range(500, 2100)]
    assert len(list(db.items(prefix="k0"))) == 2500


def test_prefix_bounds():
    assert ranges.bounds(None, None, "ab") == ("ab", "ac")
    assert ranges.bounds(None, None, "a\U0010ffff") == ("a\U0010ffff", "b")
    assert ranges.bounds(None, None, "\U0010ffff") == ("\U0010ffff", b"")
    assert ranges.bounds(None, None, "\ud7ff") == ("\ud7ff", "\ue000")
    assert ranges.bounds(None, None, b"a\xff") == (b"a\xff", b"b")
    assert ranges.bounds(None, None, b"\xff") == (b"\xff", None)
    with pytest.raises(ValueError, match="not both"):
        ranges.bounds("a", None, "a")
    with pytest.raises(TypeError):
        ranges.bounds(None, None, 1)


def test_keys_view_still_works(db):
    db.update({1: "a", 2: "b"})
    assert db.keys() == {1, 2} and 1 in db.keys() and len(db.keys()) == 2
    assert db.items() == {(1, "a"), (2, "b")}


def test_keys_for_limit(db):
    db.update((i, "v") for i in range(2500))
    assert list(db.keys_for("v", limit=3)) == [0, 1, 2]
    assert list(db.keys_for("v", limit=0)) == []
    assert len(list(db.keys_for("v"))) == 2500
    with pytest.raises(ValueError):
        db.keys_for("v", limit=-1)


def test_most_common_breaks_ties_by_value_order(db):
    db.update({1: "b", 2: "a", 3: b"z", 4: 7, 5: "c", 6: "c"})
    assert db.most_common() == [("c", 2), (7, 1), ("a", 1), ("b", 1), (b"z", 1)]


@pytest.mark.parametrize("n", [2**31, 2**70])
def test_most_common_of_more_than_there_are_is_all(db, n):
    db.update({1: "a", 2: "a", 3: "b"})
    assert db.most_common(n) == [("a", 2), ("b", 1)]


def test_most_common_refuses_a_count_that_is_not_a_whole_number(db):
    with pytest.raises(TypeError, match="whole number"):
        db.most_common(2.5)  # type: ignore[arg-type]


# -- backup and vacuum ------------------------------------------------------------------------


def test_backup_is_a_consistent_copy_while_another_thread_writes(tmp_path, db):
    db.update((i, "seed") for i in range(20_000))
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            with db.transaction():  # each transaction keeps the two totals equal
                db[f"a{i % 100}"] = i
                db[f"b{i % 100}"] = i
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for n in range(3):
            db.backup(tmp_path / f"copy{n}.db")
    finally:
        stop.set()
        thread.join(30)
    for n in range(3):
        with kvstore.open(tmp_path / f"copy{n}.db") as copy:
            assert copy.verify() == [] and copy.count("seed") == 20_000
            assert [copy.get(f"a{i}") for i in range(100)] == [copy.get(f"b{i}") for i in range(100)]
    with pytest.raises(kvstore.Error, match="already exists"):
        db.backup(tmp_path / "copy0.db")
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".creating")]


@pytest.mark.parametrize("any_db", ["sqlite"], indirect=True)  # reaches into SQLite itself
def test_vacuum_shrinks_the_file(path, db):
    db.update((i, "x" * 200) for i in range(20_000))
    db.clear()

    def on_disk() -> int:  # the file and its WAL, which holds recent pages until a checkpoint
        return sum(os.path.getsize(name) for name in (str(path), f"{path}-wal") if os.path.exists(name))

    before = on_disk()
    db.vacuum()
    assert on_disk() < before / 5
    db[1] = "after"
    assert db.verify() == [] and len(db) == 1
    with db.transaction(), pytest.raises(kvstore.Error, match="inside transaction"):
        db.vacuum()


def test_store_equality_is_identity(path):
    a, b = kvstore.open(path), kvstore.open(path)
    try:
        assert a != b and a == a and len({a, b}) == 2
        assert dict(a.items()) == dict(b.items())  # compare contents explicitly
    finally:
        a.close()
        b.close()


# -- update_in_batches --------------------------------------------------------------------------


def test_update_in_batches_lets_other_writers_in(tmp_path):
    """A long load in batches: a writer in another process never waits for the whole load."""
    import subprocess
    import sys
    import time

    path = str(tmp_path / "load.db")
    kvstore.open(path).close()
    writer = subprocess.Popen([sys.executable, "-c", f"""
import time, kvstore
db = kvstore.open({path!r}, timeout=120)
waits = []
for i in range(40):
    start = time.monotonic()
    db[f"w{{i}}"] = i
    waits.append(time.monotonic() - start)
    time.sleep(0.02)
print(max(waits))
"""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with kvstore.open(path) as db:
        started = time.monotonic()
        n = db.update_in_batches(((i, f"v{i % 6}") for i in range(150_000)), batch=5_000, pause=0.1)
        took = time.monotonic() - started
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err  # no BusyError
        assert n == 150_000 and db.count("v0") == 25_000 and db.verify() == []
        assert all(db[f"w{i}"] == i for i in range(40))
    # One transaction would have made the writer wait for (nearly) the whole load.
    assert took > 1 and float(out) < took / 3, (float(out), took)


def test_update_in_batches_keeps_committed_batches_on_a_bad_pair(db):
    pairs = [(i, "ok") for i in range(25)] + [(None, "bad")] + [(i, "late") for i in range(100, 110)]
    with pytest.raises(TypeError) as info:
        db.update_in_batches(pairs, batch=10, pause=0)
    assert "20 pairs were committed" in "".join(info.value.__notes__)
    assert len(db) == 20 and db.count("ok") == 20  # batches 0-9 and 10-19; not 20-29


def test_update_in_batches_refuses_a_transaction_and_bad_sizes(db):
    with db.transaction(), pytest.raises(kvstore.Error, match="inside transaction"):
        db.update_in_batches([(1, "a")])
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError):
            db.update_in_batches([(1, "a")], batch=bad)
    assert db.update_in_batches({1: "a", 2: "b"}) == 2 and db.update_in_batches([]) == 0


def test_open_ended_ranges_page_past_a_thousand(db):
    db.update((i, "n") for i in range(2500))
    db.update((bytes([i % 256, i // 256]), "b") for i in range(1500))
    assert list(db.keys(5)) [:3] == [5, 6, 7] and len(list(db.keys(5))) == 2495 + 1500
    assert len(list(db.items(start=b""))) == 1500 and len(list(db.keys(prefix=b""))) == 1500


def test_backup_refuses_a_transaction(tmp_path, db):
    with db.transaction():
        db["x"] = 1
        with pytest.raises(kvstore.Error, match="inside transaction"):
            db.backup(tmp_path / "b.db")
    assert not (tmp_path / "b.db").exists()
