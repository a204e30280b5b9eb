"""The PostgreSQL DDL (kvstore.postgresql.ddl) through raw psycopg: the SQL encoding functions
produce the bytes kvstore.postgresql.encoding produces, and the triggers keep ``counts`` exact
after every statement of every write form, inside the writer's own transaction too.

Every test makes its store in a fresh schema (the pg_schema fixture names it). The concurrency
test prints its throughput (run with -s to see it).
"""

from __future__ import annotations

import math
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, example, given, settings

from kvstore.postgresql import ddl, encoding
from tests.helpers import SCALE

psycopg = pytest.importorskip("psycopg")
from psycopg import errors  # noqa: E402

pytestmark = pytest.mark.postgresql

DB_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
FLOATS = st.floats(allow_nan=False)  # with ±inf, ±0.0 and subnormals


# -- fixtures and helpers ---------------------------------------------------------------------------------------------


def make_store(conn: Any, schema: str) -> str:
    """CREATE SCHEMA then ddl.create() in one transaction; returns the quoted schema."""
    s = ddl.quoted(schema)
    with conn.transaction():
        conn.execute(f"CREATE SCHEMA {s}")
        for statement in ddl.create(schema):
            conn.execute(statement)
    return s


@pytest.fixture
def conn(pg_url: str) -> Iterator[Any]:
    with psycopg.connect(pg_url, autocommit=True) as c:
        yield c


@pytest.fixture
def s(conn: Any, pg_schema: str) -> str:
    """A fresh store; the value is the quoted schema, for f-strings."""
    return make_store(conn, pg_schema)


def one(conn: Any, query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def check_counts(conn: Any, s: str, where: str = "") -> None:
    """counts equals the truth recomputed from items, as vid -> n; every shard row is consistent; problems() is empty."""
    truth = {bytes(v): n for v, n in conn.execute(f"SELECT {s}.vid(value), count(*) FROM {s}.items GROUP BY 1")}
    shown = [(bytes(v), n) for v, n in conn.execute(f"SELECT {s}.vid(value), n FROM {s}.counts")]
    assert len({v for v, _ in shown}) == len(shown), f"two counts rows with one identity {where}"
    assert dict(shown) == truth, where
    for vid, value, n in conn.execute(f"SELECT vid, value, n FROM {s}.count_shards"):
        assert n != 0, f"a shard row left at n = 0 {where}"
        assert encoding.vid(bytes(value)) == bytes(vid), f"a shard's value has another identity {where}"
    assert conn.execute(ddl.problems(s[1:-1].replace('""', '"'))).fetchall() == [], where


# -- the encoding functions -------------------------------------------------------------------------------------------


@DB_SETTINGS
@given(x=INT64)
@example(x=0)
@example(x=1)
@example(x=-1)
@example(x=-(1 << 63))
@example(x=(1 << 63) - 1)
@example(x=(1 << 53) + 1)
@example(x=-(1 << 53) - 1)
def test_kv_int(conn: Any, s: str, x: int) -> None:
    data, vid, shown, valid = conn.execute(
        f"SELECT {s}.kv(%s::bigint) AS v, {s}.vid({s}.kv(%s::bigint)), {s}.kv_show({s}.kv(%s::bigint)), {s}.valid({s}.kv(%s::bigint))",
        (x, x, x, x),
    ).fetchone()
    assert bytes(data) == encoding.encode(x)
    assert bytes(vid) == encoding.vid(encoding.encode(x))
    assert shown == str(x) and int(shown) == x
    assert valid is True


@DB_SETTINGS
@given(x=FLOATS)
@example(x=0.0)
@example(x=-0.0)
@example(x=math.inf)
@example(x=-math.inf)
@example(x=5e-324)
@example(x=-5e-324)
@example(x=2.2250738585072009e-308)  # the largest subnormal
@example(x=2.2250738585072014e-308)  # the smallest normal
@example(x=1.7976931348623157e308)
@example(x=float(2**53))
@example(x=4.2)
def test_kv_float(conn: Any, s: str, x: float) -> None:
    data, vid, shown, valid = conn.execute(
        f"SELECT {s}.kv(%s::float8), {s}.vid({s}.kv(%s::float8)), {s}.kv_show({s}.kv(%s::float8)), {s}.valid({s}.kv(%s::float8))",
        (x, x, x, x),
    ).fetchone()
    assert bytes(data) == encoding.encode(x)
    assert bytes(vid) == encoding.vid(encoding.encode(x))
    back = float(shown)
    assert back == x and math.copysign(1.0, back) == math.copysign(1.0, x), shown
    assert valid is True


def test_kv_numbers_in_bulk(conn: Any, s: str) -> None:
    """Many random bit patterns at once (every exponent, subnormals, both signs), ints of every bit length."""
    rng = random.Random(20240611)
    floats = [struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0] for _ in range(20000)]
    floats += [struct.unpack(">d", struct.pack(">Q", rng.getrandbits(52) | (rng.getrandbits(1) << 63)))[0] for _ in range(2000)]
    floats = [f for f in floats if not math.isnan(f)]
    ints = [rng.getrandbits(rng.randint(1, 64)) - (1 << 63) for _ in range(10000)] + [rng.getrandbits(rng.randint(0, 62)) for _ in range(10000)]
    rows = conn.execute(f"SELECT {s}.kv(f), {s}.kv_show({s}.kv(f)) FROM unnest(%s::float8[]) WITH ORDINALITY AS t(f, i) ORDER BY i", (floats,))
    for f, (data, shown) in zip(floats, rows, strict=True):
        assert bytes(data) == encoding.encode(f), f
        assert float(shown) == f and math.copysign(1.0, float(shown)) == math.copysign(1.0, f), (f, shown)
    rows = conn.execute(f"SELECT {s}.kv(i), {s}.kv_show({s}.kv(i)) FROM unnest(%s::int8[]) WITH ORDINALITY AS t(i, o) ORDER BY o", (ints,))
    for i, (data, shown) in zip(ints, rows, strict=True):
        assert bytes(data) == encoding.encode(i) and shown == str(i), i


