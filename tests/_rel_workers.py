"""Worker code and helpers for the reliability tests (tests/test_reliability_*.py).

Run as a script (``python tests/_rel_workers.py MODE ARGS...``) it is a child process that the
tests start, kill and inspect; imported, it gives the tests the same functions (the fork-based
workers call them directly with an inherited store) and small shared helpers.

Every child logs what it does to a file it flushes after each line, so a parent that SIGKILLs
it can still read everything the child saw acknowledged.
"""

from __future__ import annotations

import ast
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import kvstore

HERE = Path(__file__).resolve().parent
SCRIPT = str(HERE / "_rel_workers.py")


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


MISSING = _Missing()


# -- helpers shared by the tests ------------------------------------------------------------


def typed(value: Any) -> Any:
    """A comparable form that keeps type and float sign: 1, 1.0, True and -0.0 all differ."""
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


def typed_items(db: kvstore.Store) -> dict[Any, Any]:
    return {typed(k): typed(v) for k, v in db.items()}


def raw_counts(path: str) -> dict[Any, int]:
    conn = sqlite3.connect(path)
    try:
        return {typed(v): n for v, n in conn.execute("SELECT value, n FROM counts")}
    finally:
        conn.close()


def integrity(path: str) -> list[str]:
    """PRAGMA integrity_check on a fresh connection; ['ok'] when the file is sound."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def trigger_names(path: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    finally:
        conn.close()


def start(mode: str, *args: Any, stdin: bool = False) -> subprocess.Popen:
    """Start ``python tests/_rel_workers.py MODE ARGS`` with stdout/stderr captured."""
    return subprocess.Popen(
        [sys.executable, SCRIPT, mode, *map(str, args)],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> tuple[str, str]:
    """Wait for ``proc`` (killing it after ``timeout``); return its stdout and stderr."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        err += f"\n[killed after {timeout}s]"
    return out or "", err or ""


def reap(proc: subprocess.Popen) -> None:
    """Make sure ``proc`` is dead and its pipes closed (after a test killed it, or failed)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


@contextmanager
def holding(path: Any, how: str = "immediate") -> Iterator[subprocess.Popen]:
    """A process holding ``path``'s lock (``how``: immediate or exclusive) for the block."""
    proc = start("hold", path, how, stdin=True)
    try:
        assert read_line(proc, 30) == "locked", stop(proc, 5)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        stop(proc, 10)


def release(proc: subprocess.Popen, how: str = "commit") -> None:
    """Tell a holder to end its lock (commit, rollback or done) and wait until it has."""
    proc.stdin.write(how + "\n")
    proc.stdin.flush()
    assert read_line(proc, 30) == "released"


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """One line of ``proc``'s stdout, or '' if none comes within ``timeout`` seconds."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0].strip() if box else ""


def bounded(fn: Callable[[], Any], timeout: float) -> Any:
    """Run ``fn`` in a thread and return (result, exception); fail loudly if it hangs."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"call did not return within {timeout}s (hang)")
    return box.get("result"), box.get("error")


# -- crash writer -----------------------------------------------------------------------------
#
# Ops are logged as "I <seq> <repr(op)>" before the call and "A <seq>" after it returns; the
# parent replays acknowledged ops onto its model and allows the one in-flight op to be either
# wholly applied or wholly absent.

MARKERS = [f"m{i}" for i in range(16)]  # every transaction sets all of them to its own tag
CRASH_KEYS = [f"k{i}" for i in range(120)] + list(range(120)) + [b"k%d" % i for i in range(40)]
CRASH_VALUES = ["a", "b", "c", 1, 2.5, -0.0, b"x", "", 2**63 - 1]


def bulk_pairs(batch: int, n: int):
    return ((f"b{j}", f"B{batch}-{j % 11}") for j in range(n))


