"""Smoke tests of ``kvstore bench --quick``: it runs, and its outputs have the promised shape;
the peers' protocol, checked for each peer installed here; the checks made before a run.

No timing is asserted: the machine is shared and noisy; the bench reports, it does not judge.
Optional peers (diskcache, sqlitedict, lmdb, rocksdict) and matplotlib may be missing: their
tests skip, and the report says why a peer was skipped.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

import kvstore
from kvstore import bench
from kvstore.bench import space as large_values
from kvstore.bench.peers import Peer

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def quick_json(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path | None, str]:
    """One quick run with --json (and --plot when matplotlib is here), shared by the tests that inspect its report."""
    folder = tmp_path_factory.mktemp("bench")
    png = folder / "bench.png" if HAS_MATPLOTLIB else None
    plot = ["--plot", str(png)] if png else []
    result = CliRunner().invoke(bench.command, ["--quick", "--json", *plot, "--dir", str(folder / "scratch")])
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


def test_json_has_the_installed_peers_and_says_why_others_are_missing(quick_json):
    report, _, _ = quick_json
    peers = {p["peer"] for p in report["peers"]}
    assert peers == set(bench.available_peers())
    assert "dict+Counter" in peers
    assert {s["peer"] for s in report["skipped_peers"]} == set(bench.PEERS) - peers
    for p in report["peers"]:
        assert p["get"]["p50_ns"] > 0 and p["set"]["p50_ns"] > 0 and p["scan"]["p50_ns"] > 0
        assert p["n"] == min(p["for_n"], bench.PEERS[p["peer"]].cap or p["for_n"])
        assert p["survives"] in ("-", "crash", "power loss")
        assert (p["count"] is not None) == bench.PEERS[p["peer"]].indexed_count
    if peers & {"diskcache", "sqlitedict"}:
        assert any("at most" in note for note in report["notes"])  # the peers' cap is stated


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed (the bench extra)")
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
    assert "KiB" in out and " kB" not in out  # IEC units, from kvstore.units
    assert "Peers" not in out  # --no-peers
    assert list(tmp_path.iterdir()) == []  # scratch files removed


def test_progress_is_called_once_per_planned_step_in_order(tmp_path: Path):
    """Issue 6: the bar's length is the number of progress() calls, so it ends at N/N, not past it."""
    seen: list[str] = []
    peers = bench.available_peers(["dict+Counter"])
    bench.run([300, 400], folder=str(tmp_path), budget_s=0.002, repeat=1, peers=peers, progress=seen.append)
    assert seen == bench.plan([300, 400], peers, merge=True)
    assert bench.plan_steps([300, 400], peers, merge=True) == len(seen) == 2 * 10
    seen.clear()
    bench.run([300], folder=str(tmp_path), budget_s=0.002, repeat=1, peers=[], merge=False, progress=seen.append)
    assert seen == bench.plan([300], [], merge=False) and len(seen) == 8


