"""The ``retention`` command line as a user runs it: a real subprocess, SPEC §3 and §5.

stdout and stderr are captured separately, so every test also checks that results go
to stdout and logs to stderr. Most tests run on a SQLite copy of the web-shop demo
database filled as of the SPEC's example instant; the JSON outputs are also checked on
PostgreSQL and MariaDB.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from retention.policies import examples
from sqlalchemy.engine import Engine

from retention.db import create_engine
from tests.support import snapshot, write_policy

RETENTION = Path(sys.executable).with_name("retention")
WEBSHOP = str(examples.policy_path("webshop"))
WEBSHOP_RULES = ["orders", "subscriptions", "accounts", "contact-form", "newsletter",
                 "visit-ip"]
WEBSHOP_TABLES = {"orders": "orders", "subscriptions": "subscriptions",
                  "accounts": "accounts", "contact-form": "contact_requests",
                  "newsletter": "newsletter_subscribers", "visit-ip": "visits"}
SPEC_AS_OF = "2026-02-28T12:00:00+00:00"  # the instant of the SPEC §3 example
SPEC_ORDERS_CUTOFF = "2018-08-27T21:59:59.999999+00:00"
SPEC_ORDERS_LOCAL_CUTOFF = "end of 2018-08-27"  # the same instant, as people read it
FILLED_AT = dt.datetime(2026, 2, 28, 12, 0, tzinfo=dt.UTC)  # "now" of the demo data
LATER_AS_OF = "2026-06-30T12:00:00+00:00"  # a second, later run (still in the past)
FUTURE = "2100-01-01T00:00:00+00:00"

RUN_FIELDS = {"run_id", "policy", "as_of", "dry_run", "rules"}
RUN_RULE_FIELDS = {"rule", "status", "deleted", "anonymized", "held", "children"}
REPORT_FIELDS = {"policy", "as_of", "rules", "uncovered"}
REPORT_RULE_FIELDS = {"rule", "action", "due", "held", "cutoff", "oldest_due_event",
                      "children", "due_next_7d", "due_next_30d", "due_next_90d", "samples",
                      "would_stop"}
EXPORT_FIELDS = ["run_id", "rule", "source", "table", "key", "action", "event_at", "due_at",
                 "at"]
_OUR_VARS = ("SHOP_DATABASE_URL", "RETENTION_AUDIT_URL", "RETENTION_POLICY",
             "RETENTION_HASH_KEY", "CLI_TEST_URL", "CLI_REMOTE_URL")


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed ``retention`` console script; stdout and stderr kept apart."""
    full = {k: v for k, v in os.environ.items() if k not in _OUR_VARS}
    full.update(env)
    return subprocess.run([str(RETENTION), *args], env=full, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


@dataclass
class Shop:
    """A web-shop database (SQLite file or server URL) and its audit store file."""

    url: str
    audit: Path
    cwd: Path

    @property
    def env(self) -> dict[str, str]:
        return {"SHOP_DATABASE_URL": self.url, "RETENTION_AUDIT_URL": f"sqlite:///{self.audit}"}

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, env={**self.env, **env}, cwd=self.cwd)


def _fill(engine: Engine) -> None:
    examples.create_schema(engine, "webshop")
    examples.fill_webshop(engine, FILLED_AT)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite web-shop database filled as of FILLED_AT; tests work on copies."""
    path = tmp_path_factory.mktemp("template") / "webshop.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        _fill(engine)
    finally:
        engine.dispose()
    return path


def _copy(template: Path, directory: Path) -> Shop:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, directory / "webshop.db")
    return Shop(f"sqlite:///{directory / 'webshop.db'}", directory / "audit.db", directory)


@pytest.fixture
def shop(template: Path, tmp_path: Path) -> Shop:
    """A fresh copy of the web shop, for tests that change it."""
    return _copy(template, tmp_path / "shop")


@pytest.fixture(scope="module")
def shop_ro(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """A copy for commands that change nothing; it has one table no rule covers."""
    found = _copy(template, tmp_path_factory.mktemp("readonly"))
    conn = sqlite3.connect(found.url.removeprefix("sqlite:///"))
    try:
        conn.execute("CREATE TABLE legacy_customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.commit()
    finally:
        conn.close()
    return found


@pytest.fixture(scope="module")
def report_json(shop_ro: Shop) -> dict[str, Any]:
    """``report --format json --samples 2`` at the SPEC's instant, parsed."""
    proc = shop_ro.run("report", WEBSHOP, "--as-of", SPEC_AS_OF, "--format", "json",
                       "--samples", "2")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@dataclass
