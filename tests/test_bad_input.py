"""SPEC §2 "Bad input": every mistake in a policy is reported before anything changes.

Each case runs the real ``retention`` command and checks: exit code 2, nothing on
stdout, exactly one stderr line per problem, each starting ``FILE:LINE:`` (the exact
line of the mistake) and naming the rule it is in, the target database unchanged and
the audit store neither created nor changed. Mistakes only the live schema can reveal
run on SQLite, PostgreSQL and MariaDB; the others on SQLite.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from retention.audit.store import AuditStore
from tests.support import snapshot, write_policy

RETENTION = Path(sys.executable).with_name("retention")
AS_OF = "2026-02-28T12:00:00+00:00"
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_OUR_VARS = ("BAD_INPUT_URL", "ORDER_STATUS", "RETENTION_HASH_KEY", "RETENTION_POLICY",
             "RETENTION_AUDIT_URL", "SHOP_DATABASE_URL")

HEADER = """\
policy: bad-input
timezone: Europe/Amsterdam
sources:
  db:
    adapter: sql
    url: ${BAD_INPUT_URL}
audit:
  url: sqlite:///AUDIT
defaults:
  max_fraction: 1.0
rules:
"""
ORDERS = """\
  orders:
    source: db
    table: orders
    retain: 6 months after completion plus 7 years
    events: {completion: completed_at}
    where: {status: completed}
    children:
      - {table: order_lines, key: order_id}
