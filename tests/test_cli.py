"""The kvstore command line: every command, option and error path, through click's CliRunner,
plus real processes for startup imports, stdin piping and a 100k-pair dump/load round trip."""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import kvstore
from kvstore.cli import KvstoreGroup, cli


def run(*args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, prog_name="kvstore")


def ok(*args: str, input: str | bytes | None = None) -> str:
    """Run a command that must succeed quietly on stderr; its stdout."""
    result = run(*args, input=input)
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr == ""
    return result.stdout


def fails(*args: str, code: int = 1, input: str | bytes | None = None) -> str:
    """Run a command that must fail with ``code``, print nothing on stdout and no traceback."""
    result = run(*args, input=input)
    assert result.exit_code == code, (result.output, result.exception)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result.stderr


def typed(pairs: dict) -> dict:
    """Pairs with every key and value tagged by its exact type (and -0.0 told from 0.0)."""
    return {(type(k), k): (type(v), repr(v)) for k, v in pairs.items()}


@pytest.fixture
def foods(path: str) -> str:
    """A small store with known contents of every type."""
    with kvstore.open(path) as db:
        db.update({"a": "apple", "b": "apple", 3: "carrot", "c": b"\x00\xff", "d": 7})
    return path


# -- set / get / delete -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "key_type", "value", "value_type", "stored_key", "stored_value"),
    [
        ("k", "str", "v", "str", "k", "v"),
        ("42", "int", "7", "int", 42, 7),
        ("-5", "int", "-0.0", "float", -5, -0.0),
        ("00ff", "bytes", "inf", "float", b"\x00\xff", float("inf")),
        ("k", "str", "00", "bytes", "k", b"\x00"),
        ("k", "str", "1e+100", "float", "k", 1e100),
        ("{\"a\": 1}", "str", "'; DROP TABLE items; --", "str", '{"a": 1}', "'; DROP TABLE items; --"),
    ],
)
def test_set_then_get_keeps_the_type(path, key, key_type, value, value_type, stored_key, stored_value):
    assert ok("set", path, key, value, "--key-type", key_type, "--value-type", value_type) == ""
    with kvstore.open(path) as db:
        assert typed(dict(db.items())) == typed({stored_key: stored_value})
    assert ok("get", path, key, "--key-type", key_type) == value + "\n"


def test_set_creates_the_store_and_overwrites(path):
    assert not os.path.exists(path)
    ok("set", path, "k", "one")
    ok("set", path, "k", "two")
    assert ok("get", path, "k") == "two\n"
    assert ok("count", path, "one") == "0\n"


def test_get_json_shows_the_type(foods):
    assert ok("get", foods, "d", "--json") == "7\n"
    assert ok("get", foods, "a", "--json") == '"apple"\n'
    assert ok("get", foods, "c", "--json") == '{"$bytes": "00ff"}\n'


def test_get_prints_the_value_exactly(path):
    ok("set", path, "k", "\x1b[31mred\x1b[0m é\x00")
    assert run("get", path, "k").stdout_bytes == "\x1b[31mred\x1b[0m é\x00\n".encode()


def test_get_missing_key_is_exit_1_with_nothing_on_stdout(foods):
    assert fails("get", foods, "nope") == f"Error: {foods}: no key 'nope'\n"


def test_get_hints_at_key_type_when_the_digits_are_an_int_key(foods):
    assert fails("get", foods, "3") == f"Error: {foods}: no key '3'; there is an int key 3: pass --key-type int\n"
    assert ok("get", foods, "3", "--key-type", "int") == "carrot\n"


def test_delete_exit_codes(foods):
    assert ok("delete", foods, "a") == ""
    assert fails("delete", foods, "a") == f"Error: {foods}: no key 'a'\n"
    assert ok("delete", foods, "3", "--key-type", "int") == ""
    with kvstore.open(foods) as db:
        assert sorted(db) == ["b", "c", "d"]


