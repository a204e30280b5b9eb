"""Side roads: hot journals, files a reader may not write, creation errors, in-memory stores,
URIs, empty files, timeouts, and creating a store where hard links do not exist.

Permission tests drop privileges to ``nobody`` with ``setpriv`` (the suite runs as root in
CI, and root may read and write anything); they are skipped, saying why, where that cannot
be done.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import kvstore
from tests._rel_workers import integrity
from tests.helpers import scaled
from tests.test_migrations import revision, revision_one_file

REPO = Path(__file__).resolve().parent.parent


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- 1. hot journals ------------------------------------------------------------------------

_KILLED_WRITER = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size = 5")  # spill dirty pages into the file before the commit
conn.execute("BEGIN IMMEDIATE")
conn.executemany("INSERT INTO items VALUES (?, ?)", ((f"doomed{i}", "x" * 200) for i in range(3000)))
os.kill(os.getpid(), signal.SIGKILL)
"""


def leave_hot_journal(path: str) -> None:
    """A writer in rollback-journal mode killed mid-transaction, after pages reached the file."""
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, path], timeout=60)
    assert os.path.getsize(path + "-journal") > 0


def test_a_kvstore_file_with_a_hot_journal_opens_and_upgrades(tmp_path):
    path = str(tmp_path / "old.db")
    revision_one_file(path, [(i, f"v{i % 3}") for i in range(500)])
    leave_hot_journal(path)
    with pytest.raises(kvstore.ReadOnlyError, match="interrupted"):
        kvstore.open(path, readonly=True)  # only a writer may roll it back: say so
    with kvstore.open(path) as db:  # SQLite rolls the journal back, then the upgrade runs
        assert len(db) == 500 and db.count("v1") == 167 and "doomed0" not in db
        assert db.verify() == []
    assert revision(path) == kvstore.sqlite.migrate.HEAD_REVISION
    assert not os.path.exists(path + "-journal") and integrity(path) == ["ok"]


def test_a_foreign_file_with_a_hot_journal_is_refused_untouched(tmp_path):
    path = str(tmp_path / "foreign.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (key, value)")  # looks like ours, but is not
    conn.commit()
    conn.close()
    leave_hot_journal(path)
    before = snapshot(tmp_path)
    for readonly in (False, True):
        with pytest.raises(kvstore.NotAKvstoreFileError, match="not a kvstore file"):
            kvstore.open(path, readonly=readonly)
    assert snapshot(tmp_path) == before  # journal included


