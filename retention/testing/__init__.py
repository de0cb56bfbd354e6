"""Throwaway PostgreSQL and MariaDB servers, and engine bookkeeping, for tests.

``with start_postgres() as server: url = server.create_database("t_orders")``

PostgreSQL refuses to run as root, so as root the cluster is made and started as the
``postgres`` OS user (through ``runuser``) and MariaDB drops to the ``mysql`` user; their
directories are then created under the system temporary directory, which those users
can enter (pytest's own temporary directories are private to root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

__all__ = ["EngineTracker", "Server", "server_available", "start_mariadb", "start_postgres"]

StrPath = str | os.PathLike[str]
START_TIMEOUT = 60.0
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_INITDB_FLAGS = ["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"]
_PG_CONF = """
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'UTC'
"""
_MARIADB_FLAGS = [
    "--bind-address=127.0.0.1",
    "--skip-log-bin",
    "--skip-name-resolve",
    "--default-time-zone=+00:00",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
]
_MARIADB_USERS = "SELECT id FROM information_schema.processlist WHERE db = :db"


class _Once:
    """Runs a clean-up function at most once."""

    def __init__(self, func: Callable[[], None]) -> None:
        self._func: Callable[[], None] | None = func

    def __call__(self) -> None:
        func, self._func = self._func, None
        if func is not None:
            func()


@dataclass(frozen=True)
class Server:
    """A running throwaway server; ``url`` points at its administrative database
    (``postgres`` on PostgreSQL, ``mysql`` on MariaDB). Usable as a context manager."""

    kind: str  # "postgresql" or "mariadb"
    url: str
    directory: Path
    _stop: _Once = field(repr=False, compare=False)

    def create_database(self, name: str) -> str:
        """Create an empty database called ``name`` and return its SQLAlchemy URL."""
        self._admin(f"CREATE DATABASE {self._quote(name)}")
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, first closing any connections to it."""
        if self.kind == "postgresql":
            self._admin(f"DROP DATABASE IF EXISTS {self._quote(name)} WITH (FORCE)")
        else:
            self._admin(f"DROP DATABASE IF EXISTS {self._quote(name)}", kill_users_of=name)

    def stop(self) -> None:
        """Stop the server and delete its files. Calling it again does nothing."""
        self._stop()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _quote(self, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        return f'"{name}"' if self.kind == "postgresql" else f"`{name}`"

    def _admin(self, statement: str, kill_users_of: str | None = None) -> None:
        engine = sa.create_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                if kill_users_of is not None:  # MariaDB has no DROP DATABASE ... FORCE
                    own_id = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
                    users = conn.execute(sa.text(_MARIADB_USERS), {"db": kill_users_of})
                    for conn_id in set(users.scalars()) - {own_id}:
                        with contextlib.suppress(sa.exc.DBAPIError):
                            conn.execute(sa.text(f"KILL CONNECTION {int(conn_id)}"))
                conn.execute(sa.text(statement))
        finally:
            engine.dispose()


def server_available(kind: str) -> bool:
    """Whether a ``kind`` ("postgresql" or "mariadb") server can be started here: its
    binaries exist and, as root, so does the ``postgres`` user that PostgreSQL needs."""
    if kind in ("postgresql", "postgres"):
        ok = _postgres_bin() is not None
        return ok and (not _is_root() or (_user_exists("postgres") and bool(_which("runuser"))))
    if kind in ("mariadb", "mysql"):
        return _mariadb_bins() is not None
    raise ValueError(f"unknown server kind: {kind!r}")


def start_postgres(base_dir: StrPath | None = None) -> Server:
    """Start a PostgreSQL cluster on 127.0.0.1 (and a socket in its directory), user
    ``postgres``, trust authentication, fsync off. The directory is made in ``base_dir``
    (default: the system temporary directory), which as root ``postgres`` must enter."""
    bindir = _postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl, postgres) not found")
    as_user = "postgres" if _is_root() else None
    tmp = _make_dir("retention-pg-", base_dir, as_user)
    data, log, port = tmp / "data", tmp / "postgres.log", _free_port()
    prefix = ["runuser", "-u", as_user, "--"] if as_user else []
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", str(int(START_TIMEOUT))]
    try:
        _run([*prefix, str(bindir / "initdb"), "-D", str(data), *_INITDB_FLAGS], tmp)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"{_PG_CONF}port = {port}\nunix_socket_directories = '{tmp}'\n")
        _run([*pg_ctl, "-l", str(log), "start"], tmp, log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    def stop() -> None:
        try:
            _run([*pg_ctl, "-m", "immediate", "stop"], tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    return Server("postgresql", url, tmp, _Once(stop))


def start_mariadb(base_dir: StrPath | None = None) -> Server:
    """Start a MariaDB server on 127.0.0.1 (and a socket in its directory), user ``root``
    without a password. The directory is made in ``base_dir`` (default: the system
    temporary directory), which as root ``mysql`` must enter."""
    bins = _mariadb_bins()
    if bins is None:
        raise RuntimeError("MariaDB binaries (mariadbd, mariadb-install-db) not found")
    as_user = ("mysql" if _user_exists("mysql") else "root") if _is_root() else None
    tmp = _make_dir("retention-mariadb-", base_dir, as_user if as_user != "root" else None)
    data, log, port = tmp / "data", tmp / "error.log", _free_port()
    user = [f"--user={as_user}"] if as_user else []
    common = ["--no-defaults", f"--datadir={data}", *user, "--innodb-log-file-size=16M"]
    flags = [f"--port={port}", f"--socket={tmp}/mysqld.sock", f"--pid-file={tmp}/mysqld.pid"]
    try:
        install = ["--auth-root-authentication-method=normal", "--skip-test-db"]
        _run([bins[1], *common, *install], tmp)
        with open(tmp / "mariadbd.out", "wb") as out:
            proc = subprocess.Popen(
                [bins[0], *common, *flags, f"--log-error={log}", *_MARIADB_FLAGS],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                start_new_session=True,  # a Ctrl-C for pytest does not reach the server
            )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    def stop() -> None:
        try:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    url = f"mysql+pymysql://root@127.0.0.1:{port}/mysql?charset=utf8mb4"
    try:
        _wait_for_mariadb(proc, url, log)
    except BaseException:
        stop()
        raise
    return Server("mariadb", url, tmp, _Once(stop))


class EngineTracker:
    """Creates SQLAlchemy engines (call it like ``sqlalchemy.create_engine``); ``close()``
    disposes them all and returns one message per engine that still had connections
    checked out of its pool, so an empty list means nothing leaked."""

    def __init__(self) -> None:
        self._engines: list[tuple[Engine, Counter[str]]] = []

    def __call__(self, url: str | sa.URL, **kwargs: Any) -> Engine:
        engine = sa.create_engine(url, **kwargs)
        events: Counter[str] = Counter()  # for pools without checkedout(), e.g. NullPool
        sa.event.listen(engine, "checkout", lambda *_: events.update(["out"]))
        sa.event.listen(engine, "checkin", lambda *_: events.update(["in"]))
        self._engines.append((engine, events))
        return engine

    def close(self) -> list[str]:
        leaks = []
        for engine, events in self._engines:
            checkedout = getattr(engine.pool, "checkedout", None)
            count = checkedout() if callable(checkedout) else events["out"] - events["in"]
            if count:
                leaks.append(f"{count} connection(s) still checked out of {engine.url!r}")
            engine.dispose()
        self._engines.clear()
        return leaks


def _is_root() -> bool:
    return os.geteuid() == 0


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _which(*names: str) -> str | None:
    """The first of ``names`` found on PATH or in the system directories Debian uses."""
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/usr/libexec"])
    return next((found for name in names if (found := shutil.which(name, path=path))), None)


def _postgres_bin() -> Path | None:
    on_path = _which("initdb")
    candidates = [os.path.dirname(os.path.realpath(on_path))] if on_path else []
    versions = glob.glob("/usr/lib/postgresql/*/bin")  # Debian keeps them off PATH
    candidates += sorted(versions, key=lambda d: (d.split("/")[-2] != "15", d))
    for bindir in map(Path, candidates):
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _mariadb_bins() -> tuple[str, str] | None:
    server = _which("mariadbd", "mysqld")
    install = _which("mariadb-install-db", "mysql_install_db")
    return (server, install) if server and install else None


def _make_dir(prefix: str, base_dir: StrPath | None, owner: str | None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir))
    if owner is not None:
        path.chmod(0o755)
        shutil.chown(path, owner, owner)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-4000:] if log and log.exists() else ""


def _run(argv: list[str], cwd: Path, log: Path | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        output = f"{done.stdout}{done.stderr}{_tail(log)}"
        raise RuntimeError(f"{' '.join(argv)} failed with status {done.returncode}:\n{output}")


def _wait_for_mariadb(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 2})
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                engine.connect().close()
                return
            except sa.exc.OperationalError:
                time.sleep(0.05)
    finally:
        engine.dispose()
    problem = f"exited with status {proc.returncode}" if proc.poll() is not None else "timed out"
    raise RuntimeError(f"MariaDB did not start ({problem}):\n{_tail(log)}")