def test_negative_numbers_are_arguments_but_unknown_options_are_usage_errors(path):
    ok("set", path, "-7", "-1.5", "--key-type", "int", "--value-type", "float")
    assert ok("get", path, "-7", "--key-type=int") == "-1.5\n"
    assert ok("count", path, "-1.5", "--value-type", "float") == "1\n"
    assert "No such option '--key-typ'. Did you mean '--key-type'?" in fails("get", path, "-7", "--key-typ", "int", code=2)
    assert "No such option '-x'" in fails("get", path, "-x", code=2)
    ok("set", path, "--", "-x", "-y")  # -- ends the options: "-x" is a key
    assert ok("get", path, "--", "-x") == "-y\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key-type", "int", "k", "v"], "Invalid value for KEY: 'k' is not a valid int"),
        (["--value-type", "bytes", "k", "zz"], "Invalid value for VALUE: 'zz' is not a valid bytes"),
        (["--value-type", "float", "k", "nan"], "value NaN is not supported"),
        (["--value-type", "int", "k", str(2**63)], "does not fit in SQLite's signed 64-bit integer"),
        (["--key-type", "float", "k", "v"], "Invalid value for '--key-type': 'float' is not one of 'str', 'int', 'bytes'"),
    ],
)
def test_bad_arguments_are_usage_errors_and_write_nothing(path, args, message):
    assert message in fails("set", path, *args, code=2)
    assert not os.path.exists(path)


# -- commands that only read never create a file ------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["get", "k"], ["delete", "k"], ["count", "v"], ["counts"], ["keys-for", "v"], ["dump"],
     ["verify"], ["repair"], ["stats"]],
)
def test_reading_a_missing_store_is_an_error_and_creates_nothing(path, args):
    command, *rest = args
    assert fails(command, path, *rest) == (
        f"Error: {path}: no such store; check the path, or create one with `kvstore set` or `kvstore load`\n"
    )
    assert not os.path.exists(path)


def test_migrate_a_missing_store(path):
    assert fails("migrate", path) == f"Error: {path}: no such store; check the path\n"
    assert not os.path.exists(path)