@DB_SETTINGS
@given(x=st.text())
@example(x="")
@example(x="apple")
@example(x="\U0001f600 non-BMP and é")
@example(x="x" * 600)
def test_kv_text(conn: Any, s: str, x: str) -> None:
    """kv(text) for text PostgreSQL can hold (no NUL); kv_show and valid() for any text, NUL included, as bytea."""
    stored = encoding.encode(x)
    if "\x00" not in x:
        assert bytes(one(conn, f"SELECT {s}.kv(%s::text)", (x,))) == stored
    vid, shown, valid = conn.execute(f"SELECT {s}.vid(%s), {s}.kv_show(%s), {s}.valid(%s)", (stored, stored, stored)).fetchone()
    assert bytes(vid) == encoding.vid(stored)
    assert shown == x.replace("\x00", "\ufffd")  # text cannot hold NUL: shown as U+FFFD
    assert valid is True


@DB_SETTINGS
@given(x=st.binary(max_size=1100))
@example(x=b"")
@example(x=b"\x00\xff")
@example(x=bytes(511))  # an encoding of 512 bytes: counted by itself
@example(x=bytes(512))  # 513 bytes: counted by its hash
def test_kv_bytes(conn: Any, s: str, x: bytes) -> None:
    data, vid, shown, valid = conn.execute(
        f"SELECT {s}.kv(%s::bytea), {s}.vid({s}.kv(%s::bytea)), {s}.kv_show({s}.kv(%s::bytea)), {s}.valid({s}.kv(%s::bytea))",
        (x, x, x, x),
    ).fetchone()
    assert bytes(data) == encoding.encode(x)
    assert bytes(vid) == encoding.vid(encoding.encode(x))
    assert shown == "\\x" + x.hex()
    assert valid is True


def test_vid_boundary(conn: Any, s: str) -> None:
    for size in (510, 511, 512, 513, 5000):
        for obj in ("t" * (size - 1), b"b" * (size - 1)):
            stored = encoding.encode(obj)
            assert len(stored) == size
            assert bytes(one(conn, f"SELECT {s}.vid(%s)", (stored,))) == encoding.vid(stored)
    assert len(encoding.vid(encoding.encode("t" * 512))) == 33


def test_literal_resolution(conn: Any, s: str) -> None:
    """What psql users type: kv(42) is the int, kv(4.2) (numeric) the float, kv('apple') text."""
    cases: list[tuple[str, object]] = [
        ("42", 42),
        ("-42", -42),
        ("9223372036854775807", (1 << 63) - 1),
        ("4.2", 4.2),
        ("1.0", 1.0),
        ("1e3", 1000.0),
        ("42::smallint", 42),
        ("'apple'", "apple"),
        (r"'\x00ff'::bytea", b"\x00\xff"),
        ("'Infinity'::numeric", math.inf),
        ("'-Infinity'::float8", -math.inf),
        ("'-0'::float8", -0.0),
        ("4.2::real", struct.unpack(">f", struct.pack(">f", 4.2))[0]),
    ]
    for literal, obj in cases:
        assert bytes(one(conn, f"SELECT {s}.kv({literal})")) == encoding.encode(obj), literal
    assert one(conn, "SELECT pg_typeof(42)::text") == "integer"
    assert one(conn, f"SELECT {s}.kv(42) = {s}.kv(42.0)") is False  # different types ...
    assert one(conn, f"SELECT {s}.vid({s}.kv(42)) = {s}.vid({s}.kv(42.0))") is True  # ... one counting identity
    assert one(conn, f"SELECT {s}.vid({s}.kv(0)) = {s}.vid({s}.kv('-0'::float8))") is True


def test_nan_and_null(conn: Any, s: str) -> None:
    for literal in ("'NaN'::float8", "'NaN'::numeric", "'NaN'::real"):
        with pytest.raises(errors.InvalidParameterValue, match="NaN cannot be stored"):
            conn.execute(f"SELECT {s}.kv({literal})")
    with pytest.raises(errors.InvalidParameterValue, match="NaN cannot be stored"):
        conn.execute(f"SELECT {s}.kv(%s::float8)", (math.nan,))
    with pytest.raises(errors.NumericValueOutOfRange):
        conn.execute(f"SELECT {s}.kv(1e400)")
    row = conn.execute(
        f"SELECT {s}.kv(NULL::bigint), {s}.kv(NULL::integer), {s}.kv(NULL::smallint), {s}.kv(NULL::float8), {s}.kv(NULL::real),"
        f" {s}.kv(NULL::numeric), {s}.kv(NULL::text), {s}.kv(NULL::bytea), {s}.vid(NULL), {s}.valid(NULL), {s}.kv_show(NULL)"
    ).fetchone()
    assert row == (None,) * 11


INVALID = [
    b"",
    b"\x00",
    b"\x06" + bytes(19),
    b"\x30abc",
    b"\xff" + bytes(32),
    encoding.encode(1)[:19],
    encoding.encode(1) + b"\x00",
    encoding.encode(1)[:11] + b"\x02" + encoding.encode(1)[12:],  # type byte 2
    encoding.encode(1)[:12] + (2).to_bytes(8, "big"),  # identity of 1, raw bytes of 2
    encoding.encode(1.5)[:12] + struct.pack(">d", 1.25),
    encoding.encode(0)[:11] + b"\x01" + struct.pack(">d", math.nan),  # NaN
    encoding.encode(math.inf)[:11] + b"\x01" + struct.pack(">d", math.nan),
    b"\x10\xff",
    b"\x10\xc0\x80",  # overlong NUL
    b"\x10\xed\xa0\x80",  # a surrogate
    b"\x10\xf4\x90\x80\x80",  # above U+10FFFF
    b"\x10\xe2\x82",  # truncated
    b"\x10a\x80",
]


SHAPELESS = 7
"""The first INVALID encodings have no encoding's shape (tag, a number's length): the CHECKs refuse them.
The rest are shaped right but not canonical; the CHECKs let them in (a full check per row cost +20 µs,
see ddl._shape), valid() refuses them, and verify() reports such rows."""


