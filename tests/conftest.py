"""Shared fixtures: database URLs on SQLite, a real PostgreSQL and a real MariaDB.

* ``postgres_server`` / ``mariadb_server`` (session): a throwaway server, started the
  first time a test asks for it and stopped at the end of the session. Missing binaries
  skip the test, except under ``CI=true`` where they fail it.
* ``sqlite_url`` / ``postgres_url`` / ``mariadb_url`` (function): an SQLAlchemy URL of a
  new, empty database of its own, dropped after the test.
* ``db_url`` (function, parametrised ``sqlite``, ``postgresql``, ``mariadb``): the URL
  for each backend in turn; ``db_kind`` is that parameter. Narrow it for one test with
  ``@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)``.
* ``make_engine`` (function): ``make_engine(url, **kwargs)`` is ``sqlalchemy.create_engine``
  whose engines are disposed after the test, which fails if one still had a connection
  checked out.

The suite runs in parallel (``-n auto`` in pyproject.toml): one pytest-xdist worker per
core, at most :data:`MAX_WORKERS`, each with its own throwaway servers. ``-n 0`` runs it
in one process.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from retention.testing import EngineTracker, Server, server_available, start_mariadb, start_postgres
from tests.support import missing

MAX_WORKERS = 4  # each worker starts its own PostgreSQL and MariaDB when it needs them
DB_KINDS = ["sqlite", "postgresql", "mariadb"]
_URL_FIXTURES = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mariadb": "mariadb_url"}


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core this process may use, at most MAX_WORKERS."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))


def _server(kind: str, start: Callable[[], Server]) -> Iterator[Server]:
    if not server_available(kind):
        missing(f"no {kind} server binaries on this machine (see .ci/run)")
    server = start()
    try:
        yield server
    finally:
        server.stop()


def _database(server: Server) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    yield from _server("postgresql", start_postgres)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[Server]:
    yield from _server("mariadb", start_mariadb)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/target.db"


@pytest.fixture
def postgres_url(postgres_server: Server) -> Iterator[str]:
    yield from _database(postgres_server)


@pytest.fixture
def mariadb_url(mariadb_server: Server) -> Iterator[str]:
    yield from _database(mariadb_server)


@pytest.fixture(params=DB_KINDS, ids=DB_KINDS)
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(_URL_FIXTURES[request.param])
    return url


@pytest.fixture
def db_kind(request: pytest.FixtureRequest, db_url: str) -> str:
    """The backend ``db_url`` points at: "sqlite", "postgresql" or "mariadb"."""
    kind: str = request.node.callspec.params["db_url"]
    return kind


@pytest.fixture
def make_engine(request: pytest.FixtureRequest) -> Iterator[Callable[..., Engine]]:
    # Set up the test's databases first so that they are dropped after the engines here
    # are disposed (teardown runs in reverse order).
    for name in ("db_url", *_URL_FIXTURES.values()):
        if name in request.fixturenames:
            request.getfixturevalue(name)
    tracker = EngineTracker()
    yield tracker
    leaks = tracker.close()
    assert not leaks, "; ".join(leaks)
