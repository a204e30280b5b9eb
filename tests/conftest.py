"""Shared fixtures; shared functions live in tests/helpers.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import kvstore
from tests import pg_server


@pytest.fixture
def path(tmp_path: Path) -> str:
    """A path where no file exists yet."""
    return str(tmp_path / "store.db")


@pytest.fixture
def db(path: str) -> Iterator[kvstore.Store]:
    with kvstore.open(path) as store:
        yield store


# -- PostgreSQL (tests/pg_server.py) ----------------------------------------------------------------------------------
# One throwaway cluster per pytest session, started on first use; KVSTORE_TEST_PG_URL points the tests at an existing
# server instead. Without binaries the tests are skipped, except in CI (CI=true), where that is a failure.

_PG_FIXTURES = {"pg_url", "pg_tcp_url", "pg_schema"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses a PostgreSQL fixture carries the postgresql marker (so -m 'not postgresql' works)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgresql = callspec is not None and callspec.params.get("any_db") == "postgresql"
        if on_postgresql or _PG_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgresql)


@pytest.fixture(scope="session")
def _pg_urls() -> Iterator[tuple[str, str]]:
    external = os.environ.get(pg_server.URL_ENV)
    if external:
        yield external, external
        return
    try:
        server = pg_server.start_server()
    except pg_server.Unavailable as e:
        reason = str(e)
    else:
        reason = ""
    if reason:   # outside the except block, so the report shows one message, not a chain
        if pg_server.in_ci():
            pytest.fail(f"PostgreSQL tests must not be skipped in CI (CI=true): {reason}", pytrace=False)
        pytest.skip(f"no PostgreSQL server: {reason}")
    try:
        yield server.url, server.tcp_url
    finally:
        server.remove()


@pytest.fixture(scope="session")
def pg_url(_pg_urls: tuple[str, str]) -> str:
    """libpq URL of a superuser connection (Unix socket) to the session's throwaway cluster, or KVSTORE_TEST_PG_URL."""
    return _pg_urls[0]


@pytest.fixture(scope="session")
def pg_tcp_url(_pg_urls: tuple[str, str]) -> str:
    """postgresql://kvstore_test:secret@127.0.0.1:PORT/kvstore_test (password over TCP), or KVSTORE_TEST_PG_URL."""
    return _pg_urls[1]


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh schema name that does not exist yet (the code under test creates it), in pg_url's database;
    dropped with CASCADE afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    try:
        yield name
    finally:
        pg_server.drop_schema(pg_url, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, path: str) -> Iterator[kvstore.StoreAPI]:
    """A new, empty store on each backend in turn: for tests of the public API only (the
    shared contract); a test that reaches into SQLite's file or modules uses ``db``."""
    if request.param == "sqlite":
        with kvstore.open(path) as store:
            yield store
        return
    url, schema = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")
    with kvstore.open(url, schema=schema) as store:
        yield store
