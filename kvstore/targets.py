"""Measure kvstore's performance targets at full size and print one table.

    python -m kvstore.targets                 # 1M items, 10M reads and merge, 10M-pair RSS run, space: ~15-20 minutes
    python -m kvstore.targets --n 100k --rss-n 500k --reads-n 1M --repeat 2   # a quicker look
    python -m kvstore.targets --reads-file big.db   # reuse a store of pairs 0..N built before
    python -m kvstore.targets --space-mb 0    # without the large-value space section
    python -m kvstore.targets --json > targets.json

Ratios are kvstore / raw sqlite3 doing the same work on the same file in the same run
(interleaved batches, medians); see kvstore/bench/ for the references (kvstore/bench/reads.py
for the read and cold-start targets). The process-level targets (peak RSS, fresh-process
count, import) run in subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import click

from kvstore import bench
from kvstore.bench import reads
from kvstore.bench.measure import compare_bulk_merge
from kvstore.bench.space import measure_space
from kvstore.units import format_duration, format_size

# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
RSS_SCRIPT = """
import sys, time, kvstore
from kvstore.bench import pairs

def hwm_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

n = int(sys.argv[2])
db = kvstore.open(sys.argv[1])
db.get(0)
before = hwm_kb()
start = time.perf_counter()
db.update(pairs(0, n))              # a generator: the pairs are never all in memory
seconds = time.perf_counter() - start
peak = hwm_kb()
assert len(db) == n, len(db)
assert db.count("clementine") == db.count("clementine", strategy="group_by")
print(before, peak, seconds)
"""


def wall_times(argv: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` fresh processes (after one warm-up run)."""
    subprocess.run(argv, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def _verdict(met: bool | None) -> str:
    """None: the ratio targets are judged at 1M items only (the merge target at 10M)."""
    return "not judged at this size" if met is None else ("met" if met else "MISSED")


@click.command()
@click.option("--n", "size", default="1M", show_default=True, help="Store size for the ratio targets.")
@click.option("--rss-n", default="10M", show_default=True,
              help="Pairs streamed into update() for the RSS and linear-growth targets.")
@click.option("--reads-n", default="10M", show_default=True,
              help="Store size for the read targets (built once, in the scratch folder).")
@click.option("--reads-file", type=click.Path(dir_okay=False, exists=True),
              help="A kvstore file of the benchmark's pairs 0..N to read instead of building one (its N is used).")
@click.option("--repeat", type=int, default=3, show_default=True, help="Bulk-load runs per side.")
@click.option("--budget", type=float, default=1.0, show_default=True, help="Seconds per latency comparison.")
@click.option("--runs", type=int, default=9, show_default=True, help="Fresh processes per wall-time target.")
@click.option("--dir", "folder", type=click.Path(file_okay=False), help="Scratch folder [default: a temporary one].")
@click.option("--space-mb", type=float, default=24.0, show_default=True,
              help="MiB of values per store in the space section (0 skips it).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
def main(size: str, rss_n: str, reads_n: str, reads_file: str | None, repeat: int, budget: float, runs: int,
         folder: str | None, space_mb: float, as_json: bool) -> None:
    """Measure every performance target (ratios against raw sqlite3, RSS, start-up, space) in one table."""
    from tabulate import tabulate

    (n,) = bench.parse_sizes(size)
    (rss_pairs,) = bench.parse_sizes(rss_n)
    (reads_pairs,) = bench.parse_sizes(reads_n)
    own = folder is None
    folder = tempfile.mkdtemp(prefix="kvstore-targets-") if folder is None else folder
    os.makedirs(folder, exist_ok=True)
    files = bench.Files(folder)
    rows = []

    def step(label: str) -> None:
        click.echo(f"  done: {label}", err=True)

    try:
        loads, path = bench.measure_loads(files, n, repeat, True, step)
        latencies, space = bench.measure_store(path, n, budget, step)
        bulk_loads = bench.compare_bulk_loads(files, n, repeat)
        step("bulk loads")
        by_name = {r["operation"]: r for r in latencies + loads + bulk_loads}
        for name, label in (
            ("count counts", f"count(value), {n:,} items"),
            ("get(key)", f"get(key), {n:,} items"),
            ("db[key]", f"db[key], {n:,} items"),
            ("set(key, value)", "set(key, value), autocommit, half new keys"),
            ("update: load", f"update() of {n:,} new pairs into an empty store"),
            ("bulk load vs naive raw", f"update() of {n:,} random-order pairs, empty store, vs naive raw load"),
            ("bulk load vs best raw", f"update() of {n:,} random-order pairs, empty store, vs best raw load"),
            ("update: merge", f"update() of {n:,} pairs into {n:,}, half overwrites"),
        ):
            r = by_name[name]
            rows.append(
                {
                    "target": label,
                    "kvstore": format_duration(r["kvstore"]["p50_ns"] / 1e9) + ("/pair" if r["kind"] == "bulk" else ""),
                    "raw sqlite3": format_duration(r["sqlite3"]["p50_ns"] / 1e9) + ("/pair" if r["kind"] == "bulk" else ""),
                    "ratio": f"{r['ratio']:.2f}×",
                    "goal": f"≤ {r['target']}×",
                    "met": r["met"],
                    "detail": r,
                }
            )
        reads_path, reads_pairs = _reads_store(files, reads_file, reads_pairs, step)
        rows += _read_rows(reads_path, reads_pairs, budget, max(runs, 21), step)
        rows.append(_merge_row(files, reads_path, reads_pairs, step))
        times = wall_times([sys.executable, "-c", "import kvstore"], runs)
        bare = wall_times([sys.executable, "-c", "pass"], runs)
        rows.append(
            {
                "target": "python -c 'import kvstore', wall time",
                "kvstore": format_duration(statistics.median(times)),
                "raw sqlite3": f"(bare python: {format_duration(statistics.median(bare))})",
                "ratio": "",
                "goal": "≤ 200 ms",
                "met": statistics.median(times) <= 0.2,
                "detail": {"seconds": times, "bare_python_seconds": bare},
            }
        )
        step("processes")
        rss_path = files.empty_store()
        done = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, rss_path, str(rss_pairs)],
            check=True,
            capture_output=True,
            text=True,
        )
        before, peak, seconds = done.stdout.split()
        before_kb, peak_kb = int(before), int(peak)
        rows.append(
            {
                "target": f"peak RSS, update() from a generator of {rss_pairs:,} pairs",
                "kvstore": format_size(peak_kb * 1024),
                "raw sqlite3": f"(before update: {format_size(before_kb * 1024)})",
                "ratio": "",
                "goal": "≤ 300 MiB",
                "met": peak_kb / 1024 <= 300,
                "detail": {"peak_kb": peak_kb, "before_kb": before_kb},
            }
        )
        per_pair = float(seconds) / rss_pairs
        at_n = by_name["update: load"]["kvstore"]["p50_ns"] / 1e9
        rows.append(
            {
                "target": f"linear growth: cost per pair of that load ÷ update() of {n:,} (above)",
                "kvstore": format_duration(per_pair) + "/pair",
                "raw sqlite3": f"({format_duration(at_n)}/pair at {n:,})",
                "ratio": f"{per_pair / at_n:.2f}×",
                "goal": "≤ 1.5×",
                "met": per_pair / at_n <= 1.5 if rss_pairs >= 10 * n else None,
                "detail": {"seconds": float(seconds), "pairs": rss_pairs},
            }
        )
        step("rss")
        rows.append(
            {
                "target": f"space: file per item, {space['rows']:,} items of six foods (seed-style store)",
                "kvstore": f"{space['file_bytes'] / space['rows']:.1f} B",
                "raw sqlite3": "",
                "ratio": "",
                "goal": "≤ 50 B",
                "met": space["file_bytes"] / space["rows"] <= 50,
                "detail": space,
            }
        )
        large = measure_space(folder, total=int(space_mb * (1 << 20)), step=step) if space_mb > 0 else []
        for r in large:
            rows.append(
                {
                    "target": f"space: {r['items']:,} {r['values']} values of {format_size(r['value_bytes'])}, by {r['load']}()",
                    "kvstore": f"{format_size(r['file_bytes'])} file",
                    "raw sqlite3": f"({format_size(r['logical_bytes'])} data)",
                    "ratio": f"{r['ratio']:.2f}×",
                    "goal": f"≤ {r['goal']}×",
                    "met": r["met"],
                    "detail": r,
                }
            )
    finally:
        files.cleanup()
        if own:
            shutil.rmtree(folder, ignore_errors=True)
    if as_json:
        click.echo(json.dumps({"targets": rows, "space": space}, indent=2, default=str))
    else:
        table = [[r["target"], r["kvstore"], r["raw sqlite3"], r["ratio"], r["goal"], _verdict(r["met"])] for r in rows]
        click.echo(tabulate(table, headers=["target", "kvstore", "raw sqlite3", "ratio", "goal", ""], disable_numparse=True))


