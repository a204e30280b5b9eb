"""What the benchmark stores and asks: 32 foods, reproducible random keys, and the random
arguments of each timed operation."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

Pair = tuple[int, str]

FOODS = (
    "apple", "apricot", "avocado", "banana", "blackberry", "blueberry", "cherry", "clementine",
    "coconut", "cranberry", "date", "fig", "grape", "grapefruit", "guava", "kiwi",
    "lemon", "lime", "lychee", "mango", "melon", "nectarine", "orange", "papaya",
    "peach", "pear", "persimmon", "pineapple", "plum", "pomegranate", "quince", "raspberry",
)  # fmt: skip
"""The values: 32 foods, each held by about 1/32 of the keys."""

_MULT = 0x9E3779B97F4A7C15  # odd, so i -> i * _MULT mod 2**63 is a bijection
_MASK = (1 << 63) - 1


def key_of(i: int) -> int:
    """The ``i``-th key: distinct for distinct ``i``, scattered over the signed 64-bit range."""
    return (i * _MULT) & _MASK


def value_of(i: int) -> str:
    """The value of the ``i``-th pair: a food, pseudo-randomly but reproducibly chosen."""
    return FOODS[((i * 0xD1B54A32D192ED03) & _MASK) >> 58 & 31]


def pairs(start: int, stop: int) -> Iterator[Pair]:
    """Pairs ``start`` to ``stop`` as a stream: distinct random-looking keys, food values."""
    return ((key_of(i), value_of(i)) for i in range(start, stop))


def merge_pairs(n: int, seed: int = 3) -> list[Pair]:
    """``n`` pairs for a store holding pairs 0..n: half overwrite existing keys, half are new."""
    rng = random.Random(seed)
    half = n // 2
    old = [(key_of(i), value_of(i + 7919)) for i in rng.sample(range(n), half)]
    new = list(pairs(n, n + (n - half)))
    batch = old + new
    rng.shuffle(batch)
    return batch


class Workload:
    """Random arguments for the timed operations on a store holding pairs ``0..n``.

    Each method returns ``count`` arguments, one per operation of a batch. Writes alternate
    new keys (never handed out twice, so two stores sharing a file never collide) and
    overwrites of existing keys.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.rng = random.Random(seed)
        self._fresh = itertools.count(n)

    def keys(self, count: int) -> list[int]:
        """Existing keys, chosen at random."""
        return [key_of(self.rng.randrange(self.n)) for _ in range(count)]

    def values(self, count: int) -> list[str]:
        """Foods to count, chosen at random."""
        return [FOODS[self.rng.randrange(len(FOODS))] for _ in range(count)]

    def writes(self, count: int) -> list[Pair]:
        """Pairs to set: a new key, then an overwrite, and so on; random foods."""
        return [
            (key_of(next(self._fresh) if j % 2 == 0 else self.rng.randrange(self.n)),
             FOODS[self.rng.randrange(len(FOODS))])
            for j in range(count)
        ]  # fmt: skip
