"""``kvstore.stopwatch`` (decorator and context manager; stderr, file, logger, callback) and
``kvstore.units``, the formatter it shares with demo, bench, targets and stats."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kvstore import Stopwatch, stopwatch
from kvstore.units import format_duration, format_size

README = Path(__file__).resolve().parent.parent / "README.md"


def fake_clock(*readings_ns: int) -> Callable[[], int]:
    """A clock returning ``readings_ns`` in turn."""
    it: Iterator[int] = iter(readings_ns)
    return lambda: next(it)


# -- the decorator ---------------------------------------------------------------------------


def test_bare_decorator_prints_the_functions_name_and_time_to_stderr(capsys):
    @stopwatch
    def count(values: list[str], value: str) -> int:
        """Count value."""
        return values.count(value)

    assert count(["a", "b", "a"], "a") == 2
    assert count.__name__ == "count" and count.__doc__ == "Count value."
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(r"test_bare_decorator_.*<locals>\.count took \d+(\.\d+)? (ns|µs|ms)\n", err), err


def test_decorator_with_label_and_callback_reports_exact_seconds(capsys):
    seen: list[tuple[str, float]] = []

    @stopwatch("lookup", callback=lambda label, seconds: seen.append((label, seconds)), clock=fake_clock(1_000, 4_500))
    def lookup() -> str:
        return "found"

    assert lookup() == "found"
    assert seen == [("lookup", 3.5e-6)]
    assert capsys.readouterr().err == ""  # a callback replaces stderr


def test_each_call_is_timed_on_its_own_even_recursively():
    seen: list[float] = []
    watch = Stopwatch(callback=lambda _, seconds: seen.append(seconds), clock=fake_clock(0, 10, 30, 100))

    @watch
    def depth(n: int) -> int:
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(1) == 1
    assert seen == [20e-9, 100e-9]  # inner call 10..30, outer 0..100
    assert watch.seconds == 100e-9


def test_a_call_that_raises_is_reported_and_the_exception_propagates():
    stream = io.StringIO()
    seen: list[float] = []

    @stopwatch("parse", file=stream, callback=lambda _, s: seen.append(s), clock=fake_clock(0, 2_000_000))
    def parse() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        parse()
    assert stream.getvalue() == "parse raised ValueError after 2.00 ms\n"  # file given: printed too
    assert seen == [0.002]


def test_threads_each_get_their_own_timing():
    seen: list[float] = []
    lock = threading.Lock()

    def record(label: str, seconds: float) -> None:
        with lock:
            seen.append(seconds)

    @stopwatch(callback=record)
    def nap(seconds: float) -> None:
        time.sleep(seconds)

    threads = [threading.Thread(target=nap, args=(0.02 * (i + 1),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4
    assert all(s >= 0.02 * (i + 1) * 0.99 for i, s in enumerate(sorted(seen)))


def test_a_coroutine_function_is_timed_when_awaited():
    seen: list[float] = []

    @stopwatch(callback=lambda _, seconds: seen.append(seconds))
    async def fetch() -> int:
        await asyncio.sleep(0.02)
        return 7

    assert asyncio.run(fetch()) == 7
    assert len(seen) == 1 and seen[0] >= 0.019


# -- the context manager --------------------------------------------------------------------


def test_context_manager_prints_and_keeps_seconds(capsys):
    with stopwatch("load", clock=fake_clock(5, 1_500_000_005)) as watch:
        pass
    assert watch.seconds == 1.5
    assert capsys.readouterr().err == "load took 1.50 s\n"


def test_context_manager_reused_and_nested():
    seen: list[tuple[str, float]] = []
    watch = stopwatch("block", callback=lambda label, s: seen.append((label, s)), clock=fake_clock(0, 1, 5, 10, 20, 23))
    with watch, watch:
        pass
    with watch:
        pass
    assert seen == [("block", 4e-9), ("block", 10e-9), ("block", 3e-9)]


def test_context_manager_reports_an_exception_and_does_not_swallow_it():
    stream = io.StringIO()
    with pytest.raises(KeyError), stopwatch("get", file=stream, clock=fake_clock(0, 700)):
        raise KeyError("x")
    assert stream.getvalue() == "get raised KeyError after 700 ns\n"


def test_logger_gets_the_message_the_level_and_the_seconds(caplog, capsys):
    log = logging.getLogger("kvstore.test.stopwatch")
    with caplog.at_level(logging.DEBUG, logger=log.name), stopwatch(
        "count", logger=log, level=logging.DEBUG, clock=fake_clock(0, 3_410)
    ):
        pass
    (record,) = caplog.records
    assert record.getMessage() == "count took 3.41 µs"
    assert record.levelno == logging.DEBUG
    assert record.seconds == pytest.approx(3.41e-6)  # type: ignore[attr-defined]
    assert capsys.readouterr().err == ""  # a logger replaces stderr


def test_default_clock_is_monotonic_and_high_resolution():
    assert Stopwatch().clock is time.perf_counter_ns
    assert time.get_clock_info("perf_counter").monotonic
    with stopwatch(callback=lambda *_: None) as watch:
        pass
    assert watch.seconds is not None and 0 <= watch.seconds < 0.01


def test_misuse_is_refused():
    with pytest.raises(TypeError, match="label"):
        stopwatch(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="callback"):
        stopwatch("x", callback="print")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        Stopwatch("x")(3)  # type: ignore[arg-type]


@pytest.mark.slow
def test_readme_classic_exercise_runs_as_shown(tmp_path: Path):
    """The README's test_classic.py is real: extract it, run it with pytest, compare the output's shape."""
    text = README.read_text(encoding="utf-8")
    code = re.search(r"```python\n(# test_classic\.py.*?)```", text, re.DOTALL)
    shown = re.search(r"```\n(\$ python -m pytest -q -s test_classic\.py\n.*?)```", text, re.DOTALL)
    assert code and shown, "README lost its classic-exercise example"
    (tmp_path / "test_classic.py").write_text(code.group(1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_classic.py"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout and "2 passed" in shown.group(1)

    def reports(output: str) -> list[str]:
        """The stopwatch's lines, durations blanked (pytest's dots may share their line)."""
        return sorted(re.sub(r"\d+(\.\d+)? (ns|µs|ms|s)$", "T", line.lstrip("."))
                      for line in output.splitlines() if " took " in line)

    assert reports(done.stderr) == reports(shown.group(1)), (done.stdout, done.stderr)


# -- kvstore.units ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (37.24e-9, "37.2 ns"),
        (2.14e-6, "2.14 µs"),
        (3.4e-6, "3.40 µs"),
        (999e-6, "999 µs"),
        (999.6e-6, "1.00 ms"),  # rounding up moves to the next unit, never "1e+03 µs"
        (5.26e-3, "5.26 ms"),
        (0.9994, "999 ms"),
        (0.99996, "1.00 s"),
        (1.5, "1.50 s"),
        (44.9, "44.9 s"),
        (1234.5, "1,234 s"),
        (-2e-3, "-2.00 ms"),
        (float("nan"), "-"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (4096, "4.00 KiB"),
        (1_023_487, "999 KiB"),
        (1_023_999, "0.977 MiB"),  # 1000 KiB would need four digits
        (23_826_432, "22.7 MiB"),
        (3 << 30, "3.00 GiB"),
        (5 << 40, "5.00 TiB"),
    ],
)
def test_format_size(size, text):
    assert format_size(size) == text


def test_units_are_iec_and_nothing_says_kb():
    assert all(not format_size(1 << e).endswith(("kB", "KB", "MB", "GB")) for e in range(50))
