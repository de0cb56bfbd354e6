"""The report's memory of the audit store (``retention.report.history``): each rule's
last enforced run from one read of the run records, and what changed in the policy
since then. The store is only read, and a missing one is no history."""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retention.audit.store import AuditStore
from retention.policy.load import load_policy
from retention.policy.rules import Policy
from retention.report import build, history
from retention.run.engine import run
from tests.support import write_policy

RUN_AS_OF = dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC)
REPORT_AS_OF = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)
POLICY = """\
policy: p
timezone: Europe/Amsterdam
sources:
  db: {{adapter: sql, url: 'sqlite:///{tmp}/target.db'}}
audit: {{url: 'sqlite:///{tmp}/audit.db'}}
rules:
  events: {{table: events, retain: {retain}, max_fraction: 1.0}}
  others: {{table: others, retain: 1 year after at, max_fraction: 1.0}}
"""


def _policy(tmp_path: Path, retain: str = "1 year after at") -> Policy:
    return load_policy(write_policy(tmp_path, POLICY.format(tmp=tmp_path, retain=retain)))


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "target.db"
    conn = sqlite3.connect(path)
    for table in ("events", "others"):
        conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, at TIMESTAMP)")
        conn.executemany(f"INSERT INTO {table} VALUES (?, ?)",
                         [(1, "2020-01-01 00:00:00"), (2, "2024-06-01 00:00:00"),
                          (3, "2026-01-01 00:00:00")])
    conn.commit()
    conn.close()
    return path


def test_a_report_shows_each_rules_last_enforced_run(target: Path, tmp_path: Path) -> None:
    """`last_run` (SPEC §3): run id, when, status, deleted and anonymized of the latest
    run that enforced the rule; a dry run does not count."""
    policy = _policy(tmp_path)
    outcome = run(policy, RUN_AS_OF)
    run(policy, RUN_AS_OF + dt.timedelta(days=1), dry_run=True)

    data = build.build(policy, REPORT_AS_OF)

    for entry in data["rules"]:
        last = entry["last_run"]
        assert (last["run_id"], last["status"], last["deleted"], last["anonymized"]) == (
            outcome.run_id, "ok", 2, 0), entry["rule"]
        assert dt.datetime.fromisoformat(last["at"]) <= dt.datetime.now(dt.UTC)
        assert dt.datetime.fromisoformat(last["as_of"]) == RUN_AS_OF
        assert entry["changed_since_last_run"] == []


def test_without_a_store_there_is_no_last_run_and_no_store_is_made(
        target: Path, tmp_path: Path) -> None:
    """A report before any run: `last_run` null, and the store is not created."""
    data = build.build(_policy(tmp_path), REPORT_AS_OF)

    assert [r["last_run"] for r in data["rules"]] == [None, None]
    assert not (tmp_path / "audit.db").exists()


def test_the_last_runs_of_all_rules_are_one_query(target: Path, tmp_path: Path) -> None:
    """However many runs and rules: one statement reads them (newest first)."""
    policy = _policy(tmp_path)
    for days in range(3):
        run(policy, RUN_AS_OF + dt.timedelta(days=days))
    store = AuditStore.peek(policy.audit_url)
    assert store is not None
    seen: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *_: seen.append(statement))
    try:
        found = history.last_runs(store, policy, ["events", "others"])
    finally:
        store.close()
    assert set(found) == {"events", "others"}
    reads = [s for s in seen if s != "BEGIN"]  # SQLite's, per connection (retention.db)
    assert len(reads) == 1 and reads[0].startswith("SELECT")


def test_the_policy_history_says_what_changed_since_each_rules_last_run(
        target: Path, tmp_path: Path) -> None:
    """With the audit room's policy history (``policies.changes_between``, the stored
    text of the version the last run used), a rule gets the lines about it."""
    run(_policy(tmp_path), RUN_AS_OF)
    after = _policy(tmp_path, retain="2 years after at")

    data = build.build(after, REPORT_AS_OF)

    lines = {r["rule"]: r["changed_since_last_run"] for r in data["rules"]}
    assert lines == {"events": ["rule 'events': retain '1 year after at' -> "
                                "'2 years after at'"], "others": []}


def test_a_changed_policy_file_is_said_per_rule_without_a_policy_history(
        target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the audit room's policy history, a rule whose last run used another
    version of the file says so, naming both sha256 prefixes."""
    from retention.audit import policies

    monkeypatch.delattr(policies, "changes_between")
    before = _policy(tmp_path)
    run(before, RUN_AS_OF)
    after = _policy(tmp_path, retain="2 years after at")

    data = build.build(after, REPORT_AS_OF)

    lines = {r["rule"]: r["changed_since_last_run"] for r in data["rules"]}
    assert lines["events"] == [f"the policy file changed since this run (sha256 "
                               f"{before.sha256[:12]} -> {after.sha256[:12]})"]


def test_the_policy_historys_lines_are_given_to_the_rules_they_name(
        target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the history's reader (``changes_between``), each rule gets the lines about it
    and those about the whole policy; a rule nothing changed in gets none."""
    before = _policy(tmp_path)
    run(before, RUN_AS_OF)
    after = _policy(tmp_path, retain="2 years after at")
    asked: list[tuple[str, str]] = []

    def changes_between(store: AuditStore, old: str, policy: Policy) -> list[str]:
        asked.append((old, policy.sha256))
        return ["rule 'events': retain '1 year after at' -> '2 years after at'",
                "timezone 'UTC' -> 'Europe/Amsterdam'", "rule 'gone' removed"]

    module: Any = types.ModuleType(history.HISTORY_MODULE)
    module.changes_between = changes_between
    monkeypatch.setitem(sys.modules, history.HISTORY_MODULE, module)

    data = build.build(after, REPORT_AS_OF)

    lines = {r["rule"]: r["changed_since_last_run"] for r in data["rules"]}
    assert lines == {
        "events": ["rule 'events': retain '1 year after at' -> '2 years after at'",
                   "timezone 'UTC' -> 'Europe/Amsterdam'"],
        "others": ["timezone 'UTC' -> 'Europe/Amsterdam'"]}
    assert asked == [(before.sha256, after.sha256)]  # once per old version
