"""Whole stores and files: ``load``, ``dump``, ``backup``, ``vacuum``.

File formats are :mod:`kvstore.formats` (imported when these commands run); this module only
picks the format, shows progress and says what happened.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

import click

from kvstore.cli.options import (
    KEY_TYPES, VALUE_TYPES, Command, db_argument, exists, is_url, open_store, phrase, plural, remove, require,
)
from kvstore.cli.output import FORMATS, format_options, stdout_text
from kvstore.api import StoreAPI

REDRAW_EVERY = 0.2
"""Seconds between two redraws of the pairs-loaded line on a terminal."""


class InputFile(click.File):
    """A FILE argument for reading; ``-`` is stdin, refused with a usage error when closed."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except RuntimeError:  # click: "Was not able to determine binary stream for sys.stdin"
            self.fail("stdin is closed, so there is nothing to read; pipe the pairs in, or name a file", param, ctx)


@click.command(cls=Command)
@db_argument
@click.argument("file", type=InputFile("rb"))
@format_options({
    "csv": "FILE is CSV with a key,value header.",
    "tsv": "FILE is tab-separated with a key,value header.",
    "nl": 'FILE has one {"key": ..., "value": ...} per line.',
    "json": 'FILE is one JSON array of {"key": ..., "value": ...} or one object {"key": value, ...}.',
}, default=None)
@click.option("--key-type", type=click.Choice(KEY_TYPES),
              help="CSV/TSV without a key_type column: how to read keys (default str).")
@click.option("--value-type", type=click.Choice(VALUE_TYPES),
              help="CSV/TSV without a value_type column: how to read values (default str).")
def load(db: str, file: IO[bytes], fmt: str | None, key_type: str | None, value_type: str | None) -> None:
    """Load many pairs from FILE (- for stdin) in one transaction, creating DB if missing.

    The format comes from FILE's extension (.csv, .tsv, .jsonl/.ndjson, .json); a flag
    overrides the extension. CSV/TSV headers name the columns key and value in any case,
    optionally key_type and value_type; --key-type/--value-type are for files without those
    columns (giving both is an error). A row that cannot be stored aborts the whole load with
    an error naming its line, and nothing is written; an empty (0-byte) CSV is refused.
    `kvstore dump` output loads back exactly, types included. On a terminal, stderr shows
    progress.

    \b
    Examples:
        kvstore load foods.db pairs.csv
        kvstore dump old.db | kvstore load new.db - --nl
        kvstore load ints.db numbers.csv --key-type int --value-type int
    """
    from kvstore import formats

    source = _source(file)
    chosen = formats.Format(FORMATS[fmt]) if fmt else formats.Format.for_name(source) if source != "stdin" else None
    if chosen is None:
        raise click.UsageError(f"cannot tell the format of {source}; pass --csv, --tsv, --nl or --json")
    if chosen in (formats.Format.JSONL, formats.Format.JSON) and (key_type or value_type):
        raise click.UsageError("--key-type and --value-type apply to CSV/TSV only; JSON carries its own types")
    created = not exists(db)
    try:
        with open_store(db, create=True) as store, _Progress(file, source) as progress:
            before = len(store)
            loaded = formats.load(store, file, chosen, key_type=key_type, value_type=value_type,
                                  progress=progress, name=source)
            after = len(store)
    except BaseException as exc:
        if created:
            remove(db)  # the store this command created and failed to fill
        if isinstance(exc, formats.TypeConflictError):
            raise click.UsageError(phrase(str(exc), db)) from None
        raise
    click.echo(f"Loaded {plural(loaded, 'pair')} into {db} ({plural(after - before, 'new key')}, {after:,} in all).")


def _source(file: IO[bytes]) -> str:
    """FILE's name for messages: its path, or "stdin"."""
    name = getattr(file, "name", "-")
    return "stdin" if not isinstance(name, str) or name in ("-", "<stdin>") else name


