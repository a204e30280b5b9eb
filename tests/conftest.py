"""Shared fixtures. Test sizes for long tests scale with KVSTORE_TEST_SCALE (default 1.0)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import kvstore

SCALE = float(os.environ.get("KVSTORE_TEST_SCALE", "1.0"))


def scaled(n: int, minimum: int = 1) -> int:
    """``n`` scaled by KVSTORE_TEST_SCALE, for tests whose size is a knob."""
    return max(minimum, int(n * SCALE))


@pytest.fixture
def path(tmp_path: Path) -> str:
    """A path where no file exists yet."""
    return str(tmp_path / "store.db")


@pytest.fixture
def db(path: str) -> Iterator[kvstore.Store]:
    with kvstore.open(path) as store:
        yield store
