"""`audit export --since --until --rule` and a readable `audit show RUN_ID`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from retention.adapters.protocol import AffectedRow

from retention import cli
from retention.audit import records
from retention.audit.runview import run_view
from retention.audit.store import AuditStore, RunInfo
from retention.policy.load import load_policy
from retention.policy.rules import Policy
from retention.run import engine
from tests.support import utc, write_policy

AS_OF = utc(2026, 3, 1, 12)


def shop(tmp_path: Path, url: str) -> Policy:
    """Orders 1..2 and visits 1..3, all due at AS_OF; visit 4 only from LATER."""
    meta = sa.MetaData()
    orders = sa.Table("orders", meta, sa.Column("id", sa.Integer, primary_key=True,
                                                autoincrement=False),
                      sa.Column("completed_at", sa.DateTime))
    visits = sa.Table("visits", meta, sa.Column("id", sa.Integer, primary_key=True,
                                                autoincrement=False),
                      sa.Column("visited_at", sa.DateTime), sa.Column("ip", sa.String(64)))
    eng = sa.create_engine(url)
    meta.create_all(eng)
    with eng.begin() as conn:
        conn.execute(orders.insert(), [{"id": i, "completed_at": dt.datetime(2010, 1, i)}
                                       for i in (1, 2)])
        conn.execute(visits.insert(), [
            {"id": i, "visited_at": dt.datetime(2026, 2, i) if i < 4
             else dt.datetime(2026, 3, 5), "ip": f"192.0.2.{i}"} for i in (1, 2, 3, 4)])
    eng.dispose()
    os.environ["SHOW_TEST_URL"] = url
    return load_policy(write_policy(tmp_path, (
        "policy: show\nsources:\n  db: {adapter: sql, url: '${SHOW_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        "defaults: {source: db, max_fraction: 1.0, batch_size: 2}\n"
        "rules:\n  orders:\n    table: orders\n    retain: 1 year after completed_at\n"
        "  visit-ip:\n    table: visits\n    retain: 1 day after visited_at\n"
        "    action:\n      anonymize: {ip: truncate_ip}\n")))


def retention(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.main(list(args))
    return int(exited.value.code or 0), capsys.readouterr().out


def test_export_until_and_rule_select_exactly_those_records(
        tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    policy = shop(tmp_path, sqlite_url)
    first = engine.run(policy, AS_OF)
    between = dt.datetime.now(dt.UTC).isoformat()
    second = engine.run(policy, utc(2026, 3, 10))
    path = str(policy.path)

    code, out = retention(capsys, "audit", "export", path, "--until", between)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert {r["run_id"] for r in lines} == {first.run_id}
    assert len(lines) == 2 + 3

    code, out = retention(capsys, "audit", "export", path, "--rule", "visit-ip")
    assert sorted((r["key"]["id"], r["action"]) for r in map(json.loads, out.splitlines())) \
        == [(1, "anonymize"), (2, "anonymize"), (3, "anonymize"), (4, "anonymize")]

    code, out = retention(capsys, "audit", "export", path, "--rule", "visit-ip",
                          "--since", between, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["run_id"], r["table"], json.loads(r["key"])) for r in rows] == [
        (second.run_id, "visits", {"id": 4})]


def test_export_until_not_after_since_is_bad_input(
        tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    policy = shop(tmp_path, sqlite_url)
    engine.run(policy, AS_OF)
    code, _ = retention(capsys, "audit", "export", str(policy.path),
                        "--since", "2026-03-01T00:00:00Z", "--until", "2026-02-01T00:00:00Z")
    assert code == 2


def test_audit_show_reads_as_tables_of_the_run_rules_and_batches(
        tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    policy = shop(tmp_path, sqlite_url)
    run = engine.run(policy, AS_OF)

    code, out = retention(capsys, "audit", "show", str(policy.path), run.run_id)

    assert code == 0
    for title in ("Rules", "Batches", run.run_id):
        assert title in out
    rules = out[out.index("Rules"):out.index("Batches")]
    assert "orders" in rules and "visit-ip" in rules and "anonymize" in rules
    batches = out[out.index("Batches"):]
    assert batches.count("committed") == 3  # orders: 2; visits: 2 + 1
    assert "visits 2" in batches and "visits 1" in batches and "orders 2" in batches

    code, out = retention(capsys, "audit", "show", str(policy.path), run.run_id,
                          "--format", "json")
    data = json.loads(out)
    assert [b["records"] for b in data["batches"]] == [
        {"orders": 2}, {"visits": 2}, {"visits": 1}]
    assert len(data["records"]) == 5 and data["errors"] == []


def test_run_view_names_rolled_back_batches_and_errors(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path}/audit.db")
    try:
        store.start_run(RunInfo("r1", "p", "1", "0" * 64, "run", AS_OF))
        row = AffectedRow("orders", {"id": 1}, "delete", utc(2010, 1, 1), utc(2011, 1, 2))
        removed, reading = records.from_rows([row]), records.Reading("completed_at", "aware",
                                                                    None, "", "UTC",
                                                                    "1 year after completion")
        store.append(store.batch_entries("r1", "orders", "db", "b1", removed, reading,
                                         committed=True))
        store.append(store.batch_entries("r1", "orders", "db", "b2", removed, reading,
                                         committed=False))
        store.append([store.mark("r1", "orders", "b2", "batch_rolled_back")])
        store.finish_run("r1", "failed", [
            {"rule": "orders", "status": "failed", "deleted": 1, "recovered": 0,
             "error": "OperationalError"}])
        view = run_view(store, "r1")
        assert run_view(store, "nope") is None
    finally:
        store.close()
    assert view is not None
    assert [(b["batch_id"], b["status"], b["records"]) for b in view["batches"]] == [
        ("b1", "committed", {"orders": 1}), ("b2", "rolled back", {})]
    assert view["errors"] == [{"rule": "orders", "status": "failed",
                               "error": "OperationalError"}]
