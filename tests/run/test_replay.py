"""replay: deletions are applied again to rows a restore from backup brought back."""

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
from tests.support import audited, keys, orders_with_lines, snapshot, table_rows, write_policy

AS_OF = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
SINCE = "2000-01-01T00:00:00.000000+00:00"


def _setup(url: str, tmp_path: Path) -> Policy:
    return orders_with_lines(
        url, tmp_path, [dt.datetime(2015 + i // 4, 1, 1) for i in range(1, 11)], 3)


def _restore(url: str, backup: dict[str, list[dict[str, object]]]) -> None:
    """Put back every row of the backup that is missing (as a restore would)."""
    eng = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(eng)
    with eng.begin() as conn:
        for name, rows in backup.items():
            if name.startswith("retention_") or name not in meta.tables:
                continue
            here = {r["id"] for r in table_rows(url, name, "id")}
            missing = [r for r in rows if r["id"] not in here]
            if missing:
                conn.execute(meta.tables[name].insert(), missing)
    eng.dispose()


def test_replay_deletes_restored_rows_again_except_held_ones(db_url: str,
                                                             tmp_path: Path) -> None:
    """Report first, change nothing; --apply deletes the restored rows once, holds win."""
    policy = _setup(db_url, tmp_path)
    backup = snapshot(db_url)
    first = engine.run(policy, AS_OF)
    gone = set(range(1, 11)) - keys(db_url, "orders")
    assert first.rules[0].deleted == len(gone) > 3
    _restore(db_url, backup)
    assert keys(db_url, "orders") == set(range(1, 11))
    store = AuditStore(policy.audit_url)
    held = min(gone)
    holds.add(store, "orders", "orders", {"id": held}, "restored for a court case", by="dpo")
    before = snapshot(db_url)

    looked = replay(policy, store, SINCE, apply=False, as_of=AS_OF)
    assert looked["rules"][0]["restored"] == {"orders": len(gone) - 1,
                                               "lines": 2 * (len(gone) - 1)}
    assert snapshot(db_url) == before

    applied = replay(policy, store, SINCE, apply=True, as_of=AS_OF)
    assert applied["status"] == "ok"
    assert applied["rules"][0]["deleted"] == {"orders": len(gone) - 1,
                                              "lines": 2 * (len(gone) - 1)}
    assert keys(db_url, "orders") == (set(range(1, 11)) - gone) | {held}
    assert {r["order_id"] for r in table_rows(db_url, "lines", "id")} == keys(db_url, "orders")
    replayed = [r for r in audited(policy.audit_url) if r["run_id"] == applied["run_id"]]
    assert len(replayed) == 3 * (len(gone) - 1)
    assert all(json.loads(r["detail"])["replay_of"] == first.run_id for r in replayed)
    assert store.verify().ok

    again = replay(policy, store, SINCE, apply=True, as_of=AS_OF)
    assert again["rules"][0]["deleted"] == {"orders": 0, "lines": 0}
    store.close()


def test_replay_command_reports_and_refuses_a_missing_store(sqlite_url: str,
                                                            tmp_path: Path) -> None:
    """The CLI lists restored rows; without an audit store it exits 2."""
    import subprocess
    import sys

    policy = _setup(sqlite_url, tmp_path)
    exe = str(Path(sys.executable).with_name("retention"))
    path = str(tmp_path / "policy.yaml")
    missing = subprocess.run([exe, "replay", path, "--since", "2020-01-01"],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "no audit store" in missing.stderr
    backup = snapshot(sqlite_url)
    engine.run(policy, AS_OF)
    _restore(sqlite_url, backup)
    eng = sa.create_engine(sqlite_url)
    with eng.begin() as conn:  # order 1 is now another record with the same key
        conn.execute(sa.text("UPDATE orders SET done_at = '2014-01-01 00:00:00.000000' "
                             "WHERE id = 1"))
    eng.dispose()
    shown = subprocess.run([exe, "replay", path, "--since", "2020-01-01", "--format", "json"],
                           capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    rule = json.loads(shown.stdout)["rules"][0]
    assert rule["restored"]["orders"] > 0
    assert rule["left_alone"] == {"lines": {"parent_kept": 2}, "orders": {"reused_key": 1}}
    table = subprocess.run([exe, "replay", path, "--since", "2020-01-01"],
                           capture_output=True, text=True, check=False)
    assert table.returncode == 0, table.stderr
    assert "left alone" in table.stdout and "reused_key 1" in table.stdout
    assert "parent_kept 2" in table.stdout


# -- replay is exact: only the recorded record, only while the rule selects it ----------

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
DONE = dt.datetime(2016, 3, 4, 5, 6, 7, 890123)  # every seeded order: due at AS_OF


def _shop(url: str, tmp_path: Path) -> Policy:
    """Orders 1-8 completed long ago (due), 9 recent; two lines each; rule keeps completed
    orders '1 year after done_at' with their lines."""
    meta = sa.MetaData()
    orders = sa.Table("orders", meta,
                      sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("done_at", TS), sa.Column("status", sa.String(12)))
    lines = sa.Table("lines", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("order_id", sa.Integer))
    eng = sa.create_engine(url)
    meta.create_all(eng)
    with eng.begin() as conn:
        conn.execute(orders.insert(), [
            {"id": i, "done_at": DONE if i < 9 else dt.datetime(2026, 2, 1),
             "status": "completed"} for i in range(1, 10)])
        conn.execute(lines.insert(), [{"id": i, "order_id": (i + 1) // 2}
                                      for i in range(1, 19)])
    eng.dispose()
    os.environ["ORDERS_TEST_URL"] = url
    return load_policy(write_policy(tmp_path, (
        "policy: orders\nsources:\n  db: {adapter: sql, url: '${ORDERS_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        "rules:\n  orders:\n    table: orders\n    retain: 1 year after done_at\n"
        "    where: {status: completed}\n    max_fraction: 1.0\n    batch_size: 3\n"
        "    children:\n      - {table: lines, key: order_id}\n")))


def _put(url: str, table: str, rows: list[dict[str, object]]) -> None:
    eng = sa.create_engine(url)
    reflected = sa.Table(table, sa.MetaData(), autoload_with=eng)
    with eng.begin() as conn:
        conn.execute(reflected.insert(), rows)
    eng.dispose()


def test_replay_deletes_only_the_recorded_records_the_rule_still_selects(
        db_url: str, tmp_path: Path) -> None:
    """SPEC §4.7: a new row reusing a key, a row the rule no longer selects and a held row
    stay, with their children; the recorded records and orphaned children go again."""
    policy = _shop(db_url, tmp_path)
    backup = snapshot(db_url)
    engine.run(policy, AS_OF)
    assert keys(db_url, "orders") == {9}
    old = {r["id"]: r for r in backup["orders"]}
    restored = [old[i] for i in (1, 3, 5, 6, 7, 8)]
    restored[1] = {**old[3], "status": "disputed"}  # the rule no longer selects order 3
    new_two = {"id": 2, "done_at": DONE + dt.timedelta(seconds=1), "status": "completed"}
    _put(db_url, "orders", [*restored, new_two])  # order 4 is not restored
    _put(db_url, "lines", [r for r in backup["lines"] if r["order_id"] != 9])
    store = AuditStore(policy.audit_url)
    holds.add(store, "orders", "orders", {"id": 5}, "court case", by="dpo")
    before = snapshot(db_url)

    looked = replay(policy, store, SINCE, apply=False, as_of=AS_OF)
    assert snapshot(db_url) == before
    applied = replay(policy, store, SINCE, apply=True, as_of=AS_OF)

    left = {"orders": {"reused_key": 1, "not_selected": 1, "held": 1},
            "lines": {"parent_kept": 4, "held": 2}}
    assert looked["rules"][0]["restored"] == {"orders": 4, "lines": 10}
    assert looked["rules"][0]["left_alone"] == left
    assert applied["status"] == "ok"
    assert applied["rules"][0]["deleted"] == {"orders": 4, "lines": 10}
    assert applied["rules"][0]["left_alone"] == left
    assert keys(db_url, "orders") == {2, 3, 5, 9}
    assert keys(db_url, "lines") == {3, 4, 5, 6, 9, 10, 17, 18}
    assert table_rows(db_url, "orders", "id")[0] == new_two
    replayed = [r for r in audited(policy.audit_url) if r["run_id"] == applied["run_id"]]
    assert sorted((r["table_name"], r["key"]["id"]) for r in replayed) == sorted(
        [("orders", i) for i in (1, 6, 7, 8)]
        + [("lines", i) for i in (1, 2, 7, 8, 11, 12, 13, 14, 15, 16)])
    assert store.verify().ok
    assert store.open_batches() == []
    store.close()


def test_replay_leaves_a_reused_key_alone_even_when_the_new_row_is_due(
        db_url: str, tmp_path: Path) -> None:
    """Same key, another event instant: another record, though the rule would select it."""
    policy = _setup(db_url, tmp_path)
    backup = snapshot(db_url)
    engine.run(policy, AS_OF)
    first = backup["orders"][0]
    _put(db_url, "orders", [{**first, "done_at": first["done_at"] - dt.timedelta(days=400)}])
    store = AuditStore(policy.audit_url)

    applied = replay(policy, store, SINCE, apply=True, as_of=AS_OF)

    assert applied["rules"][0]["deleted"] == {"orders": 0, "lines": 0}
    assert applied["rules"][0]["left_alone"] == {"orders": {"reused_key": 1}}
    assert first["id"] in keys(db_url, "orders")
    store.close()


def test_replay_reads_event_text_in_any_stored_form_on_sqlite(sqlite_url: str,
                                                             tmp_path: Path) -> None:
    """Restored rows whose event text has a 'T' or an offset are the recorded records."""
    rows = "(1, '2015-01-01T10:00:00'), (2, '2015-01-01 11:00:00-05:00'), (3, '2026-02-28T10Z')"
    eng = sa.create_engine(sqlite_url)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, done_at TIMESTAMP)")
        conn.exec_driver_sql(f"INSERT INTO orders VALUES {rows}")
    os.environ["ORDERS_TEST_URL"] = sqlite_url
    policy = load_policy(write_policy(tmp_path, (
        "policy: orders\nsources:\n  db: {adapter: sql, url: '${ORDERS_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        "rules:\n  orders:\n    table: orders\n    retain: 1 year after done_at\n"
        "    max_fraction: 1.0\n")))
    assert engine.run(policy, AS_OF).rules[0].deleted == 2
    with eng.begin() as conn:  # the backup brings the stored text back as it was
        conn.exec_driver_sql(f"INSERT OR IGNORE INTO orders VALUES {rows}")
    eng.dispose()
    store = AuditStore(policy.audit_url)
    try:
        applied = replay(policy, store, SINCE, apply=True, as_of=AS_OF)
        assert applied["rules"][0]["deleted"] == {"orders": 2}
        assert keys(sqlite_url, "orders") == {3}
        assert store.verify().ok
    finally:
        store.close()


def test_replay_tells_records_apart_by_the_nanosecond_of_their_event(sqlite_url: str,
                                                                     tmp_path: Path) -> None:
    """Event text with nine fraction digits: a row whose event differs from the recorded
    one only past the microsecond is another record, left alone; the recorded one goes."""
    deleted = "(1, '2015-01-01 10:00:00.123456789'), (2, '2015-01-01 10:00:00.123456789')"
    eng = sa.create_engine(sqlite_url)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, done_at TEXT)")
        conn.exec_driver_sql(f"INSERT INTO orders VALUES {deleted}")
    os.environ["ORDERS_TEST_URL"] = sqlite_url
    policy = load_policy(write_policy(tmp_path, (
        "policy: orders\nsources:\n  db: {adapter: sql, url: '${ORDERS_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        "rules:\n  orders:\n    table: orders\n    retain: 1 year after done_at\n"
        "    max_fraction: 1.0\n")))
    assert engine.run(policy, AS_OF).rules[0].deleted == 2
    with eng.begin() as conn:  # 1 as recorded; 2 one nanosecond later (same microsecond)
        conn.exec_driver_sql("INSERT INTO orders VALUES (1, '2015-01-01 10:00:00.123456789'), "
                             "(2, '2015-01-01 10:00:00.123456790')")
    eng.dispose()
    store = AuditStore(policy.audit_url)
    try:
        applied = replay(policy, store, SINCE, apply=True, as_of=AS_OF)
        assert applied["rules"][0]["deleted"] == {"orders": 1}
        assert applied["rules"][0]["left_alone"] == {"orders": {"reused_key": 1}}
        assert keys(sqlite_url, "orders") == {2}
    finally:
        store.close()
