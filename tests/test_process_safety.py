"""fork(), threads and close(): no acknowledged write is ever lost, nothing hangs or crashes.

Each scenario here lost data, corrupted the file, hung or crashed the process before
kvstore.sqlite.pool existed (see its docstring for the mechanism). They use real ``os.fork()``, real
multiprocessing (fork and spawn), real threads and real processes, and repeat the racy ones
(rounds scale with KVSTORE_TEST_SCALE). After each: every acknowledged write is present,
``PRAGMA integrity_check`` is ok and ``verify()`` is empty.
"""

from __future__ import annotations

import json
import multiprocessing
import faulthandler
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

import kvstore
from tests import _fork_workers
from tests._rel_workers import integrity
from tests.helpers import scaled


def fork_child(body: Callable[[], None]) -> int:
    """Fork; the child runs ``body`` and exits 0, or 1 with a traceback on stderr."""
    pid = os.fork()
    if pid == 0:
        code = 1
        # A child that hangs says where before wait_child() kills it (at 30 s or later).
        faulthandler.dump_traceback_later(25, exit=False)
        try:
            body()
            code = 0
        except BaseException:  # noqa: BLE001 - the exit status reports it
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait_child(pid: int, timeout: float = 60.0) -> int:
    """The child's exit code; a child still running after ``timeout`` is killed and fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} hung (killed after {timeout}s)")


def read_acks(fd: int) -> list[str]:
    """Everything a child wrote to the pipe ``fd``, one acknowledged key per line."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode().split()


def assert_sound(path: str, present: dict[object, object]) -> None:
    """The file is sound, counts are exact, and every acknowledged key holds its value."""
    assert integrity(path) == ["ok"]
    with kvstore.open(path) as db:
        assert db.verify() == []
        missing = {key: value for key, value in present.items() if db.get(key) != value}
        assert not missing, f"{len(missing)} of {len(present)} acknowledged writes lost"


# -- fork ----------------------------------------------------------------------------------


@pytest.mark.parametrize("parent", ["closes", "keeps writing"])
def test_child_writes_survive_what_the_parent_does(tmp_path, parent):
    """Open and use in the parent, fork; the child writes through the inherited store."""
    for rnd in range(scaled(6, minimum=3)):
        path = str(tmp_path / f"r{rnd}.db")
        db = kvstore.open(path)
        db["parent"] = "p"
        assert db.count("p") == 1
        r, w = os.pipe()

        def child() -> None:
            os.close(r)
            for i in range(250):
                db[f"c{i}"] = i
                os.write(w, f"c{i}\n".encode())

        pid = fork_child(child)
        os.close(w)
        os.read(r, 3)  # the child has written once
        written = {}
        if parent == "closes":
            db.close()
        else:
            for i in range(250):
                db[f"p{i}"] = i
                written[f"p{i}"] = i
            db.close()
        acked = ["c0"] + read_acks(r)
        assert wait_child(pid) == 0
        acked_keys = {key for key in acked if key.startswith("c")}
        assert len(acked_keys) == 250
        assert_sound(path, {**{k: int(k[1:]) for k in acked_keys}, **written, "parent": "p"})


def test_child_bulk_updates_beside_another_writer_while_parent_closes(tmp_path):
    """The case that corrupted B-trees: big update() batches in the child, a third process writing."""
    path = str(tmp_path / "bulk.db")
    db = kvstore.open(path)
    db.update((i, "seed") for i in range(1000))
    batches, size = scaled(12, minimum=6), 2500
    r, w = os.pipe()

    def child() -> None:
        os.close(r)
        for b in range(batches):
            db.update((f"b{b}-{j}", b) for j in range(size))
            os.write(w, f"{b}\n".encode())

    pid = fork_child(child)
    os.close(w)
    os.read(r, 2)
    db.close()
    # Started after the parent's close: the writer that lost 90% of the child's batches.
    stop_file = tmp_path / "stop"
    other = subprocess.Popen([sys.executable, "-c", f"""
import os, kvstore
db = kvstore.open({path!r}, timeout=30)
i = 0
while not os.path.exists({str(stop_file)!r}):
    db[f"o{{i % 500}}"] = i
    i += 1
print(i)
"""], stdout=subprocess.PIPE, text=True)
    acked = ["0"] + read_acks(r)
    code = wait_child(pid, 120)
    stop_file.touch()
    out, _ = other.communicate(timeout=60)
    assert code == 0 and other.returncode == 0 and int(out) > 0
    expected = {f"b{b}-{j}": b for b in map(int, set(acked)) for j in range(size)}
    assert len(set(acked)) == batches
    assert_sound(path, expected)