def test_valid_rejects(conn: Any, s: str) -> None:
    for i, data in enumerate(INVALID):
        assert one(conn, f"SELECT {s}.valid(%s)", (data,)) is False, data.hex()
        for row in ("{s}.kv(1), %s", "%s, {s}.kv(1)"):
            if i < SHAPELESS:
                with pytest.raises(errors.CheckViolation, match="items_(key|value)_valid"):
                    conn.execute(f"INSERT INTO {s}.items VALUES ({row.format(s=s)})", (data,))
                with pytest.raises(errors.CheckViolation, match="items_(key|value)_valid"):
                    with conn.cursor().copy(f"COPY {s}.items FROM STDIN") as copy:
                        copy.write_row((encoding.encode(1), data) if row.startswith("{s}") else (data, encoding.encode(1)))
            else:
                conn.execute(f"INSERT INTO {s}.items VALUES ({row.format(s=s)})", (data,))
                assert one(conn, f"SELECT count(*) FROM {s}.items WHERE NOT ({s}.valid(key) AND {s}.valid(value))") == 1
                conn.execute(f"DELETE FROM {s}.items")


def test_session_settings_do_not_matter(conn: Any, s: str) -> None:
    """kv_show pins extra_float_digits; the functions' constants survive standard_conforming_strings = off."""
    conn.execute("SET extra_float_digits = -15")
    conn.execute("SET standard_conforming_strings = off")
    conn.execute("SET search_path = pg_temp")
    assert one(conn, f"SELECT {s}.kv_show({s}.kv(0.1::float8))") == "0.1"
    assert float(one(conn, f"SELECT {s}.kv_show({s}.kv(%s::float8))", (1 / 3,))) == 1 / 3
    assert one(conn, f"SELECT {s}.kv_show({s}.kv(decode('00ff', 'hex')))") == "\\x00ff"
    assert bytes(one(conn, f"SELECT {s}.kv(1.5)")) == encoding.encode(1.5)
    conn.execute(f"INSERT INTO {s}.items VALUES ({s}.kv(1), {s}.kv('x' || repeat('y', 600))), ({s}.kv(2), {s}.kv(decode('00', 'hex')))")
    conn.execute("RESET ALL")
    check_counts(conn, s)


def test_functions_are_inlined_and_the_index_used(conn: Any, s: str) -> None:
    plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN VERBOSE SELECT {s}.vid(value), {s}.valid(value), {s}.kv(key) FROM {s}.items"))
    assert ".vid(" not in plan and ".valid(" not in plan and ".kv(" not in plan, plan
    conn.execute(f"INSERT INTO {s}.items SELECT {s}.kv(i), {s}.kv(mod(i, 7)) FROM generate_series(1, 2000) AS i")
    conn.execute(f"ANALYZE {s}.items")
    plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN SELECT key FROM {s}.items WHERE {s}.vid(value) = {s}.vid({s}.kv(3.0))"))
    assert "items_value_idx" in plan, plan
    assert one(conn, f"SELECT count(*) FROM {s}.items WHERE {s}.vid(value) = {s}.vid({s}.kv(3.0))") == 286


def test_ddl_text_and_catalog(conn: Any, s: str, pg_schema: str) -> None:
    statements = ddl.create(pg_schema)
    assert not any("%" in statement for statement in statements + ddl.rebuild(pg_schema) + ddl.drop(pg_schema))
    assert "%" not in ddl.problems(pg_schema)
    assert not any("n > 0)" in statement for statement in statements if "CREATE TABLE" in statement)
    functions = conn.execute(
        "SELECT p.proname, l.lanname, p.proconfig, p.prosqlbody IS NOT NULL, p.provolatile FROM pg_proc p"
        " JOIN pg_language l ON l.oid = p.prolang WHERE p.pronamespace = %s::regnamespace",
        (s,),
    ).fetchall()
    assert {f[0] for f in functions} == {
        "vid", "valid", "kv", "number_id", "kv_show",
        "items_counts_row", "items_counts_truncate",
    }  # fmt: skip
    for name, language, config, sql_body, volatility in functions:
        if language == "plpgsql":
            assert "search_path=pg_catalog, pg_temp" in config, name
        else:
            assert language == "sql" and sql_body, name  # bound when created, whatever the caller's search_path
        if not name.startswith("items_counts"):
            assert volatility == "i", name
    triggers = conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal ORDER BY 1", (f"{s}.items",)
    ).fetchall()
    assert [t[0] for t in triggers] == ["items_counts_delete", "items_counts_insert", "items_counts_truncate", "items_counts_update"]


def test_key_size_limit(conn: Any, s: str) -> None:
    """A key past the B-tree limit (about 2,700 bytes after compression) is refused by PostgreSQL; values are unbounded."""
    rng = random.Random(1)
    big = bytes(rng.getrandbits(8) for _ in range(3000))
    with pytest.raises(errors.ProgramLimitExceeded, match="index row"):
        conn.execute(f"INSERT INTO {s}.items VALUES ({s}.kv(%s::bytea), {s}.kv(1))", (big,))
    conn.execute(f"INSERT INTO {s}.items VALUES ({s}.kv(1), {s}.kv(%s::bytea))", (big * 100,))
    check_counts(conn, s)


def test_drop_then_create(conn: Any, s: str, pg_schema: str) -> None:
    conn.execute(f"INSERT INTO {s}.items VALUES ({s}.kv(1), {s}.kv('a'))")
    with conn.transaction():
        for statement in ddl.drop(pg_schema):
            conn.execute(statement)
    left = one(conn, "SELECT count(*) FROM pg_class WHERE relnamespace = %s::regnamespace", (s,))
    left += one(conn, "SELECT count(*) FROM pg_proc WHERE pronamespace = %s::regnamespace", (s,))
    assert left == 0
    with conn.transaction():
        for statement in ddl.create(pg_schema):
            conn.execute(statement)
    check_counts(conn, s)


def test_awkward_schema_name(conn: Any) -> None:
    name = 'odd "name" $kv0$ $$ \'quoted\''
    try:
        s = make_store(conn, name)
        conn.execute(f"INSERT INTO {s}.items VALUES ({s}.kv(1), {s}.kv('a')), ({s}.kv(2), {s}.kv('a'))")
        conn.execute(f"UPDATE {s}.items SET value = {s}.kv(1.0) WHERE key = {s}.kv(1)")
        check_counts(conn, s)
        assert conn.execute(ddl.problems(name)).fetchall() == []
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {ddl.quoted(name)} CASCADE")
    with pytest.raises(ValueError):
        ddl.quoted("")


# -- the write-form matrix --------------------------------------------------------------------------------------------

