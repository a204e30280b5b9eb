"""SQLAlchemy models of both backends: the single source of the schema and of the SQL text kvstore runs.

One set of models, dialect-aware: a column type that is SQLite's ``BLOB`` and PostgreSQL's
``bytea``; constraints and indexes that exist on one dialect only (``ddl_if``); tables of one
dialect only (``DIALECT``, honoured by :func:`create`); and the DDL SQLAlchemy cannot express
(PostgreSQL's functions, its ``counts`` view and its triggers; SQLite's triggers) attached to
table creation per dialect. New stores are made from these models and stamped at the head
revision; older ones are upgraded by the Alembic history, whose revisions branch on the
dialect (tests compare a migrated store's schema with a created one's, on both).

Public contract for other SQLite clients: ``items(key, value)`` holds the pairs and
``counts(value, n)`` holds, for each distinct stored value, how many keys hold it (no row
when none). ``items_displaced`` is internal bookkeeping for the triggers.

Importing this module imports SQLAlchemy (~150 ms), so the store only does so when it
creates a file; the hot statements are compiled ahead of time into :mod:`kvstore.sqlite.sql`,
and a test checks that those strings equal what these models compile to.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kvstore.constants import HEAD_REVISION, KNOWN_REVISIONS  # noqa: F401 (re-exported)
from kvstore.sqlite import APPLICATION_ID, COUNTS_INDEX, VALUE_INDEX, triggers  # noqa: F401 (re-exported)
from kvstore.postgresql import ddl as pg_ddl
from kvstore.sqlite.triggers import PREFIX, head as head_sql, size as size_sql


class StoredValue(sa.types.UserDefinedType[object]):
    """A column type declared ``BLOB``: SQLite's "no affinity", so '1', b'1' and 1 stay apart.

    Any declared type with TEXT, NUMERIC, INTEGER or REAL affinity (``ANY`` included, outside
    STRICT tables) would silently convert '1' to 1 or 1 to '1'. No bind or result processing:
    values go to and come from sqlite3 untouched.
    """

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "BLOB"


BYTES = StoredValue().with_variant(postgresql.BYTEA(), "postgresql")
"""Keys and values: typeless on SQLite (BLOB), kvstore's typed encoding in ``bytea`` on PostgreSQL."""

DIALECT = "dialect"
"""``Table.info`` key naming the one dialect a table exists on (absent: both)."""


class Base(DeclarativeBase):
    pass


def head(value: sa.ColumnElement[object]) -> sa.ColumnElement[object]:
    """What the value indexes hold of ``value``: the SQLAlchemy form of :func:`triggers.head`."""
    return sa.case((_long(value), sa.func.substr(value, _literal("1"), _literal(str(PREFIX)))), else_=value)


def size(value: sa.ColumnElement[object]) -> sa.ColumnElement[object]:
    """The second indexed column: the SQLAlchemy form of :func:`triggers.size`."""
    return sa.case((_long(value), sa.func.length(sa.cast(value, sa.BLOB))), else_=_literal("0"))


def _long(value: sa.ColumnElement[object]) -> sa.ColumnElement[bool]:
    kinds = [_literal("'text'"), _literal("'blob'")]
    return sa.and_(sa.func.typeof(value).in_(kinds), sa.func.length(sa.cast(value, sa.BLOB)) > _literal(str(PREFIX)))


def _literal(text: str) -> sa.ColumnElement[object]:
    """A constant written into the SQL text: SQLite matches an indexed expression only when the
    query's constants are literally the index's, never bound parameters."""
    return sa.literal_column(text)


def same_value(column: sa.ColumnElement[object], value: sa.ColumnElement[object]) -> sa.ColumnElement[bool]:
    """``column = value`` through the value index: the indexed expressions, then the full value."""
    return sa.and_(head(column) == head(value), size(column) == size(value), column == value)


def same_value_indexed(column: sa.ColumnElement[object], value: sa.ColumnElement[object]) -> sa.ColumnElement[bool]:
    """:func:`same_value`, reading a table row only for a long ``value``.

    A short value (or a number) is held whole in the index, so the index entry decides; the
    uncorrelated subquery is computed once per statement, and SQLite defers the row lookup
    until a column of it is read, which then never happens for a short value.
    """
    short = sa.select(size(value) == _literal("0")).scalar_subquery()
    return sa.and_(head(column) == head(value), size(column) == size(value), sa.or_(short, column == value))