def test_a_file_that_is_not_a_store_is_refused_without_traceback(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    message = fails("count", str(text), "x")
    assert message.startswith(f"Error: {text}: not a kvstore file")
    assert text.read_text() == "hello"


# -- counting -------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["counts", "group_by", "scan"])
def test_count_with_each_strategy(foods, strategy):
    assert ok("count", foods, "apple", "--strategy", strategy) == "2\n"
    assert ok("count", foods, "7", "--value-type", "int", "--strategy", strategy) == "1\n"
    result = run("count", foods, "7", "--strategy", strategy)  # the string '7' is another value
    assert (result.exit_code, result.stdout) == (0, "0\n")
    assert result.stderr == f"Note: {foods}: no value '7'; there is an int value 7 (held by 1 key): pass --value-type int\n"
    assert ok("count", foods, "00ff", "--value-type", "bytes", "--strategy", strategy) == "1\n"


def test_count_rejects_an_unknown_strategy(foods):
    assert "'fast' is not one of 'counts', 'group_by', 'scan'" in fails("count", foods, "apple", "--strategy", "fast", code=2)


def test_counts_table(foods):
    assert ok("counts", foods) == (
        "value      count\n"
        "-------  -------\n"
        "apple          2\n"
        "7              1\n"
        "carrot         1\n"
        "x'00ff'        1\n"
    )


def test_counts_json_csv_nl_and_top(foods):
    assert json.loads(ok("counts", foods, "--json")) == [
        {"value": "apple", "count": 2}, {"value": 7, "count": 1},
        {"value": "carrot", "count": 1}, {"value": {"$bytes": "00ff"}, "count": 1},
    ]
    assert ok("counts", foods, "--top", "2", "--json") == '[{"value": "apple", "count": 2},\n {"value": 7, "count": 1}]\n'
    assert ok("counts", foods, "--csv") == "value,count,value_type\napple,2,str\n7,1,int\ncarrot,1,str\n00ff,1,bytes\n"
    assert ok("counts", foods, "--top", "1", "--nl") == '{"value": "apple", "count": 2}\n'
    assert "Invalid value for '--top'" in fails("counts", foods, "--top", "0", code=2)


def test_empty_listings(path):
    ok("set", path, "k", "v")
    ok("delete", path, "k")
    assert ok("counts", path, "--json") == "[]\n"
    assert ok("counts", path, "--nl") == ""
    assert ok("counts", path, "--csv") == "value,count,value_type\n"
    assert ok("counts", path) == "value    count\n-------  -------\n"


def test_keys_for(foods):
    assert ok("keys-for", foods, "apple") == "key\n-----\na\nb\n"
    assert ok("keys-for", foods, "apple", "--json") == '[{"key": "a"},\n {"key": "b"}]\n'
    assert ok("keys-for", foods, "carrot", "--csv") == "key,key_type\n3,int\n"
    assert ok("keys-for", foods, "7", "--value-type", "int", "--nl") == '{"key": "d"}\n'
    assert ok("keys-for", foods, "pear", "--nl") == ""


def test_stats(foods):
    table = ok("stats", foods).splitlines()
    assert table[0].split() == ["name", "rows", "size"]
    assert [line.split()[:2] for line in table[2:5]] == [["items", "5"], ["value_index", "5"], ["counts", "4"]]
    assert table[5].split()[0] == "file" and len(table[5].split()) == 3  # no row count: "file 12.0 KiB"
    assert table[5].split()[2] == "KiB"
    records = json.loads(ok("stats", foods, "--json"))
    assert [(r["name"], r["rows"]) for r in records] == [("items", 5), ("value_index", 5), ("counts", 4), ("file", None)]
    assert all(type(r["bytes"]) is int and r["bytes"] > 0 for r in records)
    assert [json.loads(line) for line in ok("stats", foods, "--nl").splitlines()] == records
    assert ok("stats", foods, "--csv").splitlines()[0] == "name,rows,bytes"


# -- verify / repair / migrate ----------------------------------------------------------------


def tamper(path: str) -> None:
    """Make counts wrong behind kvstore's back."""
    conn = sqlite3.connect(path)
    conn.execute("UPDATE counts SET n = n + 2 WHERE value = 'apple'")
    conn.commit()
    conn.close()


def test_verify_and_repair(foods):
    assert ok("verify", foods) == "OK: counts are exact (5 items, 4 values).\n"
    assert ok("repair", foods) == "Nothing to repair: counts are exact.\n"
    tamper(foods)
    result = run("verify", foods)
    assert result.exit_code == 1
    assert result.stdout == "count of 'apple': items hold 2, counts says 4\n"
    assert result.stderr == f"Error: {foods}: 1 problem found; fix it with `kvstore repair {foods}`\n"
    assert ok("repair", foods) == "Repaired 1 problem:\n  count of 'apple': items hold 2, counts says 4\n"
    assert ok("verify", foods) == "OK: counts are exact (5 items, 4 values).\n"


def upgrades(*args: str, items: int) -> str:
    """Run a command that upgrades DB: it says so on stderr first (an upgrade can take long); its stdout."""
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr == f"upgrading {args[1]} to revision 0003 ({items} items)…\n"
    return result.stdout


def test_migrate_down_and_up(foods):
    assert ok("migrate", foods) == f"{foods}: at revision 0003 (head); nothing to do.\n"
    assert ok("migrate", foods, "--to", "0002") == f"{foods}: migrated from revision 0003 (head) to 0002.\n"
    assert ok("migrate", foods, "--to", "0001") == f"{foods}: migrated from revision 0002 to 0001.\n"
    assert upgrades("migrate", foods, items=5) == f"{foods}: migrated from revision 0001 to 0003 (head).\n"
    assert ok("count", foods, "apple") == "2\n"
    assert "'zz' is not a revision kvstore knows; use one of: head, base, 0001, 0002, 0003" in fails(
        "migrate", foods, "--to", "zz", code=2)


def test_migrate_to_base_needs_yes(foods):
    assert "pass --yes" in fails("migrate", foods, "--to", "base")
    assert ok("count", foods, "apple") == "2\n"
    assert ok("migrate", foods, "--to", "base", "--yes") == (
        f"{foods}: migrated from revision 0003 (head) to base (empty schema).\n")
    assert upgrades("migrate", foods, items=0) == f"{foods}: migrated from revision base (empty schema) to 0003 (head).\n"


# -- load ---------------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    target = tmp_path / name
    target.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(target)


def contents(path: str) -> dict:
    with kvstore.open(path) as db:
        return typed(dict(db.items()))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("p.csv", "key,value\na,1\nb,\"two, \"\"quoted\"\"\nline\"\n"),
        ("p.tsv", "key\tvalue\na\t1\nb\t\"two, \"\"quoted\"\"\nline\"\n"),
        ("p.jsonl", '{"key": "a", "value": "1"}\n\n{"key": "b", "value": "two, \\"quoted\\"\\nline"}\n'),
        ("p.ndjson", '{"key": "a", "value": "1"}\n{"key": "b", "value": "two, \\"quoted\\"\\nline"}'),
        ("p.json", '{"a": "1", "b": "two, \\"quoted\\"\\nline"}'),
    ],
)
def test_load_formats_from_the_extension(tmp_path, path, name, content):
    source = write(tmp_path, name, content)
    assert ok("load", path, source) == f"Loaded 2 pairs into {path} (2 new keys, 2 in all).\n"
    assert contents(path) == typed({"a": "1", "b": 'two, "quoted"\nline'})