class _Progress:
    """Progress on stderr when it is a terminal: a bar over a regular file's bytes, else a line
    with the pairs loaded and the rate (stdin, pipes)."""

    def __init__(self, file: IO[bytes], source: str) -> None:
        self.source = source
        self.tty = sys.stderr.isatty()
        self.size = _regular_file_size(file) if self.tty else None
        self.bar: Any = None
        self.done = 0
        self.start = self.drawn = time.perf_counter()
        self.pairs = 0

    def __enter__(self) -> _Progress:
        if self.size is not None:
            self.bar = click.progressbar(length=self.size, label=f"Loading {self.source}", file=sys.stderr)
            self.bar.__enter__()
        return self

    def __call__(self, pairs: int, position: int | None) -> None:
        self.pairs = pairs
        if self.bar is not None and position is not None:
            self.bar.update(position - self.done)
            self.done = position
        elif self.tty and self.bar is None and time.perf_counter() - self.drawn >= REDRAW_EVERY:
            self.drawn = time.perf_counter()
            click.echo(f"\r{self._line()}", nl=False, err=True)

    def _line(self) -> str:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        return (f"Loading {self.source}: {plural(self.pairs, 'pair')} in {seconds:.1f} s "
                f"({self.pairs / seconds:,.0f} pairs/s)")

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc_info)
        elif self.tty and self.pairs:
            click.echo(f"\r{self._line()}", err=True)


def _regular_file_size(file: IO[bytes]) -> int | None:
    import stat

    try:
        info = os.fstat(file.fileno())
    except (OSError, ValueError, AttributeError):  # io.BytesIO (tests), closed streams
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


@click.command(cls=Command)
@db_argument
@format_options({
    "nl": 'One {"key": ..., "value": ...} per line (the default).',
    "json": 'One JSON array of {"key": ..., "value": ...} objects.',
    "csv": "CSV: key,value,key_type,value_type.",
    "tsv": "Tab-separated: key,value,key_type,value_type.",
}, default="nl")
def dump(db: str, fmt: str) -> None:
    """Write every pair to stdout, in key order, in a form `kvstore load` reads back exactly.

    JSON carries ints and floats natively, bytes as {"$bytes": "<hex>"}; CSV and TSV add
    key_type and value_type columns.

    \b
    Examples:
        kvstore dump foods.db > foods.jsonl
        kvstore dump foods.db --csv > foods.csv
        kvstore dump foods.db | kvstore load copy.db - --nl
    """
    from kvstore import formats

    with open_store(db) as store, stdout_text() as out:
        formats.dump(store, out, FORMATS[fmt])


@click.command(cls=Command)
@db_argument
@click.argument("dest", type=click.Path(dir_okay=False))
def backup(db: str, dest: str) -> None:
    """Copy DB to the new file DEST: a consistent snapshot, even while others write to DB.

    DEST must not exist: a backup never overwrites a file.

    \b
    Example:
        kvstore backup foods.db foods-monday.db
    """
    with open_store(db) as store:
        require(store, "backup")
        store.backup(dest)
        items = len(store)
    click.echo(f"Backed up {db} to {dest} ({plural(items, 'item')}).")


@click.command(cls=Command)
@db_argument
def vacuum(db: str) -> None:
    """Rebuild DB without its free pages, so the file shrinks after many deletes.

    Needs room for a second copy of the store while it runs.

    \b
    Example:
        kvstore vacuum foods.db
    """
    with open_store(db) as store:
        require(store, "vacuum")
        before = _size(db, store)
        store.vacuum()
        after = _size(db, store)
    click.echo(f"Vacuumed {db}: {before:,} bytes before, {after:,} after.")


def _size(db: str, store: StoreAPI) -> int:
    """The file's size, or a PostgreSQL store's tables and indexes."""
    return store.stats()["file"]["bytes"] if is_url(db) else os.path.getsize(db)
