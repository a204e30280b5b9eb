"""Hostile input: every key and value either round-trips exactly (type, value, float sign) or
is rejected with TypeError/ValueError/OverflowError before anything is written, leaving the
store unchanged; one bad pair rejects a whole update() batch; SQL-looking text is just data.

Documented behaviour asserted here (SQLite 3.40, column without affinity):
* keys: exact int (signed 64-bit), str (valid UTF-8, NUL bytes kept), bytes; nothing else.
* values: the same plus float. -0.0 comes back as -0.0 (sign kept) but counts as the same value
  as 0.0 and 0 (SQLite compares numbers by value, as Python does); ±inf and subnormals round-trip;
  NaN is refused (SQLite would store NULL).
* bool, None, subclasses (IntEnum, numpy.float64, str subclasses), bytearray, memoryview and
  every other type are refused rather than silently converted.
"""

from __future__ import annotations

import enum
import itertools
import math
import sqlite3
import uuid
from collections import Counter
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import kvstore
import kvstore.sqlite.connection
from tests._rel_workers import raw_counts, trigger_names, typed, typed_items
from tests.helpers import scaled

REJECT = (TypeError, ValueError, OverflowError)
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
FIGURES: Counter = Counter()


# -- an independent oracle of what must be accepted -----------------------------------------


def text_ok(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def key_ok(k: object) -> bool:
    if type(k) is int:
        return INT_MIN <= k <= INT_MAX
    if type(k) is str:
        return text_ok(k)
    return type(k) is bytes


def value_ok(v: object) -> bool:
    if type(v) is float:
        return not math.isnan(v)
    return key_ok(v)


def equal_values(a: object, b: object) -> bool:
    """How counts groups values: numbers by numeric value, text and bytes exactly."""
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num):
        return a == b
    return type(a) is type(b) and a == b


# -- strategies ------------------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1


class MyStr(str):
    pass


class MyBytes(bytes):
    pass


class MyInt(int):
    pass


class Weird:
    def __index__(self) -> int:
        return 1

    def __str__(self) -> str:
        return "weird"


SQLISH = [
    "'; DROP TABLE items; --",
    "Robert'); DROP TABLE counts;--",
    "' OR '1'='1",
    '" OR ""="',
    "1; DELETE FROM counts",
    "NULL",
    "?",
    ":key",
    "%s",
    "$1",
    "*/ SELECT 1 /*",
    "key",
    "value",
    "\x00; DROP TABLE items",
    "items",
    "sqlite_master",
]

EDGE_INTS = [INT_MAX, INT_MAX + 1, INT_MIN, INT_MIN - 1, 2**64, -(2**64), 0, -1, 1, 10**100, 2**53 + 1]
EDGE_FLOATS = [
    -0.0, 0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, math.inf, -math.inf,
    math.nan, -math.nan, 2.0**63, -(2.0**63), 2.0**53, 1.0, 1e-300, float.fromhex("0x1.fffffffffffffp-1023"),
]

texts = st.text(st.characters(exclude_categories=()), max_size=40)  # lone surrogates included
ints = st.one_of(st.integers(), st.sampled_from(EDGE_INTS), st.integers(INT_MIN - 5, INT_MIN + 5), st.integers(INT_MAX - 5, INT_MAX + 5))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True), st.sampled_from(EDGE_FLOATS))
odd = st.one_of(
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.tuples(st.integers()),
    st.dictionaries(st.integers(), st.integers(), max_size=2),
    st.frozensets(st.integers(), max_size=2),
    st.binary(max_size=8).map(bytearray),
    st.binary(max_size=8).map(memoryview),
    st.decimals(allow_nan=True),
    st.fractions(),
    st.complex_numbers(),
    st.just(Color.RED),
    st.text(max_size=5).map(MyStr),
    st.binary(max_size=5).map(MyBytes),
    st.integers().map(MyInt),
    st.floats().map(np.float64),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.text(max_size=5).map(np.str_),
    st.just(np.bool_(True)),
    st.dates(),
    st.datetimes(),
    st.uuids(),
    st.just(uuid.uuid4().bytes),  # plain bytes: fine
    st.just(Weird()),
    st.just(object()),
    st.just(int),
    st.just(len),
    st.just(Ellipsis),
)
# Each group equally likely (st.one_of flattens nested choices, so odd's many branches would
# otherwise crowd out the rest).
anything = st.sampled_from(
    [ints, floats, texts, st.binary(max_size=40), st.sampled_from(SQLISH), st.sampled_from(SQLISH).map(str.encode), odd]
).flatmap(lambda group: group)