class TwoRuns:
    shop: Shop
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    between: str  # an instant after the first run's records and before the second's

    @property
    def first_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.first.stdout)
        return data

    @property
    def second_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.second.stdout)
        return data


def _changed(result: dict[str, Any]) -> int:
    """How many audit records a ``run --format json`` result stands for."""
    return sum(r["deleted"] + r["anonymized"] + sum(r["children"].values())
               for r in result["rules"])


@pytest.fixture(scope="module")
def two_runs(template: Path, tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    """A real run of every rule at the SPEC's instant, then one of ``orders`` months later."""
    found = _copy(template, tmp_path_factory.mktemp("audited"))
    first = found.run("run", WEBSHOP, "--as-of", SPEC_AS_OF, "--format", "json")
    assert first.returncode == 0, first.stderr
    between = dt.datetime.now(dt.UTC).isoformat()
    second = found.run("run", WEBSHOP, "--as-of", LATER_AS_OF, "--rule", "orders",
                       "--format", "json")
    assert second.returncode == 0, second.stderr
    runs = TwoRuns(found, first, second, between)
    assert runs.second_json["rules"][0]["deleted"] > 0, "the second run must change something"
    return runs


def _counts(url: str) -> dict[str, int]:
    return {name: len(rows) for name, rows in snapshot(url).items()}


# -- run --------------------------------------------------------------------------


def test_run_json_prints_only_json_with_the_spec_fields(two_runs: TwoRuns) -> None:
    """`run --format json` stdout is one JSON document with SPEC §3's fields (extras allowed)."""
    data = two_runs.first_json
    assert set(data) >= RUN_FIELDS
    assert (data["policy"], data["as_of"], data["dry_run"]) == ("webshop", SPEC_AS_OF, False)
    assert [r["rule"] for r in data["rules"]] == WEBSHOP_RULES
    for rule in data["rules"]:
        assert set(rule) >= RUN_RULE_FIELDS, rule
        assert rule["status"] == "ok", rule
    by_rule = {r["rule"]: r for r in data["rules"]}
    assert by_rule["orders"]["deleted"] > 0
    assert by_rule["orders"]["children"]["order_lines"] > 0
    assert by_rule["visit-ip"]["anonymized"] > 0


def test_run_logs_go_to_stderr_as_json_lines_carrying_run_id_policy_and_rule(
        two_runs: TwoRuns) -> None:
    """Every stderr line of a run is a JSON event with run_id and policy; rule events name it."""
    run_id = two_runs.first_json["run_id"]
    events = [json.loads(line) for line in two_runs.first.stderr.splitlines() if line.strip()]
    assert events
    assert all(e.get("run_id") == run_id and e.get("policy") == "webshop" for e in events)
    in_rules = [e for e in events if e["event"].startswith(("rule_", "batch_"))]
    assert in_rules and all(e.get("rule") in WEBSHOP_RULES for e in in_rules)


def test_run_dry_run_changes_nothing(shop: Shop) -> None:
    """`run --dry-run` counts what is due but leaves every row as it was."""
    before = snapshot(shop.url)

    proc = shop.run("run", WEBSHOP, "--as-of", SPEC_AS_OF, "--dry-run", "--format", "json")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["dry_run"] is True
    assert {r["rule"]: r["due"] for r in data["rules"]}["orders"] > 0
    assert all(r["deleted"] == r["anonymized"] == 0 for r in data["rules"])
    assert snapshot(shop.url) == before


def test_run_rule_runs_only_that_rule(shop: Shop) -> None:
    """`run --rule accounts` deletes due accounts and touches no other table."""
    before = snapshot(shop.url)

    proc = shop.run("run", WEBSHOP, "--as-of", SPEC_AS_OF, "--rule", "accounts",
                    "--format", "json")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [r["rule"] for r in data["rules"]] == ["accounts"]
    after = snapshot(shop.url)
    assert len(after["accounts"]) == len(before["accounts"]) - data["rules"][0]["deleted"]
    assert data["rules"][0]["deleted"] > 0
    assert after.pop("retention_batch_marks") == []  # commit markers, pruned after the run
    assert {k: v for k, v in after.items() if k != "accounts"} == {
        k: v for k, v in before.items() if k != "accounts"}


def test_run_with_an_unknown_rule_exits_2_and_changes_nothing(shop: Shop) -> None:
    """`run --rule nosuch` is a usage error: one line naming the rule, exit 2, no change."""
    before = snapshot(shop.url)

    proc = shop.run("run", WEBSHOP, "--as-of", SPEC_AS_OF, "--rule", "nosuch")

    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "nosuch" in proc.stderr
    assert snapshot(shop.url) == before
    assert not shop.audit.exists()


def test_run_as_of_later_than_now_exits_2_and_changes_nothing(shop: Shop) -> None:
    """`run --as-of` in the future is refused (it would delete early); nothing is touched."""
    before = snapshot(shop.url)

    proc = shop.run("run", WEBSHOP, "--as-of", FUTURE)

    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "--as-of" in proc.stderr
    assert snapshot(shop.url) == before
    assert not shop.audit.exists()


def test_run_exits_3_when_max_fraction_stops_a_rule(tmp_path: Path) -> None:
    """A rule that would delete more than its max_fraction is stopped before any change."""
    url = f"sqlite:///{tmp_path / 'target.db'}"
    conn = sqlite3.connect(tmp_path / "target.db")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, at TIMESTAMP)")
    conn.executemany("INSERT INTO events VALUES (?, ?)",
                     [(i, "2010-01-01 00:00:00" if i <= 3 else "2026-02-28 00:00:00")
                      for i in range(1, 5)])
    conn.commit()
    conn.close()
    policy = write_policy(tmp_path, (
        "policy: limits\nsources:\n  db:\n    adapter: sql\n    url: ${CLI_TEST_URL}\n"
        f"audit:\n  url: sqlite:///{tmp_path / 'audit.db'}\n"
        "rules:\n  events:\n    table: events\n    retain: 1 year after at\n"
        "    max_fraction: 0.5\n"))
    before = snapshot(url)

    proc = cli("run", str(policy), "--as-of", SPEC_AS_OF, "--format", "json",
               env={"CLI_TEST_URL": url}, cwd=tmp_path)

    assert proc.returncode == 3, proc.stderr
    rule = json.loads(proc.stdout)["rules"][0]
    assert (rule["status"], rule["deleted"]) == ("stopped", 0)
    assert snapshot(url) == before


