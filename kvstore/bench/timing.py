"""The timing harness: batches sized to the clock, interleaved sides, medians and p99.

An *op* takes a batch (a list) and does one operation per item; a batch's time divided by
its length is one sample. A comparison times two ops in alternating order (a, b, b, a, ...)
so that the noise of a shared machine falls on both alike.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

Op = Callable[[list[Any]], object]
Summary = dict[str, Any]

BATCH_NS = 20_000
"""Aim for batches of about this long: long enough that the timer's own cost (~50 ns) is
lost in them, short enough that p99 still sees slow single operations."""
MAX_BATCH = 64
MIN_ROUNDS = 7
MAX_ROUNDS = 5_000


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(samples: Sequence[float], batch: int = 1) -> Summary:
    """p50/p99 of per-operation times in ns, each sample being one batch's time per op."""
    ordered = sorted(samples)
    return {
        "p50_ns": statistics.median(ordered),
        "p99_ns": percentile(ordered, 0.99),
        "samples": len(ordered),
        "ops_per_sample": batch,
    }


def time_batch(op: Op, batch: list[Any]) -> float:
    """Nanoseconds per operation of one run of ``op`` over ``batch``."""
    start = time.perf_counter_ns()
    op(batch)
    return (time.perf_counter_ns() - start) / len(batch)


def time_once(run: Callable[[], object]) -> int:
    """Nanoseconds of one call of ``run`` (a bulk load), after a garbage collection."""
    gc.collect()
    start = time.perf_counter_ns()
    run()
    return time.perf_counter_ns() - start


def plan_batches(op: Op, probe: list[Any], budget_s: float, min_rounds: int = MIN_ROUNDS) -> tuple[int, int]:
    """Batch size and number of rounds for ``op``, from two timed runs over ``probe``."""
    time_batch(op, probe)  # warm the statement cache and the pages
    per_op = max(time_batch(op, probe), 20.0)
    batch = int(min(MAX_BATCH, max(1, BATCH_NS // per_op)))
    rounds = int(budget_s * 1e9 / (2 * per_op * batch))
    return batch, min(MAX_ROUNDS, max(min_rounds, rounds))


def compare(
    a_op: Op,
    b_op: Op,
    make_args: Callable[[int], tuple[list[Any], list[Any]]],
    budget_s: float,
    min_batch: int = 1,
) -> tuple[Summary, Summary]:
    """Time ``a_op`` (kvstore) and ``b_op`` (raw sqlite3) in interleaved batches.

    ``make_args(count)`` returns ``count`` arguments for each side (separate lists, so
    writes need not collide). The order alternates every round so neither side always runs
    on the other's warm cache. ``min_batch``: for writes, whose every first statement after
    the other side's commit finds its page cache invalidated (SQLite's WAL check), which
    batches must amortize.
    """
    a_probe, b_probe = make_args(3)
    batch, rounds = plan_batches(a_op, a_probe, budget_s)
    if batch < min_batch:
        rounds = max(MIN_ROUNDS, rounds * batch // min_batch)
        batch = min_batch
    time_batch(b_op, b_probe)
    a_args, b_args = make_args(batch * rounds)
    a_samples: list[float] = []
    b_samples: list[float] = []
    for r in range(rounds):
        a_batch = a_args[r * batch : (r + 1) * batch]
        b_batch = b_args[r * batch : (r + 1) * batch]
        if r % 2:
            b_samples.append(time_batch(b_op, b_batch))
            a_samples.append(time_batch(a_op, a_batch))
        else:
            a_samples.append(time_batch(a_op, a_batch))
            b_samples.append(time_batch(b_op, b_batch))
    return summarize(a_samples, batch), summarize(b_samples, batch)


def measure(op: Op, make_args: Callable[[int], list[Any]], budget_s: float, min_rounds: int = MIN_ROUNDS) -> Summary:
    """Time ``op`` alone (a peer, which has no raw reference), in batches like :func:`compare`."""
    batch, rounds = plan_batches(op, make_args(1), budget_s, min_rounds)
    args = make_args(batch * rounds)
    samples = [time_batch(op, args[r * batch : (r + 1) * batch]) for r in range(rounds)]
    return summarize(samples, batch)


def compare_runs(a_run: Callable[[], int], b_run: Callable[[], int], repeat: int) -> tuple[list[int], list[int]]:
    """Interleave whole runs (bulk loads); each callable does its own setup and returns the ns it timed."""
    a_ns: list[int] = []
    b_ns: list[int] = []
    for r in range(repeat):
        sides = ((b_run, b_ns), (a_run, a_ns)) if r % 2 else ((a_run, a_ns), (b_run, b_ns))
        for run, out in sides:
            gc.collect()
            out.append(run())
    return a_ns, b_ns
