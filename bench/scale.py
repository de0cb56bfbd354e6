"""Memory and time as the due rows grow a hundredfold (issue 9), and report vs count(*).

For each size (default 70,000 and 7,000,000 orders in the time layout, about 103,000 and
10,300,000 due rows with their lines) on one PostgreSQL server with fsync on:

* ``retention run`` (audit in the same database, default batch sizing): wall time,
  peak RSS (``ru_maxrss``), checked like every run of ``enforce.py``;
* ``retention audit export --format jsonl`` (lines counted) and ``audit verify`` of that
  store: wall time and peak RSS per million records;
* the raw DELETE on a fresh copy, for the ratio;
* ``retention report`` against ``count(*)``: whole command and the server time of the
  SQL of each, from the PostgreSQL log.

Usage: .venv/bin/python bench/scale.py [--sizes 70000,7000000] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import baselines
import enforce
import workload
from enforce import Bench, durable_postgres, log, median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="70000,7000000")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path)
    a = parser.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="retention-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    args = argparse.Namespace(repeats=1, slow=1e9, django=False, export=True)
    bench = Bench(args, work)
    server, settings = durable_postgres()
    pg = workload.Postgres(server.url)
    bench.cutoff_of = {}
    out: dict[str, Any] = {"machine": enforce.machine(work), "postgresql": settings,
                           "sizes": []}
    try:
        for n in (int(s) for s in a.sizes.split(",")):
            log(f"loading {n} orders")
            t0 = time.perf_counter()
            exp = pg.load("tpl", "time", n)
            row: dict[str, Any] = {"orders": n, "due_rows": exp.due_rows,
                                   "load_s": round(time.perf_counter() - t0, 1)}
            cutoff = bench.cutoff(pg.url("tpl"), exp, f"cutoff-{n}")
            bench.cutoff_of["time"] = cutoff
            url = pg.copy("tpl", "raw")
            raw = baselines.raw_delete(url, dt.datetime.fromisoformat(cutoff))
            pg.drop("raw")
            row["raw_s"] = raw["wall_s"]
            log(f"  raw DELETE {raw['wall_s']:.2f} s")
            url = pg.copy("tpl", "ret")
            r = bench.run_retention(f"ret-{n}", pg, url, url, 50000, exp)
            row.update(run_s=r["wall_s"], run_rss_mb=r["rss_mb"], engine_s=r.get("engine_s"),
                       batches=r.get("batches"), longest_xact_s=r.get("longest_xact_s"))
            log(f"  retention run {r['wall_s']:.2f} s, RSS {r['rss_mb']:.0f} MB")
            e = bench.export_timing(pg, {**r, "db": "ret"}, f"{exp.due_rows} records")
            row.update({k: e[k] for k in ("records", "export_s", "export_rss_mb", "verify_s",
                                          "verify_rss_mb")})
            log(f"  export {e['export_s']:.2f} s ({e['export_rss_mb']:.0f} MB), verify "
                f"{e['verify_s']:.2f} s ({e['verify_rss_mb']:.0f} MB)")
            rep = bench.report_timing(pg, server, "tpl", "time", exp, copy=False)
            row["report"] = {"whole_s": median(rep["report_s"]),
                             "psql_s": median(rep["psql_s"]),
                             "sql_ms": median(rep["report_sql_ms"]),
                             "count_sql_ms": median(rep["count_sql_ms"]),
                             "figures_sql_ms": median(rep["figures_sql_ms"]),
                             "statements": median(rep["report_sql_statements"]),
                             "largest_ms": median(rep["report_sql_max_ms"]),
                             "rss_mb": rep["report_rss_mb"]}
            log(f"  report {row['report']}")
            pg.drop("tpl")
            out["sizes"].append(row)
            if a.json:
                a.json.write_text(json.dumps(out, indent=1, default=str))
    finally:
        pg.dispose()
        server.stop()
    print(render(out))
    return 0


def render(out: dict[str, Any]) -> str:
    lines = ["| orders | due rows | raw DELETE s | run s | ratio | run peak RSS MB | export s "
             "| export s/M | export RSS MB | verify s | verify s/M | verify RSS MB | report "
             "whole s | report SQL ms | count(*) ms | SQL ratio | counts of the same figures ms "
             "| SQL ratio to those |",
             "|" + "---|" * 18]
    for r in out["sizes"]:
        per_m = 1e6 / r["records"]
        rep = r["report"]
        lines.append(
            f"| {r['orders']:,} | {r['due_rows']:,} | {r['raw_s']:.2f} | {r['run_s']:.2f} | "
            f"{r['run_s'] / r['raw_s']:.2f}x | {r['run_rss_mb']:.0f} | {r['export_s']:.2f} | "
            f"{r['export_s'] * per_m:.2f} | {r['export_rss_mb']:.0f} | {r['verify_s']:.2f} | "
            f"{r['verify_s'] * per_m:.2f} | {r['verify_rss_mb']:.0f} | {rep['whole_s']:.2f} | "
            f"{rep['sql_ms']:.0f} | {rep['count_sql_ms']:.0f} | "
            f"{rep['sql_ms'] / max(rep['count_sql_ms'], 1e-9):.2f}x | "
            f"{rep['figures_sql_ms']:.0f} | "
            f"{rep['sql_ms'] / max(rep['figures_sql_ms'], 1e-9):.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
