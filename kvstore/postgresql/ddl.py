"""The PostgreSQL objects of a store: SQL functions, tables, the ``counts`` view and the triggers.

Everything lives in one schema ``S`` (a store per schema) and is schema-qualified, so several
stores, and other tables called ``items`` or ``counts``, can share a database:

* ``S.items(key, value)``: both ``bytea`` in the encoding of :mod:`kvstore.postgresql.encoding`,
  checked by ``S.valid()``; ``items_value_idx`` indexes ``S.vid(value)``.
* ``S.count_shards(vid, shard, value, n)``: how many items hold each counting identity, split
  into shards so that writers updating the same popular values never queue on one row. Each
  writing transaction owns its shard until it ends (a transaction-level advisory lock, tried
  from ``pg_backend_pid() % 64`` on), so no two transactions ever write the same row: no lock
  waits and no deadlocks, whatever the order of their statements (with ``pid % 64`` alone,
  two backends sharing a shard deadlocked: an upsert fires its UPDATE and then its INSERT
  trigger, each locking rows in vid order, but not the union). A value's count is ``sum(n)``
  over its shards; a shard may be negative; a row that reaches 0 is deleted. ``value`` is one
  encoding with that identity (the smallest the writer saw), shown by the view.
* ``S.counts(value, n)``: the public contract, one row per identity with ``n > 0``:
  ``SELECT S.kv_show(value), n FROM S.counts``.
* row-level AFTER triggers on ``S.items`` (INSERT, UPDATE of the value, DELETE) that add or
  take one from the row's identity in the transaction's own shard, and a TRUNCATE trigger;
  kvstore's bulk path applies a whole load's deltas in one statement instead (``BULK``).
* ``S.kv(...)`` (int, float, numeric, text, bytea → encoding), ``S.kv_show(bytea)`` (encoding
  → text as PostgreSQL prints it) and ``S.vid(bytea)`` for psql users and other clients;
  ``S.valid(bytea)`` and its helper ``S.number_id(bytea, boolean)``.

Choices that are not obvious:

* ``vid``, ``valid`` and the ``kv`` functions are SQL functions whose body is one expression,
  written as SQL-standard bodies (``RETURN ...``, PostgreSQL 14+): names are resolved when
  they are created, whatever the caller's ``search_path``, and the planner inlines them
  (``kv(42)`` folds to a constant; the index, the triggers and the checks evaluate ``vid`` and
  ``valid`` without a function call). ``vid`` and ``valid`` are not declared STRICT because
  PostgreSQL never inlines a STRICT function whose body holds a CASE; they return NULL for NULL
  all the same (tested). The logic that needs variables (``number_id``, ``kv_show``, the
  triggers) is PL/pgSQL with a pinned ``search_path``.
* ``valid`` checks more than the tags: a number's 11-byte identity must be the one its own 8
  raw bytes give (and it must not be NaN), and text must be well-formed UTF-8 (NUL allowed),
  so that an encoding is one-to-one and ``vid()`` of what a client stores is the identity
  Python computes for the decoded value. verify() runs it over every row and reports rows it
  refuses. The CHECKs on ``items`` test only the shape (see ``shape``): the full test as a
  CHECK cost +20 µs per written row. ``kv()`` writes canonical encodings; only bytes made by
  hand can be non-canonical.
* No ``CHECK (n > 0)`` on ``count_shards``: ``INSERT ... ON CONFLICT`` checks the *proposed*
  row, so a negative delta could not be applied (and sharding makes negative rows legal).
* String constants are written ``E'\\\\x..'`` (never ``'\\x..'``) so that the bodies mean the
  same under ``standard_conforming_strings = off``; no statement contains ``%`` (``mod()``
  instead), so a driver's placeholder syntax cannot bite.
* A key must fit in a B-tree entry: about 2,700 bytes (after PostgreSQL's compression of long
  entries); past that PostgreSQL refuses the write. Values are unbounded (the index holds
  ``vid(value)``, at most 512 bytes).
"""