# The values the matrix writes: 1 and 1.0 share an identity, so do 0 and -0.0; one long text is counted by its hash.
V = {
    "a": "{s}.kv('a')",
    "b": "{s}.kv('b')",
    "one": "{s}.kv(1)",
    "onef": "{s}.kv(1.0)",
    "zero": "{s}.kv(0)",
    "negzero": "{s}.kv('-0'::float8)",
    "blob": "{s}.kv(decode('00ff', 'hex'))",
    "long": "{s}.kv(repeat('L', 700))",
}
SETUP = (
    "INSERT INTO {s}.items SELECT {s}.kv(i), (ARRAY[" + ", ".join(V.values()) + "])[1 + mod(i, 8)] FROM generate_series(1, 24) AS i"
)


def copy_rows(fmt: str, rows: list[tuple[object, object]]) -> Callable[[Any, str], None]:
    def run(conn: Any, s: str) -> None:
        with conn.cursor() as cur:
            options = " (FORMAT binary)" if fmt == "binary" else ""
            with cur.copy(f"COPY {s}.items (key, value) FROM STDIN{options}") as copy:
                if fmt == "binary":
                    copy.set_types(["bytea", "bytea"])
                for key, value in rows:
                    copy.write_row((encoding.encode(key), encoding.encode(value)))

    return run


Step = str | Callable[[Any, str], None]
WRITE_FORMS: dict[str, list[Step]] = {
    "insert single": ["INSERT INTO {s}.items VALUES ({s}.kv(100), {s}.kv('a'))"],
    "insert multi-row": ["INSERT INTO {s}.items VALUES ({s}.kv(100), {s}.kv('a')), ({s}.kv(101), {s}.kv(1.0)), ({s}.kv(102), {s}.kv(1)), ({s}.kv('k'), {s}.kv('new'))"],
    "insert select": ["INSERT INTO {s}.items SELECT {s}.kv(i), {s}.kv(mod(i, 3)) FROM generate_series(100, 400) AS i"],
    "insert select from items": ["INSERT INTO {s}.items SELECT {s}.kv('c' || {s}.kv_show(key)), value FROM {s}.items"],
    "upsert do update": ["INSERT INTO {s}.items VALUES ({s}.kv(1), {s}.kv('b')), ({s}.kv(2), {s}.kv(1.0)), ({s}.kv(200), {s}.kv(0)) ON CONFLICT (key) DO UPDATE SET value = excluded.value"],
    "upsert do update where": [
        "INSERT INTO {s}.items SELECT {s}.kv(i), {s}.kv('w') FROM generate_series(1, 30) AS i"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE items.value <> {s}.kv('a') AND {s}.vid(items.value) <> {s}.vid({s}.kv(1))"
    ],
    "upsert do nothing": ["INSERT INTO {s}.items SELECT {s}.kv(i), {s}.kv('n') FROM generate_series(20, 30) AS i ON CONFLICT DO NOTHING"],
    "upsert same value": ["INSERT INTO {s}.items SELECT key, value FROM {s}.items ON CONFLICT (key) DO UPDATE SET value = excluded.value"],
    "update value": ["UPDATE {s}.items SET value = {s}.kv('z') WHERE value = {s}.kv('a')"],
    "update one to 1.0": ["UPDATE {s}.items SET value = {s}.kv(1.0) WHERE value = {s}.kv(1)", "UPDATE {s}.items SET value = {s}.kv('-0'::float8) WHERE value = {s}.kv(0)"],
    "update key": ["UPDATE {s}.items SET key = {s}.kv('k' || {s}.kv_show(key)) WHERE value <> {s}.kv('b')"],
    "update key and value": ["UPDATE {s}.items SET key = {s}.kv(1000 + {s}.kv_show(key)::int), value = {s}.kv({s}.kv_show(key)::int) WHERE {s}.kv_show(key)::int < 10"],
    "update all to one value": ["UPDATE {s}.items SET value = {s}.kv(repeat('L', 700))"],
    "update swap values": ["UPDATE {s}.items AS i SET value = o.value FROM {s}.items AS o WHERE (i.key, o.key) IN (({s}.kv(1), {s}.kv(2)), ({s}.kv(2), {s}.kv(1)))"],
    "update no-op": ["UPDATE {s}.items SET value = value", "UPDATE {s}.items SET value = {s}.kv(5) WHERE false"],
    "update from": ["UPDATE {s}.items AS t SET value = m.v FROM (VALUES ({s}.kv(1), {s}.kv('q')), ({s}.kv(3), {s}.kv('q')), ({s}.kv(4), {s}.kv(1.0))) AS m(k, v) WHERE t.key = m.k"],
    "delete": ["DELETE FROM {s}.items WHERE value = {s}.kv('b')", "DELETE FROM {s}.items WHERE key = {s}.kv(999)"],
    "delete using": ["DELETE FROM {s}.items AS t USING (VALUES ({s}.kv(1)), ({s}.kv(2)), ({s}.kv(3))) AS d(k) WHERE t.key = d.k"],
    "delete all": ["DELETE FROM {s}.items"],
    "cte delete, insert": ["WITH d AS (DELETE FROM {s}.items WHERE value = {s}.kv(1) OR value = {s}.kv('a') RETURNING key) INSERT INTO {s}.items SELECT key, {s}.kv('moved') FROM d"],
    "cte delete, insert elsewhere": ["WITH d AS (DELETE FROM {s}.items WHERE {s}.vid(value) = {s}.vid({s}.kv(0)) RETURNING key, value) INSERT INTO {s}.items SELECT {s}.kv('m' || {s}.kv_show(key)), value FROM d"],
    "cte insert, update": ["WITH i AS (INSERT INTO {s}.items VALUES ({s}.kv(300), {s}.kv('a')) RETURNING key) UPDATE {s}.items SET value = {s}.kv('b') WHERE key = {s}.kv(1)"],
    "cte update, delete": ["WITH u AS (UPDATE {s}.items SET value = {s}.kv('u') WHERE key = {s}.kv(5) RETURNING key) DELETE FROM {s}.items WHERE key = {s}.kv(6)"],
    "merge": [
        "MERGE INTO {s}.items AS t USING (VALUES ({s}.kv(1), {s}.kv('m')), ({s}.kv(2), NULL), ({s}.kv(3), {s}.kv(1.0)), ({s}.kv(77), {s}.kv('new'))) AS src(k, v)"
        " ON t.key = src.k WHEN MATCHED AND src.v IS NULL THEN DELETE WHEN MATCHED THEN UPDATE SET value = src.v"
        " WHEN NOT MATCHED AND src.v IS NOT NULL THEN INSERT VALUES (src.k, src.v)"
    ],
    # A data-modifying WITH on MERGE: every row changed by either must reach the row triggers.
    "cte update, merge": [
        "WITH u AS (UPDATE {s}.items SET value = {s}.kv('cte') WHERE key = {s}.kv(9) RETURNING key)"
        " MERGE INTO {s}.items AS t USING (VALUES ({s}.kv(1), {s}.kv('m')), ({s}.kv(77), {s}.kv('new'))) AS src(k, v) ON t.key = src.k"
        " WHEN MATCHED THEN UPDATE SET value = src.v WHEN NOT MATCHED THEN INSERT VALUES (src.k, src.v)"
    ],
    "cte insert, delete, merge": [
        "WITH i AS (INSERT INTO {s}.items VALUES ({s}.kv(200), {s}.kv('cte')) RETURNING key), d AS (DELETE FROM {s}.items WHERE key = {s}.kv(3) RETURNING key)"
        " MERGE INTO {s}.items AS t USING (VALUES ({s}.kv(2), {s}.kv('m')), ({s}.kv(78), {s}.kv(1.0))) AS src(k, v) ON t.key = src.k"
        " WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (src.k, src.v)"
    ],
    "merge insert only": ["MERGE INTO {s}.items AS t USING (SELECT {s}.kv(i) AS k FROM generate_series(20, 40) AS i) AS src ON t.key = src.k WHEN NOT MATCHED THEN INSERT VALUES (src.k, {s}.kv(0))"],
    "merge delete only": ["MERGE INTO {s}.items AS t USING (SELECT {s}.kv(i) AS k FROM generate_series(1, 12) AS i) AS src ON t.key = src.k WHEN MATCHED THEN DELETE"],
    "copy text": [copy_rows("text", [(500, "a"), (501, 1.0), (502, 1), ("t", b"\x00"), (503, "x" * 700), (504, -0.0)])],
    "copy binary": [copy_rows("binary", [(600, "a"), (601, 1.0), (602, 1), ("u", b"\x00"), (603, "x" * 700), (604, -0.0)])],
    "truncate": ["TRUNCATE {s}.items", "INSERT INTO {s}.items VALUES ({s}.kv(1), {s}.kv(1))"],
    "truncate then rewrite": ["TRUNCATE {s}.items", SETUP],
}


