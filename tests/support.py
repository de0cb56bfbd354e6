"""Helpers for the engine, CLI and end-to-end tests."""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from pathlib import Path
from typing import Any, NoReturn

import pytest
import sqlalchemy as sa

from retention.audit.store import AuditStore
from retention.db import create_engine
from retention.policy.load import load_policy
from retention.policy.rules import Policy


def write_policy(tmp_path: Path, body: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def table_rows(url: str, table: str, order: str = "1") -> list[dict[str, Any]]:
    """Rows of ``table`` with typed values (timestamps as datetimes, also on SQLite)."""
    engine = create_engine(url)
    try:
        with warnings.catch_warnings():  # MariaDB's inet6 and the like: read as they come
            warnings.filterwarnings("ignore", "Did not recognize type", sa.exc.SAWarning)
            reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            rows = conn.execute(reflected.select().order_by(sa.text(order)))
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def keys(url: str, table: str, column: str = "id") -> set[Any]:
    return {row[column] for row in table_rows(url, table, column)}


def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table: compare before and after to prove nothing changed."""
    engine = create_engine(url)
    try:
        names = sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    return {name: table_rows(url, name) for name in sorted(names)}


def audited(audit_url: str, table: str | None = None) -> list[dict[str, Any]]:
    store = AuditStore(audit_url)
    try:
        rows = [{**r, "key": json.loads(r["record_key"])} for r in store.records()]
    finally:
        store.close()
    return [r for r in rows if table is None or r["table_name"] == table]


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


def orders_with_lines(url: str, tmp_path: Path, done_at: list[dt.datetime],
                      batch_size: int) -> Policy:
    """Orders (one per ``done_at``) with two lines each, and a policy deleting orders kept
    '1 year after done_at' with their lines (audit store in ``tmp_path``)."""
    from sqlalchemy.dialects import mysql

    ts = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    meta = sa.MetaData()
    orders = sa.Table("orders", meta,
                      sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("done_at", ts))
    lines = sa.Table("lines", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("order_id", sa.Integer))
    eng = sa.create_engine(url)
    meta.create_all(eng)
    with eng.begin() as conn:
        conn.execute(orders.insert(), [{"id": i, "done_at": at}
                                       for i, at in enumerate(done_at, start=1)])
        conn.execute(lines.insert(), [{"id": i, "order_id": (i + 1) // 2}
                                      for i in range(1, 2 * len(done_at) + 1)])
    eng.dispose()
    os.environ["ORDERS_TEST_URL"] = url
    return load_policy(write_policy(tmp_path, (
        "policy: orders\nsources:\n  db: {adapter: sql, url: '${ORDERS_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        "rules:\n  orders:\n    table: orders\n    retain: 1 year after done_at\n"
        f"    max_fraction: 1.0\n    batch_size: {batch_size}\n"
        "    children:\n      - {table: lines, key: order_id}\n")))


def missing(message: str) -> NoReturn:
    """Something a test needs is not on this machine: skip locally, fail under ``CI=true``
    (nothing may skip its way to green in CI)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; tests may not skip under CI=true", pytrace=False)
    pytest.skip(message)