@pytest.mark.parametrize("flag", ["--csv", "--tsv", "--nl", "--json"])
def test_load_stdin_needs_a_format_flag(path, flag):
    data = {"--csv": "key,value\nk,v\n", "--tsv": "key\tvalue\nk\tv\n",
            "--nl": '{"key": "k", "value": "v"}\n', "--json": '{"k": "v"}'}[flag]
    assert ok("load", path, "-", flag, input=data) == f"Loaded 1 pair into {path} (1 new key, 1 in all).\n"
    assert contents(path) == typed({"k": "v"})


def test_load_unknown_format_is_a_usage_error(tmp_path, path):
    assert "cannot tell the format of stdin; pass --csv, --tsv, --nl or --json" in fails(
        "load", path, "-", input="x", code=2)
    assert f"cannot tell the format of {tmp_path / 'p.txt'}" in fails(
        "load", path, write(tmp_path, "p.txt", "x"), code=2)
    assert "No such file" in fails("load", path, str(tmp_path / "absent.csv"), code=2)
    assert not os.path.exists(path)


def test_load_typed_values_in_json_lines(path):
    lines = [
        {"key": 1, "value": 2.5}, {"key": "s", "value": {"$bytes": "00ff"}},
        {"key": {"$bytes": ""}, "value": {"$float": "-inf"}}, {"key": "z", "value": -0.0},
        {"key": "t", "value": '{"$bytes": "00"}'},  # a JSON string stays a string
    ]
    ok("load", path, "-", "--nl", input="".join(json.dumps(line) + "\n" for line in lines))
    assert contents(path) == typed({1: 2.5, "s": b"\x00\xff", b"": float("-inf"), "z": -0.0, "t": '{"$bytes": "00"}'})


def test_load_plain_csv_with_key_and_value_types(tmp_path, path):
    ok("load", path, write(tmp_path, "n.csv", "key,value\n1,10\n2,0.5\n"), "--key-type", "int", "--value-type", "float")
    assert contents(path) == typed({1: 10.0, 2: 0.5})
    assert "--key-type and --value-type apply to CSV/TSV only" in fails(
        "load", path, "-", "--nl", "--key-type", "int", input="", code=2)


def test_load_skips_a_byte_order_mark(tmp_path, path):
    ok("load", path, write(tmp_path, "bom.csv", b"\xef\xbb\xbfkey,value\nk,v\n"))
    assert contents(path) == typed({"k": "v"})


def test_load_reports_new_and_overwritten_keys(foods):
    assert ok("load", foods, "-", "--nl", input='{"key": "a", "value": "pear"}\n{"key": "new", "value": "pear"}\n') == (
        f"Loaded 2 pairs into {foods} (1 new key, 6 in all).\n")
    assert ok("count", foods, "pear") == "2\n"