# Inputs that must be refused: odd types, ints outside 64 bits, text with a lone surrogate, NaN.
hostile = st.sampled_from(
    [
        odd,
        st.one_of(st.integers(min_value=INT_MAX + 1), st.integers(max_value=INT_MIN - 1)),
        st.tuples(texts, st.characters(categories=["Cs"]), texts).map("".join),
        st.sampled_from([math.nan, -math.nan, float("nan")]),
        anything,
    ]
).flatmap(lambda group: group)


def mostly(good, bad, bad_in: int = 4):
    """``bad`` once in ``bad_in`` draws, else ``good``."""
    return st.sampled_from([bad] + [good] * (bad_in - 1)).flatmap(lambda chosen: chosen)


valid_keys = st.one_of(
    st.integers(INT_MIN, INT_MAX),
    st.sampled_from([INT_MIN, INT_MAX, 0, -1]),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from(SQLISH),
)
valid_values = st.one_of(
    valid_keys, st.floats(allow_nan=False), st.sampled_from([f for f in EDGE_FLOATS if not math.isnan(f)])
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    path = str(tmp_path_factory.mktemp("input") / "input.db")
    db = kvstore.open(path)
    db.update([(1, "one"), ("1", 1), (b"1", 1.0), ("zero", 0), ("neg", -0.0), ("s", "'; DROP TABLE items; --")])
    yield db, path
    db.close()
    print(f"\nhostile input figures: {dict(sorted(FIGURES.items()))}")


def untyped(t: tuple) -> object:
    return float.fromhex(t[1]) if t[0] == "float" else t[1]


def held(key: object, items: dict) -> bool:
    """Whether the store holds ``key`` (a float equal to an int key names that key)."""
    whole = type(key) is float and key.is_integer()
    return typed(key) in items or (whole and typed(int(key)) in items)


def snapshot(db: kvstore.Store, path: str):
    return typed_items(db), raw_counts(path)


SETTINGS = settings(
    max_examples=scaled(400),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(key=mostly(valid_keys, hostile, bad_in=3), value=mostly(valid_values, hostile, bad_in=3))
def test_set_round_trips_exactly_or_rejects_without_writing(store, key, value) -> None:
    db, path = store
    before = snapshot(db, path)
    ok = key_ok(key) and value_ok(value)
    try:
        db[key] = value
    except REJECT as exc:
        FIGURES["set rejected"] += 1
        assert not ok, f"{key!r} -> {value!r} should be accepted: {exc!r}"
        assert ("key" in str(exc)) or ("value" in str(exc)), str(exc)
        assert snapshot(db, path) == before, "a rejected set changed the store"
        return
    FIGURES["set accepted"] += 1
    assert ok, f"{key!r} -> {value!r} was accepted, but cannot come back as it was"
    got = db[key]
    assert typed(got) == typed(value), f"{value!r} came back as {got!r}"
    assert key in db and db.get(key) is not None
    stored = list(db.values())
    assert db.count(value) == sum(equal_values(v, value) for v in stored)
    assert db.count(value, strategy="scan") == db.count(value)
    assert list(db.keys_for(value)).count(key) == 1
    # Put the store back as it was, which must also work exactly.
    old = before[0].get(typed(key))
    if old is None:
        del db[key]
    else:
        db[key] = untyped(old)
    assert snapshot(db, path) == before


pairs_or_junk = st.one_of(
    st.tuples(valid_keys, valid_values),
    st.tuples(anything, hostile),
    st.tuples(hostile, anything),
    st.tuples(st.integers(-50, 50), st.sampled_from(["a", "b", 1, 2.5, b"c"])),  # mostly valid
    st.tuples(st.integers(), st.integers(), st.integers()),
    st.tuples(st.integers()),
    st.text(min_size=0, max_size=3),  # a 2-character string unpacks as a pair, as in dict.update
    st.binary(min_size=2, max_size=2),  # so does 2-byte bytes: (int, int)
    st.none(),
    st.integers(),
)


def pair_ok(item: object) -> tuple[bool, tuple | None]:
    try:
        k, v = item  # type: ignore[misc]
    except (TypeError, ValueError):
        return False, None
    return key_ok(k) and value_ok(v), (k, v)


@SETTINGS
@given(items=mostly(st.lists(st.tuples(valid_keys, valid_values), max_size=12), st.lists(pairs_or_junk, min_size=1, max_size=8), bad_in=2))
def test_update_batch_is_all_or_nothing(store, items) -> None:
    db, path = store
    before = snapshot(db, path)
    checked = [pair_ok(item) for item in items]
    ok = all(good for good, _ in checked)
    try:
        db.update(items)
    except REJECT:
        FIGURES["batch rejected"] += 1
        FIGURES["pairs in rejected batches"] += len(items)
        assert not ok, f"batch {items!r} should have been accepted"
        assert snapshot(db, path) == before, "a rejected batch left some of its pairs"
        return
    FIGURES["batch accepted"] += 1
    assert ok, f"batch {items!r} was accepted"
    expected = dict(before[0])
    for _, (k, v) in checked:
        expected[typed(k)] = typed(v)
    assert typed_items(db) == expected
    assert db.verify() == []
    # Restore.
    with db.transaction():
        for k in list(db.keys()):
            if typed(k) not in before[0]:
                del db[k]
        db.update((untyped(k), untyped(v)) for k, v in before[0].items())
    assert snapshot(db, path) == before


@SETTINGS
@given(obj=mostly(valid_values, hostile, bad_in=2))
def test_reads_and_deletes_of_anything_answer_or_reject(store, obj) -> None:
    db, path = store
    before = snapshot(db, path)
    for name, call in [
        ("get", lambda: db.get(obj)),
        ("contains", lambda: obj in db),
        ("count", lambda: db.count(obj)),
        ("keys_for", lambda: list(db.keys_for(obj))),
        # delete() takes float keys back (another program may store them), and 1.0 names key 1.
        ("delete absent", lambda: db.delete(obj) if not held(obj, before[0]) else False),
    ]:
        try:
            call()
            FIGURES[f"{name} answered"] += 1
        except REJECT:
            FIGURES[f"{name} rejected"] += 1
            assert not (key_ok(obj) if name in ("get", "contains", "delete absent") else value_ok(obj)), (name, obj)
    assert snapshot(db, path) == before


def test_sql_looking_keys_and_values_are_just_data(tmp_path: Path) -> None:
    path = str(tmp_path / "sql.db")
    with kvstore.open(path) as db:
        conn = sqlite3.connect(path)
        schema = conn.execute("SELECT * FROM sqlite_master ORDER BY name").fetchall()
        for i, text in enumerate(SQLISH):
            db[text] = text
            db[text.encode()] = i
        db.update((f"{t}{i}", t) for i, t in enumerate(SQLISH))
        for text in SQLISH:
            assert db[text] == text and db.count(text) == 2
            assert sorted(map(repr, db.keys_for(text))) == sorted(map(repr, [text, f"{text}{SQLISH.index(text)}"]))
        assert len(db) == 3 * len(SQLISH)
        assert conn.execute("SELECT * FROM sqlite_master ORDER BY name").fetchall() == schema
        assert db.verify() == []
        conn.close()


def test_boundary_numbers_and_special_floats(tmp_path: Path) -> None:
    path = str(tmp_path / "numbers.db")
    with kvstore.open(path) as db:
        db["max"], db["min"] = INT_MAX, INT_MIN
        for bad in (INT_MAX + 1, INT_MIN - 1, 2**64, 10**100):
            with pytest.raises(OverflowError, match="64-bit"):
                db["x"] = bad
            with pytest.raises(OverflowError):
                db[bad] = 1
        db[INT_MAX] = "max key"
        db[INT_MIN] = "min key"
        for name, f in [("neg0", -0.0), ("pos0", 0.0), ("inf", math.inf), ("ninf", -math.inf), ("sub", 5e-324), ("nsub", -5e-324)]:
            db[name] = f
        db["int0"] = 0
        for bad in (math.nan, -math.nan, float("nan")):
            with pytest.raises(ValueError, match="NaN"):
                db["x"] = bad
        with pytest.raises(ValueError, match="NaN"):
            db.update([("ok", 1), ("x", math.nan)])
        assert "x" not in db and "ok" not in db
        with pytest.raises(TypeError):
            db["f"] = np.float64(1.5)
    with kvstore.open(path) as db:  # after a reopen, from the file
        assert math.copysign(1.0, db["neg0"]) == -1.0 and db["neg0"] == 0.0, "-0.0 keeps its sign"
        assert math.copysign(1.0, db["pos0"]) == 1.0
        assert db["inf"] == math.inf and db["ninf"] == -math.inf
        assert db["sub"] == 5e-324 and db["nsub"] == -5e-324
        assert type(db["int0"]) is int and (db["max"], db["min"]) == (INT_MAX, INT_MIN)
        assert db[INT_MAX] == "max key" and db[INT_MIN] == "min key"
        # -0.0, 0.0 and 0 are one value for counting, as in Python (0 == -0.0).
        assert db.count(-0.0) == db.count(0.0) == db.count(0) == 3
        assert sum(1 for _ in db.keys_for(0)) == 3
        assert db.count(math.inf) == 1 and db.count(5e-324) == 1
        assert db.verify() == []


HUGE = 10 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.parametrize(
    "key, value",
    [
        ("blob", b"\x00\xff" * (HUGE // 2)),
        ("text", ("a\x00\U0001f600é" * (HUGE // 8))),
        ("a" * 1_000_000, "big key"),
        (b"\x00" * 1_000_000, b""),
        ("nul", "\x00" * 1000),
        ("", ""),
        (b"", b""),
    ],
    ids=["10MB blob", "10MB text with NULs and astral chars", "1MB text key", "1MB NUL blob key", "NULs", "empty text", "empty bytes"],
)
def test_huge_and_odd_values_round_trip(tmp_path: Path, key, value) -> None:
    path = str(tmp_path / "huge.db")
    with kvstore.open(path) as db:
        db[key] = value
        db.update([(b"copy", value)])
    with kvstore.open(path) as db:
        assert typed(db[key]) == typed(value) and typed(db[b"copy"]) == typed(value)
        assert db.count(value) == 2 and set(db.keys_for(value)) == {key, b"copy"}
        assert db.verify() == []
    FIGURES["huge examples"] += 1


@pytest.mark.slow
def test_lone_surrogate_deep_in_a_huge_string_is_rejected_without_writing(tmp_path: Path) -> None:
    path = str(tmp_path / "surrogate.db")
    with kvstore.open(path) as db:
        db["keep"] = "kept"
        bad = "x" * (HUGE // 2) + "\ud800" + "y" * 10
        with pytest.raises(ValueError, match="UTF-8"):
            db["bad"] = bad
        with pytest.raises(ValueError):
            db.update([("ok", "fine"), ("bad", bad)])
        assert dict(db) == {"keep": "kept"} and db.verify() == []


def test_too_big_for_sqlite_is_a_value_error_and_the_batch_is_rejected(tmp_path: Path, monkeypatch) -> None:
    """SQLite's length limit (1 GB by default; lowered here to 1 MB) refuses the value at bind
    time: a ValueError, and an update() batch holding it is rolled back whole."""
    original = kvstore.sqlite.connection.apply_pragmas

    def limited(conn, options):
        original(conn, options)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000)

    monkeypatch.setattr(kvstore.sqlite.connection, "apply_pragmas", limited)
    path = str(tmp_path / "limit.db")
    with kvstore.open(path) as db:
        db["keep"] = "kept"
        with pytest.raises(ValueError, match="larger than SQLite allows"):
            db["big"] = b"x" * 2_000_000
        with pytest.raises(ValueError, match="larger than SQLite allows"):
            db.update(itertools.chain(((i, "v") for i in range(25_000)), [("big", "y" * 2_000_000)]))
        assert dict(db) == {"keep": "kept"} and db.verify() == []


# -- a bad pair deep in a large batch -------------------------------------------------------


def big_batch_then(bad, n: int = 70_000):
    yield from ((f"b{j}", f"v{j % 7}") for j in range(n))
    if isinstance(bad, BaseException):
        raise bad
    yield bad


@pytest.mark.parametrize(
    "bad, error",
    [
        (("k", None), TypeError),
        ((True, "v"), TypeError),
        (("k", math.nan), ValueError),
        ((2**63, "v"), OverflowError),
        (("\udfff", "v"), ValueError),
        ("abc", TypeError),
        (RuntimeError("the source of the pairs failed"), RuntimeError),
        (KeyboardInterrupt(), KeyboardInterrupt),
    ],
    ids=["None value", "bool key", "NaN", "int too big", "lone surrogate", "not a pair", "source raises", "Ctrl-C"],
)
def test_one_bad_pair_after_the_bulk_path_rejects_the_whole_batch(tmp_path: Path, bad, error) -> None:
    path = str(tmp_path / "batch.db")
    with kvstore.open(path) as db:
        db.update((i, f"v{i % 3}") for i in range(1000))
        before = snapshot(db, path)
        with pytest.raises(error):
            db.update(big_batch_then(bad))  # 70,000 good pairs first: the bulk path is under way
        assert snapshot(db, path) == before
        assert trigger_names(path) >= {n for n in ("items_after_insert", "items_after_delete")}
        assert db.verify() == []

        # Inside an outer transaction that catches the error: the outer block still commits
        # its own writes, none of the batch, with the triggers in place.
        with db.transaction():
            db["outer before"] = 1
            with pytest.raises(error):
                db.update(big_batch_then(bad))
            db["outer after"] = 2
        assert db["outer before"] == 1 and db["outer after"] == 2 and "b0" not in db
        assert db.verify() == []
        db["later"] = "v1"  # the triggers still count
        assert db.count("v1") == before[1][typed("v1")] + 1
    FIGURES["bad pairs after 70,000 good ones"] += 2
