"""The dry-run report (``retention.report.build``): one rule's failure is that rule's, by name."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from retention.adapters.sql import SqlAdapter
from retention.policies import examples
from structlog.testing import capture_logs

from retention.plan import Plan
from retention.policy.load import load_policy
from retention.report import build as report
from retention.run import engine
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


def test_the_report_reads_each_rule_table_once_and_each_child_once(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        make_engine: Callable[..., sa.Engine]) -> None:
    """What makes the report fast: per rule one statement over its table for every figure
    (now and 7, 30 and 90 days ahead), one per declared child, and no table reflected
    twice (the look-ahead plans reuse what the first compilation read)."""
    eng = make_engine(db_url)
    examples.create_schema(eng, "webshop")
    examples.fill_webshop(eng, AS_OF)
    monkeypatch.setenv("SHOP_DATABASE_URL", db_url)
    monkeypatch.setenv("RETENTION_AUDIT_URL", f"sqlite:///{tmp_path}/audit.db")
    policy = load_policy(examples.policy_path("webshop"))

    def statements(action: Callable[[], object]) -> list[str]:
        """The statements ``action`` sends to the shop database."""
        seen: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if conn.engine.url.render_as_string(hide_password=False) == db_url \
                    and statement != "BEGIN":  # SQLite's, per connection (retention.db)
                seen.append(" ".join(statement.split()))

        sa.event.listen(sa.Engine, "before_cursor_execute", record)
        try:
            action()
        finally:
            sa.event.remove(sa.Engine, "before_cursor_execute", record)
        return seen

    data: dict[str, Any] = {}
    sent = statements(lambda: data.update(report.build(policy, AS_OF, samples=2)))

    assert [r.get("error") for r in data["rules"]] == [None] * len(policy.rules)
    reading = [s for s in sent if s.startswith("SELECT") and re.search(
        r"\bcount\(\*\) AS total\b|\bFROM order_lines\b|\bORDER BY [^()]* LIMIT\b", s)]
    per_rule = Counter(_read_table(s) for s in reading)
    expected = Counter({r.table: 2 for r in policy.rules})  # the one scan and the samples
    expected["order_lines"] += 1  # the children of the due orders
    assert per_rule == expected, reading
    with engine.Session(policy) as session:  # what one compilation and the coverage read
        once = statements(lambda: (engine.compile_plans(session, policy.rules, AS_OF),
                                   report.uncovered(policy, session)))
    assert Counter(s for s in sent if s not in reading) == Counter(once)


def _read_table(statement: str) -> str:
    """The table a counting statement reads (the child's for a children count)."""
    found = re.search(r"FROM (\w+)", statement)
    assert found is not None
    return found.group(1)