def apply_op(model: dict[Any, Any], op: tuple) -> dict[Any, Any]:
    """The state after ``op`` commits (ops that roll back leave it unchanged)."""
    kind = op[0]
    new = dict(model)
    if kind == "set":
        new[op[1]] = op[2]
    elif kind == "del":
        new.pop(op[1], None)
    elif kind in ("txn", "upd"):
        for key, value in op[2]:
            if value is None:
                new.pop(key, None)
            else:
                new[key] = value
    elif kind == "bulk":
        new.update(bulk_pairs(op[1], op[2]))
    elif kind == "rollback":
        pass
    else:  # pragma: no cover - a typo in the worker
        raise ValueError(op)
    return new


class Rollback(Exception):
    """Raised inside a transaction() block on purpose, to roll it back."""


def crash_writer(path: str, log_path: str, seed: int, bulk_n: int, durable: bool) -> None:
    rng = random.Random(seed)
    log = open(log_path, "a", buffering=1)

    def note(line: str) -> None:
        log.write(line + "\n")
        log.flush()

    import kvstore.sqlite.triggers as kt

    drop = kt.drop_statements

    def spy(ddls):  # the bulk path of update() drops the triggers: say so before it happens
        note("D")
        return drop(ddls)

    kt.drop_statements = spy
    db = kvstore.open(path, durable=durable)
    note("READY")
    seq = 0
    while True:
        r = rng.random()
        if r < 0.30:
            op: tuple = ("set", rng.choice(CRASH_KEYS), rng.choice(CRASH_VALUES))
        elif r < 0.42:
            op = ("del", rng.choice(CRASH_KEYS))
        elif r < 0.62:
            tag = f"T{seed}.{seq}"
            writes = [(m, tag) for m in MARKERS]
            writes += [(rng.choice(CRASH_KEYS), rng.choice([None, *CRASH_VALUES])) for _ in range(3)]
            op = ("txn", tag, writes)
        elif r < 0.72:
            op = ("rollback", f"R{seed}.{seq}", [(m, "never") for m in MARKERS])
        elif r < 0.84:
            op = ("upd", f"U{seed}.{seq}", [(rng.choice(CRASH_KEYS), rng.choice(CRASH_VALUES)) for _ in range(200)])
        else:
            op = ("bulk", seed * 1000 + seq, bulk_n)
        note(f"I {seq} {op!r}")
        kind = op[0]
        if kind == "set":
            db[op[1]] = op[2]
        elif kind == "del":
            db.delete(op[1])
        elif kind == "txn":
            with db.transaction():
                for key, value in op[2][: len(MARKERS) // 2]:
                    db[key] = value
                time.sleep(rng.uniform(0.0, 0.01))  # the application works inside the block
                try:  # a nested block that rolls back: its writes must never show
                    with db.transaction():
                        db["never"] = "nested"
                        db[MARKERS[0]] = "nested"
                        raise Rollback
                except Rollback:
                    pass
                for key, value in op[2][len(MARKERS) // 2 :]:
                    if value is None:
                        db.delete(key)
                    else:
                        db[key] = value
        elif kind == "rollback":
            try:
                with db.transaction():
                    for key, value in op[2]:
                        db[key] = value
                    raise Rollback
            except Rollback:
                pass
        elif kind == "upd":
            db.update(op[2])
        else:
            db.update(bulk_pairs(op[1], op[2]))
        note(f"A {seq}")
        seq += 1


# -- many writers ------------------------------------------------------------------------------

VALUE_POOL = ["red", "green", "blue", "", 0, 1, 2.5, -1, b"x", b"", 2**63 - 1, -(2**63), "1", b"1", -0.0]
SHARED_KEYS = [f"s{i}" for i in range(30)] + list(range(30)) + [b"s%d" % i for i in range(10)]
MANY_BULK = 55_000


def private_keys(proc: int, thread: int, n: int = 120) -> list[Any]:
    keys: list[Any] = []
    for i in range(n):
        if i % 3 == 0:
            keys.append(f"p{proc}.{thread}.{i}")
        elif i % 3 == 1:
            keys.append(1_000_000 * (proc * 10 + thread + 1) + i)
        else:
            keys.append(b"p%d.%d.%d" % (proc, thread, i))
    return keys


def same(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    return typed(a) == typed(b)


def writer_thread(db: kvstore.Store, proc: int, thread: int, duration: float, seed: int, out: dict) -> None:
    """Random writes and reads for ``duration`` seconds; private keys are modelled exactly."""
    rng = random.Random(seed)
    mine = private_keys(proc, thread)
    model: dict[Any, Any] = {}
    ops: Counter = Counter()
    errors: list[str] = []
    start_t = time.monotonic()
    deadline = start_t + duration
    next_verify = 0.0
    slowest: dict[str, float] = {}  # per kind of op: the longest one took (lock wait included)
    began = start_t

    def done(kind: str) -> None:
        ops[kind] += 1
        slowest[kind] = max(slowest.get(kind, 0.0), time.monotonic() - began)

    bulk_at = None
    if (proc, thread) in ((0, 0), (1, 1)):  # one bulk update() each from a fork and a spawn process
        bulk_at = start_t + duration * (0.3 if proc == 0 else 0.6)

    def value() -> Any:
        return rng.choice(VALUE_POOL) if rng.random() < 0.7 else f"u{rng.randrange(10**6)}"

    def expect(key: Any) -> None:
        got = db.get(key, MISSING)
        want = model.get(key, MISSING)
        if not same(got, want):
            errors.append(f"private key {key!r}: read {got!r}, last acknowledged {want!r}")

    def key() -> Any:
        return rng.choice(mine) if rng.random() < 0.6 else rng.choice(SHARED_KEYS)

    mine_set = set(mine)

    def record(k: Any, v: Any) -> None:
        if k in mine_set:
            if v is MISSING:
                model.pop(k, None)
            else:
                model[k] = v

    try:
        while time.monotonic() < deadline and len(errors) < 5:
            # Think time, as an application has: lock waits poll with back-off (up to 100 ms
            # between tries) instead of queueing, so 8 writers in a tight loop would keep the
            # lock busy all the time and starve an unlucky one towards the busy timeout.
            time.sleep(rng.uniform(0.0, 0.001))
            r = rng.random()
            began = time.monotonic()
            if bulk_at is not None and time.monotonic() >= bulk_at:
                bulk_at = None
                db.update((f"bulk{j}", VALUE_POOL[j % len(VALUE_POOL)]) for j in range(MANY_BULK))
                done("bulk_update")
            elif r < 0.25:
                k, v = key(), value()
                db[k] = v
                record(k, v)
                done("set")
            elif r < 0.35:
                k = key()
                db.delete(k)
                record(k, MISSING)
                done("delete")
            elif r < 0.45:
                pairs = [(key(), value()) for _ in range(rng.randrange(1, 150))]
                db.update(pairs)
                for k, v in pairs:
                    record(k, v)
                done("update")
            elif r < 0.57:
                staged: list[tuple[Any, Any]] = []
                with db.transaction():
                    for _ in range(rng.randrange(1, 8)):
                        k = key()
                        if rng.random() < 0.2:
                            db.delete(k)
                            staged.append((k, MISSING))
                        else:
                            v = value()
                            db[k] = v
                            staged.append((k, v))
                    if rng.random() < 0.5:  # a nested savepoint that rolls back
                        try:
                            with db.transaction():
                                for p in rng.sample(mine, 3):
                                    db[p] = "rolled back"
                                raise Rollback
                        except Rollback:
                            pass
                    if rng.random() < 0.3:  # inside the write lock, counts must be exact
                        v = rng.choice(VALUE_POOL)
                        n = db.count(v)
                        listed = sum(1 for _ in db.keys_for(v))
                        if n != listed:
                            errors.append(f"in a transaction count({v!r}) = {n} but keys_for lists {listed}")
                for k, v in staged:
                    record(k, v)
                done("transaction")
            elif r < 0.64:
                try:
                    with db.transaction():
                        for p in rng.sample(mine, 4):
                            db[p] = "rolled back"
                        db.update([(rng.choice(SHARED_KEYS), "rolled back")])
                        raise Rollback
                except Rollback:
                    pass
                done("rolled_back_transaction")
            elif r < 0.97:
                k = rng.choice(mine)
                expect(k)
                v = rng.choice(VALUE_POOL)
                mine_with = {p for p, pv in model.items() if pv == v and type(pv) is not bool}
                n = db.count(v)
                if n < len(mine_with):
                    errors.append(f"count({v!r}) = {n} < {len(mine_with)} private keys holding it")
                if rng.random() < 0.2:
                    listed = set(db.keys_for(v))
                    if not mine_with <= listed:
                        errors.append(f"keys_for({v!r}) misses private keys {mine_with - listed!r}")
                if rng.random() < 0.1:
                    if len(db) < len(model):
                        errors.append("len(db) smaller than this thread's private keys")
                    db.most_common(3)
                done("read")
            elif time.monotonic() >= next_verify:
                problems = db.verify()
                if problems:
                    errors.append(f"verify() during the run: {problems[:5]}")
                next_verify = time.monotonic() + 0.3
                done("verify")
        for k in mine:  # read-your-writes at the end, before the parent checks again
            expect(k)
    except Exception:  # noqa: BLE001 - every unexpected error is a test failure, reported
        errors.append(traceback.format_exc())
    out.update(
        ops=dict(ops),
        slowest=slowest,
        errors=errors,
        model=repr(model),
        keys=repr(mine),
    )


def many_process(db_or_path: Any, proc: int, duration: float, seed: int, out_path: str) -> None:
    """One process of the many-writers test: two writer threads on one store."""
    import kvstore.sqlite.triggers as kt

    drops = Counter()
    drop = kt.drop_statements

    def spy(ddls):
        drops["drop_statements"] += 1
        return drop(ddls)

    kt.drop_statements = spy
    db = kvstore.open(db_or_path) if isinstance(db_or_path, str) else db_or_path
    results = [dict() for _ in range(2)]
    threads = [
        threading.Thread(target=writer_thread, args=(db, proc, t, duration, seed * 10 + t, results[t]))
        for t in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120)
    alive = [t.is_alive() for t in threads]
    with open(out_path, "w") as f:
        json.dump({"threads": results, "alive": alive, "drops": drops["drop_statements"], "pid": os.getpid()}, f)


# -- foreign writers ---------------------------------------------------------------------------

FOREIGN_KEYS = list(range(40)) + [f"s{i}" for i in range(30)]
FOREIGN_VALUES = ["red", "green", "blue", 1, 1.0, "1", b"1", 2.5, "a"]


def _kv(rng: random.Random) -> tuple[Any, Any]:
    return rng.choice(FOREIGN_KEYS), rng.choice(FOREIGN_VALUES)


def _two_keys(rng: random.Random) -> tuple[Any, Any]:
    a, b = rng.sample(FOREIGN_KEYS, 2)
    return a, b


# Each form: (name, function(conn, rng)). Failures with IntegrityError are part of the forms.
FOREIGN_FORMS: list[tuple[str, Callable[[sqlite3.Connection, random.Random], None]]] = [
    ("insert", lambda c, r: c.execute("INSERT INTO items VALUES (?, ?)", _kv(r))),
    ("upsert do update", lambda c, r: c.execute(
        "INSERT INTO items VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", _kv(r))),
    ("upsert do nothing", lambda c, r: c.execute("INSERT INTO items VALUES (?, ?) ON CONFLICT DO NOTHING", _kv(r))),
    ("upsert do update where", lambda c, r: c.execute(
        "INSERT INTO items VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value "
        "WHERE items.value IS NOT excluded.value AND ?", (*_kv(r), r.random() < 0.5))),
    ("insert or ignore", lambda c, r: c.execute("INSERT OR IGNORE INTO items VALUES (?, ?)", _kv(r))),
    ("insert or replace", lambda c, r: c.execute("INSERT OR REPLACE INTO items VALUES (?, ?)", _kv(r))),
    ("insert or fail multi-row", lambda c, r: c.execute(
        "INSERT OR FAIL INTO items VALUES (?, ?), (?, ?), (?, ?)", (*_kv(r), *_kv(r), *_kv(r)))),
    ("insert or abort multi-row", lambda c, r: c.execute(
        "INSERT OR ABORT INTO items VALUES (?, ?), (?, ?)", (*_kv(r), *_kv(r)))),
    ("insert or rollback in transaction", lambda c, r: _in_transaction(c, [
        ("REPLACE INTO items VALUES (?, ?)", _kv(r)),
        ("INSERT OR ROLLBACK INTO items VALUES (?, ?)", _kv(r)),
    ])),
    ("replace into", lambda c, r: c.execute("REPLACE INTO items VALUES (?, ?), (?, ?)", (*_kv(r), *_kv(r)))),
    ("insert select", lambda c, r: c.execute(
        "INSERT OR IGNORE INTO items SELECT key + ?, value FROM items "
        "WHERE typeof(key) = 'integer' AND key < 40 LIMIT 8", (r.randrange(1, 5),))),
    ("replace select", lambda c, r: c.execute(
        "INSERT OR REPLACE INTO items SELECT key, ? FROM items WHERE typeof(key) = 'text' LIMIT 6",
        (r.choice(FOREIGN_VALUES),))),
    ("replace select onto one key", lambda c, r: c.execute(
        "INSERT OR REPLACE INTO items SELECT ?, value FROM items LIMIT 5", (r.choice(FOREIGN_KEYS),))),
    ("upsert select", lambda c, r: c.execute(
        "INSERT INTO items SELECT key, ? FROM items WHERE typeof(key) = 'integer' AND key < 40 LIMIT 5 "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (r.choice(FOREIGN_VALUES),))),
    ("update value", lambda c, r: c.execute("UPDATE items SET value = ? WHERE key = ?", _kv(r)[::-1])),
    ("update key", lambda c, r: c.execute("UPDATE items SET key = ? WHERE key = ?", _two_keys(r))),
    ("update key and value", lambda c, r: c.execute(
        "UPDATE items SET key = ?, value = ? WHERE key = ?", (r.choice(FOREIGN_KEYS), *_kv(r)[::-1]))),
    ("update or replace key onto existing", lambda c, r: c.execute(
        "UPDATE OR REPLACE items SET key = ? WHERE key = ?", _two_keys(r))),
    ("update or replace key and value", lambda c, r: c.execute(
        "UPDATE OR REPLACE items SET key = ?, value = ? WHERE key = ?", (r.choice(FOREIGN_KEYS), *_kv(r)[::-1]))),
    ("update or ignore key onto existing", lambda c, r: c.execute(
        "UPDATE OR IGNORE items SET key = ? WHERE key = ?", _two_keys(r))),
    ("update or replace shift keys", lambda c, r: c.execute(
        "UPDATE OR REPLACE items SET key = key + 1 WHERE typeof(key) = 'integer' AND key BETWEEN ? AND ?",
        (lambda a: (a, a + 5))(r.randrange(0, 35)))),
    ("delete one", lambda c, r: c.execute("DELETE FROM items WHERE key = ?", (r.choice(FOREIGN_KEYS),))),
    ("transaction rolled back", lambda c, r: _in_transaction(c, [
        ("REPLACE INTO items VALUES (?, ?)", _kv(r)),
        ("UPDATE OR REPLACE items SET key = ? WHERE key = ?", _two_keys(r)),
        ("DELETE FROM items WHERE key = ?", (r.choice(FOREIGN_KEYS),)),
    ], commit=False)),
    ("savepoint rolled back", lambda c, r: _in_transaction(c, [
        ("INSERT OR REPLACE INTO items VALUES (?, ?)", _kv(r)),
        ("SAVEPOINT sp", ()),
        ("REPLACE INTO items VALUES (?, ?)", _kv(r)),
        ("UPDATE OR REPLACE items SET key = ? WHERE key = ?", _two_keys(r)),
        ("ROLLBACK TO sp", ()),
        ("RELEASE sp", ()),
    ])),
]
DELETE_ALL = "DELETE FROM items"


def _in_transaction(conn: sqlite3.Connection, statements: list[tuple[str, tuple]], commit: bool = True) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            conn.execute(sql, params)
    except BaseException:
        if conn.in_transaction:  # INSERT OR ROLLBACK has already rolled back on a conflict
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT" if commit else "ROLLBACK")


def foreign_thread(path: str, recursive: int, duration: float, seed: int, out: dict) -> None:
    rng = random.Random(seed)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute(f"PRAGMA recursive_triggers = {recursive}")
    outcomes: Counter = Counter()
    errors: list[str] = []
    deadline = time.monotonic() + duration
    delete_all_at = time.monotonic() + duration * rng.uniform(0.3, 0.7)
    try:
        while time.monotonic() < deadline and len(errors) < 5:
            if delete_all_at is not None and time.monotonic() >= delete_all_at:
                delete_all_at = None
                conn.execute(DELETE_ALL)
                outcomes["delete all: ok"] += 1
                continue
            name, form = rng.choice(FOREIGN_FORMS)
            try:
                form(conn, rng)
                outcomes[f"{name}: ok"] += 1
            except sqlite3.IntegrityError:
                outcomes[f"{name}: constraint"] += 1
            except sqlite3.Error as exc:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
            if conn.in_transaction:
                errors.append(f"{name}: left a transaction open")
                conn.execute("ROLLBACK")
            # A breath between statements: SQLite's lock waits poll with back-off rather than
            # queue, so writers in a tight loop could starve the store's writers indefinitely.
            time.sleep(rng.uniform(0.0, 0.002))
    except Exception:  # noqa: BLE001
        errors.append(traceback.format_exc())
    finally:
        conn.close()
    out.update(outcomes=dict(outcomes), errors=errors)


def foreign_process(path: str, recursive: int, duration: float, seed: int, out_path: str) -> None:
    results = [dict() for _ in range(2)]
    threads = [
        threading.Thread(target=foreign_thread, args=(path, recursive, duration, seed * 10 + t, results[t]))
        for t in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120)
    with open(out_path, "w") as f:
        json.dump({"threads": results, "alive": [t.is_alive() for t in threads]}, f)


# -- lock holders ------------------------------------------------------------------------------


def hold(path: str, how: str) -> None:
    """Hold a lock on ``path`` until a line arrives on stdin (or 120 s pass).

    ``immediate``: a write transaction (BEGIN IMMEDIATE) with an uncommitted write;
    ``exclusive``: PRAGMA locking_mode=EXCLUSIVE after a write, so no one else can even read.
    The line read decides the end: "commit" or anything else (rollback).
    """
    signal.alarm(120)  # never outlive a test that forgot us
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    if how == "exclusive":
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR REPLACE INTO items VALUES ('held', 'uncommitted')")
    if how == "exclusive":
        conn.execute("COMMIT")  # the exclusive lock stays with the connection
    print("locked", flush=True)
    line = sys.stdin.readline().strip()
    if conn.in_transaction:
        conn.execute("COMMIT" if line == "commit" else "ROLLBACK")
    conn.close()
    print("released", flush=True)


def main(argv: list[str]) -> None:
    mode, args = argv[0], argv[1:]
    if mode == "crash":
        path, log_path, seed, bulk_n, durable = args
        crash_writer(path, log_path, int(seed), int(bulk_n), durable == "1")
    elif mode == "many":
        path, proc, duration, seed, out_path = args
        many_process(path, int(proc), float(duration), int(seed), out_path)
    elif mode == "foreign":
        path, recursive, duration, seed, out_path = args
        foreign_process(path, int(recursive), float(duration), int(seed), out_path)
    elif mode == "hold":
        hold(*args)
    elif mode == "create":
        with kvstore.open(args[0]) as db:
            db["created"] = 1
        print("created", flush=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


def parse_log(text: str) -> list[dict[str, Any]]:
    """The ops of a crash log in order: {"op", "acked", "drops"} (drops: trigger drops seen
    while the op ran). Only the last op can be unacknowledged: it was in flight at the kill."""
    if not text.endswith("\n"):  # a torn last line: the child died writing it
        text = text[: text.rfind("\n") + 1]
    events: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("I "):
            assert not events or events[-1]["acked"], "a new op before the last was acknowledged"
            _, _, rest = line.split(" ", 2)
            events.append({"op": ast.literal_eval(rest), "acked": False, "drops": 0})
        elif line.startswith("A "):
            events[-1]["acked"] = True
        elif line == "D":
            events[-1]["drops"] += 1
    return events


if __name__ == "__main__":
    main(sys.argv[1:])
