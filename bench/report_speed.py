"""How fast ``retention report`` is, as a whole command and in its SQL, against ``count(*)``.

Data (built in the database itself): ``orders`` with N rows (the web shop's table:
``status`` completed or, every 20th, open with no ``completed_at``; ``completed_at``
spread evenly over 2010-2025) and ``order_lines`` with two lines per order (indexed
``order_id``, a foreign key). ``completed_at`` and ``order_lines.order_id`` are indexed.
Two layouts: ``ordered`` (``completed_at`` rises with ``id``, as an append-only table)
and ``random`` (the same instants, scattered over the ids). The policy is the web
shop's ``orders`` rule (``6 months after completion plus 7 years``, ``where: {status:
completed}``, ``children: order_lines``), as of 2026-03-01: about half the orders are due.

Measured, each the median of ``--repeat`` runs:

* ``retention --help`` and ``python -c pass`` (the interpreter alone), as commands;
* ``retention report POLICY --as-of ... --format json`` as a whole command (the console
  script of this interpreter's environment); the output's SHA-256 is printed, so two
  versions of the code can be shown to report the same numbers;
* the report's SQL: in a separate process, ``build_report`` once to warm up, then timed
  with SQLAlchemy's cursor events: the time spent in statements that read the tables
  ("data": counts, samples) and in everything else (reflection, catalogs);
* ``SELECT count(*) FROM orders`` and ``SELECT count(*) FROM order_lines`` on one
  connection (warm): the raw cost of reading each table once.

PostgreSQL runs on a throwaway server (``retention.testing.start_postgres``, fsync off);
``--sqlite`` adds the same data in a SQLite file.

Usage: python bench/report_speed.py [--rows 1000000] [--layouts ordered,random]
       [--repeat 5] [--sqlite] [--no-postgres] [--profile FILE] [--statements]
       [--compare OTHER_VENV/bin/python]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

AS_OF = "2026-03-01T12:00:00+00:00"
SPAN_SECONDS = 16 * 365.25 * 86400  # 2010-01-01 .. 2025-12-31
POLICY = """\
policy: bench
timezone: Europe/Amsterdam
sources:
  shop: {{adapter: sql, url: '{url}'}}
audit: {{url: 'sqlite:///{audit}'}}
rules:
  orders:
    table: orders
    retain: 6 months after completion plus 7 years
    events: {{completion: completed_at}}
    where: {{status: completed}}
    children:
      - {{table: order_lines, key: order_id}}
"""

PG_SCHEMA = """
CREATE TABLE orders (id integer PRIMARY KEY, account_id integer, status varchar(20) NOT NULL,
                     invoice_address varchar(400), created_at timestamp NOT NULL,
                     completed_at timestamp);
CREATE TABLE order_lines (id integer PRIMARY KEY,
                          order_id integer NOT NULL REFERENCES orders (id),
                          product varchar(200) NOT NULL, quantity integer NOT NULL);
"""
SQLITE_SCHEMA = """
CREATE TABLE orders (id INTEGER PRIMARY KEY, account_id INTEGER, status VARCHAR(20) NOT NULL,
                     invoice_address VARCHAR(400), created_at DATETIME NOT NULL,
                     completed_at DATETIME);
CREATE TABLE order_lines (id INTEGER PRIMARY KEY,
                          order_id INTEGER NOT NULL REFERENCES orders (id),
                          product VARCHAR(200) NOT NULL, quantity INTEGER NOT NULL);
