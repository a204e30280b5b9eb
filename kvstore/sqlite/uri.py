"""The SQLite URI that opens a kvstore file; imports only os.

Kept apart from :mod:`kvstore.sqlite.connection` (which imports dataclasses for its Options) so
that ``kvstore count`` in a fresh process (:mod:`kvstore.cli.fast`) opens files exactly as
every other connection does without paying for that import.
"""

from __future__ import annotations

import os


def file_uri(path: str, readonly: bool) -> str:
    """The URI of the file at ``path``: ``mode=ro`` or ``mode=rw``, ``immutable=1`` when needed."""
    # "file://" + an absolute path gives an empty URI authority; "file:" + "//x/..." would
    # read x as a host and fail.
    uri = f"file://{_quote(os.path.abspath(path))}?mode={'ro' if readonly else 'rw'}"
    if readonly and _read_immutable(path):
        uri += "&immutable=1"
    return uri


def _read_immutable(path: str) -> bool:
    """Read a WAL file as immutable when a reader cannot, or should not, create its -shm.

    A WAL database needs its -shm file. When a writer has the file open, the -shm exists and
    a read-only connection uses it (SQLite >= 3.22) and sees consistent snapshots. When none
    exists, every change is in the main file; SQLite would create -shm (and -wal) to read it,
    which fails in a directory the reader cannot write, and as another user (not root, whom
    SQLite hands the files back from) leaves files the owner cannot open later. Reading with
    ``immutable=1`` then writes nothing; the price is that a writer who starts meanwhile is
    not seen (README, Guarantees).
    """
    # SQLite names -wal/-shm/-journal after the file a symlink points to.
    if os.path.exists(os.path.realpath(path) + "-shm"):
        return False
    try:
        with open(path, "rb") as f:
            header = f.read(20)
        st = os.stat(path)
    except OSError:
        return False
    if len(header) < 20 or header[18] != 2:  # not WAL: a rollback-journal reader needs no -shm
        return False
    euid = os.geteuid()
    others_file = euid != 0 and st.st_uid != euid
    return others_file or not os.access(os.path.dirname(os.path.realpath(path)) or ".", os.W_OK)


def _quote(path: str) -> str:
    """Escape the characters that mean something in an SQLite URI filename."""
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
