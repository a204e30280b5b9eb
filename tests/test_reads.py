"""get_many() and count_many(): what they answer, that one call reads one state of the store
while another thread writes, and the memory-map option (Options.mmap_size)."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

import pytest

import kvstore
from kvstore.sqlite import reads
from kvstore.sqlite.connection import DEFAULT_MMAP_SIZE, Options
from tests.helpers import scaled


@pytest.fixture
def db(any_db: kvstore.StoreAPI) -> kvstore.StoreAPI:
    """This module's tests use the public API only: each runs on SQLite and on PostgreSQL."""
    return any_db


@pytest.fixture
def foods(db: kvstore.Store) -> kvstore.Store:
    db.update({1: "apple", 2: "apple", "b": "pear", b"\x00": 7, 3: 2.5})
    return db


def test_get_many_answers_the_stored_keys_in_the_order_asked(foods):
    assert foods.get_many([3, "missing", 1, b"\x00", "b"]) == {3: 2.5, 1: "apple", b"\x00": 7, "b": "pear"}
    assert list(foods.get_many(["b", 1, 3])) == ["b", 1, 3]
    assert foods.get_many(iter([2, 2, "b", 2])) == {2: "apple", "b": "pear"}  # any iterable; duplicates once
    assert foods.get_many([]) == {}
    assert foods.get_many(["1", b"1", -1]) == {}  # types are kept apart, as by get()


def test_count_many_answers_every_value_asked(foods):
    assert foods.count_many(["apple", "absent", 7, 2.5]) == {"apple": 2, "absent": 0, 7: 1, 2.5: 1}
    assert foods.count_many([7.0, 7]) == {7.0: 1}  # one value, as in count() and in a dict
    assert foods.count_many(["7", b"7"]) == {"7": 0, b"7": 0}
    assert foods.count_many(iter([])) == {}


