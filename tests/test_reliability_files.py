"""Damaged, foreign, read-only and locked files: a clear kvstore.Error subclass whose message
says what to do, the file left byte for byte as it was, and no hang.

Every open and read here runs under a time bound (a thread with a join timeout, or a child
process with a timeout), so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import os
import random
import sqlite3
import stat
from pathlib import Path

import pytest

import kvstore
from tests._rel_workers import bounded, holding, integrity, release, typed_items

ROWS = 20_000


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a closed, checkpointed kvstore file with ROWS rows."""
    path = tmp_path_factory.mktemp("populated") / "good.db"
    with kvstore.open(str(path)) as db:
        db.update((i, f"value {i % 7} " * 5) for i in range(ROWS))
    assert not os.path.exists(f"{path}-wal")
    return path.read_bytes()


def open_bounded(path: str, **kw):
    db, error = bounded(lambda: kvstore.open(path, **kw), timeout=20)
    if db is not None:
        db.close()
    return error


def foreign_db(path: Path, wal: bool) -> None:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE items (key, value)")
    conn.execute("INSERT INTO items VALUES (1, 'theirs')")
    conn.commit()
    conn.close()


def newer_schema(good: bytes):
    def make(path: Path) -> None:
        path.write_bytes(good)
        conn = sqlite3.connect(path)
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
        conn.commit()
        conn.close()

    return make


