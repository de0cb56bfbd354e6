"""Leases and batch timeouts on every audit store and target database."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from retention.audit.store import AuditStore
from retention.policy.load import load_policy
from retention.run import engine, lease, retry
from retention.run.outcome import Status
from tests.support import keys, write_policy

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
AS_OF = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def test_a_lease_is_held_by_one_runner_at_a_time(db_url: str) -> None:
    """A second acquire fails while the first holds the lease; after release it succeeds."""
    url = db_url if not db_url.startswith("sqlite") else db_url.replace("target", "audit")
    first_store, second_store = AuditStore(url), AuditStore(url)
    try:
        held = lease.acquire(first_store, "p", "r")
        assert held is not None and held.alive()
        assert lease.acquire(second_store, "p", "r") is None
        other = lease.acquire(second_store, "p", "another rule")
        assert other is not None
        other.release()
        held.release()
        assert not held.alive()
        again = lease.acquire(second_store, "p", "r")
        assert again is not None
        again.release()
    finally:
        first_store.close()
        second_store.close()


def test_a_lease_dies_with_its_database_session(postgres_url: str) -> None:
    """When the holder's session ends, the lease is free at once (nobody waits on the dead)."""
    store, other = AuditStore(postgres_url), AuditStore(postgres_url)
    try:
        held = lease.acquire(store, "p", "r")
        assert held is not None
        store.engine.dispose()  # closes the pooled connections...
        eng = sa.create_engine(postgres_url)
        with eng.begin() as conn:  # ...and cut the lease's own session like a crash would
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        eng.dispose()
        assert not held.alive()
        taken = lease.acquire(other, "p", "r")
        assert taken is not None
        taken.release()
    finally:
        store.close()
        other.close()


def _locked_table_policy(url: str, tmp_path: Path) -> object:
    meta = sa.MetaData()
    table = sa.Table("notes", meta, sa.Column("id", sa.Integer, primary_key=True,
                                              autoincrement=False), sa.Column("at", TS))
    other = sa.Table("others", meta, sa.Column("id", sa.Integer, primary_key=True,
                                               autoincrement=False), sa.Column("at", TS))
    eng = sa.create_engine(url)
    meta.create_all(eng)
    with eng.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "at": dt.datetime(2020, 1, 1)}
                                      for i in range(1, 4)])
        conn.execute(other.insert(), [{"id": i, "at": dt.datetime(2020, 1, 1)}
                                      for i in range(1, 4)])
    eng.dispose()
    os.environ["LOCK_TEST_URL"] = url
    return load_policy(write_policy(tmp_path, (
        "policy: locks\nsources:\n  db: {adapter: sql, url: '${LOCK_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        "defaults: {max_fraction: 1.0, lock_timeout: 1, batch_size: 10}\n"
        "rules:\n  notes: {table: notes, retain: 1 year after at}\n"
        "  others: {table: others, retain: 1 year after at}\n")))


def test_a_row_locked_by_the_application_fails_the_rule_in_bounded_time(
        postgres_url: str, mariadb_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """lock_timeout bounds the wait; the rule fails after its retries, the next rule runs.
    (Every retry still waits out its lock_timeout; only the backoff between them is cut.)"""
    monkeypatch.setattr(retry, "RETRY_BASE_DELAY", 0.01)
    for url, name in ((postgres_url, "pg"), (mariadb_url, "maria")):
        folder = tmp_path / name
        folder.mkdir()
        policy = _locked_table_policy(url, folder)
        app = sa.create_engine(url)
        release = threading.Event()
        locked = threading.Event()

        def hold_lock(app: sa.Engine = app, locked: threading.Event = locked,
                      release: threading.Event = release) -> None:
            with app.begin() as conn:
                conn.execute(sa.text("SELECT id FROM notes WHERE id = 2 FOR UPDATE"))
                locked.set()
                release.wait(120)

        worker = threading.Thread(target=hold_lock)
        worker.start()
        try:
            assert locked.wait(10)
            started = time.monotonic()
            outcome = engine.run(policy, AS_OF)  # type: ignore[arg-type]
            took = time.monotonic() - started
        finally:
            release.set()
            worker.join()
            app.dispose()
        notes, others = outcome.rules
        assert notes.status is Status.FAILED, name
        assert "lock" in (notes.error or "").lower() or "timeout" in (notes.error or "").lower()
        assert took < 60, f"{name}: waited {took:.0f} s"
        assert others.status is Status.OK and others.deleted == 3
        assert keys(url, "notes") == {1, 2, 3}  # nothing of the failed batch was deleted
