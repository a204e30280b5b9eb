"""Durations and sizes for people: one formatter for ``demo``, ``bench``, ``targets``,
``stats`` and :mod:`kvstore.timer` (``kvstore.stopwatch``).

Three significant digits (trailing zeros kept, so a column reads at one precision), a space,
then the unit: ``37.2 ns``, ``3.41 µs``, ``5.00 ms``, ``1.50 s``. Sizes use IEC binary units
(KiB = 1,024 bytes, MiB, GiB, TiB) and show whole bytes below 1 KiB: ``512 B``, ``4.00 KiB``,
``21.6 MiB``. A value that would round up to 1000 of a unit moves to the next one
(``0.977 MiB``, never ``1e+03 KiB``). Importing this module costs nothing: it imports
only :mod:`math`.
"""

from __future__ import annotations

import math

__all__ = ["format_duration", "format_size"]

DIGITS = 3
_TIME_UNITS = (("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0))
_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def _significant(value: float, digits: int) -> str:
    """``value`` (> 0) with ``digits`` significant digits, trailing zeros kept."""
    decimals = max(0, digits - 1 - math.floor(math.log10(value)))
    rounded = round(value, decimals)  # 0.9996 -> 1.0: count the digits of what is shown
    if rounded > 0:
        decimals = max(0, digits - 1 - math.floor(math.log10(rounded)))
    return f"{rounded:.{decimals}f}"


def _fits(value: float, digits: int) -> bool:
    """Whether ``value`` (> 0) still shows fewer than four integer digits once rounded."""
    return float(_significant(value, digits)) < 1000


def format_duration(seconds: float, digits: int = DIGITS) -> str:
    """A duration in seconds as ``37.2 ns``, ``3.41 µs``, ``5.00 ms``, ``1.50 s`` or ``1,234 s``.

    Negative durations keep their sign; NaN (a missing measurement) is ``-``.
    """
    if math.isnan(seconds):
        return "-"
    if seconds < 0:
        return "-" + format_duration(-seconds, digits)
    if seconds == 0:
        return "0 s"
    if math.isinf(seconds):
        return "inf s"
    for unit, scale in _TIME_UNITS:
        value = seconds / scale
        if unit == "s" and value >= 1000:
            return f"{value:,.0f} s"
        if _fits(value, digits):
            return f"{_significant(value, digits)} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_size(size: float, digits: int = DIGITS) -> str:
    """A byte count in IEC units: ``0 B``, ``1023 B``, ``4.00 KiB``, ``21.6 MiB``, ``3.00 GiB``.

    Below 1 KiB the exact number of bytes is shown. Negative sizes keep their sign.
    """
    if math.isnan(size):
        return "-"
    if size < 0:
        return "-" + format_size(-size, digits)
    if size < 1024:
        return f"{size:.0f} B" if float(size).is_integer() else f"{size:.1f} B"
    value = float(size)
    for unit in _SIZE_UNITS:
        value /= 1024
        if _fits(value, digits) or unit == _SIZE_UNITS[-1]:
            return f"{_significant(value, digits)} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover
