"""The engine on real databases: exact selection, batches, children, anonymize, limits."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from retention import calendar
from retention.policy.load import load_policy
from retention.policy.phrase import parse
from retention.run import engine
from retention.run.outcome import Status
from tests.support import audited, keys, snapshot, table_rows, utc, write_policy

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
AS_OF = utc(2026, 3, 1, 12, 0)


def _create(url: str, *tables: sa.Table, rows: dict[str, list[dict[str, Any]]]) -> None:
    eng = sa.create_engine(url)
    try:
        tables[0].metadata.create_all(eng)
        with eng.begin() as conn:
            for table in tables:
                if rows.get(table.name):
                    conn.execute(table.insert(), rows[table.name])
    finally:
        eng.dispose()


def _policy(tmp_path: Path, url: str, rules: str, audit: str | None = None,
            tz: str = "Europe/Amsterdam") -> Any:
    os.environ["TEST_TARGET_URL"] = url
    audit = audit or f"sqlite:///{tmp_path}/audit.db"
    text = (f"policy: test\ntimezone: {tz}\nsources:\n  db:\n    adapter: sql\n"
            f"    url: ${{TEST_TARGET_URL}}\naudit:\n  url: {audit}\n"
            f"defaults:\n  source: db\n  max_fraction: 1.0\nrules:\n{rules}")
    return load_policy(write_policy(tmp_path, text))


def _events_around(cut: dt.datetime) -> list[dt.datetime]:
    """Instants right at, just before and just after a cutoff and some local midnights."""
    out = [cut + dt.timedelta(microseconds=d) for d in (-2, -1, 0, 1, 2)]
    out += [cut + dt.timedelta(hours=h) for h in (-25, -23, -1, 1, 23, 25)]
    out += [utc(2018, 8, 31, 21, 59, 59), utc(2018, 8, 31, 22, 0), utc(2018, 8, 28, 10),
            utc(2018, 8, 27, 22), utc(2018, 8, 27, 21, 59, 59, 999999), utc(2016, 2, 29, 12),
            utc(2019, 2, 28, 23), utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 1, 30)]
    return out


@pytest.mark.parametrize("phrase", [
    "6 months after happened plus 7 years",
    "3 months after happened",
    "1 year and 2 weeks after happened",
    "36 hours after happened",
    "until happened",
])
def test_run_deletes_exactly_the_due_rows(db_url: str, tmp_path: Path, phrase: str) -> None:
    """Every row due at the run's instant is deleted and audited; no other row is touched."""
    meta = sa.MetaData()
    table = sa.Table("things", meta, sa.Column("id", sa.Integer, primary_key=True,
                                               autoincrement=False),
                     sa.Column("happened_at", TS), sa.Column("kind", sa.String(10)))
    retain = parse(phrase)
    tz = calendar.zone("Europe/Amsterdam")
    cut = calendar.cutoff(AS_OF, retain, tz)
    instants = _events_around(cut) + _events_around(AS_OF)
    rows = [{"id": i, "happened_at": e.replace(tzinfo=None), "kind": "a"}
            for i, e in enumerate(instants, start=1)]
    rows.append({"id": 999, "happened_at": None, "kind": "a"})
    _create(db_url, table, rows={"things": rows})
    policy = _policy(tmp_path, db_url, f"  r:\n    table: things\n    retain: {phrase}\n"
                                       "    events: {happened: happened_at}\n    batch_size: 3\n")

    outcome = engine.run(policy, AS_OF)

    due = {r["id"] for r in rows[:-1]
           if calendar.due_at(r["happened_at"].replace(tzinfo=dt.UTC), retain, tz) <= AS_OF}
    assert outcome.rules[0].status is Status.OK
    assert outcome.rules[0].deleted == len(due)
    assert keys(db_url, "things") == {r["id"] for r in rows} - due
    assert sorted(r["key"]["id"] for r in audited(policy.audit_url)) == sorted(due)
    assert 0 < len(due) < len(rows) - 1


