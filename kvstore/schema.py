"""SQLAlchemy models: the single source of the schema and of the SQL text kvstore runs.

Public contract for other SQLite clients: ``items(key, value)`` holds the pairs and
``counts(value, n)`` holds, for each distinct stored value, how many keys hold it (no row
when none). ``items_displaced`` is internal bookkeeping for the triggers.

Importing this module imports SQLAlchemy (~150 ms), so the store only does so when it
creates a file; the hot statements are compiled ahead of time into :mod:`kvstore.sql`, and a
test checks that those strings equal what these models compile to.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kvstore import triggers
from kvstore.constants import APPLICATION_ID, HEAD_REVISION, KNOWN_REVISIONS, VALUE_INDEX  # noqa: F401 (re-exported)


class StoredValue(sa.types.UserDefinedType[object]):
    """A column type declared ``BLOB``: SQLite's "no affinity", so '1', b'1' and 1 stay apart.

    Any declared type with TEXT, NUMERIC, INTEGER or REAL affinity (``ANY`` included, outside
    STRICT tables) would silently convert '1' to 1 or 1 to '1'. No bind or result processing:
    values go to and come from sqlite3 untouched.
    """

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "BLOB"


class Base(DeclarativeBase):
    pass


class Item(Base):
    """One key and the value it holds. WITHOUT ROWID: the table *is* the key's B-tree."""

    __tablename__ = "items"
    __table_args__ = (
        sa.Index(VALUE_INDEX, "value"),
        {"sqlite_with_rowid": False},
    )
    key: Mapped[object] = mapped_column(StoredValue(), primary_key=True)
    value: Mapped[object] = mapped_column(StoredValue(), nullable=False)


class Count(Base):
    """How many keys currently hold ``value``; maintained by the triggers in :mod:`triggers`."""

    __tablename__ = "counts"
    __table_args__ = (
        sa.CheckConstraint("n > 0", name="ck_counts_n_positive"),
        {"sqlite_with_rowid": False},
    )
    value: Mapped[object] = mapped_column(StoredValue(), primary_key=True)
    n: Mapped[int] = mapped_column(sa.Integer, nullable=False)


class Displaced(Base):
    """The row a BEFORE trigger saw holding a key that an INSERT/UPDATE is about to take."""

    __tablename__ = "items_displaced"
    __table_args__ = ({"sqlite_with_rowid": False},)
    key: Mapped[object] = mapped_column(StoredValue(), primary_key=True)
    value: Mapped[object] = mapped_column(StoredValue(), nullable=False)


metadata = Base.metadata
items: sa.Table = metadata.tables["items"]
counts: sa.Table = metadata.tables["counts"]
displaced: sa.Table = metadata.tables["items_displaced"]

# The triggers reference all three tables, so attach them after the last one is created.
for _ddl in triggers.CURRENT:
    sa.event.listen(displaced, "after_create", sa.DDL(_ddl))  # type: ignore[no-untyped-call]


