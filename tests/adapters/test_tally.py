"""One scan per rule: ``SqlAdapter.count`` gives exactly the figures of the separate statements.

``count`` reads a rule's table once (``sql_counts.tally``: every figure a
``count(CASE WHEN ... THEN 1 END)``) instead of one statement per figure and per
look-ahead plan. Its answer must be what the one-figure statements (``count_due``,
``count_held``, ``count_unreadable``, ``count_blocked``, ``count(*)``, and
``count_due`` of each later plan) count on the same rows: due now and its oldest
event, held, unreadable, blocked per referencing table, total, and due under each
later plan, whatever the rows (exactly at a cutoff, a microsecond either side,
NULL, no instant, filtered out, held now but not later, referenced, already
anonymized), on every database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from retention.adapters import sql_counts as q
from retention.adapters.protocol import DueCount
from retention.adapters.sql import SqlAdapter
from sqlalchemy.dialects import mysql

from retention.plan import Plan
from retention.policy.load import load_policy
from retention.policy.rules import Policy, Rule
from retention.run import engine
from tests.support import write_policy

AS_OF = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
LATER = (7, 30, 90)  # days ahead, as the report looks
HELD_NOW = (2, 3)  # ids held at AS_OF only (a hold that ends before the horizons)
HELD_ALWAYS = (4,)
RULES = """\
  items:
    table: items
    retain: 30 days after at
    where: {status: done}
    children:
      - {table: parts, key: item_id}
  visits:
    table: visits
    retain: 1 day after at
    action:
      anonymize: {ip: truncate_ip, agent: null}
