"""`kvstore count DB VALUE` in a fresh process (kvstore.cli.fast): what it imports, that it
answers exactly as the click command does, and that every file the full path would create,
upgrade, roll back or refuse still goes to the full path, untouched by the fast one."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import kvstore
from kvstore.sqlite import migrate
from kvstore.cli import fast, options
from tests.test_cli import ok
from tests.test_migrations import revision, revision_one_file

SLOW_MODULES = ("click", "typing", "dataclasses", "threading", "sqlalchemy", "alembic", "kvstore.store",
                "kvstore.sqlite.store", "kvstore.sqlite.migrate", "kvstore.sqlite.connection", "kvstore.cli.group",
                "kvstore.formats")


def count_process(*args: str) -> tuple[int, str, str, list[str]]:
    """``python -m kvstore count ARGS`` in a fresh process: exit code, stdout, stderr, and which
    of SLOW_MODULES it imported."""
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['kvstore', 'count', *{list(args)!r}]\n"
        "try:\n    runpy.run_module('kvstore', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\nelse:\n    code = 0\n"
        f"print(sorted(m for m in {SLOW_MODULES!r} if m in sys.modules), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    *stderr, imported = done.stderr.splitlines()
    return done.returncode, done.stdout, "".join(line + "\n" for line in stderr), eval(imported)


def files_of(path: str) -> tuple[bytes, bytes]:
    """The file and its WAL, byte for byte (a reader may write the -shm's read marks)."""
    wal = Path(path + "-wal")
    return Path(path).read_bytes(), wal.read_bytes() if wal.exists() else b""


@pytest.fixture
def foods(path: str) -> str:
    with kvstore.open(path) as db:
        db.update({"a": "apple", "b": "apple", "c": "pear", "d": 7})
    return path


def test_a_plain_count_imports_neither_click_nor_the_store(foods):
    assert count_process(foods, "apple") == (0, "2\n", "", [])


def test_answers_as_the_click_command_does_and_leaves_no_companion_files(foods, capsys):
    assert fast.count(["count", foods, "apple"]) is True
    assert capsys.readouterr() == (ok("count", foods, "apple"), "")
    assert sorted(os.listdir(os.path.dirname(foods))) == ["store.db"]  # no -wal or -shm left behind


@pytest.mark.parametrize(
    "argv",
    [
        ["count", "{db}", "nothing"],  # 0: the full path adds a note about other types
        ["count", "{db}", "7"],  # 0 as text; the note says 7 is held as an int
        ["count", "{db}", "apple", "--strategy", "scan"],
        ["count", "--timeout", "1", "{db}", "apple"],
        ["count", "{db}", "-5"],
        ["count", "{db}", "\udcff"],  # not UTF-8: the full path explains
        ["counts", "{db}", "apple"],
        ["count", "{db}"],
        ["count", "{db}-missing", "apple"],
        ["count", ":memory:", "apple"],
    ],
)
def test_leaves_everything_else_to_the_full_path(foods, capsys, argv):
    assert fast.count([arg.replace("{db}", foods) for arg in argv]) is False
    assert capsys.readouterr() == ("", "")


def test_a_count_of_zero_still_gets_its_note(foods):
    code, out, err, _ = count_process(foods, "7")
    assert (code, out) == (0, "0\n")
    assert err.startswith(f"Note: {foods}: no value '7'; there is an int value 7")


def test_the_timeout_is_the_command_lines_default():
    assert fast.TIMEOUT == options.DEFAULT_TIMEOUT


def refused_untouched(path: str, message: str) -> None:
    before = files_of(path)
    assert fast.count(["count", path, "apple"]) is False
    code, out, err, _ = count_process(path, "apple")
    assert (code, out) == (1, "")
    assert message in err
    assert files_of(path) == before


def test_a_foreign_page_one_in_the_wal_is_refused_untouched(foods):
    """The header says kvstore, but a writer has committed another application_id to the WAL:
    only a read-only connection may look, and the file is refused."""
    writer = sqlite3.connect(foods, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("PRAGMA application_id = 7")
    assert Path(foods + "-wal").stat().st_size
    try:
        refused_untouched(foods, "not a kvstore file (application_id 7)")
    finally:
        writer.close()


def test_a_newer_revision_is_refused_untouched(foods):
    conn = sqlite3.connect(foods)
    conn.execute("UPDATE alembic_version SET version_num = '0999'")
    conn.commit()
    conn.close()
    refused_untouched(foods, "newer than this kvstore knows")


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("apple\n" * 100)
    refused_untouched(str(path), "not an SQLite database")


def test_an_old_revision_is_upgraded(tmp_path):
    path = str(tmp_path / "old.db")
    revision_one_file(path, [(1, "apple"), (2, "apple")])
    assert fast.count(["count", path, "apple"]) is False
    assert count_process(path, "apple")[:2] == (0, "2\n")
    assert revision(path) == migrate.HEAD_REVISION


def test_a_hot_journal_is_left_to_the_full_path(foods):
    Path(foods + "-journal").write_bytes(b"")  # present at all: the fast path does not judge it
    assert fast.count(["count", foods, "apple"]) is False


def test_a_read_only_file_is_left_to_the_full_path(foods):
    os.chmod(foods, 0o444)
    try:
        assert fast.count(["count", foods, "apple"]) is False
        assert count_process(foods, "apple")[:2] == (0, "2\n")
    finally:
        os.chmod(foods, 0o644)
