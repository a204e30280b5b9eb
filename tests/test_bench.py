"""Smoke tests of ``kvstore bench --quick``: it runs, and its outputs have the promised shape.

No timing is asserted: the machine is shared and noisy; the bench reports, it does not judge.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kvstore import bench


@pytest.fixture(scope="module")
def quick_json(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    """One quick run with --json and --plot, shared by the tests that inspect its report."""
    folder = tmp_path_factory.mktemp("bench")
    png = folder / "bench.png"
    result = CliRunner().invoke(
        bench.command, ["--quick", "--json", "--plot", str(png), "--dir", str(folder / "scratch")]
    )
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return json.loads(result.stdout), png, result.stderr


def test_json_has_every_operation_with_its_raw_reference_and_ratio(quick_json):
    report, _, _ = quick_json
    assert report["sizes"] == list(bench.QUICK_SIZES)
    operations = {
        "count counts", "count group_by", "count scan", "get(key)", "db[key]", "set(key, value)",
        "update: load", "update: merge",
    }  # fmt: skip
    for n in bench.QUICK_SIZES:
        rows = {r["operation"]: r for r in report["results"] if r["n"] == n}
        assert set(rows) == operations
        for row in rows.values():
            for side in ("kvstore", "sqlite3"):
                assert row[side]["p50_ns"] > 0
                assert row[side]["p99_ns"] >= row[side]["p50_ns"]
            assert row["ratio"] == pytest.approx(row["kvstore"]["p50_ns"] / row["sqlite3"]["p50_ns"])
            assert row["met"] is None  # targets are judged at 1M items only
    assert rows["count counts"]["target"] == 1.5
    assert rows["update: load"]["sqlite3"]["pairs_per_s"] > 0


def test_json_reports_space_and_exact_counts(quick_json):
    report, _, _ = quick_json
    assert [s["n"] for s in report["space"]] == list(bench.QUICK_SIZES)
    for space in report["space"]:
        assert space["counts_exact"] is True
        assert space["rows"] >= space["n"]  # set() added keys
        assert space["distinct_values"] == len(bench.FOODS)
        assert 0 < space["counts_bytes"] < space["value_index_bytes"]
        assert space["items_bytes"] > 0
        assert space["file_bytes"] >= space["items_bytes"] + space["value_index_bytes"]


def test_json_has_the_installed_peers(quick_json):
    report, _, _ = quick_json
    peers = {p["peer"] for p in report["peers"]}
    assert peers == set(bench.available_peers())
    assert "dict+Counter" in peers
    for p in report["peers"]:
        assert p["get"]["p50_ns"] > 0 and p["set"]["p50_ns"] > 0 and p["scan"]["p50_ns"] > 0
    assert any("at most" in note for note in report["notes"])  # the peers' cap is stated


def test_plot_is_a_png(quick_json):
    report, png, _ = quick_json
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["plot"] == str(png)


def test_progress_goes_to_stderr_not_stdout(quick_json):
    _, _, stderr = quick_json
    assert "kvstore bench" in stderr


def test_table_output(tmp_path: Path):
    result = CliRunner().invoke(bench.command, ["--quick", "--no-peers", "--no-merge", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "kvstore p50" in out and "sqlite3 p50" in out and "ratio" in out
    assert "count counts" in out and "set(key, value)" in out and "load N new pairs" in out
    assert "half overwrites" not in out  # --no-merge
    assert "Space on disk" in out
    assert "Peers" not in out  # --no-peers
    assert list(tmp_path.iterdir()) == []  # scratch files removed


def test_sizes_are_parsed():
    assert bench.parse_sizes("10k,100k,1M") == [10_000, 100_000, 1_000_000]
    assert bench.parse_sizes("2500, 1.5k") == [2_500, 1_500]
    result = CliRunner().invoke(bench.command, ["--sizes", "lots"])
    assert result.exit_code == 2
    assert "not a size" in result.output


def test_pairs_are_distinct_and_reproducible():
    first = list(bench.pairs(0, 5_000))
    assert first == list(bench.pairs(0, 5_000))
    assert len({k for k, _ in first}) == 5_000
    assert {v for _, v in first} == set(bench.FOODS)
    merged = bench.merge_pairs(1_000)
    old = {k for k, _ in bench.pairs(0, 1_000)}
    assert len(merged) == 1_000
    assert sum(k in old for k, _ in merged) == 500
    assert len({k for k, _ in merged}) == 1_000


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, kvstore.bench; print(sorted(m for m in ('matplotlib', 'tabulate', 'diskcache', 'sqlitedict', 'sqlalchemy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