"""


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in _OUR_VARS}
    full.update(env)
    return subprocess.run([str(RETENTION), *args], env=full, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def make_target(url: str) -> None:
    """orders + order_lines (all due long ago) and a table without a primary key."""
    meta = sa.MetaData()
    orders = sa.Table("orders", meta,
                      sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("completed_at", TS), sa.Column("status", sa.String(20)),
                      sa.Column("email", sa.String(100)))
    lines = sa.Table("order_lines", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("order_id", sa.Integer))
    logbook = sa.Table("logbook", meta, sa.Column("n", sa.Integer), sa.Column("at", TS))
    engine = sa.create_engine(url)
    try:
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(orders.insert(), [
                {"id": i, "completed_at": dt.datetime(2010, 1, i), "status": "completed",
                 "email": f"u{i}@example.org"} for i in range(1, 5)])
            conn.execute(lines.insert(), [{"id": i, "order_id": 1 + i % 4} for i in range(8)])
            conn.execute(logbook.insert(), [{"n": i, "at": dt.datetime(2010, 1, 1)}
                                            for i in range(3)])
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Problem:
    at: str  # text found on exactly one line of the policy: the line the problem is on
    rule: str | None  # the rule the line must name, or None outside any rule
    names: tuple[str, ...]  # what else the line must mention


def line_no(text: str, fragment: str) -> int:
    found = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    assert len(found) == 1, f"{fragment!r} is on lines {found}"
    return found[0]


@dataclass
class Target:
    url: str
    dir: Path

    @property
    def audit(self) -> Path:
        return self.dir / "audit.db"

    def policy(self, rules: str = ORDERS, header: str = HEADER) -> str:
        return header.replace("AUDIT", str(self.audit)) + rules

    def assert_rejected(self, text: str, problems: list[Problem], command: str = "run",
                        env: dict[str, str] | None = None, audit_exists: bool = False,
                        ) -> None:
        path = write_policy(self.dir, text)
        if audit_exists:
            AuditStore(f"sqlite:///{self.audit}").close()
        audit_before = self.audit.read_bytes() if audit_exists else None
        before = snapshot(self.url)
        args = [command, str(path), *(["--as-of", AS_OF] if command == "run" else [])]

        proc = cli(*args, env={"BAD_INPUT_URL": self.url} if env is None else env,
                   cwd=self.dir)

        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == len(problems), proc.stderr
        for problem in problems:
            prefix = f"{path}:{line_no(text, problem.at)}: "
            hits = [line for line in lines if line.startswith(prefix)
                    and (problem.rule is None or f"'{problem.rule}'" in line)
                    and all(name in line for name in problem.names)]
            assert len(hits) == 1, f"{problem} ({prefix}) not one of:\n{proc.stderr}"
        assert snapshot(self.url) == before
        if audit_exists:
            assert self.audit.read_bytes() == audit_before
        else:
            assert not self.audit.exists()


@pytest.fixture
def sqlite_target(sqlite_url: str, tmp_path: Path) -> Target:
    make_target(sqlite_url)
    return Target(sqlite_url, tmp_path)


@pytest.fixture
def target(db_url: str, tmp_path: Path) -> Target:
    make_target(db_url)
    return Target(db_url, tmp_path)


def test_the_policy_without_mistakes_would_delete_rows(sqlite_target: Target) -> None:
    """The base policy every case spoils is valid and would change the target if run."""
    path = write_policy(sqlite_target.dir, sqlite_target.policy())

    proc = cli("run", str(path), "--as-of", AS_OF, env={"BAD_INPUT_URL": sqlite_target.url},
               cwd=sqlite_target.dir)

    assert proc.returncode == 0, proc.stderr
    assert snapshot(sqlite_target.url)["orders"] == []


# -- mistakes in the file itself --------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_unknown_top_level_key_is_reported_on_its_line(sqlite_target: Target,
                                                          command: str) -> None:
    """`colour:` at the top level is one problem on line 3, outside any rule."""
    header = HEADER.replace("timezone: Europe/Amsterdam\n",
                            "timezone: Europe/Amsterdam\ncolour: blue\n")
    text = sqlite_target.policy(header=header)
    assert line_no(text, "colour: blue") == 3
    sqlite_target.assert_rejected(text, [Problem("colour: blue", None, ("colour",))], command)


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_unknown_rule_key_is_reported_on_its_line_with_the_rule(sqlite_target: Target,
                                                                   command: str) -> None:
    """`frobnicate:` inside rule orders is reported on its own line, naming the rule."""
    text = sqlite_target.policy(ORDERS + "    frobnicate: yes\n")
    assert line_no(text, "frobnicate") == 20
    sqlite_target.assert_rejected(text, [Problem("frobnicate", "orders", ("frobnicate",))],
                                  command)


def test_a_duplicate_rule_name_is_reported_on_the_second_definition(
        sqlite_target: Target) -> None:
    """A second rule called orders is reported on the line that repeats the name."""
    text = sqlite_target.policy(ORDERS + "  orders:  # the same name again\n"
                                "    table: orders\n    retain: 1 day after completed_at\n")
    assert line_no(text, "the same name again") == 20
    sqlite_target.assert_rejected(
        text, [Problem("the same name again", "orders", ("duplicate",))])


def test_an_unparseable_retain_is_reported_on_its_line(sqlite_target: Target) -> None:
    """`6 monthz after completion` is reported on the retain line, naming the bad word."""
    text = sqlite_target.policy(ORDERS.replace("6 months after completion plus 7 years",
                                               "6 monthz after completion"))
    assert line_no(text, "monthz") == 15
    sqlite_target.assert_rejected(text, [Problem("retain:", "orders", ("monthz",))])


def test_an_unknown_source_is_reported_on_the_source_line(sqlite_target: Target) -> None:
    """`source: warehouse` names a source the policy does not define."""
    text = sqlite_target.policy(ORDERS.replace("source: db", "source: warehouse"))
    sqlite_target.assert_rejected(text, [Problem("source: warehouse", "orders",
                                                 ("warehouse",))])


def test_an_unset_environment_variable_is_reported_on_its_line(sqlite_target: Target) -> None:
    """The source URL `${BAD_INPUT_URL}` with that variable unset is one problem on line 6."""
    text = sqlite_target.policy()
    assert line_no(text, "${BAD_INPUT_URL}") == 6
    sqlite_target.assert_rejected(text, [Problem("${BAD_INPUT_URL}", None, ("BAD_INPUT_URL",))],
                                  env={})


def test_an_unset_environment_variable_inside_a_rule_names_the_rule(
        sqlite_target: Target) -> None:
    """`where: {status: "${ORDER_STATUS}"}` unset is reported on its line, naming orders."""
    text = sqlite_target.policy(ORDERS.replace("{status: completed}",
                                               '{status: "${ORDER_STATUS}"}'))
    sqlite_target.assert_rejected(text, [Problem("ORDER_STATUS", "orders", ("ORDER_STATUS",))])


def test_an_unset_hash_key_variable_is_reported_on_the_action_line(
        sqlite_target: Target) -> None:
    """An anonymize `hash` strategy with RETENTION_HASH_KEY unset is a problem of its rule."""
    text = sqlite_target.policy(ORDERS + "  emails:\n    table: orders\n"
                                "    retain: 1 day after completed_at\n"
                                "    action: {anonymize: {email: hash}}\n")
    sqlite_target.assert_rejected(text, [Problem("{email: hash}", "emails",
                                                 ("RETENTION_HASH_KEY",))])


def test_malformed_yaml_is_reported_on_the_broken_line(sqlite_target: Target) -> None:
    """A scalar followed by more text is not YAML; the line that breaks it is named."""
    text = sqlite_target.policy(ORDERS + '    legal_basis: "Contract" (7 years)\n')
    assert line_no(text, "legal_basis") == 20
    sqlite_target.assert_rejected(text, [Problem("legal_basis", None, ("YAML",))])


@pytest.mark.parametrize("command", ["run", "validate"])
def test_several_mistakes_in_the_file_are_all_reported_one_per_line(
        sqlite_target: Target, command: str) -> None:
    """Four mistakes in two rules and the top level give four lines; the audit store is kept."""
    header = HEADER.replace("timezone: Europe/Amsterdam\n",
                            "timezone: Europe/Amsterdam\ncolour: blue\n")
    rules = (ORDERS.replace("source: db", "source: warehouse") + "    frobnicate: yes\n"
             "  accounts:\n    table: accounts\n    retain: 3 monthz after closure\n")
    text = sqlite_target.policy(rules, header)
    sqlite_target.assert_rejected(text, [
        Problem("colour: blue", None, ("colour",)),
        Problem("source: warehouse", "orders", ("warehouse",)),
        Problem("frobnicate", "orders", ("frobnicate",)),
        Problem("3 monthz", "accounts", ("monthz",)),
    ], command, audit_exists=True)


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_policy_file_that_does_not_exist_exits_2_with_one_line(tmp_path: Path,
                                                                 command: str) -> None:
    """A missing POLICY path is one line on stderr naming the path, and exit code 2."""
    missing = tmp_path / "nope.yaml"

    proc = cli(command, str(missing), env={}, cwd=tmp_path)

    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and str(missing) in proc.stderr
    assert list(tmp_path.iterdir()) == []


# -- mistakes only the live schema shows (every database) -----------------------------


def test_a_table_missing_from_the_schema_is_reported_on_the_table_line(target: Target) -> None:
    """`table: nosuch` is reported on its line, naming the rule and the table."""
    text = target.policy(ORDERS.replace("table: orders", "table: nosuch"))
    target.assert_rejected(text, [Problem("table: nosuch", "orders", ("nosuch",))])


def test_a_missing_event_column_is_reported_on_the_events_line(target: Target) -> None:
    """`events: {completion: shipped_at}` names a column the table does not have."""
    text = target.policy(ORDERS.replace("completion: completed_at", "completion: shipped_at"))
    target.assert_rejected(text, [Problem("shipped_at", "orders", ("shipped_at",))])


def test_a_missing_where_column_is_reported_on_the_where_line(target: Target) -> None:
    """`where: {state: completed}` names a column the table does not have."""
    text = target.policy(ORDERS.replace("{status: completed}", "{state: completed}"))
    target.assert_rejected(text, [Problem("where:", "orders", ("'state'",))])


def test_a_missing_anonymize_column_is_reported_on_the_action_line(target: Target) -> None:
    """`anonymize: {phone: null}` names a column the table does not have."""
    text = target.policy(ORDERS + "  emails:\n    table: orders\n"
                         "    retain: 1 day after completed_at\n"
                         "    action: {anonymize: {phone: null}}\n")
    target.assert_rejected(text, [Problem("{phone: null}", "emails", ("phone",))])


def test_a_table_without_a_primary_key_is_reported_on_the_table_line(target: Target) -> None:
    """A rule on `logbook` (no primary key) cannot be batched and is rejected."""
    text = target.policy(ORDERS + "  logbook:\n    table: logbook\n"
                         "    retain: 1 year after at\n")
    target.assert_rejected(text, [Problem("table: logbook", "logbook", ("primary key",))])


def test_an_event_column_that_is_not_a_timestamp_is_reported(target: Target) -> None:
    """`events: {completion: status}` points at a text column."""
    text = target.policy(ORDERS.replace("completion: completed_at", "completion: status"))
    target.assert_rejected(text, [Problem("events:", "orders", ("status", "date"))])


def test_an_unknown_event_word_is_reported_on_the_retain_line(target: Target) -> None:
    """`after shipment` is neither in `events` nor a column of the table."""
    text = target.policy(ORDERS.replace("after completion", "after shipment"))
    target.assert_rejected(text, [Problem("retain:", "orders", ("shipment",))])


@pytest.mark.parametrize("command", ["run", "validate"])
def test_several_schema_mistakes_are_all_reported_one_per_line(sqlite_target: Target,
                                                               command: str) -> None:
    """A missing table, a missing column and a keyless table in three rules: three lines."""
    rules = (ORDERS.replace("completion: completed_at", "completion: shipped_at")
             + "  accounts:\n    table: accounts\n    retain: 3 months after closed_at\n"
             + "  logbook:\n    table: logbook\n    retain: 1 year after at\n")
    text = sqlite_target.policy(rules)
    sqlite_target.assert_rejected(text, [
        Problem("shipped_at", "orders", ("shipped_at",)),
        Problem("table: accounts", "accounts", ("accounts",)),
        Problem("table: logbook", "logbook", ("primary key",)),
    ], command, audit_exists=True)