def hot_statements() -> dict[str, str]:
    """The SQL the store runs, compiled from the models; :mod:`kvstore.sql` holds a copy.

    SQLAlchemy renders no SQLite index hints, so the two deliberately slow count strategies
    get theirs added to the compiled text here.
    """
    key: sa.BindParameter[object] = sa.bindparam("key")
    value: sa.BindParameter[object] = sa.bindparam("value")
    upsert = sqlite.insert(items).values(key=key, value=value)
    upsert = upsert.on_conflict_do_update(
        index_elements=[items.c.key], set_={"value": upsert.excluded.value}
    )
    stop: sa.BindParameter[object] = sa.bindparam("stop")
    adding = sqlite.insert(items).values(key=key, value=value)
    old, delta = items.c.value, adding.excluded.value
    integer, real, zero = (sa.literal_column(text, sa.Integer()) for text in ("'integer'", "'real'", "0"))
    int64 = sa.and_(sa.func.typeof(old) == integer, sa.func.typeof(delta) == integer)
    incr = adding.on_conflict_do_update(
        index_elements=[items.c.key],
        set_={"value": old + delta},
        where=sa.and_(
            sa.or_(sa.func.typeof(old) == integer, sa.func.typeof(old) == real),
            sa.not_(sa.and_(int64, sa.or_(
                sa.and_(delta > zero, old > sa.literal_column(str(2**63 - 1)) - delta),
                sa.and_(delta < zero, old < sa.literal_column(f"({-(2**63 - 1)} - 1)") - delta),
            ))),
        ),
    ).returning(items.c.value)
    n = sa.func.count().label("n")
    count_items = sa.select(sa.func.count()).select_from(items).where(items.c.value == value)
    by_key = items.c.key.asc()
    statements: dict[str, sa.sql.Executable] = {
        "GET": sa.select(items.c.value).where(items.c.key == key),
        "UPSERT": upsert,
        # IS rather than =: a key read from the store may be NULL in an items table another
        # program recreated without NOT NULL; for every other key IS is = (same plan).
        "DELETE": sa.delete(items).where(items.c.key.is_not_distinct_from(key)),
        "POP": sa.delete(items).where(items.c.key.is_not_distinct_from(key)).returning(items.c.value),
        # popitem() removes the very pair it read, so rows sharing a key (possible only in an
        # items table recreated without kvstore's primary key) are never removed unreturned.
        "POP_ROW": sa.delete(items)
        .where(items.c.key.is_not_distinct_from(key), items.c.value.is_not_distinct_from(value))
        .returning(items.c.value),
        # len() sums counts (one row per distinct value) instead of scanning items.
        "LEN": sa.select(sa.func.coalesce(sa.func.sum(counts.c.n), sa.literal_column("0"))),
        "COUNT": sa.select(counts.c.n).where(counts.c.value == value),
        "COUNT_GROUP_BY": count_items,
        "COUNT_SCAN": count_items,
        # Ties broken by value order (ints and floats, then text, then bytes), so that
        # most_common() is deterministic; Counter breaks them by insertion order instead.
        "COUNTS": sa.select(counts.c.value, counts.c.n).order_by(counts.c.n.desc(), counts.c.value.asc()),
        "HELD": sa.select(sa.func.coalesce(sa.func.sum(counts.c.n), sa.literal_column("0")), sa.func.count()),
        "ITEMS_FIRST": sa.select(items.c.key, items.c.value).order_by(by_key),
        "ITEMS_AFTER": sa.select(items.c.key, items.c.value).where(items.c.key > key).order_by(by_key),
        # Key ranges (keys()/items() with start, stop or prefix): the first page takes key >=
        # start, later pages key > the last one seen; stop is exclusive.
        "ITEMS_FROM": sa.select(items.c.key, items.c.value).where(items.c.key >= key).order_by(by_key),
        "ITEMS_FROM_BEFORE": sa.select(items.c.key, items.c.value)
        .where(items.c.key >= key, items.c.key < stop).order_by(by_key),
        "ITEMS_AFTER_BEFORE": sa.select(items.c.key, items.c.value)
        .where(items.c.key > key, items.c.key < stop).order_by(by_key),
        "KEYS_FIRST": sa.select(items.c.key).order_by(by_key),
        "KEYS_FROM": sa.select(items.c.key).where(items.c.key >= key).order_by(by_key),
        "KEYS_AFTER": sa.select(items.c.key).where(items.c.key > key).order_by(by_key),
        "KEYS_FROM_BEFORE": sa.select(items.c.key).where(items.c.key >= key, items.c.key < stop).order_by(by_key),
        "KEYS_AFTER_BEFORE": sa.select(items.c.key).where(items.c.key > key, items.c.key < stop).order_by(by_key),
        # incr() in one statement: adds to a number, or inserts delta for a missing key. The
        # WHERE refuses a stored value that is not a number (SQLite would read 'abc' as 0) and
        # an int sum beyond 64 bits (SQLite would turn it into a float); then nothing is
        # returned and incr() says which. (-2**63 is written as an expression: the literal
        # 9223372036854775808 does not fit an int, so SQLite would read it as a float.)
        "INCR": incr,
        "KEYS_FOR_FIRST": sa.select(items.c.key).where(items.c.value == value).order_by(by_key),
        "KEYS_FOR_AFTER": sa.select(items.c.key)
        .where(items.c.value == value, items.c.key > key)
        .order_by(by_key),
        # NULL values (only an items table recreated without NOT NULL can hold them) cannot be
        # counted: counts.value is NOT NULL. verify() lists such rows instead.
        "RECOUNT": sa.select(items.c.value, n).where(items.c.value.is_not(None)).group_by(items.c.value),
        "REBUILD_COUNTS": sa.insert(counts).from_select(
            ["value", "n"],
            sa.select(items.c.value, n).where(items.c.value.is_not(None)).group_by(items.c.value),
        ),
        # stats(): bytes per b-tree from the dbstat virtual table, and row counts.
        "SIZES": sa.text("SELECT name, sum(pgsize) FROM dbstat WHERE name IN (?, ?, ?) GROUP BY name"),
        "ITEM_ROWS": sa.select(sa.func.count()).select_from(items),
        "VALUE_ROWS": sa.select(sa.func.count()).select_from(counts),
        "CLEAR_COUNTS": sa.delete(counts),
        "CLEAR_DISPLACED": sa.delete(displaced),
        "CLEAR_ITEMS": sa.delete(items),
    }
    compiled = {name: compile_sql(stmt) for name, stmt in statements.items()}
    compiled["COUNT_GROUP_BY"] = compiled["COUNT_GROUP_BY"].replace(
        "FROM items", f"FROM items INDEXED BY {VALUE_INDEX}"
    )
    # Unary + makes the term unusable for an index search, so SQLite reads every row (it
    # picks the narrowest b-tree that holds them all). NOT INDEXED alone does not stop a
    # WITHOUT ROWID table from searching a covering index.
    compiled["COUNT_SCAN"] = compiled["COUNT_SCAN"].replace(
        "FROM items \nWHERE items.value", "FROM items NOT INDEXED \nWHERE +items.value"
    )
    return compiled


