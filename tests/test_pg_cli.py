"""Every CLI command takes a postgresql:// URL where it takes a file (and --schema to pick the store)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import kvstore
from tests.test_cli import fails, ok, run

pytestmark = pytest.mark.postgresql


def test_the_password_is_never_shown(pg_tcp_url: str, tmp_path) -> None:
    source = tmp_path / "pairs.jsonl"
    source.write_text('{"key": 1, "value": "a"}\n')
    try:
        for args in (["load", pg_tcp_url, str(source)], ["stats", pg_tcp_url], ["migrate", pg_tcp_url],
                     ["verify", pg_tcp_url]):
            result = run(*args, "--schema", "shown")
            assert result.exit_code == 0, result.output
            assert "secret" not in result.output
            assert "***" in result.output or args[0] in ("stats", "verify")
        result = run("count", pg_tcp_url.replace("secret", "wrong"), "a", "--schema", "shown")
        assert result.exit_code == 1 and "wrong" not in result.output and "password" in result.output
    finally:
        from tests import pg_server

        pg_server.drop_schema(pg_tcp_url, "shown")


def test_set_get_count_and_friends_on_a_url(pg_url: str, pg_schema: str) -> None:
    s = ["--schema", pg_schema]
    ok("set", pg_url, "42", "apple", *s)
    ok("set", pg_url, "7", "apple", "--key-type", "int", *s)
    assert ok("get", pg_url, "42", *s).strip() == "apple"
    assert ok("count", pg_url, "apple", *s).strip() == "2"
    assert ok("count", pg_url, "pear", *s).strip() == "0"
    ok("incr", pg_url, "n", "5", *s)
    assert ok("get", pg_url, "n", *s).strip() == "5"
    ok("delete", pg_url, "42", *s)
    assert ok("count", pg_url, "apple", *s).strip() == "1"
    with kvstore.open(pg_url, schema=pg_schema) as db:
        assert dict(db.items()) == {7: "apple", "n": 5}


def test_load_dump_verify_repair_stats_migrate_on_a_url(pg_url: str, pg_schema: str, tmp_path) -> None:
    s = ["--schema", pg_schema]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps({"key": i, "value": ["a", "b", 1.5][i % 3]}) + "\n" for i in range(300)))
    assert "Loaded 300 pairs" in ok("load", pg_url, str(source), *s)
    dumped = ok("dump", pg_url, *s)
    assert dumped.splitlines() == source.read_text().splitlines()
    assert "ok" in ok("verify", pg_url, *s).lower()
    ok("repair", pg_url, *s)
    assert "items" in ok("stats", pg_url, *s)
    assert "nothing to do" in ok("migrate", pg_url, *s)
    backup = tmp_path / "copy.db"
    ok("backup", pg_url, str(backup), *s)
    with kvstore.open(str(backup)) as copy:
        assert len(copy) == 300 and copy.count(1.5) == 100


def test_read_commands_never_create_a_store(pg_url: str, pg_schema: str) -> None:
    out = fails("count", pg_url, "apple", "--schema", pg_schema)
    assert "no kvstore store" in out
    from tests import pg_server

    assert not pg_server.schema_exists(pg_url, pg_schema)


def test_schema_with_a_file_is_a_usage_error(tmp_path) -> None:
    out = fails("count", str(tmp_path / "x.db"), "apple", "--schema", "foods", code=2)
    assert "postgresql://" in out


def test_a_failed_load_drops_the_store_it_created(pg_url: str, pg_schema: str, tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": 1, "value": "a"}\nnot json\n')
    fails("load", pg_url, str(bad), "--schema", pg_schema)
    from tests import pg_server

    assert not pg_server.schema_exists(pg_url, pg_schema)


def test_fast_count_path_falls_back_for_a_url(pg_url: str) -> None:
    """`kvstore count URL v` in a fresh process (the fast path is for files) answers through the full CLI."""
    with kvstore.open(pg_url, schema="kvstore") as db:
        db["k"] = "clementine"
    try:
        done = subprocess.run([sys.executable, "-m", "kvstore", "count", pg_url, "clementine"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "1"
    finally:
        from tests import pg_server

        pg_server.drop_schema(pg_url, "kvstore")


def test_demo_builds_on_a_url(pg_tcp_url: str) -> None:
    from tests import pg_server

    try:
        result = run("demo", "--items", "2000", "--path", pg_tcp_url, "--repeats", "1")
        assert result.exit_code == 0, result.output
        assert "clementine" in result.stdout and "Building" in result.stderr
        assert "secret" not in result.output  # the URL's password is never shown
    finally:
        pg_server.drop_schema(pg_tcp_url, "kvstore")


def test_a_failed_load_leaves_a_schema_it_did_not_make(pg_url: str, pg_schema: str, tmp_path) -> None:
    """A schema a DBA made (empty, or holding other things) survives a failed first load."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
        conn.execute(f"COMMENT ON SCHEMA {pg_schema} IS 'made by the DBA'")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": 1, "value": "a"}\nnot json\n')
    fails("load", pg_url, str(bad), "--schema", pg_schema)
    from tests import pg_server

    assert pg_server.schema_exists(pg_url, pg_schema)


def test_schema_option_before_the_command(pg_url: str, pg_schema: str) -> None:
    ok("--schema", pg_schema, "set", pg_url, "k", "v")
    assert ok("--schema", pg_schema, "count", pg_url, "v").strip() == "1"


def test_demo_refusal_does_not_show_the_password(pg_tcp_url: str) -> None:
    from tests import pg_server

    try:
        with kvstore.open(pg_tcp_url) as db:
            db["not"] = "the demo"
        result = run("demo", "--items", "100", "--path", pg_tcp_url)
        assert result.exit_code == 1 and "already holds" in result.output and "secret" not in result.output
    finally:
        pg_server.drop_schema(pg_tcp_url, "kvstore")
