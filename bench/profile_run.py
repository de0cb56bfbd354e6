"""One ``retention run`` on generated orders, timed against a plain DELETE, and profiled.

A quick measuring tool for the batch path (the full harness is ``bench/enforce.py``):
``orders`` with N due rows and N/5 rows that are not due, two ``order_lines`` per
order (``order_id`` indexed, a foreign key), the rule ``1 year after completed_at``
with the lines as children. ``--layout time`` gives ids in time order (the due rows
first); ``--layout random`` spreads the due rows over the ids.

Per invocation, on fresh data each: the plain DELETE in one transaction (children
by ``IN (SELECT ...)``, then parents), then ``engine.run`` (after a dry run that
loads drivers and reflects the tables), then ``audit export`` (JSON lines to
/dev/null) and ``audit verify`` over the store the run wrote. It prints wall and CPU
seconds, the ratio to the plain DELETE, the longest batch transaction (wall time of
each ``run_batch`` call) and the growth of the peak RSS during the run; with
``--profile FILE`` the run is profiled with cProfile (top functions to FILE).

Usage: python bench/profile_run.py --target postgresql|sqlite|mariadb
       [--audit same|sqlite] [--orders 100000] [--layout time|random]
       [--batch-size N] [--profile FILE] [--url URL]

PostgreSQL and MariaDB: a throwaway server (``retention.testing``) unless ``--url``
names an administrative URL of a running one. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import json
import pstats
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

AS_OF = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CUTOFF = dt.datetime(2025, 2, 28, 22, 59, 59, 999999)  # 1 year after, Amsterdam -> UTC
DUE_FROM = dt.datetime(2019, 1, 1)
RECENT = dt.datetime(2026, 2, 1)


def status_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def schema(dialect: str) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    from sqlalchemy.dialects import mysql

    ts = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    meta = sa.MetaData()
    orders = sa.Table("orders", meta,
                      sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                primary_key=True, autoincrement=False),
                      sa.Column("completed_at", ts, nullable=True),
                      sa.Column("status", sa.String(12), nullable=False))
    lines = sa.Table("order_lines", meta,
                     sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                               primary_key=True, autoincrement=False),
                     sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                               sa.ForeignKey("orders.id"), nullable=False, index=True),
                     sa.Column("sku", sa.String(12), nullable=False))
    return meta, orders, lines


def load(url: str, due: int, layout: str, seed: int = 7) -> None:
    """N due orders, N/5 recent ones, two lines each."""
    from retention.db import create_engine

    eng = create_engine(url)
    meta, orders, lines = schema(eng.dialect.name)
    meta.create_all(eng)
    total = due + due // 5
    rng = random.Random(seed)
    flags = [True] * due + [False] * (total - due)
    if layout == "random":
        rng.shuffle(flags)
    else:
        flags.sort(reverse=True)
    span = (CUTOFF - DUE_FROM).total_seconds()
    step = 20_000
    with eng.begin() as conn:
        for lo in range(0, total, step):
            rows, kids = [], []
            for i in range(lo, min(lo + step, total)):
                oid = i + 1
                if flags[i]:
                    at = (DUE_FROM + dt.timedelta(seconds=span * i / total) if layout == "time"
                          else DUE_FROM + dt.timedelta(seconds=rng.uniform(0, span)))
                else:
                    at = RECENT + dt.timedelta(seconds=i)
                rows.append({"id": oid, "completed_at": at, "status": "completed"})
                kids += [{"id": 2 * oid - 1, "order_id": oid, "sku": "a"},
                         {"id": 2 * oid, "order_id": oid, "sku": "b"}]
            conn.execute(orders.insert(), rows)
            conn.execute(lines.insert(), kids)
    if eng.dialect.name == "postgresql":
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    elif eng.dialect.name == "sqlite":
        with eng.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with eng.begin() as conn:
            conn.exec_driver_sql("ANALYZE TABLE orders, order_lines")
    eng.dispose()


def plain_delete(url: str) -> float:
    from retention.db import create_engine, writing

    eng = create_engine(url)
    cutoff = sa.bindparam("cutoff", CUTOFF, type_=sa.DateTime)
    kids = sa.text("DELETE FROM order_lines WHERE order_id IN (SELECT id FROM orders "
                   "WHERE completed_at <= :cutoff AND status = 'completed')").bindparams(cutoff)
    parents = sa.text("DELETE FROM orders WHERE completed_at <= :cutoff "
                      "AND status = 'completed'").bindparams(cutoff)
    with eng.connect() as conn:
        conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
    started = time.perf_counter()
    with writing(eng) as conn:
        conn.execute(kids)
        conn.execute(parents)
    took = time.perf_counter() - started
    eng.dispose()
    return took


POLICY = """\
policy: bench
timezone: Europe/Amsterdam
sources:
  shop: {{adapter: sql, url: "{target}"}}