LIMITS_POLICY = """\
policy: limits
sources:
  db:
    adapter: sql
    url: ${CLI_TEST_URL}
audit:
  url: sqlite:///AUDIT
rules:
  fraction:
    table: events
    retain: 1 year after at
    max_fraction: 0.5
  rows:
    table: events
    retain: 1 year after at
    max_fraction: 1.0
    max_rows: 2
  calm:
    table: events
    retain: 1 year after at
    max_fraction: 1.0
"""


def test_report_says_per_rule_why_the_safety_limit_would_stop_a_run_in_every_format(
        tmp_path: Path) -> None:
    """`would_stop` (SPEC §3): the reason a run now stops the rule (the run's own words),
    or null; table, csv, md and html show it too, under a readable label."""
    url = f"sqlite:///{tmp_path / 'target.db'}"
    conn = sqlite3.connect(tmp_path / "target.db")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, at TIMESTAMP)")
    conn.executemany("INSERT INTO events VALUES (?, ?)",
                     [(i, "2010-01-01 00:00:00" if i <= 3 else "2026-02-28 00:00:00")
                      for i in range(1, 5)])
    conn.commit()
    conn.close()
    policy = str(write_policy(tmp_path, LIMITS_POLICY.replace("AUDIT",
                                                              str(tmp_path / "audit.db"))))
    env = {"CLI_TEST_URL": url}
    before = snapshot(url)

    proc = cli("report", policy, "--as-of", SPEC_AS_OF, "--format", "json", env=env,
               cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    would = {r["rule"]: r["would_stop"] for r in json.loads(proc.stdout)["rules"]}
    assert would["calm"] is None
    assert "3 of 4 rows (75%) are due, more than max_fraction 0.5" in would["fraction"]
    assert "3 rows are due, more than max_rows 2" in would["rows"]
    ran = cli("run", policy, "--as-of", SPEC_AS_OF, "--dry-run", "--format", "json",
              env=env, cwd=tmp_path)
    assert ran.returncode == 3, ran.stderr
    stopped = {r["rule"]: r.get("error") for r in json.loads(ran.stdout)["rules"]}
    assert stopped == would  # the report predicts the run's own decision
    for fmt in ("table", "csv", "md", "html"):
        shown = cli("report", policy, "--as-of", SPEC_AS_OF, "--format", fmt, env=env,
                    cwd=tmp_path).stdout
        assert "Would stop a run" in shown and "would_stop" not in shown, (fmt, shown)
        flat = " ".join(html.unescape(shown).replace("│", " ").replace("|", " ").split())
        for reason in (would["fraction"], would["rows"]):
            assert " ".join(reason.split()) in flat, (fmt, shown)
    assert snapshot(url) == before


@dataclass
class SplitRun:
    proc: subprocess.CompletedProcess[str]
    url: str
    password: str


@pytest.fixture(scope="module")
def split_run(tmp_path_factory: pytest.TempPathFactory) -> SplitRun:
    """A run of a policy with a reachable SQLite source and a PostgreSQL one on a closed port."""
    tmp_path = tmp_path_factory.mktemp("split")
    url = f"sqlite:///{tmp_path / 'target.db'}"
    conn = sqlite3.connect(tmp_path / "target.db")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, at TIMESTAMP)")
    conn.executemany("INSERT INTO events VALUES (?, ?)",
                     [(1, "2010-01-01 00:00:00"), (2, "2026-02-28 00:00:00")])
    conn.commit()
    conn.close()
    password = "Sup3rS3cretPw"
    policy = write_policy(tmp_path, (
        "policy: split\nsources:\n  local:\n    adapter: sql\n    url: ${CLI_TEST_URL}\n"
        "  remote:\n    adapter: sql\n    url: ${CLI_REMOTE_URL}\n"
        f"audit:\n  url: sqlite:///{tmp_path / 'audit.db'}\n"
        "rules:\n  remote-events:\n    source: remote\n    table: events\n"
        "    retain: 1 year after at\n"
        "  local-events:\n    source: local\n    table: events\n    retain: 1 year after at\n"))
    proc = cli("run", str(policy), "--as-of", SPEC_AS_OF, "--format", "json",
               env={"CLI_TEST_URL": url,
                    "CLI_REMOTE_URL": f"postgresql+psycopg://retention:{password}"
                                      "@127.0.0.1:1/shop"},
               cwd=tmp_path)
    return SplitRun(proc, url, password)


