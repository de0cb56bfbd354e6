"""Foreign keys that would change rows behind retention's back are bad input."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from retention.errors import PolicyError
from retention.policy.load import load_policy
from retention.run import engine
from tests.support import audited, keys, snapshot, write_policy

AS_OF = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
SCHEMA = [
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, done_at TIMESTAMP NULL)",
    "CREATE TABLE order_lines (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, "
    "FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE)",
]


def _setup(url: str, tmp_path: Path, children: str) -> Path:
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        for statement in SCHEMA:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("INSERT INTO orders VALUES (1, '2015-01-01'), (2, '2026-02-27')")
        conn.exec_driver_sql("INSERT INTO order_lines VALUES (1, 1), (2, 1), (3, 2)")
    eng.dispose()
    os.environ["CASCADE_TEST_URL"] = url
    return write_policy(tmp_path, (
        "policy: cascades\nsources:\n  db: {adapter: sql, url: '${CASCADE_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        "rules:\n  orders:\n    table: orders\n    retain: 1 year after done_at\n"
        f"    max_fraction: 1.0\n{children}"))


def test_an_undeclared_cascading_child_is_reported_and_nothing_changes(
        db_url: str, tmp_path: Path) -> None:
    """ON DELETE CASCADE into a rule's table must be declared: else exit 2, untouched.

    SQLite too: our connections would not cascade, the application's would (and
    a delete by ours would leave the lines orphaned).
    """
    policy = load_policy(_setup(db_url, tmp_path, ""))
    before = snapshot(db_url)
    with pytest.raises(PolicyError) as caught:
        engine.run(policy, AS_OF)
    assert "table 'order_lines' references 'orders' with ON DELETE CASCADE" in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path / 'policy.yaml'}:")
    assert snapshot(db_url) == before
    assert not (tmp_path / "audit.db").exists()


def test_a_declared_cascading_child_is_deleted_and_audited_row_by_row(
        db_url: str, tmp_path: Path) -> None:
    """Declared under children, the lines go first, each with its own audit entry."""
    policy = load_policy(_setup(db_url, tmp_path, (
        "    children:\n      - {table: order_lines, key: order_id}\n")))
    outcome = engine.run(policy, AS_OF)
    assert outcome.rules[0].deleted == 1 and outcome.rules[0].children == {"order_lines": 2}
    assert keys(db_url, "orders") == {2} and keys(db_url, "order_lines") == {3}
    assert sorted(r["key"]["id"] for r in audited(policy.audit_url, "order_lines")) == [1, 2]
