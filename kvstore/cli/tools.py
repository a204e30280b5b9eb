"""Hooks for the commands that live elsewhere: ``kvstore demo`` (kvstore.demo) and
``kvstore bench`` (kvstore.bench, a package), named in the group's ``lazy_commands`` and
imported only when run or listed, so that ``kvstore count`` never pays for them. A module
that is not installed leaves its command out; one that needs an optional dependency becomes
a stand-in saying what to install.
"""

from __future__ import annotations

import importlib
from importlib.util import find_spec

import click

from kvstore.cli.options import add_global_options

def available(spec: str) -> bool:
    """Whether the module of a lazy command is installed."""
    try:
        return find_spec(spec.partition(":")[0]) is not None
    except ImportError:  # its parent package is missing
        return False


def load(name: str, spec: str) -> click.Command:
    """Import a lazy command; --timer then works after it too."""
    module_name, _, attribute = spec.partition(":")
    try:
        command = getattr(importlib.import_module(module_name), attribute)
    except ImportError as exc:  # the module is there but needs an optional dependency
        return unavailable(name, exc)
    if not isinstance(command, click.Command):
        raise TypeError(f"{module_name}.{attribute} is not a click command")
    return add_global_options(command, timeout=False)


def unavailable(name: str, exc: ImportError) -> click.Command:
    """A stand-in for a lazy command whose optional dependencies are not installed."""

    def fail() -> None:
        raise click.ClickException(
            f"`kvstore {name}` needs packages that are not installed ({exc}); "
            f"install them with: pip install 'kvstore[{name}]'"
        )

    return click.Command(name, callback=fail, help=f"(unavailable: {exc})", add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
