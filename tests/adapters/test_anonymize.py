"""Anonymize rules finish: a row whose columns hold their anonymized form is not due.

The invariant behind every test here: for each stored value ``v`` of a column,
the SQL pending predicate holds exactly when the strategy would change ``v``.
So a run changes exactly the rows SQL selects, counts, backlogs and safety
limits count only real work, and a second run finds nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from retention.adapters import anonymize
from retention.adapters import sql_statements as q
from sqlalchemy.dialects import mysql, postgresql
from structlog.testing import capture_logs

from retention.actions import REDACTED, Action, ColumnAction, Strategy
from retention.daemon import status
from retention.plan import EventType, Plan
from retention.policy.load import load_policy
from retention.policy.phrase import parse
from retention.report import build as report
from retention.run import engine
from retention.run.outcome import Status
from tests.policy.test_bad_input import Problem, Target
from tests.support import audited, snapshot, table_rows, utc, write_policy

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
AS_OF = utc(2026, 3, 1, 12, 0)
OLD, NEW = dt.datetime(2026, 1, 1), dt.datetime(2026, 3, 1, 11)
KEY = b"k3y"

# -- values: addresses, their networks, digests, markers and junk ----------------------

_addresses = st.ip_addresses().map(str)
_networks = _addresses.map(lambda a: str(anonymize.truncate_ip(a)))
_interfaces = st.tuples(st.ip_addresses(), st.integers(0, 128)).map(
    lambda ap: f"{ap[0]}/{min(ap[1], ap[0].max_prefixlen)}")
_hex = st.text("0123456789abcdefABCDEF", min_size=63, max_size=65)
_junk = st.text("0123456789abcdefABCDEF:./% \n\t", max_size=24)
_digest = st.text(max_size=8).map(lambda s: anonymize.keyed_hash(s, KEY))
VALUES = st.one_of(
    _addresses, _addresses.map(str.upper), _networks, _networks.map(str.upper),
    _networks.map(lambda s: s + "\n"), _networks.map(lambda s: " " + s), _interfaces,
    _hex, _digest, _digest.map(str.upper), _digest.map(lambda s: s + "\n"), _junk,
    st.text(max_size=16).map(lambda s: s.replace("\x00", "")),
    st.sampled_from(["", " ", "1.2.3.0", "0.0.0.0", "::", "1::", "0:0:1::", "a:b:c::",
                     "01.2.3.0", "1.2.3.00", "fe80::%eth0", "fe80::1%eth0",
                     REDACTED, REDACTED.upper(), REDACTED + " ", "somewhere", "Somewhere",
                     "somewhere ", "sömewhere"]),
)
CANONICAL_IP = re.compile(anonymize.TRUNCATED_IP)
CANONICAL_HASH = re.compile(anonymize.HEX64)


@given(VALUES)
@settings(max_examples=2000, deadline=None)
def test_an_address_is_left_alone_exactly_when_it_has_the_canonical_network_form(
        value: str) -> None:
    """truncate_ip maps v to itself iff v is a canonical /24 or /48 text (or ''), and its
    output always has that form."""
    out = anonymize.truncate_ip(value, not_null=True)
    assert (out == value) == bool(CANONICAL_IP.fullmatch(value))
    assert CANONICAL_IP.fullmatch(out)
    assert anonymize.truncate_ip(out) == out
    assert anonymize.truncate_ip(value) in (out, None)


@given(VALUES)
@settings(max_examples=1000, deadline=None)
def test_a_value_is_kept_by_hash_exactly_when_it_is_64_lowercase_hex_digits(value: str) -> None:
    """keyed_hash keeps v iff v is a digest; its output always is one."""
    out = anonymize.keyed_hash(value, KEY)
    assert (out == value) == bool(CANONICAL_HASH.fullmatch(value))
    assert CANONICAL_HASH.fullmatch(out)


def test_truncate_ip_examples() -> None:
    """IPv4 to /24, IPv6 to /48, prefixes and zone ids dropped, junk to NULL or ''."""
    assert anonymize.truncate_ip("203.0.113.77") == "203.0.113.0"
    assert anonymize.truncate_ip(" 203.0.113.77/16 ") == "203.0.113.0"
    assert anonymize.truncate_ip("2001:DB8:1:2::7") == "2001:db8:1::"
    assert anonymize.truncate_ip("fe80::1%eth0") == "fe80::"
    assert anonymize.truncate_ip("unknown") is None
    assert anonymize.truncate_ip("unknown", not_null=True) == ""
    assert anonymize.truncate_ip("") == ""
    assert anonymize.truncate_ip(ipaddress.ip_interface("1.2.3.4/16")) == \
        ipaddress.ip_address("1.2.3.0")
    assert anonymize.truncate_ip(ipaddress.ip_network("10.0.0.0/8")) == \
        ipaddress.ip_network("10.0.0.0/8")
    assert anonymize.truncate_ip(ipaddress.ip_network("1.2.3.4/32")) == \
        ipaddress.ip_network("1.2.3.0/24")


# -- SQL agrees with Python, value by value, on every database -------------------------


def _plan(table: str, *actions: ColumnAction, text: frozenset[str] = frozenset()) -> Plan:
    return Plan(
        policy="p", rule="r", source="db", table=table, primary_key=("id",),
        event_column="at", event_type=EventType.NAIVE_UTC, retain=parse("1 day after at"),
        timezone="UTC", as_of=AS_OF, cutoff=AS_OF, bound=AS_OF.replace(tzinfo=None),
        filters=(), action=Action(actions), children=(), batch_size=1000,
        max_fraction=1.0, max_rows=None, text_columns=text)


_TEXT_ACTIONS = [
    ColumnAction("ip", Strategy.TRUNCATE_IP),
    ColumnAction("ip_nn", Strategy.TRUNCATE_IP),
    ColumnAction("h", Strategy.HASH, key_env="TEST_HASH_KEY"),
    ColumnAction("r", Strategy.REDACT),
    ColumnAction("f", Strategy.FIXED, value="somewhere"),
    ColumnAction("n", Strategy.NULL),
]


def _pending_ids(conn: sa.Connection, table: sa.Table, plan: Plan, dialect: str) -> set[int]:
    stmt = sa.select(table.c.id).where(q.pending(table, plan, dialect))
    return {row[0] for row in conn.execute(stmt)}


def _agrees(conn: sa.Connection, table: sa.Table, dialect: str,
            actions: list[ColumnAction], text: frozenset[str]) -> None:
    """Per column: SQL pending == Python would change it; after writing Python's output
    back, nothing is pending."""
    for action in actions:
        col = table.c[action.column]
        plan = _plan(table.name, action, text=text)
        stored = {r.id: r[1] for r in conn.execute(sa.select(table.c.id, col))}
        outputs = {k: anonymize.apply(action, v, not_null=not col.nullable)
                   for k, v in stored.items()}
        expected = {k for k, v in stored.items() if not anonymize.same(v, outputs[k])}
        assert _pending_ids(conn, table, plan, dialect) == expected, (action, stored)
        for k in expected:
            conn.execute(table.update().where(table.c.id == k).values({col: outputs[k]}))
        assert _pending_ids(conn, table, plan, dialect) == set(), action


def _text_table(url: str) -> sa.Table:
    meta = sa.MetaData()
    text = sa.String(100)
    table = sa.Table("vals", meta, sa.Column("id", sa.Integer, primary_key=True,
                                             autoincrement=False),
                     sa.Column("at", TS), sa.Column("ip", text),
                     sa.Column("ip_nn", text, nullable=False, server_default=""),
                     sa.Column("h", text), sa.Column("r", text), sa.Column("f", text),
                     sa.Column("n", text))
    eng = sa.create_engine(url)
    meta.create_all(eng)
    eng.dispose()
    return table


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql", "mariadb"], indirect=True)
def test_sql_pending_agrees_with_the_strategies_on_text_columns(
        db_url: str, db_kind: str, make_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """For every strategy and any stored text, SQL calls a value pending exactly when the
    strategy changes it; after the change nothing is pending (MariaDB: a case- and
    accent-insensitive collation, trailing spaces)."""
    monkeypatch.setenv("TEST_HASH_KEY", KEY.decode())
    table = _text_table(db_url)
    eng = make_engine(db_url)
    dialect = eng.dialect.name
    texts = frozenset(c.name for c in table.columns if isinstance(c.type, sa.String))

    @given(st.lists(VALUES, min_size=1, max_size=12))
    @settings(max_examples=150 if db_kind == "sqlite" else 40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def check(values: list[str]) -> None:
        with eng.begin() as conn:
            conn.execute(table.delete())
            conn.execute(table.insert(), [
                {"id": i, "at": OLD, **{a.column: v for a in _TEXT_ACTIONS}}
                for i, v in enumerate(values)] + [
                {"id": len(values), "at": OLD, "ip": None, "ip_nn": "", "h": None, "r": None,
                 "f": None, "n": None}])
            _agrees(conn, table, dialect, _TEXT_ACTIONS, texts)

    check()


def test_sql_pending_agrees_with_truncate_ip_on_postgresql_inet_and_cidr(
        postgres_url: str, make_engine: Any) -> None:
    """inet and cidr values as psycopg reads them: pending in SQL iff truncate_ip changes
    them; the written /24 or /48 is then left alone."""
    eng = make_engine(postgres_url)
    meta = sa.MetaData()
    table = sa.Table("nets", meta, sa.Column("id", sa.Integer, primary_key=True,
                                             autoincrement=False),
                     sa.Column("at", TS), sa.Column("a", postgresql.INET),
                     sa.Column("c", postgresql.CIDR))
    meta.create_all(eng)
    actions = [ColumnAction("a", Strategy.TRUNCATE_IP), ColumnAction("c", Strategy.TRUNCATE_IP)]
    pairs = st.tuples(st.ip_addresses(), st.integers(0, 128))

    @given(st.lists(pairs, min_size=1, max_size=12))
    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def check(found: list[tuple[Any, int]]) -> None:
        rows = []
        for i, (address, length) in enumerate(found):
            prefix = min(length, address.max_prefixlen)
            rows.append({"id": i, "at": OLD, "a": f"{address}/{prefix}",
                         "c": str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))})
        rows.append({"id": len(rows), "at": OLD, "a": None, "c": None})
        with eng.begin() as conn:
            conn.execute(table.delete())
            conn.execute(table.insert(), rows)
            _agrees(conn, table, "postgresql", actions, frozenset())

    check()


# -- runs: a second run finds nothing, on every database -------------------------------


def _create(url: str, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    eng = sa.create_engine(url)
    try:
        table.metadata.create_all(eng)
        with eng.begin() as conn:
            conn.execute(table.insert(), rows)
    finally:
        eng.dispose()


def _policy(tmp_path: Path, url: str, rules: str) -> Any:
    os.environ["ANON_TEST_URL"] = url
    return load_policy(write_policy(tmp_path, (
        "policy: anon\ntimezone: UTC\nsources:\n  db: {adapter: sql, url: '${ANON_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        f"defaults:\n  source: db\nrules:\n{rules}")))


def _users(url: str, old: int, new: int) -> sa.Table:
    meta = sa.MetaData()
    table = sa.Table("users", meta, sa.Column("id", sa.Integer, primary_key=True,
                                              autoincrement=False),
                     sa.Column("left_at", TS), sa.Column("email", sa.String(100)))
    _create(url, table, [{"id": i, "left_at": OLD if i <= old else NEW,
                          "email": f"user{i}@example.org"} for i in range(1, old + new + 1)])
    return table


HASH_RULE = ("  users:\n    table: users\n    retain: 1 day after left_at\n    batch_size: 2\n"
             "    max_fraction: 1.0\n    action: {anonymize: {email: {hash: TEST_HASH_KEY}}}\n")


def test_a_hash_rule_finds_nothing_due_after_its_run(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a hash run, the next run, the report and the status backlog all see 0 due,
    and the batch select returns no row."""
    monkeypatch.setenv("TEST_HASH_KEY", "k3y")
    _users(db_url, old=5, new=2)
    policy = _policy(tmp_path, db_url, HASH_RULE)

    first = engine.run(policy, AS_OF)
    after_first = table_rows(db_url, "users", "id")
    second = engine.run(policy, AS_OF)

    assert (first.rules[0].due, first.rules[0].anonymized) == (5, 5)
    assert (second.rules[0].due, second.rules[0].anonymized) == (0, 0)
    assert table_rows(db_url, "users", "id") == after_first
    assert report.build(policy, AS_OF)["rules"][0]["due"] == 0
    assert status.build(policy, AS_OF)["rules"][0]["backlog"] == 0
    with engine.Session(policy) as session:
        plans, _ = engine.compile_plans(session, policy.rules, AS_OF)
        batch = session.adapter("db").run_batch(plans["users"], None, lambda b, c: None)
    assert batch.scanned == 0
    assert sorted(r["key"]["id"] for r in audited(policy.audit_url)) == [1, 2, 3, 4, 5]


