"""The ``kvstore`` command line: ``kvstore [--timer] [--timeout S] COMMAND DB ARGS [OPTIONS]``.

:func:`main` is the console script. It first offers the command line to :mod:`.fast`, which
answers the plain ``kvstore count DB VALUE`` on a file in its ordinary state with sqlite3
alone; everything else runs through the click group in :mod:`.group` (imported only then,
with click). ``cli``, ``KvstoreGroup`` and ``COMMANDS`` are that module's, re-exported.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads any such name)
if TYPE_CHECKING:
    from typing import Any

    from kvstore.cli.group import COMMANDS, KvstoreGroup, cli

__all__ = ["COMMANDS", "KvstoreGroup", "cli", "main"]


def main() -> None:
    """Console-script entry point."""
    from kvstore.cli import fast

    if fast.count(sys.argv[1:]):
        return
    from kvstore.cli.group import cli

    cli(prog_name="kvstore")


def __getattr__(name: str) -> Any:
    if name in ("COMMANDS", "KvstoreGroup", "cli"):
        from kvstore.cli import group

        return getattr(group, name)
    raise AttributeError(f"module 'kvstore.cli' has no attribute {name!r}")
