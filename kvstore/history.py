"""The one Alembic history both backends share (``migrations/``): where its scripts are, and a
Config built in code (no alembic.ini needed, the host's logging untouched).

SQLite files (kvstore.sqlite.migrate) and PostgreSQL schemas (kvstore.postgresql.schema) run
the same revisions; each revision branches on the dialect where the two differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kvstore.errors import Error


def alembic_config(connection: Any = None) -> Any:
    """An Alembic Config built in code: no alembic.ini needed, the host's logging untouched."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_location() -> Path:
    """The Alembic scripts: inside the package in a wheel, the repo's migrations/ otherwise."""
    package = Path(__file__).resolve().parent  # kvstore/
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise Error("kvstore's migration scripts are missing from this installation; reinstall kvstore")
