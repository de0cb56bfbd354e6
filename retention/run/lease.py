"""One runner per rule: a lease per (policy, rule), held through the audit store.

The lease dies with its holder, so nobody ever waits on a dead runner:

* PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``);
* MariaDB/MySQL: ``GET_LOCK`` on the session;
* SQLite: an OS file lock (``flock``) on a file beside the audit database.

Taking a lease never waits: a held lease means another runner is at work.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from retention.audit.store import AuditStore

_local_locks: dict[str, threading.Lock] = {}  # for stores without a file or server


def lease_name(policy: str, rule: str) -> str:
    return "retention:" + hashlib.sha256(f"{policy}\0{rule}".encode()).hexdigest()[:40]


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Lease:
    """A held lease; :meth:`release` it (or use it as a context manager)."""

    def __init__(self, name: str, release: Any, alive: Any = None) -> None:
        self.name = name
        self._release = release
        self._alive = alive
        self.released = False

    def alive(self) -> bool:
        """Whether the lease is still held (a server lease dies with its connection)."""
        if self.released:
            return False
        if self._alive is None:
            return True
        try:
            return bool(self._alive())
        except Exception:
            return False

    def release(self) -> None:
        if not self.released:
            self.released = True
            with contextlib.suppress(Exception):  # a dead session has released it already
                self._release()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(store: AuditStore, policy: str, rule: str) -> Lease | None:
    """Take the lease of (policy, rule) now, or return None if another runner holds it."""
    name = lease_name(policy, rule)
    backend = store.engine.dialect.name
    if backend == "postgresql":
        return _server_lease(store, name, "SELECT pg_try_advisory_lock(:k)",
                             "SELECT pg_advisory_unlock(:k)", {"k": _advisory_key(name)})
    if backend in ("mysql", "mariadb"):
        return _server_lease(store, name, "SELECT GET_LOCK(:k, 0)", "SELECT RELEASE_LOCK(:k)",
                             {"k": name[:64]})
    return _file_lease(store, name)


def _server_lease(store: AuditStore, name: str, take: str, give: str,
                  params: dict[str, Any]) -> Lease | None:
    conn = store.engine.connect()
    try:
        got = conn.execute(sa.text(take), params).scalar()
        conn.commit()
    except Exception:
        conn.close()
        raise
    if not got:
        conn.close()
        return None

    def release() -> None:
        try:
            conn.execute(sa.text(give), params)
            conn.commit()
        finally:
            conn.invalidate()  # never hand a session that held a lock back to the pool

    def alive() -> bool:
        conn.execute(sa.text("SELECT 1")).scalar()
        conn.commit()
        return True

    return Lease(name, release, alive)


def _file_lease(store: AuditStore, name: str) -> Lease | None:
    database = make_url(store.raw_url).database
    if not database or database == ":memory:":
        lock = _local_locks.setdefault(name, threading.Lock())
        if not lock.acquire(blocking=False):
            return None
        return Lease(name, lock.release)
    folder = Path(database).resolve().parent / (Path(database).name + ".leases")
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / (name.split(":")[1] + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None

    def release() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    return Lease(name, release)