@pytest.mark.parametrize("n", [1, 2, 3, reads.BATCH - 1, reads.BATCH, reads.BATCH + 1, 3 * reads.BATCH + 5])
def test_every_batch_size_agrees_with_get_and_count(db, n):
    db.update((i, f"v{i % 7}") for i in range(0, 2 * n, 2))  # even keys only
    asked = list(range(2 * n))[::-1]
    assert db.get_many(asked) == {k: db.get(k) for k in asked if k in db}
    values = [f"v{i}" for i in range(9)] * (n // 9 + 1)
    assert db.count_many(values) == {v: db.count(v) for v in values}


@pytest.mark.parametrize(
    "bad, error",
    [(None, TypeError), (1.5, TypeError), (True, TypeError), (2**63, OverflowError), ("\ud800", ValueError)],
)
def test_a_bad_key_or_value_raises_before_anything_is_read(foods, bad, error):
    calls = []

    def spy(*args):
        calls.append(args)
        return []

    foods._batched = spy
    with pytest.raises(error):
        foods.get_many([1, bad])
    with pytest.raises((TypeError, ValueError, OverflowError)):
        foods.count_many(["apple", bad if bad != 1.5 else float("nan")])
    assert calls == []


def test_inside_a_transaction_they_see_its_writes(foods):
    with foods.transaction():
        foods[9] = "apple"
        assert foods.get_many([9, 1]) == {9: "apple", 1: "apple"}
        assert foods.count_many(["apple"]) == {"apple": 3}
    assert foods.count("apple") == 3


def test_a_closed_store_refuses_them(foods):
    foods.close()
    with pytest.raises(kvstore.Error, match="closed"):
        foods.get_many([1])
    with pytest.raises(kvstore.Error, match="closed"):
        foods.count_many(["apple"])


def test_one_call_reads_one_state_while_another_thread_writes(path):
    """A writer thread moves every key from one generation's value to the next in single
    transactions; each get_many() must see one generation for all keys, and count_many() the
    whole store under one value, however many statements the call takes."""
    n = 3 * reads.BATCH + 10  # several statements per call
    with kvstore.open(path) as db:
        db.update((k, "g0") for k in range(n))
        stop = threading.Event()
        generations = [0]

        def writer() -> None:
            with kvstore.open(path) as own:
                while not stop.is_set():
                    g = generations[0] + 1
                    own.update((k, f"g{g}") for k in range(n))
                    generations[0] = g

        thread = threading.Thread(target=writer)
        thread.start()
        seen = set()
        try:
            deadline = time.monotonic() + scaled(3)
            while time.monotonic() < deadline:
                values = set(db.get_many(range(n)).values())
                assert len(values) == 1, sorted(values)[:5]
                seen |= values
                g = generations[0]
                asked = [f"g{i}" for i in range(max(0, g - 3), g + 3)]
                counts = db.count_many(asked)
                assert sorted(counts.values())[-1] == n and sum(counts.values()) == n, counts
        finally:
            stop.set()
            thread.join()
        assert len(seen) > 2  # the writer did commit meanwhile


# -- the memory map ------------------------------------------------------------------------------


def mmap_size_of(db: kvstore.Store) -> int:
    with db._using() as conn:
        return int(conn.execute("PRAGMA mmap_size").fetchone()[0])


def test_mmap_size_is_applied_to_every_connection(path):
    with kvstore.open(path) as db:
        assert mmap_size_of(db) == min(DEFAULT_MMAP_SIZE, 0x7FFF0000)
        assert DEFAULT_MMAP_SIZE == (1 << 30 if sys_is_64_bit() else 0)
    with kvstore.open(path, mmap_size=0) as db:
        db[1] = "a"
        assert mmap_size_of(db) == 0
        found = []
        threading.Thread(target=lambda: found.append(mmap_size_of(db))).start()
        while not found:
            time.sleep(0.01)
        assert found == [0]
        assert db.get_many([1]) == {1: "a"}


def sys_is_64_bit() -> bool:
    import sys

    return sys.maxsize > 2**32


@pytest.mark.parametrize("bad", [-1, 1.5, "1G", True, None])
def test_mmap_size_must_be_whole_bytes(path, bad):
    with pytest.raises(ValueError, match="mmap_size"):
        Options(mmap_size=bad)
    with pytest.raises(ValueError, match="mmap_size"):
        kvstore.open(path, mmap_size=bad)


def test_reads_through_the_map_see_other_connections_writes(path):
    """SQLite remaps as the file grows: a reader with a map sees a writer's new pages."""
    with kvstore.open(path) as reader:
        assert reader.get(1) is None
        other = sqlite3.connect(path)
        other.executemany("INSERT INTO items VALUES (?, ?)", ((i, "x" * 200) for i in range(20_000)))
        other.commit()
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        other.close()
        assert reader.get(19_999) == "x" * 200
        assert len(reader.get_many(range(20_000))) == 20_000


@pytest.mark.parametrize("any_db", ["sqlite"], indirect=True)  # reaches into SQLite itself
def test_get_many_answers_with_the_keys_as_asked(db):
    """A float key another program wrote equals the int asked for, as in get() and db[k]."""
    with db._using() as conn:
        conn.execute("INSERT INTO items VALUES (1.0, 'apple')")
    assert db.get(1) == "apple"
    got = db.get_many([1, 2])
    assert got == {1: "apple"} and type(next(iter(got))) is int


def test_a_read_leaves_no_read_transaction_open_even_where_a_key_repeats(path):
    """The reused cursor must finish its statement: an open one would pin a snapshot (stale
    reads on this connection, and no checkpoint can complete)."""
    with kvstore.open(path) as db:
        with db._using() as conn:  # another program recreated items without a primary key
            conn.execute("DROP TABLE items")
            conn.execute("CREATE TABLE items (key, value)")
            conn.execute("INSERT INTO items VALUES (1, 'a'), (1, 'b')")
        assert db.get(1) == "a"
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("INSERT INTO items VALUES (2, 'c')")
            assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not busy
            assert db.get(2) == "c"
        finally:
            other.close()


@pytest.mark.parametrize("any_db", ["sqlite"], indirect=True)  # reaches into the connection pool
def test_single_reads_reconnect_after_fork_closed_their_connection_and_refuse_a_closed_store(db):
    """get() and count(), the hot single reads with their own cursor handling: a connection that
    fork() closed is reopened, a forked child makes its own slot, and a closed store refuses them."""
    import os

    from kvstore.sqlite.pool import DISCONNECTED

    db.update({1: "apple", 2: "apple"})
    pool = db._pool
    for read, expected in ((lambda: db.get(1), "apple"), (lambda: db.count("apple"), 2)):
        slot = pool.current()
        slot.held_at_fork = True
        pool._close_idle_connections()  # what the parent does at every fork...
        slot.held_at_fork = False
        pool._after_fork_in_parent()  # ...and after it
        assert slot.conn is DISCONNECTED
        assert read() == expected
        assert slot.conn is not DISCONNECTED
    child = os.fork()
    if child == 0:  # the child: a fresh slot of its own, on first use
        code = 1
        try:
            got = (db.get(1), db.count("apple"), pool.current() is not slot)
            code = 0 if got == ("apple", 2, True) else 2
        except BaseException as exc:
            os.write(2, repr(exc).encode())
        finally:
            os._exit(code)
    assert os.waitpid(child, 0)[1] == 0
    db.close()
    for read in (lambda: db.get(1), lambda: db.count("apple")):
        with pytest.raises(kvstore.Error, match="closed"):
            read()


@pytest.mark.parametrize("any_db", ["sqlite"], indirect=True)  # reaches into the connection pool
def test_single_reads_refuse_while_close_is_under_way(db):
    """close() marks the pool closed before it reaches every slot: a get() or count() on a slot
    it has not reached yet is refused then, not run on a connection about to be closed."""
    db.update({1: "apple"})
    assert db.get(1) == "apple" and db.count("apple") == 1  # this thread's slot is connected
    db._pool.closed = "closed by close() (under way)"
    try:
        for read in (lambda: db.get(1), lambda: db.count("apple")):
            with pytest.raises(kvstore.Error, match="under way"):
                read()
    finally:
        db._pool.closed = None


def _with_text_not_utf8(db: kvstore.Store, path: str) -> sqlite3.Connection:
    """Give ``db`` the pairs 1: 'a' and 2: text that is not UTF-8 (as another program could
    store it); return another program's connection to the file."""
    db[1] = "a"
    with db._using() as conn:
        conn.execute("INSERT INTO items VALUES (2, CAST(x'ff' AS TEXT))")
    return sqlite3.connect(path, isolation_level=None)


def test_a_row_that_fails_to_convert_leaves_no_read_transaction_open(path):
    """Text another program stored that is not UTF-8 fails in fetchall(), after the kept cursor
    stepped onto the row: its statement (and so a read transaction) must not stay open, or the
    thread's later reads are stale, its writes wait out the timeout and fail, and no checkpoint
    can complete until the next get() or count() on that thread."""
    with kvstore.open(path, timeout=0.2) as db:
        other = _with_text_not_utf8(db, path)
        try:
            for read in (lambda: db.get(2), lambda: db.get(2, "default")):
                with pytest.raises(kvstore.Error, match="decode"):
                    read()
                other.execute("INSERT OR REPLACE INTO items VALUES (3, 'c')")
                assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not busy
                assert db.get_many([3]) == {3: "c"}  # not a stale snapshot
                db[4] = "d"  # no BusyError (a stale read transaction cannot be upgraded)
                other.execute("DELETE FROM items WHERE key = 3")
        finally:
            other.close()


def test_a_failed_read_leaves_no_read_transaction_open_while_its_error_is_held(path):
    """The cursor of get_many()/count_many() (and of the paged reads), and get()'s kept one, are
    locals of the failed call's frames, which the exception's traceback keeps alive: the
    statement must be finished when the call fails, not when the caller lets go of the
    exception (a retry loop, a test, a log record may hold it long after)."""
    with kvstore.open(path, timeout=0.2) as db:
        other = _with_text_not_utf8(db, path)
        try:
            for read in (lambda: db.get_many([1, 2]), lambda: db.counts(), lambda: list(db.items()),
                         lambda: db.get(2)):
                with pytest.raises(kvstore.Error, match="decode") as held:
                    read()
                other.execute("INSERT OR REPLACE INTO items VALUES (3, 'c')")
                assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0, held.value
                db[4] = "d"
        finally:
            other.close()


def test_an_interrupt_between_the_step_and_the_fetch_leaves_no_read_transaction_open(path):
    """KeyboardInterrupt (or any exception) can arrive after execute() stepped onto the row and
    before fetchall() ran: the kept cursor's statement must not stay open either."""

    class Interrupted(sqlite3.Cursor):
        def fetchall(self):
            raise KeyboardInterrupt

    with kvstore.open(path, timeout=0.2) as db:
        db[1] = "a"
        other = sqlite3.connect(path, isolation_level=None)
        try:
            for read in (lambda: db.get(1), lambda: db.count("a")):
                slot = db._pool.current()
                slot.cursor = Interrupted(slot.conn)
                with pytest.raises(KeyboardInterrupt):
                    read()
                other.execute("INSERT OR REPLACE INTO items VALUES (3, 'c')")
                assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not busy
                db[4] = "d"
                assert type(slot.cursor) is sqlite3.Cursor and db.get(1) == "a" and db.count("a") == 1
        finally:
            other.close()


def test_a_read_run_inside_another_on_the_same_thread_leaves_it_its_row(path):
    """A signal handler (or a finaliser) runs between two bytecodes of its thread, so it may
    call get() or count() after another get()/count() stepped its statement onto the row and
    before that one fetched it. The slot's lock is reentrant: the inner call must not run its
    statement on the interrupted call's kept cursor, which resets that statement, and the
    interrupted call then answers None or 0 for a key or a value that is there."""
    pending = []

    class Interrupting(sqlite3.Cursor):
        def execute(self, *args):
            super().execute(*args)
            while pending:
                pending.pop()()  # what a signal handler may run here
            return self

    with kvstore.open(path) as db:
        db.update({1: "a", 2: "b"})
        slot = db._pool.current()
        slot.cursor = Interrupting(slot.conn)
        inner = []
        for outer, expected in ((lambda: db.get(1), "a"), (lambda: db.count("a"), 1)):
            for handler in (lambda: inner.append(db.get(2)), lambda: inner.append(db.count("b"))):
                pending.append(handler)
                assert outer() == expected
        assert inner == ["b", 1, "b", 1]
        assert db.get(1) == "a" and db.count("a") == 1


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_a_signal_handler_reading_the_store_never_changes_the_answer_it_interrupted(path):
    """The same with real signals: a SIGALRM handler reads the store every 0.1 ms while the main
    thread reads it (before the fix, about a fifth of the handler's calls made the interrupted
    get() or count() answer None or 0)."""
    with kvstore.open(path) as db:
        db.update((i, f"v{i % 10}") for i in range(1000))
        calls = [0]

        def handler(signum, frame):
            calls[0] += 1
            db.count("v1") if calls[0] % 2 else db.get(999)

        previous = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
        wrong, n = [], 0
        try:
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline and len(wrong) < 10:
                k = n % 1000
                n += 1
                got = (db.get(k), db.count(f"v{k % 10}"))
                if got != (f"v{k % 10}", 100):
                    wrong.append((k, got))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert wrong == [] and calls[0] > 100