def run_step(conn: Any, s: str, step: Step) -> None:
    if isinstance(step, str):
        conn.execute(step.format(s=s))
    else:
        step(conn, s)


@pytest.mark.parametrize("mode", ["autocommit", "transaction"])
@pytest.mark.parametrize("form", list(WRITE_FORMS))
def test_write_form(conn: Any, s: str, pg_url: str, form: str, mode: str) -> None:
    conn.execute(SETUP.format(s=s))
    check_counts(conn, s, "after setup")
    if mode == "autocommit":
        for i, step in enumerate(WRITE_FORMS[form]):
            run_step(conn, s, step)
            check_counts(conn, s, f"{form}: after statement {i}")
    else:
        with conn.transaction():
            for i, step in enumerate(WRITE_FORMS[form]):
                run_step(conn, s, step)
                check_counts(conn, s, f"{form}: after statement {i}, in the transaction")
    with psycopg.connect(pg_url, autocommit=True) as other:
        check_counts(other, s, f"{form}: from another connection after commit")


def test_savepoints_and_rollback(conn: Any, s: str, pg_url: str) -> None:
    conn.execute(SETUP.format(s=s))
    before = conn.execute(f"SELECT vid, value, n FROM {s}.count_shards ORDER BY 1, 2").fetchall()
    conn.execute("BEGIN")
    conn.execute(f"UPDATE {s}.items SET value = {s}.kv('x') WHERE value = {s}.kv('a')")
    check_counts(conn, s)
    conn.execute("SAVEPOINT p1")
    conn.execute(f"DELETE FROM {s}.items WHERE value = {s}.kv(1)")
    conn.execute(f"INSERT INTO {s}.items VALUES ({s}.kv(100), {s}.kv(1.0))")
    check_counts(conn, s)
    conn.execute("SAVEPOINT p2")
    with pytest.raises(errors.UniqueViolation):
        conn.execute(f"INSERT INTO {s}.items VALUES ({s}.kv(101), {s}.kv('y')), ({s}.kv(1), {s}.kv('y'))")
    conn.execute("ROLLBACK TO SAVEPOINT p2")
    check_counts(conn, s)
    conn.execute(f"TRUNCATE {s}.items")
    check_counts(conn, s)
    conn.execute("ROLLBACK TO SAVEPOINT p1")
    check_counts(conn, s)
    with psycopg.connect(pg_url, autocommit=True) as other:  # sees none of it
        assert other.execute(f"SELECT vid, value, n FROM {s}.count_shards ORDER BY 1, 2").fetchall() == before
    conn.execute("ROLLBACK")
    assert conn.execute(f"SELECT vid, value, n FROM {s}.count_shards ORDER BY 1, 2").fetchall() == before
    check_counts(conn, s)


