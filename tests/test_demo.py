"""``kvstore demo``: the six-foods scenario, its table, reuse/rebuild rules, and the classic
1,000,000-item pair (count within range, one count under 10 ms)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import kvstore
from kvstore import demo
from kvstore.cli import cli
from kvstore import stopwatch

SMALL = 20_000
DURATION = r"\d+(\.\d+)? (ns|µs|ms|s)"  # kvstore.units.format_duration: three significant digits


def run_demo(*args: str) -> Result:
    return CliRunner().invoke(cli, ["demo", *args], prog_name="kvstore")


def table_rows(output: str) -> dict[str, list[str]]:
    """The counting table's rows by food (and total): [count, counts, group_by, scan]."""
    rows = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] in (*demo.FOODS, "total"):
            rows[cells[0]] = cells[1:]
    return rows


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_demo_command_builds_the_store_and_prints_the_table(tmp_path):
    path = str(tmp_path / "foods.db")
    result = run_demo("--items", str(SMALL), "--path", path, "--repeats", "2")
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr.splitlines() == [
        f"Building {path}: 20,000 random keys, each holding one of 6 foods (seed 42)...",
        result.stderr.splitlines()[1],
    ]
    assert re.fullmatch(rf"Loaded 20,000 items in {DURATION} \({DURATION} per item\)\.", result.stderr.splitlines()[1])

    out = result.stdout
    assert out.startswith("count(food) by strategy, median of 2 runs each:\n\nfood ")
    rows = table_rows(out)
    assert list(rows) == [*demo.FOODS, "total"]
    counts = {food: number(rows[food][0]) for food in demo.FOODS}
    assert sum(counts.values()) == number(rows["total"][0]) == SMALL
    assert all(SMALL / 6 * 0.9 < n < SMALL / 6 * 1.1 for n in counts.values())
    for food in demo.FOODS:
        assert all(re.fullmatch(DURATION, cell) for cell in rows[food][1:]), rows[food]
    assert "All three strategies agree on every count." in out
    for part in ("items", "value index", "counts", "whole file"):
        assert re.search(rf"^{part} +[\d,]* +[\d,]+ +\d+(\.\d+)? (KiB|MiB)$", out, re.MULTILINE), part

    with kvstore.open(path) as db:
        assert len(db) == SMALL
        assert db.counts() == counts
        for food in demo.FOODS:
            assert db.count(food, "group_by") == db.count(food, "scan") == counts[food]
        assert db.verify() == []


def test_a_second_run_reuses_the_store(tmp_path):
    path = str(tmp_path / "foods.db")
    first = run_demo("--items", "3000", "--path", path, "--repeats", "1")
    mtime = os.stat(path).st_mtime_ns
    second = run_demo("--items", "3000", "--path", path, "--repeats", "1")
    assert second.exit_code == 0
    assert second.stderr == (
        f"Reusing {path}: it already holds the demo's 3,000 items (pass --rebuild to build it afresh).\n"
    )
    assert [r[0] for r in table_rows(second.stdout).values()] == [r[0] for r in table_rows(first.stdout).values()]
    assert os.stat(path).st_mtime_ns == mtime


def test_another_store_is_refused_unless_rebuild(tmp_path):
    path = str(tmp_path / "foods.db")
    with kvstore.open(path) as db:
        db["mine"] = "precious"
    result = run_demo("--items", "3000", "--path", path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: {path} already holds 1 item, not the demo's 3,000 foods; pass --rebuild to delete "
        "and rebuild it, or choose another --path\n"
    )
    with kvstore.open(path) as db:
        assert dict(db.items()) == {"mine": "precious"}

    result = run_demo("--items", "3000", "--path", path, "--rebuild", "--repeats", "1")
    assert result.exit_code == 0, result.output
    with kvstore.open(path) as db:
        assert len(db) == 3000
        assert "mine" not in db


