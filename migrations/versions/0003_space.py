"""Rowid tables and a bounded value index, so that a value of any size costs about its size.

Revision 0002's ``items`` and ``counts`` are WITHOUT ROWID tables, and ``ix_items_value``
indexes whole values; in an index B-tree an entry over ~1,000 bytes (on 4 KiB pages) spills
into an overflow page it shares with nothing. Here both become rowid tables, and their value
indexes hold a bounded prefix of each value (see kvstore.sqlite.triggers.head). The public contract
(``items(key, value)``, ``counts(value, n)``) is unchanged.

The upgrade copies every row once: the old table is renamed aside, the new one created with its
final text (``ALTER TABLE ... RENAME`` would rewrite the stored definition), filled in key
order, and the old one dropped; counts are recomputed from the old table through its value
index, so they are exact afterwards whatever they said before. Indexes and triggers another
program attached to ``items`` are recreated. kvstore runs it in one transaction: all or nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

from kvstore.sqlite.triggers import TRIGGERS_V1, TRIGGERS_V2, drop_statements

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The text SQLite keeps for each object, as kvstore.schema.definitions() renders it at 0003.
ITEMS_TABLE = (
    'CREATE TABLE items (\n\t"key" BLOB NOT NULL, \n\tvalue BLOB NOT NULL, \n\tCONSTRAINT uq_items_key UNIQUE ("key")\n)'
)
COUNTS_TABLE = (
    "CREATE TABLE counts (\n\tvalue BLOB NOT NULL, \n\tn INTEGER NOT NULL, \n\t"
    "CONSTRAINT ck_counts_n_positive CHECK (n > 0)\n)"
)
DISPLACED_TABLE = (
    "CREATE TABLE items_displaced (\n\trid INTEGER NOT NULL, \n\tcid INTEGER, \n\thow TEXT NOT NULL, \n\t"
    "PRIMARY KEY (rid)\n)"
)
_LONG = "typeof(value) IN ('text', 'blob') AND length(CAST(value AS BLOB)) > 32"
_HEAD = f"CASE WHEN ({_LONG}) THEN substr(value, 1, 32) ELSE value END"
_SIZE = f"CASE WHEN ({_LONG}) THEN length(CAST(value AS BLOB)) ELSE 0 END"
VALUE_INDEX = f'CREATE INDEX ix_items_value ON items ({_HEAD}, {_SIZE}, "key")'
COUNTS_INDEX = f"CREATE INDEX ix_counts_value ON counts ({_HEAD}, {_SIZE})"

_OLD_ITEMS = "kvstore_items_old"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return  # a PostgreSQL store is created whole by 0001 (see postgresql_schema() there)
    for statement in drop_statements(TRIGGERS_V1):
        op.execute(statement)
    with _items_rebuilt() as old:
        op.execute(ITEMS_TABLE)
        op.execute(f'INSERT INTO items ("key", value) SELECT "key", value FROM {old} ORDER BY "key"')
        op.execute("DROP TABLE counts")
        op.execute(COUNTS_TABLE)
        # GROUP BY over the old table's index on whole values: no sort.
        op.execute(f"INSERT INTO counts (value, n) SELECT value, count(*) FROM {old} WHERE value IS NOT NULL GROUP BY value")
        op.execute(COUNTS_INDEX)
    op.execute(VALUE_INDEX)
    op.execute("DROP TABLE items_displaced")
    op.execute(DISPLACED_TABLE)
    for ddl in TRIGGERS_V2:
        op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    for statement in drop_statements(TRIGGERS_V2):
        op.execute(statement)
    with _items_rebuilt() as old:
        # Revision 0001's and 0002's definitions, as those migrations create them.
        op.create_table(
            "items",
            sa.Column("key", sa.BLOB(), primary_key=True),
            sa.Column("value", sa.BLOB(), nullable=False),
            sqlite_with_rowid=False,
        )
        op.execute(f'INSERT INTO items ("key", value) SELECT "key", value FROM {old}')
    op.create_index("ix_items_value", "items", ["value"])
    op.execute("DROP TABLE counts")
    op.create_table(
        "counts",
        sa.Column("value", sa.BLOB(), primary_key=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.CheckConstraint("n > 0", name="ck_counts_n_positive"),
        sqlite_with_rowid=False,
    )
    op.execute("INSERT INTO counts (value, n) SELECT value, count(*) FROM items WHERE value IS NOT NULL GROUP BY value")
    op.drop_table("items_displaced")
    op.create_table(
        "items_displaced",
        sa.Column("key", sa.BLOB(), primary_key=True),
        sa.Column("value", sa.BLOB(), nullable=False),
        sqlite_with_rowid=False,
    )
    for ddl in TRIGGERS_V1:
        op.execute(ddl)


@contextmanager
def _items_rebuilt() -> Iterator[str]:
    """Move ``items`` aside; the block creates and fills the new one from the old table, whose
    name it gets. Afterwards drop the old table and recreate the indexes and triggers another
    program had attached to items (kvstore's own triggers are dropped beforehand)."""
    conn = op.get_bind()
    kept = [text for (text,) in conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL "
        "AND lower(tbl_name) = 'items' AND lower(name) <> 'ix_items_value'"
    )]
    (legacy,) = conn.exec_driver_sql("PRAGMA legacy_alter_table").one()
    # Legacy renaming leaves views and other tables' triggers that name "items" as they are:
    # afterwards they name the new table.
    conn.exec_driver_sql("PRAGMA legacy_alter_table = ON")
    try:
        conn.exec_driver_sql(f"ALTER TABLE items RENAME TO {_OLD_ITEMS}")
    finally:
        conn.exec_driver_sql(f"PRAGMA legacy_alter_table = {int(legacy)}")
    yield _OLD_ITEMS
    conn.exec_driver_sql(f"DROP TABLE {_OLD_ITEMS}")
    for text in kept:
        conn.exec_driver_sql(text)
