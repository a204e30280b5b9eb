"""The ``kvstore`` command line: ``kvstore [--timer] COMMAND DB ARGS [OPTIONS]``.

Text forms, shared by arguments, tables and CSV cells: keys and values are strings unless
``--key-type``/``--value-type`` say otherwise; ints and floats are written as Python writes
them (``-0.0``, ``inf``); bytes are hex (``00ff``). Tables show bytes as ``x'00ff'``.

JSON (``dump``, ``load``, ``--json``, ``--nl``) carries str, int and float natively; bytes are
``{"$bytes": "<hex>"}`` and infinities ``{"$float": "inf"}`` / ``{"$float": "-inf"}`` (strict
JSON has no Infinity). A plain JSON string is always a str, whatever it looks like.

CSV/TSV: the header is ``key,value`` optionally followed by ``key_type,value_type`` columns
(``str``/``int``/``float``/``bytes``) saying how to read each cell. ``dump --csv`` always
writes the type columns, so ``load`` reads back exactly what ``dump`` wrote; a plain
``key,value`` file is read with ``--key-type``/``--value-type`` (default: strings).

Startup time matters (``kvstore count`` should answer in well under 0.25 s), so this module
imports only click and kvstore's core; json, csv, tabulate, the demo and the benchmark are
imported inside the commands that use them.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, get_args

import click

import kvstore
from kvstore.store import Store, Strategy
from kvstore.validate import Key, Value, check_key, check_value
from kvstore.files import remove_database
from kvstore.migrate import HEAD_REVISION

KEY_TYPES = ("str", "int", "bytes")
VALUE_TYPES = ("str", "int", "float", "bytes")
STRATEGIES: tuple[str, ...] = get_args(Strategy)
LOAD_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "nl", ".ndjson": "nl",
                ".nl": "nl", ".json": "json"}
PROGRESS_EVERY = 1000
"""Rows between progress-bar updates while loading."""


# -- the group ----------------------------------------------------------------------------


class KvstoreGroup(click.Group):
    """A click group that loads some commands lazily and turns user errors into ``Error: ...``.

    Lazy commands (``"name": "module:attribute"``) are imported only when run or listed, so
    ``kvstore count`` does not pay for the demo or the benchmark; a lazy module that is not
    installed simply leaves its command out.
    """

    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [name for name in self.lazy_commands if self._lazy_module_exists(name)]
        return sorted([*super().list_commands(ctx), *lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and self._lazy_module_exists(cmd_name):
            return self._load_lazy(cmd_name)
        return super().get_command(ctx, cmd_name)

    def _lazy_module_exists(self, name: str) -> bool:
        from importlib.util import find_spec

        return find_spec(self.lazy_commands[name].partition(":")[0]) is not None

    def _load_lazy(self, name: str) -> click.Command:
        module_name, _, attribute = self.lazy_commands[name].partition(":")
        try:
            command = getattr(importlib.import_module(module_name), attribute)
        except ImportError as exc:  # the module is there but needs an optional dependency
            return _unavailable(name, exc)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}.{attribute} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (kvstore.Error, TypeError, ValueError, OverflowError) as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # click exits quietly when a pipe's reader goes away
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from exc


def _unavailable(name: str, exc: ImportError) -> click.Command:
    """A stand-in for a lazy command whose optional dependencies are not installed."""

    def fail() -> None:
        raise click.ClickException(
            f"`kvstore {name}` needs packages that are not installed ({exc}); "
            f"install them with: pip install 'kvstore[{name}]'"
        )

    return click.Command(name, callback=fail, help=f"(unavailable: {exc})", add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


@click.group(
    cls=KvstoreGroup,
    lazy_commands={"demo": "kvstore.demo:command", "bench": "kvstore.bench:command"},
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Run `kvstore COMMAND --help` for a command's options and an example.",
)
@click.option("--timer", is_flag=True, help="Print how long the command took to stderr (like sqlite3's .timer on).")
@click.version_option(package_name="kvstore", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, timer: bool) -> None:
    """A persistent key-value store on one SQLite file with an instant count(value).

    Keys and values are strings unless --key-type/--value-type say otherwise; bytes are
    written as hex (00ff). JSON output writes bytes as {"$bytes": "<hex>"}.

    \b
    Example:
        kvstore set foods.db 42 apple --key-type int
        kvstore count foods.db apple
    """
    if timer:
        ctx.call_on_close(_timer())


def _timer() -> Callable[[], None]:
    """Start a clock; the returned function prints real/user/sys seconds to stderr."""
    real, (user, system) = time.perf_counter(), _cpu_times()

    def report() -> None:
        now_user, now_system = _cpu_times()
        click.echo(f"Run Time: real {time.perf_counter() - real:.3f} user {now_user - user:.6f} "
                   f"sys {now_system - system:.6f}", err=True)

    return report


def _cpu_times() -> tuple[float, float]:
    """User and system CPU seconds of this process, to the microsecond where the OS allows."""
    try:
        import resource
    except ImportError:  # Windows: os.times() has coarser ticks
        times = os.times()
        return times.user, times.system
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="kvstore")


# -- shared arguments and options ---------------------------------------------------------


def db_argument(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("db", type=click.Path(dir_okay=False))(f)


def key_type_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--key-type", type=click.Choice(KEY_TYPES), default="str", show_default=True,
                        help="How to read KEY (bytes: hex digits).")(f)


def value_type_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--value-type", type=click.Choice(VALUE_TYPES), default="str", show_default=True,
                        help="How to read VALUE (bytes: hex digits).")(f)


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--table (default), --json, --csv, --nl: how a listing is printed."""
    for flag, help_text in reversed((
        ("table", "A readable table (the default)."),
        ("json", "One JSON array of objects."),
        ("csv", "CSV with a header; kvstore values get a *_type column."),
        ("nl", "One JSON object per line."),
    )):
        extra = {"default": True} if flag == "table" else {}
        f = click.option(f"--{flag}", "fmt", flag_value=flag, help=help_text, **extra)(f)
    return f