"""


def _schema(kind: str) -> tuple[sa.MetaData, dict[str, sa.Table]]:
    when = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    meta = sa.MetaData()
    tables = {
        "items": sa.Table("items", meta, sa.Column("id", sa.Integer, primary_key=True,
                                                   autoincrement=False),
                          sa.Column("at", when), sa.Column("status", sa.String(10))),
        "parts": sa.Table("parts", meta, sa.Column("id", sa.Integer, primary_key=True,
                                                   autoincrement=False),
                          sa.Column("item_id", sa.Integer, nullable=False)),
        # an undeclared reference into items: the rows it references are kept (blocked)
        "notes": sa.Table("notes", meta, sa.Column("id", sa.Integer, primary_key=True,
                                                   autoincrement=False),
                          sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"))),
        "visits": sa.Table("visits", meta, sa.Column("id", sa.Integer, primary_key=True,
                                                     autoincrement=False),
                           sa.Column("at", when), sa.Column("ip", sa.String(45)),
                           sa.Column("agent", sa.String(40))),
    }
    return meta, tables


def _held(as_of: dt.datetime) -> engine.HeldKeys:
    def lookup(rule: Rule, primary_key: tuple[str, ...]) -> tuple[tuple[Any, ...], ...]:
        ids = HELD_ALWAYS + (HELD_NOW if as_of == AS_OF else ())
        return tuple((i,) for i in ids) if rule.name == "items" else ()
    return lookup


def _expected(adapter: SqlAdapter, plan: Plan, later: tuple[Plan, ...]) -> DueCount:
    """The figures from one statement each, as before the one scan."""
    table = adapter.table(plan.table)
    dialect = adapter.dialect
    with adapter.engine.connect() as conn:
        due, oldest = conn.execute(q.count_due(table, plan, dialect)).one()
        blocking = q.count_blocked(table, plan, dialect)
        return DueCount(
            due=due, held=conn.execute(q.count_held(table, plan, dialect)).scalar_one(),
            total=conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one(),
            oldest_due_event=q.sql_events.oldest_instant(plan, oldest),
            children={c.table: conn.execute(q.count_children(
                table, adapter.table(c.table), c.key, plan, dialect)).scalar_one()
                for c in plan.children},
            blocked={} if blocking is None else dict(conn.execute(blocking).one()._mapping),
            unreadable=conn.execute(q.count_unreadable(table, plan, dialect)).scalar_one(),
            due_ahead=tuple(conn.execute(q.count_due(table, p, dialect)).one()[0]
                            for p in later),
        )


def _policy(tmp_path: Path, url: str) -> Policy:
    return load_policy(write_policy(tmp_path, (
        f"policy: tally\nsources:\n  db: {{adapter: sql, url: '{url}'}}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        f"defaults:\n  source: db\n  max_fraction: 1.0\nrules:\n{RULES}")))


# An event at or around one of the cutoffs (now and each horizon), or none at all.
_OFFSETS = [dt.timedelta(days=-1), dt.timedelta(microseconds=-1), dt.timedelta(0),
            dt.timedelta(microseconds=1), dt.timedelta(days=1)]
_event = st.one_of(st.none(), st.tuples(st.integers(0, len(LATER)), st.sampled_from(_OFFSETS)))
_item = st.tuples(_event, st.sampled_from(["done", "open", None]), st.booleans(),
                  st.integers(0, 2))
_visit = st.tuples(_event, st.sampled_from(["10.1.2.3", "10.1.2.0", None]),
                   st.sampled_from(["curl", None]))


@pytest.fixture
def target(db_url: str, tmp_path: Path, make_engine: Callable[..., sa.Engine]
           ) -> tuple[sa.Engine, dict[str, sa.Table], Policy, dict[str, tuple[Plan, ...]]]:
    eng = make_engine(db_url)
    kind = eng.dialect.name
    meta, tables = _schema(kind)
    meta.create_all(eng)
    policy = _policy(tmp_path, db_url)
    with engine.Session(policy) as session:
        instants = [AS_OF, *(AS_OF + dt.timedelta(days=d) for d in LATER)]
        compiled = [engine.compile_plans(session, policy.rules, at, _held(at))[0]
                    for at in instants]
    plans = {r.name: tuple(c[r.name] for c in compiled) for r in policy.rules}
    return eng, tables, policy, plans


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(items=st.lists(_item, max_size=12), visits=st.lists(_visit, max_size=6))
def test_one_scan_counts_what_each_figures_own_statement_counts(
        target: tuple[sa.Engine, dict[str, sa.Table], Policy, dict[str, tuple[Plan, ...]]],
        items: list[tuple[Any, ...]], visits: list[tuple[Any, ...]]) -> None:
    eng, tables, policy, plans = target

    def at(event: tuple[int, dt.timedelta] | None, plan_of: str) -> dt.datetime | None:
        if event is None:
            return None
        horizon, offset = event
        return (plans[plan_of][horizon].cutoff + offset).replace(tzinfo=None)

    with eng.begin() as conn:
        for name in ("notes", "parts", "items", "visits"):
            conn.execute(tables[name].delete())
        if items:
            conn.execute(tables["items"].insert(), [
                {"id": i, "at": at(event, "items"), "status": status}
                for i, (event, status, _, _) in enumerate(items, 1)])
            notes = [{"id": i, "item_id": i} for i, (_, _, noted, _) in enumerate(items, 1)
                     if noted]
            if notes:
                conn.execute(tables["notes"].insert(), notes)
            parts = [{"id": 10 * i + n, "item_id": i}
                     for i, (_, _, _, count) in enumerate(items, 1) for n in range(count)]
            if parts:
                conn.execute(tables["parts"].insert(), parts)
        if visits:
            conn.execute(tables["visits"].insert(), [
                {"id": i, "at": at(event, "visits"), "ip": ip, "agent": agent}
                for i, (event, ip, agent) in enumerate(visits, 1)])

    adapter = SqlAdapter(policy.sources["db"])
    try:
        for rule in policy.rules:
            now, *later = plans[rule.name]
            assert adapter.count(now, tuple(later)) == _expected(adapter, now, tuple(later))
            assert adapter.count(now).due_ahead == ()
    finally:
        adapter.close()


def test_the_one_scan_counts_values_that_are_no_instant_as_unreadable(
        db_url: str, db_kind: str, target: Any) -> None:
    """Stored values outside the calendar never count as due, only as unreadable."""
    eng, tables, policy, plans = target
    if db_kind == "postgresql":
        odd = ["-infinity", "infinity"]
    elif db_kind == "sqlite":
        odd = ["not a date", "2026-13-45 10:00:00"]
    else:  # MariaDB: zero dates, where the session allows them
        odd = ["0000-00-00 00:00:00", "2020-00-10 00:00:00"]
    with eng.begin() as conn:
        if db_kind == "mariadb":
            conn.exec_driver_sql("SET SESSION sql_mode = ''")
        for i, value in enumerate(odd, 1):
            conn.exec_driver_sql(f"INSERT INTO items (id, at, status) VALUES ({i}, '{value}', "
                                 "'done')")
        conn.execute(tables["items"].insert(), [{"id": 9, "at": dt.datetime(2000, 1, 1),
                                                 "status": "done"}])
    adapter = SqlAdapter(policy.sources["db"])
    try:
        now, *later = plans["items"]
        found = adapter.count(now, tuple(later))
        assert found == _expected(adapter, now, tuple(later))
        assert (found.due, found.unreadable, found.total, found.due_ahead) == (1, 2, 3,
                                                                               (1, 1, 1))
    finally:
        adapter.close()