from __future__ import annotations

import zlib

VID_LIMIT = 512  # encoding.VID_LIMIT: an encoding longer than this is counted by its SHA-256
SHARDS = 64  # shards preferred by writers (pid mod 64); more are used only past 64 concurrent writers
VALUE_INDEX = "items_value_idx"
TRIGGERS = ("items_counts_insert", "items_counts_update", "items_counts_delete", "items_counts_truncate")
"""The counting triggers on ``items``, which verify() checks are present and enabled."""

# Well-formed UTF-8 (RFC 3629: no surrogates, nothing above U+10FFFF, shortest forms only;
# NUL allowed) as a pattern over the lowercase hex digits of the bytes. Every alternative
# consumes whole bytes, so matching the hex string byte pair by byte pair is exact. (convert_from
# cannot be used: it rejects NUL, which Python text and the encoding allow.)
_C = "[89ab][0-9a-f]"
UTF8_HEX_PATTERN = (
    "^(?:[0-7][0-9a-f]"
    f"|(?:c[2-9a-f]|d[0-9a-f]){_C}"
    f"|e0[ab][0-9a-f]{_C}"
    f"|e[1-9a-cef]{_C}{_C}"
    f"|ed[89][0-9a-f]{_C}"
    f"|f0[9ab][0-9a-f]{_C}{_C}"
    f"|f[1-3]{_C}{_C}{_C}"
    f"|f48[0-9a-f]{_C}{_C}"
    ")*$"
)
_ZEROS10 = "00" * 10


def quoted(schema: str) -> str:
    """``schema`` as a quoted SQL identifier (``"`` doubled); refuses what PostgreSQL cannot name."""
    if not schema or "\x00" in schema:
        raise ValueError(f"not a usable schema name: {schema!r}")
    return '"' + schema.replace('"', '""') + '"'


def _bytes(hex_digits: str) -> str:
    """A bytea constant that means the same whatever ``standard_conforming_strings`` says."""
    return f"E'\\\\x{hex_digits}'::bytea"


def _dollar_quoted(body: str) -> str:
    """``body`` between dollar quotes whose tag does not occur in it (a schema name could hold ``$$``)."""
    n = 0
    while f"$kv{n}$" in body:
        n += 1
    return f"$kv{n}${body}$kv{n}$"


# number_id(raw, is_float): the 11-byte identity of the int (two's complement) or double (IEEE 754)
# whose 8 big-endian bytes are raw, as encoding._number computes it: class byte, 16-bit
# exponent floor(log2 |x|) offset by 0x8000, the 64 bits after the leading 1 of |x|; both
# complemented for a negative number.
_NUMBER_ID_BODY = f"""
DECLARE
    bits bit(64) := ('x' || encode(raw, 'hex'))::bit(64);
    negative boolean := substring(bits FROM 1 FOR 1) = B'1';
    exponent integer;
    fraction bit(64);
    top integer;
BEGIN
    IF length(raw) <> 8 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'number_id: raw must be 8 bytes';
    END IF;
    IF NOT is_float THEN
        IF bits = B'0'::bit(64) THEN
            RETURN {_bytes("03" + _ZEROS10)};
        END IF;
        IF negative THEN  -- the magnitude's bits; -2^63's are its own
            fraction := CASE WHEN bits = B'1'::bit(64) THEN bits ELSE (-(bits::bigint))::bit(64) END;
        ELSE
            fraction := bits;
        END IF;
        top := position(B'1' IN fraction);  -- 1-based position of the leading 1
        exponent := 64 - top;
        fraction := fraction << top;
    ELSE
        exponent := substring(bits FROM 2 FOR 11)::integer;
        fraction := substring(bits FROM 13) || B'000000000000';
        IF exponent = 2047 THEN
            IF fraction <> B'0'::bit(64) THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = 'kv(NaN): NaN cannot be stored (it is not equal to itself, so it could never be found)';
            END IF;
            RETURN CASE WHEN negative THEN {_bytes("01" + _ZEROS10)} ELSE {_bytes("05" + _ZEROS10)} END;
        END IF;
        IF exponent = 0 THEN
            IF fraction = B'0'::bit(64) THEN
                RETURN {_bytes("03" + _ZEROS10)};
            END IF;
            top := position(B'1' IN fraction);  -- a subnormal: the mantissa's leading 1
            exponent := -1022 - top;
            fraction := fraction << top;
        ELSE
            exponent := exponent - 1023;
        END IF;
    END IF;
    IF negative THEN
        RETURN {_bytes("02")} || substring(int4send(32767 - exponent) FROM 3) || int8send((~fraction)::bigint);
    END IF;
    RETURN {_bytes("04")} || substring(int4send(32768 + exponent) FROM 3) || int8send(fraction::bigint);
END
"""