class Item(Base):
    """One key and the value it holds: a rowid table, so a row of up to ~4 KB shares its page.

    (A WITHOUT ROWID table is an index B-tree, whose entries spill into unshared overflow
    pages beyond ~1 KB.) The value index holds a bounded prefix of each value (see
    :func:`head`) and the key, so ``keys_for()`` reads keys in order from the index alone.
    """

    __tablename__ = "items"
    __table_args__ = (
        sa.UniqueConstraint("key", name="uq_items_key").ddl_if(dialect="sqlite"),
        # PostgreSQL: a primary-key B-tree on the encoded key, and CHECKs of the encoding's shape.
        sa.PrimaryKeyConstraint("key", name="items_pkey").ddl_if(dialect="postgresql"),
        sa.CheckConstraint(sa.text(pg_ddl.shape("key")), name="items_key_valid").ddl_if(dialect="postgresql"),
        sa.CheckConstraint(sa.text(pg_ddl.shape("value")), name="items_value_valid").ddl_if(dialect="postgresql"),
    )
    __mapper_args__ = {"primary_key": ["key"]}
    key: Mapped[object] = mapped_column(BYTES, nullable=False)
    value: Mapped[object] = mapped_column(BYTES, nullable=False)


sa.Index(VALUE_INDEX, head(Item.__table__.c.value), size(Item.__table__.c.value), Item.__table__.c.key).ddl_if(
    dialect="sqlite")


class Count(Base):
    """How many keys currently hold ``value``; maintained by the triggers in :mod:`triggers`.

    A rowid table with an index on the same bounded prefix as items' value index, so a large
    value is stored once here rather than again in a primary-key B-tree.
    """

    __tablename__ = "counts"
    __table_args__ = (sa.CheckConstraint("n > 0", name="ck_counts_n_positive"), {"info": {DIALECT: "sqlite"}})
    __mapper_args__ = {"primary_key": ["value"]}
    value: Mapped[object] = mapped_column(StoredValue(), nullable=False)
    n: Mapped[int] = mapped_column(sa.Integer, nullable=False)


sa.Index(COUNTS_INDEX, head(Count.__table__.c.value), size(Count.__table__.c.value))


class Displaced(Base):
    """A row an INSERT/UPDATE may displace, noted by a BEFORE trigger: its rowid in items, the
    rowid of its value's counts row, and how it conflicts (see :mod:`kvstore.sqlite.triggers`)."""

    __tablename__ = "items_displaced"
    __table_args__ = {"info": {DIALECT: "sqlite"}}
    rid: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    cid: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    how: Mapped[str] = mapped_column(sa.Text, nullable=False)


class CountShard(Base):
    """PostgreSQL's counts: one row per value and writer's shard (kvstore.postgresql.ddl says why);
    its ``counts(value, n)`` is a view summing them."""

    __tablename__ = "count_shards"
    __table_args__ = {"info": {DIALECT: "postgresql"}, "postgresql_with": {"fillfactor": 50}}
    vid: Mapped[bytes] = mapped_column(postgresql.BYTEA, primary_key=True)
    shard: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    value: Mapped[bytes] = mapped_column(postgresql.BYTEA, nullable=False)
    n: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)


metadata = Base.metadata
items: sa.Table = metadata.tables["items"]
counts: sa.Table = metadata.tables["counts"]
displaced: sa.Table = metadata.tables["items_displaced"]
count_shards: sa.Table = metadata.tables["count_shards"]

# SQLite: the triggers reference all three tables, so attach them after the last one is created.
for _ddl in triggers.CURRENT:
    sa.event.listen(displaced, "after_create", sa.DDL(_ddl))  # type: ignore[no-untyped-call]


def _postgresql(statements: Callable[[str], list[str]]) -> Callable[..., None]:
    """A DDL listener running ``statements(schema)`` on PostgreSQL, in the schema being created."""
    def run(target: sa.Table | sa.MetaData, connection: sa.Connection, **kw: object) -> None:
        if connection.dialect.name == "postgresql":
            schema = connection.get_execution_options().get("schema_translate_map", {}).get(None)
            for statement in statements(schema):
                connection.exec_driver_sql(statement)
    return run


# PostgreSQL: the functions before every table (items' index uses vid()), the view and the
# triggers after all of them.
sa.event.listen(metadata, "before_create", _postgresql(pg_ddl.functions))
sa.event.listen(items, "after_create", _postgresql(pg_ddl.value_index))
sa.event.listen(metadata, "after_create", _postgresql(pg_ddl.view_and_triggers))


