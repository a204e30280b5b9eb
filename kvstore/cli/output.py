"""Printing listings (table, JSON, JSON lines, CSV, TSV) and the mutually exclusive format flags.

Tables come from tabulate (imported when a table is printed); the other forms are
:func:`kvstore.formats.write_records`, written as UTF-8 whatever the locale.
"""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import click

from kvstore.cli.options import display

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = {"csv": "csv", "tsv": "tsv", "nl": "jsonl", "json": "json"}
"""Command-line flags and the kvstore.formats.Format they name."""


def format_options(flags: dict[str, str], default: str | None) -> Callable[[F], F]:
    """``--flag`` options choosing one format; passes ``fmt`` (the flag's name, or ``default``).

    Two different flags (``--json --csv``) are a usage error (exit 2) rather than "last wins".
    """

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            chosen = [flag for flag in flags if kwargs.pop(f"fmt_{flag}")]
            if len(chosen) > 1:
                raise click.UsageError(f"{' and '.join('--' + flag for flag in chosen)} cannot be used "
                                       "together; choose one format", ctx=click.get_current_context())
            return f(*args, fmt=chosen[0] if chosen else default, **kwargs)

        command = wrapper
        for flag, help_text in reversed(flags.items()):
            command = click.option(f"--{flag}", f"fmt_{flag}", is_flag=True, help=help_text)(command)
        return command  # type: ignore[return-value]

    return decorate


def output_options(typed: bool = True) -> Callable[[F], F]:
    """--table (default), --json, --csv, --tsv, --nl: how a listing is printed."""
    types = "; kvstore keys and values get a <column>_type column" if typed else ""
    return format_options({
        "table": "A readable table (the default).",
        "json": "One JSON array of objects.",
        "csv": f"CSV with a header{types}.",
        "tsv": f"Tab-separated, with a header{types}.",
        "nl": "One JSON object per line.",
    }, default="table")


def emit(records: Iterable[dict[str, Any]], columns: list[str], fmt: str, typed: tuple[str, ...] = ()) -> None:
    """Print records as a table or in one of FORMATS.

    ``typed`` names the columns holding kvstore keys or values: tables show them with
    display(), JSON tags their bytes, CSV/TSV add a ``<column>_type`` column for each.
    """
    if fmt == "table":
        from tabulate import tabulate

        rows = [[display(r[c]) if c in typed else r[c] for c in columns] for r in records]
        click.echo(tabulate(rows, headers=columns, disable_numparse=True,
                            colalign=["right" if _numeric(rows, i) else "left" for i in range(len(columns))]))
        return
    from kvstore.formats import write_records

    with stdout_text() as out:
        write_records(out, records, columns, FORMATS[fmt], typed)


def _numeric(rows: list[list[Any]], column: int) -> bool:
    cells = [row[column] for row in rows if row[column] is not None]
    return bool(cells) and all(type(cell) is int for cell in cells)


@contextmanager
def stdout_text() -> Iterator[IO[str]]:
    """UTF-8 text on stdout whatever the locale, with no newline translation (exact dumps)."""
    sys.stdout.flush()
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
    try:
        yield out
    finally:
        try:
            out.flush()
        finally:
            out.detach()
