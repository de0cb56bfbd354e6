"""SQLAlchemy engines with retention's per-dialect settings (URLs: :mod:`retention.urls`).

Shared by the SQL adapter (the user's data) and the audit store (our records).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url

from retention import secrets, urls
from retention.urls import safe_url as safe_url  # re-exported: adapters and the store use it

SQLITE_BUSY_TIMEOUT = 30  # seconds a SQLite writer waits for the database lock
# seconds to reach a database server: one that does not answer fails its source's rules
# instead of holding up the run (PyMySQL's default; libpq would wait for the OS, minutes)
CONNECT_TIMEOUT = 10


def same_database(a: str, b: str) -> bool:
    """Whether two URLs name the same database (so one transaction can span both)."""
    try:
        ua, ub = make_url(a), make_url(b)
    except Exception:
        return False
    if ua.get_backend_name() != ub.get_backend_name():
        return False
    if ua.get_backend_name() == "sqlite":
        if not ua.database or not ub.database or ":memory:" in (ua.database, ub.database):
            return False
        return Path(ua.database).resolve() == Path(ub.database).resolve()
    return (ua.host, ua.port, ua.database, ua.username) == (ub.host, ub.port, ub.database,
                                                            ub.username)


def create_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``: UTC sessions, a patient SQLite lock, checked connections.

    A plain ``postgresql://``, ``mysql://`` or ``mariadb://`` URL gets the installed driver
    (psycopg 3, PyMySQL). Every password in the URL is remembered for
    :func:`retention.secrets.scrub`. Raises :class:`retention.urls.UrlError` for a URL that
    cannot be used (an unencoded '@' in the password, ...), without quoting it.
    """
    parsed = urls.parse(url)
    for secret in urls.secrets_in(url):
        secrets.remember(secret)
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT
    elif backend in ("mysql", "mariadb"):
        connect_args["init_command"] = "SET time_zone = '+00:00'"
    elif backend == "postgresql":
        connect_args["options"] = "-c timezone=UTC"
    if backend in ("mysql", "mariadb", "postgresql") and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    handshake = backend in ("mysql", "mariadb") and parsed.get_driver_name() == "pymysql" \
        and "read_timeout" not in parsed.query
    if handshake:  # see _pymysql_handshake_bounded
        given = parsed.query.get("connect_timeout")
        connect_args["read_timeout"] = int(given) if isinstance(given, str) and given.isdigit() \
            else CONNECT_TIMEOUT
    engine = sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True, **kwargs)
    if backend == "sqlite":
        _sqlite_immediate(engine)
    if handshake:
        _pymysql_handshake_bounded(engine)
    return engine


def _pymysql_handshake_bounded(engine: Engine) -> None:
    """PyMySQL bounds only the TCP connect with ``connect_timeout``; the server's greeting
    and the login are read with ``read_timeout``, none by default, so a host that accepts
    the connection and never greets would hold a run forever. Connections are made with
    ``read_timeout`` = the connect timeout, lifted as soon as the connection is made (a
    report's count may take minutes; a batch is bounded by its statement timeout)."""

    @event.listens_for(engine, "connect")
    def _lift(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection._read_timeout = None  # PyMySQL has no public setter for it
        if getattr(dbapi_connection, "_sock", None) is not None:
            dbapi_connection._sock.settimeout(None)
        if hasattr(dbapi_connection, "_current_timeout"):
            dbapi_connection._current_timeout = None


def _sqlite_immediate(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, begin transactions; writers take the lock up front."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction (SQLite takes its write lock at BEGIN)."""
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        yield conn
