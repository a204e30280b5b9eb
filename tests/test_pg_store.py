"""The Store on PostgreSQL: the dict + Counter model test, URLs, errors, threads, fork, bulk loads.

Every test runs against the session's throwaway cluster (tests/pg_server.py), each in a fresh
schema; in CI these tests must run (the fixtures fail rather than skip there).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import threading
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

import kvstore
from kvstore.errors import AccessDeniedError, NoSuchDatabaseError, UnreachableError
from tests import pg_server
from tests.helpers import SCALE
from tests.test_model import StoreMachine

pytestmark = pytest.mark.postgresql


@pytest.fixture
def pg(pg_url: str, pg_schema: str):
    with kvstore.open(pg_url, schema=pg_schema) as store:
        yield store


def test_the_model_test_passes_on_postgresql(pg_url: str, pg_schema: str) -> None:
    numbers = itertools.count()

    class PostgresMachine(StoreMachine):
        def __init__(self) -> None:
            self.schema = f"{pg_schema}_{next(numbers)}"
            super().__init__()

        def open(self) -> kvstore.Store:
            return kvstore.open(pg_url, schema=self.schema)

        def teardown(self) -> None:
            super().teardown()
            pg_server.drop_schema(pg_url, self.schema)

    run_state_machine_as_test(PostgresMachine, settings=settings(
        max_examples=int(40 * SCALE) or 10, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))


def test_exact_types_round_trip(pg) -> None:
    keys = [0, -1, 2**63 - 1, -(2**63), "", "é\x00", b"", b"\x00\xff"]
    values = ["", "a\x00b", 0, -0.0, 0.0, 1, 1.0, float("inf"), float("-inf"), 5e-324, 2**53 + 1, b"\x00", "x" * 5000]
    for key, value in itertools.product(keys, values):
        pg[key] = value
        got = pg[key]
        assert type(got) is type(value) and got == value and repr(got) == repr(value)
    assert list(pg) == sorted(keys, key=lambda k: (2, k) if type(k) is bytes else (1, k) if type(k) is str else (0, k))


def test_counting_equality_is_pythons(pg) -> None:
    pg.update({1: 1, 2: 1.0, 3: 1, 4: -0.0, 5: 0, 6: "1", 7: b"1"})
    assert pg.count(1) == pg.count(1.0) == 3
    assert pg.count(0) == pg.count(-0.0) == 2
    assert pg.count("1") == 1 and pg.count(b"1") == 1
    assert Counter(pg.counts()) == Counter({1: 3, 0: 2, "1": 1, b"1": 1})
    for strategy in ("group_by", "scan"):
        assert pg.count(1.0, strategy=strategy) == 3


def test_long_values_count_and_find_their_keys(pg) -> None:
    big = "v" * 100_000
    pg.update({i: big if i % 2 else big + "!" for i in range(10)})
    assert pg.count(big) == 5 and pg.count(big + "!") == 5
    assert list(pg.keys_for(big)) == [1, 3, 5, 7, 9]
    assert pg.verify() == []


def test_bulk_update_goes_through_copy_and_stays_exact(pg) -> None:
    n = int(20_000 * SCALE) or 2_000
    pairs = [(i, ("apple", "pear", 1, 1.0, b"x")[i % 5]) for i in range(n)]
    pg.update(pairs)
    pg.update([(i, "pear") for i in range(0, n, 2)] + [(0, "last wins")])
    model = dict(pairs)
    model.update({i: "pear" for i in range(0, n, 2)})
    model[0] = "last wins"
    assert len(pg) == n
    assert pg.counts() == dict(Counter(model.values()))
    assert pg.verify() == []


def test_a_bad_pair_late_in_a_bulk_update_keeps_nothing(pg) -> None:
    pg[1] = "before"
    with pytest.raises(TypeError):
        pg.update(itertools.chain(((i, "x") for i in range(5_000)), [(None, "bad")]))
    assert dict(pg.items()) == {1: "before"} and pg.counts() == {"before": 1}


def test_ranges_and_prefixes(pg) -> None:
    pg.update({"apple": 1, "apricot": 2, "banana": 3, b"ap": 4, 5: 5, -5: 6})
    assert list(pg.keys(prefix="ap")) == ["apple", "apricot"]
    assert list(pg.keys(prefix=b"a")) == [b"ap"]
    assert list(pg.keys(start=0, stop="b")) == [5, "apple", "apricot"]
    assert list(pg.items(start="b")) == [("banana", 3), (b"ap", 4)]


def test_incr_setdefault_popitem(pg) -> None:
    assert pg.incr("n") == 1 and pg.incr("n", 2.5) == 3.5
    pg["s"] = "text"
    with pytest.raises(TypeError):
        pg.incr("s")
    pg["big"] = 2**63 - 1
    with pytest.raises(OverflowError):
        pg.incr("big")
    assert pg["big"] == 2**63 - 1
    assert pg.setdefault("new", "d") == "d" and pg.setdefault("new", "e") == "d"
    assert pg.popitem() == ("big", 2**63 - 1)
    assert pg.count(2**63 - 1) == 0


def test_incr_is_atomic_across_threads(pg) -> None:
    def work() -> None:
        for _ in range(50):
            pg.incr("hits")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pg["hits"] == 400 and pg.count(400) == 1


def test_transactions_nest_and_roll_back(pg) -> None:
    with pg.transaction():
        pg[1] = "a"
        with pytest.raises(RuntimeError), pg.transaction():
            pg[2] = "b"
            raise RuntimeError
        assert 2 not in pg
    assert dict(pg.items()) == {1: "a"}
    with pytest.raises(RuntimeError), pg.transaction():
        pg[3] = "c"
        raise RuntimeError
    assert dict(pg.items()) == {1: "a"} and pg.counts() == {"a": 1}


def test_an_error_caught_inside_a_block_fails_the_block(pg) -> None:
    with pytest.raises(kvstore.Error, match="rolled back"), pg.transaction():
        pg[1] = "kept?"
        with pytest.raises(ValueError):
            pg[os.urandom(6000)] = "too long a key for a B-tree"
    assert 1 not in pg


def test_deadlock_inside_transactions_is_a_retryable_error(pg_url: str, pg_schema: str) -> None:
    a = kvstore.open(pg_url, schema=pg_schema)
    a.update({1: "x", 2: "y"})
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(first: int, second: int) -> None:
        try:
            with a.transaction():
                a[first] = "locked"
                barrier.wait()
                a[second] = "then"
        except kvstore.Error as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=args) for args in ((1, 2), (2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1 and isinstance(errors[0], kvstore.RetryableError), errors
    assert a.verify() == []
    a.close()


def test_threads_each_get_a_connection_and_counts_stay_exact(pg) -> None:
    def work(n: int) -> None:
        for i in range(200):
            pg[(n * 1000 + i) % 300] = ("a", "b", "c")[i % 3]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(pg.counts().values()) == len(pg) == 300
    assert pg.verify() == []


def test_close_beside_busy_threads(pg_url: str, pg_schema: str) -> None:
    db = kvstore.open(pg_url, schema=pg_schema)
    stop = threading.Event()
    failures: list[BaseException] = []

    def work() -> None:
        i = 0
        while not stop.is_set():
            try:
                db[i % 50] = "v"
            except kvstore.Error:
                return  # the store was closed: the documented error
            except BaseException as exc:  # anything else is a bug
                failures.append(exc)
                return
            i += 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    threading.Event().wait(0.3)
    db.close()
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    with pytest.raises(kvstore.Error, match="closed"):
        db[1] = "after close"


def _child_writes(url: str, schema: str, key: int) -> None:
    with kvstore.open(url, schema=schema) as db:
        db[key] = "child"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_gets_its_own_connection_and_parent_keeps_working(pg) -> None:
    pg[0] = "parent"
    for _ in range(5):
        pid = os.fork()
        if pid == 0:  # the child: the inherited store works, on its own connection
            code = 1
            try:
                pg[os.getpid()] = "child"
                code = 0 if pg[0] == "parent" else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert pg[0] == "parent"  # the parent's session was not closed by the child
    assert pg.count("child") == 5 and pg.verify() == []


def test_repeatable_read_writers_sharing_a_shard(pg, pg_url: str, pg_schema: str) -> None:
    """A REPEATABLE READ client whose shard a former owner wrote after its snapshot began gets a
    retryable serialization failure, never a duplicate key (and kvstore's own sessions are READ COMMITTED)."""
    assert pg._conns.get().execute("SHOW default_transaction_isolation").fetchone()[0] == "read committed"
    with psycopg.connect(pg_url) as a, psycopg.connect(pg_url) as b:
        a.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        a.execute("SELECT 1")  # a's snapshot begins
        b.execute(f"INSERT INTO {pg_schema}.items VALUES ({pg_schema}.kv(1), {pg_schema}.kv('v'))")
        b.commit()  # b owned some shard and committed a row there
        for key in range(2, 70):  # a walks every shard it may take
            try:
                with a.transaction():
                    a.execute(f"INSERT INTO {pg_schema}.items VALUES ({pg_schema}.kv({key}), {pg_schema}.kv('v'))")
            except psycopg.errors.SerializationFailure:
                pass
        a.commit()
    assert pg.verify() == []


def test_pool_with_fork_and_spawn(pg, pg_url: str, pg_schema: str) -> None:
    pg[0] = "start"
    for method in ("fork", "spawn"):
        with multiprocessing.get_context(method).Pool(3) as pool:
            pool.starmap(_child_writes, [(pg_url, pg_schema, k) for k in range(1, 7)])
    assert pg.count("child") == 6
    assert pickle.loads(pickle.dumps(pg)).count("child") == 6


def _first_open(url: str, schema: str) -> int:
    with kvstore.open(url, schema=schema) as db:
        db[os.getpid()] = "here"
        return db.count("here")


def test_concurrent_first_opens_all_succeed(pg_url: str, pg_schema: str) -> None:
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        results = pool.starmap(_first_open, [(pg_url, pg_schema)] * 16)
    assert all(n >= 1 for n in results)
    with kvstore.open(pg_url, schema=pg_schema) as db:
        assert db.count("here") == len(db) and db.verify() == []


def _with(url: str, **parts: object) -> str:
    u = urlsplit(url)
    netloc = f"{parts.get('user', u.username)}:{parts.get('password', u.password)}@{u.hostname}:{parts.get('port', u.port)}"
    return urlunsplit(u._replace(netloc=netloc, path=str(parts.get("path", u.path))))


def test_tcp_url_with_password(pg_tcp_url: str) -> None:
    try:
        with kvstore.open(pg_tcp_url, schema="tcp_store") as db:
            db[1] = "x"
            assert db.count("x") == 1
            assert "secret" not in repr(db) and "secret" not in db.path
    finally:
        pg_server.drop_schema(pg_tcp_url, "tcp_store")


def test_connection_errors_are_clear(pg_tcp_url: str) -> None:
    with pytest.raises(AccessDeniedError, match="password") as info:
        kvstore.open(_with(pg_tcp_url, password="wrong"))
    assert "wrong" not in str(info.value)
    with pytest.raises(NoSuchDatabaseError):
        kvstore.open(_with(pg_tcp_url, path="/no_such_db"))
    with pytest.raises(UnreachableError):
        kvstore.open(_with(pg_tcp_url, port=pg_server._free_port()), timeout=2)


def test_a_foreign_schema_is_refused_untouched(pg_url: str, pg_schema: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
        conn.execute(f"CREATE TABLE {pg_schema}.items (id int)")
        before = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE nspname = %s", (pg_schema,)).fetchone()
        with pytest.raises(kvstore.NotAKvstoreFileError, match="not a kvstore store"):
            kvstore.open(pg_url, schema=pg_schema)
        after = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE nspname = %s", (pg_schema,)).fetchone()
        assert before == after


def test_a_newer_revision_is_refused(pg_url: str, pg_schema: str) -> None:
    kvstore.open(pg_url, schema=pg_schema).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_schema}.alembic_version SET version_num = '9999'")
    with pytest.raises(kvstore.SchemaTooNewError):
        kvstore.open(pg_url, schema=pg_schema)


def test_migrate_down_and_up_again(pg_url: str, pg_schema: str) -> None:
    from kvstore.postgresql import schema as schemas

    with kvstore.open(pg_url, schema=pg_schema) as db:
        db[1] = "x"
    schemas.migrate(pg_url, pg_schema, "base")
    assert schemas.revision(schemas.settings_for(pg_url), pg_schema) is None
    with kvstore.open(pg_url, schema=pg_schema) as db:
        assert len(db) == 0 and db.verify() == []


def test_verify_and_repair_after_writes_without_triggers(pg, pg_url: str, pg_schema: str) -> None:
    pg.update({1: "a", 2: "a"})
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {pg_schema}.items DISABLE TRIGGER USER")
        conn.execute(f"INSERT INTO {pg_schema}.items VALUES ({pg_schema}.kv(3), {pg_schema}.kv('a'))")
    problems = pg.verify()
    assert any(isinstance(p, kvstore.Mismatch) and p.value == "a" and p.counted == 3 for p in problems)
    assert pg.repair() >= 1
    assert pg.verify() == [] and pg.count("a") == 3


def test_backup_writes_a_sqlite_store(pg, tmp_path) -> None:
    pg.update({1: "a", "k": b"v", b"x": 2.5})
    dest = str(tmp_path / "copy.db")
    pg.backup(dest)
    with kvstore.open(dest) as copy:
        assert dict(copy.items()) == dict(pg.items()) and copy.counts() == pg.counts()
    with pytest.raises(kvstore.Error, match="already exists"):
        pg.backup(dest)


def test_stats_and_vacuum(pg) -> None:
    pg.update({i: "v" for i in range(1000)})
    stats = pg.stats()
    assert stats["items"]["rows"] == 1000 and stats["counts"]["rows"] == 1 and stats["file"]["bytes"] > 0
    pg.clear()
    pg.vacuum()
    assert len(pg) == 0


def _acknowledging_writer(url: str, schema: str, conn) -> None:
    """Write keys forever, telling the parent each key once set() has returned."""
    with kvstore.open(url, schema=schema) as db:
        for i in itertools.count():
            db[i] = ("apple", "pear", 1.0)[i % 3]
            conn.send(i)


def test_sigkill_keeps_every_acknowledged_write(pg_url: str, pg_schema: str) -> None:
    import signal

    kvstore.open(pg_url, schema=pg_schema).close()
    for _ in range(int(3 * SCALE) or 1):
        parent, child = multiprocessing.Pipe(duplex=False)
        proc = multiprocessing.get_context("fork").Process(target=_acknowledging_writer, args=(pg_url, pg_schema, child))
        proc.start()
        acknowledged = -1
        while acknowledged < 200:
            acknowledged = parent.recv()
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        while parent.poll():
            acknowledged = parent.recv()
        with kvstore.open(pg_url, schema=pg_schema) as db:
            assert all(i in db for i in range(acknowledged + 1))
            assert db.verify() == [] and sum(db.counts().values()) == len(db)


def _catalog(url: str, schema: str) -> dict[str, list[str]]:
    """Everything a store's schema defines, as text: a migrated store must equal a created one."""
    queries = {
        "columns": "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable "
                   "FROM information_schema.columns WHERE table_schema = %s",
        "constraints": "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(c.oid) "
                       "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE nspname = %s",
        "indexes": "SELECT indexdef FROM pg_indexes WHERE schemaname = %s",
        "functions": "SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                     "WHERE nspname = %s",
        "triggers": "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = %s AND NOT tgisinternal",
        "views": "SELECT viewname || ' ' || definition FROM pg_views WHERE schemaname = %s",
        "options": "SELECT relname || ' ' || coalesce(array_to_string(reloptions, ','), '') FROM pg_class c "
                   "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = %s",
    }
    with psycopg.connect(url) as conn:
        return {name: sorted(row[0].replace(schema, "S") for row in conn.execute(query, (schema,)))
                for name, query in queries.items()}


def test_a_store_migrated_down_and_up_equals_a_created_one(pg_url: str, pg_schema: str) -> None:
    """The PostgreSQL twin of the sqlite_master equality test: every revision step, down to base and back."""
    from kvstore.constants import KNOWN_REVISIONS
    from kvstore.postgresql import schema as schemas

    kvstore.open(pg_url, schema=pg_schema).close()
    created = _catalog(pg_url, pg_schema)
    assert created["triggers"] and created["functions"] and created["views"]
    for target in ("base", *KNOWN_REVISIONS):
        schemas.migrate(pg_url, pg_schema, target)
    for target in reversed(("base", *KNOWN_REVISIONS[:-1])):
        schemas.migrate(pg_url, pg_schema, target)
    schemas.migrate(pg_url, pg_schema, "head")
    assert _catalog(pg_url, pg_schema) == created


def _deadlocks(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0])


