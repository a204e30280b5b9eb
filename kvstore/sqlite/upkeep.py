"""Upkeep: compare the file's schema objects and rows with kvstore's model, and restore them.

:func:`problems` is ``Store.verify()`` and :func:`repair` is ``Store.repair()``; the store
supplies the connection and the transaction. What the model expects is the text SQLite keeps
in ``sqlite_master`` for a file kvstore created: the tables and the value index from
:mod:`kvstore.sqlite.sql` (generated from the SQLAlchemy models, so SQLAlchemy is never imported
here) and the triggers from :mod:`kvstore.sqlite.triggers`. An object whose text differs in any way
is reported as altered and recreated by repair().

Decisions:

- **Foreign triggers.** A trigger that is not kvstore's but is attached to ``counts`` or
  ``items_displaced``, or whose text names either of them (string literals aside), can change
  counts behind the triggers' back, so it is reported, and repair() drops it: counts cannot
  be kept exact while it exists. The report carries its definition so it can be recreated
  elsewhere. Other foreign triggers (an audit log, a veto on ``items``) are left alone.
- **items recreated with another definition** is rebuilt with kvstore's definition, copying
  every row (through a scratch table, in the repair transaction), and the foreign indexes and
  triggers it had are recreated. Only when the copy loses nothing: not when the table has
  columns besides key and value, rows with a NULL key or value, or keys held by several rows
  (kvstore's table cannot hold those). Then it is reported as not repairable, and the rest
  is still repaired. An ``items`` that is a view or a virtual table, or lacks a key or value
  column, cannot be used at all: repair() raises and changes nothing.
- **Rows outside kvstore's types** (float keys; NULLs where an altered table allows them) are
  data: verify() lists them (:class:`ForeignRow`, at most FOREIGN_ROWS_LISTED), repair()
  keeps them, and the store reads and removes them like any other row.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field, replace
from typing import Any

from kvstore.errors import UNDECODABLE, Error
from kvstore.problems import ForeignRow, Mismatch, Problem, SchemaProblem
from kvstore.sqlite import COUNTS_INDEX, VALUE_INDEX, sql, triggers
from kvstore.validate import Value

FOREIGN_ROWS_LISTED = 10
"""verify() lists at most this many rows outside kvstore's types; the last one gives the total."""

GROUPS_RATIO = 100
"""Recounting takes the skip-scan below one distinct value per this many rows (measured at 1M
rows: a seek per distinct value ~6 µs, the scan ~0.4 µs per row), else the scan."""
MAX_PROBE = 100_000
"""The most distinct values the choice counts (max(rowid) bounds the rows, and a program may
have written huge rowids)."""

TRIGGERS = {triggers.trigger_name(ddl): ddl for ddl in triggers.CURRENT}
_BOOKKEEPING = ("counts", "items_displaced")
_REPLACEABLE = (
    ("counts", sql.COUNTS_TABLE),
    (COUNTS_INDEX, sql.COUNTS_INDEX),
    ("items_displaced", sql.DISPLACED_TABLE),
    (VALUE_INDEX, sql.VALUE_INDEX),
)
"""The model's objects that hold nothing but what repair() recomputes: dropped and recreated."""
_SCRATCH = "kvstore_items_rebuild"


_MISSING = {
    "items": "table is missing: every item is gone; repair() creates it empty (restore the "
    "items from a backup first if you have one)",
    "counts": "table is missing: every write to items fails and len() and count() cannot "
    "answer; repair() recreates it and counts every value in items",
    "items_displaced": "table (the triggers' bookkeeping) is missing: every write to items "
    "fails; repair() recreates it",
    VALUE_INDEX: "index on items.value is missing: count(strategy='group_by') fails and "
    "keys_for() reads every row; repair() recreates it",
    COUNTS_INDEX: "index on counts.value is missing: every write to items and every count() "
    "reads all of counts; repair() recreates it",
}
_ALTERED = {
    "counts": "table differs from kvstore's definition (e.g. recreated without CHECK (n > 0) "
    "or with a type that converts values), so its counts cannot be trusted; repair() "
    "recreates it and counts every value in items",
    "items_displaced": "table (the triggers' bookkeeping) differs from kvstore's definition; "
    "repair() recreates it (it holds nothing between statements)",
    VALUE_INDEX: "index differs from kvstore's definition (e.g. a partial index): "
    "count(strategy='group_by') fails; repair() recreates it",
    COUNTS_INDEX: "index differs from kvstore's definition, so writes and count() may read all "
    "of counts; repair() recreates it",
}


