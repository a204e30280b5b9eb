"""The report's outputs: tables (tabulate), the plot (matplotlib), and their units.

Durations and sizes go through :mod:`kvstore.units` (IEC sizes: KiB, MiB). tabulate and
matplotlib are imported only when a table or plot is made.
"""

from __future__ import annotations

import importlib
import math
import os
import statistics
from typing import Any

from kvstore.bench.measure import TARGET_N
from kvstore.units import format_duration, format_size

Report = dict[str, Any]


def fmt_time(ns: float | None) -> str:
    """A duration in nanoseconds, three significant digits (``-`` when missing)."""
    if ns is None or math.isnan(ns):
        return "-"
    return format_duration(ns / 1e9)


def fmt_bytes(n: int | None) -> str:
    """A byte count in IEC units (``-`` when missing)."""
    return "-" if n is None else format_size(n)


def _verdict(row: dict[str, Any]) -> str:
    if row["target"] is None:
        return ""
    if row["met"] is None:
        return f"(≤{row['target']}× at {TARGET_N:,})"
    return f"≤{row['target']}× {'ok' if row['met'] else 'MISSED'}"


def render_table(report: Report) -> str:
    """The report as readable tables (tabulate), one section per kind of measurement."""
    sections = [
        _section("Latency per operation: kvstore beside raw sqlite3 on the same file",
                 ["N", "operation", "kvstore p50", "p99", "sqlite3 p50", "p99", "ratio", "target"],
                 _latency_rows(report)),
        _section("Bulk update(): kvstore (counts kept exact) beside raw executemany without triggers",
                 ["N", "update()", "kvstore", "pairs/s", "sqlite3", "pairs/s", "ratio", "target"],
                 _bulk_rows(report)),
        _section("Space on disk (dbstat)",
                 ["N", "items", "value index", "counts", "file", "file/item", "counts exact"],
                 _space_rows(report)),
    ]  # fmt: skip
    if report.get("large_values"):
        sections.append(
            _section("Large values: file (closed, WAL checkpointed) ÷ data (keys' and values' bytes)",
                     ["value size", "items", "values", "loaded by", "file", "data", "file ÷ data", "goal"],
                     _large_value_rows(report))
        )  # fmt: skip
    if report["peers"]:
        sections.append(
            _section("Peers (p50 per operation; load is per pair; count by scan is O(N))",
                     ["N", "store", "items held", "load", "get", "set", "count (index)", "count (scan)", "set survives"],
                     _peer_rows(report))
        )  # fmt: skip
    notes = "\n".join(f"- {note}" for note in report["notes"])
    return "\n\n".join([*sections, notes])


def _section(title: str, headers: list[str], rows: list[list[str]]) -> str:
    from tabulate import tabulate

    return title + "\n" + str(tabulate(rows, headers=headers, disable_numparse=True))


def _latency_rows(report: Report) -> list[list[str]]:
    return [
        [
            f"{r['n']:,}",
            r["operation"],
            fmt_time(r["kvstore"]["p50_ns"]),
            fmt_time(r["kvstore"]["p99_ns"]),
            fmt_time(r["sqlite3"]["p50_ns"]),
            fmt_time(r["sqlite3"]["p99_ns"]),
            f"{r['ratio']:.2f}×",
            _verdict(r),
        ]
        for r in report["results"]
        if r["kind"] == "latency"
    ]


def _bulk_rows(report: Report) -> list[list[str]]:
    return [
        [
            f"{r['n']:,}",
            "load N new pairs" if r["operation"] == "update: load" else "N more, half overwrites",
            format_duration(statistics.median(r["kvstore"]["seconds"])),
            f"{r['kvstore']['pairs_per_s']:,.0f}/s",
            format_duration(statistics.median(r["sqlite3"]["seconds"])),
            f"{r['sqlite3']['pairs_per_s']:,.0f}/s",
            f"{r['ratio']:.2f}×",
            _verdict(r),
        ]
        for r in report["results"]
        if r["kind"] == "bulk"
    ]


def _space_rows(report: Report) -> list[list[str]]:
    return [
        [
            f"{s['n']:,}",
            fmt_bytes(s["items_bytes"]),
            fmt_bytes(s["value_index_bytes"]),
            fmt_bytes(s["counts_bytes"]),
            fmt_bytes(s["file_bytes"]),
            f"{s['file_bytes'] / max(1, s['rows']):.0f} B",
            "yes" if s["counts_exact"] else "NO",
        ]
        for s in report["space"]
    ]


def _large_value_rows(report: Report) -> list[list[str]]:
    return [
        [
            format_size(r["value_bytes"]),
            f"{r['items']:,}",
            r["values"],
            f"{r['load']}()",
            format_size(r["file_bytes"]),
            format_size(r["logical_bytes"]),
            f"{r['ratio']:.2f}×",
            f"≤{r['goal']}× {'ok' if r['met'] else 'MISSED'}",
        ]
        for r in report["large_values"]
    ]


_OWN_OPS = ("update: load", "get(key)", "set(key, value)", "count counts", "count scan")


