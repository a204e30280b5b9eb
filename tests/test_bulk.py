"""The set-based path of update(): the value index dropped and rebuilt only when that is cheaper,
a bigger page cache only while it runs, and a file afterwards exactly like a fresh one."""

from __future__ import annotations

from collections import Counter
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


# -- the whole-list run and the fast checks --------------------------------------------------


def test_a_list_is_written_as_one_sorted_run_and_the_later_pair_of_a_key_wins(tmp_path, monkeypatch):
    n = bulk.RUN + 3 * bulk.CHUNK
    source = [((i * 7919) % 20011, f"v{i}") for i in range(n)]  # every key repeats, in scattered order
    with kvstore.open(str(tmp_path / "w.db")) as db:
        lengths = []
        checked = bulk.checked_pairs

        def spy(items):
            lengths.append(len(items))
            return checked(items)

        monkeypatch.setattr(bulk, "checked_pairs", spy)
        db.update(source)
        assert lengths == [n], "the whole list in one sorted run"
        assert dict(db.items()) == dict(source) and db.verify() == []


@pytest.mark.parametrize("kind", ["list", "tuple", "generator"])
def test_mixed_kinds_of_key_keep_sqlite_order_and_the_later_pair(tmp_path, kind):
    """ints, text and blobs in one run (sorted by in_key_order): '1' and b'1' are distinct keys,
    1 is one key however often it comes, and the later pair of each key wins."""
    n = 3 * bulk.CHUNK
    pairs = []
    for i in range(n):
        j = (i * 7919) % 997
        pairs.append(([j, str(j), str(j).encode()][i % 3], f"v{i}"))
    pairs += [(1, "int-last"), ("1", "text-last"), (b"1", "blob-last")]
    source = {"list": pairs, "tuple": tuple(pairs), "generator": iter(pairs)}[kind]
    with kvstore.open(str(tmp_path / "m.db")) as db:
        db.update(source)
        expected = dict(pairs)
        assert dict(db.items()) == expected and db.verify() == []
        assert db[1] == "int-last" and db["1"] == "text-last" and db[b"1"] == "blob-last"
        assert list(db.keys()) == sorted(expected, key=lambda k: bulk.in_key_order((k, None)))


def test_slices_with_different_kinds_of_key_are_sorted_together(tmp_path, monkeypatch):
    """One slice of ints, the next of text: itemgetter(0) cannot compare them, in_key_order can."""
    monkeypatch.setattr(bulk, "SLICE", bulk.CHUNK)
    source = [(i, "int") for i in range(2 * bulk.CHUNK)] + [(f"k{i}", "text") for i in range(2 * bulk.CHUNK)]
    source += [(5, "later")]
    with kvstore.open(str(tmp_path / "s.db")) as db:
        db.update(source)
        assert db[5] == "later" and db.count("text") == 2 * bulk.CHUNK and db.verify() == []


BAD_ITEMS = [
    (True, "v"), (1.5, "v"), (2**63, "v"), (-(2**63) - 1, "v"), ("\ud800", "v"),
    (1, float("nan")), (1, 2**63), (1, None), (1, True), (1, "\udfff"), (1, [1]),
    (1, "v", 3), (1,), "abc", 7, None,
]


@pytest.mark.parametrize("bad", BAD_ITEMS, ids=repr)
@pytest.mark.parametrize("where", [0, bulk.CHUNK - 1, 3 * bulk.CHUNK - 1])
def test_the_fast_checks_reject_what_check_pair_rejects_with_its_error(tmp_path, bad, where):
    source = [(i, "v") for i in range(3 * bulk.CHUNK)]
    source[where] = bad
    _rejected_as_check_pair_rejects(tmp_path, source, bad)


@pytest.mark.parametrize("source, bad", [
    ([(i, 1.5) for i in range(bulk.CHUNK)] + [(-1, float("nan"))], (-1, float("nan"))),  # values all floats
    ([(i + 0.5, "v") for i in range(bulk.CHUNK)], (0.5, "v")),                            # keys all floats
    ([(i, "v") for i in range(bulk.SLICE + 10)] + [(-1, None)], (-1, None)),               # in a later slice
    ([(i, "v") for i in range(bulk.SLICE + 10)] + [(True, "v")], (True, "v")),
], ids=["nan-among-floats", "float-keys", "later-slice-value", "later-slice-key"])
def test_the_fast_checks_reject_one_kind_lists_and_later_slices(tmp_path, source, bad):
    _rejected_as_check_pair_rejects(tmp_path, source, bad)


def _rejected_as_check_pair_rejects(tmp_path, source, bad):
    from kvstore.validate import check_pair

    with pytest.raises(Exception) as expected:
        check_pair(bad)
    with pytest.raises(type(expected.value)) as got:
        bulk.checked_pairs(source)
    assert str(got.value) == str(expected.value)
    with kvstore.open(str(tmp_path / "bad.db")) as db:
        db["kept"] = "old"
        with pytest.raises(type(expected.value)):
            db.update(source)
        assert dict(db.items()) == {"kept": "old"} and db.verify() == []


