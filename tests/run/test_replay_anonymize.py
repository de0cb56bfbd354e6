"""replay covers anonymization: restored rows whose anonymization was recorded are
anonymized again, with the exactness of deletions (same key and event instant, still
selected by the rule, holds win)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from retention.audit.store import AuditStore
from retention.policy.load import load_policy
from retention.policy.rules import Policy
from retention.run import engine, holds
from retention.run.replay import replay
from tests.support import audited, snapshot, table_rows, write_policy

AS_OF = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
SINCE = "2000-01-01T00:00:00.000000+00:00"
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
OLD = dt.datetime(2025, 1, 1, 10)
RECENT = dt.datetime(2026, 3, 1, 11)


def visits(url: str) -> sa.Table:
    return sa.Table("visits", sa.MetaData(),
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("visited_at", TS), sa.Column("ip", sa.String(64)))


def setup(url: str, tmp_path: Path) -> Policy:
    """Visits 1..4 due (a day old), 5 not; the rule truncates their IP addresses."""
    table = visits(url)
    eng = sa.create_engine(url)
    table.metadata.create_all(eng)
    with eng.begin() as conn:
        conn.execute(table.insert(), [
            {"id": i, "visited_at": OLD if i < 5 else RECENT, "ip": f"192.0.2.{10 + i}"}
            for i in range(1, 6)])
    eng.dispose()
    os.environ["VISITS_TEST_URL"] = url
    return load_policy(write_policy(tmp_path, (
        "policy: visits\nsources:\n  db: {adapter: sql, url: '${VISITS_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        "rules:\n  visit-ip:\n    source: db\n    table: visits\n"
        "    retain: 1 day after visited_at\n    max_fraction: 1.0\n"
        "    action:\n      anonymize: {ip: truncate_ip}\n")))


def put_back(url: str, rows: list[dict[str, object]]) -> None:
    """A restore: the rows as they were in the backup, in place of what is there now."""
    table = visits(url)
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        conn.execute(table.delete().where(table.c.id.in_([r["id"] for r in rows])))
        conn.execute(table.insert(), rows)
    eng.dispose()


def ips(url: str) -> dict[int, str]:
    return {r["id"]: r["ip"] for r in table_rows(url, "visits", "id")}


def test_replay_anonymizes_restored_records_again_and_leaves_the_others_alone(
        db_url: str, tmp_path: Path) -> None:
    policy = setup(db_url, tmp_path)
    backup = {r["id"]: r for r in snapshot(db_url)["visits"]}
    first = engine.run(policy, AS_OF)
    assert first.rules[0].anonymized == 4
    assert ips(db_url)[1] == "192.0.2.0"
    reused = {**backup[2], "visited_at": OLD - dt.timedelta(days=3)}  # another record, key 2
    put_back(db_url, [backup[1], reused, backup[3], backup[4]])
    store = AuditStore(policy.audit_url)
    holds.add(store, "visits", "visit-ip", {"id": 3}, "court case", by="dpo")
    before = snapshot(db_url)

    looked = replay(policy, store, SINCE, apply=False, as_of=AS_OF)
    assert snapshot(db_url) == before
    applied = replay(policy, store, SINCE, apply=True, as_of=AS_OF)

    left = {"visits": {"held": 1, "reused_key": 1}}
    assert looked["rules"][0]["restored"] == {"visits": 2}
    assert looked["rules"][0]["left_alone"] == left
    assert applied["status"] == "ok"
    assert applied["rules"][0]["anonymized"] == {"visits": 2}
    assert applied["rules"][0]["deleted"] == {"visits": 0}
    assert applied["rules"][0]["left_alone"] == left
    assert ips(db_url) == {1: "192.0.2.0", 2: "192.0.2.12", 3: "192.0.2.13",
                           4: "192.0.2.0", 5: "192.0.2.15"}
    replayed = [r for r in audited(policy.audit_url) if r["run_id"] == applied["run_id"]]
    assert sorted((r["key"]["id"], r["action"]) for r in replayed) == [
        (1, "anonymize"), (4, "anonymize")]
    assert all(json.loads(r["detail"])["replay_of"] == first.run_id for r in replayed)
    assert store.verify().ok

    again = replay(policy, store, SINCE, apply=True, as_of=AS_OF)
    assert again["rules"][0]["anonymized"] == {"visits": 0}
    store.close()
