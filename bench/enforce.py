"""Issue 9's benchmark: ``retention run`` against the raw DELETE, Laravel and Django.

One command measures, in one invocation and on the same data, what issue 9's targets are
ratios of:

* wall time (median of ``--repeats``, each on a fresh copy of the data) of deleting the
  due orders and their lines: the raw DELETE (the limit), Laravel's ``MassPrunable``
  loop, Django's ``QuerySet.delete()`` whole and in 10k chunks, and ``retention run``
  (audit in the same PostgreSQL at batch 1000 and 10000, and a SQLite audit store), on
  a time-ordered and a random layout; ratio = median / median of the raw DELETE;
* peak RSS of each measured process (``ru_maxrss`` from ``wait4``), the longest single
  transaction (``pg_stat_activity`` sampled every 20 ms), ``audit verify`` time;
* OLTP latency (pgbench, fixed rate, custom script on the same tables): p99 idle, during
  the raw DELETE and during ``retention run``;
* ``retention report`` as a whole command vs ``psql`` ``count(*)``, and their SQL alone
  (server log); ``retention --help``;
* ``audit export`` and ``audit verify`` at two sizes (N/10 and N orders' records);
* the same on MariaDB against its own raw DELETE (and Laravel's MySQL statement);
* a table partitioned by month (``--partition-months``): raw DELETE vs dropping the due
  partitions (what the partition feature should approach) vs ``retention run`` row by row
  (``drop_partitions: false``) vs ``retention run`` dropping the wholly due partitions
  (the default; ``--partition-option`` adds rule lines).

Every measured run is checked: exactly the due rows are gone (count and sum of ids per
table), and for retention the run's JSON counts, one audit record per deleted row (count
and sum of key ids per table) and ``retention audit verify`` exit 0. A wrong result stops
the benchmark.

PostgreSQL runs with fsync, synchronous_commit and full_page_writes on (a cluster from
``retention.testing.start_postgres``, switched with ALTER SYSTEM). MariaDB from
``retention.testing.start_mariadb`` with ``innodb_flush_log_at_trx_commit = 1`` (the
doublewrite buffer stays off: it is fixed at start-up).

Usage (the project's virtualenv; Linux; root or a user that can run the servers):

    .venv/bin/python bench/enforce.py [--orders 1000000] [--quick] [--repeats 3]
        [--layouts time,random] [--no-mariadb] [--no-django] [--no-oltp]
        [--no-partition] [--no-export] [--big] [--json FILE]

Django is installed (from PyPI) into bench/.venv-django on first use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import baselines
import observe
import sqlalchemy as sa
import workload
from workload import AS_OF, Expected, WrongResult

BENCH = Path(__file__).resolve().parent
RETENTION = Path(sys.executable).with_name("retention")
DJANGO_VENV = BENCH / ".venv-django"
DJANGO_REQUIREMENTS = ["Django>=5.2,<6", "psycopg[binary]>=3.1", "PyMySQL>=1.1"]

VARIANTS = {  # key: (label, kinds)
    "raw": ("raw DELETE lines, then orders, one transaction (the limit)", "pm"),
    "laravel": ("Laravel MassPrunable loop, 1000 a statement (lines model first)", "pm"),
    "django": ("Django QuerySet.delete(), ForeignKey CASCADE", "pm"),
    "django_10k": ("Django delete() in 10k chunks of pks", "pm"),
    "ret_1000": ("retention run, audit in the same database, batch 1000", "pm"),
    "ret_10000": ("retention run, audit in the same database, batch 10000", "p"),
    "ret_sqlite": ("retention run, SQLite audit store, batch 1000", "p"),
    "ret_default": ("retention run, audit in the same database, default batch sizing "
                    "(<= 50000)", "pm"),
    "ret_sqlite_default": ("retention run, SQLite audit store, default batch sizing", "p"),
}
BATCH = {"ret_1000": 1000, "ret_10000": 10000, "ret_sqlite": 1000, "ret_default": 50000,
         "ret_sqlite_default": 50000}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- processes --------------------------------------------------------------------------

def spawn(argv: list[str], out: Path, err: Path, during: Callable[[], None] | None = None
          ) -> dict[str, Any]:
    """Run ``argv`` to the end; wall time, exit code, peak RSS and CPU of that process."""
    with out.open("wb") as fout, err.open("wb") as ferr:
        t0 = time.perf_counter()
        epoch0 = time.time()
        proc = subprocess.Popen(argv, stdout=fout, stderr=ferr, stdin=subprocess.DEVNULL)
        if during is not None:
            during()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "code": proc.returncode, "rss_mb": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime, "start_epoch": epoch0,
            "end_epoch": time.time()}


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def ensure_django_venv() -> Path:
    python = DJANGO_VENV / "bin" / "python"
    probe = [str(python), "-c", "import django, psycopg, pymysql"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    log(f"creating {DJANGO_VENV} ({', '.join(DJANGO_REQUIREMENTS)})")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(DJANGO_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *DJANGO_REQUIREMENTS],
                   check=True)
    return python


# -- machine ----------------------------------------------------------------------------

def machine(workdir: Path) -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    df = subprocess.run(["df", "-hT", str(workdir)], capture_output=True, text=True).stdout
    device = df.splitlines()[-1].split() if df else []
    rotational = "?"
    if device and device[0].startswith("/dev/"):
        flag = Path(f"/sys/block/{Path(device[0]).name}/queue/rotational")
        if flag.exists():
            rotational = f"rotational={flag.read_text().strip()}"
    versions = {"python": platform.python_version(), "sqlalchemy": sa.__version__}
    for name in ("retention", "psycopg", "PyMySQL", "pendulum", "structlog"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "?"
    pgbench = subprocess.run(["pgbench", "--version"], capture_output=True, text=True)
    versions["pgbench"] = pgbench.stdout.strip().replace("pgbench (PostgreSQL) ", "") or "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(mem / 1024 / 1024, 1),
            "kernel": platform.release(),
            "disk": (f"{device[0]} {device[1]} ({rotational}), {device[2]}"
                     if len(device) > 2 else "?"),
            "versions": versions}


# -- servers ----------------------------------------------------------------------------

def durable_postgres() -> Any:
    """A throwaway cluster from retention.testing, switched to fsync on (ALTER SYSTEM)."""
    from retention.testing import start_postgres

    server = start_postgres()
    try:
        return server, _durable(server)
    except BaseException:
        server.stop()
        raise


def _durable(server: Any) -> dict[str, str]:
    eng = workload.engine(server.url, autocommit=True)
    with eng.connect() as conn:
        for setting in ("fsync = on", "synchronous_commit = on", "full_page_writes = on",
                        "log_line_prefix = '%%m [%%p] db=%%d app=%%a '"):
            conn.exec_driver_sql(f"ALTER SYSTEM SET {setting}")
        conn.exec_driver_sql("SELECT pg_reload_conf()")
        time.sleep(0.5)
        settings = {}
        for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes",
                     "shared_buffers", "max_wal_size", "wal_level"):
            settings[name] = conn.exec_driver_sql(f"SHOW {name}").scalar_one()
    eng.dispose()
    if settings["fsync"] != "on" or settings["synchronous_commit"] != "on":
        raise SystemExit(f"could not switch PostgreSQL to fsync on: {settings}")
    return settings


def durable_mariadb() -> Any:
    from retention.testing import start_mariadb

    server = start_mariadb()
    try:
        eng = workload.engine(server.url, autocommit=True)
        with eng.connect() as conn:
            conn.exec_driver_sql("SET GLOBAL innodb_flush_log_at_trx_commit = 1")
            settings = {}
            for name in ("version", "innodb_flush_log_at_trx_commit", "innodb_doublewrite",
                         "innodb_buffer_pool_size", "log_bin"):
                settings[name] = str(conn.exec_driver_sql(f"SELECT @@{name}").scalar_one())
        eng.dispose()
    except BaseException:
        server.stop()
        raise
    return server, settings


# -- the benchmark ----------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.work = workdir
        self.results: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.django_python: Path | None = None
        self.counter = 0
        self.saved: Callable[[], Any] = lambda: None  # writes the JSON so far

    # helpers ------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.work / name

    def sqlite_audit(self, name: str) -> str:
        """A new SQLite audit store (a left-over one from an earlier run is removed)."""
        for old in self.work.glob(f"{name}-audit.db*"):
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        return f"sqlite:///{self.path(name + '-audit.db')}"

    def policy(self, name: str, target: str, audit: str, batch: int, **kw: Any) -> Path:
        path = self.path(f"{name}.yaml")
        path.write_text(workload.policy_text(target, audit, batch, **kw))
        return path

    def retention(self, name: str, *args: str, during: Callable[[], None] | None = None
                  ) -> dict[str, Any]:
        return spawn([str(RETENTION), *args], self.path(f"{name}.out"),
                     self.path(f"{name}.err"), during)

    def cutoff(self, target_url: str, exp: Expected, name: str, **kw: Any) -> str:
        """The rule's cutoff from ``retention report`` (its due count checked too)."""
        policy = self.policy(name, target_url, self.sqlite_audit(name),
                             1000, **kw)
        r = self.retention(name, "report", str(policy), "--as-of", AS_OF, "--format", "json")
        if r["code"] != 0:
            raise SystemExit(f"retention report failed:\n{tail(self.path(name + '.err'))}")
        rule = json.loads(self.path(f"{name}.out").read_text())["rules"][0]
        if rule["due"] != exp.due_orders:
            raise WrongResult(f"report says {rule['due']} due, the design {exp.due_orders}")
        cutoff: str = rule["cutoff"]
        if not "2018-06-01" < cutoff < "2019-01-01":
            raise WrongResult(f"cutoff {cutoff} outside the gap in the data")
        return cutoff

    def verify(self, name: str, policy: Path) -> dict[str, Any]:
        v = self.retention(f"{name}-verify", "audit", "verify", str(policy))
        if v["code"] != 0:
            raise WrongResult(f"{name}: audit verify exit {v['code']}:\n"
                              f"{tail(self.path(name + '-verify.out'))}"
                              f"{tail(self.path(name + '-verify.err'))}")
        return v

    def run_retention(self, name: str, db: Any, target: str, audit: str, batch: int,
                      exp: Expected, table: str = "orders", lines: bool = True,
                      during: Callable[[], None] | None = None, extra: str = ""
                      ) -> dict[str, Any]:
        policy = self.policy(name, target, audit, batch, table=table, children=lines,
                             where=lines, extra=extra)
        sampler = (observe.XactSampler(db.admin_url, sa.engine.make_url(target).database)
                   if db.kind == "postgresql" else None)
        try:
            r = self.retention(name, "run", str(policy), "--as-of", AS_OF, "--format", "json",
                               during=during)
        finally:
            watched = sampler.stop() if sampler else {}
        if r["code"] != 0:
            raise WrongResult(f"{name}: retention run exit {r['code']}:\n"
                              f"{tail(self.path(name + '.out'))}{tail(self.path(name + '.err'))}")
        rule = json.loads(self.path(f"{name}.out").read_text())["rules"][0]
        children = rule.get("children") or {}
        if (rule["status"] != "ok" or rule["deleted"] != exp.due_orders
                or (lines and children.get("order_lines") != exp.due_lines)):
            raise WrongResult(f"{name}: run says {rule}")
        workload.check_target(target, exp, table, lines)
        records = workload.check_audit(audit, exp, table, lines)
        v = self.verify(name, policy)
        r.update(watched, **log_times(self.path(f"{name}.err")), records=records,
                 verify_s=v["wall_s"],
                 verify_rss_mb=v["rss_mb"], policy=str(policy))
        return r

    def run_django(self, name: str, url: str, cutoff: str, mode: str, exp: Expected
                   ) -> dict[str, Any]:
        assert self.django_python is not None
        spec = json.dumps({"url": url, "cutoff": cutoff, "mode": mode, "chunk": 10000})
        r = spawn([str(self.django_python), str(BENCH / "django_delete.py"), spec],
                  self.path(f"{name}.out"), self.path(f"{name}.err"))
        if r["code"] != 0:
            raise SystemExit(f"{name}: Django failed:\n{tail(self.path(name + '.err'))}")
        inner = json.loads(self.path(f"{name}.out").read_text().strip().splitlines()[-1])
        deleted = inner["deleted"]
        if (deleted.get("django_shop.Order") != exp.due_orders
                or deleted.get("django_shop.OrderLine") != exp.due_lines):
            raise WrongResult(f"{name}: Django deleted {deleted}")
        # the delete calls alone; the process (interpreter and Django setup) beside it
        r.update(process_s=r["wall_s"], wall_s=inner["wall_s"], statements=inner["statements"],
                 django=inner["django"])
        return r

    def measure(self, db: Any, template: str, layout: str, variant: str, rep: int,
                exp: Expected, cutoff: str, keep: bool = False) -> dict[str, Any]:
        kind = db.kind
        self.counter += 1
        name = f"{kind[0]}{layout[0]}_{variant}_{rep}"
        url = db.copy(template, name)
        when = dt.datetime.fromisoformat(cutoff)
        if kind != "postgresql":
            when = when.astimezone(dt.UTC).replace(tzinfo=None)
        log(f"{kind} {layout} {variant} #{rep} ...")
        r: dict[str, Any]
        if variant in ("raw", "laravel"):
            sampler = (observe.XactSampler(db.admin_url, name) if kind == "postgresql"
                       else None)
            try:
                r = (baselines.raw_delete(url, when) if variant == "raw"
                     else baselines.laravel_prune(url, kind, when))
            finally:
                r_watch = sampler.stop() if sampler else {}
            if r["rows"] != [exp.due_lines, exp.due_orders]:
                raise WrongResult(f"{name}: deleted {r['rows']}")
            r.update(r_watch)
            workload.check_target(url, exp)
        elif variant.startswith("django"):
            sampler = (observe.XactSampler(db.admin_url, name) if kind == "postgresql"
                       else None)
            try:
                r = self.run_django(name, url, cutoff,
                                    "whole" if variant == "django" else "chunked", exp)
            finally:
                r_watch = sampler.stop() if sampler else {}
            r.update(r_watch)
            workload.check_target(url, exp)
        else:
            batch = BATCH[variant]
            audit = (self.sqlite_audit(name) if variant.startswith("ret_sqlite")
                     else url)
            r = self.run_retention(name, db, url, audit, batch, exp)
        r.update(target=kind, layout=layout, variant=variant, rep=rep, db=name, url=url,
                 load1_after=float(loadavg().split()[0]))
        log(f"  {r['wall_s']:.2f} s" + (f", RSS {r['rss_mb']:.0f} MB" if "rss_mb" in r else "")
            + (f", longest xact {r['longest_xact_s']:.3f} s" if "longest_xact_s" in r else ""))
        if not keep:
            db.drop(name)
        self.results.append(r)
        self.saved()
        return r

    # phases -------------------------------------------------------------------------

    def variants(self, kind: str) -> list[str]:
        letter = "p" if kind == "postgresql" else "m"
        chosen = set(self.args.variants.split(",")) if self.args.variants else set(VARIANTS)
        return [v for v, (_, kinds) in VARIANTS.items() if letter in kinds and v in chosen
                and (self.args.django or not v.startswith("django"))]

    def deletes(self, db: Any, template: str, layout: str, exp: Expected, cutoff: str
                ) -> dict[str, Any] | None:
        """Every variant, ``--repeats`` rounds, variants interleaved within a round.
        Returns the kept database of the first batch-1000 retention run (for export)."""
        kept = None
        slow: set[str] = set()  # variants whose first run took longer than --slow
        for rep in range(1, self.args.repeats + 1):
            for variant in self.variants(db.kind):
                if variant in slow:
                    continue
                keep = (rep == 1 and variant == "ret_1000" and layout == "time"
                        and db.kind == "postgresql" and self.args.export)
                r = self.measure(db, template, layout, variant, rep, exp, cutoff, keep)
                if keep:
                    kept = r
                if r["wall_s"] > self.args.slow and not variant.startswith("ret"):
                    slow.add(variant)
                    log(f"  {variant} took over {self.args.slow:.0f} s: measured once")
        return kept

    def report_timing(self, pg: workload.Postgres, server: Any, template: str, layout: str,
                      exp: Expected, copy: bool = True) -> dict[str, Any]:
        """``retention report`` (whole command) vs ``psql -c 'select count(*)'``, and the
        SQL of each from the server log. The report writes nothing to the target (its
        audit store is a SQLite file), so ``copy=False`` reads the template itself."""
        name = f"rep_{layout[0]}" if copy else template
        url = pg.copy(template, name) if copy else pg.url(name)
        pg.execute(f'ALTER DATABASE "{name}" SET log_min_duration_statement = 0')
        policy = self.policy(name, url, self.sqlite_audit(name), 1000)
        server_log = Path(server.directory) / "postgres.log"
        u = sa.engine.make_url(url)
        count_sql = (f"SELECT count(*) FROM orders WHERE status = 'completed' "
                     f"AND completed_at <= '{self.cutoff_of[layout]}'")
        lines_sql = (f"SELECT count(*) FROM order_lines WHERE order_id IN (SELECT id FROM orders"
                     f" WHERE status = 'completed' AND completed_at <= '{self.cutoff_of[layout]}')")
        psql = [shutil.which("psql") or "psql", "-X", "-h", str(u.host), "-p", str(u.port),
                "-U", str(u.username), "-d", name, "-Atc", count_sql]
        out: dict[str, Any] = {"layout": layout, "orders": exp.orders, "report_s": [],
                               "psql_s": [], "report_rss_mb": 0.0}
        for i in range(3):
            offset = observe.log_offset(server_log)
            r = self.retention(f"{name}-{i}", "report", str(policy), "--as-of", AS_OF,
                               "--format", "json")
            if r["code"] != 0:
                raise SystemExit(f"report failed:\n{tail(self.path(f'{name}-{i}.err'))}")
            got = json.loads(self.path(f"{name}-{i}.out").read_text())["rules"][0]["due"]
            if got != exp.due_orders:
                raise WrongResult(f"report: due {got}, expected {exp.due_orders}")
            out["report_s"].append(r["wall_s"])
            out["report_rss_mb"] = max(out["report_rss_mb"], r["rss_mb"])
            time.sleep(0.3)
            sql = observe.statement_ms(server_log, offset, name)
            out.setdefault("report_sql_ms", []).append(sum(sql))
            out.setdefault("report_sql_statements", []).append(len(sql))
            out.setdefault("report_sql_max_ms", []).append(max(sql, default=0.0))
            offset = observe.log_offset(server_log)
            p = spawn(psql, self.path(f"{name}-psql.out"), self.path(f"{name}-psql.err"))
            if self.path(f"{name}-psql.out").read_text().strip() != str(exp.due_orders):
                raise WrongResult(f"psql count: {tail(self.path(name + '-psql.out'))}"
                                  f"{tail(self.path(name + '-psql.err'))}")
            out["psql_s"].append(p["wall_s"])
            time.sleep(0.3)
            out.setdefault("count_sql_ms", []).append(
                sum(observe.statement_ms(server_log, offset, name)))
            # the same figures by hand: the due orders and the lines they would take
            offset = observe.log_offset(server_log)
            both = [*psql[:-1], count_sql, "-c", lines_sql]
            p = spawn(both, self.path(f"{name}-psql2.out"), self.path(f"{name}-psql2.err"))
            if self.path(f"{name}-psql2.out").read_text().split() != [
                    str(exp.due_orders), str(exp.due_lines)]:
                raise WrongResult(f"psql counts: {tail(self.path(name + '-psql2.out'))}")
            time.sleep(0.3)
            out.setdefault("figures_sql_ms", []).append(
                sum(observe.statement_ms(server_log, offset, name)))
        if copy:
            pg.drop(name)
        return out

    def export_timing(self, db: Any, kept: dict[str, Any], label: str) -> dict[str, Any]:
        """``audit export`` (to a file, lines counted) and ``audit verify`` of a store."""
        policy = Path(kept["policy"])
        name = f"export_{label.split()[0]}"
        e = spawn([str(RETENTION), "audit", "export", str(policy), "--format", "jsonl"],
                  self.path(f"{name}.jsonl"), self.path(f"{name}.err"))
        if e["code"] != 0:
            raise WrongResult(f"audit export exit {e['code']}:\n{tail(self.path(name + '.err'))}")
        lines = sum(1 for _ in self.path(f"{name}.jsonl").open("rb"))
        if lines != kept["records"]:
            raise WrongResult(f"audit export: {lines} lines, {kept['records']} records")
        self.path(f"{name}.jsonl").unlink()
        v = self.verify(name, policy)
        db.drop(kept["db"])
        return {"label": label, "records": kept["records"], "export_s": e["wall_s"],
                "export_rss_mb": e["rss_mb"], "verify_s": v["wall_s"],
                "verify_rss_mb": v["rss_mb"], "run_s": kept["wall_s"],
                "run_rss_mb": kept["rss_mb"], "due_rows": kept["records"]}

    def oltp(self, pg: workload.Postgres, template: str, layout: str, exp: Expected,
             cutoff: str) -> dict[str, Any]:
        """pgbench p99: idle, during the raw DELETE, during retention (audit in the same
        database, ``--oltp-variant``: batch <= 1000 by default, as in the issue)."""
        a = self.args
        nlive = exp.orders - exp.due_orders
        out: dict[str, Any] = {"layout": layout, "rate": a.oltp_rate, "clients": a.oltp_clients}
        warm = 3.0

        def medians(variant: str) -> float:
            walls = [r["wall_s"] for r in self.results if r["target"] == "postgresql"
                     and r["layout"] == layout and r["variant"] == variant]
            return median(walls) if walls else 60.0

        # idle
        name = f"o{layout[0]}_idle"
        url = pg.copy(template, name)
        bench = observe.Pgbench(url, self.work, name, a.oltp_rate, a.oltp_clients,
                                int(a.oltp_idle + warm), nlive)
        bench.wait()
        start = bench.started + warm
        out["idle"] = observe.latency_summary(bench.latencies_ms(start, start + a.oltp_idle))
        pg.drop(name)
        log(f"  OLTP idle {layout}: {out['idle']}")

        # during the raw DELETE
        name = f"o{layout[0]}_raw"
        url = pg.copy(template, name)
        when = dt.datetime.fromisoformat(cutoff)
        bench = observe.Pgbench(url, self.work, name, a.oltp_rate, a.oltp_clients,
                                int(medians("raw") * 2 + warm + 10), nlive)
        time.sleep(warm)
        t0 = time.time()
        raw = baselines.raw_delete(url, when)
        t1 = time.time()
        bench.wait()
        out["raw"] = {**observe.latency_summary(bench.latencies_ms(t0, t1)),
                      "wall_s": raw["wall_s"]}
        workload.check_target(url, exp)
        pg.drop(name)
        log(f"  OLTP during raw DELETE {layout}: {out['raw']}")

        # during retention run
        name = f"o{layout[0]}_ret"
        url = pg.copy(template, name)
        seconds = int(medians(a.oltp_variant) * 1.5 + warm + 20)
        bench = observe.Pgbench(url, self.work, name, a.oltp_rate, a.oltp_clients, seconds,
                                nlive)
        time.sleep(warm)
        r = self.run_retention(name, pg, url, url, BATCH[a.oltp_variant], exp)
        out["variant"] = a.oltp_variant
        pgbench_end = bench.started + seconds
        bench.wait()
        t0, t1 = r["start_epoch"], r["end_epoch"]
        out["retention"] = {**observe.latency_summary(bench.latencies_ms(t0, t1)),
                            "wall_s": r["wall_s"], "longest_xact_s": r["longest_xact_s"],
                            "covered": round(min(1.0, (pgbench_end - t0) / (t1 - t0)), 3)}
        pg.drop(name)
        log(f"  OLTP during retention {layout}: {out['retention']}")
        return out

    def profile(self, pg: workload.Postgres, template: str, exp: Expected) -> dict[str, Any]:
        """One more retention run (audit in the same PostgreSQL, batch 1000) under
        cProfile, through the console script; the top functions, the result checked."""
        import io
        import pstats

        name = "profile"
        url = pg.copy(template, name)
        policy = self.policy(name, url, url, 1000)
        prof = self.path("retention.prof")
        r = spawn([sys.executable, "-m", "cProfile", "-o", str(prof), str(RETENTION), "run",
                   str(policy), "--as-of", AS_OF, "--format", "json"],
                  self.path(f"{name}.out"), self.path(f"{name}.err"))
        rule = json.loads(self.path(f"{name}.out").read_text())["rules"][0]
        if rule["deleted"] != exp.due_orders:
            raise WrongResult(f"profiled run: {rule}")
        workload.check_target(url, exp)
        workload.check_audit(url, exp)
        pg.drop(name)
        text = io.StringIO()
        stats = pstats.Stats(str(prof), stream=text)
        total = stats.total_tt  # type: ignore[attr-defined]
        top = []
        for (file, line, func), (_cc, calls, tt, ct, _) in sorted(
                stats.stats.items(), key=lambda kv: -kv[1][2])[:15]:  # type: ignore[attr-defined]
            where = f"{Path(file).parent.name}/{Path(file).name}:{line}({func})"
            top.append({"function": where, "calls": calls, "tottime_s": round(tt, 3),
                        "cumtime_s": round(ct, 3), "share": round(tt / total, 3)})
        stats.sort_stats("cumulative").print_stats(60)
        self.path("profile.txt").write_text(text.getvalue())
        return {"wall_s": r["wall_s"], "profiled_s": total, "top_tottime": top,
                "cumulative_text": str(self.path("profile.txt"))}

    def partitions(self, pg: workload.Postgres) -> dict[str, Any]:
        """A table partitioned by month: raw DELETE vs dropping the due partitions vs
        retention row by row (drop_partitions: false) vs retention's drop_partitions."""
        n = self.args.orders
        log(f"loading the partitioned table ({n} orders)")
        exp = pg.load_partitioned("tpl_part", n, self.args.partition_months)
        cutoff = self.cutoff(pg.url("tpl_part"), exp, "part-cutoff", table="orders_part",
                             children=False, where=False)
        when = dt.datetime.fromisoformat(cutoff)
        out: dict[str, Any] = {"orders": n, "due": exp.due_orders, "cutoff": cutoff,
                               "months": self.args.partition_months,
                               "raw_s": [], "drop_s": [], "retention_s": [],
                               "retention_partitions_s": []}
        for rep in range(1, self.args.repeats + 1):
            name = f"part_raw_{rep}"
            url = pg.copy("tpl_part", name)
            r = baselines.raw_delete(url, when, baselines.RAW_PART)
            if r["rows"] != [exp.due_orders]:
                raise WrongResult(f"{name}: deleted {r['rows']}")
            workload.check_target(url, exp, "orders_part", lines=False)
            out["raw_s"].append(r["wall_s"])
            pg.drop(name)

            name = f"part_drop_{rep}"
            url = pg.copy("tpl_part", name)
            out["drop_s"].append(drop_due_partitions(url, when))
            workload.check_target(url, exp, "orders_part", lines=False)
            pg.drop(name)

            name = f"part_ret_{rep}"
            url = pg.copy("tpl_part", name)
            r = self.run_retention(name, pg, url, url, 1000, exp, "orders_part", lines=False,
                                   extra="drop_partitions: false")
            out["retention_s"].append(r["wall_s"])
            out["retention_rss_mb"] = r["rss_mb"]
            out["retention_longest_xact_s"] = r["longest_xact_s"]
            pg.drop(name)

            name = f"part_feat_{rep}"  # drop_partitions is on by default
            url = pg.copy("tpl_part", name)
            r = self.run_retention(name, pg, url, url, 1000, exp, "orders_part",
                                   lines=False, extra=self.args.partition_option)
            out["retention_partitions_s"].append(r["wall_s"])
            out.setdefault("retention_partitions_engine_s", []).append(r.get("engine_s"))
            out["retention_partitions_rss_mb"] = r["rss_mb"]
            out["retention_partitions_longest_xact_s"] = r["longest_xact_s"]
            out["partitions_dropped"] = len(json.loads(
                self.path(f"{name}.out").read_text())["rules"][0].get("partitions_dropped", []))
            pg.drop(name)
            log(f"  partitions #{rep}: raw {out['raw_s'][-1]:.2f} s, drop "
                f"{out['drop_s'][-1]:.2f} s, retention {out['retention_s'][-1]:.2f} s")
        pg.drop("tpl_part")
        return out

    # the whole run ------------------------------------------------------------------

    def postgres(self) -> None:
        a = self.args
        server, settings = durable_postgres()
        self.extra["postgresql_settings"] = settings
        pg = workload.Postgres(server.url)
        self.cutoff_of: dict[str, str] = {}
        try:
            h = [spawn([str(RETENTION), "--help"], self.path("help.out"),
                       self.path("help.err")) for _ in range(3)]
            self.extra["help_s"] = [r["wall_s"] for r in h]
            for layout in a.layouts:
                log(f"loading PostgreSQL {layout} ({a.orders} orders)")
                t0 = time.perf_counter()
                exp = pg.load(f"tpl_{layout}", layout, a.orders)
                self.extra[f"pg_load_{layout}_s"] = time.perf_counter() - t0
                self.extra[f"expected_{layout}"] = exp.as_dict()
                cutoff = self.cutoff(pg.url(f"tpl_{layout}"), exp, f"cutoff-{layout}")
                self.cutoff_of[layout] = cutoff
                self.extra["cutoff"] = cutoff
                self.extra.setdefault("report", []).append(
                    self.report_timing(pg, server, f"tpl_{layout}", layout, exp))
                self.saved()
                kept = self.deletes(pg, f"tpl_{layout}", layout, exp, cutoff)
                if kept is not None:
                    self.extra.setdefault("export", []).append(
                        self.export_timing(pg, kept, f"{exp.due_rows} records"))
                    self.saved()
                if a.profile and layout == a.layouts[0]:
                    self.extra["profile"] = self.profile(pg, f"tpl_{layout}", exp)
                    self.saved()
                if a.oltp:
                    self.extra.setdefault("oltp", []).append(
                        self.oltp(pg, f"tpl_{layout}", layout, exp, cutoff))
                    self.saved()
                pg.drop(f"tpl_{layout}")
            if a.export:
                small = max(1000, a.orders // 10)
                log(f"audit export/verify at {small} orders")
                exp = pg.load("tpl_small", "time", small)
                cutoff = self.cutoff(pg.url("tpl_small"), exp, "cutoff-small")
                kept = self.measure(pg, "tpl_small", "time", "ret_1000", 0, exp, cutoff,
                                    keep=True)
                self.extra.setdefault("export", []).insert(
                    0, self.export_timing(pg, kept, f"{exp.due_rows} records"))
                self.saved()
                pg.drop("tpl_small")
            if a.partition:
                self.extra["partitions"] = self.partitions(pg)
                self.saved()
            if a.big:
                n = 10 * a.orders
                log(f"loading {n} orders for the report comparison")
                exp = pg.load("tpl_big", "time", n)
                self.cutoff_of["big"] = self.cutoff(pg.url("tpl_big"), exp, "cutoff-big")
                self.extra.setdefault("report", []).append(
                    self.report_timing(pg, server, "tpl_big", "big", exp, copy=False))
                pg.drop("tpl_big")
        finally:
            pg.dispose()
            server.stop()

    def mariadb(self) -> None:
        a = self.args
        server, settings = durable_mariadb()
        self.extra["mariadb_settings"] = settings
        my = workload.MariaDB(server.url)
        try:
            for layout in a.layouts:
                log(f"loading MariaDB {layout} ({a.orders} orders)")
                t0 = time.perf_counter()
                exp = my.load(f"tpl_{layout}", layout, a.orders)
                self.extra[f"mariadb_load_{layout}_s"] = time.perf_counter() - t0
                self.extra[f"mariadb_expected_{layout}"] = exp.as_dict()
                cutoff = self.cutoff(my.url(f"tpl_{layout}"), exp, f"my-cutoff-{layout}")
                self.deletes(my, f"tpl_{layout}", layout, exp, cutoff)
                my.drop(f"tpl_{layout}")
        finally:
            my.dispose()
            server.stop()


def log_times(path: Path) -> dict[str, Any]:
    """From retention's JSON log: batches, the run's time inside the engine
    (run_started to run_finished; the rest of the wall time is start-up and exit), and
    the longest gap between consecutive batch commits (rule_planned to the first): one
    batch's transaction plus the Python work around it."""
    stamps: dict[str, list[dt.datetime]] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "timestamp" in event:
            when = dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            stamps.setdefault(event.get("event", ""), []).append(when)
    out: dict[str, Any] = {"batches": len(stamps.get("batch_committed", []))}
    if stamps.get("run_started") and stamps.get("run_finished"):
        out["engine_s"] = (stamps["run_finished"][-1] - stamps["run_started"][0]).total_seconds()
    marks = stamps.get("rule_planned", [])[:1] + stamps.get("batch_committed", [])
    if len(marks) > 1:
        out["longest_batch_gap_s"] = max((b - a).total_seconds()
                                         for a, b in itertools.pairwise(marks))
    return out


def drop_due_partitions(url: str, cutoff: dt.datetime) -> float:
    """What the partition feature should approach: in one transaction, detach and drop
    every partition whose upper bound is at or before the cutoff (all its rows due),
    then DELETE the due rows of the partition the cutoff falls in. No audit."""
    eng = workload.engine(url)
    try:
        with eng.connect() as conn:
            parts = conn.execute(sa.text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'orders_part'::regclass")).all()
            conn.rollback()
            whole = []
            for relname, bound in parts:
                upper = bound.split(" TO ('")[1].split("')")[0]
                if dt.datetime.fromisoformat(upper.replace(" ", "T")) <= cutoff:
                    whole.append(relname)
            t0 = time.perf_counter()
            with conn.begin():
                for relname in whole:
                    conn.exec_driver_sql(f"ALTER TABLE orders_part DETACH PARTITION {relname}")
                    conn.exec_driver_sql(f"DROP TABLE {relname}")
                conn.execute(sa.text(baselines.RAW_PART[0]),
                             {"status": "completed", "cutoff": cutoff})
            return time.perf_counter() - t0
    finally:
        eng.dispose()


# -- output -----------------------------------------------------------------------------

def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(r["target"], r["layout"], r["variant"]) for r in results if r["rep"] > 0},
                  key=lambda k: (k[0] != "postgresql", k[1] != "time", list(VARIANTS).index(k[2])))
    for target, layout, variant in keys:
        rs = [r for r in results if (r["target"], r["layout"], r["variant"]) ==
              (target, layout, variant) and r["rep"] > 0]
        raw = [r["wall_s"] for r in results if (r["target"], r["layout"], r["variant"]) ==
               (target, layout, "raw")]
        walls = [r["wall_s"] for r in rs]
        row = {"target": target, "layout": layout, "variant": variant,
               "label": VARIANTS[variant][0], "walls_s": walls, "median_s": median(walls),
               "ratio": median(walls) / median(raw) if raw else None,
               "rss_mb": max((r["rss_mb"] for r in rs if "rss_mb" in r), default=None),
               "cpu_s": median([r["cpu_s"] for r in rs]) if "cpu_s" in rs[0] else None,
               "load1": median([r["load1_after"] for r in rs]),
               "longest_xact_s": max((r["longest_xact_s"] for r in rs
                                      if "longest_xact_s" in r), default=None),
               "longest_write_xact_s": max((r["longest_write_xact_s"] for r in rs
                                            if "longest_write_xact_s" in r), default=None),
               "verify_s": median([r["verify_s"] for r in rs]) if "verify_s" in rs[0] else None,
               "engine_s": (median([r["engine_s"] for r in rs]) if "engine_s" in rs[0]
                            else None),
               "longest_batch_gap_s": max((r["longest_batch_gap_s"] for r in rs
                                           if "longest_batch_gap_s" in r), default=None),
               "statements": rs[0].get("statements") or rs[0].get("batches")}
        rows.append(row)
    return rows


