"""kill -9 at every step of a partition drop: the next run leaves the audit complete.

SPEC §4.1/§4.2 for ``drop_partitions``: a ``retention run`` subprocess stops
itself (``tests/run/faultpoint``) at one step of its first partition drop, is
killed with SIGKILL, and a second run finishes the rule. Before the second run,
a partition still attached holds all its rows and nothing committed in the audit
log names a row that still exists; after it, the deleted keys are exactly the
committed records' keys, each once, no batch is open and the chain verifies. The
audit store is a SQLite file (intents, commit marker, batch_committed) or the
target database itself (one transaction). Partitions are read in chunks of 100
rows here, so a stop after the first records lands in the middle of a partition.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from retention.audit.store import AuditStore
from tests.run.test_faults import FAULTPOINT, Proc, run_env, start_run, stopped
from tests.support import write_policy

AS_OF = dt.datetime(2024, 4, 15, 12, tzinfo=dt.UTC)
CUTOFF = dt.datetime(2024, 3, 15, 23, 59, 59, 999999, tzinfo=dt.UTC)  # 30 days, UTC
POLICY = """\
policy: partfaults
version: "1"
timezone: UTC
sources:
  shop:
    adapter: sql
    url: ${FAULT_TARGET_URL}
audit:
  url: ${FAULT_AUDIT_URL}
rules:
  orders:
    source: shop
    table: orders
    retain: 30 days after completed_at
    where: {status: done}
    batch_size: 40
    max_fraction: 1.0