def open_existing(path: str) -> Store:
    """Open a store that must already exist: commands that only read never create a file."""
    if not os.path.exists(path):
        raise click.ClickException(
            f"{path}: no such store; check the path, or create one with `kvstore set` or `kvstore load`"
        )
    return kvstore.open(path)


# -- text and JSON forms of keys and values -----------------------------------------------


def parse_text(text: str, kind: str) -> Any:
    """Read a key or value written as text: str as is, int/float as Python writes them, bytes as hex."""
    if kind == "str":
        return text
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bytes":
        return bytes.fromhex(text)
    raise ValueError(f"unknown type {kind!r}; use one of: {', '.join(VALUE_TYPES)}")


def to_text(obj: Key | Value) -> tuple[str, str]:
    """The text form of a stored key or value, with its type name, as parse_text reads it."""
    kind = type(obj)
    if kind is bytes:
        return obj.hex(), "bytes"  # type: ignore[union-attr]
    if kind is float:
        return repr(obj), "float"
    return str(obj), kind.__name__


def display(obj: Key | Value) -> str:
    """How a key or value appears in a table: bytes as x'hex', everything else as text."""
    return f"x'{obj.hex()}'" if type(obj) is bytes else to_text(obj)[0]  # type: ignore[union-attr]


def describe(obj: Key | Value) -> str:
    """A key or value in a message, showing its type: 'apple', 42, x'00ff'."""
    return repr(obj) if type(obj) is str else display(obj)


def to_json(obj: Key | Value) -> Any:
    """The JSON-ready form: bytes and infinities become tagged objects, the rest is native."""
    kind = type(obj)
    if kind is bytes:
        return {"$bytes": obj.hex()}  # type: ignore[union-attr]
    if kind is float and obj in (float("inf"), float("-inf")):
        return {"$float": repr(obj)}
    return obj


def from_json(obj: Any) -> Any:
    """Undo to_json; any other object is refused (lists, bools and null fail validation later)."""
    if isinstance(obj, dict):
        if len(obj) == 1 and isinstance(obj.get("$bytes"), str):
            return bytes.fromhex(obj["$bytes"])
        if len(obj) == 1 and isinstance(obj.get("$float"), str):
            return float(obj["$float"])
        raise ValueError(
            f"the JSON object {_short(obj)} is not a storable key or value; bytes are written "
            '{"$bytes": "<hex>"} and infinities {"$float": "inf"}'
        )
    return obj


