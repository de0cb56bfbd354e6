"""End to end: each example policy enforces its privacy statement's promises exactly."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from retention.adapters import anonymize
from retention.policies import examples

from retention import calendar
from retention.audit.store import AuditStore
from retention.db import create_engine
from retention.policy.load import load_policy
from retention.policy.rules import Rule
from retention.run import engine
from tests.support import snapshot

NOW = dt.datetime(2026, 11, 3, 9, 30, tzinfo=dt.UTC)


def _prepare(url: str, name: str, fill: Callable[..., None]) -> None:
    target = create_engine(url)
    try:
        examples.create_schema(target, name)
        fill(target, NOW)
    finally:
        target.dispose()


def _instant(value: Any) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _expected(rows: list[dict[str, Any]], rule: Rule, tz: str) -> list[dict[str, Any]]:
    """The rows a correct run must touch: the forward due function applied row by row."""
    zone = calendar.zone(tz)
    due = []
    for row in rows:
        event = row[rule.event_column]
        if event is None or any(row[f.column] not in f.values for f in rule.filters):
            continue
        if calendar.due_at(_instant(event), rule.retain, zone) <= NOW:
            due.append(row)
    return due


def _key(row: dict[str, Any], pk: list[str]) -> tuple[Any, ...]:
    return tuple(row[c] for c in pk)


@pytest.mark.parametrize("name,fill,env", [
    ("webshop", examples.fill_webshop, "SHOP_DATABASE_URL"),
    ("saas", examples.fill_saas, "SAAS_DATABASE_URL"),
])
def test_example_policy_enforces_every_rule_exactly(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
        fill: Callable[..., None], env: str) -> None:
    """Every rule deletes or anonymizes exactly its due rows, audits each, and only once."""
    monkeypatch.setenv(env, db_url)
    monkeypatch.setenv("RETENTION_AUDIT_URL", f"sqlite:///{tmp_path}/audit.db")
    monkeypatch.setenv("SAAS_HASH_KEY", "example-key")
    _prepare(db_url, name, fill)
    policy = load_policy(examples.policy_path(name))
    before = snapshot(db_url)
    inspector_engine = create_engine(db_url)
    pks = {t: sa.inspect(inspector_engine).get_pk_constraint(t)["constrained_columns"]
           for t in before}
    inspector_engine.dispose()

    outcome = engine.run(policy, NOW)

    after = snapshot(db_url)
    store = AuditStore(policy.audit_url)
    records = [{**r, "key": json.loads(r["record_key"])} for r in store.records()]
    assert store.verify().ok
    store.close()
    assert outcome.exit_code == 0, [r.error for r in outcome.rules]
    for rule, result in zip(policy.rules, outcome.rules, strict=True):
        assert rule.table is not None
        pk = pks[rule.table]
        due = _expected(before[rule.table], rule, policy.timezone)
        left = {_key(r, pk) for r in after[rule.table]}
        audited = [tuple(r["key"][c] for c in pk) for r in records
                   if r["rule"] == rule.name and r["table_name"] == rule.table]
        if rule.action.columns:
            changed = {_key(r, pk) for r in due if any(
                not anonymize.same(r[a.column], anonymize.apply(a, r[a.column]))
                for a in rule.action.columns)}
            assert sorted(audited) == sorted(changed), rule.name
            assert result.anonymized == len(changed)
            now_rows = {_key(r, pk): r for r in after[rule.table]}
            for key in changed:
                for a in rule.action.columns:
                    value = now_rows[key][a.column]
                    assert anonymize.same(value, anonymize.apply(a, value)), (rule.name, key)
        else:
            gone = {_key(r, pk) for r in due}
            assert left == {_key(r, pk) for r in before[rule.table]} - gone, rule.name
            assert sorted(audited) == sorted(gone), rule.name
            assert result.deleted == len(gone)
            for child in rule.children:
                kept_parents = {k[0] for k in left}
                assert all(r[child.key] in kept_parents for r in after[child.table])
                child_gone = [r for r in before[child.table] if r[child.key] not in kept_parents]
                assert result.children.get(child.table, 0) == len(child_gone)
        assert result.deleted + result.anonymized > 0, f"{rule.name}: the demo data has none due"

    again = engine.run(policy, NOW)
    assert all(r.deleted == r.anonymized == 0 for r in again.rules)
    assert snapshot(db_url) == after


def test_webshop_report_shows_the_spec_cutoff(sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    """As of 2026-02-28T12:00Z, orders completed up to 2018-08-27 (Amsterdam) are due."""
    from retention.report import build as report

    monkeypatch.setenv("SHOP_DATABASE_URL", sqlite_url)
    _prepare(sqlite_url, "webshop", examples.fill_webshop)
    policy = load_policy(examples.policy_path("webshop"))
    data = report.build(policy, dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC))
    orders = next(r for r in data["rules"] if r["rule"] == "orders")
    assert orders["cutoff"] == "2018-08-27T21:59:59.999999+00:00"
