"""Key ranges for ``keys()``/``items()``: turning start/stop/prefix into SQL bounds.

Keys of every type live in one order, SQLite's: integers (and floats another program may
have written) by number, then strings by code point (their UTF-8 bytes sort the same way),
then bytes by byte value. A range ``[start, stop)`` is a slice of that order; a prefix is
the range from the prefix to the first string (or bytes) that no longer starts with it.
"""

from __future__ import annotations

from typing import Any

from kvstore.validate import check_key

LOWEST = float("-inf")
"""Below every key: numbers compare by value, and text and blobs sort after all numbers."""

_MAX_CHAR = 0x10FFFF


def bounds(start: Any, stop: Any, prefix: Any) -> tuple[Any, Any]:
    """``(lower, upper)``: keys ``>= lower`` and, unless upper is None, ``< upper``."""
    if prefix is not None:
        if start is not None or stop is not None:
            raise ValueError("give either a prefix or a start/stop range, not both")
        if type(prefix) is str:
            check_key(prefix)
            upper = _after_text(prefix)
            # No string after all strings that start with the prefix: bytes come next, and the
            # empty bytes value is the smallest of them.
            return prefix, b"" if upper is None else upper
        if type(prefix) is bytes:
            return prefix, _after_bytes(prefix)
        raise TypeError(f"a prefix must be str or bytes, not {type(prefix).__name__}")
    if start is not None:
        check_key(start)
    if stop is not None:
        check_key(stop)
    return (LOWEST if start is None else start), stop


def _after_text(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored: skip past them
            code = 0xE000
        if code <= _MAX_CHAR:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def _after_bytes(prefix: bytes) -> bytes | None:
    """The smallest bytes value greater than every one that starts with ``prefix``."""
    data = bytearray(prefix)
    while data:
        if data[-1] < 0xFF:
            data[-1] += 1
            return bytes(data)
        data.pop()
    return None