def definitions() -> dict[str, str]:
    """The CREATE statements of kvstore's tables and value index, as ``sqlite_master`` keeps them.

    ``create_all()`` runs exactly these (SQLite stores a statement's text from ``CREATE`` on),
    and so do the migrations (tests/test_migrations.py); :mod:`kvstore.upkeep` compares the
    file's objects with the copies in :mod:`kvstore.sql` and recreates objects from them.
    """
    from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement

    dialect = sqlite.dialect()
    table = metadata.tables
    (value_index,) = table["items"].indexes
    ddl: dict[str, ExecutableDDLElement] = {
        "ITEMS_TABLE": CreateTable(table["items"]),
        "COUNTS_TABLE": CreateTable(table["counts"]),
        "DISPLACED_TABLE": CreateTable(table["items_displaced"]),
        "VALUE_INDEX": CreateIndex(value_index),
    }
    return {name: str(stmt.compile(dialect=dialect)).lstrip() for name, stmt in ddl.items()}


def compile_sql(stmt: sa.sql.Executable) -> str:
    """Compile ``stmt`` to the qmark SQL text sqlite3 executes, bound values left as ``?``."""
    assert isinstance(stmt, sa.sql.ClauseElement)
    return str(stmt.compile(dialect=sqlite.dialect(paramstyle="qmark")))


if __name__ == "__main__":  # Regenerate kvstore/sql.py's constants: python -m kvstore.schema
    for name, sql in {**hot_statements(), **definitions()}.items():
        print(f"{name} = {sql!r}")