@pytest.mark.parametrize(
    ("flag", "data", "message"),
    [
        ("--csv", "key,value\na,1\nb,2,3\n", "stdin, line 3: expected 2 fields like the header, got 3"),
        ("--csv", "key,value\na,1\nb,\"x\ny\"\nc,1,2\n", "stdin, line 5: expected 2 fields"),
        ("--csv", "key,val\na,1\n", "stdin, line 1: the header must name the columns key and value (optionally key_type and value_type, in any order), got 'key,val'"),
        ("--csv", "key,value,value_type\na,1,int\nb,x,int\n", "stdin, line 3: value 'x' is not a valid int"),
        ("--csv", "key,value,value_type\na,1,list\n", "stdin, line 2: value_type 'list' is not one of str, int, float, bytes"),
        ("--csv", "key,value\na,\"open\n", "stdin, line 2: unexpected end of data"),
        ("--csv", b"key,value\na,1\nb,\xff\n", "stdin, line 3: not UTF-8 text (invalid start byte at byte 3)"),
        ("--nl", '{"key": "a", "value": 1}\n{"key": "b", "value": true}\n', "stdin, line 2: value of type bool is not supported"),
        ("--nl", '{"key": "a", "value": 1}\n{"key": "b"\n', "stdin, line 2: not valid JSON (Expecting ',' delimiter"),
        ("--nl", '{"key": "a", "value": null}\n', "stdin, line 1: value of type NoneType is not supported"),
        ("--nl", '{"key": "a", "value": 1, "x": 2}\n', 'stdin, line 1: expected an object {"key": ..., "value": ...}'),
        ("--nl", '{"key": "a", "value": {"$bytes": "zz"}}\n', "stdin, line 1: non-hexadecimal number"),
        ("--nl", '{"key": "a", "value": {"b": 1}}\n', 'stdin, line 1: the JSON object {"b": 1} is not a storable key or value'),
        ("--nl", '{"key": 1.5, "value": 1}\n', "stdin, line 1: key of type float is not supported"),
        ("--nl", f'{{"key": {2**63}, "value": 1}}\n', "stdin, line 1: key 9223372036854775808 does not fit"),
        ("--nl", '{"key": "\\ud800", "value": 1}\n', "stdin, line 1: key '\\ud800' cannot be stored"),
        ("--json", '{"a": 1,\n "b": [1]}', "stdin, key 'b': value of type list is not supported"),
        ("--json", '{"a": 1,\n "b": }', "stdin, line 2: not valid JSON (Expecting value at column 7)"),
        ("--json", "[1, 2]", 'stdin, item 1 of the array: expected an object {"key": ..., "value": ...}, got 1'),
        ("--json", "42", 'stdin, line 1: a JSON file holds one array of {"key": ..., "value": ...} objects or one '
                         'object {"key": value, ...}; for one object per line, pass --nl'),
    ],
)
def test_a_malformed_row_aborts_the_load_and_writes_nothing(foods, flag, data, message):
    before = contents(foods)
    error = fails("load", foods, "-", flag, input=data)
    assert error.startswith(f"Error: {message}")
    assert error.endswith("; nothing was loaded\n")
    assert contents(foods) == before


def test_a_bad_row_after_the_bulk_switch_still_writes_nothing(foods):
    """Past BULK_MIN rows update() drops the triggers; a late error must restore everything."""
    before = contents(foods)
    rows = "".join(f'{{"key": {i}, "value": "v{i % 5}"}}\n' for i in range(60_000))
    error = fails("load", foods, "-", "--nl", input=rows + '{"key": "late", "value": null}\n')
    assert error.startswith("Error: stdin, line 60001: value of type NoneType is not supported")
    assert contents(foods) == before
    assert ok("verify", foods) == "OK: counts are exact (5 items, 4 values).\n"


def test_a_failed_load_removes_the_store_it_created(path):
    fails("load", path, "-", "--nl", input='{"key": "a", "value": 1}\n{"key": "b", "value": true}\n')
    assert not os.path.exists(path)
    assert not [name for name in os.listdir(os.path.dirname(path))]


def test_load_of_a_large_field(path):
    big = "x" * 300_000  # more than csv's default 128 KiB field limit
    ok("load", path, "-", "--csv", input=f"key,value\nk,{big}\n")
    assert ok("get", path, "k") == big + "\n"


# -- dump -------------------------------------------------------------------------------------


def test_dump_json_lines(foods):
    assert ok("dump", foods) == (
        '{"key": 3, "value": "carrot"}\n'
        '{"key": "a", "value": "apple"}\n'
        '{"key": "b", "value": "apple"}\n'
        '{"key": "c", "value": {"$bytes": "00ff"}}\n'
        '{"key": "d", "value": 7}\n'
    )