audit:
  url: "{audit}"
rules:
  orders:
    source: shop
    table: orders
    retain: 1 year after completion
    events: {{completion: completed_at}}
    where: {{status: completed}}
    max_fraction: 1.0
{extra}    children:
      - {{table: order_lines, key: order_id}}
"""


def run(target: str, audit: str, due: int, batch_size: int | None, profile: str | None,
        tmp: Path) -> dict[str, Any]:
    from retention.adapters.sql import SqlAdapter

    from retention import logs
    from retention.policy.load import load_policy
    from retention.run import engine

    logs.configure("warning", json=True)
    extra = f"    batch_size: {batch_size}\n" if batch_size else ""
    path = tmp / "policy.yaml"
    path.write_text(POLICY.format(target=target, audit=audit, extra=extra))
    policy = load_policy(path)
    warm = engine.run(policy, AS_OF, dry_run=True)
    assert warm.rules[0].due == due, warm.rules[0]
    spans: list[float] = []
    real = SqlAdapter.run_batch

    def timed(self: SqlAdapter, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real(self, *args, **kwargs)
        finally:
            spans.append(time.perf_counter() - started)

    SqlAdapter.run_batch = timed  # type: ignore[method-assign]
    profiler = cProfile.Profile() if profile else None
    gc.collect()
    reset_peak()
    rss0 = status_kb("VmRSS")
    if profiler:
        profiler.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    outcome = engine.run(policy, AS_OF)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profiler:
        profiler.disable()
    peak = status_kb("VmHWM")
    SqlAdapter.run_batch = real  # type: ignore[method-assign]
    rule = outcome.rules[0]
    assert rule.status.value == "ok" and rule.deleted == due, rule
    assert rule.children.get("order_lines") == 2 * due, rule
    if profiler and profile:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        Path(profile).write_text(out.getvalue())
    return {"wall_s": wall, "cpu_s": cpu, "batches": len(spans),
            "longest_batch_s": max(spans), "peak_growth_mb": (peak - rss0) / 1024,
            "peak_rss_mb": peak / 1024}


def audit_commands(audit: str, due: int) -> dict[str, Any]:
    from retention.audit import export
    from retention.audit.store import AuditStore

    store = AuditStore(audit)
    try:
        t0 = time.perf_counter()
        with open("/dev/null", "w") as sink:
            lines = export.stream(store, "jsonl", sink)
        exported = time.perf_counter() - t0
        t0 = time.perf_counter()
        verdict = store.verify()
        verified = time.perf_counter() - t0
    finally:
        store.close()
    assert lines == 3 * due, lines
    assert verdict.ok, str(verdict)
    return {"export_s": exported, "verify_s": verified, "entries": verdict.entries}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="postgresql",
                        choices=["postgresql", "sqlite", "mariadb"])
    parser.add_argument("--audit", default="same", choices=["same", "sqlite"])
    parser.add_argument("--orders", type=int, default=100_000, help="due orders N")
    parser.add_argument("--layout", default="time", choices=["time", "random"])
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--profile", default=None, help="cProfile output file")
    parser.add_argument("--url", default=None, help="administrative URL of a running server")
    args = parser.parse_args()

    from retention import testing

    server = None
    admin = args.url
    if args.target != "sqlite" and admin is None:
        server = (testing.start_postgres() if args.target == "postgresql"
                  else testing.start_mariadb())
        admin = server.url
    with tempfile.TemporaryDirectory(prefix="retention-profile-", dir="/dev/shm") as name:
        tmp = Path(name)
        created: list[str] = []

        def fresh(label: str) -> str:
            if args.target == "sqlite":
                return f"sqlite:///{tmp}/{label}.db"
            db = f"bench_{label}_{uuid.uuid4().hex[:8]}"
            admin_eng = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
            with admin_eng.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {db}")
            admin_eng.dispose()
            created.append(db)
            return sa.make_url(admin).set(database=db).render_as_string(hide_password=False)

        try:
            base = fresh("plain")
            load(base, args.orders, args.layout)
            plain = plain_delete(base)
            target = fresh("run")
            load(target, args.orders, args.layout)
            audit = target if args.audit == "same" else f"sqlite:///{tmp}/audit.db"
            result = run(target, audit, args.orders, args.batch_size, args.profile, tmp)
            result.update(audit_commands(audit, args.orders))
        finally:
            if created:
                admin_eng = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
                with admin_eng.connect() as conn:
                    for db in created:
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db}")
                admin_eng.dispose()
            if server is not None:
                server.stop()
    result.update(target=args.target, audit=args.audit, orders=args.orders,
                  layout=args.layout, batch_size=args.batch_size, plain_delete_s=plain,
                  ratio=result["wall_s"] / plain)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                      for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
