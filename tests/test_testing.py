"""The test fixtures and :mod:`retention.testing` run real, separate databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from retention.testing import EngineTracker, Server, start_mariadb, start_postgres

MakeEngine = Callable[..., Engine]

NAIVE = datetime(2024, 2, 29, 23, 59, 59, 999_999)
AWARE = datetime(2024, 3, 31, 2, 30, 0, 123_456, tzinfo=timezone(timedelta(hours=5, minutes=30)))


def _events_table(kind: str) -> sa.Table:
    at_type: sa.types.TypeEngine[datetime] = {
        "postgresql": sa.DateTime(timezone=True),  # timestamptz
        "mariadb": mysql.DATETIME(fsp=6),
        "sqlite": sa.DateTime(),
    }[kind]
    return sa.Table(
        "events",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", at_type, nullable=False),
    )


def test_backend_is_the_one_named(db_url: str, db_kind: str, make_engine: MakeEngine) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []  # a fresh, empty database
        query = "SELECT sqlite_version()" if db_kind == "sqlite" else "SELECT version()"
        version = conn.execute(sa.text(query)).scalar_one()
    expected = {"sqlite": "sqlite", "postgresql": "postgresql", "mariadb": "mysql"}[db_kind]
    assert engine.dialect.name == expected
    if db_kind == "mariadb":
        assert getattr(engine.dialect, "is_mariadb", False), version
    if db_kind == "postgresql":
        assert version.startswith("PostgreSQL 15"), version


def test_datetime_round_trip(db_url: str, db_kind: str, make_engine: MakeEngine) -> None:
    table = _events_table(db_kind)
    value = AWARE if db_kind == "postgresql" else NAIVE
    engine = make_engine(db_url)
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), [{"id": 1, "at": value}])
    with engine.connect() as conn:
        back = conn.execute(sa.select(table.c.at)).scalar_one()
        column = sa.inspect(conn).get_columns("events")[1]
    assert back == value
    assert back.microsecond == value.astimezone(UTC).microsecond
    if db_kind == "postgresql":
        assert back.tzinfo is not None
        assert isinstance(column["type"], sa.DateTime) and column["type"].timezone
        assert back.astimezone(UTC) == datetime(2024, 3, 30, 21, 0, 0, 123_456, tzinfo=UTC)
    else:
        assert back.tzinfo is None
    if db_kind == "mariadb":
        assert isinstance(column["type"], mysql.DATETIME) and column["type"].fsp == 6


@pytest.mark.parametrize("server_fixture", ["postgres_server", "mariadb_server"])
def test_databases_on_one_server_are_distinct(
    server_fixture: str, request: pytest.FixtureRequest, make_engine: MakeEngine
) -> None:
    server: Server = request.getfixturevalue(server_fixture)
    first, second = server.create_database("test_first"), server.create_database("test_second")
    engines = [make_engine(first), make_engine(second)]
    try:
        assert first != second
        with engines[0].begin() as conn:
            conn.execute(sa.text("CREATE TABLE only_here (id INTEGER PRIMARY KEY)"))
        with engines[1].connect() as conn:
            assert not sa.inspect(conn).has_table("only_here")
        with engines[0].connect() as conn:
            assert sa.inspect(conn).has_table("only_here")
    finally:
        for engine in engines:
            engine.dispose()
        server.drop_database("test_first")
        server.drop_database("test_second")
    with make_engine(server.url).connect() as conn:
        names = conn.execute(
            sa.text("SELECT datname FROM pg_database")
            if server.kind == "postgresql"
            else sa.text("SELECT schema_name FROM information_schema.schemata")
        ).scalars()
        assert {"test_first", "test_second"}.isdisjoint(names)


def test_url_fixtures_give_separate_databases(
    postgres_url: str, postgres_server: Server, mariadb_url: str, mariadb_server: Server
) -> None:
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert mariadb_url.startswith("mysql+pymysql://root@127.0.0.1:")
    for url, server in [(postgres_url, postgres_server), (mariadb_url, mariadb_server)]:
        assert sa.make_url(url).database.startswith("test_")  # type: ignore[union-attr]
        assert sa.make_url(url).database != sa.make_url(server.url).database


def test_drop_database_closes_open_connections(
    postgres_server: Server, mariadb_server: Server
) -> None:
    for server in (postgres_server, mariadb_server):
        url = server.create_database("test_busy")
        engine = sa.create_engine(url, poolclass=NullPool)
        conn = engine.connect()
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))  # transaction open
        try:
            server.drop_database("test_busy")  # would wait forever without killing conn
        finally:
            conn.invalidate()
            engine.dispose()


@pytest.mark.parametrize(
    ("server_fixture", "start"),
    [("postgres_server", start_postgres), ("mariadb_server", start_mariadb)],
    ids=["postgresql", "mariadb"],
)
def test_stop_ends_the_server_and_removes_its_files(
    server_fixture: str, start: Callable[[], Server], request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(server_fixture)  # skips (or fails under CI) without binaries
    with start() as server:
        engine = sa.create_engine(server.url, poolclass=NullPool)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        assert server.directory.is_dir()
    assert not server.directory.exists()
    with pytest.raises(sa.exc.OperationalError):
        engine.connect()
    server.stop()  # a second stop does nothing


def test_bad_database_names_are_refused(postgres_server: Server) -> None:
    with pytest.raises(ValueError, match="not a plain database name"):
        postgres_server.create_database('x"; DROP DATABASE postgres; --')


def test_engine_tracker_reports_connections_left_checked_out(sqlite_url: str) -> None:
    tracker = EngineTracker()
    pooled, unpooled = tracker(sqlite_url), tracker(sqlite_url, poolclass=NullPool)
    with pooled.connect(), unpooled.connect():
        pass
    assert tracker.close() == []
    pooled, unpooled = tracker(sqlite_url), tracker(sqlite_url, poolclass=NullPool)
    left = [pooled.connect(), unpooled.connect()]
    leaks = tracker.close()
    assert len(leaks) == 2 and all("1 connection(s) still checked out" in m for m in leaks)
    for conn in left:
        conn.close()