def test_dump_csv_and_tsv(foods):
    assert ok("dump", foods, "--csv") == (
        "key,value,key_type,value_type\n3,carrot,int,str\na,apple,str,str\nb,apple,str,str\n"
        "c,00ff,str,bytes\nd,7,str,int\n"
    )
    assert ok("dump", foods, "--tsv").splitlines()[:2] == ["key\tvalue\tkey_type\tvalue_type", "3\tcarrot\tint\tstr"]


def mixed_pairs(n: int, seed: int = 7) -> dict:
    """``n`` pairs with int/str/bytes keys and str/int/float/bytes values, awkward ones included."""
    rng = random.Random(seed)
    specials = [-0.0, 0.0, float("inf"), float("-inf"), 1e308, 5e-324, 2**63 - 1, -(2**63), "", "é中😀",
                "a\x00b", "line\nbreak\r\n", "\r", '{"$bytes": "00"}', '{"key": 1}', "'; DROP TABLE items; --",
                "1", "1.5", "inf", b"", b"\x00", b"\x00\xff", "\u2028", " padded ", 'quote"', "tab\there", "x,y"]
    pairs: dict = {}
    for i in range(n):
        key = (i * 7919 - 10**12, f"k{i}é\x00", i.to_bytes(4, "big") + b"\x00")[i % 3]
        r = rng.random()
        if r < 0.3:
            value = rng.choice(specials)
        elif r < 0.5:
            value = rng.randint(-(2**63), 2**63 - 1)
        elif r < 0.7:
            value = rng.uniform(-1e6, 1e6)
        elif r < 0.85:
            value = rng.randbytes(rng.randint(0, 8))
        else:
            value = "".join(chr(rng.choice([rng.randint(1, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
                            for _ in range(rng.randint(0, 6)))
        pairs[key] = value
    return pairs


@pytest.mark.parametrize("fmt", ["--nl", "--csv", "--tsv"])
def test_dump_then_load_reproduces_the_store_exactly(tmp_path, fmt):
    source, copy = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    with kvstore.open(source) as db:
        db.update(mixed_pairs(3000))
        expected = typed(dict(db.items()))
    dumped = run("dump", source, fmt).stdout_bytes  # bytes: Result.stdout folds \r\n into \n
    ok("load", copy, "-", fmt, input=dumped)
    assert contents(copy) == expected
    assert run("dump", copy, fmt).stdout_bytes == dumped


# -- the group: timer, help, version, lazy commands ------------------------------------------------


def test_timer_prints_run_time_on_stderr(foods):
    result = run("--timer", "count", foods, "apple")
    assert result.exit_code == 0
    assert result.stdout == "2\n"
    assert re.fullmatch(r"Run Time: real \d+\.\d{3} user \d+\.\d{6} sys \d+\.\d{6}\n", result.stderr)


def test_timer_also_reports_a_failed_command(foods):
    result = run("--timer", "get", foods, "nope")
    assert result.exit_code == 1
    lines = sorted(result.stderr.splitlines())
    assert lines[0] == f"Error: {foods}: no key 'nope'"
    assert lines[1].startswith("Run Time: real ")


COMMANDS = ["set", "get", "delete", "incr", "count", "counts", "keys-for", "load", "dump", "backup", "vacuum",
            "verify", "repair", "stats", "migrate", "demo"]


def test_help_lists_every_command():
    listed = ok("--help")
    for name in COMMANDS:
        assert re.search(rf"^  {name} +\S", listed, re.MULTILINE), name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name):
    text = ok(name, "--help")
    assert text.startswith(f"Usage: kvstore {name} ")
    assert re.search(r"^  Examples?:\n      kvstore " + name, text, re.MULTILINE)


def test_version():
    assert ok("--version") == f"kvstore {kvstore.__version__}\n"


def test_unknown_command_is_a_usage_error():
    assert "No such command 'cuont'" in fails("cuont", code=2)


def test_lazy_commands_missing_or_needing_extras(tmp_path, monkeypatch):
    (tmp_path / "needs_extra.py").write_text("import kvstore_no_such_dependency\ncommand = None\n")
    (tmp_path / "has_command.py").write_text(
        "import click\n@click.command()\ndef command():\n    'Say hi.'\n    click.echo('hi')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    group = KvstoreGroup("kvstore", lazy_commands={
        "absent": "kvstore_no_such_module:command", "extra": "needs_extra:command", "hello": "has_command:command"})
    runner = CliRunner()
    assert runner.invoke(group, ["hello"]).output == "hi\n"
    assert "absent" not in runner.invoke(group, ["--help"]).output
    assert runner.invoke(group, ["absent"]).exit_code == 2
    result = runner.invoke(group, ["extra", "--some-option", "x"])
    assert result.exit_code == 1
    assert "`kvstore extra` needs packages that are not installed" in result.stderr
    assert "pip install 'kvstore[extra]'" in result.stderr


def test_storage_errors_become_error_messages(tmp_path, monkeypatch):
    path = str(tmp_path / "s.db")
    ok("set", path, "k", "v")

    def busy(*args, **kwargs):
        raise kvstore.BusyError(f"{path}: the database is busy")

    monkeypatch.setattr(kvstore.Store, "set", busy)
    assert fails("set", path, "k", "w") == f"Error: {path}: the database is busy\n"


# -- real processes ---------------------------------------------------------------------------------


def kvstore_process(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "kvstore", *args], input=input, capture_output=True, timeout=120)


def test_startup_imports_only_what_count_needs():
    """`kvstore count` must start fast: the CLI module leaves the heavy imports to the commands."""
    heavy = ["tabulate", "json", "csv", "sqlalchemy", "alembic", "kvstore.demo", "kvstore.bench", "statistics"]
    code = f"import sys, kvstore.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "[]\n"


def test_process_set_get_count_and_a_user_error(path):
    assert kvstore_process("set", path, "k", "apple").returncode == 0
    done = kvstore_process("count", path, "apple")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"1\n", b"")
    done = kvstore_process("get", path, "nope")
    assert (done.returncode, done.stdout, done.stderr) == (1, b"", f"Error: {path}: no key 'nope'\n".encode())