def test_a_different_item_count_is_refused(tmp_path):
    path = str(tmp_path / "foods.db")
    run_demo("--items", "3000", "--path", path, "--repeats", "1")
    result = run_demo("--items", "4000", "--path", path)
    assert result.exit_code == 1
    assert "already holds 3,000 items, not the demo's 4,000 foods" in result.stderr


def test_an_empty_store_is_filled_without_rebuild(tmp_path):
    path = str(tmp_path / "foods.db")
    kvstore.open(path).close()
    assert run_demo("--items", "3000", "--path", path, "--repeats", "1").exit_code == 0
    with kvstore.open(path) as db:
        assert len(db) == 3000


def test_a_file_that_is_not_a_store_is_never_deleted(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    result = run_demo("--items", "3000", "--path", str(notes), "--rebuild")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {notes}: not a kvstore file")
    assert notes.read_text() == "keep me"


def test_food_pairs_are_seeded_distinct_and_fit_in_64_bits():
    pairs = list(demo.food_pairs(5000, seed=1))
    assert pairs == list(demo.food_pairs(5000, seed=1))
    assert pairs != list(demo.food_pairs(5000, seed=2))
    keys = [k for k, _ in pairs]
    assert len(set(keys)) == 5000
    assert {food for _, food in pairs} == set(demo.FOODS)
    assert all(type(k) is int and 0 < k < 2**63 for k in keys)
    huge = demo.food_pairs(demo.MAX_ITEMS, seed=3)
    assert all(0 < k < 2**63 for k, _ in (next(huge) for _ in range(1000)))


def test_build_reports_progress_and_measure_agrees(path):
    seen = []
    with kvstore.open(path) as db:
        seconds = demo.build(db, 25_001, seed=5, progress=seen.append)
        assert seconds > 0
        assert sum(seen) == 25_001
        timings = demo.measure(db, repeats=1)
    assert [t.food for t in timings] == list(demo.FOODS)
    assert all(t.agree for t in timings)
    assert sum(t.count for t in timings) == 25_001


def test_render_flags_disagreement():
    timing = demo.FoodTiming("apple", {"counts": 2, "group_by": 3, "scan": 3}, dict.fromkeys(demo.STRATEGIES, 1e-6))
    stats = {part: {"rows": 3, "bytes": 4096} for part in ("items", "value_index", "counts", "file")}
    text = demo.render([timing], stats, repeats=1)
    assert "WARNING: the strategies disagree (apple: {'counts': 2, 'group_by': 3, 'scan': 3})" in text


def test_measure_times_each_count_with_the_stopwatch(path, monkeypatch):
    """measure() takes its times from kvstore.stopwatch (a callback per food and strategy)."""
    made: list[str] = []
    real = demo.stopwatch

    def spy(label=None, **options):
        made.append(label)
        return real(label, **options)

    monkeypatch.setattr(demo, "stopwatch", spy)
    with kvstore.open(path) as db:
        demo.build(db, 600, seed=1)
        timings = demo.measure(db, repeats=3)
    assert made[0] == "load"
    assert made[1:] == [f"count({f!r}, {s!r})" for f in demo.FOODS for s in demo.STRATEGIES]
    assert all(t.seconds[s] > 0 for t in timings for s in demo.STRATEGIES)


@pytest.mark.slow
def test_classic_million_items_count_is_instant(tmp_path: Path):
    """The issue's requirement, at its exact size: 1,000,000 items built the demo way."""
    with kvstore.open(tmp_path / "foods.db") as db:
        demo.build(db, 1_000_000)
        assert len(db) == 1_000_000
        clementines = db.count("clementine")
        assert 160_000 <= clementines <= 170_000
        runs: list[float] = []
        watch = stopwatch("count('clementine')", callback=lambda _, seconds: runs.append(seconds))
        for _ in range(7):
            with watch:
                assert db.count("clementine") == clementines
        assert min(runs) < 0.010, runs