def test_run_exits_1_when_a_source_is_unreachable_and_still_runs_the_other_rules(
        split_run: SplitRun) -> None:
    """The rule on the closed port fails (exit 1); the rule on the live source deletes."""
    proc = split_run.proc
    assert proc.returncode == 1, proc.stderr
    rules = {r["rule"]: r for r in json.loads(proc.stdout)["rules"]}
    assert rules["remote-events"]["status"] == "failed"
    assert (rules["local-events"]["status"], rules["local-events"]["deleted"]) == ("ok", 1)
    assert [r["id"] for r in snapshot(split_run.url)["events"]] == [2]


def test_run_never_shows_the_password_of_an_unreachable_source(split_run: SplitRun) -> None:
    """SPEC §4.8: the failing source's password appears neither on stdout nor in the logs."""
    assert split_run.password not in split_run.proc.stdout
    assert split_run.password not in split_run.proc.stderr


# -- report -----------------------------------------------------------------------


def test_report_json_has_the_spec_fields(report_json: dict[str, Any]) -> None:
    """`report --format json` has policy, as_of, rules (with SPEC §3's fields) and uncovered."""
    assert set(report_json) >= REPORT_FIELDS
    assert (report_json["policy"], report_json["as_of"]) == ("webshop", SPEC_AS_OF)
    assert [r["rule"] for r in report_json["rules"]] == WEBSHOP_RULES
    for rule in report_json["rules"]:
        assert set(rule) >= REPORT_RULE_FIELDS, rule
        assert 0 <= rule["due_next_7d"] <= rule["due_next_30d"] <= rule["due_next_90d"]
    orders = report_json["rules"][0]
    assert orders["action"] == "delete" and orders["due"] > 0
    assert set(orders["children"]) == {"order_lines"}
    assert dt.datetime.fromisoformat(orders["oldest_due_event"]) <= dt.datetime.fromisoformat(
        orders["cutoff"])


