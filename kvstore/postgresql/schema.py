"""Creating, checking and upgrading a store's PostgreSQL schema, with the same Alembic history.

A store is one PostgreSQL schema (``kvstore`` unless ``schema=`` says otherwise). Opening
reads its revision on a plain connection; only when the schema is missing or behind does it
take a transaction-scoped advisory lock and, in that one transaction, re-check, create the
schema and either create the store from kvstore.schema's models (stamped at the head) or run
Alembic (PostgreSQL DDL is transactional, so a failed upgrade leaves the
previous revision, and concurrent first opens wait for the first instead of colliding).
A schema that holds anything else than a kvstore store is refused untouched.
"""

from __future__ import annotations

from typing import Any

import psycopg

from kvstore.constants import HEAD_REVISION, KNOWN_REVISIONS
from kvstore.errors import Error, MigrationError, NotAKvstoreFileError, SchemaTooNewError
from kvstore.postgresql.connections import Settings, connect
from kvstore.postgresql.errors import translate
from kvstore.postgresql.ddl import quoted

LOCK_CLASS = 0x4B565354
"""First key of the advisory lock ('KVST', as SQLite files' application_id); the second is
the hash of the schema name, so stores in different schemas open independently."""


def ensure(settings: Settings, schema: str) -> None:
    """Create the store in ``schema`` or bring it to the current revision; refuse a foreign schema."""
    conn = connect(settings)
    try:
        if _revision(conn, settings, schema) == HEAD_REVISION:
            return
        if settings.readonly:
            raise Error(f"{settings.where}: schema {schema!r} holds no kvstore store at revision "
                        f"{HEAD_REVISION}, and a read-only store cannot create or upgrade it")
        move(conn, settings, schema, HEAD_REVISION)
    finally:
        conn.close()


def move(conn: psycopg.Connection[Any], settings: Settings, schema: str, target: str) -> None:
    """Upgrade or downgrade the store in ``schema`` to ``target`` in one locked transaction."""
    import sqlalchemy as sa
    from alembic import command

    from kvstore.history import alembic_config

    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: conn, poolclass=sa.pool.StaticPool)
    with engine.connect() as sa_conn:
        try:
            sa_conn.exec_driver_sql("BEGIN")
            sa_conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, schema))
            current = _revision(conn, settings, schema)  # again, under the lock
            sa_conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted(schema)}")
            cfg = alembic_config(sa_conn)
            cfg.attributes["schema"] = schema
            revisions = (None, *KNOWN_REVISIONS)
            goal = None if target == "base" else target
            if current is None and goal == HEAD_REVISION:
                # A new store, from the models (as a new SQLite file is), stamped at the head.
                from kvstore import schema as models

                models.create(sa_conn.execution_options(schema_translate_map={None: schema}))
                command.stamp(cfg, "head")
            elif revisions.index(goal) >= revisions.index(current):
                if current != goal:
                    command.upgrade(cfg, target)
            else:
                command.downgrade(cfg, target)
            sa_conn.commit()
        except Error:
            sa_conn.rollback()
            raise
        except psycopg.Error as exc:
            sa_conn.rollback()
            raise translate(exc, settings.where) from exc
        except Exception as exc:
            sa_conn.rollback()
            orig = getattr(exc, "orig", None)
            if isinstance(orig, psycopg.Error) and getattr(orig, "sqlstate", "") in ("42501", "53100", "55P03"):
                raise translate(orig, settings.where) from exc
            raise MigrationError(f"{settings.where}: migrating schema {schema!r} failed and was rolled back; "
                                 f"it keeps its previous revision ({orig or exc})") from exc


def state(settings: Settings, schema: str) -> tuple[bool, str | None]:
    """Whether the PostgreSQL schema exists at all, and the store's revision in it (None: no
    store), read on one connection."""
    conn = connect(settings)
    try:
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None
        return exists, _revision(conn, settings, schema) if exists else None
    except psycopg.Error as exc:
        raise translate(exc, settings.where) from exc
    finally:
        conn.close()


def revision(settings: Settings, schema: str) -> str | None:
    """The store's revision in ``schema`` (None when there is no store there yet)."""
    conn = connect(settings)
    try:
        return _revision(conn, settings, schema)
    finally:
        conn.close()


def _revision(conn: psycopg.Connection[Any], settings: Settings, schema: str) -> str | None:
    """Read the revision; refuse a schema that holds something else, or a newer revision."""
    try:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')", (schema,)).fetchall()
        names = {name for (name,) in rows}
        if "alembic_version" not in names:
            functions = conn.execute(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = %s", (schema,)).fetchone()
            if names or (functions and functions[0]):
                raise NotAKvstoreFileError(
                    f"{settings.where}: schema {schema!r} holds tables or functions that are not a "
                    f"kvstore store ({', '.join(sorted(names)) or 'functions'}); kvstore changed nothing. "
                    "Choose another schema (schema= in Python, --schema on the command line)")
            return None
        row = conn.execute(f"SELECT version_num FROM {quoted(schema)}.alembic_version").fetchone()
    except psycopg.Error as exc:
        raise translate(exc, settings.where) from exc
    current = row[0] if row else None
    if current is not None and current not in KNOWN_REVISIONS:
        raise SchemaTooNewError(
            f"{settings.where}: schema {schema!r} has kvstore revision {current!r}, newer than this "
            f"kvstore knows (up to {HEAD_REVISION}); upgrade the kvstore package to open it")
    return current


def settings_for(url: str, timeout: float = 5.0) -> Settings:
    """Connection settings for a one-off administrative connection to ``url``."""
    from kvstore.postgresql.urls import libpq_url

    return Settings(libpq_url(url), timeout)


def migrate(url: str, schema: str, target: str, timeout: float = 5.0) -> None:
    """Move the store in ``schema`` to ``target`` (a revision, ``head`` or ``base``), atomically."""
    settings = settings_for(url, timeout)
    conn = connect(settings)
    try:
        move(conn, settings, schema, HEAD_REVISION if target == "head" else target)
    finally:
        conn.close()


def remove(url: str, schema: str, timeout: float = 5.0, *, only_if_empty: bool = False,
           keep_schema: bool = False) -> None:
    """Drop the store in ``schema``: its objects, then the schema itself if nothing else is in it.

    Other objects in the schema are left alone (the schema stays then). ``only_if_empty``: do
    nothing when the store holds items (a failed ``kvstore load`` removing the store it made
    must not remove one another process filled meanwhile). ``keep_schema``: the schema was
    there before the store (a DBA made it): leave it, empty.
    """
    from kvstore.postgresql import ddl

    settings = settings_for(url, timeout)
    conn = connect(settings)
    s = quoted(schema)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, schema))
            exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
            if not exists or _revision(conn, settings, schema) is None:
                return
            if only_if_empty and conn.execute(f"SELECT 1 FROM {s}.items LIMIT 1").fetchone():
                return
            for statement in [*ddl.drop(schema), f"DROP TABLE {s}.alembic_version"]:
                conn.execute(statement)
            if keep_schema:
                return
            try:
                with conn.transaction():  # a savepoint: the schema stays if it holds anything else
                    conn.execute(f"DROP SCHEMA {s}")
            except psycopg.errors.DependentObjectsStillExist:
                pass
    except psycopg.Error as exc:
        raise translate(exc, settings.where) from exc
    finally:
        conn.close()