def _peer_rows(report: Report) -> list[list[str]]:
    """kvstore's and raw sqlite3's own figures (from the comparison), then each peer's, per size."""
    own = {(r["n"], r["operation"]): r for r in report["results"]}
    rows = []
    for n in report["sizes"]:
        if all((n, op) in own for op in _OWN_OPS):
            for side, survives in (("kvstore", "crash"), ("sqlite3", "crash")):
                rows.append(
                    ["" if side == "sqlite3" else f"{n:,}", side if side == "kvstore" else "raw sqlite3", f"{n:,}",
                     *(fmt_time(own[n, op][side]["p50_ns"]) for op in _OWN_OPS), survives]
                )  # fmt: skip
        for p in report["peers"]:
            if p["for_n"] != n:
                continue
            rows.append(
                [
                    "",
                    p["peer"],
                    f"{p['n']:,}" + (" (capped)" if p["n"] < n else ""),
                    fmt_time(p["load"]["p50_ns"]),
                    fmt_time(p["get"]["p50_ns"]),
                    fmt_time(p["set"]["p50_ns"]),
                    fmt_time(p["count"]["p50_ns"]) if p["count"] else "-",
                    fmt_time(p["scan"]["p50_ns"]),
                    p.get("survives", ""),
                ]
            )
    return rows


# -- the plot --------------------------------------------------------------------------------


def plot_problem(path: str) -> str | None:
    """Why ``plot(report, path)`` would fail here (None if it would not): checked before a
    benchmark starts, so that a missing matplotlib or folder does not waste the run."""
    try:
        for module in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
            importlib.import_module(module)
    except ImportError as exc:
        return f"--plot needs matplotlib, which is not installed ({exc}); install it with: pip install 'kvstore[bench]'"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"--plot {path}: no folder {folder}"
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return f"--plot {path}: not writable"
    return None


def _count_series(report: Report) -> dict[str, list[tuple[int, float]]]:
    """Count latency (ns) per N: kvstore per strategy, raw sqlite3's counts lookup, the peers."""
    series: dict[str, list[tuple[int, float]]] = {}
    for r in report["results"]:
        if r["operation"].startswith("count "):
            strategy = r["operation"].split(" ", 1)[1]
            series.setdefault(f"kvstore count ({strategy})", []).append((r["n"], r["kvstore"]["p50_ns"]))
            if strategy == "counts":
                series.setdefault("raw sqlite3 counts lookup", []).append((r["n"], r["sqlite3"]["p50_ns"]))
    for p in _distinct_peers(report):
        if p["count"]:
            series.setdefault(f"{p['peer']} (Counter)", []).append((p["n"], p["count"]["p50_ns"]))
        series.setdefault(f"{p['peer']} (scan)", []).append((p["n"], p["scan"]["p50_ns"]))
    return series


def _load_series(report: Report) -> dict[str, list[tuple[int, float]]]:
    """Bulk-load cost per pair (ns) per N: kvstore's update() and raw executemany into an empty
    store (the "update: load" rows), and each peer's load (at the size it was loaded with)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for r in report["results"]:
        if r["operation"] == "update: load":
            series.setdefault("kvstore update()", []).append((r["n"], r["kvstore"]["p50_ns"]))
            series.setdefault("raw sqlite3 executemany (no counts kept)", []).append((r["n"], r["sqlite3"]["p50_ns"]))
    for p in _distinct_peers(report):
        series.setdefault(f"{p['peer']} load", []).append((p["n"], p["load"]["p50_ns"]))
    return series


def _distinct_peers(report: Report) -> list[dict[str, Any]]:
    """Each peer measurement once (a capped peer is reported again for larger N)."""
    seen: set[tuple[str, int]] = set()
    found = []
    for p in report["peers"]:
        if (p["peer"], p["n"]) not in seen:
            seen.add((p["peer"], p["n"]))
            found.append(p)
    return found


def _draw(axes: Any, series: dict[str, list[tuple[int, float]]], ylabel: str, title: str) -> None:
    """Log-log lines of ``series`` (ns, shown in µs); kvstore's solid, the others dashed."""
    for label, points in series.items():
        points.sort()
        style = "-o" if label.startswith("kvstore") else "--."
        axes.plot([x for x, _ in points], [y / 1e3 for _, y in points], style, label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("N (items)")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize="medium")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")


def plot(report: Report, path: str) -> None:
    """Three panels against N: count latency per strategy and peer (log-log), bulk-load cost per
    pair (kvstore's update(), raw sqlite3, the peers: flat means linear growth), bytes per structure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(17, 5), layout="constrained")
    FigureCanvasAgg(fig)
    left, middle, right = fig.subplots(1, 3)
    _draw(left, _count_series(report), "count(value) latency, p50 (µs)", "count(value): constant time vs linear time")
    _draw(middle, _load_series(report), "load cost per pair (µs)",
          "bulk load into an empty store: cost per pair (flat = linear)")
    space = report["space"]
    width = 0.27
    for i, (key, name) in enumerate(
        (("items_bytes", "items"), ("value_index_bytes", "value index"), ("counts_bytes", "counts"))
    ):
        xs = [j + (i - 1) * width for j in range(len(space))]
        right.bar(xs, [max(1, s[key]) for s in space], width, label=name)
    right.set_xticks(range(len(space)), [f"{s['n']:,}" for s in space])
    right.set_yscale("log", base=2)
    ticks = [1 << e for e in range(0, 41, 4)]
    right.set_yticks(ticks, [format_size(t) for t in ticks])
    lo = min((max(1, s[k]) for s in space for k in ("items_bytes", "value_index_bytes", "counts_bytes")), default=1)
    hi = max((s[k] for s in space for k in ("items_bytes", "value_index_bytes", "counts_bytes")), default=2)
    right.set_ylim(max(1, lo // 2), hi * 2)
    right.set_xlabel("N (items)")
    right.set_ylabel("bytes on disk (dbstat)")
    right.set_title("space per structure")
    right.grid(True, axis="y", which="both", alpha=0.3)
    right.legend(fontsize="small")
    fig.suptitle(
        f"kvstore {report['kvstore_version']} · SQLite {report['sqlite_version']} · Python {report['python']}"
    )
    fig.savefig(path, dpi=110)