"""
MONTHS = ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05"]
PARTS = "call:retention.adapters.sql_partitions"
STEPS = {  # name: (stop point, audit stores it applies to)
    "locked": (f"{PARTS}:_lock:after", ("sqlite", "same")),
    "recorded-first-chunk": ("call:retention.run.partitions:_record:after", ("sqlite", "same")),
    "detached": (f"{PARTS}:_detach:after", ("sqlite", "same")),
    "dropped": (f"{PARTS}:_drop:after", ("sqlite", "same")),
    "target-committed": (f"{PARTS}:drop:after", ("sqlite", "same")),
    "batch-committed": ("after_batch_committed", ("sqlite",)),
}
CASES = [(step, audit) for step, (_, audits) in STEPS.items() for audit in audits]


@dataclass
class Shop:
    target: str
    audit: str
    workdir: Path
    runs: int = 0

    def __post_init__(self) -> None:
        self.policy = write_policy(self.workdir, POLICY, "partfaults.yaml")
        statements = [
            "CREATE TABLE orders (id integer NOT NULL, completed_at timestamptz NOT NULL, "
            "status varchar(12) NOT NULL, PRIMARY KEY (id, completed_at)) "
            "PARTITION BY RANGE (completed_at)",
            "CREATE TABLE orders_old PARTITION OF orders DEFAULT",
        ]
        for month in MONTHS:
            start = dt.date.fromisoformat(f"{month}-01")
            end = (start + dt.timedelta(days=32)).replace(day=1)
            statements.append(f"CREATE TABLE orders_{month.replace('-', '_')} PARTITION OF "
                              f"orders FOR VALUES FROM ('{start} 00:00+00') TO "
                              f"('{end} 00:00+00')")
        self.rows: dict[int, dt.datetime] = {}
        self.status: dict[int, str] = {}
        next_id = 1
        start = dt.datetime(2023, 12, 1, tzinfo=dt.UTC)
        while start < dt.datetime(2024, 6, 1, tzinfo=dt.UTC):  # one order every 3 hours
            self.rows[next_id] = start
            self.status[next_id] = "open" if next_id % 97 == 0 and start.month > 2 else "done"
            next_id += 1
            start += dt.timedelta(hours=3)
        self.rows[next_id], self.status[next_id] = CUTOFF, "done"
        self.rows[next_id + 1] = CUTOFF + dt.timedelta(microseconds=1)
        self.status[next_id + 1] = "done"
        eng = sa.create_engine(self.target, poolclass=NullPool)
        try:
            with eng.begin() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement)
                conn.execute(sa.text("INSERT INTO orders VALUES (:id, :at, :status)"),
                             [{"id": i, "at": at, "status": self.status[i]}
                              for i, at in self.rows.items()])
        finally:
            eng.dispose()
        self.due = {i for i, at in self.rows.items()
                    if at <= CUTOFF and self.status[i] == "done"}

    def ids(self) -> set[int]:
        return set(self._query("SELECT id FROM orders"))

    def partitions(self) -> set[str]:
        return set(self._query("SELECT relname FROM pg_class WHERE relname LIKE 'orders_%' "
                               "AND relkind = 'r'"))

    def partition_ids(self, name: str) -> set[int]:
        return set(self._query(f"SELECT id FROM {name}"))

    def _query(self, sql: str) -> list[Any]:
        eng = sa.create_engine(self.target, poolclass=NullPool)
        try:
            with eng.connect() as conn:
                return list(conn.execute(sa.text(sql)).scalars())
        finally:
            eng.dispose()

    def start(self, stop_at: str | None = None) -> Proc:
        env = run_env(self.target, self.audit, FAULT_READ_CHUNK="100",
                      PYTHONPATH=str(FAULTPOINT))
        if stop_at:
            env["FAULT_STOP_AT"] = stop_at
        self.runs += 1
        return start_run(self.workdir, self.runs, self.policy, AS_OF, env)

    def audit_state(self) -> tuple[list[int], Any, list[dict[str, Any]]]:
        store = AuditStore(self.audit)
        try:
            records = [json.loads(r["record_key"])["id"] for r in store.records()]
            return records, store.verify(), store.open_batches()
        finally:
            store.close()


@pytest.mark.parametrize(("step", "audit"), CASES, ids=[f"{s}-{a}-audit" for s, a in CASES])
def test_kill_9_at_each_step_of_a_partition_drop_leaves_nothing_unrecorded(
        tmp_path: Path, postgres_url: str, step: str, audit: str) -> None:
    audit_url = postgres_url if audit == "same" else f"sqlite:///{tmp_path}/audit.db"
    shop = Shop(postgres_url, audit_url, tmp_path)
    seeded = set(shop.rows)
    whole = {"orders_2024_01", "orders_2024_02"}
    assert shop.partition_ids("orders_2024_01") <= shop.due  # wholly due, and more:
    assert shop.partition_ids("orders_2024_02") <= shop.due
    assert len(shop.partition_ids("orders_2024_01")) > 100  # read in several chunks

    proc = shop.start(STEPS[step][0])
    stopped(proc)
    assert proc.kill()

    # Between the kill and the next run: a partition is there with all its rows, or gone;
    # no committed record names a row that still exists.
    left = shop.ids()
    for name in whole & shop.partitions():
        assert shop.partition_ids(name) == {i for i, at in shop.rows.items()
                                            if at.strftime("orders_%Y_%m") == name}
    records, verdict, _open = shop.audit_state()
    assert verdict.ok, str(verdict)
    assert not set(records) & left, "a committed record names a row that still exists"
    gone_first = seeded - left

    final = shop.start()
    assert final.wait() == 0, final.tail()
    result = final.json()
    assert result is not None and result["rules"][0]["status"] == "ok", final.stdout()

    records, verdict, still_open = shop.audit_state()
    deleted = seeded - shop.ids()
    twice = {k: n for k, n in collections.Counter(records).items() if n > 1}
    assert not twice, f"recorded more than once: {sorted(twice)[:10]}"
    assert set(records) == deleted == shop.due, (
        f"unrecorded {sorted(deleted - set(records))[:5]}, "
        f"phantom {sorted(set(records) - deleted)[:5]}, missed {sorted(shop.due - deleted)[:5]}")
    assert verdict.ok, str(verdict)
    assert still_open == []
    assert not whole & shop.partitions(), "the wholly due partitions are dropped in the end"
    assert {"orders_old", "orders_2024_03", "orders_2024_04"} <= shop.partitions()
    january = {i for i, at in shop.rows.items() if at.strftime("%Y-%m") == "2024-01"}
    recovered = result["rules"][0]["recovered"]
    if step in ("target-committed", "batch-committed"):
        assert gone_first == january  # the first drop committed before the kill
        expected = len(january) if (step, audit) == ("target-committed", "sqlite") else 0
        assert recovered == expected, result  # confirmed from its commit marker
    else:
        assert (gone_first, recovered) == (set(), 0), result  # rolled back whole