def test_large_values_report_file_over_data_for_both_load_paths(tmp_path: Path, monkeypatch):
    """--large-values: one row per value size, repeated/distinct and update()/set(), in the
    table and the JSON, each step on the progress bar (sizes made small here)."""
    monkeypatch.setattr(large_values, "SIZES", (1000, 5000))
    seen: list[str] = []
    report = bench.run([300], folder=str(tmp_path), budget_s=0.002, repeat=1, peers=[], merge=False,
                       large_values=0.2, progress=seen.append)
    assert seen == bench.plan([300], [], merge=False, large_values=0.2) and seen[-2:] == ["space 1,000 B", "space 5,000 B"]
    rows = report["large_values"]
    assert [(r["value_bytes"], r["values"], r["load"]) for r in rows] == [
        (size, kind, how) for size in (1000, 5000) for kind in ("repeated", "distinct") for how in ("update", "set")]
    for r in rows:
        assert r["logical_bytes"] == r["items"] * (8 + r["value_bytes"]) and r["items"] >= 12
        assert r["ratio"] == r["file_bytes"] / r["logical_bytes"] > 1 and r["met"] == (r["ratio"] <= r["goal"])
    assert "Large values: file" in bench.render_table(report)
    result = CliRunner().invoke(bench.command, ["--quick", "--no-peers", "--no-merge", "--large-values", "0.2", "--json",
                                                "--dir", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["large_values"]) == 8


def test_a_missing_peer_is_skipped_with_its_reason(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb now raises ImportError
    assert "lmdb" not in bench.available_peers()
    report = bench.run([300], folder=str(tmp_path), budget_s=0.002, repeat=1, peers=["dict+Counter", "lmdb"], merge=False)
    assert [p["peer"] for p in report["peers"]] == ["dict+Counter"]
    (skipped,) = report["skipped_peers"]
    assert skipped["peer"] == "lmdb"
    assert "not installed" in skipped["reason"] and "pip install 'kvstore[bench]'" in skipped["reason"]
    assert f"- peer lmdb skipped: {skipped['reason']}" in bench.render_table(report)
    with pytest.raises(ValueError, match="unknown peer 'nosuch'"):
        bench.run([300], peers=["nosuch"])


def test_plot_without_matplotlib_fails_before_the_run(tmp_path: Path, monkeypatch):
    """Issue 5: the check comes first; the message names the extra; no traceback."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("the benchmark ran"))
    result = CliRunner().invoke(bench.command, ["--quick", "--plot", str(tmp_path / "x.png"), "--dir", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --plot needs matplotlib, which is not installed")
    assert "pip install 'kvstore[bench]'" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_plot_into_a_missing_folder_fails_before_the_run(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("the benchmark ran"))
    target = tmp_path / "nowhere" / "x.png"
    result = CliRunner().invoke(bench.command, ["--quick", "--plot", str(target)])
    assert result.exit_code == 1
    assert "no folder" in result.stderr or "needs matplotlib" in result.stderr


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

    heavy = ("matplotlib", "tabulate", "diskcache", "sqlitedict", "lmdb", "rocksdict", "sqlalchemy")
    code = f"import sys, kvstore.bench; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the peers' protocol: one generic suite, one small subclass per store (as dogpile.cache) ----


class PeerContract:
    """What every store the benchmark drives must do; subclasses name the class."""

    peer: ClassVar[type[Peer]]

    @pytest.fixture
    def store(self, tmp_path: Path):
        reason = bench.peer_status([self.peer.name])[self.peer.name] if self.peer.name in bench.PEERS else None
        if reason:
            pytest.skip(reason)
        store = self.peer(self.prepare(tmp_path))
        yield store
        store.close()

    def prepare(self, tmp_path: Path) -> str:
        return str(tmp_path / "store")

    def test_describes_itself(self):
        assert self.peer.name and self.peer.count_method
        assert self.peer.survives in ("-", "crash", "power loss")
        assert self.peer.cap is None or self.peer.cap >= 10_000

    def test_loads_then_runs_every_operation_on_batches(self, store: Any):
        store.load(list(bench.pairs(0, 300)))
        work = bench.Workload(300, seed=1)
        assert store.get(work.keys(20)) is None
        assert store.put(work.writes(20)) is None
        assert store.scan(work.values(3)) is None
        if self.peer.indexed_count:
            assert store.count(work.values(20)) is None
        else:
            with pytest.raises(NotImplementedError):
                store.count(["apple"])
        size = store.file_bytes()
        assert size is None or size > 0


class OptionalPeerContract(PeerContract):
    """A peer of the registry: measure_peer() reports its figures."""

    def test_measure_peer_reports_every_figure(self, tmp_path: Path):
        if reason := bench.peer_status([self.peer.name])[self.peer.name]:
            pytest.skip(reason)
        result = bench.measure_peer(self.peer, 200, str(tmp_path), budget_s=0.002)
        assert result["peer"] == self.peer.name and result["n"] == 200
        for figure in ("get", "set", "scan"):
            assert result[figure]["p50_ns"] > 0
        assert result["load"]["pairs_per_s"] > 0


class TestDictCounter(OptionalPeerContract):
    peer = bench.PEERS["dict+Counter"]


class TestDiskcache(OptionalPeerContract):
    peer = bench.PEERS["diskcache"]


class TestSqlitedict(OptionalPeerContract):
    peer = bench.PEERS["sqlitedict"]


class TestLmdb(OptionalPeerContract):
    peer = bench.PEERS["lmdb"]


class TestRocksdict(OptionalPeerContract):
    peer = bench.PEERS["rocksdict"]


class TestKvstoreSide(PeerContract):
    peer = bench.Kvstore

    def prepare(self, tmp_path: Path) -> str:
        return str(tmp_path / "kv.db")


class TestRawSqliteSide(PeerContract):
    peer = bench.RawSqlite

    def prepare(self, tmp_path: Path) -> str:
        path = str(tmp_path / "raw.db")
        kvstore.open(path).close()
        bench.drop_triggers(path)
        return path
