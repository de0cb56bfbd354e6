"""Helpers for the engine, CLI and end-to-end tests."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from retention.audit.store import AuditStore
from retention.db import create_engine


def write_policy(tmp_path: Path, body: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def table_rows(url: str, table: str, order: str = "1") -> list[dict[str, Any]]:
    """Rows of ``table`` with typed values (timestamps as datetimes, also on SQLite)."""
    engine = create_engine(url)
    try:
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