@dataclass
class _Survey:
    """What is wrong with one snapshot of the file, and what repair() will do about it."""

    problems: list[Problem] = field(default_factory=list)
    fixable: int = 0
    items: str = "ok"
    """ok | missing | rebuild (altered, copied safely) | keep (altered, kept) | unusable."""
    replace: set[str] = field(default_factory=set)
    """Names of model objects (counts, items_displaced, the index) to drop and recreate."""
    foreign: list[str] = field(default_factory=list)
    """Foreign triggers that may write counts: repair() drops them."""
    blocked: str | None = None
    """Why repair() cannot run at all (items unusable)."""

    def report(self, problem: Problem, fixable: bool = True) -> None:
        fixable = fixable and problem.fixable
        self.problems.append(replace(problem, fixable=fixable))
        self.fixable += fixable


def problems(conn: sqlite3.Connection) -> list[Problem]:
    """Every difference between the file and kvstore's model; [] when counts are exact.

    Reads only; the caller provides one consistent snapshot. O(rows). A missing table is a
    problem reported, never an exception; so is text that is not valid UTF-8 (see
    :func:`_undecodable`).
    """
    try:
        return _survey(conn).problems
    except sqlite3.OperationalError as exc:
        if UNDECODABLE not in str(exc):
            raise
        return _undecodable(conn)


def repair(conn: sqlite3.Connection, path: str) -> int:
    """Restore what :func:`problems` reports and repair can fix; returns how many it fixed.

    The caller holds a write transaction: everything happens in it or not at all.
    """
    survey = _survey(conn)
    if not survey.fixable:
        return 0
    if survey.blocked:
        raise Error(f"{path}: repair() cannot restore counts, and changed nothing: {survey.blocked}")
    for name in survey.foreign:
        conn.execute(f"DROP TRIGGER {_quote(name)}")
    triggers.drop(conn)
    if survey.items == "missing":
        conn.execute(sql.ITEMS_TABLE)
    elif survey.items == "rebuild":
        _rebuild_items(conn)
    for name, ddl in _REPLACEABLE:
        found = _objects(conn).get(name)  # re-read: dropping a table drops its indexes
        if found is not None and name in survey.replace:
            conn.execute(f"DROP {found[0].upper()} {_quote(found[1])}")
            found = None
        if found is None:
            conn.execute(ddl)
    conn.execute(sql.CLEAR_COUNTS)
    conn.execute(recount_statements(conn)[1])
    conn.execute(sql.CLEAR_DISPLACED)
    for ddl in triggers.CURRENT:
        conn.execute(ddl)
    return survey.fixable