def test_report_cutoff_of_the_spec_example_is_the_end_of_the_local_day(
        report_json: dict[str, Any]) -> None:
    """Orders at 2026-02-28T12:00Z in Amsterdam: cutoff 2018-08-27T21:59:59.999999+00:00."""
    assert report_json["rules"][0]["cutoff"] == SPEC_ORDERS_CUTOFF


def test_report_samples_lists_at_most_n_keys_as_objects(report_json: dict[str, Any]) -> None:
    """`--samples 2` lists at most two primary-key objects per rule (two when enough are due)."""
    pk = {rule: "email" if rule == "newsletter" else "id" for rule in WEBSHOP_RULES}
    for rule in report_json["rules"]:
        assert len(rule["samples"]) == min(2, rule["due"]), rule
        assert all(isinstance(s, dict) and set(s) == {pk[rule["rule"]]}
                   for s in rule["samples"]), rule


def test_report_lists_tables_no_rule_covers(report_json: dict[str, Any]) -> None:
    """`uncovered` names the one table that neither a rule nor a child covers."""
    assert report_json["uncovered"] == [{"source": "shop", "table": "legacy_customers"}]


def test_report_due_counts_match_what_a_run_at_the_same_instant_changes(
        report_json: dict[str, Any], two_runs: TwoRuns) -> None:
    """The dry-run report predicts the real run: same due, children and anonymized counts."""
    ran = {r["rule"]: r for r in two_runs.first_json["rules"]}
    for rule in report_json["rules"]:
        done = ran[rule["rule"]]
        assert rule["due"] == done["deleted"] + done["anonymized"], rule["rule"]
        assert rule["children"] == done["children"], rule["rule"]
        assert rule["held"] == done["held"] == 0


@pytest.mark.parametrize("fmt", ["csv", "md", "html", "table"])
def test_report_renders_every_rule_in_each_format(shop_ro: Shop, fmt: str) -> None:
    """`report --format csv|md|html|table` prints every rule and the orders cutoff on stdout,
    in the policy's time zone and readable words (no raw field names, no microseconds)."""
    proc = shop_ro.run("report", WEBSHOP, "--as-of", SPEC_AS_OF, "--format", fmt)

    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert SPEC_ORDERS_LOCAL_CUTOFF in out
    assert "Cutoff (Europe/Amsterdam)" in out
    facts = (str([r for r in csv.reader(io.StringIO(out)) if r[0] != "sql"]) if fmt == "csv"
             else out.split("How this was computed")[0])  # the SQL keeps its own terms
    for raw in ("due_next_30d", "oldest_due_event", "would_stop", ".999999"):
        assert raw not in facts, (raw, fmt)
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        rules = [r for r in rows if r["Section"] == "rule"]
        assert [r["Rule"] for r in rules] == WEBSHOP_RULES
        assert rules[0]["Cutoff (Europe/Amsterdam)"] == SPEC_ORDERS_LOCAL_CUTOFF
    elif fmt == "md":
        assert all(f"| {rule} |" in out for rule in WEBSHOP_RULES)
    elif fmt == "html":
        assert out.lower().startswith("<!doctype html>")
        assert all(f'<tr data-rule="{rule}">' in out for rule in WEBSHOP_RULES)
    else:
        assert all(rule in out for rule in WEBSHOP_RULES)


def test_report_output_option_writes_the_file_and_nothing_to_stdout(
        shop_ro: Shop, tmp_path: Path) -> None:
    """`report -o FILE --format json` writes the JSON report to FILE, stdout stays empty."""
    target = tmp_path / "report.json"

    proc = shop_ro.run("report", WEBSHOP, "--as-of", SPEC_AS_OF, "--format", "json",
                       "-o", str(target))

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert json.loads(target.read_text())["rules"][0]["cutoff"] == SPEC_ORDERS_CUTOFF


def test_report_accepts_an_as_of_in_the_future_and_changes_nothing(shop: Shop) -> None:
    """`report --as-of` far ahead works and counts every completed order as due."""
    before = snapshot(shop.url)

    proc = shop.run("report", WEBSHOP, "--as-of", FUTURE, "--format", "json")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["as_of"] == FUTURE
    completed = [o for o in before["orders"] if o["status"] == "completed"]
    assert data["rules"][0]["due"] == len(completed)
    assert snapshot(shop.url) == before
    assert not shop.audit.exists()


# -- plan, validate, RETENTION_POLICY ------------------------------------------------


