"""A store file with two names (hard links) is refused: SQLite would treat it as two databases.

SQLite finds a database's -wal, -shm and -journal by the name it was opened with, so two
processes using one file through two names each believe they have it to themselves; measured
here before this check, that lost acknowledged writes and failed ``PRAGMA integrity_check``
("How To Corrupt An SQLite Database File", section 2.3).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import kvstore
from kvstore.problems import SchemaProblem


@pytest.fixture
def linked(tmp_path) -> tuple[str, str]:
    first, second = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    with kvstore.open(first) as db:
        db["k"] = "v"
    os.link(first, second)
    return first, second


@pytest.mark.parametrize("readonly", [False, True])
def test_a_file_with_two_names_is_refused_by_either_name(linked, readonly):
    for name in linked:
        before = os.stat(name)
        with pytest.raises(kvstore.Error, match="2 names .hard links.*remove the other names"):
            kvstore.open(name, readonly=readonly)
        assert os.stat(name).st_mtime_ns == before.st_mtime_ns
        assert not os.path.exists(name + "-wal") or os.path.getsize(name + "-wal") == 0


def test_the_cli_refuses_it_with_an_error_line(linked):
    out = subprocess.run([sys.executable, "-m", "kvstore", "count", linked[1], "v"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "hard links" in out.stderr


def test_with_the_other_name_removed_the_store_opens_again(linked):
    os.remove(linked[1])
    with kvstore.open(linked[0]) as db:
        assert db["k"] == "v"


def test_verify_reports_a_name_added_while_the_store_is_open(tmp_path):
    path = str(tmp_path / "a.db")
    with kvstore.open(path) as db:
        db["k"] = "v"
        assert db.verify() == []
        os.link(path, str(tmp_path / "other.db"))
        problems = db.verify()
        assert [type(p) for p in problems] == [SchemaProblem]
        assert "2 names" in str(problems[0]) and not problems[0].fixable


def test_the_name_of_a_killed_creation_is_cleared(tmp_path):
    """kvstore builds a new store under a temporary name and links it into place; a creator killed
    between the link and removing the temporary name leaves a second name, which is ours."""
    path = str(tmp_path / "a.db")
    with kvstore.open(path) as db:
        db["k"] = "v"
    leftover = str(tmp_path / ".a.db.0123456789abcdef.creating")
    os.link(path, leftover)
    with kvstore.open(path) as db:
        assert db["k"] == "v"
    assert not os.path.exists(leftover) and os.stat(path).st_nlink == 1


def test_a_temporary_name_for_another_file_is_left_alone(tmp_path):
    path, other = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    kvstore.open(path).close()
    kvstore.open(other).close()
    unrelated = str(tmp_path / ".a.db.0123456789abcdef.creating")
    os.link(other, unrelated)
    os.link(path, str(tmp_path / "c.db"))
    with pytest.raises(kvstore.Error, match="hard links"):
        kvstore.open(path)
    assert os.path.exists(unrelated)


def test_a_killed_creation_is_cleared_through_a_symlink_too(tmp_path):
    data, app = tmp_path / "data", tmp_path / "app"
    data.mkdir()
    app.mkdir()
    real = str(data / "real.db")
    kvstore.open(real).close()
    os.link(real, str(data / ".real.db.0123456789abcdef.creating"))
    (app / "link.db").symlink_to(real)
    with kvstore.open(str(app / "link.db")) as db:
        db["k"] = "v"
    assert os.stat(real).st_nlink == 1


def test_a_read_only_open_leaves_the_directory_alone(tmp_path):
    path = str(tmp_path / "a.db")
    kvstore.open(path).close()
    leftover = str(tmp_path / ".a.db.0123456789abcdef.creating")
    os.link(path, leftover)
    with pytest.raises(kvstore.Error, match="2 names"):
        kvstore.open(path, readonly=True)
    assert os.path.exists(leftover)