def _orders_and_lines() -> tuple[sa.Table, sa.Table]:
    """``orders`` (id, completed_at, status) and ``order_lines`` (id, order_id)."""
    meta = sa.MetaData()
    orders = sa.Table("orders", meta,
                      sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("completed_at", TS), sa.Column("status", sa.String(20)))
    lines = sa.Table("order_lines", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("order_id", sa.Integer))
    return orders, lines


def test_children_go_with_their_parent_and_are_counted(db_url: str, tmp_path: Path) -> None:
    """Order lines of a due order are deleted with it and audited under their own table."""
    orders, lines = _orders_and_lines()
    old, new = dt.datetime(2010, 1, 1), dt.datetime(2026, 2, 1)
    _create(db_url, orders, lines, rows={
        "orders": [{"id": 1, "completed_at": old, "status": "completed"},
                   {"id": 2, "completed_at": old, "status": "open"},
                   {"id": 3, "completed_at": new, "status": "completed"},
                   {"id": 4, "completed_at": old, "status": "completed"}],
        "order_lines": [{"id": i, "order_id": o} for i, o in
                        enumerate([1, 1, 2, 3, 4, 4, 4], start=1)],
    })
    policy = _policy(tmp_path, db_url, (
        "  orders:\n    table: orders\n    retain: 6 months after completion plus 7 years\n"
        "    events: {completion: completed_at}\n    where: {status: completed}\n"
        "    batch_size: 1\n    children:\n      - {table: order_lines, key: order_id}\n"))

    outcome = engine.run(policy, AS_OF)

    assert outcome.rules[0].deleted == 2
    assert outcome.rules[0].children == {"order_lines": 5}
    assert keys(db_url, "orders") == {2, 3}
    assert keys(db_url, "order_lines") == {3, 4}
    assert sorted(r["key"]["id"] for r in audited(policy.audit_url, "order_lines")) == [
        1, 2, 5, 6, 7]


def test_a_run_counts_children_batch_by_batch_and_a_dry_run_before(
        sqlite_url: str, tmp_path: Path) -> None:
    """A dry run counts the children of the due rows with one statement per child table;
    a run does not (its batches count them): the same figures, one scan fewer."""
    orders, lines = _orders_and_lines()
    old = dt.datetime(2010, 1, 1)
    _create(sqlite_url, orders, lines, rows={
        "orders": [{"id": i, "completed_at": old, "status": "completed"} for i in (1, 2)],
        "order_lines": [{"id": i, "order_id": o} for i, o in enumerate([1, 1, 2], start=1)],
    })
    policy = _policy(tmp_path, sqlite_url, (
        "  orders:\n    table: orders\n    retain: 6 months after completion plus 7 years\n"
        "    events: {completion: completed_at}\n"
        "    children:\n      - {table: order_lines, key: order_id}\n"
        "    max_fraction: 1.0\n"))
    counts: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT COUNT(*)") and \
                "order_lines" in statement.split("WHERE")[0]:
            counts.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", seen)
    try:
        dry = engine.run(policy, AS_OF, dry_run=True).rules[0]
        counted_dry = len(counts)
        real = engine.run(policy, AS_OF).rules[0]
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", seen)

    assert dry.children == real.children == {"order_lines": 3}
    assert counted_dry == 1 and len(counts) == 1