"""


def position(layout: str, rows: int, dialect: str) -> str:
    """Where order ``i`` lies in time, 0..rows-1: ``i - 1``, or a fixed permutation."""
    if layout == "ordered":
        return "(i - 1)"
    multiplier = 7919  # a prime that divides no row count used here: a permutation
    assert rows % multiplier
    return f"((i * {multiplier}) % {rows})" if dialect == "sqlite" else \
        f"mod(i::bigint * {multiplier}, {rows})"


def load_postgres(url: str, rows: int, layout: str) -> None:
    import sqlalchemy as sa

    step = SPAN_SECONDS / rows
    eng = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.exec_driver_sql(PG_SCHEMA)
        conn.exec_driver_sql(f"""
            INSERT INTO orders
            SELECT i, mod(i, 50000), CASE WHEN mod(i, 20) = 0 THEN 'open' ELSE 'completed' END,
                   'Street ' || i, ts - interval '3 days',
                   CASE WHEN mod(i, 20) = 0 THEN NULL ELSE ts END
            FROM (SELECT i, timestamp '2010-01-01' + ({position(layout, rows, 'postgresql')}
                            * {step}) * interval '1 second' AS ts
                  FROM generate_series(1, {rows}) AS i) AS g""")
        conn.exec_driver_sql(f"""
            INSERT INTO order_lines
            SELECT j, (j + 1) / 2, 'product ' || mod(j, 100), 1 + mod(j, 3)
            FROM generate_series(1, {2 * rows}) AS j""")
        conn.exec_driver_sql("CREATE INDEX orders_completed_at ON orders (completed_at)")
        conn.exec_driver_sql("CREATE INDEX order_lines_order_id ON order_lines (order_id)")
        conn.exec_driver_sql("VACUUM ANALYZE")
    eng.dispose()


def load_sqlite(path: Path, rows: int, layout: str) -> None:
    import sqlite3

    step = SPAN_SECONDS / rows
    conn = sqlite3.connect(path)
    conn.executescript(SQLITE_SCHEMA)
    series = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})"
    conn.execute(f"""
        {series.format(n=rows)}
        INSERT INTO orders
        SELECT i, i % 50000, CASE WHEN i % 20 = 0 THEN 'open' ELSE 'completed' END,
               'Street ' || i, datetime(ts, '-3 days'), CASE WHEN i % 20 = 0 THEN NULL ELSE ts END
        FROM (SELECT i, datetime('2010-01-01', '+' || CAST({position(layout, rows, 'sqlite')}
                                 * {step} AS INTEGER) || ' seconds') AS ts FROM s)""")
    conn.execute(f"""
        {series.format(n=2 * rows)}
        INSERT INTO order_lines SELECT i, (i + 1) / 2, 'product ' || (i % 100), 1 + i % 3 FROM s""")
    conn.execute("CREATE INDEX orders_completed_at ON orders (completed_at)")
    conn.execute("CREATE INDEX order_lines_order_id ON order_lines (order_id)")
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{argv}: exit {done.returncode}: {done.stderr.decode()[-2000:]}")
    return wall, done.stdout


def median_command(argv: list[str], repeat: int) -> tuple[float, list[float], bytes]:
    timed(argv)  # warm the page cache
    walls, out = [], b""
    for _ in range(repeat):
        wall, out = timed(argv)
        walls.append(wall)
    return statistics.median(walls), walls, out


# -- the SQL of a report, timed inside one process ---------------------------------------

def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import datetime as dt

    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

    from retention import build_report, load_policy

    as_of = dt.datetime.fromisoformat(AS_OF)
    policy = load_policy(spec["policy"])
    build_report(policy, as_of)  # warm: imports, drivers, caches
    spent: dict[str, float] = {}
    started: dict[int, float] = {}
    statements: list[tuple[str, float]] = []

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        started[id(cursor)] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        took = time.perf_counter() - started.pop(id(cursor))
        catalog = any(word in statement for word in (
            "pg_catalog", "information_schema", "sqlite_master", "PRAGMA", "pg_class",
            "sqlite_temp_master", "current_schema", "version()", "show ",
            "standard_conforming_strings"))
        kind = "catalog" if catalog else "data"
        spent[kind] = spent.get(kind, 0.0) + took
        if kind == "data":
            statements.append((" ".join(statement.split())[:160], took))

    sa.event.listen(Engine, "before_cursor_execute", before)
    sa.event.listen(Engine, "after_cursor_execute", after)
    runs = []
    for _ in range(spec["repeat"]):
        spent.clear()
        statements.clear()
        t0 = time.perf_counter()
        if spec.get("profile"):
            import cProfile
            import pstats
            profiler = cProfile.Profile()
            profiler.enable()
            build_report(policy, as_of)
            profiler.disable()
            with open(spec["profile"], "w") as fh:
                stats = pstats.Stats(profiler, stream=fh)
                stats.sort_stats("cumulative").print_stats(40)
        else:
            build_report(policy, as_of)
        runs.append({"call": time.perf_counter() - t0, "data": spent.get("data", 0.0),
                     "catalog": spent.get("catalog", 0.0), "statements": len(statements)})
    shown = [(s, round(t, 4)) for s, t in statements]
    sa.event.remove(Engine, "before_cursor_execute", before)
    sa.event.remove(Engine, "after_cursor_execute", after)
    url = str(policy.sources["shop"].options["url"])
    eng = sa.create_engine(url)
    counts: dict[str, list[float]] = {"orders": [], "order_lines": []}
    with eng.connect() as conn:
        for table in counts:
            conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
        for _ in range(spec["repeat"]):
            for table in counts:
                t0 = time.perf_counter()
                conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
                counts[table].append(time.perf_counter() - t0)
    eng.dispose()
    return {
        "build_report": statistics.median(r["call"] for r in runs),
        "data_sql": statistics.median(r["data"] for r in runs),
        "catalog_sql": statistics.median(r["catalog"] for r in runs),
        "data_statements": runs[-1]["statements"],
        "statements": shown,
        "count_orders": statistics.median(counts["orders"]),
        "count_order_lines": statistics.median(counts["order_lines"]),
    }


def measure(python: str, kind: str, url: str, layout: str, tmp: Path, repeat: int,
            profile: str | None) -> dict[str, Any]:
    """The figures of one version of the code (the environment of ``python``)."""
    policy = tmp / f"policy-{kind}-{layout}.yaml"
    policy.write_text(POLICY.format(url=url, audit=tmp / "no-audit.db"))
    retention = str(Path(python).with_name("retention"))
    report, walls, out = median_command(
        [retention, "report", str(policy), "--as-of", AS_OF, "--format", "json"], repeat)
    data = json.loads(out)
    orders = data["rules"][0]
    spec = {"policy": str(policy), "repeat": repeat, "profile": profile}
    done = subprocess.run([python, __file__, "--worker", json.dumps(spec)],
                          capture_output=True, check=True)
    inner = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return {"code": python, "database": kind, "layout": layout, "report_command": report,
            "report_walls": [round(w, 3) for w in walls],
            "sha256": hashlib.sha256(out).hexdigest()[:16],
            "due": orders["due"], "total": orders["total"], "children": orders["children"],
            "due_next": [orders[f"due_next_{d}d"] for d in (7, 30, 90)], **inner}


def show(r: dict[str, Any]) -> str:
    raw = r["count_orders"] + r["count_order_lines"]
    return (f"{r['code']}\n  {r['database']:10} {r['layout']:8} "
            f"report command {r['report_command']:.3f} s "
            f"(runs {r['report_walls']}); in-process build_report {r['build_report']:.3f} s; "
            f"data SQL {r['data_sql']:.3f} s in {r['data_statements']} statements, catalog "
            f"{r['catalog_sql']:.3f} s; count(*) orders {r['count_orders']:.4f} s + "
            f"order_lines {r['count_order_lines']:.4f} s = {raw:.4f} s; data SQL / count(*) "
            f"both tables {r['data_sql'] / raw:.2f}x, / orders only "
            f"{r['data_sql'] / r['count_orders']:.2f}x; due {r['due']} of {r['total']}, "
            f"children {r['children']}, due next {r['due_next']}; output {r['sha256']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--layouts", default="ordered,random")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sqlite", action="store_true", help="also on a SQLite file")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--profile", help="write a cProfile of the in-process report here")
    parser.add_argument("--statements", action="store_true", help="print the data SQL")
    parser.add_argument("--compare", metavar="PYTHON", help="also measure the code installed "
                        "in this interpreter's environment (e.g. a checkout of main), on the "
                        "same data, each measurement right after this tree's")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}; "
          f"python {sys.version.split()[0]}; rows {args.rows}", flush=True)
    pythons = [sys.executable, *([args.compare] if args.compare else [])]
    bare, _, _ = median_command([sys.executable, "-c", "pass"], args.repeat)
    print(f"python -c pass {bare:.3f} s", flush=True)
    for python in pythons:
        retention = str(Path(python).with_name("retention"))
        helped, walls, _ = median_command([retention, "--help"], args.repeat)
        print(f"{retention} --help {helped:.3f} s (runs {[round(w, 3) for w in walls]})",
              flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="report-speed-") as name:
        tmp = Path(name)
        os.chmod(tmp, 0o755)
        layouts = args.layouts.split(",")
        if args.sqlite:
            for layout in layouts:
                path = tmp / f"{layout}.db"
                load_sqlite(path, args.rows, layout)
                for python in pythons:
                    results.append(measure(python, "sqlite", f"sqlite:///{path}", layout, tmp,
                                           args.repeat, args.profile))
                    print(show(results[-1]), flush=True)
        if not args.no_postgres:
            from retention import testing

            with testing.start_postgres() as server:
                for layout in layouts:
                    url = server.create_database(f"bench_{layout}")
                    load_postgres(url, args.rows, layout)
                    for python in pythons:
                        results.append(measure(python, "postgresql", url, layout, tmp,
                                               args.repeat, args.profile))
                        print(show(results[-1]), flush=True)
    if args.statements:
        for r in results:
            print(f"-- {r['database']} {r['layout']}")
            for statement, took in r["statements"]:
                print(f"{took:8.4f} s  {statement}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
