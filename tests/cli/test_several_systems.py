"""Several systems in one policy: the e-learning example (``policies/elearning.yaml``).

Its web shop lives on PostgreSQL and its CRM on MariaDB (two servers), its mail log in a
directory. Through the ``retention`` command line as a user runs it:

* ``report``, ``run``, ``audit export`` and ``audit verify`` cover both databases in one
  run and one audit chain, each record under its own source, exactly the due rows gone or
  anonymized on each (the forward due function row by row is the oracle), and the
  report lists the uncovered tables of both;
* a source whose server is stopped, or whose URL reaches nothing, fails only its own
  rules: exit 1, the other source's rules done and audited, the report says the error
  for the failed rules and still counts the others and lists their uncovered tables.

The mail log is a files source (``adapter: files``, built in): every rule of the
policy runs, the mail log's exactly the files last written 90 days ago or earlier.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from retention.adapters import anonymize
from retention.policies import examples

from retention import calendar
from retention.actions import ColumnAction, Strategy
from retention.db import create_engine
from retention.policy.load import load_policy
from retention.policy.rules import Policy, Rule
from retention.testing import Server, start_mariadb
from tests.support import snapshot

RETENTION = Path(sys.executable).with_name("retention")
NOW = dt.datetime(2026, 11, 3, 9, 30, tzinfo=dt.UTC)  # the demo data is filled as of now
SHOP_RULES = ["orders", "customers", "course-progress"]
CRM_RULES = ["marketing-contacts", "mail-tracking"]
FILES_RULES = ["mail-log"]
TRUNCATE_IP = ColumnAction("ip", Strategy.TRUNCATE_IP)  # the mail-tracking rule's ip
# A table on each database that no rule covers and no ignore names
UNCOVERED = {"shop": "support_tickets", "crm": "webinar_signups"}


def _rule_args() -> list[str]:
    return []  # every rule: both databases and the mail log


@dataclass
class Elearning:
    shop: str  # PostgreSQL URL
    crm: str  # MariaDB URL
    workdir: Path

    @property
    def audit(self) -> str:
        return f"sqlite:///{self.workdir}/audit.db"

    @property
    def maillog(self) -> Path:
        return self.workdir / "maillog"

    def env(self) -> dict[str, str]:
        return {"ELEARNING_SHOP_URL": self.shop, "ELEARNING_CRM_URL": self.crm,
                "ELEARNING_MAILLOG_DIR": str(self.maillog), "RETENTION_AUDIT_URL": self.audit}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RETENTION_", "ELEARNING_"))}
        env.update(self.env())
        return subprocess.run([str(RETENTION), *args], env=env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=180, check=False)

    def policy(self) -> Policy:
        return load_policy(examples.policy_path("elearning"), env=self.env())


def _prepare(url: str, schema: str, fill: Any, uncovered: str) -> None:
    target = create_engine(url)
    try:
        examples.create_schema(target, schema)
        fill(target, NOW)
        with target.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {uncovered} (id INTEGER PRIMARY KEY, "
                                 "email VARCHAR(200))")
    finally:
        target.dispose()


@pytest.fixture
def elearning(postgres_url: str, mariadb_url: str, tmp_path: Path) -> Elearning:
    _prepare(postgres_url, "elearning-shop", examples.fill_elearning_shop, UNCOVERED["shop"])
    _prepare(mariadb_url, "elearning-crm", examples.fill_elearning_crm, UNCOVERED["crm"])
    found = Elearning(postgres_url, mariadb_url, tmp_path)
    examples.fill_maillog(found.maillog, NOW)
    return found


# -- the oracle ---------------------------------------------------------------------


def _instant(value: Any) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _due(rows: list[dict[str, Any]], rule: Rule, tz: str) -> list[dict[str, Any]]:
    zone = calendar.zone(tz)
    return [r for r in rows if r[rule.event_column] is not None
            and all(r[f.column] in f.values for f in rule.filters)
            and calendar.due_at(_instant(r[rule.event_column]), rule.retain, zone) <= NOW]


@dataclass
class Expected:
    """What a correct run of one rule does: the keys it removes or changes per table."""

    rule: str
    source: str
    changed: dict[str, set[int]]  # table -> ids (the rule's table and its children)
    action: str


def _expected(policy: Policy, before: dict[str, dict[str, list[dict[str, Any]]]],
              names: list[str]) -> dict[str, Expected]:
    """Rule by rule in policy order, on the rows the rules before it left."""
    rows = {source: {t: list(r) for t, r in tables.items()} for source, tables in
            before.items()}
    found: dict[str, Expected] = {}
    for rule in policy.rules:
        if rule.name not in names:
            continue
        assert rule.table is not None
        tables = rows[rule.source]
        due = _due(tables[rule.table], rule, policy.timezone)
        if rule.action.columns:
            ids = {r["id"] for r in due if any(
                not anonymize.same(r[a.column], anonymize.apply(a, r[a.column]))
                for a in rule.action.columns)}
            found[rule.name] = Expected(rule.name, rule.source, {rule.table: ids}, "anonymize")
            continue
        ids = {r["id"] for r in due}
        changed = {rule.table: ids}
        for child in rule.children:
            changed[child.table] = {r["id"] for r in tables[child.table] if r[child.key] in ids}
        for table, gone in changed.items():
            tables[table] = [r for r in tables[table] if r["id"] not in gone]
        found[rule.name] = Expected(rule.name, rule.source, changed, "delete")
    return found


def _state(elearning: Elearning) -> dict[str, dict[str, list[dict[str, Any]]]]:
    return {"shop": snapshot(elearning.shop), "crm": snapshot(elearning.crm)}


def _check_run(result: dict[str, Any], expected: dict[str, Expected], names: list[str]) -> None:
    by_rule = {r["rule"]: r for r in result["rules"]}
    for name in names:
        exp, got = expected[name], by_rule[name]
        assert got["status"] == "ok", got
        count = len(exp.changed[next(iter(exp.changed))])
        assert got["anonymized" if exp.action == "anonymize" else "deleted"] == count, name
        assert count > 0, f"{name}: the example data has nothing due"


def _check_tables(after: dict[str, dict[str, list[dict[str, Any]]]],
                  before: dict[str, dict[str, list[dict[str, Any]]]],
                  expected: dict[str, Expected], names: list[str]) -> None:
    """Every table of both databases: exactly the expected rows gone or anonymized."""
    for source in ("shop", "crm"):
        for table, rows in before[source].items():
            gone: set[int] = set()
            anonymized: set[int] = set()
            for name in names:
                exp = expected[name]
                if exp.source == source and table in exp.changed:
                    (anonymized if exp.action == "anonymize" else gone).update(
                        exp.changed[table])
            key = "code" if table == "courses" else "id"
            now = {r[key]: r for r in after[source][table]}
            assert set(now) == {r[key] for r in rows} - gone, (source, table)
            for row in rows:
                if row[key] not in now:
                    continue
                if row[key] in anonymized:
                    assert now[row[key]]["user_agent"] is None
                    assert now[row[key]]["ip"] == anonymize.apply(TRUNCATE_IP, row["ip"])
                else:
                    assert now[row[key]] == row, (source, table, row[key])


def _exported(elearning: Elearning) -> list[dict[str, Any]]:
    proc = elearning.cli("audit", "export", str(examples.policy_path("elearning")),
                         "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _check_audit(exported: list[dict[str, Any]], expected: dict[str, Expected],
                 names: list[str]) -> None:
    """One record per changed row, under its rule, source and table; no other."""
    got = sorted((e["rule"], e["source"], e["table"], e["key"]["id"], e["action"])
                 for e in exported if e["source"] != "maillog")
    want = sorted((name, expected[name].source, table, key, expected[name].action)
                  for name in names for table, ids in expected[name].changed.items()
                  for key in ids)
    assert got == want


# -- together -----------------------------------------------------------------------


def test_one_policy_runs_reports_and_audits_postgresql_and_mariadb_together(
        elearning: Elearning) -> None:
    policy_file = str(examples.policy_path("elearning"))
    names = SHOP_RULES + CRM_RULES
    before = _state(elearning)
    expected = _expected(elearning.policy(), before, names)

    files = sorted(p.name for p in elearning.maillog.iterdir())
    old_files = _due_files(elearning.policy(), elearning.maillog)
    report = elearning.cli("report", policy_file, "--format", "json", "--as-of",
                           NOW.isoformat(), *_rule_args())
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    due = {n: _report_due(elearning.policy(), before, n) for n in names}
    due["mail-log"] = len(old_files)
    assert {r["rule"]: r["due"] for r in data["rules"]} == due
    assert sorted((u["source"], u["table"]) for u in data["uncovered"]
                  if u["source"] != "maillog") == sorted(UNCOVERED.items())
    assert _state(elearning) == before

    proc = elearning.cli("run", policy_file, "--format", "json", "--as-of", NOW.isoformat(),
                         *_rule_args())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [r["rule"] for r in result["rules"]] == names + FILES_RULES
    _check_run(result, expected, names)
    _check_tables(_state(elearning), before, expected, names)
    exported = _exported(elearning)
    _check_audit(exported, expected, names)
    left = sorted(p.name for p in elearning.maillog.iterdir()
                  if not p.name.startswith(".retention"))  # the files adapter's journal
    # the mail log: exactly the files last written 90 days ago or earlier
    assert 0 < len(old_files) < len(files)
    assert left == sorted(set(files) - set(old_files))
    assert len([e for e in exported if e["rule"] == "mail-log"]) == len(old_files)
    assert result["rules"][-1]["deleted"] == len(old_files)
    verify = elearning.cli("audit", "verify", policy_file)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _due_files(policy: Policy, directory: Path) -> list[str]:
    """The mail-log files due at NOW: 90 days after their mtime, by the policy's calendar."""
    rule = next(r for r in policy.rules if r.name == "mail-log")
    zone = calendar.zone(policy.timezone)
    return sorted(p.name for p in directory.iterdir() if calendar.due_at(
        dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC), rule.retain, zone) <= NOW)