def test_where_filters_select_only_matching_rows(db_url: str, tmp_path: Path) -> None:
    """Lists, null and {not: null} filters are applied in the statement."""
    meta = sa.MetaData()
    table = sa.Table("tickets", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("closed_at", TS), sa.Column("state", sa.String(10)),
                     sa.Column("note", sa.String(10)), sa.Column("flag", sa.String(10)))
    old = dt.datetime(2020, 1, 1)
    states = ["done", "spam", "open", "done", "spam"]
    notes = [None, "x", None, "y", None]
    flags = ["a", "b", "c", None, "d"]
    _create(db_url, table, rows={"tickets": [
        {"id": i, "closed_at": old, "state": s, "note": n, "flag": f}
        for i, (s, n, f) in enumerate(zip(states, notes, flags, strict=True), start=1)]})
    policy = _policy(tmp_path, db_url, (
        "  t:\n    table: tickets\n    retain: 1 day after closed_at\n"
        "    where: {state: [done, spam], note: null, flag: {not: null}}\n"))

    engine.run(policy, AS_OF)

    assert keys(db_url, "tickets") == {2, 3, 4}


@pytest.mark.parametrize("where,gone", [
    ("{state: {not: done}}", {2, 3, 5, 6}),
    ("{state: {not: [done, spam]}}", {3, 5, 6}),
    ("{state: done}", {1, 4}),
    ("{state: [done, spam]}", {1, 2, 4}),
    ("{state: {not: null}}", {1, 2, 3, 4}),
    ("{state: null}", {5, 6}),
    ("{state: {not: Done}}", {2, 3, 5, 6, 1, 4}),
])
def test_where_not_selects_every_other_row_including_null(
        db_url: str, db_kind: str, tmp_path: Path, where: str, gone: set[int]) -> None:
    """{not: v} and {not: [v, w]} select the rows that {v} and [v, w] leave, NULL included:
    together they cover the table (as the database compares: MariaDB's collation here
    ignores case)."""
    meta = sa.MetaData()
    table = sa.Table("tickets", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("closed_at", TS), sa.Column("state", sa.String(10)))
    states = ["done", "spam", "open", "done", None, None]
    _create(db_url, table, rows={"tickets": [
        {"id": i, "closed_at": dt.datetime(2020, 1, 1), "state": s}
        for i, s in enumerate(states, start=1)]})
    policy = _policy(tmp_path, db_url, (
        f"  t:\n    table: tickets\n    retain: 1 day after closed_at\n    where: {where}\n"))
    if where == "{state: {not: Done}}" and db_kind == "mariadb":
        gone = {2, 3, 5, 6}

    engine.run(policy, AS_OF)

    assert keys(db_url, "tickets") == set(range(1, 7)) - gone


