"""The classic demo: a million random keys, each holding one of six foods, and how long
``count(food)`` takes with each strategy.

Plain functions (:func:`open_store`, :func:`build`, :func:`measure`, :func:`render`) do the
work so tests can run them at small sizes; :data:`command` is the thin ``kvstore demo``
wrapper, loaded lazily by :mod:`kvstore.cli`.

An existing ``--path`` is reused when it already holds the demo's number of food items,
filled when it is an empty store, and refused otherwise (a different ``--seed`` is not
detected: the reused store keeps the seed it was built with). ``--rebuild`` deletes the
file (with its ``-wal``/``-shm`` companions) and builds it afresh, but only once
``kvstore.open`` has accepted it as a kvstore file:
anything else (a foreign SQLite database, a text file) is never deleted. Deleting is much
faster than a million DELETEs through the triggers; do not rebuild a store another process
has open.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import get_args

import click

import kvstore
import kvstore.validate
from kvstore.sqlite.files import remove_database
from kvstore.postgresql import SCHEMES as POSTGRESQL_SCHEMES
from kvstore.timer import stopwatch
from kvstore.api import StoreAPI
from kvstore.api import Strategy
from kvstore.units import format_duration, format_size

FOODS = ("apple", "banana", "carrot", "celery", "mirepoix", "clementine")
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
DEFAULT_ITEMS = 1_000_000
DEFAULT_SEED = 42
DEFAULT_PATH = "foods.db"
DEFAULT_REPEATS = 5
MAX_ITEMS = 100_000_000

_CHUNK = 10_000
_MAX_GAP_BITS = 40


@dataclass(frozen=True)
class FoodTiming:
    """What each strategy answered for one food, and its median time in seconds."""

    food: str
    counts: dict[str, int]
    seconds: dict[str, float]

    @property
    def count(self) -> int:
        return self.counts["counts"]

    @property
    def agree(self) -> bool:
        return len(set(self.counts.values())) == 1


def food_pairs(items: int, seed: int) -> Iterator[tuple[int, str]]:
    """``items`` distinct random int keys, each with a food chosen uniformly at random.

    Keys grow by a random gap (up to 2**40, less for huge ``items`` so they fit in 63 bits):
    they look random and never collide, and arriving in key order lets the load append to
    the B-tree instead of splitting pages all over it (about twice as fast). The stored
    result is the same whatever order the pairs arrive in.
    """
    rng = random.Random(seed)
    gap_bits = min(_MAX_GAP_BITS, (kvstore.validate.INT_MAX // max(items, 1)).bit_length() - 1)
    key = 0
    for start in range(0, items, _CHUNK):
        for food in rng.choices(FOODS, k=min(_CHUNK, items - start)):
            key += 1 + rng.getrandbits(gap_bits)
            yield key, food


def open_store(path: str, items: int, rebuild: bool = False) -> tuple[StoreAPI, bool]:
    """Open ``path`` for the demo; the flag is True when it already holds the demo and is reused.

    A store holding something else is refused (kvstore.Error) unless ``rebuild``, which
    deletes it first. A foreign file is never deleted: ``kvstore.open`` refuses it.
    """
    url = path.startswith(POSTGRESQL_SCHEMES)
    if url or os.path.exists(path):
        db = kvstore.open(path)
        held = len(db)
        if held == 0:
            return db, False
        if not rebuild and _holds_demo(db, items):
            return db, True
        db.close()
        if not rebuild:
            raise kvstore.Error(
                f"{db.path} already holds {held:,} item{'s' if held != 1 else ''}, not the demo's {items:,} foods; "
                "pass --rebuild to delete and rebuild it, or choose another --path"
            )
        if url:
            from kvstore.postgresql.schema import remove

            remove(path, "kvstore")
        else:
            remove_database(path)
    return kvstore.open(path), False


def _holds_demo(db: StoreAPI, items: int) -> bool:
    return len(db) == items and set(db.counts()) <= set(FOODS)


def build(
    db: StoreAPI, items: int, seed: int = DEFAULT_SEED, progress: Callable[[int], None] | None = None
) -> float:
    """Load the demo's pairs into ``db`` with one bulk ``update``; returns the seconds it took.

    ``progress(n)`` is called after every ``n`` pairs handed to the store.
    """
    pairs = food_pairs(items, seed)
    if progress is not None:
        pairs = _reporting(pairs, progress)
    took: list[float] = []
    with stopwatch("load", callback=lambda _, seconds: took.append(seconds)):
        db.update(pairs)
    return took[0]


def _reporting(pairs: Iterator[tuple[int, str]], progress: Callable[[int], None]) -> Iterator[tuple[int, str]]:
    n = 0
    for pair in pairs:
        yield pair
        n += 1
        if n == _CHUNK:
            progress(n)
            n = 0
    if n:
        progress(n)


def measure(db: StoreAPI, repeats: int = DEFAULT_REPEATS) -> list[FoodTiming]:
    """Count every food with every strategy ``repeats`` times; keep each median time."""
    import statistics

    # Warm up: prepare each statement and bring its pages in; the cheap lookup gets many
    # calls so that Python's specialising interpreter has settled before we time it.
    for strategy in STRATEGIES:
        for _ in range(50 if strategy == "counts" else 1):
            db.count(FOODS[0], strategy)
    runs: dict[str, list[float]] = {}

    def record(label: str, seconds: float) -> None:
        runs.setdefault(label, []).append(seconds)

    timings = []
    for food in FOODS:
        counts: dict[str, int] = {}
        seconds: dict[str, float] = {}
        for strategy in STRATEGIES:
            label = f"count({food!r}, {strategy!r})"
            watch = stopwatch(label, callback=record)
            for _ in range(repeats):
                with watch:
                    counts[strategy] = db.count(food, strategy)
            seconds[strategy] = statistics.median(runs[label])
        timings.append(FoodTiming(food, counts, seconds))
    return timings


def render(timings: list[FoodTiming], stats: dict[str, dict[str, int]], repeats: int = DEFAULT_REPEATS) -> str:
    """The demo's report: counts and times per food, then the bytes on disk."""
    from tabulate import tabulate

    rows = [
        [t.food, f"{t.count:,}", *(format_duration(t.seconds[s]) for s in STRATEGIES)]
        for t in timings
    ]
    rows.append(["total", f"{sum(t.count for t in timings):,}", "", "", ""])
    counting = tabulate(
        rows,
        headers=["food", "count", *STRATEGIES],
        colalign=("left", "right", "right", "right", "right"),
        disable_numparse=True,
    )
    sizes = tabulate(
        [
            [label, f"{stats[part]['rows']:,}" if part != "file" else "",
             f"{stats[part]['bytes']:,}", format_size(stats[part]["bytes"])]
            for part, label in (("items", "items"), ("value_index", "value index"), ("counts", "counts"), ("file", "whole file"))
        ],
        headers=["on disk", "rows", "bytes", "size"],
        colalign=("left", "right", "right", "right"),
        disable_numparse=True,
    )
    return "\n\n".join(
        [
            f"count(food) by strategy, median of {repeats} runs each:",
            counting,
            _verdict(timings),
            sizes,
        ]
    )


