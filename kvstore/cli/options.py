"""What the commands share: global options, DB/KEY/VALUE arguments, opening stores, and the
phrasing of messages for the command line.

Global options (``--timer``, ``--timeout``) are accepted before the command and after it:
:class:`Command` adds them to every kvstore command, and both places store their value in
the root context's ``meta``.

``kvstore count`` imports this module: :mod:`kvstore.formats` (the codec) is imported only
when a KEY or VALUE is not a plain string, or a message needs it.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

import kvstore
from kvstore.api import StoreAPI

F = TypeVar("F", bound=Callable[..., Any])
KEY_TYPES = ("str", "int", "bytes")
VALUE_TYPES = ("str", "int", "float", "bytes")
"""As in kvstore.formats (a test checks), without importing it at startup."""
DEFAULT_TIMEOUT = 5.0
_TIMEOUT, _TIMER, _DB, _MMAP = "kvstore.timeout", "kvstore.timer", "kvstore.db", "kvstore.mmap_size"
_SCHEMA, _URL, _SCHEMA_WAS_THERE = "kvstore.schema", "kvstore.url", "kvstore.schema_was_there"


# -- global options ------------------------------------------------------------------------


def _start_timer(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    root = ctx.find_root()
    if not value or root.meta.get(_TIMER):
        return
    root.meta[_TIMER] = True
    real, (user, system) = time.perf_counter(), _cpu_times()

    def report() -> None:
        now_user, now_system = _cpu_times()
        click.echo(f"Run Time: real {time.perf_counter() - real:.3f} user {now_user - user:.6f} "
                   f"sys {now_system - system:.6f}", err=True)

    root.call_on_close(report)


def _cpu_times() -> tuple[float, float]:
    """User and system CPU seconds of this process, to the microsecond where the OS allows."""
    try:
        import resource
    except ImportError:  # Windows: os.times() has coarser ticks
        times = os.times()
        return times.user, times.system
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _set_timeout(ctx: click.Context, param: click.Parameter, value: float | None) -> None:
    if value is None:
        return
    if math.isnan(value):
        raise click.BadParameter("'nan' is not a number of seconds", ctx=ctx, param=param)
    ctx.find_root().meta[_TIMEOUT] = value


def timer_option() -> click.Option:
    return click.Option(["--timer"], is_flag=True, expose_value=False, callback=_start_timer,
                        help="Print how long the command took to stderr (like sqlite3's .timer on).")


def timeout_option() -> click.Option:
    return click.Option(["--timeout"], type=click.FloatRange(min=0), metavar="SECONDS", expose_value=False,
                        callback=_set_timeout, help=f"How long a write waits for another process's write "
                        f"lock before failing (0: never wait; inf: wait) [default: {DEFAULT_TIMEOUT:g}]")


def _set_mmap_size(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        ctx.find_root().meta[_MMAP] = value


def mmap_option() -> click.Option:
    return click.Option(["--mmap-size"], type=click.IntRange(min=0), metavar="BYTES", expose_value=False,
                        callback=_set_mmap_size, help="Bytes of the file read through a memory map (0: none, "
                        "for files on storage that may fail or be truncated by other programs) [default: 1 GiB]")


def _set_schema(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_root().meta[_SCHEMA] = value


def schema_option() -> click.Option:
    return click.Option(["--schema"], metavar="NAME", expose_value=False, callback=_set_schema,
                        help="For a PostgreSQL URL: the schema that holds the store [default: kvstore]")


def is_url(db: str) -> bool:
    """DB names a PostgreSQL database (postgresql://...) rather than a file."""
    from kvstore.postgresql import is_url as url

    return url(db)


def schema() -> str:
    """The --schema given, or the default; refused for a file (it would be silently ignored)."""
    meta = click.get_current_context().find_root().meta
    db = meta.get(_DB, "")
    if _SCHEMA in meta and not is_url(db):
        raise click.UsageError("--schema names a PostgreSQL schema; it applies to postgresql:// URLs only")
    return str(meta.get(_SCHEMA, "kvstore"))


def add_global_options(command: click.Command, timeout: bool = True) -> click.Command:
    """Let --timer (and --timeout, --mmap-size) follow the command too: ``kvstore count DB v --timer``."""
    names = {opt for param in command.params for opt in param.opts}
    if "--timer" not in names:
        command.params.append(timer_option())
    if timeout and "--timeout" not in names:
        command.params.append(timeout_option())
    if timeout and "--mmap-size" not in names:
        command.params.append(mmap_option())
    if timeout and "--schema" not in names:
        command.params.append(schema_option())
    return command


class Command(click.Command):
    """A kvstore command: the global options work after it as well as before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        add_global_options(self)


class ValueCommand(Command):
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


# -- arguments and stores ------------------------------------------------------------------


def db_argument(f: F) -> F:
    return click.argument("db", type=click.Path(dir_okay=False), callback=_shown_db)(f)


def _shown_db(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """DB as the command shows it: a URL without its password (kept aside to connect with)."""
    if not is_url(value):
        return value
    from kvstore.postgresql.urls import redacted

    ctx.find_root().meta[_URL] = value
    return redacted(value)


def real(db: str) -> str:
    """The DB to connect to: the URL as given (DB as shown has its password masked)."""
    given = click.get_current_context().find_root().meta.get(_URL)
    if given is not None and is_url(db):
        from kvstore.postgresql.urls import redacted

        if redacted(given) == db:
            return str(given)
    return db


def key_type_option(f: F) -> F:
    return click.option("--key-type", type=click.Choice(KEY_TYPES), default="str", show_default=True,
                        help="How to read KEY (bytes: hex digits).")(f)


def value_type_option(f: F) -> F:
    return click.option("--value-type", type=click.Choice(VALUE_TYPES), default="str", show_default=True,
                        help="How to read VALUE (bytes: hex digits).")(f)


def argument(text: str, kind: str, name: str, check: Callable[[Any], Any]) -> Any:
    """Convert a KEY/VALUE argument, reporting a bad one as a usage error (exit 2)."""
    try:
        if kind == "str":  # the common case needs no codec
            return check(text)
        from kvstore.formats import parse_text

        return check(parse_text(text, kind))
    except (ValueError, OverflowError) as exc:
        option = "--key-type" if name == "KEY" else "--value-type"
        problem = str(exc).replace("store it as a string or bytes instead", f"pass {option} str to store it as text")
        raise click.BadParameter(f"{text!r} is not a valid {kind}: {problem}", param_hint=name) from None


def timeout() -> float:
    return float(click.get_current_context().find_root().meta.get(_TIMEOUT, DEFAULT_TIMEOUT))


def open_store(path: str, *, create: bool = False) -> StoreAPI:
    """Open DB with the --timeout given; commands that only read never create a file (or schema)."""
    click.get_current_context().find_root().meta[_DB] = path
    if is_url(path):
        if not create and not exists(path):
            raise click.ClickException(f"{path}: no kvstore store in schema {schema()!r}; check the URL and "
                                       "--schema, or create one with `kvstore set` or `kvstore load`")
        return kvstore.open(real(path), timeout=timeout(), schema=schema())
    schema()  # refuses --schema with a file
    if not create and not os.path.exists(path):
        raise click.ClickException(
            f"{path}: no such store; check the path, or create one with `kvstore set` or `kvstore load`"
        )
    meta = click.get_current_context().find_root().meta
    if _MMAP in meta:
        return kvstore.open(path, timeout=timeout(), mmap_size=meta[_MMAP])
    return kvstore.open(path, timeout=timeout())


def exists(db: str) -> bool:
    """Whether DB (a file, or a URL with --schema) holds a store already."""
    click.get_current_context().find_root().meta[_DB] = db
    if not is_url(db):
        return os.path.exists(db)
    from kvstore.postgresql import schema as schemas

    there, revision = schemas.state(schemas.settings_for(real(db), timeout()), schema())
    click.get_current_context().find_root().meta[_SCHEMA_WAS_THERE] = there
    return revision is not None


def remove(db: str) -> None:
    """Delete the store DB that this command created (a file and its journals, or a PostgreSQL
    store's objects, and its schema if nothing else is in it; not if others filled it meanwhile)."""
    click.get_current_context().find_root().meta[_DB] = db
    if is_url(db):
        from kvstore.postgresql import schema as schemas

        kept = bool(click.get_current_context().find_root().meta.get(_SCHEMA_WAS_THERE))
        schemas.remove(real(db), schema(), timeout(), only_if_empty=True, keep_schema=kept)
        return
    from kvstore.sqlite.files import remove_database

    remove_database(db)


def require(store: StoreAPI, method: str) -> None:
    """Refuse a command whose Store method this kvstore does not have (yet)."""
    if not hasattr(store, method):
        raise click.ClickException(f"`kvstore {method}` needs Store.{method}(), which this version of "
                                   "kvstore lacks; upgrade kvstore")


# -- how things are shown ------------------------------------------------------------------


def display(obj: object) -> str:
    """How a key or value appears in a table: bytes as x'hex', NULL as NULL, text with line
    breaks or other control characters quoted and escaped ('two\\nlines'), the rest as text."""
    if type(obj) is bytes:
        return f"x'{obj.hex()}'"
    if type(obj) is str:
        return obj if obj.isprintable() else repr(obj)
    from kvstore.formats import to_text

    return "NULL" if obj is None else to_text(obj)[0]


def describe(obj: object) -> str:
    """A key or value in a message, showing its type: 'apple', 42, 2.5, x'00ff'."""
    return repr(obj) if type(obj) is str else display(obj)


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def typed_hint(text: str, kinds: tuple[str, ...], role: str, found: Callable[[Any], int]) -> str:
    """'; there is an int key 3: pass --key-type int' when TEXT read as another type is stored.

    ``found(obj)`` says how many keys hold the value (or whether the key exists). Equal numbers
    are one value (1 == 1.0), so a float is not suggested when the int was.
    """
    from kvstore.formats import parse_text

    for kind in kinds:
        try:
            obj = parse_text(text, kind)
            held = found(obj)
        except (ValueError, TypeError, OverflowError):
            continue
        if held:
            what = f"{kind} {role} {describe(obj)}"
            if role == "value":
                what += f" (held by {plural(held, 'key')})"
            return f"; there is an {what}: pass --{role}-type {kind}" if kind == "int" else \
                f"; there is a {what}: pass --{role}-type {kind}"
    return ""


_PHRASES = (  # (regular expression, replacement); compiled when an error is shown, not at startup
    (r"repair\(\) \(or `kvstore repair FILE`\)", "`kvstore repair {db}`"),
    (r"(?<![\w.`])repair\(\)", "`kvstore repair {db}`"),
    (r"count\(strategy='group_by'\)", "`kvstore count --strategy group_by`"),
    (r"keys_for\(\)", "`kvstore keys-for`"),
    (r"len\(\) and count\(\)", "`kvstore count`"),
    (r"Iteration, pop\(\), del and popitem\(\) read and remove it; get\(\) and set\(\) refuse its key",
     "`kvstore dump` shows it; `kvstore get`, `set` and `delete` cannot name its key"),
    (r"(?<![\w.`])(incr|backup|vacuum|verify)\(\)", "`kvstore {group}`"),
    (r"open the store with a larger timeout=|wait longer \(timeout= in Python, --timeout on the command line\)",
     "pass a larger --timeout than {timeout} seconds"),
    (r",? or open it (?:for writing \(without readonly=True in Python\)|without readonly=True)", ""),
    (r"open it with kvstore\.open\(\) to make it a new store", "`kvstore set` or `kvstore load` makes it a new store"),
    (r"\bkey_type=", "--key-type"),
    (r"\bvalue_type=", "--value-type"),
    (r"load it as (CSV|TSV)", "pass --{group}"),
    (r"load it as JSON lines", "pass --nl"),
)


def phrase(message: str, db: str | None = None) -> str:
    """A message of the Python API, said for the command line (`kvstore repair DB`, not repair())."""
    ctx = click.get_current_context(silent=True)
    meta = ctx.find_root().meta if ctx is not None else {}
    values = {"db": db or meta.get(_DB) or "DB", "timeout": f"{meta.get(_TIMEOUT, DEFAULT_TIMEOUT):g}"}
    for pattern, text in _PHRASES:
        def said(match: re.Match[str], text: str = text) -> str:
            return text.format(**values, group=(match.group(1) or "").lower() if match.re.groups else "")

        message = re.sub(pattern, said, message)
    return message
