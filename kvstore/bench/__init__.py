"""``kvstore bench``: kvstore's latency, throughput and space beside raw sqlite3 and its peers.

Every kvstore figure has a reference beside it: raw ``sqlite3`` doing the same work on the
same file in the same run, on a connection with the same pragmas
(:func:`kvstore.sqlite.connection.connect`). The two run in interleaved batches (kvstore, raw,
raw, kvstore, ...) so that the noise of a shared machine falls on both alike; each figure is
the median (p50) or 99th percentile (p99) of the per-operation time of those batches, and
``ratio`` is kvstore's p50 over raw's p50.

The references, operation by operation:

- ``count`` (strategy ``counts``): ``SELECT n FROM counts`` found through the index on
  counts' values, as :data:`kvstore.sqlite.sql.COUNT` writes it; for
  ``group_by`` and ``scan`` the same SQL kvstore runs (an aggregate over the value index,
  and a full scan), so those ratios show the cost of the Python layer alone.
- ``get(key)`` and ``db[key]``: ``SELECT value FROM items WHERE key = ?``.
- ``set(key, value)`` outside a transaction, half new keys, half overwrites: one autocommit
  upsert on a plain ``sqlite3`` connection (SQLite's defaults, ``synchronous=NORMAL``), each
  side on its own copy of the file, count triggers included, in batches long enough to count
  the checkpoints.
- ``update()`` of N new pairs into an empty store, and of N pairs (half overwrites) into a
  store holding N: ``executemany`` of a plain INSERT (an upsert when keys may exist) into the
  same ``items`` table and index *without* the triggers, in one transaction.

With ``--large-values MIB``, stores of large values (1 KB to 1 MiB) are also loaded, through
``update()`` and through single ``set()`` calls, and their file size divided by the data's
(:mod:`.space`).

Peers (the ``bench`` extra): ``dict`` + ``collections.Counter`` in memory, diskcache,
sqlitedict, lmdb and rocksdict doing the same get/set/count work; except for the Counter,
a count is a scan of every value. A peer that is not installed is skipped, with the reason
in the report.

The package: :mod:`.data` (foods, keys), :mod:`.timing` (the harness), :mod:`.peers` (one
protocol, one class per peer), :mod:`.sides` (kvstore and raw sqlite3 as classes of that
protocol), :mod:`.measure` (what is measured), :mod:`.report`
(tables, plot); here :func:`run` (the whole benchmark, as data), :func:`main` (run and
print, what the command does) and the click :data:`command`. matplotlib, tabulate and the
peers are imported only when used, so importing this package costs little more than click.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from kvstore.bench.data import FOODS, Workload, key_of, merge_pairs, pairs, value_of
from kvstore.bench.measure import (
    LATENCY_STEPS,
    LOAD_STEPS,
    SET_BATCH,
    SPACE_STEP,
    TARGET_N,
    TARGETS,
    Files,
    compare_bulk_loads,
    measure_loads,
    measure_peer,
    measure_store,
    peer_size,
)
from kvstore.bench.peers import PEER_CAP, PEERS, Peer, available_peers, peer_status
from kvstore.bench.report import fmt_bytes, fmt_time, plot, plot_problem, render_table
from kvstore.bench.sides import Kvstore, RawSqlite, drop_triggers
from kvstore.bench.space import measure_space, step_labels as large_value_steps
from kvstore.bench.timing import compare, compare_runs, measure, summarize

__all__ = [
    "DEFAULT_SIZES", "FOODS", "PEERS", "PEER_CAP", "QUICK_SIZES", "SET_BATCH", "TARGETS", "TARGET_N",
    "Files", "Kvstore", "Peer", "RawSqlite", "Workload",
    "available_peers", "command", "compare", "compare_bulk_loads", "compare_runs", "drop_triggers", "fmt_bytes", "fmt_time",
    "key_of", "main", "measure", "measure_loads", "measure_peer", "measure_store", "merge_pairs",
    "pairs", "parse_sizes", "peer_status", "plan", "plan_steps", "plot", "render_table", "run",
    "summarize", "value_of",
]  # fmt: skip

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (500, 2_000)


# -- the whole run ---------------------------------------------------------------------------


def plan(sizes: Sequence[int], peers: Sequence[str], merge: bool, large_values: float = 0.0) -> list[str]:
    """Every step :func:`run` takes, in order: the labels ``progress()`` is called with."""
    steps = [LOAD_STEPS[0], *LOAD_STEPS[1:2 if merge else 1], *LATENCY_STEPS, SPACE_STEP, *peers]
    large = large_value_steps() if large_values > 0 else []
    return [f"n={n:,} {step}" for n in sizes for step in steps] + large


def plan_steps(sizes: Sequence[int], peers: Sequence[str], merge: bool, large_values: float = 0.0) -> int:
    """How many times :func:`run` calls ``progress()``."""
    return len(plan(sizes, peers, merge, large_values))


def run(
    sizes: Sequence[int],
    *,
    folder: str | None = None,
    budget_s: float = 0.4,
    repeat: int | None = None,
    peers: Sequence[str] | None = None,
    merge: bool = True,
    large_values: float = 0.0,
    progress: Callable[[str], None] = lambda label: None,
) -> dict[str, Any]:
    """Run the benchmark at each of ``sizes`` and return the report (what ``--json`` prints).

    ``budget_s``: seconds spent timing each latency comparison (both sides together).
    ``repeat``: runs of each bulk load per side (default 3 at 1M and above, else 5).
    ``peers``: which peers to measure (default: every one in :data:`PEERS`; ``[]`` for
    none); those not installed are skipped and listed, with the reason, in the report.
    ``large_values``: MiB of values per store for the large-value space measurement
    (:func:`kvstore.bench.space.measure_space`; 0 skips it).
    ``progress(label)`` is called after each step, with the labels :func:`plan` lists.
    """
    import kvstore

    status = peer_status(None if peers is None else list(peers))
    runnable = [name for name, reason in status.items() if reason is None]
    skipped = [{"peer": name, "reason": reason} for name, reason in status.items() if reason is not None]
    capped = [name for name in runnable if PEERS[name].cap is not None]
    scanning = [name for name in runnable if not PEERS[name].indexed_count]
    report: dict[str, Any] = {
        "kvstore_version": kvstore.__version__,
        "sqlite_version": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "sizes": list(sizes),
        "results": [],
        "space": [],
        "large_values": [],
        "peers": [],
        "skipped_peers": skipped,
        "notes": [
            (f"latencies: time per operation over batches (set(): {SET_BATCH} writes a batch); "
             "p50 = median, p99 = 99th percentile; kvstore and raw sqlite3 batches interleaved on the "
             "same file (set(): on two copies of it); ratio = kvstore p50 / raw p50"),
            ("raw sqlite3: a connection from kvstore.sqlite.connection.connect (same pragmas), except for set(): "
             "a plain sqlite3.connect() with synchronous=NORMAL; "
             "bulk references insert into the same items table and index without the count triggers"),
            *([f"peers {' and '.join(capped)} are loaded with at most {PEER_CAP:,} pairs"] if capped else []),
            *([f"peers {', '.join(scanning)} keep no count per value: their count is a scan of every value"]
              if scanning else []),
            *(f"peer {s['peer']} skipped: {s['reason']}" for s in skipped),
        ],
    }  # fmt: skip
    peer_cache: dict[tuple[str, int], dict[str, Any]] = {}
    own_folder = folder is None
    folder = tempfile.mkdtemp(prefix="kvstore-bench-") if folder is None else folder
    os.makedirs(folder, exist_ok=True)
    files = Files(folder)
    try:
        for n in sizes:
            reps = repeat if repeat is not None else (3 if n >= 1_000_000 else 5)

            def step(label: str, n: int = n) -> None:
                progress(f"n={n:,} {label}")

            rows, path = measure_loads(files, n, reps, merge, step)
            store_rows, space = measure_store(path, n, budget_s, step)
            files.remove(path)
            report["results"].extend(store_rows + rows)
            report["space"].append(space)
            for name in runnable:
                peer = PEERS[name]
                size = peer_size(peer, n)
                if (name, size) not in peer_cache:
                    peer_folder = tempfile.mkdtemp(prefix=f"{name.replace('+', '-')}-", dir=folder)
                    try:
                        peer_cache[name, size] = measure_peer(peer, size, peer_folder, budget_s)
                    finally:
                        shutil.rmtree(peer_folder, ignore_errors=True)
                report["peers"].append({**peer_cache[name, size], "for_n": n})
                step(name)
        if large_values > 0:
            report["large_values"] = measure_space(folder, total=int(large_values * (1 << 20)), step=progress)
    finally:
        files.cleanup()
        if own_folder:
            shutil.rmtree(folder, ignore_errors=True)
    return report


# -- the command -----------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    """``"10k,100k,1M"`` -> ``[10000, 100000, 1000000]``."""
    sizes = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1].lower(), 1)
        number = part[:-1] if scale != 1 else part
        try:
            value = int(float(number) * scale)
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a size; write e.g. 10k,100k,1M") from None
        if value < 100:
            raise click.BadParameter(f"size {part!r} is too small; use at least 100")
        sizes.append(value)
    if not sizes:
        raise click.BadParameter("give at least one size, e.g. 10k,100k,1M")
    return sizes


@contextmanager
def _progress_bar(labels: list[str], quiet: bool) -> Iterator[Callable[[str], None]]:
    """A bar of ``len(labels)`` steps on stderr; it names the step running, not the one done."""
    with click.progressbar(
        length=max(1, len(labels)),
        label="kvstore bench",
        file=sys.stderr,
        hidden=quiet,
        item_show_func=lambda label: label,
        show_pos=True,
    ) as bar:
        upcoming = iter(labels)
        bar.current_item = next(upcoming, None)
        if not quiet:
            bar.render_progress()
        yield lambda label: bar.update(1, next(upcoming, "done"))


def main(
    *,
    sizes: Sequence[int] | str = DEFAULT_SIZES,
    quick: bool = False,
    as_json: bool = False,
    plot_path: str | None = None,
    peers: bool = True,
    merge: bool = True,
    budget: float = 0.4,
    repeat: int | None = None,
    folder: str | None = None,
    quiet: bool = False,
    large_values: float = 0.0,
) -> None:
    """What ``kvstore bench`` does: check, run with a progress bar, print, plot.

    ``sizes``: a list, or text such as ``"10k,100k,1M"`` (:func:`parse_sizes`). The other
    arguments are the command's options. Everything that could fail after the run (a missing matplotlib, an unwritable plot
    path) is checked first, raising :class:`click.ClickException` before any work.
    """
    if plot_path:
        problem = plot_problem(plot_path)
        if problem:
            raise click.ClickException(problem)
    size_list = list(QUICK_SIZES) if quick else parse_sizes(sizes) if isinstance(sizes, str) else list(sizes)
    if quick:
        budget = min(budget, 0.01)
        repeat = repeat or 1
    peer_names = list(PEERS) if peers else []
    labels = plan(size_list, available_peers(peer_names), merge, large_values)
    with _progress_bar(labels, quiet) as step:
        report = run(
            size_list,
            folder=folder,
            budget_s=budget,
            repeat=repeat,
            peers=peer_names,
            merge=merge,
            large_values=large_values,
            progress=step,
        )
    if plot_path:
        plot(report, plot_path)
        report["plot"] = plot_path
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(render_table(report))
        if plot_path:
            click.echo(f"\nPlot written to {plot_path}")


@click.command("bench")
@click.option("--sizes", default="10k,100k,1M", show_default=True,
              help="Store sizes to measure, comma-separated (k = thousand, M = million).")
@click.option("--quick", is_flag=True,
              help=f"Tiny sizes ({', '.join(map(str, QUICK_SIZES))}) and short timings: a smoke test.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON instead of tables.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Also write a PNG: count latency, load cost per pair and space per structure against N (needs matplotlib).")
@click.option("--peers/--no-peers", default=True, show_default=True,
              help=f"Also measure the peers: {', '.join(PEERS)} (those installed; the bench extra).")
@click.option("--merge/--no-merge", default=True, show_default=True,
              help="Also time update() of N pairs (half overwrites) into a store of N.")
@click.option("--budget", type=click.FloatRange(min=0.001), default=0.4, show_default=True,
              help="Seconds spent timing each latency comparison.")
@click.option("--repeat", type=click.IntRange(min=1),
              help="Runs of each bulk load per side [default: 3 at 1M and above, else 5].")
@click.option("--dir", "folder", type=click.Path(file_okay=False),
              help="Folder for the scratch files [default: a temporary folder, removed after].")
@click.option("--large-values", type=click.FloatRange(min=0), default=0, metavar="MIB",
              help="Also load stores of about MIB MiB of large values (1 KB to 1 MiB) and report file ÷ data "
                   "[default: 0, skipped].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar on stderr.")
@click.option("--target", metavar="URL", help="Measure a PostgreSQL store at URL instead, beside raw psycopg on the "
              "same server (latency, 8 contending writers, bulk update); uses schemas kvstore_bench*.")
def command(
    sizes: str,
    quick: bool,
    as_json: bool,
    plot_path: str | None,
    peers: bool,
    merge: bool,
    budget: float,
    repeat: int | None,
    folder: str | None,
    quiet: bool,
    large_values: float,
    target: str | None,
) -> None:
    """Measure count/get/set latency, bulk loads and space, beside raw sqlite3 and peers.

    Each kvstore figure is shown beside raw sqlite3 doing the same work on the same file,
    with the ratio kvstore/raw (lower is better; 1.00× means no overhead). With --target URL,
    a PostgreSQL store beside raw psycopg instead (--sizes: its first size is the store's).
    """
    if target:
        from kvstore.bench import postgresql

        size = (list(QUICK_SIZES) if quick else parse_sizes(sizes))[0]
        report = postgresql.run(target, items=size, bulk=size, seconds=1.0 if quick else 3.0, budget=budget,
                                repeat=repeat or (1 if quick else 3))
        click.echo(json.dumps(report, indent=2) if as_json else postgresql.render(report))
        return
    main(
        sizes=sizes,
        quick=quick,
        as_json=as_json,
        plot_path=plot_path,
        peers=peers,
        merge=merge,
        budget=budget,
        repeat=repeat,
        folder=folder,
        quiet=quiet,
        large_values=large_values,
    )
