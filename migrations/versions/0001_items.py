"""Create items(key, value) and the index on value.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# PRAGMA application_id marks the file as kvstore's ("KVST"); it stays on downgrade so the
# file is still recognised, at revision base, and can be upgraded again.
APPLICATION_ID = 0x4B565354


def postgresql_schema() -> str | None:
    """The store's schema when this runs on PostgreSQL (kvstore.postgresql.schema), else None.

    One history for both dialects: a PostgreSQL store is created whole by this revision's
    PostgreSQL branch (kvstore.postgresql.ddl); 0002 and 0003 reshape SQLite files only.
    """
    if op.get_bind().dialect.name != "postgresql":
        return None
    return str(context.config.attributes["schema"])


def run_on_postgresql(statements: list[str]) -> None:
    """Run DDL text as written: straight on psycopg, so no layer reads its % or : as parameters."""
    raw = op.get_bind().connection.dbapi_connection
    for statement in statements:
        raw.execute(statement)  # type: ignore[union-attr]


def upgrade() -> None:
    schema = postgresql_schema()
    if schema is not None:
        from kvstore.postgresql import ddl

        run_on_postgresql(ddl.create(schema))
        return
    op.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    # BLOB declares no type affinity: SQLite stores each key and value exactly as given.
    op.create_table(
        "items",
        sa.Column("key", sa.BLOB(), primary_key=True),
        sa.Column("value", sa.BLOB(), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_items_value", "items", ["value"])


def downgrade() -> None:
    schema = postgresql_schema()
    if schema is not None:
        from kvstore.postgresql import ddl

        run_on_postgresql(ddl.drop(schema))
        return
    op.drop_index("ix_items_value", table_name="items")
    op.drop_table("items")
