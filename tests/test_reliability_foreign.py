"""Foreign writers: raw sqlite3 clients using every statement form while the library writes.

The triggers keep counts exact whatever other programs do through SQL, at either
``recursive_triggers`` setting, concurrently with the store's own writes (including a bulk
update() that drops and recreates the triggers inside its transaction). Damage that no
trigger can see (the items table dropped and recreated, counts edited by hand, triggers
dropped or altered, the value index dropped) is reported by verify() and fixed by repair().
(tests/test_triggers.py has the single-threaded form x pragma matrix.)
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import pytest

import kvstore
from kvstore.sqlite import triggers
from tests._rel_workers import (
    FOREIGN_FORMS,
    FOREIGN_KEYS,
    FOREIGN_VALUES,
    integrity,
    start,
    stop,
)
from tests.helpers import SCALE

DURATION = max(3.0, 3.0 * SCALE)
TRIGGERS = [triggers.trigger_name(ddl) for ddl in triggers.CURRENT]


def library_writer(
    db: kvstore.Store, duration: float, seed: int, out: dict, bulk: bool = False, check: bool = True
) -> None:
    """The store's own writes on the keys the foreign writers use; no model (they change them).
    ``check``: inside its transactions (under the write lock) count() must match keys_for()."""
    rng = random.Random(seed)
    ops: Counter = Counter()
    errors: list[str] = []
    deadline = time.monotonic() + duration
    bulk_at = time.monotonic() + duration / 2 if bulk else None
    keys = FOREIGN_KEYS + [f"lib{i}" for i in range(50)]
    try:
        while time.monotonic() < deadline:
            r = rng.random()
            if bulk_at is not None and time.monotonic() >= bulk_at:
                bulk_at = None
                db.update((f"bulk{j}", FOREIGN_VALUES[j % len(FOREIGN_VALUES)]) for j in range(55_000))
                ops["bulk update"] += 1
            elif r < 0.35:
                db[rng.choice(keys)] = rng.choice(FOREIGN_VALUES)
                ops["set"] += 1
            elif r < 0.5:
                db.delete(rng.choice(keys))
                ops["delete"] += 1
            elif r < 0.65:
                db.update((rng.choice(keys), rng.choice(FOREIGN_VALUES)) for _ in range(rng.randrange(1, 60)))
                ops["update"] += 1
            elif r < 0.8:
                try:
                    with db.transaction():
                        for _ in range(rng.randrange(1, 6)):
                            db[rng.choice(keys)] = rng.choice(FOREIGN_VALUES)
                        db.delete(rng.choice(keys))
                        value = rng.choice(FOREIGN_VALUES)
                        if check and db.count(value) != sum(1 for _ in db.keys_for(value)):
                            errors.append(f"inside a transaction count({value!r}) disagrees with keys_for")
                        if rng.random() < 0.3:
                            raise KeyboardInterrupt  # any exception rolls the block back
                    ops["transaction"] += 1
                except KeyboardInterrupt:
                    ops["rolled back transaction"] += 1
            else:
                db.count(rng.choice(FOREIGN_VALUES))
                db.get(rng.choice(keys))
                ops["read"] += 1
            time.sleep(rng.uniform(0.0, 0.002))  # no tight loop: lock waits poll, they do not queue
    except Exception:  # noqa: BLE001 - reported as a failure
        errors.append(traceback.format_exc())
    out.update(ops=ops, errors=errors)


def verifier(db: kvstore.Store, stop_event: threading.Event, out: dict) -> None:
    """verify() over and over while everyone writes: every snapshot must be exact."""
    runs, problems = 0, []
    try:
        while not stop_event.is_set():
            found = db.verify()
            runs += 1
            if found:
                problems.append(found[:5])
            time.sleep(0.05)
    except Exception:  # noqa: BLE001
        problems.append(traceback.format_exc())
    out.update(runs=runs, problems=problems)


def seeded(path: str) -> None:
    with kvstore.open(path) as db:
        db.update((k, FOREIGN_VALUES[i % len(FOREIGN_VALUES)]) for i, k in enumerate(FOREIGN_KEYS))


@pytest.mark.slow
def test_foreign_writers_with_every_form_while_the_library_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "foreign.db")
    seeded(path)
    outs = [str(tmp_path / f"foreign{r}.json") for r in (0, 1)]
    procs = []
    db = kvstore.open(path)
    results = [dict(), dict()]
    checks: dict = {}
    stop_event = threading.Event()
    threads = [
        threading.Thread(target=library_writer, args=(db, DURATION, 1, results[0], True)),
        threading.Thread(target=library_writer, args=(db, DURATION, 2, results[1])),
    ]
    checker = threading.Thread(target=verifier, args=(db, stop_event, checks))
    try:
        procs = [start("foreign", path, r, DURATION, 10 + r, outs[r]) for r in (0, 1)]
        for t in (*threads, checker):
            t.start()
        for t in threads:
            t.join(DURATION + 120)
        errs = [stop(p, DURATION + 120)[1] for p in procs]
    finally:
        stop_event.set()
        checker.join(60)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    assert [p.returncode for p in procs] == [0, 0], errs
    assert not any(t.is_alive() for t in threads)
    for r in results:
        assert not r["errors"], r["errors"][:3]
    assert not checks["problems"], checks["problems"][:3]

    forms: dict[int, Counter] = {}
    for r, out in enumerate(outs):
        with open(out) as f:
            result = json.load(f)
        assert result["alive"] == [False, False]
        forms[r] = Counter()
        for thread in result["threads"]:
            assert not thread["errors"], thread["errors"][:3]
            forms[r].update(thread["outcomes"])
    for r in (0, 1):
        ran = {name.rsplit(":", 1)[0] for name in forms[r]}
        assert ran >= {name for name, _ in FOREIGN_FORMS} | {"delete all"}, f"recursive_triggers={r}: forms not run: {forms[r]}"

    assert db.verify() == []
    assert integrity(path) == ["ok"]
    library_ops = results[0]["ops"] + results[1]["ops"]
    assert library_ops["bulk update"] == 1, results
    print(
        f"\nforeign writers: {sum(forms[0].values())} statements at recursive_triggers=0, "
        f"{sum(forms[1].values())} at 1 ({len(FOREIGN_FORMS) + 1} forms, constraint failures: "
        f"{sum(n for k, n in (forms[0] + forms[1]).items() if k.endswith('constraint'))}); "
        f"library ops {dict(library_ops)}; {checks['runs']} verify() runs during the writes, all exact"
    )
    db.close()


# -- damage no trigger can see --------------------------------------------------------------


def raw(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=10)


def recreate_items(conn: sqlite3.Connection) -> None:
    """Drop items and create it again (as a careless migration or a restore script might),
    putting the rows back with a few changes: triggers and the value index are gone."""
    (ddl,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'items'").fetchone()
    rows = conn.execute("SELECT key, value FROM items").fetchall()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DROP TABLE items")
    conn.execute(ddl)
    conn.executemany("INSERT INTO items VALUES (?, ?)", rows[10:])
    conn.execute("INSERT INTO items VALUES ('restored', 'new value')")
    conn.execute("COMMIT")


def edit_counts(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE counts SET n = n + 3 WHERE value = 'red'")
    conn.execute("DELETE FROM counts WHERE value = 'green'")
    conn.execute("INSERT INTO counts VALUES ('ghost', 7)")


def drop_one_trigger(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TRIGGER items_after_delete")
    conn.execute("DELETE FROM items WHERE key IN (0, 1, 2)")


def drop_all_triggers(conn: sqlite3.Connection) -> None:
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("REPLACE INTO items VALUES (3, 'moved'), ('fresh', 'moved')")
    conn.execute("UPDATE items SET value = 'blue' WHERE key = 4")
    conn.execute("DELETE FROM items WHERE key = 5")


def alter_trigger(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TRIGGER items_after_insert")
    conn.execute("CREATE TRIGGER items_after_insert AFTER INSERT ON items BEGIN SELECT 1; END")
    conn.execute("INSERT INTO items VALUES ('unseen', 'red')")


def drop_index(conn: sqlite3.Connection) -> None:
    conn.execute("DROP INDEX ix_items_value")


DAMAGE = {
    "items dropped and recreated": (recreate_items, {*TRIGGERS, "ix_items_value"}, True),
    "counts edited by hand": (edit_counts, set(), True),
    "one trigger dropped": (drop_one_trigger, {"items_after_delete"}, True),
    "all triggers dropped": (drop_all_triggers, set(TRIGGERS), True),
    "trigger altered": (alter_trigger, {"items_after_insert"}, True),
    "value index dropped": (drop_index, {"ix_items_value"}, False),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_is_reported_by_verify_and_fixed_by_repair(tmp_path: Path, damage: str) -> None:
    path = str(tmp_path / "damaged.db")
    seeded(path)
    do, schema_problems, drifts = DAMAGE[damage]
    conn = raw(path)
    do(conn)
    with kvstore.open(path) as db:
        problems = db.verify()
        assert {p.name for p in problems if isinstance(p, kvstore.SchemaProblem)} == schema_problems
        mismatches = [p for p in problems if isinstance(p, kvstore.Mismatch)]
        assert bool(mismatches) == drifts, problems
        counted = dict(conn.execute("SELECT value, count(*) FROM items GROUP BY value"))
        stored = dict(conn.execute("SELECT value, n FROM counts"))
        for m in mismatches:  # each mismatch states the truth and what counts said
            assert (m.counted, m.stored) == (counted.get(m.value, 0), stored.get(m.value, 0)), m
        assert all(str(p) for p in problems)
        if damage == "counts edited by hand":
            assert {(m.value, m.counted - m.stored) for m in mismatches} == {
                ("red", -3), ("green", counted["green"]), ("ghost", -7)
            }

        assert db.repair() == len(problems)
        assert db.verify() == []
        assert db.repair() == 0

        # The triggers are back: every write form keeps counts exact again, and so does the store.
        rng = random.Random(7)
        for recursive in (0, 1):
            conn.execute(f"PRAGMA recursive_triggers = {recursive}")
            for _name, form in FOREIGN_FORMS:
                try:
                    form(conn, rng)
                except sqlite3.IntegrityError:
                    pass
        db.update((k, "after") for k in FOREIGN_KEYS[:10])
        del db["s29"]
        assert db.verify() == []
        assert db.count("red", strategy="group_by") == db.count("red")
    conn.close()
    assert integrity(path) == ["ok"]


def test_stale_trigger_bookkeeping_rows_do_not_change_counts(tmp_path: Path) -> None:
    """Junk left in items_displaced (a crash cannot leave any; a hand edit can) is harmless:
    every BEFORE trigger empties the table first, and an AFTER trigger acts only on notes its own
    statement's BEFORE trigger wrote."""
    path = str(tmp_path / "stale.db")
    seeded(path)
    conn = raw(path)
    for how in ("k", "r", "u"):  # notes of every kind, pointing at live rows and a live count
        conn.execute("DELETE FROM items_displaced")
        conn.execute(f"INSERT INTO items_displaced SELECT rowid, (SELECT max(rowid) FROM counts), '{how}' FROM items")
        conn.execute(f"INSERT INTO items_displaced VALUES (1000000, NULL, '{how}')")
        conn.execute("UPDATE items SET value = 'stale' WHERE rowid = (SELECT min(rowid) FROM items)")
        conn.execute("UPDATE items SET value = 'fresh' WHERE rowid = (SELECT min(rowid) FROM items)")
    conn.execute("INSERT INTO items_displaced SELECT rowid, (SELECT max(rowid) FROM counts), 'u' FROM items")
    rng = random.Random(3)
    with kvstore.open(path) as db:
        for _ in range(300):
            name, form = rng.choice(FOREIGN_FORMS)
            try:
                form(conn, rng)
            except sqlite3.IntegrityError:
                pass
            db[rng.choice(FOREIGN_KEYS)] = rng.choice(FOREIGN_VALUES)
        assert db.count("stale") == 0
        assert db.verify() == []
    conn.close()