def test_the_slow_checks_keep_the_pairs_they_were_given(tmp_path):
    """A slice the fast passes cannot take (non-ASCII text, mixed types of value) is checked
    pair by pair in place: its tuples are kept, not copied (a copy costs ~70 B a pair)."""
    source = [(i, "café" if i % 2 else 1.5) for i in range(bulk.SLICE + 10)] + [[-1, "a list"]]
    given = list(source)
    checked, order = bulk.checked_pairs(source)
    assert checked is source and all(a is b for a, b in zip(checked[:-1], given[:-1], strict=True))
    assert checked[-1] == (-1, "a list") and order is bulk._first  # one kind of key: itemgetter(0)


@pytest.mark.parametrize("good", [
    [(i, "v") for i in range(50)],
    [(f"k{i}", "é") for i in range(50)],             # non-ASCII values: checked one by one
    [(b"k%d" % i, 1.5) for i in range(50)],
    [(i, float("inf")) for i in range(50)],
    [[i, "list pairs"] for i in range(50)] + ["ab"],  # any iterable of two is a pair, as for check_pair
    [(i, v) for i, v in enumerate(["a", 1, 2.5, b"b"] * 10)],
    [(2**63 - 1, -(2**63)), (-(2**63), 2**63 - 1)],
])
def test_the_fast_checks_accept_what_check_pair_accepts(good):
    from kvstore.validate import check_pair

    checked, order = bulk.checked_pairs(list(good))
    assert checked == [check_pair(p) for p in good]
    assert sorted(checked, key=order) == sorted(checked, key=bulk.in_key_order)


# -- what the bulk path must keep ------------------------------------------------------------


def test_a_source_that_reads_the_store_mid_update(tmp_path):
    with kvstore.open(str(tmp_path / "r.db")) as db:
        db.update((i, "old") for i in range(bulk.CHUNK))
        seen = []

        def source():
            for i in range(4 * bulk.CHUNK):
                if i % bulk.CHUNK == 0:
                    seen.append((db.get(0), db.get(-1, "none"), len(list(db.keys_for("old"))) > 0))
                yield i, "new"

        db.update(source())
        assert seen[0] == ("old", "none", True)
        assert db.count("new") == 4 * bulk.CHUNK and db.count("old") == 0 and db.verify() == []


def temp_state(db: kvstore.Store) -> tuple:
    return (
        db._row("PRAGMA cache_size", ())[0],
        db._row("PRAGMA temp_store", ())[0],
        db._row("PRAGMA mmap_size", ())[0],
        db._row("PRAGMA threads", ())[0],
    )  # not sqlite_temp_master: reading it opens the temp database, and SQLite then refuses temp_store


def test_an_update_run_from_the_source_of_another_leaves_the_outer_ones_settings(tmp_path):
    """A bulk update() run from the source of a bulk update() must give back the settings the
    outer one still needs, not the normal ones: with temp_store back to MEMORY the outer one's
    final sorts would be held in memory whole (no bound; ~1 GiB for 10M index entries), and it
    would lose its helper threads, bulk cache and mmap_size = 0 for the rest of its load."""
    with kvstore.open(str(tmp_path / "n.db")) as db:
        fresh = temp_state(db)
        seen = []

        def source():
            for i in range(3 * bulk.CHUNK):
                if i == bulk.CHUNK + 5:
                    seen.append(temp_state(db))
                    db.update((k, f"n{k % 3}") for k in range(-1, -1 - 2 * bulk.CHUNK, -1))  # bulk too
                    seen.append(temp_state(db))
                yield i, f"v{i % 5}"

        db.update(source())
        assert seen[0] != fresh and seen[0][3] == bulk.SORT_THREADS, "the outer update() is on the bulk path"
        assert seen[1] == seen[0], "the nested update() gave back the outer one's settings"
        assert temp_state(db) == fresh and db.verify() == [] and len(db) == 5 * bulk.CHUNK


@pytest.mark.parametrize("failing", ["source", "list"])
def test_a_failure_mid_load_leaves_the_store_and_the_connection_as_they_were(tmp_path, failing):
    with kvstore.open(str(tmp_path / "f.db")) as db:
        fresh = temp_state(db)
        db.update((i, "old") for i in range(2 * bulk.CHUNK))
        before, state = dict(db.items()), temp_state(db)
        assert state == fresh, "a bulk update that succeeds restores the connection too"

        def pairs():
            yield from ((i, "new") for i in range(bulk.RUN + 2 * bulk.CHUNK))
            raise RuntimeError("the source failed")

        source = pairs() if failing == "source" else [*((i, "new") for i in range(3 * bulk.CHUNK)), (1, None)]
        with pytest.raises((RuntimeError, TypeError)):
            db.update(source)
        assert dict(db.items()) == before and db.verify() == [] and db.count("old") == 2 * bulk.CHUNK
        assert temp_state(db) == state