def test_composite_keys_are_batched_in_key_order(db_url: str, tmp_path: Path) -> None:
    """A two-column primary key is walked with keyset batches and audited as objects."""
    meta = sa.MetaData()
    table = sa.Table("logs", meta,
                     sa.Column("account", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("at", TS))
    rows = [{"account": a, "seq": s, "at": dt.datetime(2020 + (a + s) % 8, 1, 1)}
            for a in range(1, 6) for s in range(1, 6)]
    _create(db_url, table, rows={"logs": rows})
    policy = _policy(tmp_path, db_url, "  l:\n    table: logs\n    retain: 2 years after at\n"
                                       "    batch_size: 4\n")

    engine.run(policy, AS_OF)

    expected_gone = {(r["account"], r["seq"]) for r in rows if r["at"].year <= 2024}
    left = {(r["account"], r["seq"]) for r in table_rows(db_url, "logs", "account, seq")}
    assert left == {(r["account"], r["seq"]) for r in rows} - expected_gone
    assert {(r["key"]["account"], r["key"]["seq"]) for r in audited(policy.audit_url)} == \
        expected_gone


def test_anonymize_changes_due_rows_once(db_url: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """truncate_ip, null, redact, fixed and hash apply once; a second run changes nothing."""
    monkeypatch.setenv("TEST_HASH_KEY", "k3y")
    meta = sa.MetaData()
    table = sa.Table("visits", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("visited_at", TS), sa.Column("ip", sa.String(45)),
                     sa.Column("agent", sa.String(100)), sa.Column("email", sa.String(100)),
                     sa.Column("city", sa.String(100)), sa.Column("device", sa.String(100)))
    old, new = dt.datetime(2026, 2, 1), dt.datetime(2026, 3, 1, 11)
    ips = ["203.0.113.77", "2001:db8:1:2::7", "198.51.100.0", None, "10.1.2.3"]
    _create(db_url, table, rows={"visits": [
        {"id": i, "visited_at": old if i < 5 else new, "ip": ip, "agent": "Mozilla",
         "email": f"u{i}@example.org", "city": "Delft", "device": f"dev-{i}"}
        for i, ip in enumerate(ips, start=1)]})
    policy = _policy(tmp_path, db_url, (
        "  v:\n    table: visits\n    retain: 1 day after visited_at\n    batch_size: 2\n"
        "    action:\n      anonymize:\n        ip: truncate_ip\n        agent: null\n"
        "        email: redact\n        city: {fixed: somewhere}\n"
        "        device: {hash: TEST_HASH_KEY}\n"))

    first = engine.run(policy, AS_OF)
    after_first = table_rows(db_url, "visits", "id")
    second = engine.run(policy, AS_OF)

    assert first.rules[0].anonymized == 4
    assert second.rules[0].anonymized == 0
    assert table_rows(db_url, "visits", "id") == after_first
    by_id = {r["id"]: r for r in after_first}
    assert [by_id[i]["ip"] for i in range(1, 6)] == [
        "203.0.113.0", "2001:db8:1::", "198.51.100.0", None, "10.1.2.3"]
    assert by_id[1]["agent"] is None and by_id[5]["agent"] == "Mozilla"
    assert by_id[1]["email"] == "[redacted]" and by_id[1]["city"] == "somewhere"
    assert len(by_id[1]["device"]) == 64 and by_id[1]["device"] != by_id[2]["device"]
    assert by_id[5]["device"] == "dev-5"
    assert sorted(r["key"]["id"] for r in audited(policy.audit_url)) == [1, 2, 3, 4]


def test_max_fraction_stops_the_rule_before_any_change(db_url: str, tmp_path: Path) -> None:
    """A rule that would remove more than max_fraction of its table is stopped, untouched."""
    meta = sa.MetaData()
    table = sa.Table("notes", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("at", TS))
    _create(db_url, table, rows={"notes": [
        {"id": i, "at": dt.datetime(2020 if i < 8 else 2026, 1, 1)} for i in range(10)]})
    policy = _policy(tmp_path, db_url, "  n:\n    table: notes\n    retain: 1 year after at\n"
                                       "    max_fraction: 0.5\n")
    before = snapshot(db_url)

    outcome = engine.run(policy, AS_OF)

    assert outcome.rules[0].status is Status.STOPPED
    assert outcome.exit_code == 3
    assert "max_fraction" in (outcome.rules[0].error or "")
    assert snapshot(db_url) == before


def test_max_rows_stops_the_rule_and_a_lower_command_line_limit_wins(
        sqlite_url: str, tmp_path: Path) -> None:
    """max_rows from the policy and --max-rows both stop a run that would remove too much."""
    meta = sa.MetaData()
    table = sa.Table("notes", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("at", TS))
    _create(sqlite_url, table, rows={"notes": [{"id": i, "at": dt.datetime(2020, 1, 1)}
                                               for i in range(10)]})
    policy = _policy(tmp_path, sqlite_url, "  n:\n    table: notes\n"
                                           "    retain: 1 year after at\n    max_rows: 20\n")

    lowered = engine.run(policy, AS_OF, max_rows=5)
    assert lowered.rules[0].status is Status.STOPPED
    assert len(keys(sqlite_url, "notes")) == 10
    allowed = engine.run(policy, AS_OF)
    assert allowed.rules[0].status is Status.OK and allowed.rules[0].deleted == 10


def test_date_and_aware_event_columns_use_the_local_calendar(
        postgres_url: str, tmp_path: Path) -> None:
    """DATE columns are local dates; timestamptz columns are instants."""
    meta = sa.MetaData()
    table = sa.Table("d", meta, sa.Column("id", sa.Integer, primary_key=True,
                                          autoincrement=False),
                     sa.Column("day", sa.Date), sa.Column("at", sa.DateTime(timezone=True)))
    # 2026-02-28 is the last local date due at AS_OF for "1 day after".
    _create(postgres_url, table, rows={"d": [
        {"id": 1, "day": dt.date(2026, 2, 27), "at": utc(2026, 2, 27, 22, 59, 59, 999999)},
        {"id": 2, "day": dt.date(2026, 2, 28), "at": utc(2026, 2, 27, 23, 0)},
    ]})
    by_day = _policy(tmp_path, postgres_url, "  r:\n    table: d\n    retain: 1 day after day\n")
    report_cut = engine.run(by_day, AS_OF, dry_run=True)
    assert report_cut.rules[0].due == 1
    by_at = _policy(tmp_path, postgres_url, "  r:\n    table: d\n    retain: 1 day after at\n")
    assert engine.run(by_at, AS_OF, dry_run=True).rules[0].due == 1
    assert engine.run(by_at, AS_OF).rules[0].deleted == 1
    assert keys(postgres_url, "d") == {2}


def test_dry_run_changes_nothing_and_writes_no_audit(db_url: str, tmp_path: Path) -> None:
    """--dry-run counts what is due and leaves data and audit store alone."""
    meta = sa.MetaData()
    table = sa.Table("notes", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("at", TS))
    _create(db_url, table, rows={"notes": [{"id": i, "at": dt.datetime(2020 + i, 1, 1)}
                                           for i in range(8)]})
    policy = _policy(tmp_path, db_url, "  n:\n    table: notes\n    retain: 1 year after at\n")
    before = snapshot(db_url)

    outcome = engine.run(policy, AS_OF, dry_run=True)

    assert outcome.rules[0].due == 6 and outcome.rules[0].deleted == 0
    assert snapshot(db_url) == before
    assert not (tmp_path / "audit.db").exists()


@pytest.mark.parametrize("wall, due", [
    ("2025-10-26 02:15:00", True),   # 00:15Z (first pass): due
    ("2025-10-26 02:45:00", True),   # 00:45Z (first pass): due, though later on the wall
    ("2025-10-26 03:00:00", False),  # 02:00Z: not yet
    ("2025-10-26 01:59:00", True),
])
def test_naive_local_cutoff_in_the_repeated_hour_selects_the_first_pass(
        db_url: str, tmp_path: Path, wall: str, due: bool) -> None:
    """A naive local time in the autumn hour is its first occurrence; a cutoff in the second
    pass (02:30 CET = 01:30Z) makes the whole first pass due, also on PostgreSQL/MariaDB."""
    meta = sa.MetaData()
    table = sa.Table("hits", meta, sa.Column("id", sa.Integer, primary_key=True,
                                             autoincrement=False), sa.Column("seen_at", TS))
    _create(db_url, table, rows={"hits": [
        {"id": 1, "seen_at": dt.datetime.fromisoformat(wall)},
        {"id": 2, "seen_at": dt.datetime(2025, 10, 27)}]})
    os.environ["TEST_TARGET_URL"] = db_url
    policy = load_policy(write_policy(tmp_path, (
        "policy: test\ntimezone: Europe/Amsterdam\nsources:\n  db:\n    adapter: sql\n"
        "    url: ${TEST_TARGET_URL}\n    naive_timestamps: local\n"
        f"audit:\n  url: sqlite:///{tmp_path}/audit.db\n"
        "rules:\n  hits:\n    source: db\n    table: hits\n    retain: 1 hour after seen_at\n"
        "    max_fraction: 1.0\n")))

    outcome = engine.run(policy, utc(2025, 10, 26, 2, 30))  # cutoff 01:30Z = 02:30 CET

    assert outcome.rules[0].deleted == int(due)
    assert keys(db_url, "hits") == ({2} if due else {1, 2})