# name: (make the file, accepted error classes, words the message must contain)
def cases(good: bytes):
    page = 4096
    rng = random.Random(5)
    return {
        "truncated to 10 bytes": (lambda p: p.write_bytes(good[:10]), (kvstore.NotAKvstoreFileError,), ["not"]),
        "truncated to the header": (lambda p: p.write_bytes(good[:100]), (kvstore.CorruptError, kvstore.NotAKvstoreFileError), []),
        "truncated to one page": (lambda p: p.write_bytes(good[:page]), (kvstore.CorruptError,), ["backup"]),
        "truncated to half": (lambda p: p.write_bytes(good[: len(good) // 2]), (kvstore.CorruptError,), ["backup"]),
        "truncated mid-page": (lambda p: p.write_bytes(good[: len(good) - 1000]), (kvstore.CorruptError,), ["backup"]),
        "header garbled": (
            lambda p: p.write_bytes(good[:16] + bytes(rng.randrange(256) for _ in range(84)) + good[100:]),
            (kvstore.CorruptError, kvstore.NotAKvstoreFileError),
            [],
        ),
        "text file": (lambda p: p.write_text("name,value\nalice,1\n" * 100), (kvstore.NotAKvstoreFileError,), ["not a kvstore file"]),
        "random bytes": (lambda p: p.write_bytes(os.urandom(3 * page)), (kvstore.NotAKvstoreFileError,), ["not a kvstore file"]),
        "foreign SQLite (rollback journal)": (lambda p: foreign_db(p, False), (kvstore.NotAKvstoreFileError,), ["not a kvstore file", "will not modify"]),
        "foreign SQLite (WAL)": (lambda p: foreign_db(p, True), (kvstore.NotAKvstoreFileError,), ["not a kvstore file", "will not modify"]),
        "newer schema": (newer_schema(good), (kvstore.SchemaTooNewError,), ["upgrade the kvstore package"]),
    }


CASE_NAMES = list(cases(b"x" * 8192))


@pytest.mark.parametrize("case", CASE_NAMES)
@pytest.mark.parametrize("readonly", [False, True], ids=["writable", "readonly"])
def test_refused_file_gets_a_clear_error_and_is_left_unchanged(tmp_path: Path, populated: bytes, case: str, readonly: bool) -> None:
    make, errors, words = cases(populated)[case]
    path = tmp_path / "store.db"
    make(path)
    before = path.read_bytes()
    listing = sorted(os.listdir(tmp_path))
    for _ in range(2):  # and again: the first refusal changed nothing that makes the second differ
        error = open_bounded(str(path), readonly=readonly)
        assert isinstance(error, errors), f"{case}: {error!r}"
        message = str(error)
        assert str(path) in message
        for word in words:
            assert word in message, message
        assert path.read_bytes() == before, f"{case}: the refused file was modified"
        left = sorted(set(os.listdir(tmp_path)) - set(listing))
        # Files are examined on a read-only connection, which cannot remove the WAL sidecars it
        # opened (and must not: another process may be using them); they stay empty.
        if left:
            assert left == ["store.db-shm", "store.db-wal"] and os.path.getsize(f"{path}-wal") == 0, left


def test_directory_and_missing_parent(tmp_path: Path) -> None:
    error = open_bounded(str(tmp_path))
    assert isinstance(error, kvstore.NotAKvstoreFileError) and "directory" in str(error)
    error = open_bounded(str(tmp_path / "no such dir" / "x.db"))
    assert isinstance(error, kvstore.Error) and "does not exist" in str(error)
    assert not (tmp_path / "no such dir").exists()


# -- a corrupted page in the middle of a populated file --------------------------------------


def pages_of(path: Path, name: str) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT pageno, pagetype FROM dbstat WHERE name = ?", (name,)).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("target", ["items leaf", "items interior", "value index leaf"])
def test_corrupted_page_gives_corrupt_error_on_access(tmp_path: Path, populated: bytes, target: str) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(populated)
    name = "ix_items_value" if "index" in target else "items"
    kind = "leaf" if "leaf" in target else "internal"
    candidates = sorted(p for p, t in pages_of(path, name) if t == kind)
    assert candidates, pages_of(path, name)
    page = candidates[len(candidates) // 2]  # one from the middle of the file
    data = bytearray(populated)
    data[(page - 1) * 4096 : page * 4096] = random.Random(page).randbytes(4096)
    path.write_bytes(bytes(data))
    try:
        assert integrity(str(path)) != ["ok"], "the damage is real"
    except sqlite3.DatabaseError:
        pass  # integrity_check itself gave up: damaged
    damaged = path.read_bytes()

    # Opening reads only the header and the schema, so it may succeed; reading the damaged
    # page then raises CorruptError (never a raw sqlite3 error, never wrong data silently).
    db, error = bounded(lambda: kvstore.open(str(path)), timeout=20)
    if error is not None:
        assert isinstance(error, kvstore.CorruptError), repr(error)
    else:
        try:
            if name == "items":
                _, error = bounded(lambda: list(db.items()), timeout=20)
            else:
                _, error = bounded(db.verify, timeout=20)  # counts every value through the index
            assert isinstance(error, kvstore.CorruptError), repr(error)
        finally:
            db.close()
    assert "restore it from a backup" in str(error)
    assert path.read_bytes() == damaged, "reading a damaged file modified it"


# -- read-only files ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["file without write permission", "readonly=True"])
def test_read_only_store_reads_and_refuses_every_write(tmp_path: Path, how: str) -> None:
    path = tmp_path / "ro.db"
    with kvstore.open(str(path)) as db:
        db.update((i, f"v{i % 3}") for i in range(100))
    conn = sqlite3.connect(path)  # damage counts, so repair() has something to write
    conn.execute("UPDATE counts SET n = n + 1 WHERE value = 'v0'")
    conn.commit()
    conn.close()
    if how == "readonly=True":
        db = kvstore.open(str(path), readonly=True)
    else:
        os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # 0444: root could still write
        db = kvstore.open(str(path))
    before = path.read_bytes()
    try:
        assert db.options.readonly
        assert db[5] == "v2" and len(db) == 101 and db.count("v1") == 33
        assert len(db.verify()) == 1  # reports the damage; cannot fix it
        attempts = {
            "set": lambda: db.set("new", 1),
            "setitem": lambda: db.__setitem__(1, "x"),
            "delete": lambda: db.delete(1),
            "update": lambda: db.update({"a": 1}),
            "bulk update": lambda: db.update((f"b{j}", 1) for j in range(60_000)),
            "transaction": lambda: [db.transaction().__enter__(), db.set("t", 1)],
            "repair": db.repair,
        }
        for name, attempt in attempts.items():
            _, error = bounded(attempt, timeout=20)
            assert isinstance(error, kvstore.ReadOnlyError), f"{name}: {error!r}"
            assert "read-only" in str(error) and "permission" in str(error), str(error)
        assert db[1] == "v1" and "new" not in db and len(db) == 101
    finally:
        db.close()
        os.chmod(path, 0o644)
    assert path.read_bytes() == before


def test_readonly_open_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    error = open_bounded(str(tmp_path / "absent.db"), readonly=True)
    assert isinstance(error, kvstore.Error) and "read-only" in str(error)
    assert os.listdir(tmp_path) == []


# -- locked files ---------------------------------------------------------------------------


def test_exclusively_locked_file_gives_busy_error_then_opens_once_released(tmp_path: Path) -> None:
    """Another program holds the file with locking_mode=EXCLUSIVE: no one else can even read."""
    path = tmp_path / "locked.db"
    with kvstore.open(str(path)) as db:
        db["mine"] = 1
    with holding(path, "exclusive") as proc:
        before = path.read_bytes()
        db, error = bounded(lambda: kvstore.open(str(path), timeout=0.5), timeout=20)
        if error is None:  # opened from a snapshot: then any access must fail clearly
            _, error = bounded(lambda: db.get("mine"), timeout=20)
            db.close()
        assert isinstance(error, kvstore.BusyError), repr(error)
        assert "retry" in str(error) and "timeout" in str(error)
        assert path.read_bytes() == before
        release(proc, "done")
    with kvstore.open(str(path)) as db:
        assert db["mine"] == 1 and db["held"] == "uncommitted"  # the holder's committed write
        assert db.verify() == [] and integrity(str(path)) == ["ok"]


def test_write_locked_file_opens_reads_and_times_out_writes(tmp_path: Path) -> None:
    path = tmp_path / "wlocked.db"
    with kvstore.open(str(path)) as db:
        db["mine"] = 1
    with holding(path, "immediate") as proc:
        db, error = bounded(lambda: kvstore.open(str(path), timeout=0.5), timeout=20)
        assert error is None, repr(error)
        try:
            assert db["mine"] == 1 and "held" not in db
            _, error = bounded(lambda: db.set("x", 1), timeout=20)
            assert isinstance(error, kvstore.BusyError), repr(error)
        finally:
            db.close()
        release(proc, "rollback")
    with kvstore.open(str(path)) as db:
        db["x"] = 1
        assert "held" not in db and typed_items(db) == {("str", "mine"): ("int", 1), ("str", "x"): ("int", 1)}
