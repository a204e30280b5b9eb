"""Full disk: writes fail with kvstore.StorageFullError, keep nothing of the failed write,
leave everything committed before intact and counts exact, and work again once space is freed.

Two ways to fill the disk:

* ``PRAGMA max_page_count`` added to every connection the store opens (monkeypatching
  kvstore.sqlite.connection.apply_pragmas): portable, and it fails *inside* statements, e.g. in the
  middle of a bulk update() after it dropped the triggers.
* A real 16 MiB tmpfs filled with a filler file (needs root; skipped otherwise): real ENOSPC,
  which SQLite also meets when spilling a transaction to the WAL and at COMMIT, where it may
  roll back the whole transaction by itself.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import kvstore
import kvstore.sqlite.connection
import kvstore.sqlite.triggers
from tests._rel_workers import integrity, trigger_names, typed_items

BULK_N = 65_000  # takes update()'s bulk path (triggers dropped, counts rebuilt) on these stores


@pytest.fixture
def drops(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Times at which update() dropped the triggers for its bulk path."""
    seen: list[float] = []
    original = kvstore.sqlite.triggers.drop_statements

    def spy(ddls):
        seen.append(time.monotonic())
        return original(ddls)

    monkeypatch.setattr(kvstore.sqlite.triggers, "drop_statements", spy)
    return seen


def bulk(tag: str, n: int = BULK_N):
    return ((f"bulk{j}", f"{tag}-{j % 13}") for j in range(n))


def assert_intact(db: kvstore.Store, path: str, before: dict) -> None:
    assert typed_items(db) == before, "data committed before the failure changed"
    assert db.verify() == [], "counts drifted"
    assert trigger_names(path) >= {kvstore.sqlite.triggers.trigger_name(d) for d in kvstore.sqlite.triggers.CURRENT}
    assert integrity(path) == ["ok"]


# -- max_page_count ---------------------------------------------------------------------------


@pytest.fixture
def page_limit(monkeypatch: pytest.MonkeyPatch) -> dict[str, int | None]:
    """Set ``page_limit["pages"]`` to cap the file of every connection opened from then on."""
    limit: dict[str, int | None] = {"pages": None}
    original = kvstore.sqlite.connection.apply_pragmas

    def apply(conn, options):
        original(conn, options)
        if limit["pages"] is not None:
            conn.execute(f"PRAGMA max_page_count = {limit['pages']}")

    monkeypatch.setattr(kvstore.sqlite.connection, "apply_pragmas", apply)
    return limit


def pages(path: str) -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA page_count").fetchone()[0]
    finally:
        conn.close()


def test_size_limit_set_transaction_and_bulk_update(tmp_path: Path, page_limit, drops) -> None:
    path = str(tmp_path / "limited.db")
    with kvstore.open(path) as db:
        db.update((i, f"v{i % 17}") for i in range(5000))
        db.update(bulk("old"))
    # Calibrate on a copy: how many pages the bulk update adds; cap the file at 90% of that,
    # so the update fails late, after it dropped the triggers, whichever threshold it uses.
    shutil.copy(path, tmp_path / "copy.db")
    base = pages(path)
    with kvstore.open(str(tmp_path / "copy.db")) as copy:
        copy.update(bulk("new"))
        copy.update((f"extra{j}", f"e{j % 5}") for j in range(BULK_N))
    grown = pages(str(tmp_path / "copy.db"))
    assert grown > base + 100

    page_limit["pages"] = base + (grown - base) * 9 // 10
    with kvstore.open(path) as db:
        before = typed_items(db)
        # A large update() fails in the middle of its bulk path; nothing of it is kept.
        drops.clear()
        with pytest.raises(kvstore.StorageFullError, match="free some space"):
            db.update(itertools.chain(bulk("new"), ((f"extra{j}", f"e{j % 5}") for j in range(BULK_N))))
        assert drops, "the update failed before taking the bulk path"
        assert_intact(db, path, before)

    page_limit["pages"] = pages(path) + 2
    with kvstore.open(path) as db:
        before = typed_items(db)
        with pytest.raises(kvstore.StorageFullError):  # a single set
            db["big"] = "x" * 50_000
        assert_intact(db, path, before)
        with pytest.raises(kvstore.StorageFullError):  # a transaction, failing half-way
            with db.transaction():
                for j in range(200):
                    db[f"t{j}"] = "y" * 1000
        assert_intact(db, path, before)
        # Freeing space (deleting rows puts their pages on the free list) lets writes in again.
        with db.transaction():
            for key in [k for k in db.keys() if isinstance(k, str) and k.startswith("bulk")][:20000]:
                del db[key]
        db["big"] = "x" * 50_000
        with db.transaction():
            for j in range(20):
                db[f"t{j}"] = "y" * 1000
        assert db["big"] == "x" * 50_000 and db.count("y" * 1000) == 20
        assert db.verify() == []

    page_limit["pages"] = None  # more space: the large update goes through
    with kvstore.open(path) as db:
        db.update(bulk("again"))
        assert db.count("again-0") == len(range(0, BULK_N, 13))
        assert db.verify() == []
    assert integrity(path) == ["ok"]


