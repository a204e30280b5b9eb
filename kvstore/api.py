"""The dialect-neutral part of a store: what every backend's Store shares, and what it must provide.

:class:`StoreAPI` is the base of :class:`kvstore.sqlite.store.Store` (SQLite) and
:class:`kvstore.postgresql.store.PostgresStore`. It holds the mapping protocol built on a
backend's ``get``/``delete``, the key/item/value views, argument checks shared by both, the
batched load and file formats; each backend supplies the statements (documented below as
abstract methods), its connections, transactions and bulk path. ``kvstore.open()`` returns a
StoreAPI, whichever backend a path or URL names.
"""

from __future__ import annotations

import itertools
import os
import time
from abc import abstractmethod
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, MutableMapping, ValuesView
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal, Self, cast

from kvstore.validate import Key, Value

if TYPE_CHECKING:
    from kvstore.problems import Problem

Strategy = Literal["counts", "group_by", "scan"]
"""How count() answers: the maintained counts, an aggregate over the value index, or a scan."""

MISSING: Any = object()
"""The default that tells "no such key" apart from every value a store can hold."""


class StoreAPI(MutableMapping):  # type: ignore[type-arg]
    """A dict-like store of ``key -> value`` whose ``count(value)`` is instant, on any backend."""

    path: str
    """Where the store lives, for messages: a file's absolute path, or a URL without its password."""

    # -- what each backend provides ----------------------------------------------------------

    @abstractmethod
    def get(self, key: Key, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""

    @abstractmethod
    def set(self, key: Key, value: Value) -> None:
        """Insert or overwrite; committed when this returns unless inside ``transaction()``."""

    @abstractmethod
    def delete(self, key: Key) -> bool:
        """Remove ``key``; True if it was there."""

    @abstractmethod
    def count(self, value: Value, strategy: Strategy = "counts") -> int:
        """How many keys hold ``value``: ``counts`` (maintained), ``group_by`` (index) or ``scan``."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Self]:
        """Make the writes inside the block atomic; nested blocks are savepoints."""

    @abstractmethod
    def update(self, other: Any = (), /, **kwargs: Value) -> None:
        """Write many pairs in one transaction; any bad pair rejects the whole batch."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection; using the store afterwards raises kvstore.Error."""

    @abstractmethod
    def _item_pages(self) -> Iterator[tuple[Key, Value]]:
        """Every pair in key order, read a page at a time."""

    @abstractmethod
    def _outside_transaction(self, what: str, why: str) -> None:
        """Refuse ``what`` inside this thread's transaction() block, saying ``why``."""

    if TYPE_CHECKING:  # the rest of the API, typed here, implemented by each backend
        def get_many(self, keys: Iterable[Key]) -> dict[Key, Value]: ...
        def count_many(self, values: Iterable[Value]) -> dict[Value, int]: ...
        def counts(self) -> dict[Value, int]: ...
        def most_common(self, n: int | None = None) -> list[tuple[Value, int]]: ...
        def keys_for(self, value: Value, limit: int | None = None) -> Iterator[Key]: ...
        def incr(self, key: Key, delta: int | float = 1) -> int | float: ...
        def clear(self) -> None: ...
        def verify(self) -> list[Problem]: ...
        def repair(self) -> int: ...
        def stats(self) -> dict[str, dict[str, int]]: ...
        def backup(self, dest: str | os.PathLike[str]) -> None: ...
        def vacuum(self) -> None: ...
        def keys(self, start: Key | None = None, stop: Key | None = None, *,  # type: ignore[override]
                 prefix: str | bytes | None = None) -> KeysView[Key] | Iterator[Key]: ...
        def items(self, start: Key | None = None, stop: Key | None = None, *,  # type: ignore[override]
                  prefix: str | bytes | None = None) -> ItemsView[Key, Value] | Iterator[tuple[Key, Value]]: ...

    # -- the mapping, on top of those ----------------------------------------------------------

    def __getitem__(self, key: Key) -> Value:
        value = self.get(key, MISSING)
        if value is MISSING:
            raise KeyError(key)
        return cast(Value, value)

    def __setitem__(self, key: Key, value: Value) -> None:
        self.set(key, value)

    def __delitem__(self, key: Key) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return self.get(key, MISSING) is not MISSING  # type: ignore[arg-type]

    def values(self) -> ValuesView[Value]:
        """A view of the values in key order, read a page at a time."""
        return _Values(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # A store is a handle: equal only to itself (compare dict(a) == dict(b) to compare
    # contents), and hashable so it can be tracked (fork safety, the checkpointer).
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @staticmethod
    def _checked_n(n: int | None) -> int | None:
        """most_common()'s ``n``: None for all, 0 for none."""
        if n is not None and type(n) is not int:
            raise TypeError(f"n must be a whole number or None, not {type(n).__name__}")
        return None if n is None else max(n, 0)

    @staticmethod
    def _checked_limit(limit: int | None) -> int | None:
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ValueError(f"limit must be a whole number 0 or more, or None; got {limit!r}")
        return limit

    # -- many pairs ----------------------------------------------------------------------------

    def update_in_batches(self, pairs: Any, batch: int = 100_000, pause: float = 0.1) -> int:
        """Write many pairs as a series of update() transactions of ``batch`` pairs; the count.

        For loads of many millions: between batches other writers get in (for ``pause``
        seconds) instead of waiting for the whole load. Each batch is all-or-nothing; a crash
        or a bad pair half-way keeps the batches already committed and nothing of the failing
        batch (the exception carries a note saying how many pairs were committed). Use
        update() when the whole load must be all-or-nothing.
        """
        if type(batch) is not int or batch < 1:
            raise ValueError(f"batch must be a whole number of pairs, 1 or more; got {batch!r}")
        if not 0 <= pause < 60:
            raise ValueError(f"pause must be 0 to 60 seconds; got {pause!r}")
        self._outside_transaction("update_in_batches()", "it commits as it goes; use update() there")
        stream, written = iter(pairs_of(pairs)), 0
        while True:
            chunk = list(itertools.islice(stream, batch))
            if not chunk:
                return written
            if written:
                time.sleep(pause)
            try:
                self.update(chunk)
            except Exception as exc:
                exc.add_note(f"update_in_batches(): {written:,} pairs were committed before this batch; "
                             "nothing of this batch was kept")
                raise
            written += len(chunk)
            if len(chunk) < batch:
                return written

    def load(self, source: Any, format: Any = None, **options: Any) -> int:
        """Load the pairs of a file (a path or a file object) in one transaction; the pairs read.

        ``format``: a kvstore.formats.Format or its name (jsonl, json, csv, tsv), guessed from
        the file name when omitted; ``key_type=``/``value_type=`` read untyped columns. All or
        nothing: the first bad row raises kvstore.formats.FormatError and nothing is kept.
        """
        from kvstore import formats

        return formats.load(self, source, format, **options)

    def dump(self, dest: Any, format: Any = "jsonl") -> int:
        """Write every pair, in key order, to a path or a file object, types kept; the pairs written."""
        from kvstore import formats

        return formats.dump(self, dest, format)


def pairs_of(other: Any) -> Iterable[Any]:
    """The (key, value) pairs of a mapping, of an object with keys(), or of an iterable."""
    if isinstance(other, Mapping):
        return other.items()
    if hasattr(other, "keys"):
        return ((k, other[k]) for k in other.keys())
    return cast(Iterable[Any], other)


class Items(ItemsView):  # type: ignore[type-arg]
    """``store.items()``: pairs in key order, a page at a time."""

    def __iter__(self) -> Iterator[tuple[Key, Value]]:
        return cast(StoreAPI, self._mapping)._item_pages()  # type: ignore[attr-defined]  # set by MappingView


class _Values(ValuesView):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[Value]:
        return (value for _, value in cast(StoreAPI, self._mapping)._item_pages())  # type: ignore[attr-defined]