def test_sigkill_during_an_upgrade_never_blocks_the_next_open(tmp_path):
    """The real thing: kill `kvstore.open()` while it upgrades a rollback-journal file."""
    rows = [(i, f"v{i % 7}") for i in range(scaled(60_000, minimum=30_000))]
    template = str(tmp_path / "template.db")
    revision_one_file(template, rows)
    journals = 0
    for rnd in range(scaled(8, minimum=6)):
        path = str(tmp_path / f"u{rnd}.db")
        shutil.copy(template, path)
        proc = subprocess.Popen([sys.executable, "-c", "import kvstore, sys; kvstore.open(sys.argv[1])", path])
        deadline = time.monotonic() + 30
        while not os.path.exists(path + "-journal") and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0002)  # the upgrade's transaction has begun writing once the journal exists
        time.sleep(0.01 * (rnd % 4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        journals += os.path.exists(path + "-journal") and os.path.getsize(path + "-journal") > 0
        with kvstore.open(path) as db:
            assert len(db) == len(rows) and db.verify() == []
        assert integrity(path) == ["ok"]
    print(f"\nkills that left a hot journal: {journals}")
    assert journals > 0  # the kills did land inside the upgrade


# -- 2. reading a file you may not write ---------------------------------------------------


def _as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture
def as_nobody(tmp_path):
    """Run commands as the unprivileged user ``nobody`` (skip where that cannot work)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("dropping privileges needs root and setpriv")
    # nobody must be able to reach the interpreter, the checkout and the test folder.
    for folder in [tmp_path, *tmp_path.parents]:
        if folder.stat().st_mode & 0o001 == 0:
            os.chmod(folder, folder.stat().st_mode | 0o001)
    probe = _as_nobody(sys.executable, "-c", "import kvstore, click", cwd=tmp_path)
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run this interpreter with kvstore: {probe.stderr.strip()[-200:]}")
    return lambda *args: _as_nobody(*args, cwd=tmp_path)


_READER = """
import json, sys, kvstore
out = {}
with kvstore.open(sys.argv[1]) as db:
    out["auto readonly"] = db.options.readonly
    out["get"] = db.get(1)
    out["count"] = db.count("a")
    out["items"] = len(list(db.items()))
    out["verify"] = db.verify()
    out["stats"] = db.stats()["items"]["rows"]
    try:
        db[2] = "b"
    except kvstore.ReadOnlyError:
        out["write"] = "ReadOnlyError"
with kvstore.open(sys.argv[1], readonly=True) as db:
    out["readonly get"] = db.get(1)
print(json.dumps(out))
"""


@pytest.mark.parametrize("writer", ["no writer", "a writer has it open"])
def test_a_reader_who_may_not_write_the_directory_reads_and_writes_nothing(tmp_path, as_nobody, writer):
    import json

    folder = tmp_path / "data"
    folder.mkdir()
    path = str(folder / "s.db")
    with kvstore.open(path) as db:
        db.update((i, "a") for i in range(1, 101))
    os.chmod(folder, 0o755)  # owned by root: nobody may read, not write
    os.chmod(path, 0o644)
    holder = kvstore.open(path) if writer != "no writer" else None
    try:
        if holder is not None:
            holder[1000] = "a"  # a writer active: -wal and -shm exist, with news in the WAL
        before = sorted(os.listdir(folder))
        done = as_nobody(sys.executable, "-c", _READER, path)
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        assert seen == {"auto readonly": True, "get": "a", "count": 100 if holder is None else 101,
                        "items": 100 if holder is None else 101, "verify": [],
                        "stats": 100 if holder is None else 101, "write": "ReadOnlyError",
                        "readonly get": "a"}
        for command in (["get", path, "1", "--key-type", "int"], ["count", path, "a"], ["dump", path],
                        ["stats", path], ["verify", path]):
            done = as_nobody(sys.executable, "-m", "kvstore", *command)
            assert done.returncode == 0, (command, done.stderr)
        assert sorted(os.listdir(folder)) == before  # the reader created nothing
    finally:
        if holder is not None:
            holder.close()


def test_another_users_read_leaves_no_files_that_lock_the_owner_out(tmp_path, as_nobody):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o1777)  # anyone may create files here (like /tmp)
    path = str(folder / "s.db")
    with kvstore.open(path) as db:
        db[1] = "a"
    os.chmod(path, 0o644)
    done = as_nobody(sys.executable, "-m", "kvstore", "count", path, "a")
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    assert sorted(os.listdir(folder)) == ["s.db"]
    with kvstore.open(path) as db:  # the owner writes as before
        db[2] = "a"
        assert db.count("a") == 2


# -- 3. creation errors ---------------------------------------------------------------------


def test_creation_errors_say_what_happened(tmp_path, as_nobody):
    assert "special filesystem" in _open_error("/proc/x.db")
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o755)
    done = as_nobody(sys.executable, "-m", "kvstore", "set", str(locked / "x.db"), "k", "v")
    assert done.returncode == 1
    assert "permission denied: you may not create files in" in done.stderr
    assert "migrating" not in done.stderr and os.listdir(locked) == []


def _open_error(path: str) -> str:
    with pytest.raises(kvstore.Error) as info:
        kvstore.open(path)
    return str(info.value)


def test_creation_on_a_read_only_filesystem(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.strip()}")
    try:
        assert "read-only filesystem" in _open_error(str(mount / "x.db"))
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# -- 4. :memory: and URIs -------------------------------------------------------------------


def test_memory_store_has_the_whole_api_and_vanishes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = kvstore.open(":memory:")
    db.update((i, f"v{i % 3}") for i in range(30_000))  # the bulk path too
    db[-1] = 2.5
    with db.transaction():
        db["t"] = b"\x00"
        with pytest.raises(ZeroDivisionError), db.transaction():
            db["gone"] = 1
            raise ZeroDivisionError
    assert db.count("v1") == db.count("v1", strategy="group_by") == db.count("v1", strategy="scan") == 10_000
    assert db.pop(-1) == 2.5 and db.setdefault("s", "x") == "x" and "gone" not in db
    assert db.most_common(1) == [("v0", 10_000)] and db.verify() == [] and db.repair() == 0
    assert db.stats()["items"]["rows"] == 30_002 and list(db.keys_for(b"\x00")) == ["t"]
    seen = []
    thread = threading.Thread(target=lambda: seen.append((db.get(5), db.set("thread", 1))))
    thread.start()
    thread.join(30)
    assert seen == [("v2", None)] and db["thread"] == 1  # threads share it
    other = kvstore.open(":memory:")
    assert len(other) == 0  # each in-memory store is private
    other.close()
    assert repr(db) == "<kvstore.Store ':memory:' (open)>"
    db.close()
    with pytest.raises(kvstore.Error, match="closed"):
        len(db)
    assert os.listdir(tmp_path) == []  # no file named ':memory:' (or anything else)
    with pytest.raises(ValueError, match="read-only"):
        kvstore.open(":memory:", readonly=True)


def test_memory_store_cannot_be_pickled():
    import pickle

    with kvstore.open(":memory:") as db, pytest.raises(TypeError, match="in-memory"):
        pickle.dumps(db)


@pytest.mark.parametrize("uri", ["file:x.db?mode=ro", "FILE:x.db", "file:///tmp/x.db", ""])
def test_sqlite_uris_and_the_empty_path_are_refused(tmp_path, monkeypatch, uri):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="URI|empty"):
        kvstore.open(uri)
    assert os.listdir(tmp_path) == []


def test_a_file_really_named_like_a_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with kvstore.open("./file:x.db") as db:
        db[1] = "a"
    assert os.listdir(tmp_path) == ["file:x.db"]


# -- 5. an empty file -----------------------------------------------------------------------


def test_an_empty_file_is_a_new_store_from_the_cli(tmp_path):
    path = tmp_path / "x.db"
    path.touch()
    for args in (["set", str(path), "k", "v"], ["get", str(path), "k"]):
        done = subprocess.run([sys.executable, "-m", "kvstore", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "v"


def test_an_empty_tempfile_opened_by_several_processes_at_once(tmp_path):
    path = str(tmp_path / "empty.db")
    Path(path).touch()
    _race(path, patch_link=False)


# -- 6. timeout -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, error, words", [
    (-1, ValueError, "0 seconds or more"),
    (math.nan, ValueError, "NaN"),
    ("5", TypeError, "number of seconds"),
    (True, TypeError, "number of seconds"),
])
def test_bad_timeouts_are_refused_before_anything_happens(tmp_path, bad, error, words):
    with pytest.raises(error, match=words):
        kvstore.open(tmp_path / "x.db", timeout=bad)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("huge", [math.inf, 1e12, 24.9 * 86400])
def test_huge_timeouts_wait_as_long_as_sqlite_can(path, huge):
    with kvstore.open(path, timeout=huge) as db:
        assert db.options.timeout == (2**31 - 1) / 1000
        with db._using() as conn:
            assert conn.execute("PRAGMA busy_timeout").fetchone() == (2**31 - 1,)


def test_zero_timeout_means_do_not_wait(path):
    with kvstore.open(path, timeout=0) as db, db._using() as conn:
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (0,)


# -- 9. creating without hard links ----------------------------------------------------------


def _create_without_links(path: str, barrier, index: int, results, patch_link: bool) -> None:
    try:
        if patch_link:
            def no_link(*_: object) -> None:
                raise PermissionError(1, "Operation not permitted")  # as on FAT, some FUSE mounts

            rename = os.rename

            def slow_rename(src: str, dst: str) -> None:  # a slow filesystem widens any race
                time.sleep(0.3)
                rename(src, dst)

            os.link = no_link  # type: ignore[assignment]
            os.rename = slow_rename  # type: ignore[assignment]
        barrier.wait(timeout=30)
        with kvstore.open(path, timeout=30) as db:
            db[index] = "made"
        results.put(("ok", index))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def _race(path: str, patch_link: bool) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = 5
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_create_without_links, args=(path, barrier, i, results, patch_link))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    outcomes = sorted(results.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(30)
    assert outcomes == [("ok", i) for i in range(workers)]
    with kvstore.open(path) as db:  # one store, and nobody's write replaced by another store
        assert db.count("made") == workers and db.verify() == []


def test_concurrent_creation_without_hard_links_keeps_one_store(tmp_path):
    for rnd in range(scaled(3, minimum=3)):
        folder = tmp_path / f"r{rnd}"
        folder.mkdir()
        _race(str(folder / "new.db"), patch_link=True)
        assert not [n for n in os.listdir(folder) if n.endswith(".creating")]


# -- switching an older file to WAL ----------------------------------------------------------


def test_switching_a_rollback_journal_file_to_wal_waits_for_a_writer(path):
    """`PRAGMA journal_mode = WAL` fails at once (no busy handler) while another connection
    holds the write lock; opening must wait for it like any write, not raise BusyError."""
    from tests._rel_workers import holding, release

    with kvstore.open(path) as db:
        db[1] = "a"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    with holding(path) as proc:
        timer = threading.Timer(1.0, lambda: release(proc, "rollback"))
        timer.start()
        started = time.monotonic()
        with kvstore.open(path, timeout=20) as db:
            assert db[1] == "a" and "held" not in db
        waited = time.monotonic() - started
        timer.join()
    assert waited >= 0.9
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_symlinked_store_with_a_hot_journal(tmp_path):
    """SQLite names the journal after the symlink's target: kvstore must look for it there."""
    real = tmp_path / "real"
    real.mkdir()
    path = str(real / "old.db")
    revision_one_file(path, [(i, "v") for i in range(50)])
    leave_hot_journal(path)
    link = tmp_path / "link.db"
    link.symlink_to(path)
    with kvstore.open(link) as db:
        assert len(db) == 50 and db.verify() == []
    assert not os.path.exists(path + "-journal")


def test_an_astronomical_int_timeout_is_clamped(path):
    with kvstore.open(path, timeout=10**400) as db:
        assert db.options.timeout == (2**31 - 1) / 1000
