"""What a psycopg error means to a kvstore user: one table of SQLSTATEs, and the kvstore
exception (with what to do) each becomes; which errors a single statement may simply retry,
and which mean the connection itself is gone."""

from __future__ import annotations

import psycopg

from kvstore.errors import (
    AccessDeniedError,
    BusyError,
    Error,
    NoSuchDatabaseError,
    ReadOnlyError,
    RetryableError,
    StorageFullError,
    UnreachableError,
)

# SQLSTATE classes and codes (PostgreSQL, Appendix A) and the kvstore error they become.
_RETRY = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
_BY_STATE: dict[str, tuple[type[Exception], str]] = {
    "55P03": (BusyError, "another connection held a lock for longer than the timeout; retry, or "
                         "wait longer (timeout= in Python, --timeout on the command line)"),
    "25006": (ReadOnlyError, "the store is read-only (readonly=True, a read-only role or a hot "
                             "standby); open it for writing on the primary"),
    "53100": (StorageFullError, "the server's disk is full; nothing of the failed write was kept"),
    "54000": (ValueError, "a key or value is larger than PostgreSQL can index (keys: about "
                          "2,700 bytes); use a shorter key"),
    "28P01": (AccessDeniedError, "the server refused the password; check the URL's user and password"),
    "28000": (AccessDeniedError, "the server refused this user; check pg_hba.conf and the URL's user"),
    "42501": (AccessDeniedError, "permission denied; to create a store the role needs CREATE on the "
                                 "database (or on an existing, empty schema), and to use one USAGE on its "
                                 "schema and rights on its tables: ask the owner"),
    "3D000": (NoSuchDatabaseError, "the database does not exist; create it (createdb) or fix the URL"),
    "3F000": (Error, "the store's schema does not exist any more (dropped while open?)"),
    "42P01": (Error, "the store's tables are missing (dropped while open?); `kvstore migrate URL --to base --yes` "
                     "then `kvstore migrate URL` recreates them empty, or restore a backup"),
}


def translate(exc: psycopg.Error, where: str, password: str | None = None) -> Exception:
    """Turn a psycopg exception into the kvstore exception a user can act on (``password``,
    when known, is masked in the server's or driver's own words)."""
    state = getattr(exc, "sqlstate", None) or ""
    text = str(exc).strip()
    if password:
        text = text.replace(password, "***")
    if state in _RETRY:
        return RetryableError(f"{where}: PostgreSQL aborted the transaction to break a deadlock or "
                              f"serialization conflict; retry (inside transaction(): nothing written in "
                              f"the block is kept, run the whole block again) ({text})")
    if state in _BY_STATE:
        cls, message = _BY_STATE[state]
        return cls(f"{where}: {message} (PostgreSQL said: {text})")
    if state.startswith("08") or state.startswith("57P") or (not state and isinstance(exc, psycopg.OperationalError)):
        lowered = text.lower()
        if ("password" in lowered or "authentication" in lowered or "pg_hba.conf" in lowered
                or ("role" in lowered and "does not exist" in lowered)):
            return AccessDeniedError(f"{where}: the server refused the login; check the URL's user and "
                                     f"password, and that the server's pg_hba.conf admits them ({text})")
        if "database" in lowered and "does not exist" in lowered:
            return NoSuchDatabaseError(f"{where}: the database does not exist; create it or fix "
                                       f"the URL ({text})")
        return UnreachableError(f"{where}: cannot reach the PostgreSQL server; check that it "
                                f"runs and the URL's host and port ({text})")
    if isinstance(exc, psycopg.DataError):
        return ValueError(f"{where}: PostgreSQL rejected the data: {text}")
    return Error(f"{where}: {text}")


def lost(exc: BaseException) -> bool:
    """The connection itself is gone (server restart, network): reconnect on the next call."""
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, psycopg.OperationalError) and (not state or state.startswith(("08", "57P")))