def recount_statements(conn: sqlite3.Connection) -> tuple[str, str]:
    """The statements that recount items' values and rebuild counts, chosen for this file.

    The skip-scan (:data:`sql.RECOUNT`) costs one index seek per distinct value, the scan
    (:data:`sql.RECOUNT_SCAN`) one pass over the value index: the skip-scan is chosen when a
    probe finds fewer than one distinct value per GROUPS_RATIO rows (it stops counting there,
    so it costs at most that many seeks). An items table without rowids (recreated so by
    another program) can only be scanned.
    """
    try:
        (bound,) = conn.execute(sql.ROWID_BOUND).fetchone()
        limit = min(MAX_PROBE, 100 + max(0, bound or 0) // GROUPS_RATIO)
        (groups,) = conn.execute(sql.RECOUNT_GROUPS, (limit,)).fetchone()
    except sqlite3.OperationalError:
        return sql.RECOUNT_SCAN, sql.REBUILD_COUNTS_SCAN
    if groups < limit:
        return sql.RECOUNT, sql.REBUILD_COUNTS
    return sql.RECOUNT_SCAN, sql.REBUILD_COUNTS_SCAN


# -- the survey ----------------------------------------------------------------------------


def _objects(conn: sqlite3.Connection) -> dict[str, tuple[str, str, str, str | None]]:
    """Tables, indexes and views by lower-case name: (type, name, table, sql)."""
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type <> 'trigger'")
    return {name.lower(): (kind, name, table, text) for kind, name, table, text in rows}


def _survey(conn: sqlite3.Connection) -> _Survey:
    survey = _Survey()
    objects = _objects(conn)
    _survey_items(conn, objects.get("items"), survey)
    for name, ddl in _REPLACEABLE:
        if name == COUNTS_INDEX and ("counts" not in objects or "counts" in survey.replace):
            continue  # part of the table's problem: recreating the table recreates it
        _survey_object(name, ddl, objects.get(name), survey)
    _survey_triggers(conn, survey)
    if survey.items != "missing" and not survey.blocked:
        _survey_rows(conn, survey)
        counts = objects.get("counts")
        if counts is not None and counts[3] == sql.COUNTS_TABLE:
            counted = dict(conn.execute(recount_statements(conn)[0]))
            stored: dict[Value, int] = {}
            for value, n in conn.execute(sql.COUNTS):
                if value in stored:  # no constraint stops another program writing a second row
                    survey.report(SchemaProblem("counts", f"holds more than one row for the value {value!r}, "
                                                "so count() may read either; repair() recounts it"))
                stored.setdefault(value, n)
            for value in {**counted, **stored}:
                if counted.get(value, 0) != stored.get(value, 0):
                    survey.report(Mismatch(value, counted.get(value, 0), stored.get(value, 0)))
    return survey


def _survey_object(name: str, ddl: str, found: tuple[str, str, str, str | None] | None, survey: _Survey) -> None:
    if found is None:
        survey.report(SchemaProblem(name, _MISSING[name]))
        return
    kind, actual, _, text = found
    wanted = ddl.split(None, 2)[1].lower()  # "table" or "index"
    if kind != wanted and kind == "table":  # a table of someone else's holds the index's name
        survey.report(SchemaProblem(actual, "a table holds the name of kvstore's index, so the "
                                    "index cannot exist: rename that table, then run repair()"), False)
    elif kind != wanted:
        survey.report(SchemaProblem(actual, f"is a {kind}, not kvstore's {wanted}; repair() "
                                    f"replaces it with kvstore's {wanted}"))
        survey.replace.add(name)
    elif text != ddl:
        survey.report(SchemaProblem(actual, _ALTERED[name]))
        survey.replace.add(name)


def _survey_items(conn: sqlite3.Connection, found: tuple[str, str, str, str | None] | None, survey: _Survey) -> None:
    if found is None:
        survey.items = "missing"
        survey.report(SchemaProblem("items", _MISSING["items"]))
        return
    kind, name, _, text = found
    if text == sql.ITEMS_TABLE:
        return
    if kind != "table" or (text or "").upper().startswith("CREATE VIRTUAL"):
        what = "a virtual table" if kind == "table" else f"a {kind}"
        survey.blocked = (f"items is {what}, not kvstore's table: kvstore can neither use nor "
                          "rebuild it; rename it and restore the items from a backup")
        survey.items = "unusable"
        survey.report(SchemaProblem(name, survey.blocked), False)
        return
    columns = [row[1].lower() for row in conn.execute("PRAGMA table_xinfo(items)")]
    lacking = [column for column in ("key", "value") if column not in columns]
    if lacking:
        survey.blocked = (f"items differs from kvstore's definition and has no "
                          f"{' or '.join(lacking)} column: kvstore can neither use nor rebuild it; "
                          "restore it from a backup")
        survey.items = "unusable"
        survey.report(SchemaProblem(name, survey.blocked), False)
        return
    reasons = []
    extra = [column for column in columns if column not in ("key", "value")]
    if extra:
        reasons.append(f"it has columns besides key and value ({', '.join(extra)}), which a copy would lose")
    (nulls,) = conn.execute("SELECT count(*) FROM items WHERE key IS NULL OR value IS NULL").fetchone()
    if nulls:
        reasons.append(f"{nulls} row(s) hold a NULL key or value")
    (shared,) = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM items WHERE key IS NOT NULL "
        "GROUP BY key COLLATE BINARY HAVING count(*) > 1)"
    ).fetchone()
    if shared:
        reasons.append(f"{shared} key(s) are held by more than one row")
    if reasons:
        survey.items = "keep"
        survey.report(SchemaProblem(name, (
            "table differs from kvstore's definition, and repair() cannot rebuild it without "
            f"losing data: {'; '.join(reasons)}. Fix or delete those rows (or move the extra "
            "columns elsewhere), then run repair() again; until then counts stay exact only "
            "while no key is held twice")), False)
        return
    survey.items = "rebuild"
    survey.report(SchemaProblem(name, (
        "table differs from kvstore's definition (e.g. a WITHOUT ROWID table, or declared types whose "
        "affinity converts keys and values); repair() rebuilds it with kvstore's definition, "
        "copying every row")))


