"""How fast ``engine.run`` deletes, against a plain DELETE, and how much memory it takes.

Data: a ``parents`` table with 2N rows, every other one due (``done_at`` in 2020) and
the rest not due (``done_at`` a day before the run), and a ``children`` table with one
child per parent (``parent_id`` indexed, a foreign key to ``parents``). The rule is
``retain: 1 year after done_at`` with ``children: [{table: children, key: parent_id}]``,
so a run deletes N parents and N children (2N rows) and leaves the other 2N.

Configurations, all in one invocation so that ratios compare like with like:

* SQLite target + SQLite audit store (two files in a temporary directory);
* PostgreSQL target (a throwaway server from ``retention.testing.start_postgres``,
  fsync off) with (a) a SQLite audit store and (b) the audit store in the same
  PostgreSQL database (records written inside each batch's transaction);
* each at batch sizes 100, 1000 and 5000;
* a baseline on each target with the same data: one transaction with
  ``DELETE FROM children WHERE parent_id IN (SELECT id FROM parents WHERE done_at <= :cutoff)``
  and ``DELETE FROM parents WHERE done_at <= :cutoff``, no audit. It runs twice per
  target (before and after that target's retention runs, each on fresh data); the ratio
  uses the mean of the two;
* memory: SQLite, batch 1000, with N and with 4N due rows.

Every measurement runs in a fresh child process (``python bench/delete_throughput.py
--worker SPEC``) on freshly loaded data. The child imports everything, opens the
policy and makes a dry run (drivers loaded, tables reflected), then resets its peak
RSS (``echo 5 > /proc/self/clear_refs``) and records ``VmHWM`` from /proc/self/status
before and after the timed call; the growth is the peak RSS during the run above the
RSS it started at. The child logs as ``retention run`` does (JSON on stderr, level
info, one ``batch_committed`` line per batch), into a file. After each run the parent
checks what is left in the target and how many records the audit store holds.

Usage: python bench/delete_throughput.py [--rows 50000] [--batches 100,1000,5000]
       [--no-postgres] [--json] [--profile sqlite-sqlite:1000]
Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

AS_OF = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CUTOFF = dt.datetime(2025, 3, 1, 12, 0)  # 1 year before AS_OF, naive UTC like the column
DUE_START = dt.datetime(2020, 1, 1)  # due rows: DUE_START + id seconds
NOT_DUE = dt.datetime(2026, 2, 28)  # not due for another year
CONFIGS = {  # name: (target, audit)
    "sqlite-sqlite": ("sqlite", "sqlite"),
    "pg-sqlite": ("postgresql", "sqlite"),
    "pg-pg": ("postgresql", "postgresql"),
}
LABELS = {"sqlite-sqlite": "SQLite target, SQLite audit",
          "pg-sqlite": "PostgreSQL target, SQLite audit",
          "pg-pg": "PostgreSQL target, audit in same PostgreSQL db"}


def tables() -> tuple[sa.MetaData, sa.Table, sa.Table]:
    meta = sa.MetaData()
    parents = sa.Table("parents", meta,
                       sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                       sa.Column("done_at", sa.DateTime, nullable=False),
                       sa.Column("note", sa.String(40)))
    children = sa.Table("children", meta,
                        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                        sa.Column("parent_id", sa.Integer, sa.ForeignKey("parents.id"),
                                  nullable=False, index=True),
                        sa.Column("note", sa.String(40)))
    return meta, parents, children


# -- the child process ------------------------------------------------------------------

def status_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def reset_peak() -> bool:
    """Set VmHWM to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import gc

    from retention import logs
    from retention.db import create_engine, writing
    from retention.policy.load import load_policy
    from retention.run import engine

    logs.configure("info", json=True)
    if spec["kind"] == "retention":
        policy = load_policy(Path(spec["policy"]))
        warm = engine.run(policy, AS_OF, dry_run=True)
        assert warm.rules[0].due == spec["rows"], warm.rules[0]

        def call() -> dict[str, Any]:
            outcome = engine.run(policy, AS_OF)
            rule = outcome.rules[0]
            return {"status": rule.status.value, "deleted": rule.deleted,
                    "children": rule.children.get("children", 0), "error": rule.error}
    else:
        eng = create_engine(spec["target"])
        with eng.connect() as conn:
            conn.execute(sa.text("SELECT count(*) FROM parents")).scalar_one()
        cutoff = sa.bindparam("cutoff", CUTOFF, type_=sa.DateTime)
        del_children = sa.text("DELETE FROM children WHERE parent_id IN "
                               "(SELECT id FROM parents WHERE done_at <= :cutoff)"
                               ).bindparams(cutoff)
        del_parents = sa.text("DELETE FROM parents WHERE done_at <= :cutoff").bindparams(cutoff)

        def call() -> dict[str, Any]:
            with writing(eng) as conn:
                kids = conn.execute(del_children).rowcount
                gone = conn.execute(del_parents).rowcount
            return {"status": "ok", "deleted": gone, "children": kids, "error": None}

    profiler = None
    if spec.get("profile"):
        import cProfile
        profiler = cProfile.Profile()
    gc.collect()
    exact = reset_peak()
    rss0, hwm0 = status_kb("VmRSS"), status_kb("VmHWM")
    if profiler:
        profiler.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    result = call()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profiler:
        profiler.disable()
    hwm1 = status_kb("VmHWM")
    result.update(wall_s=wall, cpu_s=cpu, rss_start_kb=rss0, hwm_kb=hwm1,
                  peak_growth_kb=hwm1 - (rss0 if exact else hwm0), exact_peak=exact)
    if profiler:
        import io
        import pstats
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        Path(spec["profile"]).write_text(out.getvalue())
    return result