def _verdict(timings: list[FoodTiming]) -> str:
    """Whether the strategies agreed, and how much faster the counts table answered."""
    disagree = [t for t in timings if not t.agree]
    if disagree:
        details = "; ".join(f"{t.food}: {t.counts}" for t in disagree)
        return f"WARNING: the strategies disagree ({details}); run `kvstore verify` on the store."
    counts = sum(t.seconds["counts"] for t in timings)
    scan = sum(t.seconds["scan"] for t in timings)
    speedup = f" The counts table answered {scan / counts:,.0f}x faster than a scan." if counts > 0 else ""
    return f"All three strategies agree on every count.{speedup}"


@click.command("demo")
@click.option("--items", default=DEFAULT_ITEMS, show_default=True, type=click.IntRange(1, MAX_ITEMS),
              help="How many random keys to store.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int,
              help="Seed for the random keys and foods; the same seed builds the same store.")
@click.option("--path", default=DEFAULT_PATH, show_default=True, type=click.Path(dir_okay=False),
              help="The store to build (or reuse, when it already holds the demo): a file, or a "
              "postgresql:// URL (the store goes in its schema kvstore).")
@click.option("--rebuild", is_flag=True,
              help="Delete the store at --path (only if it is a kvstore file) and build it afresh.")
@click.option("--repeats", default=DEFAULT_REPEATS, show_default=True, type=click.IntRange(1, 1000),
              help="Runs per food and strategy; the table shows the median.")
def command(items: int, seed: int, path: str, rebuild: bool, repeats: int) -> None:
    """Build a store of random keys holding six foods and time count() on it.

    Each key holds one of apple, banana, carrot, celery, mirepoix and clementine, chosen
    uniformly at random. The table shows each food's count and how long each strategy
    took: counts (one lookup in the counts table), group_by (the value index) and scan
    (every row). A store that already holds the demo is reused, so a re-run is fast.

    \b
    Examples:
        kvstore demo
        kvstore demo --items 100000 --path small.db --rebuild
    """
    db, reused = open_store(path, items, rebuild)
    if path.startswith(POSTGRESQL_SCHEMES):
        path = db.path  # the URL without its password
    with db:
        if reused:
            click.echo(f"Reusing {path}: it already holds the demo's {items:,} items "
                       "(pass --rebuild to build it afresh).", err=True)
        else:
            click.echo(f"Building {path}: {items:,} random keys, each holding one of "
                       f"{len(FOODS)} foods (seed {seed})...", err=True)
            seconds = _build_with_bar(db, path, items, seed)
            click.echo(f"Loaded {items:,} items in {seconds:.2f} s "
                       f"({format_duration(seconds / items)} per item).", err=True)
        click.echo(render(measure(db, repeats), db.stats(), repeats))


def _build_with_bar(db: StoreAPI, path: str, items: int, seed: int) -> float:
    """build(), with a progress bar when stderr is a terminal."""
    if not sys.stderr.isatty():
        return build(db, items, seed)
    with click.progressbar(length=items, label=f"Loading {path}", file=sys.stderr) as bar:
        return build(db, items, seed, progress=bar.update)
