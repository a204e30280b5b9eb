"""One key at a time: ``set``, ``get``, ``delete``, ``incr``."""

from __future__ import annotations

import sys

import click

from kvstore.cli.options import (
    ValueCommand,
    argument,
    db_argument,
    describe,
    key_type_option,
    open_store,
    require,
    typed_hint,
    value_type_option,
)
from kvstore.cli.output import stdout_text
from kvstore.api import StoreAPI
from kvstore.validate import Key, Value, check_key, check_value

_MISSING = object()


@click.command("set", cls=ValueCommand)
@db_argument
@click.argument("key")
@click.argument("value")
@key_type_option
@value_type_option
def set_(db: str, key: str, value: str, key_type: str, value_type: str) -> None:
    """Store VALUE under KEY (insert or overwrite), creating DB if missing.

    VALUE - reads the value from stdin: exactly, a trailing newline included (with
    --value-type bytes, the raw bytes rather than hex).

    \b
    Examples:
        kvstore set foods.db 42 apple --key-type int
        kvstore set foods.db pi 3.14159 --value-type float
        kvstore set foods.db notes - < notes.txt
    """
    k = argument(key, key_type, "KEY", check_key)
    v = _stdin_value(value_type) if value == "-" else argument(value, value_type, "VALUE", check_value)
    with open_store(db, create=True) as store:
        store.set(k, v)


def _stdin_value(value_type: str) -> Value:
    """VALUE read from stdin: raw bytes for --value-type bytes, else UTF-8 text read as the type."""
    data = sys.stdin.buffer.read()
    if value_type == "bytes":
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"stdin is not UTF-8 text ({exc.reason} at byte {exc.start + 1}); "
                                 "pass --value-type bytes to store raw bytes", param_hint="VALUE") from None
    value: Value = argument(text if value_type == "str" else text.strip(), value_type, "VALUE", check_value)
    return value


@click.command(cls=ValueCommand)
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
    with open_store(db) as store:
        value = store.get(k, _MISSING)
        if value is _MISSING:
            raise click.ClickException(missing_key(store, db, key, k, key_type))
    from kvstore.formats import to_json, to_text

    if as_json:
        import json

        text = json.dumps(to_json(value), ensure_ascii=False, allow_nan=False)
    else:
        text = to_text(value)[0]
    with stdout_text() as out:  # exactly the value: click.echo would strip ANSI escapes in a pipe
        out.write(text + "\n")


def missing_key(store: StoreAPI, path: str, text: str, key: Key, key_type: str) -> str:
    """'no key ...', with a hint when the same text read as another key type is stored."""
    hint = typed_hint(text, ("int", "bytes"), "key", lambda k: check_key(k) in store) if key_type == "str" else ""
    return f"{path}: no key {describe(key)}{hint}"


@click.command(cls=ValueCommand)
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
    with open_store(db) as store:
        if not store.delete(k):
            raise click.ClickException(missing_key(store, db, key, k, key_type))


@click.command(cls=ValueCommand)
@db_argument
@click.argument("key")
@click.argument("delta", default="1")
@key_type_option
def incr(db: str, key: str, delta: str, key_type: str) -> None:
    """Add DELTA (default 1) to the number under KEY and print the new value, atomically.

    A missing key starts at 0 (DB is created if missing). DELTA is an int, or a float
    when written as one (0.5, 1e3); int + int stays an int.

    \b
    Examples:
        kvstore incr visits.db home
        kvstore incr stock.db apples -3
        kvstore incr scores.db ada 0.5
    """
    from kvstore.formats import parse_text, to_text

    k = argument(key, key_type, "KEY", check_key)
    try:
        number = parse_text(delta, "int")
    except ValueError:
        number = argument(delta, "float", "DELTA", check_value)
    with open_store(db, create=True) as store:
        require(store, "incr")
        total = store.incr(k, number)  # type: ignore[arg-type]
    click.echo(to_text(total)[0])
