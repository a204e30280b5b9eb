"""The PostgreSQL test fixtures themselves (tests/pg_server.py, conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pg_server

pytestmark = pytest.mark.postgresql

REPO = Path(__file__).resolve().parent.parent


def test_pg_url_connects_as_superuser(pg_url):
    import psycopg

    with psycopg.connect(pg_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        if not os.environ.get(pg_server.URL_ENV):
            assert conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone() == (True,)
            assert conn.execute("show fsync").fetchone() == ("off",)


def test_pg_tcp_url_needs_the_password(pg_tcp_url):
    import psycopg

    with psycopg.connect(pg_tcp_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        if not os.environ.get(pg_server.URL_ENV):
            assert conn.execute("select current_user, current_database()").fetchone() == ("kvstore_test", "kvstore_test")
    if os.environ.get(pg_server.URL_ENV):
        return  # an external server's authentication is its own business
    wrong = pg_tcp_url.replace(f":{pg_server.TEST_PASSWORD}@", ":wrong@")
    assert wrong != pg_tcp_url
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


_seen_schemas: list[str] = []


def test_pg_schema_does_not_exist_yet(pg_url, pg_schema):
    import psycopg

    assert pg_schema.startswith("t_")
    assert not pg_server.schema_exists(pg_url, pg_schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:   # what the code under test would do
        conn.execute(f'create schema "{pg_schema}"')
        conn.execute(f'create table "{pg_schema}".items (k int primary key)')
    assert pg_server.schema_exists(pg_url, pg_schema)
    _seen_schemas.append(pg_schema)


def test_pg_schema_is_dropped_after_the_test(pg_url, pg_schema):
    if not _seen_schemas:
        pytest.skip("needs test_pg_schema_does_not_exist_yet to have run first")
    assert pg_schema not in _seen_schemas
    assert not pg_server.schema_exists(pg_url, _seen_schemas[-1])


def test_tests_using_pg_fixtures_get_the_marker(request, pg_url):
    assert request.node.get_closest_marker("postgresql") is not None


def _run_pytest_without_binaries(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """A child pytest session, running one test of this file, where the binary search finds nothing
    (KVSTORE_TEST_PG_BINDIR = an empty directory) and KVSTORE_TEST_PG_URL is unset."""
    empty = tmp_path / "no-binaries"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", pg_server.URL_ENV)}
    env[pg_server.BINDIR_ENV] = str(empty)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::test_pg_url_connects_as_superuser"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def test_without_binaries_postgresql_tests_skip_outside_ci(tmp_path):
    result = _run_pytest_without_binaries(tmp_path, ci=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and "no PostgreSQL server" in result.stdout, result.stdout


def test_without_binaries_postgresql_tests_fail_in_ci(tmp_path):
    result = _run_pytest_without_binaries(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout and "must not be skipped in CI" in result.stdout, result.stdout
