"""The store behaves like a dict + collections.Counter, step by step (Hypothesis stateful test)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import kvstore
from tests.helpers import SCALE

# A small key space so that overwrites, deletes and REPLACE-like paths happen often.
keys = st.one_of(
    st.integers(-3, 6),
    st.sampled_from(["a", "b", "é", "", "a\x00b"]),
    st.sampled_from([b"a", b"", b"\x00\xff"]),
    st.sampled_from([-(2**63), 2**63 - 1]),
)
# Values longer than the value indexes' prefix (32 bytes), sharing it, of equal lengths, as text
# and as bytes, with a NUL inside (where SQLite's length() and substr() of a text stop).
LONG = "p" * 32
values = st.one_of(
    st.sampled_from(["x", "y", "1", "", "ünï"]),
    st.integers(-2, 2),
    st.sampled_from([1.0, 2.5, -0.0, float("inf"), float("-inf")]),
    st.sampled_from([b"x", b"1", b""]),
    st.sampled_from([LONG, LONG + "a", LONG + "b", LONG + "ab", LONG.encode() + b"a", "a\x00" + LONG, "a\x00b" + LONG,
                     "é" * 16, "é" * 17]),
)
bad_keys = st.one_of(
    st.none(), st.booleans(), st.floats(), st.integers(min_value=2**63), st.just("\ud800"),
    st.just(bytearray(b"x")), st.tuples(st.integers()),
)
bad_values = st.one_of(
    st.none(), st.booleans(), st.just(float("nan")), st.integers(max_value=-(2**63) - 1),
    st.just("x\udfff"), st.lists(st.integers(), max_size=1), st.just(memoryview(b"x")),
)


def same(a: object, b: object) -> bool:
    """Equal and of the same type (1 and 1.0 are not the same stored object)."""
    return type(a) is type(b) and a == b


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="kvstore-model-")
        self.path = os.path.join(self.dir, "model.db")
        self.db = self.open()
        self.model: dict = {}
        # One saved copy of the model per open transaction level, to roll back to.
        self.saved: list[dict] = []
        self.contexts: list = []

    def open(self) -> kvstore.Store:
        """The store under test (tests/test_pg_store.py runs this machine on PostgreSQL)."""
        return kvstore.open(self.path)

    def teardown(self) -> None:
        while self.contexts:
            self.contexts.pop().__exit__(None, None, None)
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- writes ------------------------------------------------------------------------

    @rule(key=keys, value=values)
    def set(self, key, value):
        self.db[key] = value
        self.model[key] = value

    @rule(key=keys)
    def delete(self, key):
        assert self.db.delete(key) == (key in self.model)
        self.model.pop(key, None)

    @rule(key=keys)
    def del_item(self, key):
        if key in self.model:
            del self.db[key]
            del self.model[key]
        else:
            with pytest.raises(KeyError):
                del self.db[key]

    @rule(pairs=st.lists(st.tuples(keys, values), max_size=20))
    def update(self, pairs):
        self.db.update(pairs)
        self.model.update(pairs)

    @rule(pairs=st.lists(st.tuples(keys, values), max_size=5), bad=st.tuples(bad_keys, values) | st.tuples(keys, bad_values))
    def update_with_a_bad_pair_changes_nothing(self, pairs, bad):
        with pytest.raises((TypeError, ValueError, OverflowError)):
            self.db.update([*pairs, bad, *pairs])

    @rule(key=bad_keys, value=values)
    def bad_key(self, key, value):
        with pytest.raises((TypeError, ValueError, OverflowError)):
            self.db[key] = value

    @rule(key=keys, value=bad_values)
    def bad_value(self, key, value):
        with pytest.raises((TypeError, ValueError, OverflowError)):
            self.db[key] = value

    # -- transactions ------------------------------------------------------------------

    @precondition(lambda self: len(self.contexts) < 3)
    @rule()
    def begin(self):
        context = self.db.transaction()
        context.__enter__()
        self.contexts.append(context)
        self.saved.append(dict(self.model))

    @precondition(lambda self: self.contexts)
    @rule()
    def commit(self):
        self.contexts.pop().__exit__(None, None, None)
        self.saved.pop()

    @precondition(lambda self: self.contexts)
    @rule()
    def roll_back(self):
        context = self.contexts.pop()
        error = RuntimeError("roll back")
        with pytest.raises(RuntimeError):
            context.__exit__(RuntimeError, error, None)
            raise error
        self.model = self.saved.pop()

    @precondition(lambda self: not self.contexts)
    @rule()
    def reopen(self):
        self.db.close()
        self.db = self.open()

    # -- batch reads -------------------------------------------------------------------

    @rule(asked=st.lists(keys, max_size=8))
    def get_many(self, asked):
        got = self.db.get_many(asked)
        expected = {key: self.model[key] for key in asked if key in self.model}
        assert list(got) == list(expected)  # the order asked, each key once
        for key, value in expected.items():
            assert same(got[key], value), key

    @rule(asked=st.lists(values, max_size=8))
    def count_many(self, asked):
        held = Counter(self.model.values())
        assert self.db.count_many(asked) == {value: held[value] for value in asked}

    # -- checks at every step ----------------------------------------------------------

    @invariant()
    def mapping_agrees(self):
        assert len(self.db) == len(self.model)
        stored = dict(self.db.items())
        assert stored.keys() == self.model.keys()
        for key, value in self.model.items():
            assert same(stored[key], value), key
            assert same(self.db[key], value)
            assert key in self.db

    @invariant()
    def counts_agree(self):
        expected = Counter(self.model.values())
        assert self.db.counts() == dict(expected)
        for value in [*expected, "absent", 7]:
            for strategy in ("counts", "group_by", "scan"):
                assert self.db.count(value, strategy=strategy) == expected[value], (value, strategy)
        assert sorted(n for _, n in self.db.most_common()) == sorted(expected.values())
        top = self.db.most_common(2)
        assert [n for _, n in top] == [n for _, n in expected.most_common(2)]
        for value in expected:
            assert sorted(map(repr, self.db.keys_for(value))) == sorted(
                repr(k) for k, v in self.model.items() if v == value
            )

    @invariant()
    def nothing_drifted(self):
        if not self.contexts:
            assert self.db.verify() == []


StoreMachine.TestCase.settings = settings(
    max_examples=int(60 * SCALE) or 10,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreMachine = StoreMachine.TestCase


class BulkPathMachine(StoreMachine):
    """The same model, with update() switching to its set-based path after a handful of pairs."""

    def __init__(self) -> None:
        super().__init__()
        self._patch = pytest.MonkeyPatch()
        self._patch.setattr(kvstore.sqlite.bulk, "CHUNK", 3)
        self._patch.setattr(kvstore.sqlite.bulk, "BULK_MIN", 4)

    def teardown(self) -> None:
        super().teardown()
        self._patch.undo()


BulkPathMachine.TestCase.settings = StoreMachine.TestCase.settings
TestBulkPathMachine = BulkPathMachine.TestCase


class MemoryMachine(StoreMachine):
    """The same model on an in-memory store (``kvstore.open(":memory:")``); no reopen step,
    since closing an in-memory store discards it."""

    def __init__(self) -> None:
        super().__init__()
        self.db.close()
        self.db = kvstore.open(":memory:")

    def reopen(self) -> None:  # not a rule here: shadows the parent's
        pass


MemoryMachine.TestCase.settings = settings(StoreMachine.TestCase.settings, max_examples=int(30 * SCALE) or 10)
TestMemoryMachine = MemoryMachine.TestCase
