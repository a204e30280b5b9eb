"""Checks that a key or value can be stored and will come back as exactly the same object.

Everything is checked before anything is written, so a rejected call changes nothing.
Only exact types pass: a subclass (an IntEnum, a str subclass) would come back as its base
type, and bool would come back as int, so those are refused rather than silently changed.
"""

from __future__ import annotations

import math
from typing import Union, cast

Key = Union[int, str, bytes]
Value = Union[str, int, float, bytes]

INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1
_PLAIN = (int, float, str, bytes)


def check_key(key: object) -> Key:
    """Return ``key`` if it can be stored as a key; raise TypeError/ValueError/OverflowError if not."""
    kind = type(key)
    if kind is int:
        _check_int(key, "key")  # type: ignore[arg-type]
    elif kind is str:
        _check_text(key, "key")  # type: ignore[arg-type]
    elif kind is not bytes:
        raise TypeError(_unsupported("key", key, "int, str or bytes"))
    return key  # type: ignore[return-value]


def check_stored_key(key: object) -> object:
    """Return ``key`` if it may name a row to remove: a valid key, or a float or None.

    Other programs may write float keys (and NULL ones, into an items table recreated without
    NOT NULL); iteration returns them, so ``del db[k]`` and ``pop(k)`` must accept them back.
    NaN is refused: SQLite binds it as NULL, so it would name the NULL key.
    """
    if key is None or (type(key) is float and not math.isnan(key)):
        return key
    return check_key(key)


def check_value(value: object) -> Value:
    """Return ``value`` if it can be stored as a value; raise TypeError/ValueError/OverflowError if not."""
    kind = type(value)
    if kind is str:
        _check_text(value, "value")  # type: ignore[arg-type]
    elif kind is int:
        _check_int(value, "value")  # type: ignore[arg-type]
    elif kind is float:
        if value != value:
            raise ValueError(
                "value NaN is not supported: SQLite stores NaN as NULL, so it could not come "
                "back; store None-like markers as a string instead"
            )
    elif kind is not bytes:
        raise TypeError(_unsupported("value", value, "str, int, float or bytes"))
    return value  # type: ignore[return-value]


def check_pair(pair: object) -> tuple[Key, Value]:
    """Validate one ``(key, value)`` item of a bulk update."""
    try:
        key, value = cast(tuple[object, object], pair)  # unpacking is the check

    except (TypeError, ValueError):
        raise TypeError(
            f"update() needs a mapping or an iterable of (key, value) pairs; got the item {pair!r:.80}"
        ) from None
    return check_key(key), check_value(value)


def _check_int(number: int, role: str) -> None:
    if not INT_MIN <= number <= INT_MAX:
        raise OverflowError(
            f"{role} {number} does not fit in SQLite's signed 64-bit integer "
            f"({INT_MIN}..{INT_MAX}); store it as a string or bytes instead"
        )


def _check_text(text: str, role: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{role} {text[:40]!r} cannot be stored: {exc.reason} at position {exc.start} "
            "(SQLite text must be valid UTF-8); store it as bytes instead"
        ) from None


def _unsupported(role: str, obj: object, allowed: str) -> str:
    kind = type(obj)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if kind is bool:
        hint = "bool would come back as int; store int(flag) or a string"
    elif obj is None and role == "key":
        hint = "None cannot be a key; use a marker string or number"
    elif obj is None:
        hint = "SQLite's NULL is not stored; delete the key instead, or store a marker string"
    elif kind not in _PLAIN and isinstance(obj, _PLAIN):
        base = next(plain for plain in _PLAIN if isinstance(obj, plain))
        hint = f"a subclass would come back as plain {base.__name__}; convert it with {base.__name__}(x)"
    elif isinstance(obj, (bytearray, memoryview)):
        hint = "convert it with bytes(x)"
    else:
        hint = "convert or serialise it to one of those types first"
    return f"{role} of type {name} is not supported: a {role} must be {allowed}; {hint}"