# kv_show(v): a float is rebuilt from its bits with exact arithmetic (the significand in [1, 2)
# times a power of two in the normal range; each product is exact) and printed by float8out with
# extra_float_digits = 1 (the shortest exact form), so float(kv_show(v)) is the value.
_SHOW_BODY = f"""
DECLARE
    raw bigint;
    exponent integer;
    mantissa bigint;
    x double precision;
    payload bytea;
    nul integer;
BEGIN
    IF length(v) = 20 AND get_byte(v, 0) BETWEEN 1 AND 5 AND get_byte(v, 11) IN (0, 1) THEN
        raw := ('x' || encode(substring(v FROM 13), 'hex'))::bit(64)::bigint;
        IF get_byte(v, 11) = 0 THEN
            RETURN raw::text;
        END IF;
        exponent := (raw >> 52) & 2047;
        mantissa := raw & 4503599627370495;
        IF exponent = 2047 THEN
            x := CASE WHEN mantissa <> 0 THEN 'NaN' ELSE 'Infinity' END;
        ELSIF exponent = 0 THEN  -- zero or subnormal: mantissa * 2^-1074
            x := mantissa::double precision * 2.0::double precision ^ (-52) * 2.0::double precision ^ (-1022);
        ELSE
            x := (mantissa + 4503599627370496)::double precision * 2.0::double precision ^ (-52)
                 * 2.0::double precision ^ (exponent - 1023);
        END IF;
        IF raw < 0 THEN
            x := -x;
        END IF;
        RETURN x::text;
    ELSIF length(v) >= 1 AND get_byte(v, 0) = 16 THEN
        -- text cannot hold NUL: each NUL is shown as U+FFFD
        payload := substring(v FROM 2);
        nul := position({_bytes("00")} IN payload);
        WHILE nul > 0 LOOP
            payload := overlay(payload PLACING {_bytes("efbfbd")} FROM nul FOR 1);
            nul := position({_bytes("00")} IN payload);
        END LOOP;
        RETURN convert_from(payload, 'UTF8');
    ELSIF length(v) >= 1 AND get_byte(v, 0) = 32 THEN
        RETURN E'\\\\x' || encode(substring(v FROM 2), 'hex');
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'invalid_binary_representation',
        MESSAGE = 'kv_show: not a kvstore encoding: ' || encode(substring(v FROM 1 FOR 24), 'hex');
END
"""


