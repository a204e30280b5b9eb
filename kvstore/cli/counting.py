"""Counting: ``count``, ``counts``, ``keys-for``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast, get_args

import click

from kvstore.cli.options import (
    Command,
    ValueCommand,
    argument,
    db_argument,
    describe,
    open_store,
    typed_hint,
    value_type_option,
)
from kvstore.cli.output import emit, output_options
from kvstore.api import StoreAPI
from kvstore.api import Strategy
from kvstore.validate import check_value

STRATEGIES: tuple[str, ...] = get_args(Strategy)


def _note_other_types(store: StoreAPI, db: str, text: str, value: Any, value_type: str) -> None:
    """On stderr: VALUE is not stored as the type asked for, but is as another (`count DB 2.5`)."""
    if value_type != "str":
        return
    hint = typed_hint(text, ("int", "float", "bytes"), "value", lambda v: store.count(check_value(v)))
    if hint:
        click.echo(f"Note: {db}: no value {describe(value)}{hint}", err=True)


@click.command(cls=ValueCommand)
@db_argument
@click.argument("value")
@value_type_option
@click.option("--strategy", type=click.Choice(STRATEGIES), default="counts", show_default=True,
              help="counts: one lookup in the counts table; group_by: the value index; scan: every row.")
def count(db: str, value: str, value_type: str, strategy: str) -> None:
    """Print how many keys hold VALUE (0 if none).

    When none do but VALUE read as a number or as hex is stored, a note on stderr says
    which --value-type to pass.

    \b
    Examples:
        kvstore count foods.db clementine
        kvstore count foods.db clementine --strategy scan
        kvstore count foods.db 7 --value-type int
    """
    v = argument(value, value_type, "VALUE", check_value)
    with open_store(db) as store:
        n = store.count(v, cast(Strategy, strategy))  # click.Choice checked it
        click.echo(n)
        if not n:
            _note_other_types(store, db, value, v, value_type)


@click.command(cls=Command)
@db_argument
@click.option("--top", type=click.IntRange(min=1), metavar="N", help="Only the N most held values.")
@output_options()
def counts(db: str, top: int | None, fmt: str) -> None:
    """List every value with how many keys hold it, largest count first.

    \b
    Examples:
        kvstore counts foods.db
        kvstore counts foods.db --top 3 --json
    """
    with open_store(db) as store:
        pairs = store.most_common(top)
    emit(({"value": v, "count": n} for v, n in pairs), ["value", "count"], fmt, typed=("value",))


@click.command("keys-for", cls=ValueCommand)
@db_argument
@click.argument("value")
@value_type_option
@output_options()
def keys_for(db: str, value: str, value_type: str, fmt: str) -> None:
    """List the keys holding VALUE, in key order.

    \b
    Examples:
        kvstore keys-for foods.db mirepoix
        kvstore keys-for foods.db 7 --value-type int --nl
    """
    v = argument(value, value_type, "VALUE", check_value)
    with open_store(db) as store:
        found: list[bool] = []  # streamed: only whether any key was listed is kept

        def records() -> Iterator[dict[str, Any]]:
            for k in store.keys_for(v):
                if not found:
                    found.append(True)
                yield {"key": k}

        emit(records(), ["key"], fmt, typed=("key",))
        if not found:
            _note_other_types(store, db, value, v, value_type)
