"""Looking after a store: ``verify``, ``repair``, ``migrate``, ``stats``.

Problems (:mod:`kvstore.problems`) are printed in the command line's words: values as tables
show them (x'00ff'), numbers with separators, `kvstore repair DB` where the API says repair().
"""

from __future__ import annotations

import re

import click

from kvstore.cli.options import Command, db_argument, describe, exists, is_url, open_store, phrase, plural, real, schema, timeout
from kvstore.cli.output import emit, output_options
from kvstore.problems import ForeignRow, Mismatch, Problem

_UNFIXABLE = re.compile(r"repair\(\) cannot|neither use nor rebuild|cannot exist")
"""What upkeep says of a schema problem repair() leaves alone (it exposes no flag for it)."""


def show(problem: Problem, db: str) -> str:
    """One problem as the command line prints it."""
    if isinstance(problem, Mismatch):
        return f"count of {describe(problem.value)}: items hold {problem.counted:,}, counts says {problem.stored:,}"
    if isinstance(problem, ForeignRow):
        return f"row {describe(problem.key)}: {phrase(problem.problem, db)}"
    return phrase(str(problem), db)


def repairable(problem: Problem) -> bool:
    """Whether `kvstore repair` fixes this problem (rows outside kvstore's types are data, kept)."""
    flag = getattr(problem, "fixable", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(problem, ForeignRow):
        return False
    return isinstance(problem, Mismatch) or not _UNFIXABLE.search(str(problem))


def _problems(count: int) -> str:
    return plural(count, "problem")


@click.command(cls=Command)
@db_argument
def verify(db: str) -> None:
    """Check the counts, tables, index and triggers against kvstore's model; exit 1 listing problems.

    Suggests `kvstore repair` only when it can fix something; rows that other programs wrote
    outside kvstore's types are reported but are data that repair keeps.

    \b
    Example:
        kvstore verify foods.db || kvstore repair foods.db
    """
    with open_store(db) as store:
        problems = store.verify()
        if not problems:
            click.echo(f"OK: counts are exact ({len(store):,} items, {len(store.counts()):,} values).")
            return
    for problem in problems:
        click.echo(show(problem, db))
    fixable = sum(map(repairable, problems))
    found = f"{db}: {_problems(len(problems))} found"
    if fixable == len(problems):
        raise click.ClickException(f"{found}; fix {'it' if fixable == 1 else 'them'} with `kvstore repair {db}`")
    if fixable:
        raise click.ClickException(f"{found}; `kvstore repair {db}` fixes {fixable:,} of them (see above for the others)")
    raise click.ClickException(f"{found}, which `kvstore repair` cannot fix: see above")


@click.command(cls=Command)
@db_argument
def repair(db: str) -> None:
    """Restore the counts, tables, index and triggers; list what was fixed and what was not.

    Exits 1 when problems remain that repair cannot fix (each says what to do).

    \b
    Example:
        kvstore repair foods.db
    """
    with open_store(db) as store:
        before = store.verify()
        fixed = store.repair() if any(map(repairable, before)) else 0
        remaining = store.verify() if fixed else before
    if not before:
        click.echo("Nothing to repair: counts are exact.")
        return
    if fixed:
        click.echo(f"Repaired {_problems(fixed)}:")
        for problem in before:
            if problem not in remaining:
                click.echo(f"  {show(problem, db)}")
    if remaining:
        click.echo(f"Not repaired ({_problems(len(remaining))}):")
        for problem in remaining:
            click.echo(f"  {show(problem, db)}")
        raise click.ClickException(f"{db}: {_problems(len(remaining))} left that `kvstore repair` cannot fix: see above")


@click.command(cls=Command)
@db_argument
@output_options(typed=False)
def stats(db: str, fmt: str) -> None:
    """Rows and bytes on disk of the items, the value index, the counts and the whole file.

    The file's row is its size only (rows are not counted for the file). The table shows
    sizes in IEC units (KiB, MiB); --json/--csv/--tsv/--nl give exact bytes.

    \b
    Examples:
        kvstore stats foods.db
        kvstore stats foods.db --json
    """
    with open_store(db) as store:
        parts = store.stats()
    if fmt == "table":
        from kvstore.units import format_size

        table = [{"name": name, "rows": "" if name == "file" else f"{numbers['rows']:,}",
                  "size": format_size(numbers["bytes"])} for name, numbers in parts.items()]
        emit(table, ["name", "rows", "size"], fmt)
    else:
        records = [{"name": name, **numbers, **({"rows": None} if name == "file" else {})}
                   for name, numbers in parts.items()]
        emit(records, ["name", "rows", "bytes"], fmt)


@click.command(cls=Command)
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
    from kvstore.sqlite import migrate as migrations
    from kvstore.sqlite.connection import Options
    from kvstore.constants import HEAD_REVISION, KNOWN_REVISIONS

    if not exists(db):
        raise click.ClickException(f"{db}: no such store; check the path" + (" and --schema" if is_url(db) else ""))
    known = ("head", "base", *KNOWN_REVISIONS)
    if target not in known:
        raise click.BadParameter(f"{target!r} is not a revision kvstore knows; use one of: {', '.join(known)}",
                                 param_hint="--to")
    if target == "base" and not yes:
        raise click.ClickException(f"{db}: moving to base drops the items table and every item in it; "
                                   "pass --yes if that is what you want")
    goal = {"head": HEAD_REVISION, "base": None}.get(target, target)
    if is_url(db):
        from kvstore.postgresql import schema as schemas

        current = schemas.revision(schemas.settings_for(real(db), timeout()), schema())
        if current != goal:
            schemas.migrate(real(db), schema(), target, timeout())
    else:
        options = Options(timeout=timeout())
        current = migrations.current_revision(db, options)
        if current != goal:
            migrations.migrate(db, target, options)
    if current == goal:
        click.echo(f"{db}: at revision {_revision(current, HEAD_REVISION)}; nothing to do.")
        return
    click.echo(f"{db}: migrated from revision {_revision(current, HEAD_REVISION)} to {_revision(goal, HEAD_REVISION)}.")


def _revision(revision: str | None, head: str) -> str:
    if revision is None:
        return "base (empty schema)"
    return f"{revision} (head)" if revision == head else revision