def _functions(s: str) -> list[str]:
    sql = "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE"
    plpgsql = "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp"
    return [
        # The counting identity, encoding.vid(). Not STRICT: PostgreSQL inlines no STRICT function
        # whose body holds a CASE (it returns NULL for NULL all the same).
        f"""CREATE FUNCTION {s}.vid(v bytea) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN v < {_bytes("10")} THEN substring(v FROM 1 FOR 11)
            WHEN length(v) > {VID_LIMIT} THEN {_bytes("ff")} || sha256(v)
            ELSE v END""",
        f"CREATE FUNCTION {s}.number_id(raw bytea, is_float boolean) RETURNS bytea {plpgsql}\n"
        f"AS {_dollar_quoted(_NUMBER_ID_BODY)}",
        # kv(): values to encodings. The wrappers are one strict expression each, so the planner
        # inlines them (and folds kv(42) to a constant).
        f"CREATE FUNCTION {s}.kv(i bigint) RETURNS bytea {sql}\n"
        f"RETURN {s}.number_id(int8send(i), false) || {_bytes('00')} || int8send(i)",
        f"CREATE FUNCTION {s}.kv(i integer) RETURNS bytea {sql}\nRETURN {s}.kv(i::bigint)",
        f"CREATE FUNCTION {s}.kv(i smallint) RETURNS bytea {sql}\nRETURN {s}.kv(i::bigint)",
        f"CREATE FUNCTION {s}.kv(d double precision) RETURNS bytea {sql}\n"
        f"RETURN {s}.number_id(float8send(d), true) || {_bytes('01')} || float8send(d)",
        f"CREATE FUNCTION {s}.kv(d real) RETURNS bytea {sql}\nRETURN {s}.kv(d::double precision)",
        # numeric -> double precision rounds correctly (it parses the decimal digits), as Python's float() does.
        f"CREATE FUNCTION {s}.kv(d numeric) RETURNS bytea {sql}\nRETURN {s}.kv(d::double precision)",
        f"CREATE FUNCTION {s}.kv(t text) RETURNS bytea {sql}\nRETURN {_bytes('10')} || convert_to(t, 'UTF8')",
        f"CREATE FUNCTION {s}.kv(b bytea) RETURNS bytea {sql}\nRETURN {_bytes('20')} || b",
        # valid(v): is v an encoding Python wrote or could have written? A number must carry the
        # identity its own 8 raw bytes give and must not be NaN (so the encoding is one-to-one: no
        # second spelling of a key, and vid() of anything stored is the identity Python computes
        # for the decoded value); text must be well-formed UTF-8 (NUL allowed).
        f"""CREATE FUNCTION {s}.valid(v bytea) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN length(v) = 0 THEN false
            WHEN v < {_bytes("06")} THEN CASE
                WHEN length(v) <> 20 OR v < {_bytes("01")} THEN false
                WHEN get_byte(v, 11) > 1 THEN false
                WHEN get_byte(v, 11) = 1  -- NaN
                     AND set_byte(substring(v FROM 13), 0, get_byte(v, 12) & 127) > {_bytes("7ff0000000000000")} THEN false
                ELSE substring(v FROM 1 FOR 11) = {s}.number_id(substring(v FROM 13), get_byte(v, 11) = 1) END
            WHEN get_byte(v, 0) = 16 THEN encode(substring(v FROM 2), 'hex') ~ '{UTF8_HEX_PATTERN}'
            ELSE get_byte(v, 0) = 32 END""",
        f"CREATE FUNCTION {s}.kv_show(v bytea) RETURNS text {plpgsql} SET extra_float_digits = 1\n"
        f"AS {_dollar_quoted(_SHOW_BODY)}",
    ]


def shape(column: str) -> str:
    """A CHECK that ``column`` has the shape of an encoding: a known tag, and a number's length.

    The full test, ``valid()`` (canonical numbers, well-formed UTF-8), is what verify() runs
    over every row: as a CHECK it cost +50-70 µs per statement inlined in the table's CHECK (a
    table CHECK's expression is planned again for every statement), and still +20 µs per written row
    through a domain (planned once per session)
    (a single-row upsert 75 µs against 55 µs here, 13 µs without triggers or checks), the
    largest share of a write after the counting trigger. Comparisons with constants cost ~1 µs.
    """
    def tag(low: str, high: str) -> str:  # the first byte in [low, high)
        return f"{column} >= {_bytes(low)} AND {column} < {_bytes(high)}"

    return f"({tag('01', '06')} AND length({column}) = 20) OR ({tag('10', '11')}) OR ({tag('20', '21')})"