def test_a_bulk_update_inside_a_transaction_commits_or_rolls_back_with_it(tmp_path):
    with kvstore.open(str(tmp_path / "t.db")) as db:
        db["a"] = "x"
        with pytest.raises(KeyError):
            with db.transaction():
                db.update([(i, "v") for i in range(3 * bulk.CHUNK)])
                assert db.count("v") == 3 * bulk.CHUNK
                raise KeyError("abandon")
        assert dict(db.items()) == {"a": "x"} and db.verify() == []
        with db.transaction():
            db["b"] = "y"
            db.update([(i, "v") for i in range(3 * bulk.CHUNK)])
        assert db.count("v") == 3 * bulk.CHUNK and db["b"] == "y" and db.verify() == []


@pytest.mark.parametrize("same", [False, True])
def test_two_threads_bulk_updating(tmp_path, same):
    import threading

    paths = [str(tmp_path / "one.db")] * 2 if same else [str(tmp_path / "one.db"), str(tmp_path / "two.db")]
    stores = [kvstore.open(p) for p in dict.fromkeys(paths)]
    db_of = [stores[0], stores[0]] if same else stores
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for r in range(2):
                db_of[t].update([((t, r, i)[2] * 2 + t, f"t{t}") for i in range(3 * bulk.CHUNK)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert errors == []
        for db in stores:
            assert db.verify() == []
        if same:
            assert stores[0].count("t0") == stores[0].count("t1") == 3 * bulk.CHUNK
        else:
            assert stores[0].count("t0") == stores[1].count("t1") == 3 * bulk.CHUNK
    finally:
        for db in stores:
            db.close()


def test_fork_after_a_bulk_update(tmp_path):
    import os

    path = str(tmp_path / "fork.db")
    with kvstore.open(path) as db:
        db.update([(i, "v") for i in range(3 * bulk.CHUNK)])
        pid = os.fork()
        if pid == 0:  # the child: its own bulk update and a read, then out without cleanup
            code = 1
            try:
                with kvstore.open(path) as child:
                    child.update([(-i - 1, "child") for i in range(3 * bulk.CHUNK)])
                    code = 0 if child.count("v") == 3 * bulk.CHUNK and child.verify() == [] else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert db.count("child") == 3 * bulk.CHUNK and db.count("v") == 3 * bulk.CHUNK and db.verify() == []


def test_a_bulk_update_on_a_connection_whose_temp_database_is_open(tmp_path):
    """SQLite refuses PRAGMA temp_store inside a transaction once the temp database is open:
    update() still works (its sorts then stay in memory) and restores everything else."""
    with kvstore.open(str(tmp_path / "temp.db")) as db:
        db._row("SELECT count(*) FROM sqlite_temp_master", ())
        state = temp_state(db)
        db.update((i, "v") for i in range(3 * bulk.CHUNK))
        assert db.count("v") == 3 * bulk.CHUNK and db.verify() == [] and temp_state(db) == state


@pytest.mark.parametrize("small", [True, False])
def test_the_sorts_keep_the_bulk_cache_only_for_a_small_store(tmp_path, monkeypatch, small):
    monkeypatch.setattr(bulk, "SORT_SHARE", 0 if small else 2**40)
    with kvstore.open(str(tmp_path / "sort.db"), bulk_cache=64 * 2**20) as db:
        ran = statements(db, lambda: db.update([(i, "v") for i in range(3 * bulk.CHUNK)]))
        build = next(i for i, s in enumerate(ran) if s.startswith("CREATE INDEX"))
        caches = [s for s in ran[:build] if s.startswith("PRAGMA cache_size")]
        assert caches[-1] == ("PRAGMA cache_size = -65536" if small else f"PRAGMA cache_size = -{bulk.SORT_CACHE // 1024}")
        threads = [s for s in ran[:build] if s.startswith("PRAGMA threads =")]
        assert threads == [f"PRAGMA threads = {bulk.SORT_THREADS}"], "the sorts may use helper threads"
        assert db._row("PRAGMA cache_size", ())[0] == -(CACHE // 1024) and db.verify() == []
        assert db._row("PRAGMA threads", ())[0] == 0, "and only while update() runs"


def test_a_sort_that_spills_to_several_runs_with_helper_threads_builds_a_right_index(tmp_path, monkeypatch):
    """The smallest runs SQLite makes (~1 MB): the value index of 150k pairs is sorted in several
    runs by SORT_THREADS threads and merged; the index and counts must be exact."""
    monkeypatch.setattr(bulk, "SORT_SHARE", 2**40)
    monkeypatch.setattr(bulk, "SORT_CACHE", 64 * 1024)
    pairs = [((i * 7919) % 150_001, f"value {i % 997}" * (1 + i % 3)) for i in range(150_000)]
    with kvstore.open(str(tmp_path / "spill.db")) as db:
        db.update(pairs)
        assert db._row("PRAGMA integrity_check", ())[0] == "ok" and db.verify() == []
        expected = Counter(dict(pairs).values())
        assert db.count_many(expected) == dict(expected)
        assert all(db.count(v, strategy="group_by") == n for v, n in list(expected.items())[:50])