def _short(obj: Any) -> str:
    import json

    text = json.dumps(obj, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def argument(text: str, kind: str, name: str, check: Callable[[Any], Any]) -> Any:
    """Convert a KEY/VALUE argument, reporting a bad one as a usage error (exit 2)."""
    try:
        return check(parse_text(text, kind))
    except (ValueError, OverflowError) as exc:
        raise click.BadParameter(f"{text!r} is not a valid {kind}: {exc}", param_hint=name) from None


# -- writing listings ---------------------------------------------------------------------


def emit(records: Iterable[dict[str, Any]], columns: list[str], fmt: str, typed: tuple[str, ...] = ()) -> None:
    """Print records as a table, JSON, CSV or JSON lines.

    ``typed`` names the columns holding kvstore keys or values: JSON tags their bytes, CSV
    writes them as text with a ``<column>_type`` column at the end, tables use display().
    """
    if fmt == "table":
        from tabulate import tabulate

        rows = [[display(r[c]) if c in typed else r[c] for c in columns] for r in records]
        click.echo(tabulate(rows, headers=columns, disable_numparse=True,
                            colalign=["right" if _numeric(rows, i) else "left" for i in range(len(columns))]))
    elif fmt == "csv":
        with _stdout_text() as out:
            _write_csv(out, records, columns, typed)
    else:
        with _stdout_text() as out:
            _write_json(out, records, fmt == "nl", typed)


def _numeric(rows: list[list[Any]], column: int) -> bool:
    return bool(rows) and all(type(row[column]) is int for row in rows)


def _write_csv(out: IO[str], records: Iterable[dict[str, Any]], columns: list[str], typed: tuple[str, ...],
               delimiter: str = ",") -> None:
    import csv

    # Python's csv quotes a field holding "\n" but not one holding a lone "\r" (unless the line
    # terminator has one), and such a field would not read back: quote those rows in full.
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    quote_all = csv.writer(out, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow([*columns, *(f"{c}_type" for c in columns if c in typed)])
    for r in records:
        texts = {c: to_text(r[c]) for c in typed}
        row = [texts[c][0] if c in typed else r[c] for c in columns] + [texts[c][1] for c in columns if c in typed]
        (quote_all if any("\r" in texts[c][0] for c in typed) else writer).writerow(row)


def _write_json(out: IO[str], records: Iterable[dict[str, Any]], lines: bool, typed: tuple[str, ...]) -> None:
    import json

    first = True
    for r in records:
        text = json.dumps({c: to_json(v) if c in typed else v for c, v in r.items()},
                          ensure_ascii=False, allow_nan=False)
        if lines:
            out.write(text + "\n")
        else:
            out.write(("[" if first else ",\n ") + text)
        first = False
    if not lines:
        out.write("[]\n" if first else "]\n")


@contextmanager
def _stdout_text() -> Iterator[IO[str]]:
    """UTF-8 text on stdout whatever the locale, with no newline translation (exact dumps)."""
    import io

    sys.stdout.flush()
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
    try:
        yield out
    finally:
        out.flush()
        out.detach()


# -- the mapping --------------------------------------------------------------------------


class ValueCommand(click.Command):
    """A command whose KEY/VALUE may be negative numbers: ``-5`` and ``-0.0`` are arguments.

    Any other unknown ``-token`` is still a usage error; ``--`` ends the options as usual,
    so ``kvstore get DB -- -x`` reads the key ``-x``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {})["ignore_unknown_options"] = True
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        known = {opt for param in self.get_params(ctx) for opt in (*param.opts, *param.secondary_opts)}
        for token in args:
            if token == "--":
                break
            if len(token) > 1 and token[0] == "-" and token.split("=")[0] not in known and not _is_number(token):
                from difflib import get_close_matches

                raise click.NoSuchOption(token, possibilities=get_close_matches(token, known), ctx=ctx)
        return super().parse_args(ctx, args)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


@cli.command("set", cls=ValueCommand)
@db_argument
@click.argument("key")
@click.argument("value")
@key_type_option
@value_type_option
def set_(db: str, key: str, value: str, key_type: str, value_type: str) -> None:
    """Store VALUE under KEY (insert or overwrite), creating DB if missing.

    \b
    Examples:
        kvstore set foods.db 42 apple --key-type int
        kvstore set foods.db pi 3.14159 --value-type float
        kvstore set foods.db blob 00ff10 --value-type bytes
    """
    k = argument(key, key_type, "KEY", check_key)
    v = argument(value, value_type, "VALUE", check_value)
    with kvstore.open(db) as store:
        store.set(k, v)


@cli.command(cls=ValueCommand)
@db_argument
@click.argument("key")
@key_type_option
@click.option("--json", "as_json", is_flag=True, help='Print the value as JSON, which shows its type ("1" vs 1).')
def get(db: str, key: str, key_type: str, as_json: bool) -> None:
    """Print the value stored under KEY; exit 1 if there is none.

    Bytes print as hex, floats as Python writes them.

    \b
    Examples:
        kvstore get foods.db 42 --key-type int
        kvstore get foods.db pi --json
    """
    k = argument(key, key_type, "KEY", check_key)
    with open_existing(db) as store:
        value = store.get(k, _MISSING)
        if value is _MISSING:
            raise click.ClickException(_missing_key(store, db, key, k, key_type))
    if as_json:
        import json

        text = json.dumps(to_json(value), ensure_ascii=False, allow_nan=False)
    else:
        text = to_text(value)[0]
    with _stdout_text() as out:  # exactly the value: click.echo would strip ANSI escapes in a pipe
        out.write(text + "\n")


_MISSING = object()


def _missing_key(store: Store, path: str, text: str, key: Key, key_type: str) -> str:
    """'no key ...', with a hint when the same digits are stored as an int key."""
    message = f"{path}: no key {describe(key)}"
    if key_type == "str":
        try:
            number = int(text)
        except ValueError:
            return message
        if -(1 << 63) <= number < (1 << 63) and number in store:
            message += f"; there is an int key {number}: pass --key-type int"
    return message


@cli.command(cls=ValueCommand)
@db_argument
@click.argument("key")
@key_type_option
def delete(db: str, key: str, key_type: str) -> None:
    """Delete KEY; exit 1 if it was not there.

    \b
    Example:
        kvstore delete foods.db 42 --key-type int
    """
    k = argument(key, key_type, "KEY", check_key)
    with open_existing(db) as store:
        if not store.delete(k):
            raise click.ClickException(_missing_key(store, db, key, k, key_type))


# -- counting -----------------------------------------------------------------------------


@cli.command(cls=ValueCommand)
@db_argument
@click.argument("value")
@value_type_option
@click.option("--strategy", type=click.Choice(STRATEGIES), default="counts", show_default=True,
              help="counts: one lookup in the counts table; group_by: the value index; scan: every row.")
def count(db: str, value: str, value_type: str, strategy: str) -> None:
    """Print how many keys hold VALUE (0 if none).

    \b
    Examples:
        kvstore count foods.db clementine
        kvstore count foods.db clementine --strategy scan
        kvstore count foods.db 7 --value-type int
    """
    v = argument(value, value_type, "VALUE", check_value)
    with open_existing(db) as store:
        click.echo(store.count(v, strategy))  # type: ignore[arg-type]


@cli.command()
@db_argument
@click.option("--top", type=click.IntRange(min=1), metavar="N", help="Only the N most held values.")
@output_options
def counts(db: str, top: int | None, fmt: str) -> None:
    """List every value with how many keys hold it, largest count first.

    \b
    Examples:
        kvstore counts foods.db
        kvstore counts foods.db --top 3 --json
    """
    with open_existing(db) as store:
        pairs = store.most_common(top)
    emit(({"value": v, "count": n} for v, n in pairs), ["value", "count"], fmt, typed=("value",))


@cli.command("keys-for", cls=ValueCommand)
@db_argument
@click.argument("value")
@value_type_option
@output_options
def keys_for(db: str, value: str, value_type: str, fmt: str) -> None:
    """List the keys holding VALUE, in key order.

    \b
    Examples:
        kvstore keys-for foods.db mirepoix
        kvstore keys-for foods.db 7 --value-type int --nl
    """
    v = argument(value, value_type, "VALUE", check_value)
    with open_existing(db) as store:
        emit(({"key": k} for k in store.keys_for(v)), ["key"], fmt, typed=("key",))


# -- bulk load and dump -------------------------------------------------------------------


class LoadError(click.ClickException):
    """A row of a load file that cannot be stored; nothing of the load is kept."""

    def __init__(self, source: str, where: str, problem: object) -> None:
        super().__init__(f"{source}, {where}: {problem}; nothing was loaded")


@cli.command()
@db_argument
@click.argument("file", type=click.File("rb"))
@click.option("--csv", "fmt", flag_value="csv", help="FILE is CSV with a key,value header.")
@click.option("--tsv", "fmt", flag_value="tsv", help="FILE is tab-separated with a key,value header.")
@click.option("--nl", "fmt", flag_value="nl", help='FILE has one {"key": ..., "value": ...} per line.')
@click.option("--json", "fmt", flag_value="json", help='FILE is one JSON object {"key": value, ...}.')
@click.option("--key-type", type=click.Choice(KEY_TYPES),
              help="CSV/TSV without a key_type column: how to read keys (default str).")
@click.option("--value-type", type=click.Choice(VALUE_TYPES),
              help="CSV/TSV without a value_type column: how to read values (default str).")
def load(db: str, file: IO[bytes], fmt: str | None, key_type: str | None, value_type: str | None) -> None:
    """Load many pairs from FILE (- for stdin) in one transaction, creating DB if missing.

    The format comes from FILE's extension (.csv, .tsv, .jsonl/.ndjson, .json) or a flag.
    A row that cannot be stored aborts the whole load with an error naming its line, and
    nothing is written. `kvstore dump` output loads back exactly, types included.

    \b
    Examples:
        kvstore load foods.db pairs.csv
        kvstore dump old.db | kvstore load new.db - --nl
        kvstore load ints.db numbers.csv --key-type int --value-type int
    """
    fmt = fmt or _format_from_name(_source(file))
    if fmt in ("nl", "json") and (key_type or value_type):
        raise click.UsageError("--key-type and --value-type apply to CSV/TSV only; JSON carries its own types")
    created = not os.path.exists(db)
    try:
        with kvstore.open(db) as store, _progress(file) as tick:
            before = len(store)
            store.update(_read_pairs(file, fmt, key_type or "str", value_type or "str", tick))
            loaded, after = tick.rows, len(store)
    except BaseException:
        if created:
            remove_database(db)  # the store this command created and failed to fill
        raise
    click.echo(f"Loaded {_plural(loaded, 'pair')} into {db} ({_plural(after - before, 'new key')}, {after:,} in all).")


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _source(file: IO[bytes]) -> str:
    """FILE's name for messages: its path, or "stdin"."""
    name = getattr(file, "name", "-")
    return "stdin" if not isinstance(name, str) or name in ("-", "<stdin>") else name


def _format_from_name(source: str) -> str:
    fmt = LOAD_FORMATS.get(os.path.splitext(source)[1].lower()) if source != "stdin" else None
    if fmt is None:
        raise click.UsageError(f"cannot tell the format of {source}; pass --csv, --tsv, --nl or --json")
    return fmt


class _Ticker:
    """Counts rows read and moves the progress bar (if any) to the bytes consumed so far."""

    def __init__(self, file: IO[bytes], bar: Any) -> None:
        self.rows = 0
        self._file = file
        self._bar = bar
        self._done = 0

    def __call__(self) -> None:
        self.rows += 1
        if self._bar is not None and self.rows % PROGRESS_EVERY == 0:
            position = self._file.tell()
            self._bar.update(position - self._done)
            self._done = position


@contextmanager
def _progress(file: IO[bytes]) -> Iterator[_Ticker]:
    """A progress bar over FILE's bytes on stderr, when stderr is a terminal and FILE a regular file."""
    size = _regular_file_size(file)
    if size is None or not sys.stderr.isatty():
        yield _Ticker(file, None)
        return
    with click.progressbar(length=size, label=f"Loading {_source(file)}", file=sys.stderr) as bar:
        yield _Ticker(file, bar)


def _regular_file_size(file: IO[bytes]) -> int | None:
    try:
        import stat

        info = os.fstat(file.fileno())
    except (OSError, ValueError, AttributeError):  # io.BytesIO (tests), closed streams
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _read_pairs(file: IO[bytes], fmt: str, key_type: str, value_type: str, tick: _Ticker) -> Iterator[tuple[Key, Value]]:
    """Stream (key, value) pairs out of FILE, checked row by row so errors can name the line."""
    source = _source(file)
    if fmt in ("csv", "tsv"):
        return _read_csv(_lines(file, source), source, "\t" if fmt == "tsv" else ",", key_type, value_type, tick)
    if fmt == "nl":
        return _read_nl(_lines(file, source), source, tick)
    return _read_json(file, source, tick)


def _lines(file: IO[bytes], source: str) -> Iterator[str]:
    """FILE's lines decoded one by one (so a bad byte's line is known), endings kept, BOM skipped."""
    for number, raw in enumerate(file, 1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LoadError(source, f"line {number}", f"not UTF-8 text ({exc.reason} at byte {exc.start + 1})") from None


def _read_csv(lines: Iterator[str], source: str, delimiter: str, key_type: str, value_type: str,
              tick: _Ticker) -> Iterator[tuple[Key, Value]]:
    import csv

    csv.field_size_limit(2**31 - 1)  # kvstore values may be far larger than csv's 128 KiB default
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    first = 1  # the line the next record starts on (a quoted field may span lines)
    try:
        header = next(reader, None)
        if header is None:
            return
        columns = _csv_columns(header, source)
        width = len(header)
        for row in reader:
            where, first = f"line {first + 1}", reader.line_num
            if not row:
                continue
            if len(row) != width:
                raise LoadError(source, where, f"expected {width} fields like the header, got {len(row)}")
            kt = row[columns["key_type"]] if "key_type" in columns else key_type
            vt = row[columns["value_type"]] if "value_type" in columns else value_type
            yield _checked(source, where, lambda: (_cell(row[columns["key"]], kt, KEY_TYPES, "key"),
                                                   _cell(row[columns["value"]], vt, VALUE_TYPES, "value")))
            tick()
    except csv.Error as exc:
        raise LoadError(source, f"line {first + 1}", exc) from None


def _csv_columns(header: list[str], source: str) -> dict[str, int]:
    columns = {name.strip(): i for i, name in enumerate(header)}
    unknown = sorted(set(columns) - {"key", "value", "key_type", "value_type"})
    if "key" not in columns or "value" not in columns or unknown or len(columns) != len(header):
        raise LoadError(source, "line 1", f"the header must be key,value (optionally with key_type,value_type), "
                                          f"got {','.join(header)!r}")
    return columns


def _cell(text: str, kind: str, kinds: tuple[str, ...], role: str) -> Any:
    if kind not in kinds:
        raise ValueError(f"{role}_type {kind!r} is not one of {', '.join(kinds)}")
    try:
        return parse_text(text, kind)
    except ValueError as exc:
        raise ValueError(f"{role} {text[:40]!r} is not a valid {kind} ({exc})") from None


def _checked(source: str, where: str, make: Callable[[], tuple[Any, Any]]) -> tuple[Key, Value]:
    """Build and validate one pair, turning any problem into a LoadError naming where it was."""
    try:
        key, value = make()
        return check_key(key), check_value(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LoadError(source, where, exc) from None


def _read_nl(lines: Iterator[str], source: str, tick: _Ticker) -> Iterator[tuple[Key, Value]]:
    import json

    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadError(source, f"line {number}", f"not valid JSON ({exc.msg} at column {exc.pos + 1})") from None
        yield _checked(source, f"line {number}", lambda: _record(record))
        tick()


def _record(obj: Any) -> tuple[Any, Any]:
    """(key, value) out of a {"key": ..., "value": ...} object."""
    if not isinstance(obj, dict) or set(obj) != {"key", "value"}:
        raise ValueError(f'expected an object {{"key": ..., "value": ...}}, got {_short(obj)}')
    return from_json(obj["key"]), from_json(obj["value"])


def _read_json(file: IO[bytes], source: str, tick: _Ticker) -> Iterator[tuple[Key, Value]]:
    """Pairs from one JSON object {"key": value, ...}; its keys are necessarily strings."""
    import json

    data = file.read()
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LoadError(source, f"line {line}", f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise LoadError(source, f"line {exc.lineno}", f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise LoadError(source, "line 1", 'a JSON file must hold one object {"key": value, ...}; '
                                          "use --nl for one {\"key\": ..., \"value\": ...} per line")
    for key, value in obj.items():
        yield _checked(source, f"key {key!r}", lambda: (key, from_json(value)))
        tick()


@cli.command()
@db_argument
@click.option("--nl", "fmt", flag_value="nl", default=True, help='One {"key": ..., "value": ...} per line (the default).')
@click.option("--csv", "fmt", flag_value="csv", help="CSV: key,value,key_type,value_type.")
@click.option("--tsv", "fmt", flag_value="tsv", help="Tab-separated: key,value,key_type,value_type.")
def dump(db: str, fmt: str) -> None:
    """Write every pair to stdout, in key order, in a form `kvstore load` reads back exactly.

    JSON lines carry ints and floats natively, bytes as {"$bytes": "<hex>"}; CSV adds
    key_type and value_type columns.

    \b
    Examples:
        kvstore dump foods.db > foods.jsonl
        kvstore dump foods.db --csv > foods.csv
        kvstore dump foods.db | kvstore load copy.db - --nl
    """
    with open_existing(db) as store, _stdout_text() as out:
        records = ({"key": k, "value": v} for k, v in store.items())
        if fmt == "nl":
            _write_json(out, records, lines=True, typed=("key", "value"))
        else:
            _write_csv(out, records, ["key", "value"], ("key", "value"), "\t" if fmt == "tsv" else ",")


# -- upkeep -------------------------------------------------------------------------------


@cli.command()
@db_argument
def verify(db: str) -> None:
    """Check that the counts table matches the items; exit 1 listing any mismatch.

    \b
    Example:
        kvstore verify foods.db || kvstore repair foods.db
    """
    with open_existing(db) as store:
        problems = store.verify()
        if not problems:
            click.echo(f"OK: counts are exact ({len(store):,} items, {len(store.counts()):,} values).")
            return
    for problem in problems:
        click.echo(str(problem))
    raise click.ClickException(f"{db}: {len(problems)} problem(s) found; fix them with `kvstore repair {db}`")


@cli.command()
@db_argument
def repair(db: str) -> None:
    """Rebuild the counts table (and its triggers) from the items; report what changed.

    \b
    Example:
        kvstore repair foods.db
    """
    with open_existing(db) as store:
        problems = store.verify()
        fixed = store.repair() if problems else 0
    if not fixed:
        click.echo("Nothing to repair: counts are exact.")
        return
    click.echo(f"Repaired {fixed} problem(s):")
    for problem in problems:
        click.echo(f"  {problem}")


@cli.command()
@db_argument
@output_options
def stats(db: str, fmt: str) -> None:
    """Rows and bytes on disk of the items, the value index, the counts and the whole file.

    \b
    Examples:
        kvstore stats foods.db
        kvstore stats foods.db --json
    """
    with open_existing(db) as store:
        parts = store.stats()
    emit(({"name": name, **numbers} for name, numbers in parts.items()), ["name", "rows", "bytes"], fmt)


@cli.command()
@db_argument
@click.option("--to", "target", default="head", show_default=True, metavar="REV",
              help="Revision to move to: head, base, or a known revision (downgrades too).")
@click.option("--yes", is_flag=True, help="Confirm a move to base, which deletes every item.")
def migrate(db: str, target: str, yes: bool) -> None:
    """Show DB's schema revision and upgrade it to the newest (or move it to --to REV).

    \b
    Examples:
        kvstore migrate foods.db
        kvstore migrate foods.db --to 0001
    """
    from kvstore import migrate as migrations
    from kvstore.connection import Options

    if not os.path.exists(db):
        raise click.ClickException(f"{db}: no such store; check the path")
    known = ("head", "base", *migrations.KNOWN_REVISIONS)
    if target not in known:
        raise click.BadParameter(f"{target!r} is not a revision kvstore knows; use one of: {', '.join(known)}",
                                 param_hint="--to")
    if target == "base" and not yes:
        raise click.ClickException(f"{db}: moving to base drops the items table and every item in it; "
                                   "pass --yes if that is what you want")
    goal = {"head": migrations.HEAD_REVISION, "base": None}.get(target, target)
    current = migrations.current_revision(db, Options())
    if current == goal:
        click.echo(f"{db}: at revision {_revision(current)}; nothing to do.")
        return
    migrations.migrate(db, target, Options())
    click.echo(f"{db}: migrated from revision {_revision(current)} to {_revision(goal)}.")


def _revision(revision: str | None) -> str:
    if revision is None:
        return "base (empty schema)"
    return f"{revision} (head)" if revision == HEAD_REVISION else revision
