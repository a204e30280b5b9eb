"""Shared fixtures; shared functions live in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import kvstore


@pytest.fixture
def path(tmp_path: Path) -> str:
    """A path where no file exists yet."""
    return str(tmp_path / "store.db")


@pytest.fixture
def db(path: str) -> Iterator[kvstore.Store]:
    with kvstore.open(path) as store:
        yield store