def test_small_updates_in_opposite_orders_never_deadlock(pg, pg_url: str) -> None:
    """Two threads update the same keys in opposite orders: rows are locked in key order, so no
    deadlock happens at all (a retried one would hide from the caller, not from the server)."""
    keys = list(range(40))
    before = _deadlocks(pg_url)
    errors: list[BaseException] = []

    def work(order: list[int], value: str) -> None:
        try:
            for _ in range(30):
                pg.update([(k, value) for k in order])
                pg.incr("hits")
        except BaseException as exc:  # a RetryableError here would be a deadlock surfaced to the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(keys, "a")), threading.Thread(target=work, args=(keys[::-1], "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert pg["hits"] == 60 and pg.verify() == []
    assert _deadlocks(pg_url) == before


# -- found by an attack on the backend: each failed before its fix ------------------------------


def test_update_from_a_source_that_reads_the_same_store(pg) -> None:
    """The source of pairs may read the store: it runs between COPY statements (it used to hang)."""
    n = 2_500
    pg.update((i, "v") for i in range(n))
    done = threading.Event()

    def rewrite() -> None:
        pg.update((k, v + "x") for k, v in pg.items())
        done.set()

    worker = threading.Thread(target=rewrite, daemon=True)
    worker.start()
    worker.join(60)
    assert done.is_set(), "update() from the store's own items() hung"
    assert pg.count("vx") == n and len(pg) == n