def _tables(s: str) -> list[str]:
    return [
        # A B-tree entry must fit in a third of a page: a key longer than about 2,700 bytes
        # (after PostgreSQL's own compression of long index entries) makes the INSERT fail with
        # "index row size ... exceeds btree version 4 maximum 2704"; the Python side checks
        # first. The value index holds vid(value), at most 512 bytes, so values are unbounded.
        f"""CREATE TABLE {s}.items (
    key bytea PRIMARY KEY CONSTRAINT items_key_valid CHECK ({shape('key')}),
    value bytea NOT NULL CONSTRAINT items_value_valid CHECK ({shape('value')})
)""",
        f"CREATE INDEX {VALUE_INDEX} ON {s}.items ({s}.vid(value))",
        # No CHECK (n > 0): see the module docstring. fillfactor leaves room on each page for
        # HOT updates of the hot rows.
        f"""CREATE TABLE {s}.count_shards (
    vid bytea,
    shard integer,
    value bytea NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (vid, shard)
) WITH (fillfactor = 50)""",
        _view(s),
    ]


def _view(s: str) -> str:
    return f"""CREATE VIEW {s}.counts AS
SELECT (min(ARRAY[value]))[1] AS value, sum(n)::bigint AS n
FROM {s}.count_shards
GROUP BY vid
HAVING sum(n) > 0"""


def _lock_key(schema: str) -> int:
    """The first key of the store's shard locks (``pg_try_advisory_xact_lock(key, shard)``): a 32-bit hash of the schema.

    Two stores whose names hash alike only make each other's writers skip some shards; correctness
    needs only that two transactions of one store never hold the same (key, shard).
    """
    return int.from_bytes(zlib.crc32(schema.encode()).to_bytes(4, "big"), "big", signed=True)


def _row_function(s: str, lock_key: int) -> str:
    """The row trigger: one item's change applied to its transaction's own shard of the counts."""
    def add(vid: str, value: str, delta: str) -> str:
        # The shard is this transaction's alone (the advisory lock below), so no statement here
        # waits for another writer.
        return f"""
        UPDATE {s}.count_shards SET n = n + ({delta}) WHERE vid = {vid} AND shard = my_shard RETURNING n INTO left_over;
        IF NOT FOUND THEN
            -- ON CONFLICT: a REPEATABLE READ writer may not see a row that a former owner of this
            -- shard committed after its snapshot began (PostgreSQL then reports a serialization
            -- failure, which the writer retries, rather than a duplicate key).
            INSERT INTO {s}.count_shards AS c (vid, shard, value, n) VALUES ({vid}, my_shard, {value}, {delta})
            ON CONFLICT (vid, shard) DO UPDATE SET n = c.n + excluded.n RETURNING c.n INTO left_over;
        END IF;
        IF left_over = 0 THEN
            DELETE FROM {s}.count_shards WHERE vid = {vid} AND shard = my_shard;
        END IF;"""

    body = f"""
DECLARE
    my_shard integer := mod(pg_backend_pid(), {SHARDS});
    tries integer := 0;
    old_vid bytea;
    new_vid bytea;
    left_over bigint;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        new_vid := {s}.vid(NEW.value);
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_vid := {s}.vid(OLD.value);
    END IF;
    IF old_vid = new_vid THEN  -- 1 became 1.0, or -0.0 became 0: the same counting identity
        RETURN NULL;
    END IF;
    -- Own a shard until the transaction ends: the first one whose lock is free, from pid mod {SHARDS} on
    -- (re-entrant: a later row of this transaction gets its shard back). No two transactions
    -- ever write the same count_shards row, so no writer waits for another here, whatever the order
    -- of its rows. Past {SHARDS} concurrent writers the shards go on at {SHARDS}, {SHARDS + 1}, ...
    WHILE NOT pg_try_advisory_xact_lock({lock_key}, my_shard) LOOP
        tries := tries + 1;
        my_shard := CASE WHEN tries < {SHARDS} THEN mod(pg_backend_pid() + tries, {SHARDS}) ELSE tries END;
    END LOOP;
    IF new_vid IS NOT NULL THEN{add("new_vid", "NEW.value", "1")}
    END IF;
    IF old_vid IS NOT NULL THEN{add("old_vid", "OLD.value", "-1")}
    END IF;
    RETURN NULL;
END
"""
    return f"""CREATE FUNCTION {s}.items_counts_row() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS {_dollar_quoted(body)}"""