def test_plan_prints_the_cutoff_and_sql_with_bound_parameters(shop_ro: Shop) -> None:
    """`plan` shows the cutoff and the statements; the where value is only a parameter."""
    proc = shop_ro.run("plan", WEBSHOP, "--rule", "orders", "--as-of", SPEC_AS_OF)

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"-- cutoff: {SPEC_ORDERS_CUTOFF}" in lines
    sql = [line for line in lines if line.strip() and not line.startswith("--")]
    assert any(line.startswith("SELECT") for line in sql)
    assert any(line.startswith("DELETE FROM order_lines") for line in sql)
    assert any(line.startswith("DELETE FROM orders") for line in sql)
    assert not [line for line in sql if "'completed'" in line or '"completed"' in line]
    params = [line for line in lines if line.startswith("-- parameters:")]
    assert any("'completed'" in line for line in params)


def test_validate_accepts_the_webshop_policy_on_the_demo_schema(shop_ro: Shop) -> None:
    """`validate` exits 0 and says the policy is valid."""
    proc = shop_ro.run("validate", WEBSHOP)

    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


def test_policy_argument_comes_from_retention_policy_when_omitted(shop_ro: Shop) -> None:
    """With RETENTION_POLICY set, `report` without POLICY reads that file."""
    proc = shop_ro.run("report", "--as-of", SPEC_AS_OF, "--format", "json",
                       RETENTION_POLICY=WEBSHOP)

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rules"][0]["cutoff"] == SPEC_ORDERS_CUTOFF


# -- audit ------------------------------------------------------------------------


def test_audit_list_shows_every_run(two_runs: TwoRuns) -> None:
    """`audit list` prints a table with both runs' ids."""
    proc = two_runs.shop.run("audit", "list", WEBSHOP)

    assert proc.returncode == 0, proc.stderr
    assert two_runs.first_json["run_id"] in proc.stdout
    assert two_runs.second_json["run_id"] in proc.stdout


def test_audit_show_table_lists_the_runs_rules_and_records(two_runs: TwoRuns) -> None:
    """`audit show RUN_ID` prints the run's rules and the records it changed."""
    run_id = two_runs.second_json["run_id"]

    proc = two_runs.shop.run("audit", "show", WEBSHOP, run_id)

    assert proc.returncode == 0, proc.stderr
    assert run_id in proc.stdout
    assert "orders" in proc.stdout and "order_lines" in proc.stdout


def test_audit_show_json_has_the_run_and_one_record_per_change(two_runs: TwoRuns) -> None:
    """`audit show RUN_ID --format json` has the run's summary and its records."""
    run_id = two_runs.first_json["run_id"]

    proc = two_runs.shop.run("audit", "show", WEBSHOP, run_id, "--format", "json")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["run_id"], data["status"]) == (run_id, "ok")
    assert [r["rule"] for r in data["summary"]] == WEBSHOP_RULES
    assert len(data["records"]) == _changed(two_runs.first_json)
    assert all(set(r) == set(EXPORT_FIELDS) and r["run_id"] == run_id
               for r in data["records"])


def test_audit_verify_exits_0_on_an_intact_store(two_runs: TwoRuns) -> None:
    """`audit verify` reports an intact chain."""
    proc = two_runs.shop.run("audit", "verify", WEBSHOP)

    assert proc.returncode == 0, proc.stderr
    assert "audit chain intact" in proc.stdout


def test_audit_verify_exits_1_and_names_the_altered_entry(two_runs: TwoRuns,
                                                           tmp_path: Path) -> None:
    """Changing one record's key in the SQLite audit file is found, by its sequence number
    (the key inside a batch's ``records`` entry)."""
    tampered = tmp_path / "audit.db"
    shutil.copy(two_runs.shop.audit, tampered)
    conn = sqlite3.connect(tampered)
    seq, detail = conn.execute("SELECT seq, detail FROM retention_log WHERE kind = 'records' "
                               "ORDER BY seq LIMIT 1 OFFSET 1").fetchone()
    found = json.loads(detail)
    found["keys"][0] = 999999
    conn.execute("UPDATE retention_log SET detail = ? WHERE seq = ?", (json.dumps(found), seq))
    conn.commit()
    conn.close()

    proc = two_runs.shop.run("audit", "verify", WEBSHOP,
                             RETENTION_AUDIT_URL=f"sqlite:///{tampered}")

    assert proc.returncode == 1
    assert f"entry {seq}" in proc.stdout + proc.stderr
    assert "intact" not in proc.stdout


