"""Create items(key, value) and the index on value.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# PRAGMA application_id marks the file as kvstore's ("KVST"); it stays on downgrade so the
# file is still recognised, at revision base, and can be upgraded again.
APPLICATION_ID = 0x4B565354


def upgrade() -> None:
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
    op.drop_index("ix_items_value", table_name="items")
    op.drop_table("items")
