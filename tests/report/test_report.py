"""The dry-run report (``retention.report.build``): one rule's failure is that rule's, by name."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from retention.adapters.sql import SqlAdapter
from structlog.testing import capture_logs

from retention.plan import Plan
from retention.policy.load import load_policy
from retention.report import build as report
from tests.support import snapshot, write_policy

AS_OF = dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC)


def test_a_rule_that_fails_while_counting_is_reported_by_name_and_the_others_still_are(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever goes wrong in one rule's counts becomes that rule's `error` (and a log
    event naming it); the report goes on with the other rules and changes nothing."""
    meta = sa.MetaData()
    for name in ("a", "b"):
        sa.Table(name, meta, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("at", sa.DateTime))
    engine = sa.create_engine(sqlite_url)
    meta.create_all(engine)
    with engine.begin() as conn:
        for name in ("a", "b"):
            conn.execute(meta.tables[name].insert(), [{"id": 1, "at": dt.datetime(2010, 1, 1)}])
    engine.dispose()
    policy = load_policy(write_policy(tmp_path, (
        f"policy: p\nsources:\n  db: {{adapter: sql, url: '{sqlite_url}'}}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        "rules:\n  ra: {table: a, retain: 1 day after at}\n"
        "  rb: {table: b, retain: 1 day after at}\n")))
    count = SqlAdapter.count

    def failing(self: SqlAdapter, plan: Plan, ahead: Sequence[Plan] = ()) -> Any:
        if plan.table == "a":
            raise RuntimeError("the driver gave up")
        return count(self, plan, ahead)

    monkeypatch.setattr(SqlAdapter, "count", failing)
    before = snapshot(sqlite_url)

    with capture_logs() as logs:
        data = report.build(policy, AS_OF)

    ra, rb = data["rules"]
    assert (ra["rule"], ra["error"]) == ("ra", "RuntimeError: the driver gave up")
    assert "due" not in ra
    assert (rb["rule"], rb["due"], "error" in rb) == ("rb", 1, False)
    assert [(e["event"], e["rule"]) for e in logs if e["log_level"] == "error"] == [
        ("rule_failed", "ra")]
    assert snapshot(sqlite_url) == before
    assert not (tmp_path / "audit.db").exists()