# -- the parent -------------------------------------------------------------------------

class Bench:
    def __init__(self, rows: int, tmp: Path, server: Any) -> None:
        self.rows = rows
        self.tmp = tmp
        self.server = server
        self.count = 0
        self.templates: dict[int, Path] = {}

    def _name(self) -> str:
        self.count += 1
        return f"m{self.count:02d}"

    # data -----------------------------------------------------------------------------

    def _sqlite_template(self, due: int) -> Path:
        """A SQLite file with the data, built once per size and copied per measurement."""
        if due not in self.templates:
            path = self.tmp / f"template-{due}.db"
            meta, parents, children = tables()
            eng = sa.create_engine(f"sqlite:///{path}")
            meta.create_all(eng)
            step = 20000
            with eng.begin() as conn:
                for lo in range(1, 2 * due + 1, step):
                    ids = range(lo, min(lo + step, 2 * due + 1))
                    conn.execute(parents.insert(), [
                        {"id": i, "note": f"parent {i}",
                         "done_at": DUE_START + dt.timedelta(seconds=i) if i % 2 else NOT_DUE}
                        for i in ids])
                    conn.execute(children.insert(), [
                        {"id": i, "parent_id": i, "note": f"child {i}"} for i in ids])
                conn.exec_driver_sql("ANALYZE")
            eng.dispose()
            self.templates[due] = path
        return self.templates[due]

    def _postgres_db(self, name: str, due: int) -> str:
        url: str = self.server.create_database(name)
        meta, _, _ = tables()
        eng = sa.create_engine(url)
        meta.create_all(eng)
        with eng.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO parents (id, done_at, note) SELECT g, CASE WHEN g % 2 = 1 "
                "THEN CAST(:start AS timestamp) + g * interval '1 second' "
                "ELSE CAST(:not_due AS timestamp) END, 'parent ' || g "
                "FROM generate_series(1, :n) AS g"),
                {"start": DUE_START, "not_due": NOT_DUE, "n": 2 * due})
            conn.execute(sa.text(
                "INSERT INTO children (id, parent_id, note) SELECT g, g, 'child ' || g "
                "FROM generate_series(1, :n) AS g"), {"n": 2 * due})
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        eng.dispose()
        return url

    def prepare(self, target: str, audit: str | None, batch: int | None, due: int
                ) -> dict[str, Any]:
        name = self._name()
        if target == "sqlite":
            path = self.tmp / f"{name}-target.db"
            shutil.copyfile(self._sqlite_template(due), path)
            target_url = f"sqlite:///{path}"
        else:
            target_url = self._postgres_db(name, due)
        spec: dict[str, Any] = {"name": name, "target": target_url, "rows": due,
                                "kind": "baseline" if audit is None else "retention"}
        if audit is not None:
            audit_url = (f"sqlite:///{self.tmp / (name + '-audit.db')}" if audit == "sqlite"
                         else target_url)
            policy = self.tmp / f"{name}-policy.yaml"
            policy.write_text(
                "policy: bench\ntimezone: UTC\n"
                f"sources:\n  db:\n    adapter: sql\n    url: {target_url}\n"
                f"audit:\n  url: {audit_url}\n"
                "defaults:\n  source: db\n  max_fraction: 1.0\n"
                "rules:\n  parents:\n    table: parents\n    retain: 1 year after done_at\n"
                f"    batch_size: {batch}\n"
                "    children:\n      - {table: children, key: parent_id}\n")
            spec.update(audit=audit_url, policy=str(policy), batch=batch)
        return spec

    def check(self, spec: dict[str, Any]) -> None:
        """The target keeps exactly the not-due rows; the audit store holds 2N records."""
        due = spec["rows"]
        eng = sa.create_engine(spec["target"])
        with eng.connect() as conn:
            left = conn.execute(sa.text("SELECT count(*), min(done_at) FROM parents")).one()
            kids = conn.execute(sa.text("SELECT count(*) FROM children")).scalar_one()
        eng.dispose()
        assert left[0] == due and kids == due, (spec["name"], left, kids)
        if spec["kind"] == "retention":
            eng = sa.create_engine(spec["audit"])
            with eng.connect() as conn:
                records = conn.execute(sa.text(
                    "SELECT count(*) FROM retention_log WHERE kind = 'record'")).scalar_one()
            eng.dispose()
            assert records == 2 * due, (spec["name"], records)

    def cleanup(self, spec: dict[str, Any]) -> None:
        if spec["target"].startswith("postgresql"):
            self.server.drop_database(spec["name"])
        for path in self.tmp.glob(f"{spec['name']}-*"):
            if path.is_dir():  # the SQLite audit store's lease files
                shutil.rmtree(path)
            else:
                path.unlink()

    # measuring ------------------------------------------------------------------------

    def measure(self, config: str | None, target: str, batch: int | None, due: int,
                profile: Path | None = None) -> dict[str, Any]:
        audit = None if config is None else CONFIGS[config][1]
        spec = self.prepare(target, audit, batch, due)
        if profile is not None:
            spec["profile"] = str(profile)
        log = self.tmp / f"{spec['name']}.log"
        with log.open("wb") as err:
            done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                                  stdout=subprocess.PIPE, stderr=err, check=False)
        if done.returncode != 0:
            sys.stderr.write(log.read_text(errors="replace")[-4000:])
            raise SystemExit(f"measurement {spec['name']} failed ({done.returncode})")
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        if result["status"] != "ok" or result["deleted"] != due or result["children"] != due:
            raise SystemExit(f"measurement {spec['name']}: unexpected outcome {result}")
        self.check(spec)
        batches = sum(1 for line in log.read_text().splitlines()
                      if '"batch_committed"' in line)
        log.unlink()
        self.cleanup(spec)
        result.update(config=config or f"{target}-baseline", target=target, batch=batch,
                      due=due, rows_deleted=2 * due, batches=batches,
                      rows_per_s=2 * due / result["wall_s"])
        return result