def test_failed_statements_change_nothing(conn: Any, s: str) -> None:
    conn.execute(SETUP.format(s=s))
    failing = [
        (errors.UniqueViolation, "INSERT INTO {s}.items VALUES ({s}.kv(100), {s}.kv('a')), ({s}.kv(1), {s}.kv('a'))"),
        (errors.CardinalityViolation, "INSERT INTO {s}.items VALUES ({s}.kv(1), {s}.kv('a')), ({s}.kv(1), {s}.kv('b')) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
        (errors.UniqueViolation, "UPDATE {s}.items SET key = {s}.kv(1)"),
        (errors.CheckViolation, "UPDATE {s}.items SET value = decode('30', 'hex') WHERE key = {s}.kv(3)"),
        (errors.InvalidParameterValue, "UPDATE {s}.items SET value = {s}.kv('NaN'::float8 + {s}.kv_show(key)::int)"),
    ]
    for error, statement in failing:
        with pytest.raises(error):
            conn.execute(statement.format(s=s))
        check_counts(conn, s, statement)


def test_search_path_decoys(conn: Any, s: str, pg_schema: str) -> None:
    """Writers whose search_path leads to other items/counts/count_shards tables and look-alike functions."""
    decoy = ddl.quoted(pg_schema + "_decoy")
    try:
        conn.execute(f"CREATE SCHEMA {decoy}")
        conn.execute(f"CREATE TABLE {decoy}.items (key bytea, value bytea)")
        conn.execute(f"CREATE TABLE {decoy}.counts (value bytea, n bigint)")
        conn.execute(f"CREATE TABLE {decoy}.count_shards (vid bytea, shard integer, value bytea, n bigint)")
        conn.execute(f"CREATE FUNCTION {decoy}.vid(v bytea) RETURNS bytea LANGUAGE sql RETURN decode('00', 'hex')")
        conn.execute(f"CREATE FUNCTION {decoy}.mod(a integer, b integer) RETURNS integer LANGUAGE sql RETURN 0")
        conn.execute(f"CREATE FUNCTION {decoy}.sha256(v bytea) RETURNS bytea LANGUAGE sql RETURN decode('00', 'hex')")
        conn.execute(f"SET search_path = {decoy}, pg_catalog")
        for step in ["INSERT INTO {s}.items VALUES ({s}.kv(1), {s}.kv('a')), ({s}.kv(2), {s}.kv(repeat('L', 700)))", *WRITE_FORMS["upsert do update"],
                     *WRITE_FORMS["update from"], *WRITE_FORMS["delete using"], *WRITE_FORMS["merge"], "TRUNCATE {s}.items", SETUP]:
            run_step(conn, s, step)
            conn.execute("RESET search_path")
            check_counts(conn, s, step)
            conn.execute(f"SET search_path = {decoy}, pg_catalog")
        for table in ("items", "counts", "count_shards"):
            assert one(conn, f"SELECT count(*) FROM {decoy}.{table}") == 0
    finally:
        conn.execute("RESET search_path")
        conn.execute(f"DROP SCHEMA IF EXISTS {decoy} CASCADE")


# -- random sequences of raw SQL --------------------------------------------------------------------------------------

RANDOM_VALUES = [*V.values(), "{s}.kv(2)", "{s}.kv(2.0)", "{s}.kv(decode('', 'hex'))", "{s}.kv('')"]
EXPECTED_ERRORS = (errors.UniqueViolation, errors.CardinalityViolation)


def random_statement(rng: random.Random) -> Step:
    def key() -> str:
        return rng.choice(["{s}.kv(%d)" % rng.randrange(30), "{s}.kv('k%d')" % rng.randrange(10)])

    def value() -> str:
        return rng.choice(RANDOM_VALUES)

    def keys(n: int) -> str:
        return ", ".join(sorted({key() for _ in range(n)}))

    kind = rng.randrange(20)
    lo = rng.randrange(30)
    hi = lo + rng.randrange(8)
    span = f"{{s}}.kv(i) FROM generate_series({lo}, {hi}) AS i"
    if kind == 0:
        return f"INSERT INTO {{s}}.items VALUES ({key()}, {value()})"
    if kind == 1:
        return "INSERT INTO {s}.items VALUES " + ", ".join(f"({key()}, {value()})" for _ in range(rng.randrange(1, 5)))
    if kind == 2:
        return f"INSERT INTO {{s}}.items SELECT {span.replace(' FROM', ', ' + value() + ' FROM')} ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    if kind == 3:
        return f"INSERT INTO {{s}}.items SELECT {span.replace(' FROM', ', ' + value() + ' FROM')} ON CONFLICT DO NOTHING"
    if kind == 4:
        return (f"INSERT INTO {{s}}.items VALUES ({key()}, {value()}), ({key()}, {value()}) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                f" WHERE {{s}}.vid(items.value) <> {{s}}.vid({value()})")
    if kind == 5:
        return f"UPDATE {{s}}.items SET value = {value()} WHERE key IN ({keys(4)})"
    if kind == 6:
        return f"UPDATE {{s}}.items SET value = {value()} WHERE {{s}}.vid(value) = {{s}}.vid({value()})"
    if kind == 7:
        return f"UPDATE {{s}}.items SET key = {key()} WHERE key = {key()}"
    if kind == 8:
        return f"UPDATE {{s}}.items SET key = {key()}, value = {value()} WHERE key = {key()}"
    if kind == 9:
        return f"UPDATE {{s}}.items AS t SET value = m.v FROM (VALUES ({key()}, {value()}), ({key()}, {value()})) AS m(k, v) WHERE t.key = m.k"
    if kind == 10:
        return f"DELETE FROM {{s}}.items WHERE key IN ({keys(3)})"
    if kind == 11:
        return f"DELETE FROM {{s}}.items AS t USING (VALUES ({value()}), ({value()})) AS d(v) WHERE {{s}}.vid(t.value) = {{s}}.vid(d.v) AND t.key > {key()}"
    if kind == 12:
        return f"WITH d AS (DELETE FROM {{s}}.items WHERE key IN ({keys(3)}) RETURNING key) INSERT INTO {{s}}.items SELECT key, {value()} FROM d"
    if kind == 13:
        return f"WITH u AS (UPDATE {{s}}.items SET value = {value()} WHERE key = {key()} RETURNING key) DELETE FROM {{s}}.items WHERE key = {key()} AND key NOT IN (SELECT key FROM u)"
    if kind == 14:
        return (f"MERGE INTO {{s}}.items AS t USING (VALUES ({key()}, {value()}), ({key()}, NULL::bytea), ({key()}, {value()})) AS src(k, v) ON t.key = src.k"
                " WHEN MATCHED AND src.v IS NULL THEN DELETE WHEN MATCHED THEN UPDATE SET value = src.v"
                " WHEN NOT MATCHED AND src.v IS NOT NULL THEN INSERT VALUES (src.k, src.v)")
    if kind == 15:
        return copy_rows(rng.choice(["text", "binary"]), [(rng.randrange(1000, 10**6), rng.choice([1, 1.0, "a", -0.0, 0, "L" * 700])) for _ in range(rng.randrange(1, 6))])
    if kind == 16:
        return "TRUNCATE {s}.items" if rng.random() < 0.3 else "DELETE FROM {s}.items WHERE mod(get_byte(key, length(key) - 1), 3) = 0"
    if kind == 17:
        return f"INSERT INTO {{s}}.items SELECT key, {value()} FROM {{s}}.items WHERE key > {key()} ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    if kind == 18:
        return f"UPDATE {{s}}.items SET value = CASE WHEN {{s}}.valid(value) THEN {value()} END WHERE key < {key()}"
    return f"INSERT INTO {{s}}.items SELECT {span.replace(' FROM', ', ' + value() + ' FROM')}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences(conn: Any, s: str, seed: int) -> None:
    rng = random.Random(seed)
    done = 0
    while done < max(50, int(150 * SCALE)):
        in_transaction = rng.random() < 0.3
        statements = [random_statement(rng) for _ in range(rng.randrange(1, 6) if in_transaction else 1)]
        if in_transaction:
            conn.execute("BEGIN")
        for i, statement in enumerate(statements):
            if in_transaction:
                conn.execute(f"SAVEPOINT s{i}")
            try:
                run_step(conn, s, statement)
            except EXPECTED_ERRORS:
                if in_transaction:
                    conn.execute(f"ROLLBACK TO SAVEPOINT s{i}")
            done += 1
            check_counts(conn, s, f"seed {seed}, statement {done}: {statement!r}")
            if in_transaction and rng.random() < 0.15:
                conn.execute(f"ROLLBACK TO SAVEPOINT s{i}")
                check_counts(conn, s, f"seed {seed}, rolled back statement {done}")
        if in_transaction:
            conn.execute("COMMIT" if rng.random() < 0.7 else "ROLLBACK")
            check_counts(conn, s, f"seed {seed}, after the transaction ending at statement {done}")


# -- concurrency ------------------------------------------------------------------------------------------------------

HOT_VALUES: list[object] = ["apple", "banana", "cherry", 1, 2.5, b"fig"]


def hammer(pg_url: str, s: str, table: str, seconds: float, threads: int = 8) -> tuple[int, list[BaseException]]:
    """Autocommit upserts into ``s.table`` from ``threads`` connections over HOT_VALUES and random keys; returns (ops, errors)."""
    table = f"{s}.{table}"
    statement = f"INSERT INTO {table} VALUES ({s}.kv(%s::bigint), {s}.kv(%s)) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    counts = [0] * threads
    failures: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        rng = random.Random(i)
        try:
            with psycopg.connect(pg_url, autocommit=True) as c:
                start.wait()
                deadline = time.perf_counter() + seconds
                while time.perf_counter() < deadline:
                    c.execute(statement, (rng.randrange(20000), rng.choice(HOT_VALUES)))
                    counts[i] += 1
        except BaseException as e:  # noqa: B036 - reported by the test
            failures.append(e)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    for w in workers:
        w.join()
    return sum(counts), failures


def test_concurrent_upserts(conn: Any, s: str, pg_url: str) -> None:
    seconds = max(1.0, 3.0 * SCALE)
    conn.execute(f"CREATE TABLE {s}.bare (LIKE {s}.items INCLUDING ALL)")  # same checks and index, no triggers
    bare_ops, bare_failures = hammer(pg_url, s, "bare", seconds)
    ops, failures = hammer(pg_url, s, "items", seconds)
    assert failures == [] and bare_failures == []
    check_counts(conn, s, "after the concurrent upserts")
    shards = one(conn, f"SELECT count(DISTINCT shard) FROM {s}.count_shards")
    print(f"\n8 writers, autocommit upserts over 6 values: {ops / seconds:,.0f} ops/s with the count triggers, "
          f"{bare_ops / seconds:,.0f} ops/s without ({ops / bare_ops:.2f}x); {shards} shards in use")


def test_writers_sharing_shards(conn: Any, s: str, pg_url: str) -> None:
    """More connections than pid % 64 shards, multi-row upserts and two-statement transactions touching several values
    in any order. Each writer has its own keys, so any wait would be on count_shards rows: the shard a transaction
    owns (an advisory lock) means there are none, and no deadlocks."""
    threads = ddl.SHARDS + 4
    if int(one(conn, "SHOW max_connections")) < threads + 10:
        pytest.skip("the server allows too few connections")
    seconds = max(1.0, 2.0 * SCALE)
    statement = (f"INSERT INTO {s}.items SELECT {s}.kv(k), {s}.kv(v) FROM unnest(%s::bigint[], %s::text[]) AS u(k, v)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value")
    failures: list[BaseException] = []
    ops = [0] * threads
    shards: list[int] = []
    ready = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        rng = random.Random(i)
        try:
            with psycopg.connect(pg_url, autocommit=True) as c:
                shards.append(one(c, f"SELECT mod(pg_backend_pid(), {ddl.SHARDS})"))
                ready.wait()
                deadline = time.perf_counter() + seconds
                while time.perf_counter() < deadline:
                    with c.transaction():
                        for _ in range(rng.choice([1, 1, 2, 3])):
                            keys = rng.sample(range(i * 100, i * 100 + 100), rng.randint(1, 6))
                            c.execute(statement, (keys, [str(rng.choice(HOT_VALUES)) for _ in keys]))
                            if rng.random() < 0.2:
                                c.execute(f"DELETE FROM {s}.items WHERE key = {s}.kv(%s::bigint)", (rng.choice(keys),))
                    ops[i] += 1
        except BaseException as e:  # noqa: B036 - reported by the test
            failures.append(e)
            ready.abort()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass  # a worker failed: reported below
    for w in workers:
        w.join()
    assert failures == []
    assert len(set(shards)) < len(shards)  # some writers did share a shard
    assert all(ops)
    check_counts(conn, s, "after writers sharing shards")


def test_rebuild_under_concurrent_writers(conn: Any, s: str, pg_url: str, pg_schema: str) -> None:
    conn.execute(f"ALTER TABLE {s}.items DISABLE TRIGGER items_counts_insert")
    conn.execute(f"INSERT INTO {s}.items SELECT {s}.kv(i), {s}.kv(mod(i, 5)) FROM generate_series(1, 3000) AS i")
    conn.execute(f"ALTER TABLE {s}.items ENABLE TRIGGER items_counts_insert")
    assert len(conn.execute(ddl.problems(pg_schema)).fetchall()) == 5
    result: list[tuple[int, list[BaseException]]] = []
    writer = threading.Thread(target=lambda: result.append(hammer(pg_url, s, "items", 1.5, threads=3)))
    writer.start()
    time.sleep(0.3)
    with conn.transaction():
        for statement in ddl.rebuild(pg_schema):
            conn.execute(statement)
    writer.join()
    assert result[0][1] == []
    check_counts(conn, s, "after a rebuild among writers")


# -- problems() and rebuild() -----------------------------------------------------------------------------------------


def test_problems_and_rebuild(conn: Any, s: str, pg_schema: str) -> None:
    conn.execute(SETUP.format(s=s))
    check_counts(conn, s)
    conn.execute(f"ALTER TABLE {s}.items DISABLE TRIGGER USER")
    conn.execute(f"INSERT INTO {s}.items VALUES ({s}.kv(100), {s}.kv('only-here')), ({s}.kv(101), {s}.kv(1.0))")  # missing, too low
    conn.execute(f"DELETE FROM {s}.items WHERE value = {s}.kv(decode('00ff', 'hex'))")  # too high, then absent
    conn.execute(f"UPDATE {s}.items SET value = {s}.kv('b') WHERE key = {s}.kv(5)")  # -0.0 -> 'b'

    conn.execute(f"ALTER TABLE {s}.items ENABLE TRIGGER USER")
    conn.execute(f"INSERT INTO {s}.count_shards VALUES ({s}.vid({s}.kv('ghost')), 7, {s}.kv('ghost'), 2)")  # extra
    # A negative sum, in a shard no writer here took: writers take pid mod 64 first, so a fixed
    # shard under 64 collided with SETUP's own row for 'a' in one run out of 64.
    conn.execute(f"INSERT INTO {s}.count_shards VALUES ({s}.vid({s}.kv('a')), 1000, {s}.kv('a'), -50)")
    found = {(encoding.decode(bytes(v)), stored, actual) for v, stored, actual in conn.execute(ddl.problems(pg_schema))}
    # SETUP gives each of the 8 values 3 keys: the identity of 1 (1 and 1.0) and of 0 (0 and -0.0) have 6.
    assert found == {("only-here", 0, 1), (1, 6, 7), (b"\x00\xff", 3, 0), (0, 6, 5), ("b", 3, 4), ("ghost", 2, 0), ("a", -47, 3)}
    shown = dict(conn.execute(f"SELECT {s}.kv_show(value), n FROM {s}.counts"))
    assert "a" not in shown and "ghost" in shown  # counts hides a non-positive sum, shows the extra row
    with conn.transaction():
        for statement in ddl.rebuild(pg_schema):
            conn.execute(statement)
    check_counts(conn, s, "after rebuild")
    assert one(conn, f"SELECT count(*) FROM {s}.count_shards WHERE shard <> 0") == 0


def test_restore(conn: Any, s: str, pg_schema: str) -> None:
    """restore() puts back dropped or disabled triggers and a dropped value index; rebuild() then recounts."""
    conn.execute(SETUP.format(s=s))
    conn.execute(f"DROP TRIGGER items_counts_update ON {s}.items")
    conn.execute(f"ALTER TABLE {s}.items DISABLE TRIGGER items_counts_insert")
    conn.execute(f"DROP INDEX {s}.{ddl.VALUE_INDEX}")
    conn.execute(f"DROP FUNCTION {s}.items_counts_truncate() CASCADE")
    conn.execute(f"INSERT INTO {s}.items VALUES ({s}.kv(100), {s}.kv('x'))")
    conn.execute(f"UPDATE {s}.items SET value = {s}.kv('y') WHERE key = {s}.kv(1)")
    conn.execute(f"DELETE FROM {s}.items WHERE key = {s}.kv(2)")
    assert conn.execute(ddl.problems(pg_schema)).fetchall() != []
    with conn.transaction():
        for statement in ddl.restore(pg_schema) + ddl.rebuild(pg_schema):
            conn.execute(statement)
    triggers = conn.execute("SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                            (f"{s}.items",)).fetchall()
    assert sorted(triggers) == sorted((name, "O") for name in ddl.TRIGGERS)
    assert one(conn, "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname = %s", (pg_schema, ddl.VALUE_INDEX)) == 1
    check_counts(conn, s)
    for step in ("UPDATE {s}.items SET value = {s}.kv(1) WHERE value = {s}.kv('b')", "DELETE FROM {s}.items WHERE value = {s}.kv(0)"):
        conn.execute(step.format(s=s))
        check_counts(conn, s, step)
    with conn.transaction():  # restore() on a sound store changes nothing
        for statement in ddl.restore(pg_schema):
            conn.execute(statement)
    check_counts(conn, s)


def test_statement_costs(conn: Any, s: str) -> None:
    """Not an assertion about speed: prints what one autocommit single-row upsert costs with and without the triggers."""
    conn.execute(f"CREATE TABLE {s}.bare (LIKE {s}.items INCLUDING ALL)")
    rng = random.Random(5)
    results = {}
    for table in (f"{s}.bare", f"{s}.items"):
        for label, statement in (
            ("kv()", f"INSERT INTO {table} VALUES ({s}.kv(%s::bigint), {s}.kv(%s)) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
            ("bytes", f"INSERT INTO {table} VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
        ):
            times = []
            for _ in range(max(200, int(1000 * SCALE))):
                k, v = rng.randrange(2000), rng.choice(HOT_VALUES)
                params = (k, v) if label == "kv()" else (encoding.encode(k), encoding.encode(v))
                t0 = time.perf_counter()
                conn.execute(statement, params)
                times.append(time.perf_counter() - t0)
            times.sort()
            results[(table, label)] = times[len(times) // 2] * 1e6
    check_counts(conn, s)
    print("\nmedian autocommit single-row upsert, µs: " + ", ".join(f"{t.split('.')[-1]} {label} {us:.0f}" for (t, label), us in results.items()))


REVISION_0001 = "9dca90490c30f14aac266bb648b66c7b05948bdf1619045df522aaa2cbe80932"
"""SHA-256 of what revision 0001's PostgreSQL branch creates and drops (ddl.create/ddl.drop).

Alembic revisions must not change once stores exist: a change to these statements belongs in
a new revision (with its own, versioned statements, as kvstore.sqlite.triggers versions the
SQLite triggers), and then this hash is updated to the head's only together with that revision."""


def test_revision_0001_is_frozen() -> None:
    import hashlib

    text = "\n".join(ddl.create("S") + ["--"] + ddl.drop("S"))
    assert hashlib.sha256(text.encode()).hexdigest() == REVISION_0001, (
        "kvstore/postgresql/ddl.py changed what revision 0001 creates: add a migration instead")
