"""``kvstore bench --target URL``: the PostgreSQL store beside raw psycopg on the same server.

Three comparisons, each a ratio kvstore ÷ raw measured in one run (interleaved, medians):

* **latency**: get(), count() and autocommit set() against raw psycopg running the very same
  statements (prepared, binary, autocommit) on its own connection, with pre-encoded
  parameters: the ratio is what kvstore's Python costs on top of the server's work;
* **contention**: WRITERS processes doing autocommit set() over six values for a few
  seconds (ROUNDS rounds, alternating which side goes first; the median of the rounds'
  ratios), against the same upserts into the same table without the counting triggers
  (``CREATE TABLE ... (LIKE items INCLUDING ALL)``: its key, value index and checks); ops/s,
  errors, and whether counts are exact afterwards;
* **bulk**: update() of N pairs (half of them overwriting) against raw psycopg encoding the
  same pairs and running the same set-based statements (binary COPY into a temporary table, the
  whole load's count deltas in one statement, one INSERT ... ON CONFLICT): the best merge
  found for this schema (a plain COPY-and-merge pays a trigger call per row, ~30x slower).

The scratch stores live in schemas ``kvstore_bench*`` of the target database, dropped after.
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
import time
from typing import Any

from kvstore.bench.timing import compare, compare_runs

FOODS = ("apple", "banana", "carrot", "celery", "mirepoix", "clementine")
WRITERS = 8
ROUNDS = 3
"""Contention rounds, each side once per round (see _contention)."""
SCHEMA = "kvstore_bench"
RAW_SCHEMA = "kvstore_bench_raw"
PLAIN = "kvstore_bench_plain"


def run(url: str, items: int = 100_000, bulk: int = 100_000, seconds: float = 3.0, budget: float = 0.4,
        repeat: int = 3) -> dict[str, Any]:
    """Every comparison; returns the report (see :func:`render`)."""
    import psycopg

    import kvstore
    from kvstore.postgresql import schema as schemas
    from kvstore.postgresql.urls import libpq_url
    from kvstore.postgresql.encoding import encode, value_id

    for name in (SCHEMA, RAW_SCHEMA):
        schemas.remove(url, name)
    report: dict[str, Any] = {"target": _redacted(url), "items": items}
    db = kvstore.open(url, schema=SCHEMA)
    raw = psycopg.connect(libpq_url(url), autocommit=True, prepare_threshold=1)
    try:
        rng = random.Random(7)
        db.update((k, rng.choice(FOODS)) for k in range(items))
        s = f'"{SCHEMA}"'
        get_sql = f"SELECT value FROM {s}.items WHERE key = %s"
        count_sql = f"SELECT coalesce(sum(n), 0)::bigint FROM {s}.count_shards WHERE vid = %s"
        set_sql = f"INSERT INTO {s}.items (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value"

        def raw_op(query: str) -> Any:
            def op(batch: list[Any]) -> None:
                for params in batch:
                    cursor = raw.execute(query, params, prepare=True, binary=True)
                    if cursor.description is not None:
                        cursor.fetchall()
            return op

        def keys(n: int) -> list[int]:
            return [rng.randrange(items) for _ in range(n)]

        def sets(batch: list[Any]) -> None:
            for key, value in batch:
                db.set(key, value)

        latency = {}
        latency["get"] = compare(lambda b: [db.get(k) for k in b], raw_op(get_sql),
                                 lambda n: (keys(n), [(encode(k),) for k in keys(n)]), budget)
        latency["count"] = compare(lambda b: [db.count(v) for v in b], raw_op(count_sql),
                                   lambda n: ([rng.choice(FOODS) for _ in range(n)],
                                              [(value_id(rng.choice(FOODS)),) for _ in range(n)]), budget)
        latency["set"] = compare(sets, raw_op(set_sql),
                                 lambda n: ([(k, rng.choice(FOODS)) for k in keys(n)],
                                            [(encode(k), encode(rng.choice(FOODS))) for k in keys(n)]), budget)
        report["latency"] = {op: {"kvstore_ns": a["p50_ns"], "raw_ns": b["p50_ns"], "ratio": a["p50_ns"] / b["p50_ns"]}
                             for op, (a, b) in latency.items()}
        report["contention"] = _contention(url, raw, seconds)
        counts_exact = db.verify() == []
    finally:
        db.close()
        raw.close()
    report["contention"]["counts_exact"] = counts_exact
    report["bulk"] = _bulk(url, bulk, repeat)
    for name in (SCHEMA, RAW_SCHEMA):
        schemas.remove(url, name)
    return report


def _contention(url: str, raw: Any, seconds: float) -> dict[str, Any]:
    raw.execute(f"DROP TABLE IF EXISTS {PLAIN}")
    # The store's own items table (its key, value index and checks), without the counting triggers.
    raw.execute(f'CREATE TABLE {PLAIN} (LIKE "{SCHEMA}".items INCLUDING ALL)')
    try:
        # Rounds alternate which side runs first (kvstore, plain; plain, kvstore; ...) in one pool of
        # writer processes, and each round gives a ratio: the median ratio is reported, since a
        # shared 2-core machine's load moves both sides of one round alike but not of two rounds.
        ops: dict[str, list[float]] = {"kvstore": [], "plain": []}
        errors = {"kvstore": 0, "plain": 0}
        ratios = []
        with multiprocessing.get_context("spawn").Pool(WRITERS) as pool:
            for r in range(ROUNDS):
                for side in ("kvstore", "plain") if r % 2 == 0 else ("plain", "kvstore"):
                    start = time.time() + (2.0 if r == 0 else 0.3)  # together, after the first round's imports
                    outcomes = pool.starmap(_writer, [(url, side, start, seconds, n) for n in range(WRITERS)])
                    ops[side].append(sum(done for done, _ in outcomes) / seconds)
                    errors[side] += sum(failed for _, failed in outcomes)
                ratios.append(ops["kvstore"][-1] / ops["plain"][-1])
        result: dict[str, Any] = {side: {"ops_per_s": statistics.median(ops[side]), "errors": errors[side]}
                                  for side in ops}
        result["ratio"] = statistics.median(ratios)
        result["ratios"] = ratios
        return result
    finally:
        raw.execute(f"DROP TABLE IF EXISTS {PLAIN}")


def _writer(url: str, side: str, start: float, seconds: float, seed: int) -> tuple[int, int]:
    """One writer process: autocommit upserts of random keys over six values until time is up."""
    import kvstore
    from kvstore.postgresql.encoding import encode

    rng = random.Random(seed)
    done = errors = 0
    if side == "kvstore":
        db = kvstore.open(url, schema=SCHEMA)
        write = db.set
    else:
        import psycopg

        from kvstore.postgresql.urls import libpq_url

        conn = psycopg.connect(libpq_url(url), autocommit=True, prepare_threshold=1)
        query = f"INSERT INTO {PLAIN} (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value"

        def write(key: Any, value: Any) -> None:
            conn.execute(query, (encode(key), encode(value)), prepare=True)

    time.sleep(max(0.0, start - time.time()))
    end = start + seconds
    while time.time() < end:
        try:
            write(rng.randrange(100_000), rng.choice(FOODS))
            done += 1
        except Exception:
            errors += 1
    return done, errors


def _bulk(url: str, n: int, repeat: int) -> dict[str, Any]:
    """update() of n pairs into a store of n (half overwrites) against raw COPY + one merge."""
    import psycopg

    import kvstore
    from kvstore.postgresql import ddl, schema as schemas
    from kvstore.postgresql.urls import libpq_url
    from kvstore.postgresql.encoding import encode

    rng = random.Random(11)
    base = [(k, rng.choice(FOODS)) for k in range(n)]
    batch = [(k, rng.choice(FOODS)) for k in range(n // 2, n + n // 2)]
    rng.shuffle(batch)

    def fresh(name: str) -> Any:
        schemas.remove(url, name)
        db = kvstore.open(url, schema=name)
        db.update(base)
        return db

    def ours() -> int:
        db = fresh(SCHEMA)
        try:
            started = time.perf_counter_ns()
            db.update(batch)
            return time.perf_counter_ns() - started
        finally:
            db.close()

    def raw() -> int:
        """Raw psycopg running kvstore's own bulk statements, encoding the pairs as kvstore does:
        the best set-based merge for this schema (COPY, one delta per value, one merge)."""
        fresh(RAW_SCHEMA).close()
        with psycopg.connect(libpq_url(url)) as conn:
            started = time.perf_counter_ns()
            # Encoding is work a raw client storing typed keys and values must do too.
            rows = [(i, encode(k), encode(v)) for i, (k, v) in enumerate(batch)]
            conn.execute("CREATE TEMPORARY TABLE kvstore_load (seq bigint, key bytea, value bytea)")
            with conn.cursor().copy("COPY pg_temp.kvstore_load (seq, key, value) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "bytea", "bytea"])
                for row in rows:
                    copy.write_row(row)
            for statement in ddl.bulk_merge(RAW_SCHEMA):
                cursor = conn.execute(statement)
            (emptied,) = cursor.fetchone() or ([],)
            if emptied:
                conn.execute(ddl.bulk_emptied(RAW_SCHEMA), (emptied,))
            for statement in ddl.bulk_finish(RAW_SCHEMA):
                conn.execute(statement)
            conn.commit()
            return time.perf_counter_ns() - started

    a, b = compare_runs(ours, raw, repeat)
    return {"pairs": n, "kvstore_s": statistics.median(a) / 1e9, "raw_s": statistics.median(b) / 1e9,
            "ratio": statistics.median(a) / statistics.median(b)}


def render(report: dict[str, Any]) -> str:
    """The report as the tables ``kvstore bench --target`` prints."""
    from tabulate import tabulate

    lines = [f"PostgreSQL target {report['target']}, store of {report['items']:,} items"]
    rows = [[op, f"{r['kvstore_ns'] / 1000:.1f}", f"{r['raw_ns'] / 1000:.1f}", f"{r['ratio']:.2f}×"]
            for op, r in report["latency"].items()]
    lines.append(tabulate(rows, ["operation", "kvstore µs", "raw psycopg µs", "ratio"], tablefmt="github"))
    c = report["contention"]
    lines.append("")
    lines.append(tabulate([[f"{WRITERS} writers, 6 values", f"{c['kvstore']['ops_per_s']:,.0f}",
                            f"{c['plain']['ops_per_s']:,.0f}", f"{c['ratio']:.2f}×",
                            c["kvstore"]["errors"], "yes" if c["counts_exact"] else "NO"]],
                          ["contention", "kvstore ops/s", "same table, no triggers ops/s", "ratio", "errors", "counts exact"],
                          tablefmt="github"))
    b = report["bulk"]
    lines.append("")
    lines.append(tabulate([[f"update() of {b['pairs']:,} into {b['pairs']:,}", f"{b['kvstore_s']:.2f}",
                            f"{b['raw_s']:.2f}", f"{b['ratio']:.2f}×"]],
                          ["bulk", "kvstore s", "raw psycopg, same statements s", "ratio"], tablefmt="github"))
    return "\n".join(lines)


def _redacted(url: str) -> str:
    from kvstore.postgresql.urls import redacted

    return redacted(url)