BULK = "kvstore.bulk"
"""The setting (``SET LOCAL kvstore.bulk = on``) under which the row triggers stand aside:
kvstore's own bulk path (:func:`bulk_merge`) sets it while it applies a whole load's count
deltas itself, with the table locked against other writers, and clears it before it returns.
A client that sets it and writes is on its own: verify() reports what it leaves wrong."""

_NOT_BULK = f"current_setting('{BULK}', true) IS DISTINCT FROM 'on'"


def _triggers(s: str, lock_key: int) -> list[str]:
    # Row triggers, not statement triggers with transition tables: a single-row upsert cost
    # 0.20-0.23 ms with the set-based statement triggers (PostgreSQL fires an upsert's INSERT
    # and UPDATE statement triggers both, and fills transition tables) against 0.09-0.13 ms
    # here, and 8 writers over 6 values ran at 0.31x the throughput of a table without
    # triggers against ~0.5-0.8x. Large loads do not pay a trigger call per row: see BULK.
    return [
        _row_function(s, lock_key),
        f"""CREATE FUNCTION {s}.items_counts_truncate() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS {_dollar_quoted(f'''
BEGIN
    DELETE FROM {s}.count_shards;
    RETURN NULL;
END
''')}""",
        f"""CREATE TRIGGER items_counts_insert AFTER INSERT ON {s}.items
FOR EACH ROW WHEN ({_NOT_BULK}) EXECUTE FUNCTION {s}.items_counts_row()""",
        f"""CREATE TRIGGER items_counts_update AFTER UPDATE ON {s}.items
FOR EACH ROW WHEN (OLD.value IS DISTINCT FROM NEW.value AND {_NOT_BULK}) EXECUTE FUNCTION {s}.items_counts_row()""",
        f"""CREATE TRIGGER items_counts_delete AFTER DELETE ON {s}.items
FOR EACH ROW WHEN ({_NOT_BULK}) EXECUTE FUNCTION {s}.items_counts_row()""",
        f"""CREATE TRIGGER items_counts_truncate AFTER TRUNCATE ON {s}.items
FOR EACH STATEMENT EXECUTE FUNCTION {s}.items_counts_truncate()""",
    ]


def trigger_bodies(schema: str) -> dict[str, str]:
    """The source of each trigger function as :func:`create` makes it, by name (verify() compares)."""
    s = quoted(schema)
    bodies = {}
    for statement in _triggers(s, _lock_key(schema)):
        if statement.startswith("CREATE FUNCTION"):
            name = statement.split("(", 1)[0].rsplit(".", 1)[1]
            tag = statement[statement.rindex("AS $") + 3:]
            tag = tag[:tag.index("$", 1) + 1]
            bodies[name] = statement[statement.index(tag) + len(tag):statement.rindex(tag)]
    return bodies


def _bulk_mode(s: str) -> list[str]:
    """The row triggers stand aside (BULK) with every other writer of items held off."""
    return [f"SELECT set_config('{BULK}', 'on', true)", f"LOCK TABLE {s}.items IN SHARE ROW EXCLUSIVE MODE"]