@pytest.mark.slow
def test_triggers_dropped_while_writers_run_then_repaired_while_they_still_run(tmp_path: Path) -> None:
    path = str(tmp_path / "live.db")
    seeded(path)
    db = kvstore.open(path)
    results = [dict(), dict()]
    duration = max(2.0, 2.0 * SCALE)
    threads = [  # counts drift while the triggers are gone: no exactness check inside the writers
        threading.Thread(target=library_writer, args=(db, duration, s, results[s], False, False)) for s in (0, 1)
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(duration / 4)
        conn = raw(path)
        for name in TRIGGERS:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("INSERT OR REPLACE INTO items VALUES ('drift', 'only in items')")
        time.sleep(duration / 4)  # the library keeps writing without triggers: counts drift
        problems = db.verify()
        assert {p.name for p in problems if isinstance(p, kvstore.SchemaProblem)} == set(TRIGGERS)
        assert any(isinstance(p, kvstore.Mismatch) and p.value == "only in items" for p in problems)
        fixed = db.repair()  # while both writers go on
        assert fixed >= len(TRIGGERS) + 1
        conn.close()
    finally:
        for t in threads:
            t.join(duration + 60)
    for r in results:
        assert not r["errors"], r["errors"][:3]
    assert db.verify() == []
    assert integrity(path) == ["ok"]
    db.close()


def test_statement_that_rolls_back_the_whole_transaction_cannot_split_a_block(tmp_path: Path) -> None:
    """A foreign trigger with RAISE(ROLLBACK) ends the whole transaction from inside a statement
    (as SQLite itself may after a full disk or an I/O error). If the application catches that
    error inside a transaction() block and goes on, the rest of the block must not be
    committed piecemeal: the block fails as a whole and keeps nothing."""
    path = str(tmp_path / "veto.db")
    seeded(path)
    conn = raw(path)
    conn.execute("CREATE TRIGGER veto BEFORE INSERT ON items WHEN NEW.key = 'veto' BEGIN SELECT RAISE(ROLLBACK, 'vetoed'); END")
    conn.close()
    with kvstore.open(path) as db:
        before = dict(db.items())

        with pytest.raises(kvstore.Error, match="rolled back") as raised:
            with db.transaction():
                db["pre"] = 1
                with pytest.raises(kvstore.Error, match="vetoed"):
                    db["veto"] = 1
                db["post"] = 2  # accepted for now, but never committed on its own
                with db.transaction():  # nested blocks go down with it
                    db["nested"] = 3
        assert "nothing written in the block was kept" in str(raised.value)
        assert dict(db.items()) == before

        # The same through a nested update(), caught by the application.
        with pytest.raises(kvstore.Error, match="rolled back"):
            with db.transaction():
                db["pre"] = 1
                with pytest.raises(kvstore.Error, match="vetoed"):
                    db.update([("a", 1), ("veto", 1), ("b", 2)])
                db["post"] = 2
        assert dict(db.items()) == before

        # Not caught: the error propagates, nothing is kept, and the store carries on normally.
        with pytest.raises(kvstore.Error, match="vetoed"):
            with db.transaction():
                db["pre"] = 1
                db["veto"] = 1
        assert dict(db.items()) == before
        with db.transaction():
            db["pre"] = 1
            db["post"] = 2
        assert db["pre"] == 1 and db["post"] == 2 and db.verify() == []
