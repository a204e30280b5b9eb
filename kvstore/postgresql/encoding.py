"""How a key or value is stored in PostgreSQL: one ``bytea`` that keeps its exact type.

PostgreSQL has no typeless column, so ``1``, ``'1'`` and ``b'1'`` (three different values in
Python and in SQLite) need an encoding. Every stored key and value is a tagged ``bytea``:

* **numbers** (int and float): a class byte (``01`` -inf, ``02`` negative, ``03`` zero,
  ``04`` positive, ``05`` +inf), two bytes of binary exponent and the 64 bits that follow the
  leading 1, together the *identity* (11 bytes), which is the same for ``1`` and ``1.0`` and
  for ``0`` and ``-0.0``; then one type byte (``00`` int, ``01`` float) and the 8 raw bytes
  (``int8send``/``float8send``) from which the exact object comes back;
* **text**: ``10`` then UTF-8 (``text`` cannot hold NUL; ``bytea`` can);
* **bytes**: ``20`` then the bytes themselves.

Ordered as ``bytea`` (byte by byte, shorter first), encodings sort as SQLite sorts the values:
numbers by value, then text in UTF-8 byte order, then blobs; so iteration and paging order
are the same on both backends.

The *counting identity* (``vid``) is what ``counts`` is keyed by: the 11-byte identity of a
number, the whole encoding otherwise, and for an encoding longer than :data:`VID_LIMIT`
bytes, ``ff`` followed by its SHA-256 (an index entry must fit in a B-tree page).
The SQL functions ``kv()``, ``kv_show()`` and ``vid()`` in the store's schema
(kvstore.postgresql.ddl) compute the same bytes, so psql users write through them.
"""

from __future__ import annotations

import hashlib
import struct

from typing import Any

from kvstore.validate import Value

NEG_INF, NEGATIVE, ZERO, POSITIVE, POS_INF = 1, 2, 3, 4, 5
TEXT = 0x10
BLOB = 0x20
HASHED = 0xFF
INT, FLOAT = 0, 1
IDENTITY = 11  # bytes of a number's counting identity
VID_LIMIT = 512
_MASK64 = (1 << 64) - 1
_FLAT = bytes(10)
_INT = struct.Struct(">q")
_FLOAT = struct.Struct(">d")
_EXP = struct.Struct(">H")


def encode(obj: object) -> bytes:
    """The stored form of an int, float, str or bytes (already checked by kvstore.validate)."""
    if isinstance(obj, str):
        return b"\x10" + obj.encode("utf-8", "surrogateescape")
    if isinstance(obj, bytes):
        return b"\x20" + obj
    if isinstance(obj, int):
        return _number(obj) + b"\x00" + _INT.pack(obj)
    if isinstance(obj, float):
        return _number(obj) + b"\x01" + _FLOAT.pack(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _number(obj: int | float) -> bytes:
    """The 11-byte, order-preserving identity of a number: equal numbers, equal bytes."""
    try:
        numerator, denominator = obj.as_integer_ratio()
    except OverflowError:  # an infinity
        return bytes([POS_INF if obj > 0 else NEG_INF]) + _FLAT
    if numerator == 0:
        return bytes([ZERO]) + _FLAT
    magnitude = abs(numerator)
    top = magnitude.bit_length() - 1
    exponent = top - (denominator.bit_length() - 1)  # denominator is a power of two
    rest = magnitude - (1 << top)
    # A float's numerator has at most 53 significant bits, so shifting right loses nothing.
    fraction = rest << (64 - top) if top <= 64 else rest >> (top - 64)
    if numerator > 0:
        return bytes([POSITIVE]) + _EXP.pack(exponent + 0x8000) + fraction.to_bytes(8, "big")
    return bytes([NEGATIVE]) + _EXP.pack(0x7FFF - exponent) + (~fraction & _MASK64).to_bytes(8, "big")


def decode(data: bytes) -> Any:
    """The object :func:`encode` (or SQL ``kv()``) stored."""
    tag = data[0]
    if tag == TEXT:
        # A row another client wrote by hand with bytes that are not UTF-8 still reads (its bad
        # bytes as lone surrogates, which encode() turns back into the same bytes, so popitem()
        # and iteration work); verify() reports it.
        return bytes(data[1:]).decode("utf-8", "surrogateescape")
    if tag == BLOB:
        return bytes(data[1:])
    if tag < TEXT and len(data) == 20:
        if data[IDENTITY] == INT:
            return int(_INT.unpack_from(data, 12)[0])
        return float(_FLOAT.unpack_from(data, 12)[0])
    raise ValueError(f"not a kvstore encoding: {bytes(data[:24]).hex()}")


def vid(data: bytes) -> bytes:
    """The counting identity of an encoded value (see the module docstring)."""
    if data[0] < TEXT:
        return data[:IDENTITY]
    if len(data) > VID_LIMIT:
        return b"\xff" + hashlib.sha256(data).digest()
    return data


def value_id(value: Value) -> bytes:
    """``vid(encode(value))`` without building a long value's encoding twice."""
    return vid(encode(value))