def test_the_safety_limit_counts_only_rows_not_yet_hashed(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's scenario: 4 of 10 rows hashed, 3 more fall due; max_fraction 0.5 does not
    stop the rule (3 of 10 need work, not 7)."""
    monkeypatch.setenv("TEST_HASH_KEY", "k3y")
    meta = sa.MetaData()
    table = sa.Table("users", meta, sa.Column("id", sa.Integer, primary_key=True,
                                              autoincrement=False),
                     sa.Column("left_at", TS), sa.Column("email", sa.String(100)))
    _create(db_url, table, [{"id": i, "left_at": dt.datetime(2026, 1, 1 + i),
                             "email": f"user{i}@example.org"} for i in range(1, 11)])
    policy = _policy(tmp_path, db_url, HASH_RULE.replace("1.0", "0.5"))

    first = engine.run(policy, utc(2026, 1, 7, 12))
    later = engine.run(policy, utc(2026, 1, 10, 12))

    assert (first.rules[0].status, first.rules[0].anonymized) == (Status.OK, 4)
    assert (later.rules[0].status, later.rules[0].due, later.rules[0].anonymized) == (
        Status.OK, 3, 3)


def test_truncate_ip_on_postgresql_inet_and_cidr_finishes(
        postgres_url: str, tmp_path: Path) -> None:
    """inet values become the /24 or /48 host address, cidr networks at most /24 or /48;
    a second run and the report find nothing due."""
    meta = sa.MetaData()
    table = sa.Table("visits", meta, sa.Column("id", sa.Integer, primary_key=True,
                                               autoincrement=False),
                     sa.Column("at", TS), sa.Column("ip", postgresql.INET),
                     sa.Column("net", postgresql.CIDR))
    ips = ["203.0.113.77", "198.51.100.9/16", "2001:db8:1:2::7", "203.0.113.0", None]
    nets = ["10.0.0.0/8", "192.0.2.128/25", "2001:db8:1:2::/64", "203.0.113.0/24", None]
    pairs = enumerate(zip(ips, nets, strict=True), start=1)
    _create(postgres_url, table, [{"id": i, "at": OLD, "ip": ip, "net": net}
                                  for i, (ip, net) in pairs])
    policy = _policy(tmp_path, postgres_url, (
        "  visits:\n    table: visits\n    retain: 1 day after at\n    max_fraction: 1.0\n"
        "    action: {anonymize: {ip: truncate_ip, net: truncate_ip}}\n"))

    first = engine.run(policy, AS_OF)
    second = engine.run(policy, AS_OF)

    assert first.rules[0].anonymized == 3
    assert (second.rules[0].due, second.rules[0].anonymized) == (0, 0)
    assert report.build(policy, AS_OF)["rules"][0]["due"] == 0
    rows = table_rows(postgres_url, "visits", "id")
    assert [str(r["ip"]) if r["ip"] is not None else None for r in rows] == [
        "203.0.113.0", "198.51.100.0", "2001:db8:1::", "203.0.113.0", None]
    assert [str(r["net"]) if r["net"] is not None else None for r in rows] == [
        "10.0.0.0/8", "192.0.2.0/24", "2001:db8:1::/48", "203.0.113.0/24", None]


def test_a_not_null_address_column_like_wordpress_gets_empty_text_for_junk(
        db_url: str, tmp_path: Path) -> None:
    """`comment_author_IP varchar(100) NOT NULL DEFAULT ''`: '' and junk become '', addresses
    their network; the run succeeds and a second run changes nothing."""
    meta = sa.MetaData()
    table = sa.Table("wp_comments", meta,
                     sa.Column("comment_ID", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("comment_date_gmt", TS),
                     sa.Column("comment_author_IP", sa.String(100), nullable=False,
                               server_default=""))
    ips = ["", "unknown", "203.0.113.77", "2001:DB8:1:2::7", "198.51.100.0", " 10.0.0.1 ",
           "2001:db8:1::"]
    _create(db_url, table, [{"comment_ID": i, "comment_date_gmt": OLD, "comment_author_IP": ip}
                            for i, ip in enumerate(ips, start=1)])
    policy = _policy(tmp_path, db_url, (
        "  comments:\n    table: wp_comments\n    retain: 1 day after comment_date_gmt\n"
        "    max_fraction: 1.0\n    batch_size: 2\n"
        "    action: {anonymize: {comment_author_IP: truncate_ip}}\n"))

    first = engine.run(policy, AS_OF)
    after_first = snapshot(db_url)
    second = engine.run(policy, AS_OF)

    assert first.exit_code == 0, [r.error for r in first.rules]
    assert first.rules[0].anonymized == 4
    assert [r["comment_author_IP"] for r in table_rows(db_url, "wp_comments", "1")] == [
        "", "", "203.0.113.0", "2001:db8:1::", "198.51.100.0", "10.0.0.0", "2001:db8:1::"]
    assert (second.exit_code, second.rules[0].due, second.rules[0].anonymized) == (0, 0, 0)
    assert snapshot(db_url) == after_first


def test_a_selected_row_the_strategy_would_leave_alone_is_logged_not_skipped_silently(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If SQL and the strategies ever disagree, the row stays due and a warning names it."""
    from retention.adapters import sql_batch

    monkeypatch.setenv("TEST_HASH_KEY", "k3y")
    monkeypatch.setattr(sql_batch.anonymize, "apply", lambda action, value, nn=False: value)
    _users(sqlite_url, old=2, new=0)
    policy = _policy(tmp_path, sqlite_url, HASH_RULE)
    before = snapshot(sqlite_url)

    with capture_logs() as logs:
        outcome = engine.run(policy, AS_OF)

    assert (outcome.rules[0].due, outcome.rules[0].anonymized) == (2, 0)
    assert [e["key"] for e in logs if e["event"] == "row_not_changed"] == [{"id": 1}, {"id": 2}]
    assert snapshot(sqlite_url) == before


def test_plan_shows_the_pending_predicate(sqlite_url: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`retention plan` shows that rows already hashed are not selected."""
    monkeypatch.setenv("TEST_HASH_KEY", "k3y")
    _users(sqlite_url, old=1, new=0)
    policy = _policy(tmp_path, sqlite_url, HASH_RULE)
    with engine.Session(policy) as session:
        plans, _ = engine.compile_plans(session, policy.rules, AS_OF)
        shown = session.adapter("db").statements(plans["users"])[0]
    assert "users.email NOT REGEXP" in shown
    assert "[0-9a-f]{64}" in shown


# -- bad input: actions that cannot fit their column -----------------------------------


def _comments(url: str) -> None:
    meta = sa.MetaData()
    table = sa.Table("comments", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("at", TS),
                     sa.Column("ip", sa.String(100), nullable=False, server_default=""),
                     sa.Column("code", sa.String(8)), sa.Column("votes", sa.Integer),
                     sa.Column("body", sa.Text))
    _create(url, table, [{"id": 1, "at": OLD, "ip": "203.0.113.7", "code": "x", "votes": 3,
                          "body": "hello"}])


def _rule(name: str, action: str) -> str:
    return (f"  {name}:\n    source: db\n    table: comments\n    retain: 1 day after at\n"
            f"    action: {action}\n")


@pytest.mark.parametrize("command", ["validate", "run"])
def test_null_on_a_not_null_column_is_bad_input(db_url: str, tmp_path: Path,
                                                command: str) -> None:
    """`ip: null` on a NOT NULL column: exit 2, one line naming file, line, rule and column,
    nothing changed."""
    _comments(db_url)
    target = Target(db_url, tmp_path)
    text = target.policy(_rule("ips", "{anonymize: {ip: null}}"))
    target.assert_rejected(text, [Problem("{ip: null}", "ips", ("'ip'", "NOT NULL"))], command)


def test_actions_that_do_not_fit_their_column_are_bad_input(sqlite_url: str,
                                                            tmp_path: Path) -> None:
    """hash or redact on a too short column, text strategies on a number column, a fixed
    value of the wrong type or too long: one line each."""
    _comments(sqlite_url)
    target = Target(sqlite_url, tmp_path)
    rules = (_rule("a", "{anonymize: {code: hash}}")
             + _rule("b", "{anonymize: {code: redact}}")
             + _rule("c", "{anonymize: {votes: truncate_ip}}")
             + _rule("d", "{anonymize: {votes: {fixed: none}}}")
             + _rule("e", "{anonymize: {code: {fixed: 7}}}")
             + _rule("f", "{anonymize: {code: {fixed: much-too-long}}}")
             + _rule("g", "{anonymize: {ip: {fixed: null}}}")
             + _rule("h", "{anonymize: {body: hash, ip: truncate_ip, votes: {fixed: 0}}}"))
    text = target.policy(rules)
    target.assert_rejected(text, [
        Problem("{code: hash}", "a", ("'code'", "64")),
        Problem("{code: redact}", "b", ("'code'", str(len(REDACTED)))),
        Problem("{votes: truncate_ip}", "c", ("'votes'", "text")),
        Problem("{votes: {fixed: none}}", "d", ("'votes'", "'none'")),
        Problem("{code: {fixed: 7}}", "e", ("'code'", "7")),
        Problem("much-too-long", "f", ("'code'", "8")),
        Problem("{ip: {fixed: null}}", "g", ("'ip'", "NOT NULL")),
    ], "validate", env={"BAD_INPUT_URL": sqlite_url, "RETENTION_HASH_KEY": "k"})


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_truncate_ip_on_a_mariadb_inet6_column_is_refused_in_plain_words(
        db_url: str, tmp_path: Path, command: str) -> None:
    """An INET6 column (a type SQLAlchemy does not know): one line naming the type, and no
    'Did not recognize type' warning on stderr."""
    eng = sa.create_engine(db_url)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE comments (id INT PRIMARY KEY, at DATETIME(6) NULL, "
                             "ip INET6 NULL)")
        conn.exec_driver_sql("INSERT INTO comments VALUES (1, '2026-01-01', '2001:db8::7')")
    eng.dispose()
    target = Target(db_url, tmp_path)
    text = target.policy(_rule("ips", "{anonymize: {ip: truncate_ip}}"))
    target.assert_rejected(text, [Problem("{ip: truncate_ip}", "ips",
                                          ("'ip'", "truncate_ip", "INET6", "text"))], command)
