"""The README's examples are real: its ```pycon blocks run as doctests and its ```console
blocks run command by command, each output compared with what the README shows.

Both kinds run in one scratch directory per kind, in README order, so later examples may use
files that earlier ones made (as a reader following along would). ``...`` in an expected
output matches anything (doctest's ELLIPSIS), for timings and sizes that vary from run to run.
A block fenced as plain ```python (or indented) is a listing, not checked.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(kind: str) -> list[tuple[int, str]]:
    """(line number, body) of each fenced block of ``kind`` in the README."""
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(2)) for m in FENCE.finditer(text) if m.group(1) == kind]


def test_the_readme_has_checked_examples():
    assert blocks("pycon") and blocks("console")


def test_python_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser, globs = doctest.DocTestParser(), {}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for line, body in blocks("pycon"):
        test = parser.get_doctest(body, globs, f"README.md:{line}", str(README), line)
        runner.run(test, out=lambda text: pytest.fail(text, pytrace=False))
        globs = test.globs  # later blocks see what earlier ones defined
    assert runner.summarize(verbose=False).failed == 0


def commands(body: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a console block: ``$ `` starts a command."""
    pairs: list[tuple[str, str]] = []
    for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
        command, _, output = chunk.partition("\n")
        pairs.append((command, output))
    return pairs


def test_command_line_examples(tmp_path):
    checker = doctest.OutputChecker()
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    # `kvstore` resolves to this interpreter's entry point, whatever is on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for line, body in blocks("console"):
        for command, expected in commands(body):
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)
            got = done.stdout + done.stderr
            if not checker.check_output(expected, got, doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE):
                pytest.fail(f"README.md:{line}: `$ {command}` printed:\n{got}\nthe README shows:\n{expected}",
                            pytrace=False)