def fmt(value: Any, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, Linux "
           f"{m['kernel']}, disk {m['disk']}",
           "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
           f"PostgreSQL: {report['extra'].get('postgresql_settings')}",
           f"MariaDB: {report['extra'].get('mariadb_settings', 'not run')}",
           f"Data: {report['args']['orders']} orders, ~2 lines each; as of {AS_OF}, cutoff "
           f"{report['extra'].get('cutoff')}; due per layout: "
           + "; ".join(f"{k[9:]} {v['due_orders']} orders + {v['due_lines']} lines"
                       for k, v in report["extra"].items() if k.startswith("expected_")),
           f"Repeats: {report['args']['repeats']} (median), each on a fresh copy; "
           f"load average before {report['load_before']}, after {report['load_after']}; "
           f"total {report['total_s'] / 60:.1f} min",
           ""]
    head = ("| target | layout | variant | median s | runs s | ratio | peak RSS MB "
            "| process CPU s | longest xact s | longest writing xact s | longest batch gap s "
            "| engine s | engine / raw | verify s | statements / batches | load1 |")
    out += [head, "|" + "---|" * 16]
    raw_of = {(r["target"], r["layout"]): r["median_s"] for r in report["summary"]
              if r["variant"] == "raw"}
    for r in report["summary"]:
        out.append(f"| {r['target']} | {r['layout']} | {r['label']} | {r['median_s']:.2f} | "
                   + " / ".join(f"{w:.2f}" for w in r["walls_s"])
                   + f" | {fmt(r['ratio'], '.1f')}x | {fmt(r['rss_mb'], '.0f')} | "
                   f"{fmt(r['cpu_s'], '.1f')} | "
                   f"{fmt(r['longest_xact_s'], '.3f')} | "
                   f"{fmt(r.get('longest_write_xact_s'), '.3f')} | "
                   f"{fmt(r['longest_batch_gap_s'], '.3f')}"
                   f" | {fmt(r['engine_s'])} | "
                   + (f"{r['engine_s'] / raw_of[(r['target'], r['layout'])]:.2f}x"
                      if r["engine_s"] and (r["target"], r["layout"]) in raw_of else "-")
                   + f" | {fmt(r['verify_s'])} | "
                   f"{fmt(r['statements'], 'd')} | {r['load1']:.1f} |")
    extra = report["extra"]
    if "help_s" in extra:
        out.append(f"\n`retention --help`: median {median(extra['help_s']):.2f} s")
    for rep in extra.get("report", []):
        out.append(
            f"`retention report` ({rep['layout']}, {rep['orders']} orders): whole command "
            f"median {median(rep['report_s']):.2f} s (peak RSS {rep['report_rss_mb']:.0f} MB) "
            f"vs `psql` count(*) {median(rep['psql_s']):.3f} s; SQL alone (server log): "
            f"report {median(rep['report_sql_ms']):.0f} ms in "
            f"{rep['report_sql_statements'][0]} statements (largest "
            f"{median(rep['report_sql_max_ms']):.0f} ms) vs count(*) "
            f"{median(rep['count_sql_ms']):.0f} ms = "
            f"{median(rep['report_sql_ms']) / max(0.001, median(rep['count_sql_ms'])):.1f}x"
            + (f"; vs count(*) of the same figures (the due orders, and their lines) "
               f"{median(rep['figures_sql_ms']):.0f} ms = "
               f"{median(rep['report_sql_ms']) / max(0.001, median(rep['figures_sql_ms'])):.2f}x"
               if rep.get("figures_sql_ms") else ""))
    for e in extra.get("export", []):
        out.append(
            f"audit at {e['records']} records: run {e['run_s']:.1f} s ({e['run_rss_mb']:.0f} "
            f"MB), export {e['export_s']:.1f} s ({e['export_rss_mb']:.0f} MB) = "
            f"{e['export_s'] / e['records'] * 1e6:.1f} s/million, verify {e['verify_s']:.1f} s "
            f"({e['verify_rss_mb']:.0f} MB) = {e['verify_s'] / e['records'] * 1e6:.1f} "
            "s/million")
    for o in extra.get("oltp", []):
        out.append(
            f"OLTP p99 ({o['layout']}, pgbench -R {o['rate']} -c {o['clients']}): idle "
            f"{fmt(o['idle']['p99_ms'], '.1f')} ms ({o['idle']['transactions']} tx); during "
            f"raw DELETE {fmt(o['raw']['p99_ms'], '.1f')} ms ({o['raw']['transactions']} tx, "
            f"max {fmt(o['raw']['max_ms'], '.0f')}); during retention run "
            f"{fmt(o['retention']['p99_ms'], '.1f')} ms ({o.get('variant', 'ret_1000')}, "
            f"{o['retention']['transactions']} tx, "
            f"max {fmt(o['retention']['max_ms'], '.0f')}, run {o['retention']['wall_s']:.1f} s,"
            f" longest xact {o['retention']['longest_xact_s']:.3f} s) = "
            + (f"{o['retention']['p99_ms'] / o['idle']['p99_ms']:.1f}x idle"
               if o['retention']['p99_ms'] and o['idle']['p99_ms'] else "n/a"))
    prof = extra.get("profile")
    if prof:
        out.append(f"cProfile of one retention run ({prof['wall_s']:.1f} s wall, "
                   f"{prof['profiled_s']:.1f} s profiled), top by own time:")
        out += [f"  {t['share']:6.1%} {t['tottime_s']:7.2f} s {t['calls']:>9} calls  "
                f"{t['function']}" for t in prof["top_tottime"]]
    p = extra.get("partitions")
    if p:
        raw = median(p["raw_s"])
        feat = "n/a"
        if p["retention_partitions_s"]:
            wall = median(p["retention_partitions_s"])
            engine_s = [e for e in p.get("retention_partitions_engine_s", []) if e]
            feat = (f"{wall:.2f} s whole command (raw / retention = {raw / wall:.1f})"
                    + (f", {median(engine_s):.2f} s in the engine (raw / engine = "
                       f"{raw / median(engine_s):.1f})" if engine_s else "")
                    + f", {p.get('partitions_dropped', '?')} partitions dropped")
        out.append(
            f"partitioned by {p.get('months', 1)} month(s) ({p['orders']} orders, {p['due']} "
            f"due): raw DELETE "
            f"{raw:.2f} s; detach+drop due partitions {median(p['drop_s']):.2f} s "
            f"(raw / drop = {raw / median(p['drop_s']):.1f}); retention run row by row "
            f"(drop_partitions: false) {median(p['retention_s']):.2f} s "
            f"({median(p['retention_s']) / raw:.1f}x); retention with drop_partitions "
            f"(default): {feat}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, help="orders per layout (default 1000000; "
                        "--quick: 20000)")
    parser.add_argument("--quick", action="store_true",
                        help="small data, one repeat, short OLTP windows")
    parser.add_argument("--repeats", type=int, help="runs per variant (default 3; --quick 1)")
    parser.add_argument("--layouts", default="time,random", help="time,random")
    parser.add_argument("--no-postgres", dest="postgres", action="store_false")
    parser.add_argument("--no-mariadb", dest="mariadb", action="store_false")
    parser.add_argument("--no-django", dest="django", action="store_false")
    parser.add_argument("--no-oltp", dest="oltp", action="store_false")
    parser.add_argument("--no-partition", dest="partition", action="store_false")
    parser.add_argument("--no-export", dest="export", action="store_false")
    parser.add_argument("--big", action="store_true",
                        help="also compare report's SQL with count(*) on 10x the orders")
    parser.add_argument("--oltp-variant", default="ret_1000",
                        choices=["ret_1000", "ret_10000", "ret_default"],
                        help="the retention run measured under pgbench (audit in the same DB)")
    parser.add_argument("--variants", default="",
                        help="comma-separated subset of " + ",".join(VARIANTS)
                        + " (default: all; raw is needed for the ratios)")
    parser.add_argument("--partition-months", type=int, default=1,
                        help="months per partition of orders_part (default 1; 12: yearly)")
    parser.add_argument("--partition-option", default="",
                        help="YAML lines added to the rule of the drop_partitions variant "
                        "(drop_partitions is on by default; the row-by-row variant says "
                        "drop_partitions: false)")
    parser.add_argument("--oltp-rate", type=int, default=50, help="pgbench -R (tx/s)")
    parser.add_argument("--oltp-clients", type=int, default=4, help="pgbench -c")
    parser.add_argument("--oltp-idle", type=float, help="idle window, s (default 30)")
    parser.add_argument("--slow", type=float, default=300.0,
                        help="a baseline whose first run takes longer is run once (s)")
    parser.add_argument("--profile", action="store_true",
                        help="one more retention run (PG audit, batch 1000) under cProfile")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument("--workdir", help="keep policies, logs and outputs here")
    parser.add_argument("--render", metavar="FILE",
                        help="only print the table of a JSON file written by --json")
    args = parser.parse_args()
    unknown = set(filter(None, args.variants.split(","))) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}")
    if args.render:
        print(render(json.loads(Path(args.render).read_text())))
        return 0
    args.orders = args.orders or (20_000 if args.quick else 1_000_000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.oltp_idle = args.oltp_idle or (5.0 if args.quick else 30.0)
    args.layouts = [x for x in args.layouts.split(",") if x]
    if not RETENTION.exists():
        raise SystemExit(f"{RETENTION} not found: run with the project's virtualenv python")

    started = time.monotonic()
    load_before = loadavg()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    bench = Bench(args, work)
    if args.django:
        bench.django_python = ensure_django_venv()

    def snapshot(partial: bool) -> dict[str, Any]:
        report = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "command": " ".join([Path(sys.executable).name, *sys.argv]),
                  "args": dict(vars(args)), "partial": partial,
                  "machine": machine(work), "load_before": load_before,
                  "load_after": loadavg(), "total_s": time.monotonic() - started,
                  "summary": summarize(bench.results), "extra": bench.extra,
                  "results": [{k: v for k, v in r.items() if k != "url"}
                              for r in bench.results]}
        if args.json:  # rewritten after every measurement: a long run loses nothing
            Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        return report

    bench.saved = lambda: snapshot(partial=True)
    if args.postgres:
        bench.postgres()
    if args.mariadb:
        bench.mariadb()
    print(render(snapshot(partial=False)))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
