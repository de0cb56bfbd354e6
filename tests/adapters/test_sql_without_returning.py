"""The SQL adapter's path for servers without ``DELETE ... RETURNING``, forced on MariaDB.

MySQL and MariaDB before 10.5 cannot say which rows a ``DELETE`` removed, so the
adapter locks the selected rows (``SELECT ... FOR UPDATE``) and deletes exactly those,
checking the counts. MariaDB here has RETURNING, so ``SqlAdapter.use_returning = False``
forces that path (in the subprocesses through ``tests/run/faultpoint``, where
``FAULT_NO_RETURNING`` also fails any ``DELETE ... RETURNING``). The guarantees are the
same as on the RETURNING path: exactly the due rows and their children go (the cutoff
instant is due, one microsecond later is not), each has one audit entry, a held record
stays, and a run killed with SIGKILL just before or just after the target's commit is
settled by the next run from the commit marker.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from retention.adapters.sql import SqlAdapter
from sqlalchemy.dialects import mysql
from sqlalchemy.pool import NullPool

from retention import calendar
from retention.audit.store import AuditStore
from retention.policy.load import load_policy
from retention.policy.phrase import parse
from retention.policy.rules import Source
from retention.run import engine, holds
from tests.support import write_policy

RETENTION = Path(sys.executable).with_name("retention")
FAULTPOINT = Path(__file__).parents[1] / "run" / "faultpoint"
AS_OF = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
RETAIN = "1 year after completion"
CUTOFF = calendar.cutoff(AS_OF, parse(RETAIN), calendar.zone("UTC")).replace(tzinfo=None)
BATCH = 4
POLICY = f"""\
policy: noreturning
timezone: UTC
sources:
  shop:
    adapter: sql
    url: ${{FAULT_TARGET_URL}}
audit:
  url: ${{FAULT_AUDIT_URL}}
rules:
  orders:
    source: shop
    table: orders
    retain: {RETAIN}
    events: {{completion: completed_at}}
    where: {{status: completed}}
    batch_size: {BATCH}
    max_fraction: 1.0
    children:
      - {{table: order_lines, key: order_id}}
"""
_TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_META = sa.MetaData()
ORDERS = sa.Table("orders", _META,
                  sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                  sa.Column("completed_at", _TS, nullable=True),
                  sa.Column("status", sa.String(12), nullable=False))
LINES = sa.Table("order_lines", _META,
                 sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                 sa.Column("order_id", sa.Integer, nullable=False, index=True))
MICRO = dt.timedelta(microseconds=1)
HELD = 7  # a due order under a legal hold


def _orders() -> tuple[list[dict[str, Any]], set[int]]:
    """Orders 1-30 and the ids due at AS_OF (the hold aside): the cutoff instant and one
    microsecond before it are due; one microsecond after it, a recent order, an open one
    and one without an event are not."""
    rows, due = [], set()
    for oid in range(1, 31):
        kind = oid % 6
        at: dt.datetime | None = {
            0: CUTOFF, 1: CUTOFF - MICRO, 2: CUTOFF - dt.timedelta(days=40 * oid),
            3: CUTOFF + MICRO, 4: CUTOFF + dt.timedelta(days=oid), 5: None,
        }[kind]
        status = "open" if oid in (2, 14) else "completed"  # old, but not completed
        rows.append({"id": oid, "completed_at": at, "status": status})
        if kind in (0, 1, 2) and status == "completed":
            due.add(oid)
    return rows, due


@pytest.fixture
def shop(mariadb_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Orders with two lines each on MariaDB, a hold on a due order, the policy file and
    a SQLite audit store beside it (a separate store: intents, then commit markers)."""
    rows, due = _orders()
    assert HELD in due
    eng = sa.create_engine(mariadb_url, poolclass=NullPool)
    try:
        _META.create_all(eng)
        with eng.begin() as conn:
            conn.execute(ORDERS.insert(), rows)
            conn.execute(LINES.insert(), [{"id": 2 * r["id"] - i, "order_id": r["id"]}
                                          for r in rows for i in (0, 1)])
    finally:
        eng.dispose()
    audit = f"sqlite:///{tmp_path}/audit.db"
    store = AuditStore(audit)
    try:
        holds.add(store, "noreturning", "orders", {"id": HELD}, "tax audit", by="test")
    finally:
        store.close()
    yield {"url": mariadb_url, "audit": audit, "due": due - {HELD},
           "policy": write_policy(tmp_path, POLICY), "dir": tmp_path}


def _ids(url: str, table: sa.Table) -> set[int]:
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            return set(conn.execute(sa.select(table.c.id)).scalars())
    finally:
        eng.dispose()