def _report_due(policy: Policy, before: dict[str, dict[str, list[dict[str, Any]]]],
                name: str) -> int:
    """What the report counts as due for rule ``name``: the rule on its own (the rules
    before it in a run change nothing yet)."""
    rule = next(r for r in policy.rules if r.name == name)
    return len(_expected(policy, before, [name])[name].changed[str(rule.table)])


# -- one source down ----------------------------------------------------------------


@pytest.fixture
def own_mariadb(mariadb_server: Server) -> Iterator[Server]:
    """A MariaDB server of this test's own, so that it can be stopped (the session's
    ``mariadb_server`` fixture checks that MariaDB can run here at all)."""
    server = start_mariadb()
    try:
        yield server
    finally:
        server.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("down", ["crm: server stopped", "shop: unreachable URL"])
def test_a_source_that_is_down_fails_only_its_own_rules(
        request: pytest.FixtureRequest, tmp_path: Path, down: str) -> None:
    """exit 1; the failed rules say why; the other source's rules are done and audited;
    the report says the error for the failed rules and covers the others."""
    source = down.split(":")[0]
    shop_url = request.getfixturevalue("postgres_url")
    if source == "crm":
        server = request.getfixturevalue("own_mariadb")
        crm_url = server.create_database("crm")
    else:
        crm_url = request.getfixturevalue("mariadb_url")
    _prepare(shop_url, "elearning-shop", examples.fill_elearning_shop, UNCOVERED["shop"])
    _prepare(crm_url, "elearning-crm", examples.fill_elearning_crm, UNCOVERED["crm"])
    elearning = Elearning(shop_url, crm_url, tmp_path)
    examples.fill_maillog(elearning.maillog, NOW)
    before = _state(elearning)
    up, failing = (SHOP_RULES, CRM_RULES) if source == "crm" else (CRM_RULES, SHOP_RULES)
    expected = _expected(elearning.policy(), before, up)
    if source == "crm":
        server.stop()
    else:
        elearning.shop = f"postgresql://retention@127.0.0.1:{_closed_port()}/shop"
    policy_file = str(examples.policy_path("elearning"))

    report = elearning.cli("report", policy_file, "--format", "json", "--as-of",
                           NOW.isoformat(), *_rule_args())
    assert report.returncode == 1, report.stderr
    data = json.loads(report.stdout)
    by_rule = {r["rule"]: r for r in data["rules"]}
    for name in failing:
        assert "OperationalError" in by_rule[name]["error"], by_rule[name]
        assert "due" not in by_rule[name]
    for name in up:
        assert "error" not in by_rule[name], by_rule[name]
        assert by_rule[name]["due"] == _report_due(elearning.policy(), before, name)
    other = "shop" if source == "crm" else "crm"
    assert [(u["source"], u["table"]) for u in data["uncovered"]
            if u["source"] != "maillog"] == [(other, UNCOVERED[other])]

    proc = elearning.cli("run", policy_file, "--format", "json", "--as-of", NOW.isoformat(),
                         *_rule_args())
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    by_rule = {r["rule"]: r for r in result["rules"]}
    for name in failing:
        assert by_rule[name]["status"] == "failed"
        assert "OperationalError" in by_rule[name]["error"], by_rule[name]
    _check_run(result, expected, up)
    _check_audit(_exported(elearning), expected, up)
    after = snapshot(elearning.shop if source == "crm" else elearning.crm)
    _check_tables({other: after, source: before[source]}, before, expected, up)
    verify = elearning.cli("audit", "verify", policy_file)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    listed = elearning.cli("audit", "list", policy_file)
    assert listed.returncode == 0 and "failed" in listed.stdout, listed.stdout


# -- the example as a file ----------------------------------------------------------


def test_the_example_loads_with_three_systems_and_every_promise(tmp_path: Path) -> None:
    policy = load_policy(examples.policy_path("elearning"), env={
        "ELEARNING_SHOP_URL": "postgresql://shop@db/shop",
        "ELEARNING_CRM_URL": "mariadb://crm@crm/crm",
        "ELEARNING_MAILLOG_DIR": str(tmp_path)})
    assert {n: (s.adapter) for n, s in policy.sources.items()} == {
        "shop": "sql", "crm": "sql", "maillog": "files"}
    assert [r.name for r in policy.rules] == SHOP_RULES + CRM_RULES + FILES_RULES
    assert all(r.legal_basis for r in policy.rules)


def test_the_example_schedule_renders_without_any_database(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(RETENTION), "schedule", str(examples.policy_path("elearning")), "--format", "md"],
        env={k: v for k, v in os.environ.items() if not k.startswith("ELEARNING_")},
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Bokföringslagen" in proc.stdout and "mail_events" in proc.stdout.replace(
        "mail events", "mail_events")