def test_size_limit_error_caught_inside_transaction_keeps_the_block_atomic(tmp_path: Path, page_limit) -> None:
    """SQLite rolls back only the failing statement here: the block goes on and commits whole."""
    path = str(tmp_path / "limited.db")
    with kvstore.open(path) as db:
        db.update((i, "v") for i in range(1000))
    page_limit["pages"] = pages(path) + 1
    with kvstore.open(path) as db:
        with db.transaction():
            db["pre"] = "pre"
            with pytest.raises(kvstore.StorageFullError):
                db["big"] = "z" * 100_000
            db["post"] = "post"
        assert (db.get("pre"), db.get("big"), db.get("post")) == ("pre", None, "post")
        assert db.verify() == []


# -- a real full disk -------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the max_page_count tests cover the rest")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with a filler file until only about ``leave`` bytes are free."""
    filler = disk / "filler"
    if filler.exists():
        filler.unlink()
    st = os.statvfs(disk)
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_full_disk(small_disk: Path, drops) -> None:
    path = str(small_disk / "store.db")
    db = kvstore.open(path)
    try:
        db.update((i, f"v{i % 17}") for i in range(3000))
        before = typed_items(db)

        # A single set: keep writing until the disk is full; every acknowledged set stays.
        fill(small_disk, 200_000)
        acked = 0
        with pytest.raises(kvstore.StorageFullError, match="free some space"):
            for n in range(100_000):
                value = os.urandom(1000).hex()
                db[f"s{n}"] = value
                before[("str", f"s{n}")] = ("str", value)
                acked += 1
        assert acked > 0
        assert_intact(db, path, before)

        # A transaction on the full disk: all or nothing.
        with pytest.raises(kvstore.StorageFullError):
            with db.transaction():
                for n in range(2000):
                    db[f"t{n}"] = os.urandom(1000).hex()
        assert_intact(db, path, before)

        # The application catches the error inside the block and goes on. When SQLite has
        # rolled back the whole transaction (it may, for a full disk), the rest of the block
        # must not be committed on its own: the block as a whole fails.
        fill(small_disk, 300_000)
        written = {}
        try:
            with db.transaction():
                db["pre"] = "pre"
                written["pre"] = "pre"
                for n in range(100_000):
                    try:
                        value = os.urandom(500).hex()
                        db[f"c{n}"] = value
                        written[f"c{n}"] = value
                    except kvstore.StorageFullError:
                        break
                try:
                    db["post"] = "post"
                    written["post"] = "post"
                except kvstore.Error:
                    pass
        except kvstore.Error as exc:
            block_failed = exc
        else:
            block_failed = None
        after = typed_items(db)
        if block_failed is None:  # committed: then every write the block saw succeed is there
            for k, v in written.items():
                assert after[("str", k)] == ("str", v)
        else:  # failed: then none of it is there
            assert after == before, f"a failed transaction left writes behind ({block_failed})"
            assert "rolled back" in str(block_failed)
        assert db.verify() == []
        before = after

        # A large update() on the full disk: it fails (at the latest at COMMIT) and keeps nothing.
        fill(small_disk, 1_200_000)
        drops.clear()
        with pytest.raises(kvstore.StorageFullError):
            db.update(bulk("full"))
        assert drops, "the update failed before taking the bulk path"
        assert_intact(db, path, before)

        # Creating a new store on the full disk: a clear error, and no file left behind.
        fill(small_disk, 0)
        listing = sorted(os.listdir(small_disk))
        with pytest.raises(kvstore.Error) as raised:
            kvstore.open(str(small_disk / "new.db"))
        assert isinstance(raised.value, (kvstore.StorageFullError, kvstore.Error))
        assert sorted(os.listdir(small_disk)) == listing

        # Reopening on the full disk: either a kvstore.Error (SQLite may need room for its
        # -shm/-wal), or it opens with the data intact, and a write either fails with a
        # kvstore.Error or is really stored (closing checkpointed the WAL and freed room).
        db.close()
        try:
            db = kvstore.open(path)
        except kvstore.Error:
            pass
        else:
            assert typed_items(db) == before
            try:
                db["x"] = "y" * 5000
            except kvstore.Error:
                pass
            else:
                before[("str", "x")] = ("str", "y" * 5000)
            db.close()

        # Space freed: everything works again.
        (small_disk / "filler").unlink()
        db = kvstore.open(path)
        assert_intact(db, path, before)
        db["after"] = "ok"
        with db.transaction():
            for n in range(200):
                db[f"t{n}"] = "t"
        db.update(bulk("fine"))
        assert db.count("t") == 200 and db.count("fine-3") == len(range(3, BULK_N, 13))
        assert db.verify() == []
        with kvstore.open(str(small_disk / "new.db")) as fresh:
            fresh["x"] = 1
    finally:
        db.close()
    assert integrity(path) == ["ok"]
    with kvstore.open(path) as again:
        assert again["after"] == "ok" and again.verify() == []
