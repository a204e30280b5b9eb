"""Alembic migrations, and how kvstore.open() creates, upgrades or refuses a file."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import kvstore
from kvstore import history
from kvstore import schema
from kvstore.sqlite import migrate
from kvstore.sqlite.connection import Options

REPO = Path(__file__).resolve().parent.parent


def alembic(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the alembic command line from the repository root, as the README documents."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=True,
    )


def names(path: str) -> set[str]:
    return {name for _, name, _, _ in master(path) if not name.startswith("sqlite_autoindex")}


def master(path: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    conn.close()
    return rows


def revision(path: str) -> str | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        row = None
    conn.close()
    return row[0] if row else None


def revision_one_file(path: str, rows: list[tuple]) -> None:
    alembic("-x", f"db={path}", "upgrade", "0001")
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO items VALUES (?, ?)", rows)
    conn.commit()
    conn.close()


def test_revision_constants_match_alembic():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(history.alembic_config())
    assert script.get_current_head() == migrate.HEAD_REVISION == schema.HEAD_REVISION
    ordered = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert tuple(ordered) == migrate.KNOWN_REVISIONS == schema.KNOWN_REVISIONS
    assert migrate.APPLICATION_ID == schema.APPLICATION_ID


def test_migrated_file_and_create_all_file_have_the_same_schema(tmp_path):
    migrated, created = str(tmp_path / "migrated.db"), str(tmp_path / "created.db")
    alembic("-x", f"db={migrated}", "upgrade", "head")
    kvstore.open(created).close()
    assert master(migrated) == master(created)
    names = {name for kind, name, _, _ in master(created) if kind == "trigger"}
    assert len(names) == 7


def test_up_down_round_trip(tmp_path):
    path = str(tmp_path / "round.db")
    alembic("-x", f"db={path}", "upgrade", "head")
    full = master(path)
    alembic("-x", f"db={path}", "downgrade", "0001")
    assert revision(path) == "0001"
    assert names(path) == {"alembic_version", "items", "ix_items_value"}
    alembic("-x", f"db={path}", "downgrade", "base")
    assert revision(path) is None
    assert names(path) == {"alembic_version"}
    alembic("upgrade", "head", env={"KVSTORE_DB": path})  # the environment-variable way
    assert master(path) == full


def test_populated_revision_one_file_upgrades_to_exact_counts(tmp_path):
    path = str(tmp_path / "old.db")
    rows = [(i, ["apple", "pear", 1, 1.0, b"x"][i % 5]) for i in range(1000)]
    revision_one_file(path, rows)
    with kvstore.open(path) as db:
        assert revision(path) == migrate.HEAD_REVISION
        assert db.counts() == {"apple": 200, "pear": 200, 1: 400, b"x": 200}
        assert db.verify() == []
        db[5000] = "apple"
        assert db.count("apple") == 201
    created = str(tmp_path / "new.db")
    kvstore.open(created).close()
    assert [r for r in master(path)] == master(created)


def test_store_migrate_down_and_up_keeps_data(tmp_path):
    path = str(tmp_path / "m.db")
    with kvstore.open(path) as db:
        db.update({1: "a", 2: "a", 3: "b"})
    options = Options()
    migrate.migrate(path, "0001", options)
    assert migrate.current_revision(path, options) == "0001"
    migrate.migrate(path, "head", options)
    with kvstore.open(path) as db:
        assert db.counts() == {"a": 2, "b": 1}
        assert db.verify() == []
    with pytest.raises(kvstore.MigrationError, match="unknown revision"):
        migrate.migrate(path, "nope", options)


def test_failing_migration_leaves_the_previous_revision(tmp_path):
    path = str(tmp_path / "sabotaged.db")
    revision_one_file(path, [(1, "a"), (2, "b")])
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items_displaced (x)")  # revision 0002 will fail to create it
    conn.commit()
    conn.close()
    before = master(path)
    with pytest.raises(kvstore.MigrationError, match="rolled back"):
        kvstore.open(path)
    assert master(path) == before  # not one table or trigger of 0002 stayed
    assert revision(path) == "0001"
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE items_displaced")
    conn.commit()
    conn.close()
    with kvstore.open(path) as db:  # once the obstacle is gone the upgrade succeeds
        assert db.counts() == {"a": 1, "b": 1}


def _open_and_write(path: str, barrier, index: int, results) -> None:
    try:
        barrier.wait(timeout=30)
        with kvstore.open(path, timeout=30) as db:
            db[index] = "opened"
        results.put(("ok", index))
    except BaseException as exc:  # report every failure to the parent
        results.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.parametrize("start", ["missing", "revision 0001"])
def test_concurrent_first_open_from_several_processes(tmp_path, start):
    path = str(tmp_path / "race.db")
    if start == "revision 0001":
        revision_one_file(path, [(-1, "old")])
    ctx = multiprocessing.get_context("spawn")
    workers = 6
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_open_and_write, args=(path, barrier, i, results)) for i in range(workers)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert sorted(outcomes) == [("ok", i) for i in range(workers)]
    with kvstore.open(path) as db:
        assert db.count("opened") == workers
        assert db.verify() == []
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".creating")]


def unchanged_refusal(path: str, error: type[Exception], match: str) -> None:
    """Opening ``path`` raises ``error``; neither the file nor its WAL changed."""
    wal = Path(path + "-wal")
    before = Path(path).read_bytes(), wal.read_bytes() if wal.exists() else b""
    with pytest.raises(error, match=match):
        kvstore.open(path)
    assert (Path(path).read_bytes(), wal.read_bytes() if wal.exists() else b"") == before


def test_refuses_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, I am not a database\n" * 100)
    unchanged_refusal(str(path), kvstore.NotAKvstoreFileError, "not an SQLite database")


def test_an_empty_file_becomes_a_new_store(tmp_path):
    """As for sqlite3, a 0-byte file (a fresh tempfile, say) is a new database."""
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(kvstore.Error, match="empty"):
        kvstore.open(path, readonly=True)  # nothing to read, and a reader may not create
    assert path.read_bytes() == b""
    with kvstore.open(path) as db:
        db[1] = "a"
        assert db.count("a") == 1 and db.verify() == []
    assert revision(str(path)) == migrate.HEAD_REVISION


def test_refuses_a_foreign_database_with_a_pending_wal_without_checkpointing_it(tmp_path):
    path = str(tmp_path / "theirs-wal.db")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE t (x)")
    writer.execute("INSERT INTO t VALUES (1)")
    assert Path(path + "-wal").stat().st_size  # committed, but only in the WAL
    unchanged_refusal(path, kvstore.NotAKvstoreFileError, "not a kvstore file")
    writer.close()


def test_refuses_someone_elses_sqlite_database(tmp_path):
    path = str(tmp_path / "theirs.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (key, value)")  # same table name, still not ours
    conn.execute("INSERT INTO items VALUES (1, 2)")
    conn.commit()
    conn.close()
    unchanged_refusal(path, kvstore.NotAKvstoreFileError, "not a kvstore file")


def test_refuses_a_schema_newer_than_the_library(tmp_path):
    path = str(tmp_path / "future.db")
    with kvstore.open(path) as db:
        db[1] = "a"
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = '0999'")
    conn.commit()
    conn.close()
    unchanged_refusal(path, kvstore.SchemaTooNewError, "newer than this kvstore knows")


def test_open_at_head_imports_neither_sqlalchemy_nor_alembic(path):
    kvstore.open(path).close()
    code = (
        "import sys, kvstore\n"
        f"db = kvstore.open({path!r}); db[1] = 'x'; db.count('x'); db.close()\n"
        "print(sorted(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
