"""Engines for the URLs users write: plain ``postgresql://``, ``mysql://`` and
``mariadb://`` use the drivers retention installs (psycopg 3, PyMySQL); a driver named
in the URL is kept; SQLite is untouched."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from retention import db
from retention.db import create_engine


def _select_one(url: str) -> str:
    """Connect through retention.db.create_engine; the driver SQLAlchemy used."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        return str(engine.dialect.driver)
    finally:
        engine.dispose()


def test_a_plain_postgresql_url_connects_with_psycopg_3(postgres_url: str) -> None:
    """postgresql://  and the older postgres:// -> postgresql+psycopg."""
    assert postgres_url.startswith("postgresql+psycopg://")
    rest = postgres_url.removeprefix("postgresql+psycopg://")

    assert _select_one(f"postgresql://{rest}") == "psycopg"
    assert _select_one(f"postgres://{rest}") == "psycopg"


def test_plain_mysql_and_mariadb_urls_connect_with_pymysql(mariadb_url: str) -> None:
    """mysql:// -> mysql+pymysql, mariadb:// -> mariadb+pymysql (the MariaDB dialect)."""
    assert mariadb_url.startswith("mysql+pymysql://")
    rest = mariadb_url.removeprefix("mysql+pymysql://")

    assert _select_one(f"mysql://{rest}") == "pymysql"
    engine = create_engine(f"mariadb://{rest}")
    try:
        assert engine.dialect.name == "mariadb"
    finally:
        engine.dispose()
    assert _select_one(f"mariadb://{rest}") == "pymysql"


def test_a_driver_named_in_the_url_is_kept() -> None:
    """postgresql+psycopg2:// asks for psycopg2 (not installed), not for psycopg 3."""
    with pytest.raises(ModuleNotFoundError, match="psycopg2"):
        create_engine("postgresql+psycopg2://app@127.0.0.1:1/shop")
    engine = create_engine("mysql+pymysql://app@127.0.0.1:1/shop")
    assert engine.dialect.driver == "pymysql"
    engine.dispose()


def test_sqlite_urls_are_untouched(tmp_path: Path) -> None:
    """sqlite:///relative and sqlite:////absolute keep SQLite's own driver."""
    assert _select_one(f"sqlite:///{tmp_path}/abs.db") == "pysqlite"
    assert (tmp_path / "abs.db").exists()


@pytest.mark.parametrize("scheme", ["postgresql", "mysql", "mariadb"])
def test_a_server_that_never_answers_fails_the_connection_within_the_timeout(
        monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    """A host that takes the TCP connection and then says nothing (a hung server, a
    firewall that swallows packets) fails within CONNECT_TIMEOUT, not the OS's minutes
    (PyMySQL: not never; its connect_timeout bounds only the TCP connect, the greeting
    is bounded by a read timeout that is lifted once connected)."""
    monkeypatch.setattr(db, "CONNECT_TIMEOUT", 2)  # libpq's smallest
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the handshake; nobody ever answers
        port = silent.getsockname()[1]
        engine = db.create_engine(f"{scheme}://app@127.0.0.1:{port}/shop")
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError):
            engine.connect()
        engine.dispose()
    assert time.monotonic() - started < 8


def test_a_mariadb_statement_may_run_longer_than_the_connect_timeout(
        mariadb_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read timeout that bounds PyMySQL's handshake is lifted once connected: a report's
    long count is not cut at CONNECT_TIMEOUT; so is one after the pool hands the
    connection out again."""
    monkeypatch.setattr(db, "CONNECT_TIMEOUT", 1)
    engine = create_engine(mariadb_url)
    try:
        for _ in range(2):
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT SLEEP(2)")).scalar() == 0
    finally:
        engine.dispose()