def _terminate(url: str, conn) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))


def test_a_block_whose_connection_is_lost_keeps_nothing(pg, pg_url: str) -> None:
    with pytest.raises(kvstore.Error), pg.transaction():
        pg["a"] = 1
        _terminate(pg_url, pg._conns.get())
        with pytest.raises(kvstore.Error):
            pg["b"] = 2
        with pytest.raises(kvstore.Error):  # not autocommitted on a new connection
            pg["c"] = 3
    assert dict(pg.items()) == {}
    pg["after"] = 1  # the next call reconnects
    assert dict(pg.items()) == {"after": 1}


def test_a_connection_lost_at_commit_costs_one_error_only(pg, pg_url: str) -> None:
    with pytest.raises(kvstore.Error):
        with pg.transaction():
            pg["a"] = 1
            _terminate(pg_url, pg._conns.get())
    pg["b"] = 2
    assert "a" not in pg and pg["b"] == 2


def test_passwords_with_url_characters_are_never_shown(pg_url: str) -> None:
    password = "p#ss?wrd"  # libpq reads it unescaped; kvstore's messages used not to find it
    from urllib.parse import quote

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS kv_odd")
        admin.execute(f"CREATE ROLE kv_odd LOGIN SUPERUSER PASSWORD '{password}'")
        port = admin.execute("SHOW port").fetchone()[0]
    try:
        for url in (f"postgresql://kv_odd:{password}@127.0.0.1:{port}/postgres",
                    f"postgresql://kv_odd:{quote(password, safe='')}@127.0.0.1:{port}/postgres",
                    f"postgresql://kv_odd@127.0.0.1:{port}/postgres?password={quote(password, safe='')}"):
            with kvstore.open(url, schema="odd_pw") as db:
                db[1] = "x"
                assert password not in db.path and password not in repr(db)
                assert quote(password, safe="") not in db.path
            wrong = url.replace("wrd", "wXX")  # the password only
            with pytest.raises(kvstore.AccessDeniedError) as info:
                kvstore.open(wrong)
            assert "p#ss" not in str(info.value) and "XX" not in str(info.value)
        with pytest.raises(kvstore.Error, match="cannot read") as info:
            kvstore.open(f"postgresql://kv_odd:s%zzecret@127.0.0.1:{port}/postgres")
        assert "zzecret" not in str(info.value)
    finally:
        pg_server.drop_schema(pg_url, "odd_pw")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("DROP ROLE IF EXISTS kv_odd")


