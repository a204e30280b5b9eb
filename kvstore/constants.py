"""The schema revisions both backends share (one Alembic history); imports nothing (no cycles).

The SQLite file's own facts (application id, index names, header) are :mod:`kvstore.sqlite`'s.
"""

HEAD_REVISION = "0003"
"""The Alembic revision ``create_all()`` produces; tests/test_migrations.py checks it."""

KNOWN_REVISIONS = ("0001", "0002", "0003")
"""Every revision this version knows, oldest first."""