def _check_exact(shop: dict[str, Any]) -> None:
    """Exactly the due orders (the held one aside) and their lines are gone, each recorded
    once, the chain holds and no batch is open."""
    due: set[int] = shop["due"]
    assert _ids(shop["url"], ORDERS) == set(range(1, 31)) - due
    gone_lines = {2 * o - i for o in due for i in (0, 1)}
    assert _ids(shop["url"], LINES) == set(range(1, 61)) - gone_lines
    store = AuditStore(shop["audit"])
    try:
        records = list(store.records())
        verdict, still_open = store.verify(), store.open_batches()
    finally:
        store.close()
    recorded = collections.Counter((r["table_name"], json.loads(r["record_key"])["id"])
                                   for r in records)
    assert recorded == collections.Counter(
        [("orders", o) for o in due] + [("order_lines", line) for line in gone_lines])
    assert verdict.ok, str(verdict)
    assert still_open == []


def test_mariadb_has_returning_unless_the_switch_turns_it_off(mariadb_url: str) -> None:
    adapter = SqlAdapter(Source("shop", "sql", {"url": mariadb_url}))
    try:
        adapter.tables()  # the dialect learns the server's version on first connect
        assert adapter.supports_returning
        adapter.use_returning = False
        assert not adapter.supports_returning
    finally:
        adapter.close()


def test_the_locked_selection_deletes_exactly_the_due_rows_and_records_each(
        shop: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SqlAdapter, "use_returning", False)
    monkeypatch.setenv("FAULT_TARGET_URL", shop["url"])
    monkeypatch.setenv("FAULT_AUDIT_URL", shop["audit"])
    said: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        said.append(" ".join(statement.split()).upper())

    sa.event.listen(sa.Engine, "before_cursor_execute", seen)
    try:
        outcome = engine.run(load_policy(shop["policy"]), AS_OF)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", seen)

    [rule] = outcome.rules
    assert (rule.status.value, rule.deleted, rule.held) == ("ok", len(shop["due"]), 1)
    _check_exact(shop)
    deletes = [s for s in said if s.startswith("DELETE")]
    assert deletes and not [s for s in deletes if "RETURNING" in s], deletes
    # the path without RETURNING: the children are locked, read and then deleted
    assert [s for s in said if s.startswith("SELECT ORDER_LINES.ID, ORDER_LINES.ORDER_ID")
            and s.endswith("FOR UPDATE")], said
    assert [s for s in said if s.startswith("SELECT ORDERS.ID") and s.endswith("FOR UPDATE")]


# -- kill -9 just before and just after the target's commit ---------------------------


def _start(shop: dict[str, Any], stop_at: str | None, n: int) -> tuple[subprocess.Popen[bytes],
                                                                       Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETENTION_", "FAULT_"))}
    env.update(FAULT_TARGET_URL=shop["url"], FAULT_AUDIT_URL=shop["audit"],
               FAULT_NO_RETURNING="1", PYTHONPATH=str(FAULTPOINT))
    if stop_at:
        env["FAULT_STOP_AT"] = stop_at
    err = shop["dir"] / f"run-{n}.err"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [str(RETENTION), "run", str(shop["policy"]), "--format", "json",
             "--as-of", AS_OF.isoformat()],
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
            cwd=shop["dir"])
    return proc, err


def _stopped(proc: subprocess.Popen[bytes], err: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    stat = Path(f"/proc/{proc.pid}/stat")
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before its stop:\n{err.read_text()}"
        if stat.read_text().rpartition(")")[2].split()[0] == "T":
            return
        time.sleep(0.01)
    raise AssertionError(f"the run never reached its stop:\n{err.read_text()}")


def _events(err: Path, name: str) -> list[dict[str, Any]]:
    found = []
    for line in err.read_text().splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            event = json.loads(line)
            if event.get("event") == name:
                found.append(event)
    return found


@pytest.mark.parametrize("stop_at,first_batch", [
    ("after_target_commit", "committed"),  # the next run confirms it from its marker
    ("before_target_commit", "rolled back"),  # no marker: nothing of it was done
])
def test_a_run_killed_at_the_commit_is_settled_by_the_next_from_the_marker(
        shop: dict[str, Any], stop_at: str, first_batch: str) -> None:
    proc, err = _start(shop, stop_at, 1)
    _stopped(proc, err)
    first = sorted(shop["due"])[:BATCH]  # the first batch, in key order
    remaining = _ids(shop["url"], ORDERS)
    if first_batch == "committed":
        assert not set(first) & remaining
    else:
        assert set(first) <= remaining
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    final, final_err = _start(shop, None, 2)
    out, _ = final.communicate(timeout=120)
    assert final.returncode == 0, final_err.read_text()
    [rule] = json.loads(out)["rules"]
    assert rule["status"] == "ok"
    reconciled = _events(final_err, "batch_reconciled")
    parents_and_lines = BATCH * 3  # each order has two lines
    assert [(e["confirmed"], e["rolled_back"]) for e in reconciled] == (
        [(parents_and_lines, 0)] if first_batch == "committed" else [(0, parents_and_lines)])
    _check_exact(shop)