def test_verify_sees_replica_only_triggers_and_replaced_functions(pg, pg_url: str, pg_schema: str) -> None:
    pg.update({1: "a", 2: "a"})
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {pg_schema}.items ENABLE REPLICA TRIGGER items_counts_insert")
        conn.execute(f"CREATE OR REPLACE FUNCTION {pg_schema}.items_counts_truncate() RETURNS trigger "
                     "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
    names = {getattr(p, "name", None) for p in pg.verify()}
    assert {"items_counts_insert", "items_counts_truncate"} <= names
    pg[3] = "a"  # not counted while the trigger is replica-only
    assert pg.repair() >= 2
    assert pg.verify() == [] and pg.count("a") == 3


def test_a_hand_made_row_that_is_not_utf8_still_reads(pg, pg_url: str, pg_schema: str) -> None:
    pg["ok"] = "fine"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {pg_schema}.items VALUES ({pg_schema}.kv('bad'), '\\x10ff'::bytea)")
    assert len(list(pg.items())) == 2 and sum(pg.counts().values()) == 2
    assert any(isinstance(p, kvstore.ForeignRow) for p in pg.verify())
    assert pg.pop("bad") == "\udcff"  # the bad byte as a lone surrogate, removable
    assert pg.verify() == []


def test_close_does_not_wait_for_a_statement_blocked_on_a_lock(pg_url: str, pg_schema: str) -> None:
    import math
    import time

    db = kvstore.open(pg_url, schema=pg_schema, timeout=math.inf)
    db[1] = "x"
    with psycopg.connect(pg_url) as holder:  # holds the row's lock until it ends
        holder.execute(f"UPDATE {pg_schema}.items SET value = value WHERE key = {pg_schema}.kv(1)")
        outcome: list[BaseException] = []

        def blocked() -> None:
            try:
                db[1] = "y"
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=blocked)
        worker.start()
        time.sleep(0.5)
        started = time.monotonic()
        db.close()
        worker.join(10)
        assert time.monotonic() - started < 5 and not worker.is_alive()
        assert outcome and isinstance(outcome[0], kvstore.Error) and "closed" in str(outcome[0])
        holder.rollback()


