"""Child-process code for tests/test_process_safety.py.

Run as a script (``python tests/_fork_workers.py MODE ARGS...``) for the scenarios whose failure
is the death of a whole process (a SIGSEGV, a parent that exits under its child), so that the
test sees an exit status instead of dying with it. Imported, it gives the tests the functions
that multiprocessing workers run.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import traceback
from pathlib import Path

import kvstore

SCRIPT = str(Path(__file__).resolve())

# -- multiprocessing workers (module level so that both fork and spawn can find them) -------

INHERITED: kvstore.Store | None = None
"""Set by the test before it makes a fork-method pool; the workers use it as inherited."""


def write_inherited(task: tuple[int, int]) -> list[str]:
    """Write ``n`` keys through the store the worker inherited by fork; return those acknowledged."""
    worker, n = task
    assert INHERITED is not None
    return _write(INHERITED, "w", worker, n)


def write_with(task: tuple[kvstore.Store, int, int]) -> list[str]:
    """Write ``n`` keys through a store handed over by pickling (spawn); return those acknowledged."""
    db, worker, n = task
    return _write(db, "s", worker, n)


def _write(db: kvstore.Store, prefix: str, worker: int, n: int) -> list[str]:
    acked = []
    for i in range(n):
        key = f"{prefix}{worker}-{i}"
        db[key] = worker
        acked.append(key)
    return acked


def setdefault_many(task: tuple[kvstore.Store, int, int]) -> list[tuple[int, str]]:
    """Race setdefault() on keys 0..n-1 with this worker's own default; return what it was handed."""
    db, worker, n = task
    return [(key, db.setdefault(key, f"p{worker}")) for key in range(n)]


# -- script modes ----------------------------------------------------------------------------


def close_race(path: str, rounds: int, seed: int) -> None:
    """Close the store while six threads are inside calls; print a JSON summary.

    Survives only if close() never closes a connection another thread is using (SIGSEGV
    otherwise). Every exception a worker sees after the close must be kvstore.Error saying
    the store is closed; each transaction writes two keys with one token, so a half-committed
    block shows up as a token on one key only.
    """
    rng = random.Random(seed)
    unexpected: list[str] = []
    closed_errors = 0
    for rnd in range(rounds):
        db = kvstore.open(path)
        db.update((i, "seed") for i in range(200))
        stop = threading.Event()
        started = threading.Barrier(7)

        def work(kind: int) -> None:
            nonlocal closed_errors
            started.wait()
            i = 0
            while True:
                i += 1
                try:
                    if kind == 0:
                        db.get(i % 200)
                    elif kind == 1:
                        db[f"t{kind}-{i % 50}"] = i
                    elif kind == 2:
                        with db.transaction():
                            token = f"{rnd}-{i}"
                            db["pair-a"] = token
                            db.count("seed")
                            db["pair-b"] = token
                    elif kind == 3:
                        for _ in db.items():
                            pass
                    elif kind == 4:
                        db.update((f"u{j}", i) for j in range(300))
                    else:
                        db.count("seed", strategy="group_by")
                        db.verify()
                except kvstore.Error as exc:
                    if "closed" not in str(exc):
                        unexpected.append(f"{type(exc).__name__}: {exc}")
                    closed_errors += 1
                    return
                except BaseException:  # noqa: BLE001 - reported in the summary
                    unexpected.append(traceback.format_exc())
                    return
                if stop.is_set():
                    return
                # Writers that never pause starve each other into BusyError (README,
                # Guarantees); a short pause keeps this test about close(), not starvation.
                time.sleep(0.0005 if kind in (1, 2, 4) else 0)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for thread in threads:
            thread.start()
        started.wait()
        time.sleep(rng.uniform(0.0, 0.05))
        db.close()
        stop.set()
        for thread in threads:
            thread.join(30)
            if thread.is_alive():
                unexpected.append("a worker thread hung after close()")
        for call in (lambda: db.get(1), lambda: db.set(1, "x"), lambda: len(db)):
            try:
                call()
                unexpected.append("a call after close() succeeded")
            except kvstore.Error as exc:
                if "closed" not in str(exc):
                    unexpected.append(str(exc))
        with kvstore.open(path) as check:
            a, b = check.get("pair-a"), check.get("pair-b")
            if a != b:
                unexpected.append(f"half-committed transaction: pair-a={a!r} pair-b={b!r}")
            problems = check.verify()
            if problems:
                unexpected.append(f"verify: {problems}")
    print(json.dumps({"unexpected": unexpected, "closed_errors": closed_errors}))


def exit_after_fork(path: str, log: str, n: int) -> None:
    """Open and use a store, fork a background child that writes ``n`` keys, and exit at once.

    The child logs each acknowledged key to ``log`` (flushed per line) and "done" at the end;
    the parent leaves through a normal interpreter exit, its finalisers included.
    """
    db = kvstore.open(path)
    db["parent"] = "p"
    db.count("p")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with open(log, "a", buffering=1) as out:
                for i in range(n):
                    db[f"bg{i}"] = i
                    out.write(f"bg{i}\n")
                    time.sleep(0.002)  # keep writing while the parent exits
                out.write("done\n")
            code = 0
        except BaseException:  # noqa: BLE001 - reported through the log
            with open(log, "a") as out:
                out.write("error " + traceback.format_exc().replace("\n", " | ") + "\n")
        finally:
            os._exit(code)
    while not os.path.exists(log) or "bg5" not in Path(log).read_text():
        time.sleep(0.001)  # the child is writing: now leave
    sys.exit(0)


def main(argv: list[str]) -> None:
    mode, args = argv[0], argv[1:]
    if mode == "close-race":
        close_race(args[0], int(args[1]), int(args[2]))
    elif mode == "exit-after-fork":
        exit_after_fork(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(SCRIPT).parent.parent))
    main(sys.argv[1:])