def test_background_child_survives_the_parent_exiting(tmp_path):
    """A daemon-style fork: the parent exits (finalisers and all) while its child writes."""
    for rnd in range(scaled(4, minimum=3)):
        path, log = str(tmp_path / f"d{rnd}.db"), tmp_path / f"d{rnd}.log"
        subprocess.run([sys.executable, _fork_workers.SCRIPT, "exit-after-fork", path, str(log), "100"],
                       check=True, timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = log.read_text().split("\n") if log.exists() else []
            if "done" in lines or any(line.startswith("error") for line in lines):
                break
            time.sleep(0.02)
        assert "done" in lines, lines[-3:]
        acked = [line for line in lines if line.startswith("bg")]
        assert len(acked) == 100
        assert_sound(path, {**{key: int(key[2:]) for key in acked}, "parent": "p"})


def test_fork_inside_a_transaction_is_refused_in_the_child_and_never_commits(tmp_path, path):
    """The child may not use the file; leaving the block in the child must not commit the parent's work."""
    other = str(tmp_path / "other.db")
    kvstore.open(other).close()
    db = kvstore.open(path)
    db["before"] = "b"
    r, w = os.pipe()
    pid = 0

    class Rollback(Exception):
        pass

    try:
        with db.transaction():
            db["rolled back"] = "x"
            pid = os.fork()
            if pid == 0:
                os.close(r)
                report = []
                for name, call in [
                    ("set", lambda: db.set("child", "c")),
                    ("get", lambda: db.get("before")),
                    ("reopen", lambda: kvstore.open(path)),
                ]:
                    try:
                        call()
                        report.append(f"{name}: worked")
                    except kvstore.Error as exc:
                        report.append(f"{name}: refused" if "fork" in str(exc) else f"{name}: {exc}")
                with kvstore.open(other) as elsewhere:  # another file is fine
                    elsewhere["child"] = "c"
                    report.append(f"other file: {elsewhere['child']}")
                os.write(w, json.dumps(report).encode() + b"\n")
            else:
                os.close(w)
                assert wait_child(pid) == 0
                raise Rollback  # the parent's block fails: nothing in it may become durable
    except kvstore.Error as exc:  # the child leaving the block normally
        if pid == 0:
            os.write(w, json.dumps([f"exit: {'refused' if 'fork' in str(exc) else exc}"]).encode())
            os._exit(0)
        raise
    except Rollback:
        pass
    finally:
        if pid == 0:
            os.write(w, b'["exit: committed"]')
            os._exit(0)
    report = [item for line in read_acks_lines(r) for item in json.loads(line)]
    assert report == ["set: refused", "get: refused", "reopen: refused", "other file: c", "exit: refused"]
    db["after"] = "a"  # the parent carries on
    db.close()
    assert_sound(path, {"before": "b", "after": "a"})
    with kvstore.open(path) as check:
        assert "rolled back" not in check and "child" not in check


def test_fork_while_another_threads_update_reads_its_source(path):
    """update() is a transaction: a fork while its source of pairs runs between two chunks
    refuses the file in the child, saying so in the words of update(); the parent's update
    completes."""
    db = kvstore.open(path)
    between, go_on = threading.Event(), threading.Event()

    def source():
        for i in range(30_000):
            if i == 15_000:
                between.set()
                go_on.wait(30)
            yield i, "v"

    thread = threading.Thread(target=lambda: db.update(source()))
    thread.start()
    assert between.wait(30)

    def child() -> None:
        with pytest.raises(kvstore.Error, match=r"forked while a transaction.*update\(\)"):
            db["child"] = "c"
        with pytest.raises(kvstore.Error, match="forked while a transaction"):
            kvstore.open(path)

    pid = fork_child(child)
    assert wait_child(pid) == 0
    go_on.set()
    thread.join(30)
    assert db.count("v") == 30_000
    db.close()
    assert_sound(path, {i: "v" for i in range(30_000)})


def read_acks_lines(fd: int) -> list[str]:
    return [line for line in b"".join(iter(lambda: os.read(fd, 65536), b"")).decode().splitlines() if line]


def test_fork_while_another_thread_holds_a_transaction(path):
    db = kvstore.open(path)
    inside, leave = threading.Event(), threading.Event()

    def holder() -> None:
        with db.transaction():
            db["held"] = "h"
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    assert inside.wait(30)

    def child() -> None:
        with pytest.raises(kvstore.Error, match="forked while a transaction"):
            db["child"] = "c"

    pid = fork_child(child)
    assert wait_child(pid) == 0
    leave.set()
    thread.join(30)
    db["after"] = "a"
    db.close()
    assert_sound(path, {"held": "h", "after": "a"})


def test_fork_while_threads_are_inside_sqlite_never_hangs(path):
    """A child forked while other threads are reading must not inherit a held SQLite mutex."""
    db = kvstore.open(path)
    db.update((i, f"v{i % 6}") for i in range(5000))
    stop = threading.Event()
    errors: list[str] = []

    def reader(kind: int) -> None:
        try:
            while not stop.is_set():
                if kind == 0:
                    db.get(17)
                elif kind == 1:
                    db.count("v3", strategy="group_by")
                else:
                    sum(1 for _ in db.keys())
        except BaseException:  # noqa: BLE001
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    children = scaled(40, minimum=30)
    try:
        for i in range(children):
            pid = fork_child(lambda i=i: db.set(f"child{i}", i))
            assert wait_child(pid, timeout=20) == 0, f"child {i} failed"
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert errors == []
    db.close()
    assert_sound(path, {f"child{i}": i for i in range(children)})


@pytest.mark.parametrize("parent", ["keeps writing", "closes"])
def test_multiprocessing_fork_pool_uses_the_inherited_store(tmp_path, parent):
    """A pre-fork pattern: open in the parent, then a fork-method Pool whose workers write."""
    for rnd in range(scaled(3, minimum=2)):
        path = str(tmp_path / f"p{rnd}.db")
        db = kvstore.open(path)
        db["parent"] = "p"
        _fork_workers.INHERITED = db
        written = {}
        try:
            with multiprocessing.get_context("fork").Pool(4) as pool:
                result = pool.map_async(_fork_workers.write_inherited, [(w, 300) for w in range(8)])
                if parent == "closes":
                    time.sleep(0.05)
                    db.close()
                else:
                    for i in range(200):
                        db[f"parent{i}"] = i
                        written[f"parent{i}"] = i
                acked = [key for keys in result.get(timeout=120) for key in keys]
        finally:
            _fork_workers.INHERITED = None
        assert len(acked) == 8 * 300
        db.close()
        assert_sound(path, {**{key: int(key[1:].split("-")[0]) for key in acked}, **written})


def test_multiprocessing_spawn_pool_gets_a_pickled_store(path):
    db = kvstore.open(path, timeout=30)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        acked = [key for keys in pool.map(_fork_workers.write_with, [(db, w, 100) for w in range(6)])
                 for key in keys]
    assert len(acked) == 600
    db.close()
    assert_sound(path, {key: int(key[1:].split("-")[0]) for key in acked})


def test_a_closed_store_cannot_be_pickled(path):
    import pickle

    db = kvstore.open(path, durable=True)
    clone = pickle.loads(pickle.dumps(db))
    assert clone.path == db.path and clone.options == db.options
    clone.close()
    db.close()
    with pytest.raises(kvstore.Error, match="closed"):
        pickle.dumps(db)


# -- threads and close() -------------------------------------------------------------------


def test_close_beside_busy_threads_never_crashes(tmp_path):
    """close() while six threads are inside calls: the process survives, every later call says closed."""
    rounds = scaled(15, minimum=15)
    result = subprocess.run(
        [sys.executable, _fork_workers.SCRIPT, "close-race", str(tmp_path / "c.db"), str(rounds), "7"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"exit {result.returncode} (negative: killed by a signal)\n{result.stderr[-3000:]}"
    summary = json.loads(result.stdout)
    assert summary["unexpected"] == []
    assert summary["closed_errors"] > 0  # the workers really were cut off by close()


def test_close_rolls_back_a_transaction_open_in_another_thread(path):
    db = kvstore.open(path)
    db["before"] = 1
    inside, closed = threading.Event(), threading.Event()
    seen: list[str] = []

    def holder() -> None:
        try:
            with db.transaction():
                db["half"] = 1
                inside.set()
                closed.wait(30)
                db["other half"] = 2
        except kvstore.Error as exc:
            seen.append(str(exc))

    thread = threading.Thread(target=holder)
    thread.start()
    assert inside.wait(30)
    db.close()
    closed.set()
    thread.join(30)
    assert len(seen) == 1 and "closed" in seen[0]
    with kvstore.open(path) as check:
        assert dict(check.items()) == {"before": 1}


def test_leaving_a_block_after_close_raises_and_keeps_nothing(path):
    db = kvstore.open(path)
    with pytest.raises(kvstore.Error, match="closed.*nothing written"):
        with db.transaction():
            db["x"] = 1
            db.close()
    with kvstore.open(path) as check:
        assert "x" not in check


def test_every_call_after_close_raises_from_any_thread(path):
    db = kvstore.open(path)
    db[1] = "a"
    db.close()
    db.close()  # idempotent
    outcomes: list[str] = []

    def probe() -> None:
        for call in (lambda: db[1], lambda: db.set(2, "b"), lambda: db.count("a"), lambda: list(db),
                     lambda: db.verify(), lambda: db.update({3: "c"})):
            try:
                call()
                outcomes.append("worked")
            except kvstore.Error as exc:
                outcomes.append("closed" if "closed" in str(exc) else str(exc))

    probe()
    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(30)
    assert outcomes == ["closed"] * 12


def test_setdefault_is_atomic_across_threads(path):
    db = kvstore.open(path)
    keys = 300
    handed: list[list[tuple[int, str]]] = []
    barrier = threading.Barrier(4)

    def racer(worker: int) -> None:
        barrier.wait()
        handed.append([(key, db.setdefault(key, f"t{worker}")) for key in range(keys)])

    threads = [threading.Thread(target=racer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(handed) == 4
    disagree = [(key, got) for run in handed for key, got in run if db[key] != got]
    assert disagree == []
    assert db.count("t0") + db.count("t1") + db.count("t2") + db.count("t3") == keys
    db.close()


def test_setdefault_is_atomic_across_processes(path):
    db = kvstore.open(path, timeout=30)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        runs = pool.map(_fork_workers.setdefault_many, [(db, w, 300) for w in range(3)])
    disagree = [(key, got) for run in runs for key, got in run if db[key] != got]
    assert disagree == []
    assert db.setdefault(10_000, "new") == "new" and db.setdefault(10_000, "other") == "new"
    with pytest.raises(TypeError):
        db.setdefault(10_001)  # None cannot be stored: refused before anything is written
    assert 10_001 not in db
    db.close()


# -- a relative path ----------------------------------------------------------------------


def test_relative_path_is_resolved_once(tmp_path, monkeypatch):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(home)
    db = kvstore.open("rel.db")
    db["main"] = 1
    monkeypatch.chdir(elsewhere)
    thread = threading.Thread(target=db.set, args=("thread", 2))
    thread.start()
    thread.join(30)
    pid = fork_child(lambda: db.set("child", 3))
    assert wait_child(pid) == 0
    db.close()
    assert os.listdir(elsewhere) == []
    assert_sound(str(home / "rel.db"), {"main": 1, "thread": 2, "child": 3})
    assert Path(db.path).is_absolute()


# -- found by review: fork beside close(), fork while a thread waits on our own lock ----------


def test_fork_while_close_is_waiting_for_a_call_in_progress(path):
    """close() beside a call that waits inside SQLite: a fork meanwhile still waits or refuses."""
    from tests._rel_workers import holding, release

    db = kvstore.open(path, timeout=10)
    db["main"] = 0  # the main thread's connection stays open, idle
    with holding(path) as holder:  # another process holds the write lock for a while
        def wait_for_the_lock() -> None:
            try:
                db.set("u", 1)
            except kvstore.Error:  # busy, or closed meanwhile: either is fine here
                pass

        waiting = threading.Thread(target=wait_for_the_lock)
        waiting.start()
        time.sleep(0.3)  # that thread now waits inside SQLite
        closer = threading.Thread(target=db.close)
        closer.start()
        time.sleep(0.2)  # close() is waiting for that thread

        def child() -> None:
            with kvstore.open(path, timeout=10) as mine:
                for i in range(200):
                    mine[f"c{i}"] = i

        pid = fork_child(child)
        threading.Timer(0.5, lambda: release(holder, "rollback")).start()
        code = wait_child(pid)
        waiting.join(30)
        closer.join(30)
    assert code in (0, 1)  # the child either wrote or was refused, both before anything was lost
    expected = {f"c{i}": i for i in range(200)} if code == 0 else {}
    assert_sound(path, {**expected, "main": 0})


def test_fork_inside_a_transaction_beside_a_thread_waiting_for_it(path):
    """The waiting thread holds its connection inside SQLite, waiting for *our* lock: fork must not
    wait for it forever, and the thread must still succeed once the transaction commits."""
    db = kvstore.open(path, timeout=30)
    outcome: list[str] = []
    with db.transaction():
        db["in block"] = 1
        thread = threading.Thread(target=lambda: outcome.append(str(db.set("t", 2))))
        thread.start()
        time.sleep(0.3)
        started = time.monotonic()
        pid = fork_child(lambda: pytest.raises(kvstore.Error, db.set, "child", 3))
        took = time.monotonic() - started
        assert wait_child(pid) == 0
    thread.join(30)
    assert took < 5 and outcome == ["None"]
    db.close()
    assert_sound(path, {"in block": 1, "t": 2})


def test_a_memory_store_forked_mid_transaction_is_refused_at_once():
    db = kvstore.open(":memory:", timeout=10)
    db["a"] = 1
    with db.transaction():
        db["b"] = 2

        def child() -> None:
            started = time.monotonic()
            with pytest.raises(kvstore.Error, match="forked"):
                db.get("a")
            assert time.monotonic() - started < 1  # refused, not a busy wait

        pid = fork_child(child)
        assert wait_child(pid) == 0
    assert db["b"] == 2
    db.close()