def bulk_merge(schema: str) -> list[str]:
    """kvstore's bulk path: merge ``pg_temp.kvstore_load(seq, key, value)`` into ``items``.

    Run inside the caller's transaction, in order. The last pair of each key wins. Other
    writers wait from the LOCK until the transaction ends (readers go on); meanwhile the
    count deltas of the whole load (every incoming value +1, every value it overwrites -1)
    are applied in one statement to shard 0, which no writer can be using (all of them wait
    on the lock), and the rows are merged with the row triggers standing aside (BULK).
    The statement after the deltas returns the identities whose shard-0 row reached 0, for
    :func:`bulk_emptied` to delete.
    """
    s = quoted(schema)
    return [
        *_bulk_mode(s),
        "CREATE TEMPORARY TABLE kvstore_incoming AS SELECT DISTINCT ON (key) key, value "
        "FROM pg_temp.kvstore_load ORDER BY key, seq DESC",
        f"""WITH changes AS (
    SELECT {s}.vid(value) AS vid, value, 1 AS d FROM pg_temp.kvstore_incoming
    UNION ALL
    SELECT {s}.vid(i.value), i.value, -1 FROM {s}.items AS i JOIN pg_temp.kvstore_incoming AS n ON n.key = i.key
), deltas AS (
    SELECT vid, (min(ARRAY[value]))[1] AS value, sum(d) AS delta FROM changes GROUP BY vid HAVING sum(d) <> 0
), applied AS (
    INSERT INTO {s}.count_shards AS c (vid, shard, value, n)
    SELECT vid, 0, value, delta FROM deltas ORDER BY vid
    ON CONFLICT (vid, shard) DO UPDATE SET n = c.n + excluded.n
    RETURNING c.vid, c.n
)
SELECT coalesce(array_agg(vid), ARRAY[]::bytea[]) FROM applied WHERE n = 0""",
    ]


def bulk_finish(schema: str) -> list[str]:
    """After :func:`bulk_merge` (and deleting the emptied rows): merge the rows, tidy up."""
    s = quoted(schema)
    return [
        f"INSERT INTO {s}.items (key, value) SELECT key, value FROM pg_temp.kvstore_incoming "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        f"SELECT set_config('{BULK}', 'off', true)",
        "DROP TABLE pg_temp.kvstore_incoming, pg_temp.kvstore_load",
    ]


def bulk_emptied(schema: str) -> str:
    """Delete the shard-0 rows :func:`bulk_merge` reported at 0 (parameter: their vids)."""
    return f"DELETE FROM {quoted(schema)}.count_shards WHERE shard = 0 AND vid = ANY(%s) AND n = 0"


def clear(schema: str) -> list[str]:
    """Remove every item, with the counts, without a trigger call per row (other writers wait)."""
    s = quoted(schema)
    return [
        *_bulk_mode(s),
        f"DELETE FROM {s}.items",
        f"DELETE FROM {s}.count_shards",
        f"SELECT set_config('{BULK}', 'off', true)",
    ]


def functions(schema: str) -> list[str]:
    """The SQL functions, for kvstore.schema's models to create before ``items`` (its index uses vid())."""
    return _functions(quoted(schema))


def value_index(schema: str) -> list[str]:
    """The value index, for the models to create after ``items`` (an expression on S.vid)."""
    s = quoted(schema)
    return [f"CREATE INDEX {VALUE_INDEX} ON {s}.items ({s}.vid(value))"]


def view_and_triggers(schema: str) -> list[str]:
    """The ``counts`` view and the counting triggers, for the models to create after ``count_shards``."""
    s = quoted(schema)
    return [_view(s), *_triggers(s, _lock_key(schema))]


def create(schema: str) -> list[str]:
    """Revision 0001's PostgreSQL branch: the statements that create a store in the existing,
    empty schema ``schema`` (run them in one transaction). Frozen, as a revision must be
    (tests/test_pg_ddl.py hashes them); new stores are made from kvstore.schema's models, and a
    test checks that both give the same schema."""
    s = quoted(schema)
    return _functions(s) + _tables(s) + _triggers(s, _lock_key(schema))


