"""What verify() reports and repair() acts on, for every backend: :data:`Problem` is one of
:class:`Mismatch`, :class:`SchemaProblem` or :class:`ForeignRow`.

Found by :mod:`kvstore.sqlite.upkeep` and :mod:`kvstore.postgresql.upkeep`; ``kvstore.Mismatch``
and the others load this module on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvstore.validate import Value


@dataclass(frozen=True)
class Mismatch:
    """``counts`` disagrees with ``items`` for ``value``."""

    value: Value
    counted: int
    """How many keys in ``items`` hold the value."""
    stored: int
    """What ``counts`` says (0: no row)."""
    fixable: bool = field(default=True, compare=False, repr=False)
    """Whether repair() fixes it."""

    def __str__(self) -> str:
        return f"count of {self.value!r}: items hold {self.counted}, counts says {self.stored}"


@dataclass(frozen=True)
class SchemaProblem:
    """A table, index or trigger that keeps counts exact is missing, altered, or foreign."""

    name: str
    problem: str
    fixable: bool = field(default=True, compare=False, repr=False)
    """Whether repair() fixes it (see the backend's upkeep module for what it cannot)."""

    def __str__(self) -> str:
        return f"{self.name}: {self.problem}"


@dataclass(frozen=True)
class ForeignRow:
    """A row of ``items`` outside kvstore's types, written by another program.

    Iteration, ``pop()``, ``del`` and ``popitem()`` read and remove it; ``get()`` and ``set()``
    refuse its key; ``repair()`` keeps it (it is data).
    """

    key: object
    value: object
    problem: str
    fixable: bool = field(default=False, compare=False, repr=False)
    """Always False: such rows are data, and repair() keeps them."""

    def __str__(self) -> str:
        return f"row {self.key!r}: {self.problem}"


Problem = Mismatch | SchemaProblem | ForeignRow
