"""count()'s two statements: sql.COUNT_SHORT for a value the value indexes hold whole, sql.COUNT
for every other, and the rule in kvstore.sqlite.reads that picks one (SQLite only).

COUNT_SHORT binds the value as it is, so it may only be used where sql.COUNT's expressions on
the value would give (the value, 0): checked here against sql.COUNT itself, on raw files in
both text encodings a file can have (UTF-8, which kvstore makes, and UTF-16, which another
program may have made), for awkward values: text with non-ASCII characters and NUL, text and
blobs of the same bytes, lengths around PREFIX in characters and in bytes, ints at the int64
bounds, -0.0 and the infinities.
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvstore
from kvstore.sqlite import reads, sql, triggers
from kvstore.sqlite.triggers import PREFIX
from kvstore.validate import INT_MAX, INT_MIN

AROUND = [PREFIX - 1, PREFIX, PREFIX + 1, PREFIX // 2, PREFIX // 2 + 1, 8, 9]
AWKWARD: list[object] = [
    0, 1, 1.0, -0.0, 0.0, INT_MIN, INT_MAX, float("inf"), float("-inf"), 2.5, "", b"", "1", b"1",
    *("a" * n for n in AROUND), *(b"a" * n for n in AROUND), *("é" * n for n in AROUND),
    *("\U0001f600" * n for n in AROUND), *("a\x00" * n for n in AROUND), *(b"a\x00" * n for n in AROUND),
    "\x00" * PREFIX + "x", "é" * 16 + "x", "a" * PREFIX + "é",
]

values = st.one_of(
    st.sampled_from(AWKWARD),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=PREFIX + 8),
    st.text("a\x00é\U0001f600", max_size=PREFIX + 4),
    st.binary(max_size=PREFIX + 8),
    st.integers(INT_MIN, INT_MAX),
    st.floats(allow_nan=False),
)


def raw_store(encoding: str) -> sqlite3.Connection:
    """An in-memory database with kvstore's tables, indexes and triggers, in ``encoding``."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(f"PRAGMA encoding = '{encoding}'")
    for ddl in (sql.ITEMS_TABLE, sql.COUNTS_TABLE, sql.DISPLACED_TABLE, sql.VALUE_INDEX, sql.COUNTS_INDEX,
                *triggers.CURRENT):
        conn.execute(ddl)
    assert conn.execute("PRAGMA encoding").fetchone()[0].upper().startswith(encoding.upper()[:6])
    return conn


def with_variants(value: object) -> list[object]:
    """``value`` and the values most easily confused with it: the other of text/blob of the same
    bytes, and the same value cut or grown around PREFIX."""
    out = [value]
    if isinstance(value, str):
        out += [value.encode("utf-8"), value[:PREFIX], value + "a", value[:-1]]
    elif isinstance(value, bytes):
        out += [value.decode("utf-8", "replace"), value[:PREFIX], value + b"a", value[:-1]]
    return out


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF-16le", "UTF-16be"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=st.lists(values, max_size=6), asked=st.lists(values, max_size=4))
def test_the_chosen_statement_agrees_with_COUNT(encoding, stored, asked):
    conn = raw_store(encoding)
    kept = [v for value in stored for v in with_variants(value)]
    conn.executemany("INSERT INTO items (key, value) VALUES (?, ?)", enumerate(kept))
    for value in [*kept, *asked, *AWKWARD]:
        chosen = reads._count_sql(value)
        assert conn.execute(chosen, (value,)).fetchall() == conn.execute(sql.COUNT, (value,)).fetchall(), (
            value, chosen == sql.COUNT_SHORT)