def create(connection: sa.Connection) -> None:
    """Create every table of ``connection``'s dialect (on PostgreSQL, in the schema its
    ``schema_translate_map`` maps None to), with the DDL attached to them."""
    dialect = connection.dialect.name
    tables = [table for table in metadata.sorted_tables if table.info.get(DIALECT, dialect) == dialect]
    metadata.create_all(connection, tables=tables)


def _groups(limit: str = "") -> str:
    """A recursive CTE ``g(p, s)`` of the value index's distinct (head, size) pairs, in index
    order, found by a skip-scan: one index seek per pair (at most ``limit`` pairs)."""
    p, s, pi, si = head_sql("value"), size_sql("value"), head_sql("i.value"), size_sql("i.value")
    return f"""WITH RECURSIVE g(p, s) AS (
    SELECT * FROM (SELECT {p}, {s} FROM items WHERE {p} IS NOT NULL ORDER BY {p}, {s} LIMIT 1)
    UNION ALL
    SELECT {pi}, {si} FROM g JOIN items AS i ON i.rowid = coalesce(
        (SELECT rowid FROM items WHERE {p} = g.p AND {s} > g.s ORDER BY {s} LIMIT 1),
        (SELECT rowid FROM items WHERE {p} > g.p ORDER BY {p}, {s} LIMIT 1)){limit}
)"""


def _recount() -> str:
    """``SELECT value, count(*) FROM items GROUP BY value`` for few distinct values.

    A plain GROUP BY value would sort every row, since no index holds whole values. This walks
    the value index's distinct (head, size) pairs (:func:`_groups`); a short value's group is
    counted from the index alone (its head is the value), a long one's rows are read and
    grouped by their full value. NULL values (possible only in an items table another program
    recreated) are left out: counts.value cannot hold them.
    """
    p, s, pi, si = head_sql("value"), size_sql("value"), head_sql("i.value"), size_sql("i.value")
    return f"""{_groups()}
SELECT p, (SELECT count(*) FROM items WHERE {p} = g.p AND {s} = 0) FROM g WHERE s = 0
UNION ALL
SELECT i.value, count(*) FROM g JOIN items AS i ON {pi} = g.p AND {si} = g.s WHERE g.s > 0 GROUP BY i.value"""


def _recount_scan() -> str:
    """The same recount for many distinct values: one pass over the value index.

    Short values are grouped in index order as they stream by (no sort); long ones are read and
    grouped by their full value. Costs about the same whatever the number of distinct values,
    where :func:`_recount` costs one seek per distinct value (measured at 1M items: 0.4 s
    against 0.1 s for 6 values, 2.8 s against 6.2 s for 1M distinct values).
    """
    p, s = head_sql("value"), size_sql("value")
    return f"""SELECT {p}, count(*) FROM items WHERE {p} IS NOT NULL AND {s} = 0 GROUP BY {p}, {s}
UNION ALL
SELECT value, count(*) FROM items WHERE {p} IS NOT NULL AND {s} > 0 GROUP BY value"""


_RECOUNT, _RECOUNT_SCAN = _recount(), _recount_scan()


