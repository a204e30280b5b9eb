"""Crashes: a writer SIGKILLed at random moments loses nothing it acknowledged, shows no half
transaction or half batch, and leaves counts exact.

One file survives every kill in turn. The child (tests/_rel_workers.py ``crash``) logs each op
before calling the store and acknowledges it after the call returns, flushing each line, so
the log survives the kill. After each kill the parent replays the acknowledged ops onto its
model and requires the file to equal the model, or the model plus the whole op that was in
flight: never a part of it.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

import kvstore
from tests._rel_workers import MARKERS, apply_op, integrity, parse_log, reap, start, typed
from tests.helpers import scaled

BULK_N = 65_000
"""Pairs per bulk update(): ≥ 50,000 (kvstore.sqlite.bulk.BULK_MIN) and far more than a quarter of
the store, so the batch drops the triggers inside its transaction and rebuilds counts."""

# Where to aim each kill: anywhere, just after a bulk update dropped the triggers, inside a
# transaction, and at a random moment of a bulk update.
MODES = ("random", "bulk-without-triggers", "transaction", "bulk", "random")


class LogTail:
    """Follows a child's log file as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = ""

    def poll(self) -> str:
        try:
            with open(self.path) as f:
                f.seek(len(self.text.encode()))
                self.text += f.read()
        except FileNotFoundError:
            pass
        return self.text

    def wait_for(self, predicate, proc, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.poll()):
            if proc.poll() is not None:
                _, err = proc.communicate(timeout=5)
                raise AssertionError(f"the writer exited on its own (rc {proc.returncode}):\n{err}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the writer did not reach the kill point in {timeout}s")
            time.sleep(0.002)


def typed_model(model: dict) -> dict:
    return {typed(k): typed(v) for k, v in model.items()}


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_write_and_shows_no_partial_transaction(tmp_path: Path) -> None:
    path = str(tmp_path / "crash.db")
    kvstore.open(path).close()
    kills = scaled(30, minimum=30)
    rng = random.Random(20240611)
    model: dict = {}
    figures: Counter = Counter()
    for i in range(kills):
        mode = MODES[i % len(MODES)]
        log = LogTail(tmp_path / f"kill{i}.log")
        proc = start("crash", path, log.path, i + 1, BULK_N, i % 2)
        try:
            log.wait_for(lambda t: "READY\n" in t, proc)
            start_len = len(log.text)
            if mode == "random":
                time.sleep(rng.uniform(0.0, 0.8))
            elif mode == "bulk-without-triggers":
                log.wait_for(lambda t: "\nD\n" in t[start_len - 1 :], proc)
                time.sleep(rng.uniform(0.0, 0.04))
            elif mode == "transaction":
                log.wait_for(lambda t: "('txn'," in t[start_len:], proc)
                time.sleep(rng.uniform(0.0, 0.008))
            else:
                log.wait_for(lambda t: "('bulk'," in t[start_len:], proc)
                time.sleep(rng.uniform(0.0, 0.4))
            assert proc.poll() is None, f"the writer exited on its own:\n{proc.communicate()[1]}"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            reap(proc)
        assert proc.returncode == -signal.SIGKILL

        events = parse_log(log.poll())
        for event in events:
            if event["acked"]:
                model = apply_op(model, event["op"])
                figures[f"acknowledged {event['op'][0]}"] += 1
                if event["op"][0] == "bulk":
                    # Both drops (before the trigger-less chunks, and in the rebuild) happened:
                    # the batch really took the bulk path.
                    assert event["drops"] == 2, event
        pending = events[-1] if events and not events[-1]["acked"] else None

        assert integrity(path) == ["ok"], f"kill {i}"
        with kvstore.open(path) as db:
            assert db.verify() == [], f"kill {i}: counts not exact"
            actual = {typed(k): typed(v) for k, v in db.items()}
        candidates = [model]
        if pending is not None:
            candidates.append(apply_op(model, pending["op"]))
        matches = [c for c in candidates if typed_model(c) == actual]
        if not matches:
            want = typed_model(model)
            missing = {k: v for k, v in want.items() if actual.get(k) != v}
            extra = {k: v for k, v in actual.items() if want.get(k) != v}
            raise AssertionError(
                f"kill {i} ({mode}, in flight: {pending and pending['op'][:2]}): the file is neither "
                f"the acknowledged state nor that plus the whole in-flight op; "
                f"differs from acknowledged at {list(missing.items())[:5]} / {list(extra.items())[:5]}"
            )
        # The transaction markers are all-or-nothing: they always hold one tag together.
        assert len({actual.get(typed(m)) for m in MARKERS}) == 1, f"kill {i}: markers split"
        assert typed("never") not in actual
        model = matches[-1]
        if pending is None:
            figures["killed between ops"] += 1
        else:
            kind = pending["op"][0]
            applied = len(candidates) == 2 and matches[-1] is candidates[1] and typed_model(candidates[0]) != actual
            phase = ""
            if kind == "bulk":
                phase = (" (triggers on)", " (triggers dropped)", " (counts rebuilt, committing)")[min(pending["drops"], 2)]
            figures[f"killed in {kind}{phase}: {'committed' if applied else 'not committed'}"] += 1
        figures["kills survived"] += 1
    print(f"\ncrash figures: {dict(sorted(figures.items()))}")
    assert figures["kills survived"] == kills
    # The aimed kills did land where they were aimed at least sometimes.
    assert any("triggers dropped" in k or "counts rebuilt" in k for k in figures), figures
    assert any(k.startswith("killed in txn") for k in figures), figures


def test_sigkill_during_creation_never_leaves_a_half_made_store(tmp_path: Path) -> None:
    """A new store is built in a temporary file and linked into place: a kill at any moment
    leaves either no store at all or a complete one (leftover temporary files are harmless)."""
    rng = random.Random(99)
    outcomes: Counter = Counter()
    for i in range(scaled(10, minimum=6)):
        folder = tmp_path / f"c{i}"
        folder.mkdir()
        path = folder / "new.db"
        proc = start("create", path)
        try:
            time.sleep(rng.uniform(0.0, 0.8))  # creation imports SQLAlchemy and Alembic: ~0.3-0.6 s
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            reap(proc)
        leftovers = [n for n in os.listdir(folder) if n.endswith(".creating")]
        outcomes["temporary files left"] += len(leftovers)
        if not path.exists():
            outcomes["no store"] += 1
            continue
        assert integrity(str(path)) == ["ok"]
        with kvstore.open(str(path)) as db:  # a complete store: opens, exact, writable
            assert db.verify() == []
            outcomes["complete store, first write " + ("kept" if "created" in db else "not yet made")] += 1
            db["after"] = 1
    print(f"\ncreation kills: {dict(outcomes)}")