def test_process_load_from_stdin(path):
    done = kvstore_process("load", path, "-", "--csv", input=b"key,value\nk,v\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""  # no progress bar when stdin is the input (and stderr is not a terminal)
    assert contents(path) == typed({"k": "v"})


@pytest.mark.parametrize("fmt", ["--nl", "--csv"])
def test_process_round_trip_of_100k_mixed_pairs(tmp_path, fmt):
    source, copy = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    pairs = mixed_pairs(100_000)
    with kvstore.open(source) as db:
        db.update(pairs)
        expected = dict(db.items())
    assert typed(expected) == typed(pairs)
    dumped = kvstore_process("dump", source, fmt)
    assert dumped.returncode == 0, dumped.stderr
    loaded = kvstore_process("load", copy, "-", fmt, input=dumped.stdout)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == f"Loaded 100,000 pairs into {copy} (100,000 new keys, 100,000 in all).\n".encode()
    with kvstore.open(copy) as db:
        assert typed(dict(db.items())) == typed(expected)
        assert db.counts() == kvstore.open(source).counts()
        assert db.verify() == []


def test_process_dump_into_a_closed_pipe_exits_quietly(tmp_path):
    source = str(tmp_path / "a.db")
    with kvstore.open(source) as db:
        db.update((i, "x" * 100) for i in range(50_000))
    shell = f"{sys.executable} -m kvstore dump {source} | head -c 10 >/dev/null"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, timeout=120)
    assert b"Traceback" not in done.stderr
    assert done.stderr == b""


@pytest.mark.parametrize("where", ["before", "after"])
def test_mmap_size_reaches_the_store(tmp_path, monkeypatch, where):
    """README: pass mmap_size=0 for files on storage you do not trust; the CLI can too."""
    path = str(tmp_path / "m.db")
    ok("set", path, "a", "apple")
    seen = []
    real_open = kvstore.open

    def spy(*args, **kwargs):
        seen.append(kwargs.get("mmap_size"))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(kvstore, "open", spy)
    args = ["--mmap-size", "0", "count", path, "apple"] if where == "before" else ["count", path, "apple", "--mmap-size", "0"]
    assert ok(*args) == "1\n"
    assert seen == [0]
    assert "x>=0" in fails("count", path, "apple", "--mmap-size", "-1", code=2)