def test_url_options_are_kept(pg_url: str, pg_schema: str) -> None:
    sep = "&" if "?" in pg_url else "?"
    with kvstore.open(f"{pg_url}{sep}options=-c%20statement_timeout%3D4321", schema=pg_schema) as db:
        assert db._conns.get().execute("SHOW statement_timeout").fetchone()[0] == "4321ms"
        assert db._conns.get().execute("SHOW lock_timeout").fetchone()[0] == "5s"


def test_reserved_schema_names_are_a_value_error(pg_url: str) -> None:
    with pytest.raises(ValueError, match="pg_"):
        kvstore.open(pg_url, schema="pg_mine")


# -- max_connections: a bounded set of connections shared by many threads -------------------------


def _server_connections(url: str, schema: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").fetchone()[0])


def test_many_threads_share_a_bounded_set_of_connections(pg_url: str, pg_schema: str) -> None:
    with kvstore.open(pg_url, schema=pg_schema, max_connections=3) as db:
        before = _server_connections(pg_url, pg_schema)
        peak = [0]
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(30):
                    db[f"{n}:{i}"] = ("a", "b")[i % 2]
                    with db.transaction():
                        db.incr("total")
                    peak[0] = max(peak[0], len(db._conns._pooled))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert peak[0] <= 3 and _server_connections(pg_url, pg_schema) - before <= 3
        assert db["total"] == 24 * 30 and db.count("a") == 24 * 15 and db.verify() == []
        assert pickle.loads(pickle.dumps(db)).max_connections == 3


def test_a_block_holds_its_connection_and_others_wait_then_time_out(pg_url: str, pg_schema: str) -> None:
    with kvstore.open(pg_url, schema=pg_schema, max_connections=1, timeout=0.5) as db:
        entered, leave = threading.Event(), threading.Event()

        def hold() -> None:
            with db.transaction():
                db["held"] = 1
                entered.set()
                leave.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        entered.wait(10)
        outcome: list[BaseException] = []
        other = threading.Thread(target=lambda: outcome.append(pytest.raises(kvstore.BusyError, db.get, "held")))
        other.start()
        other.join(10)
        leave.set()
        holder.join(10)
        assert outcome and "max_connections" in str(outcome[0].value)
        assert db["held"] == 1  # the connection came back when the block ended


def test_bounded_connections_after_fork(pg_url: str, pg_schema: str) -> None:
    with kvstore.open(pg_url, schema=pg_schema, max_connections=2) as db:
        db[0] = "parent"
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                db[os.getpid()] = "child"
                code = 0 if db[0] == "parent" else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert db.count("child") == 1 and db[0] == "parent"


def test_max_connections_is_checked_first(pg_url: str, pg_schema: str, path: str) -> None:
    with pytest.raises(ValueError, match="max_connections"):
        kvstore.open(pg_url, schema=pg_schema, max_connections=0)
    assert not pg_server.schema_exists(pg_url, pg_schema)
    with pytest.raises(ValueError, match="max_connections"):
        kvstore.open(path, max_connections=2)


def test_a_single_call_runs_again_after_a_deadlock_but_not_inside_a_block(pg, monkeypatch) -> None:
    """Outside transaction() a statement PostgreSQL rolled back to break a deadlock is simply run
    again (up to RETRIES times, then RetryableError); inside a block it ends the block instead."""
    from kvstore.postgresql.session import RETRIES

    pg[1] = "a"
    real = psycopg.Connection.execute
    failures = {"left": 0}

    def flaky(self, query, params=None, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise psycopg.errors.DeadlockDetected("deadlock detected (injected by the test)")
        return real(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", flaky)
    failures["left"] = 2
    assert pg.get(1) == "a" and failures["left"] == 0
    failures["left"] = RETRIES + 1
    with pytest.raises(kvstore.RetryableError):
        pg.get(1)
    assert failures["left"] == 0
    with pytest.raises(kvstore.RetryableError):
        with pg.transaction():
            failures["left"] = 1
            pg.get(1)
    monkeypatch.undo()
    assert pg[1] == "a" and pg.verify() == []