def hot_statements() -> dict[str, str]:
    """The SQL the store runs, compiled from the models; :mod:`kvstore.sqlite.sql` holds a copy.

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
    count_items = sa.select(sa.func.count()).select_from(items).where(same_value_indexed(items.c.value, value))
    scan_items = sa.select(sa.func.count()).select_from(items).where(items.c.value == value)
    by_key = items.c.key.asc()
    statements: dict[str, sa.sql.Executable] = {
        "GET": sa.select(items.c.value).where(items.c.key == key),
        "UPSERT": upsert,
        # IS rather than =: a key read from the store may be NULL in an items table another
        # program recreated without NOT NULL; for every other key IS is = (same plan).
        "DELETE": sa.delete(items).where(items.c.key.is_not_distinct_from(key)),
        "POP": sa.delete(items).where(items.c.key.is_not_distinct_from(key)).returning(items.c.value),
        # popitem() removes the very pair it read, so rows sharing a key (possible only in an
        # items table recreated without kvstore's UNIQUE (key)) are never removed unreturned.
        "POP_ROW": sa.delete(items)
        .where(items.c.key.is_not_distinct_from(key), items.c.value.is_not_distinct_from(value))
        .returning(items.c.value),
        # len() sums counts (one row per distinct value) instead of scanning items.
        "LEN": sa.select(sa.func.coalesce(sa.func.sum(counts.c.n), sa.literal_column("0"))),
        "COUNT": sa.select(counts.c.n).where(same_value(counts.c.value, value)),
        # COUNT for a value the index holds whole (head = the value, size 0: kvstore.sqlite.reads
        # decides which), bound as it is: the indexed expressions are not computed on ?1 at all,
        # and the index entry decides (a row whose size is 0 holds its head as its value).
        "COUNT_SHORT": sa.select(counts.c.n).where(head(counts.c.value) == value, size(counts.c.value) == _literal("0")),
        "COUNT_GROUP_BY": count_items,
        "COUNT_SCAN": scan_items,
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
        "KEYS_FOR_FIRST": sa.select(items.c.key).where(same_value_indexed(items.c.value, value)).order_by(by_key),
        "KEYS_FOR_AFTER": sa.select(items.c.key)
        .where(same_value_indexed(items.c.value, value), items.c.key > key)
        .order_by(by_key),
        # NULL values (only an items table recreated without NOT NULL can hold them) cannot be
        # counted: counts.value is NOT NULL. verify() lists such rows instead.
        # Recounting: the skip-scan for few distinct values, the scan for many; RECOUNT_GROUPS
        # counts the distinct (head, size) pairs up to ?1 to choose (kvstore.sqlite.upkeep.recount_sql).
        "RECOUNT": sa.text(_RECOUNT),
        "REBUILD_COUNTS": sa.text(f"INSERT INTO counts (value, n) {_RECOUNT}"),
        "RECOUNT_SCAN": sa.text(_RECOUNT_SCAN),
        "REBUILD_COUNTS_SCAN": sa.text(f"INSERT INTO counts (value, n) {_RECOUNT_SCAN}"),
        "RECOUNT_GROUPS": sa.text(f"{_groups(' LIMIT ?1')}\nSELECT count(*) FROM g"),
        "ROWID_BOUND": sa.text("SELECT max(rowid) FROM items"),
        # stats(): bytes per b-tree from the dbstat virtual table, and row counts.
        "SIZES": sa.text("SELECT name, sum(pgsize) FROM dbstat WHERE name IN (?, ?, ?, ?, ?) GROUP BY name"),
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
    # NOT INDEXED, and a unary + that makes the term unusable for any index search: SQLite
    # reads every row of items (the + was needed while items was a WITHOUT ROWID table, for
    # which NOT INDEXED alone did not stop a search of a covering index; it costs nothing).
    compiled["COUNT_SCAN"] = compiled["COUNT_SCAN"].replace(
        "FROM items \nWHERE items.value", "FROM items NOT INDEXED \nWHERE +items.value"
    )
    return compiled


def definitions() -> dict[str, str]:
    """The CREATE statements of kvstore's tables and value index, as ``sqlite_master`` keeps them.

    ``create_all()`` runs exactly these (SQLite stores a statement's text from ``CREATE`` on),
    and so do the migrations (tests/test_migrations.py); :mod:`kvstore.sqlite.upkeep` compares the
    file's objects with the copies in :mod:`kvstore.sqlite.sql` and recreates objects from them.
    """
    from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement

    dialect = sqlite.dialect()
    table = metadata.tables
    (value_index,) = table["items"].indexes
    (counts_index,) = table["counts"].indexes
    ddl: dict[str, ExecutableDDLElement] = {
        "ITEMS_TABLE": CreateTable(table["items"]),
        "COUNTS_TABLE": CreateTable(table["counts"]),
        "DISPLACED_TABLE": CreateTable(table["items_displaced"]),
        "VALUE_INDEX": CreateIndex(value_index),
        "COUNTS_INDEX": CreateIndex(counts_index),
    }
    return {name: str(stmt.compile(dialect=dialect)).strip() for name, stmt in ddl.items()}


def compile_sql(stmt: sa.sql.Executable) -> str:
    """Compile ``stmt`` to the SQL text sqlite3 executes, bound values left as ``?1``, ``?2``...

    Numbered, because a statement that finds a value through the value index names it several
    times (:func:`same_value`) and is still passed it once; the numbers follow first use.
    """
    assert isinstance(stmt, sa.sql.ClauseElement)
    return re.sub(r":(\d+)", r"?\1", str(stmt.compile(dialect=sqlite.dialect(paramstyle="numeric"))))


if __name__ == "__main__":  # Regenerate kvstore/sqlite/sql.py's constants: python -m kvstore.schema
    for name, sql in {**hot_statements(), **definitions()}.items():
        print(f"{name} = {sql!r}")