def show(r: dict[str, Any]) -> str:
    batch = "-" if r["batch"] is None else str(r["batch"])
    ratio = f"{r['ratio']:6.1f}" if r.get("ratio") else "     -"
    return (f"{r['config']:19} {batch:>6} {r['due']:>7} {r['wall_s']:8.3f} {r['cpu_s']:8.3f} "
            f"{r['rows_per_s']:9.0f} {ratio} {r['peak_growth_kb'] / 1024:9.1f} "
            f"{r['batches']:>7}")


HEADER = (f"{'config':19} {'batch':>6} {'due':>7} {'wall s':>8} {'cpu s':>8} {'rows/s':>9} "
          f"{'ratio':>6} {'peak MiB':>9} {'batches':>7}")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="due rows N (default 50000)")
    parser.add_argument("--batches", default="100,1000,5000", help="batch sizes")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--profile", metavar="CONFIG:BATCH",
                        help="only profile one run with cProfile (e.g. pg-pg:1000)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    from retention import testing

    batches = [int(b) for b in args.batches.split(",")]
    started, load_before = time.monotonic(), loadavg()
    with tempfile.TemporaryDirectory(prefix="retention-bench-") as tmp:
        use_pg = not args.no_postgres and (
            args.profile is None or not args.profile.startswith("sqlite"))
        server = testing.start_postgres() if use_pg else None
        try:
            bench = Bench(args.rows, Path(tmp), server)
            if args.profile:
                config, batch = args.profile.split(":")
                out = Path(tmp) / "profile.txt"
                r = bench.measure(config, CONFIGS[config][0], int(batch), args.rows, out)
                print(f"{config} batch {batch}: {r['wall_s']:.3f} s, "
                      f"{r['rows_per_s']:.0f} rows/s")
                print(out.read_text())
                return 0
            results: list[dict[str, Any]] = []
            baselines: dict[str, list[float]] = {}

            def run(config: str | None, target: str, batch: int | None, due: int) -> None:
                r = bench.measure(config, target, batch, due)
                if config is None:
                    baselines.setdefault(target, []).append(r["wall_s"])
                results.append(r)
                print(f"  {time.monotonic() - started:6.1f} s  {show(r)}", file=sys.stderr)

            targets = ["sqlite"] + (["postgresql"] if use_pg else [])
            for target in targets:
                run(None, target, None, args.rows)
                for config, (t, _) in CONFIGS.items():
                    if t == target:
                        for b in batches:
                            run(config, target, b, args.rows)
                run(None, target, None, args.rows)
            memory = [bench.measure("sqlite-sqlite", "sqlite", 1000, n)
                      for n in (args.rows, 4 * args.rows)]
        finally:
            if server is not None:
                server.stop()
    for r in results:
        if r["config"] in CONFIGS:
            r["baseline_s"] = statistics.mean(baselines[r["target"]])
            r["ratio"] = r["wall_s"] / r["baseline_s"]
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(), "python": sys.version.split()[0],
        "sqlite": __import__("sqlite3").sqlite_version, "rows": args.rows,
        "total_s": round(time.monotonic() - started, 1), "results": results,
        "loadavg_before": load_before, "loadavg_after": loadavg(),
        "memory": memory,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"N = {args.rows} due parents (+ N children; + 2N rows not due), "
          f"{os.cpu_count()} cores, Python {report['python']}, SQLite {report['sqlite']}")
    print(HEADER)
    for r in results:
        print(show(r))
    for target, times in baselines.items():
        print(f"baseline {target}: " + ", ".join(f"{t:.3f} s" for t in times)
              + f" (mean {statistics.mean(times):.3f} s)")
    print("memory, sqlite-sqlite batch 1000:")
    for r in memory:
        print(show(r))
    small, large = memory
    print(f"peak RSS growth {large['due']} / {small['due']} due rows: "
          f"{large['peak_growth_kb'] / 1024:.1f} / {small['peak_growth_kb'] / 1024:.1f} MiB = "
          f"x{large['peak_growth_kb'] / max(1, small['peak_growth_kb']):.2f} "
          f"(time x{large['wall_s'] / small['wall_s']:.2f})")
    print(f"total benchmark time {report['total_s']} s; load average before "
          f"{report['loadavg_before']}, after {report['loadavg_after']}")
    print("wall s: engine.run (or the baseline transaction); cpu s: CPU of the Python "
          "process only (not the PostgreSQL server); ratio: wall / mean baseline wall; "
          "peak MiB: VmHWM growth during the call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
