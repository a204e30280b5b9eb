"""Revision 0003 (rowid tables, bounded value index): upgrades from populated 0001 and 0002
files, all-or-nothing under SIGKILL, downgrade, and what the command line says meanwhile."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import kvstore
from kvstore.sqlite import migrate
from kvstore.cli import cli
from tests.helpers import scaled
from tests.test_migrations import alembic, master, revision

LONG = "x" * 40
VALUES = ["apple", "pear", 1, 1.0, -0.0, 0, b"x", LONG + "1", LONG + "2", (LONG + "1").encode(), "a\x00" + LONG,
          "é" * 40, b"\x00" * 5000]


def revision_two_file(path: str, rows: list[tuple], wal: bool = True) -> None:
    """A file at revision 0002 holding ``rows``, as kvstore before 0003 left it (WAL mode)."""
    alembic("-x", f"db={path}", "upgrade", "0002")
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO items VALUES (?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()


def recount(path: str) -> dict:
    conn = sqlite3.connect(path)
    counted = dict(conn.execute("SELECT value, count(*) FROM items GROUP BY value"))
    conn.close()
    return counted


def test_populated_revision_two_file_upgrades_to_exact_counts_keeping_foreign_objects(tmp_path):
    path = str(tmp_path / "two.db")
    rows = [(i, VALUES[i % len(VALUES)]) for i in range(2000)] + [("k", "solo")]
    revision_two_file(path, rows)
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE INDEX their_index ON items (value, key);
        CREATE TABLE audit (key);
        CREATE TRIGGER their_trigger AFTER INSERT ON items BEGIN INSERT INTO audit VALUES (NEW.key); END;
        CREATE VIEW their_view AS SELECT key FROM items WHERE value = 'apple';
        UPDATE counts SET n = n + 5 WHERE value = 'pear';  -- drifted counts are recomputed
    """)
    conn.close()
    before = recount(path)
    with kvstore.open(path) as db:
        assert revision(path) == "0003"
        assert db.counts() == before
        assert db.count(LONG + "1") == before[LONG + "1"] and db.count((LONG + "1").encode()) == before[(LONG + "1").encode()]
        assert db.count(0) == db.count(-0.0) == before[0] and db.count(1.0) == before[1]
        assert db.verify() == []
        db["new"] = "apple"
        assert list(db.keys_for("solo")) == ["k"]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT key FROM audit").fetchall() == [("new",)]
    assert conn.execute("SELECT count(*) FROM their_view").fetchone() == (before["apple"] + 1,)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    ours = [row for row in master(path) if row[1] not in ("their_index", "their_trigger", "their_view", "audit")]
    created = str(tmp_path / "created.db")
    kvstore.open(created).close()
    assert ours == master(created)


def test_populated_revision_one_file_upgrades_through_two_to_exact_counts(tmp_path):
    path = str(tmp_path / "one.db")
    alembic("-x", f"db={path}", "upgrade", "0001")
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO items VALUES (?, ?)", [(i, VALUES[i % len(VALUES)]) for i in range(1000)])
    conn.commit()
    conn.close()
    before = recount(path)
    with kvstore.open(path) as db:
        assert revision(path) == "0003"
        assert db.counts() == before and db.verify() == []


def test_downgrade_to_two_gives_the_revision_two_schema_and_keeps_data(tmp_path):
    path, reference = str(tmp_path / "down.db"), str(tmp_path / "ref.db")
    with kvstore.open(path) as db:
        db.update((i, VALUES[i % len(VALUES)]) for i in range(500))
        counts = db.counts()
    migrate.migrate(path, "0002", migrate.Options())
    alembic("-x", f"db={reference}", "upgrade", "0002")
    assert master(path) == master(reference)
    assert recount(path) == counts
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT value, n FROM counts")) == counts
    conn.close()
    with kvstore.open(path) as db:  # and up again
        assert db.counts() == counts and db.verify() == []


def test_the_command_line_says_it_is_upgrading(tmp_path):
    path = str(tmp_path / "cli.db")
    revision_two_file(path, [(i, "apple") for i in range(1234)])
    result = CliRunner().invoke(cli, ["count", path, "apple"], prog_name="kvstore")
    assert result.exit_code == 0, result.output
    assert result.stdout == "1234\n"
    assert result.stderr == f"upgrading {path} to revision 0003 (1,234 items)…\n"
    result = CliRunner().invoke(cli, ["count", path, "apple"], prog_name="kvstore")
    assert result.stderr == ""  # at head: nothing to say


def test_sigkill_half_way_through_the_upgrade_leaves_revision_two_and_a_later_open_completes_it(tmp_path):
    path = str(tmp_path / "killed.db")
    n = scaled(100_000, 60_000)
    small = VALUES[:-1]
    revision_two_file(path, [(i, small[i % len(small)] if i % 7 else f"v{i}") for i in range(n)])
    before_master, before_counts = master(path), recount(path)
    wal = path + "-wal"
    child = subprocess.Popen([sys.executable, "-m", "kvstore", "count", path, "apple"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    line = child.stderr.readline()
    assert line.startswith(f"upgrading {path} to revision 0003"), line
    size = os.path.getsize(wal) if os.path.exists(wal) else 0
    deadline = time.monotonic() + 30
    while (os.path.getsize(wal) if os.path.exists(wal) else 0) <= size + 1_000_000:  # the copy is under way
        assert child.poll() is None, "the upgrade ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert revision(path) == "0002"
    assert master(path) == before_master
    assert recount(path) == before_counts
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT value, n FROM counts")) == before_counts
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    with kvstore.open(path) as db:
        assert revision(path) == "0003"
        assert db.counts() == before_counts and db.verify() == []


@pytest.mark.parametrize("rows", [[], [(1, "a")]])
def test_small_files_upgrade_too(tmp_path, rows):
    path = str(tmp_path / "small.db")
    revision_two_file(path, rows, wal=False)
    with kvstore.open(path) as db:
        assert db.counts() == dict.fromkeys([v for _, v in rows], 1) and db.verify() == []