def test_audit_export_jsonl_has_one_line_per_record_with_the_spec_fields(
        two_runs: TwoRuns) -> None:
    """`audit export --format jsonl` prints every changed record, children on their own lines."""
    proc = two_runs.shop.run("audit", "export", WEBSHOP, "--format", "jsonl")

    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == _changed(two_runs.first_json) + _changed(two_runs.second_json)
    assert all(list(line) == EXPORT_FIELDS for line in lines)
    children = [line for line in lines if line["table"] == "order_lines"]
    assert children and all(c["rule"] == "orders" and set(c["key"]) == {"id"}
                            for c in children)
    assert {line["action"] for line in lines} == {"delete", "anonymize"}


def test_audit_export_csv_has_a_header_and_one_row_per_record(two_runs: TwoRuns) -> None:
    """`audit export --format csv` has the SPEC fields as header and one row per record."""
    proc = two_runs.shop.run("audit", "export", WEBSHOP, "--format", "csv")

    assert proc.returncode == 0, proc.stderr
    reader = csv.DictReader(io.StringIO(proc.stdout))
    rows = list(reader)
    assert reader.fieldnames == EXPORT_FIELDS
    assert len(rows) == _changed(two_runs.first_json) + _changed(two_runs.second_json)
    assert all(isinstance(json.loads(r["key"]), dict) for r in rows)


def test_audit_export_since_leaves_out_earlier_records(two_runs: TwoRuns) -> None:
    """`audit export --since T` lists only the records of the run after T."""
    proc = two_runs.shop.run("audit", "export", WEBSHOP, "--since", two_runs.between)

    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == _changed(two_runs.second_json)
    assert {line["run_id"] for line in lines} == {two_runs.second_json["run_id"]}


# -- demo -------------------------------------------------------------------------


def test_demo_prints_the_report_the_run_and_an_intact_chain(tmp_path: Path) -> None:
    """`retention demo --dir D` builds its database in D and shows report, run and verify."""
    proc = cli("demo", "--dir", str(tmp_path / "demo"), env={}, cwd=tmp_path)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Retention report: webshop" in proc.stdout
    assert "Run " in proc.stdout and "orders" in proc.stdout
    assert "audit chain intact" in proc.stdout
    assert (tmp_path / "demo" / "webshop.db").exists()


# -- every database ----------------------------------------------------------------


@pytest.fixture
def webshop_db(db_url: str, make_engine: Callable[..., Engine], tmp_path: Path) -> Shop:
    """The web-shop schema and data on SQLite, PostgreSQL and MariaDB."""
    engine = make_engine(db_url)
    _fill(engine)
    engine.dispose()
    return Shop(db_url, tmp_path / "audit.db", tmp_path)


def test_run_json_counts_are_the_rows_removed_on_every_database(webshop_db: Shop) -> None:
    """`run --format json` on each backend: SPEC fields, and counts equal the rows gone."""
    before = _counts(webshop_db.url)

    proc = webshop_db.run("run", WEBSHOP, "--as-of", SPEC_AS_OF, "--format", "json")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) >= RUN_FIELDS
    after = _counts(webshop_db.url)
    for rule in data["rules"]:
        assert set(rule) >= RUN_RULE_FIELDS and rule["status"] == "ok", rule
        table = WEBSHOP_TABLES[rule["rule"]]
        assert before[table] - after[table] == rule["deleted"], rule
    orders = data["rules"][0]
    assert orders["deleted"] > 0
    assert before["order_lines"] - after["order_lines"] == orders["children"]["order_lines"]
    assert data["rules"][-1]["anonymized"] > 0


def test_report_json_has_the_spec_fields_and_cutoff_on_every_database(
        webshop_db: Shop) -> None:
    """`report --format json` on each backend: SPEC fields, the SPEC cutoff, nothing changed."""
    before = snapshot(webshop_db.url)

    proc = webshop_db.run("report", WEBSHOP, "--as-of", SPEC_AS_OF, "--format", "json",
                          "--samples", "2")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) >= REPORT_FIELDS and data["uncovered"] == []
    for rule in data["rules"]:
        assert set(rule) >= REPORT_RULE_FIELDS, rule
        assert len(rule["samples"]) == min(2, rule["due"])
    assert data["rules"][0]["cutoff"] == SPEC_ORDERS_CUTOFF
    assert data["rules"][0]["due"] > 0
    assert snapshot(webshop_db.url) == before