def _survey_triggers(conn: sqlite3.Connection, survey: _Survey) -> None:
    installed = {
        name.lower(): (name, table, text)
        for name, table, text in conn.execute("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
    }
    for name, ddl in TRIGGERS.items():
        if name not in installed:
            survey.report(SchemaProblem(name, "trigger is missing; counts will drift"))
        elif installed[name][2] != ddl:
            survey.report(SchemaProblem(name, "trigger differs from kvstore's definition, so counts "
                                        "may drift; repair() restores it"))
    for key, (name, table, text) in sorted(installed.items()):
        if key in TRIGGERS:
            continue
        target = table.lower() if table.lower() in _BOOKKEEPING else _names_bookkeeping(name, text or "")
        if target:
            how = "is attached to" if target == table.lower() else "names"
            survey.report(SchemaProblem(name, (
                f"trigger on {table} is not kvstore's and {how} {target}, so it can change counts "
                "behind kvstore's triggers; repair() drops it (to recreate it elsewhere, its "
                f"definition is: {text})")))
            survey.foreign.append(name)


# String literals and comments name no table; one pattern, so that a quote inside a comment
# or "--" inside a literal is read as SQLite reads it.
_LITERAL = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?(?:\*/|$)", re.S)
_WORD = re.compile(r"(?<![\w$])(counts|items_displaced)(?![\w$])", re.IGNORECASE)


def _names_bookkeeping(name: str, text: str) -> str:
    """Which of counts/items_displaced the trigger's text names after its own name ('' if none)."""
    start = text.lower().find(name.lower())
    body = _LITERAL.sub(" ", text[start + len(name):] if start >= 0 else text)
    match = _WORD.search(body)
    return match.group(1).lower() if match else ""


def _survey_rows(conn: sqlite3.Connection, survey: _Survey) -> None:
    # Keys int, str or bytes, values anything but NULL: only a REAL or NULL key, or a NULL value,
    # is outside (written so, not as a NOT IN list: ~3x cheaper per row).
    outside = "typeof(key) = 'real' OR key IS NULL OR value IS NULL"
    rows = conn.execute(
        f"SELECT key, value FROM items WHERE {outside} ORDER BY key LIMIT ?", (FOREIGN_ROWS_LISTED + 1,)
    ).fetchall()
    found = [ForeignRow(key, value, _foreign(key, value)) for key, value in rows[:FOREIGN_ROWS_LISTED]]
    if len(rows) > FOREIGN_ROWS_LISTED:
        (total,) = conn.execute(f"SELECT count(*) FROM items WHERE {outside}").fetchone()
        last = found[-1]
        found[-1] = replace(last, problem=f"{last.problem}; {total - len(found)} more such rows are "
                            f"not listed ({total} in all)")
    for row in found:
        survey.report(row, False)


def _undecodable(conn: sqlite3.Connection) -> list[Problem]:
    """What verify() reports when reading the rows failed on text that is not valid UTF-8
    (another program wrote it; Python's sqlite3 cannot return it as str): those rows of items
    (at most FOREIGN_ROWS_LISTED + 1, the keys and values shown with the bad bytes escaped),
    or, when items holds none, how many rows of counts do (edited by another program), and that
    counts could not be compared. Reads the text as bytes, so a scan of the text rows."""
    factory = conn.text_factory
    conn.text_factory = bytes
    found: list[Problem] = []
    counted = 0
    try:
        # typeof() compared in SQL: its own answer would come back as bytes too.
        rows = conn.execute("SELECT key, typeof(key) = 'text', value, typeof(value) = 'text' FROM items "
                            "WHERE typeof(key) = 'text' OR typeof(value) = 'text'")
        for key, key_text, value, value_text in rows:
            bad = [what for what, data, text in (("key", key, key_text), ("value", value, value_text))
                   if text and not _utf8(data)]
            if bad:
                found.append(ForeignRow(_shown(key, key_text), _shown(value, value_text), (
                    f"the {' and the '.join(bad)} {'are' if len(bad) > 1 else 'is'} text that is not valid "
                    "UTF-8: another program wrote it. kvstore cannot read it (reads of this row, "
                    "iteration and the count check fail); rewrite or delete the row with another "
                    "program; repair() cannot fix it")))
                if len(found) > FOREIGN_ROWS_LISTED:
                    break
        if not found:
            rows = conn.execute("SELECT value FROM counts WHERE typeof(value) = 'text'")
            counted = sum(not _utf8(value) for (value,) in rows)
    finally:
        conn.text_factory = factory
    if found:
        found.append(SchemaProblem("counts", "not compared with items, whose rows above kvstore cannot "
                                   "read; fix them, then verify again", fixable=False))
    else:
        found.append(SchemaProblem("counts", f"{counted} of its rows hold text that is not valid UTF-8, "
                                   "which no row of items holds: another program edited counts. kvstore "
                                   "cannot read them, so counts were not compared and repair() cannot "
                                   "run; delete those rows of counts with another program, then run "
                                   "repair() to recount", fixable=False))
    return found


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _shown(data: Any, text: int) -> object:
    """A key or value read with text_factory=bytes, as verify() shows it: text as str (bad bytes
    escaped), anything else as it is."""
    return data.decode("utf-8", "backslashreplace") if text else data


def _foreign(key: object, value: object) -> str:
    what = []
    if key is None:
        what.append("the key is NULL")
    elif type(key) is float:
        what.append("the key is a float")
    if value is None:
        what.append("the value is NULL")
    return (f"{' and '.join(what)}, outside kvstore's types (keys int, str or bytes; values not "
            "NULL): another program wrote it. Iteration, pop(), del and popitem() read and remove "
            "it; get() and set() refuse its key; repair() keeps it (it is data)")


# -- repairs -------------------------------------------------------------------------------


def _rebuild_items(conn: sqlite3.Connection) -> None:
    """Recreate items with kvstore's definition, keeping its rows and foreign indexes and triggers.

    Copied out and back (not renamed: ALTER TABLE RENAME rewrites the stored definition and
    every view and trigger that names the table). kvstore's triggers are already dropped.
    """
    kept = [text for (text,) in conn.execute(
        "SELECT sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL "
        "AND lower(tbl_name) = 'items' AND lower(name) <> ?", (VALUE_INDEX,)
    )]
    conn.execute(f"CREATE TABLE {_SCRATCH} (key, value)")
    conn.execute(f"INSERT INTO {_SCRATCH} SELECT key, value FROM items")
    conn.execute("DROP TABLE items")
    conn.execute(sql.ITEMS_TABLE)
    conn.execute(f"INSERT INTO items (key, value) SELECT key, value FROM {_SCRATCH}")
    conn.execute(f"DROP TABLE {_SCRATCH}")
    for text in kept:
        conn.execute(text)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
