"""PostgreSQL URLs as libpq reads them: SQLAlchemy's spelling accepted, passwords kept out of messages."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict


def redacted(url: str) -> str:
    """``url`` for messages: without its password (in the user part or as ``?password=``).

    Parsed as libpq parses it, so a password holding ``#``, ``?`` or ``/`` is found too; a URL
    libpq cannot read is not echoed at all (it may hold a password kvstore cannot locate).
    """
    try:
        params = {key: str(value) for key, value in conninfo_to_dict(libpq_url(url)).items() if value is not None}
    except psycopg.Error:
        return "postgresql://(a URL libpq cannot read)"
    if "password" not in params:
        return url
    host, port = params.pop("host", ""), params.pop("port", "")
    user, dbname = params.pop("user", ""), params.pop("dbname", "")
    params.pop("password")
    if host.startswith("/"):  # a Unix-socket directory goes in the query
        params["host"], host = host, ""
    netloc = f"{user}:***@{host}{':' + port if port and host else ''}"
    if port and not host:
        params["port"] = port
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"postgresql://{netloc}/{dbname}" + (f"?{query}" if query else "")


def secret(url: str) -> str | None:
    """The URL's password, to scrub from server and driver messages that might echo it."""
    try:
        password = conninfo_to_dict(libpq_url(url)).get("password")
        return str(password) if password else None
    except psycopg.Error:
        return None


def libpq_url(url: str) -> str:
    """``url`` as libpq reads it: SQLAlchemy's ``postgresql+psycopg://`` spelling accepted."""
    for scheme in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql://" + url[len(scheme):]
    return url