def drop(schema: str) -> list[str]:
    """The statements that undo :func:`create` (the schema itself stays)."""
    s = quoted(schema)
    return [
        f"DROP TRIGGER items_counts_truncate ON {s}.items",
        f"DROP TRIGGER items_counts_delete ON {s}.items",
        f"DROP TRIGGER items_counts_update ON {s}.items",
        f"DROP TRIGGER items_counts_insert ON {s}.items",
        f"DROP FUNCTION {s}.items_counts_truncate()",
        f"DROP FUNCTION {s}.items_counts_row()",
        f"DROP VIEW {s}.counts",
        f"DROP TABLE {s}.count_shards",
        f"DROP TABLE {s}.items",
        f"DROP FUNCTION {s}.kv_show(bytea)",
        f"DROP FUNCTION {s}.valid(bytea)",
        f"DROP FUNCTION {s}.kv(bytea)",
        f"DROP FUNCTION {s}.kv(text)",
        f"DROP FUNCTION {s}.kv(numeric)",
        f"DROP FUNCTION {s}.kv(real)",
        f"DROP FUNCTION {s}.kv(double precision)",
        f"DROP FUNCTION {s}.kv(smallint)",
        f"DROP FUNCTION {s}.kv(integer)",
        f"DROP FUNCTION {s}.kv(bigint)",
        f"DROP FUNCTION {s}.number_id(bytea, boolean)",
        f"DROP FUNCTION {s}.vid(bytea)",
    ]


def restore(schema: str) -> list[str]:
    """Statements that put back the value index and the counting triggers and their functions
    as :func:`create` makes them (for repair(); then run :func:`rebuild`)."""
    s = quoted(schema)
    triggers = _triggers(s, _lock_key(schema))
    again = [statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1) for statement in triggers]
    return [
        f"CREATE INDEX IF NOT EXISTS {VALUE_INDEX} ON {s}.items ({s}.vid(value))",
        *(f"DROP TRIGGER IF EXISTS {name} ON {s}.items" for name in TRIGGERS),
        *again,
    ]


def problems(schema: str) -> str:
    """One SELECT of ``(value, stored, actual)`` for every identity whose stored count is wrong.

    ``stored`` is the sum over the identity's shards (what ``counts`` shows when positive; 0
    when there is no shard; a non-positive sum, which ``counts`` hides, is shown as it is);
    ``actual`` is recomputed from ``items``. ``value`` is an encoding with that identity.
    """
    s = quoted(schema)
    return f"""WITH stored AS (
    SELECT vid, (min(ARRAY[value]))[1] AS value, sum(n)::bigint AS n FROM {s}.count_shards GROUP BY vid
), actual AS (
    SELECT {s}.vid(value) AS vid, (min(ARRAY[value]))[1] AS value, count(*) AS n FROM {s}.items GROUP BY 1
)
SELECT coalesce(actual.value, stored.value) AS value, coalesce(stored.n, 0) AS stored, coalesce(actual.n, 0) AS actual
FROM stored FULL JOIN actual USING (vid)
WHERE coalesce(stored.n, 0) <> coalesce(actual.n, 0)
ORDER BY vid"""


def rebuild(schema: str) -> list[str]:
    """Statements that recompute ``count_shards`` from ``items`` (run them in one transaction).

    The lock lets readers (and readers of ``counts``) go on but waits for, and then holds off,
    every writer of ``items``, so no trigger can change ``count_shards`` in between.
    """
    s = quoted(schema)
    return [
        f"LOCK TABLE {s}.items IN SHARE ROW EXCLUSIVE MODE",
        f"DELETE FROM {s}.count_shards",
        f"""INSERT INTO {s}.count_shards (vid, shard, value, n)
SELECT {s}.vid(value), 0, (min(ARRAY[value]))[1], count(*) FROM {s}.items GROUP BY 1""",
    ]
