"""replay: deletions are applied again to rows a restore from backup brought back."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import sqlalchemy as sa

from retention import engine, holds
from retention.audit.store import AuditStore
from retention.replay import replay
from retention.rules import Policy
from tests.support import audited, keys, orders_with_lines, snapshot, table_rows

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
    shown = subprocess.run([exe, "replay", path, "--since", "2020-01-01", "--format", "json"],
                           capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["rules"][0]["restored"]["orders"] > 0
