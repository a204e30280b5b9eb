"""The ``kvstore`` command line as a click group: ``kvstore [--timer] [--timeout S] COMMAND DB ARGS [OPTIONS]``.

Here: the click group, the global options and the translation of errors into exit
codes (``Error: ...`` and 1 for bad input or a failed operation, 2 for usage mistakes; a
closed pipe ends the process quietly, by SIGPIPE, as it does other Unix tools). The commands
live in one module per family: :mod:`.items` (set, get, delete, incr), :mod:`.counting`
(count, counts, keys-for), :mod:`.files` (load, dump, backup, vacuum), :mod:`.upkeep`
(verify, repair, migrate, stats) and :mod:`.tools` (demo and bench, loaded lazily);
:mod:`.options` and :mod:`.output` are what they share. File formats are
:mod:`kvstore.formats`, also used by the Python API.

Startup time matters: the plain ``kvstore count DB VALUE`` is answered by :mod:`.fast`
without this module (see :func:`kvstore.cli.main`). Importing this module loads click,
kvstore's core and :mod:`.options` only. A command's module is imported when that command
runs (or help lists it), so ``kvstore count`` with options reads just :mod:`.counting` and
:mod:`.output`; json, csv, tabulate, :mod:`kvstore.formats`,
SQLAlchemy, Alembic, the demo and the benchmark come with the commands that use them.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
from typing import Any, NoReturn

import click

import kvstore
from kvstore.cli.options import mmap_option, phrase, schema_option, timeout_option, timer_option

__all__ = ["COMMANDS", "KvstoreGroup", "cli"]

COMMANDS = {
    "set": "items:set_", "get": "items:get", "delete": "items:delete", "incr": "items:incr",
    "count": "counting:count", "counts": "counting:counts", "keys-for": "counting:keys_for",
    "load": "files:load", "dump": "files:dump", "backup": "files:backup", "vacuum": "files:vacuum",
    "verify": "upkeep:verify", "repair": "upkeep:repair", "migrate": "upkeep:migrate", "stats": "upkeep:stats",
}
"""kvstore's own commands: name -> "module:attribute" in this package, imported when used."""


class KvstoreGroup(click.Group):
    """A click group that loads some commands lazily and turns user errors into ``Error: ...``.

    ``modules`` (``"name": "module:attribute"`` in this package) are imported when run or
    listed. ``lazy_commands`` (the same, from anywhere: demo, bench) too; a lazy module that
    is not installed leaves its command out, one missing an optional dependency becomes a
    stand-in saying what to install (:mod:`.tools`).
    """

    def __init__(self, *args: Any, modules: dict[str, str] | None = None,
                 lazy_commands: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.modules = modules or {}
        self.lazy_commands = lazy_commands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        from kvstore.cli import tools

        lazy = [name for name, spec in self.lazy_commands.items() if tools.available(spec)]
        return sorted({*super().list_commands(ctx), *self.modules, *lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.modules:
            module, _, attribute = self.modules[cmd_name].partition(":")
            command: click.Command = getattr(importlib.import_module(f"kvstore.cli.{module}"), attribute)
            return command
        if cmd_name in self.lazy_commands:
            from kvstore.cli import tools

            spec = self.lazy_commands[cmd_name]
            if tools.available(spec):
                return tools.load(cmd_name, spec)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a closed pipe shows here, not when Python exits
            return result
        except (kvstore.Error, TypeError, ValueError, OverflowError) as exc:
            raise click.ClickException(phrase(str(exc))) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                _end_quietly()
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from exc


def _end_quietly() -> NoReturn:
    """stdout's reader has gone (`kvstore dump DB | head -1`): end as Unix tools do, by SIGPIPE.

    stdout is pointed at /dev/null first, so that nothing left in its buffer fails again.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (click's test runner)
        raise click.exceptions.Exit(1) from None
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    import signal

    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    raise click.exceptions.Exit(1)  # Windows: no SIGPIPE


@click.group(
    cls=KvstoreGroup,
    modules=COMMANDS,
    lazy_commands={"demo": "kvstore.demo:command", "bench": "kvstore.bench:command"},
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Run `kvstore COMMAND --help` for a command's options and an example. --timer and "
           "--timeout may also follow the command.",
)
@click.version_option(package_name="kvstore", message="%(prog)s %(version)s")
def cli() -> None:
    """A persistent key-value store on one SQLite file with an instant count(value).

    Keys and values are strings unless --key-type/--value-type say otherwise; bytes are
    written as hex (00ff). JSON output writes bytes as {"$bytes": "<hex>"}.

    \b
    Example:
        kvstore set foods.db 42 apple --key-type int
        kvstore count foods.db apple
    """
    _say_what_takes_long()


cli.params[:0] = [timer_option(), timeout_option(), mmap_option(), schema_option()]


class _Stderr(logging.Handler):
    """Shows kvstore's INFO messages (an upgrade in progress) on whatever stderr is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _say_what_takes_long() -> None:
    """The CLI, unlike a library user, wants to hear that a file is being upgraded and why it waits."""
    log = logging.getLogger("kvstore.migrate")
    if not any(isinstance(handler, _Stderr) for handler in log.handlers):
        log.addHandler(_Stderr())
        log.setLevel(logging.INFO)

