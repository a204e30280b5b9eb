"""Add counts(value, n), kept exact by triggers, and fill it from items.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kvstore.sqlite.triggers import TRIGGERS_V1, drop_statements

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return  # a PostgreSQL store is created whole by 0001 (see postgresql_schema() there)
    op.create_table(
        "counts",
        sa.Column("value", sa.BLOB(), primary_key=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.CheckConstraint("n > 0", name="ck_counts_n_positive"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "items_displaced",
        sa.Column("key", sa.BLOB(), primary_key=True),
        sa.Column("value", sa.BLOB(), nullable=False),
        sqlite_with_rowid=False,
    )
    for ddl in TRIGGERS_V1:
        op.execute(ddl)
    op.execute("INSERT INTO counts (value, n) SELECT value, count(*) FROM items GROUP BY value")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    for statement in drop_statements(TRIGGERS_V1):
        op.execute(statement)
    op.drop_table("items_displaced")
    op.drop_table("counts")
