"""``kvstore count DB VALUE`` in a fresh process, answered with os and sqlite3 alone.

A fresh process pays for every module it imports, and on this kind of machine click,
dataclasses and typing each cost more than the query does (measured: Python starts in
~11 ms, a one-liner that imports sqlite3 and counts in ~17 ms; importing click adds ~30 ms,
dataclasses ~16 ms, typing ~10 ms). So the plain form ``kvstore count DB VALUE`` is answered
here, importing kvstore's constants (:mod:`kvstore.constants`, :mod:`kvstore.sqlite`), its SQL
strings (:mod:`kvstore.sqlite.sql`) and :mod:`kvstore.sqlite.uri` only, whenever the file is in
the ordinary state in which opening a store only connects:

- DB is a regular file with one name (see kvstore.sqlite.files.check_links) that the user may
  write, in a directory the user may write, whose header is a whole-page SQLite header with
  kvstore's application_id, with no rollback journal beside it (a journal may be hot: only
  the full path rolls it back);
- a read-only connection (as :func:`kvstore.sqlite.migrate.ensure_schema` examines files, so
  that a file it refuses never gets a read-write one, even if its WAL holds another page 1) finds
  kvstore's application_id, the head revision in ``alembic_version`` and WAL mode;
- VALUE is valid UTF-8 text held by at least one key (a count of 0 gets a note on stderr
  about other types, which needs kvstore.formats).

The count is then read on a read-write connection, as a store's own connection reads it, so
that closing it leaves the files as a store would (the last connection checkpoints and removes
the -wal and -shm files; a read-only one cannot). In every other case, including any SQLite
error, nothing has been printed and :func:`count` returns False: the command runs through click
and ``kvstore.open()`` with every check and message unchanged. This path only ever answers;
it never refuses, creates, upgrades or repairs a file.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import sys

from kvstore.constants import HEAD_REVISION
from kvstore.sqlite import APPLICATION_ID, SQLITE_HEADER, sql
from kvstore.sqlite.uri import file_uri

TIMEOUT = 5.0
"""The command line's default ``--timeout`` (kvstore.cli.options.DEFAULT_TIMEOUT; a test checks)."""


def count(argv: list[str]) -> bool:
    """If ``argv`` is ``count DB VALUE`` on an ordinary file holding VALUE, print its count: True.

    False (with nothing printed) for any other command line or file: the caller runs the
    full command line then.
    """
    if len(argv) != 3 or argv[0] != "count" or any(arg.startswith("-") for arg in argv[1:]):
        return False
    path, value = argv[1], argv[2]
    if not _utf8(value) or not _ordinary(path):
        return False
    n = _count(path, value)
    if not n:
        return False
    try:
        sys.stdout.write(f"{n}\n")
        sys.stdout.flush()
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        from kvstore.cli.group import _end_quietly

        _end_quietly()
    return True


def _utf8(text: str) -> bool:
    """Text SQLite can bind (a lone surrogate cannot be encoded: the full path explains why)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ordinary(path: str) -> bool:
    """Whether the file at ``path`` looks like a writable kvstore file with nothing to recover."""
    if path == ":memory:" or path.lower().startswith("file:"):  # not file names to kvstore.open()
        return False
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # two names: the full path refuses it
            return False
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError:
        return False
    real = os.path.realpath(path)  # SQLite names -journal/-wal/-shm after a symlink's target
    if not (st.st_mode & 0o222 and os.access(path, os.W_OK) and os.access(os.path.dirname(real), os.W_OK)):
        return False
    if os.path.lexists(real + "-journal"):
        return False
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    return (
        len(header) == 100
        and header.startswith(SQLITE_HEADER)
        and page >= 512
        and not page & (page - 1)
        and not st.st_size % page
        and int.from_bytes(header[68:72], "big") == APPLICATION_ID
    )


def _count(path: str, value: str) -> int | None:
    """The count held in the file, or None if it is not at the head revision in WAL mode."""
    try:
        check = _connect(path, readonly=True)
        try:
            (app_id,) = check.execute("PRAGMA application_id").fetchone()
            (journal,) = check.execute("PRAGMA journal_mode").fetchone()
            revision = check.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            check.close()
        if app_id != APPLICATION_ID or journal != "wal" or revision != (HEAD_REVISION,):
            return None
        conn = _connect(path, readonly=False)
        try:
            row = conn.execute(sql.COUNT, (value,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:  # a missing alembic_version table included
        return None
    return None if row is None else int(row[0])


def _connect(path: str, readonly: bool) -> sqlite3.Connection:
    return sqlite3.connect(file_uri(path, readonly), uri=True, timeout=TIMEOUT, isolation_level=None)