def _reads_store(files: bench.Files, path: str | None, n: int, step: Callable[[str], None]) -> tuple[str, int]:
    """The large store of pairs 0..N the read targets and the merge target use: built, or given."""
    if path is None:
        path = files.new_path(f"reads-{n}")
        reads.build(path, n, step)
    else:
        import kvstore

        with kvstore.open(path, readonly=True) as db:
            n = len(db)
    return path, n


MERGE_RUNS = 3
"""Runs per side of the merge target (each copies the large store first)."""


def _merge_row(files: bench.Files, path: str, n: int, step: Callable[[str], None]) -> dict[str, Any]:
    """Target 3: update() of a list of n/10 pairs, half overwrites, into copies of the large
    store, against the best raw merge (kvstore.bench.sides.BestMerge), interleaved."""
    m = max(1, n // 10)
    r = compare_bulk_merge(files, path, n, m, MERGE_RUNS)
    step("bulk merge")
    kv, raw = r["kvstore"]["seconds"], r["sqlite3"]["seconds"]
    return {
        "target": f"update() of a list of {m:,} pairs (half overwrites) into {n:,}, vs best raw merge",
        "kvstore": f"{statistics.median(kv):.1f} s",
        "raw sqlite3": f"{statistics.median(raw):.1f} s (sorted, 256 MiB cache; runs {', '.join(f'{t:.1f}' for t in raw)} s)",
        "ratio": f"{r['ratio']:.2f}× (kvstore runs {', '.join(f'{t:.1f}' for t in kv)} s)",
        "goal": f"≤ {r['target']}×",
        "met": r["met"],
        "detail": r,
    }


def _read_rows(path: str, n: int, budget: float, runs: int,
               step: Callable[[str], None]) -> list[dict[str, Any]]:
    """Targets 5 and 6: reads of a large store, the batch reads, `kvstore count` in a fresh process."""
    found = reads.measure_reads(path, n, max(budget, 2.0), step)
    found.append(reads.measure_cold_start(path, runs))
    step("reads: cold start")
    return [
        {
            "target": r["target"],
            "kvstore": format_duration(r["kvstore_ns"] / 1e9),
            "raw sqlite3": f"{format_duration(r['reference_ns'] / 1e9)} ({r['reference']})",
            "ratio": f"{r['ratio']:.2f}×",
            "goal": f"≤ {r['goal']}×",
            "met": r["met"],
            "detail": r["detail"],
        }
        for r in found
    ]


if __name__ == "__main__":
    main()