def test_numbers_and_short_values_take_COUNT_SHORT_and_long_ones_COUNT():
    short = [0, INT_MIN, INT_MAX, -0.0, float("inf"), 2.5, "", "a" * (PREFIX // 2), "é" * 8,
             "\U0001f600" * 8, b"", b"\x00" * PREFIX, "a\x00b"]
    long = ["a" * (PREFIX // 2 + 1), "é" * 9, "\U0001f600" * 9, b"a" * (PREFIX + 1), "a" * (PREFIX + 1)]
    assert [reads._count_sql(v) for v in short] == [sql.COUNT_SHORT] * len(short)
    assert [reads._count_sql(v) for v in long] == [sql.COUNT] * len(long)


def test_count_runs_COUNT_SHORT_for_a_short_value(path):
    """The statement count() and count_many() run (the time they save is not asserted)."""
    with kvstore.open(path) as db:
        db.update({1: "apple", 2: "apple", 3: "a" * 40, 4: 7})
        slot = db._pool.enter()
        seen: list[str] = []
        try:
            slot.conn.set_trace_callback(seen.append)
        finally:
            slot.lock.release()
        assert [db.count("apple"), db.count(7.0), db.count("a" * 40), db.count("b" * 20)] == [2, 1, 1, 0]
        assert db.count_many(["apple", "a" * 40]) == {"apple": 2, "a" * 40: 1}
        ran = [s for s in seen if s.startswith("SELECT counts.n")]
        short, count = sql.COUNT_SHORT.replace("?1", "'apple'"), sql.COUNT.replace("?1", f"'{'a' * 40}'")
        assert ran[:2] == [short, sql.COUNT_SHORT.replace("?1", "7.0")]
        assert ran[2] == count
        assert ran[4:] == [short, count]


@pytest.mark.parametrize("value", AWKWARD)
def test_count_agrees_with_a_scan_for_awkward_values(path, value):
    with kvstore.open(path) as db:
        db.update(enumerate(v for a in AWKWARD for v in with_variants(a)))
        assert db.count(value) == db.count(value, strategy="scan") == db.count_many([value])[value]


@pytest.mark.parametrize("encoding", ["UTF-16le", "UTF-16be"])
def test_count_on_a_utf16_file_another_program_made(tmp_path, encoding):
    """count()'s inlined rule (ASCII text of at most PREFIX // 2 characters is short) holds in a
    UTF-16 file, where such text takes two bytes a character: ASCII values of 15 to 33
    characters, and the others, agree with a scan in a kvstore file copied into UTF-16."""
    asked = [*("a" * n for n in range(PREFIX // 2 - 1, PREFIX + 2)), *AWKWARD, "é" * 9]
    source, target = str(tmp_path / "utf8.db"), str(tmp_path / "utf16.db")
    with kvstore.open(source) as db:
        db.update(enumerate(v for v in asked for _ in range(2)))
    old, new = sqlite3.connect(source), sqlite3.connect(target, isolation_level=None)
    try:
        new.execute(f"PRAGMA encoding = '{encoding}'")
        new.execute("PRAGMA journal_mode = WAL")
        new.execute("BEGIN")
        objects = old.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                              "ORDER BY type = 'trigger', type = 'index'").fetchall()
        for kind, name, ddl in objects:
            new.execute(ddl)
            if kind == "table":
                rows = old.execute(f'SELECT * FROM "{name}"').fetchall()
                if rows:
                    new.executemany(f'INSERT INTO "{name}" VALUES ({", ".join("?" * len(rows[0]))})', rows)
        new.execute("COMMIT")
        for pragma in ("application_id", "user_version"):
            new.execute(f"PRAGMA {pragma} = {old.execute(f'PRAGMA {pragma}').fetchone()[0]}")
    finally:
        old.close()
        new.close()
    with kvstore.open(target) as db:
        assert db._row("PRAGMA encoding", ())[0].upper() == encoding.upper()
        for value in [*asked, "not stored", "b" * (PREFIX // 2)]:
            assert db.count(value) == db.count(value, strategy="scan") == db.count_many([value])[value], value
        assert db.count("a" * PREFIX) == 2 * asked.count("a" * PREFIX) and db.count("not stored") == 0
        assert db.verify() == []
