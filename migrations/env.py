"""Alembic environment for kvstore files.

Two ways in: ``kvstore.open()`` passes an open connection, already inside ``BEGIN IMMEDIATE``,
through ``config.attributes["connection"]``; the ``alembic`` command line names the file with
``-x db=PATH`` (or the ``KVSTORE_DB`` environment variable).
"""

from __future__ import annotations

import os
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from kvstore.schema import metadata

config = context.config


def run_on(connection: sa.Connection) -> None:
    # transactional_ddl: with the recipe below (or the caller's BEGIN IMMEDIATE) DDL really is
    # transactional on SQLite, so a failing migration rolls back whole.
    # On PostgreSQL a store is one schema, which also holds its alembic_version table.
    schema = config.attributes.get("schema")
    context.configure(connection=connection, target_metadata=metadata, transactional_ddl=True,
                      version_table_schema=schema)
    with context.begin_transaction():
        context.run_migrations()


def database_path() -> str:
    path = context.get_x_argument(as_dictionary=True).get("db") or os.environ.get("KVSTORE_DB")
    if not path:
        raise SystemExit("name the kvstore file: alembic -x db=PATH upgrade head (or set KVSTORE_DB)")
    return path


def transactional_engine(path: str) -> sa.Engine:
    """An engine whose transactions are real and take the write lock at once.

    pysqlite's own transaction handling skips BEGIN before DDL, so a migration failing
    half-way would leave a half-migrated file; this is SQLAlchemy's documented recipe for
    pysqlite, with BEGIN IMMEDIATE so that concurrent openers wait instead of deadlocking.
    """
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _autocommit(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


if context.is_offline_mode():
    raise SystemExit("kvstore migrations need a database file; offline (--sql) mode is not supported")

if "connection" in config.attributes:
    run_on(config.attributes["connection"])
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    with transactional_engine(database_path()).connect() as connection:
        run_on(connection)
