"""What the benchmark watches on the PostgreSQL side while something runs.

* :class:`XactSampler`: the longest transaction. A side connection (to the ``postgres``
  database) reads ``pg_stat_activity`` every 20 ms and keeps the greatest
  ``clock_timestamp() - xact_start`` seen among the client backends of the measured
  database (pgbench's and autovacuum's excluded). A transaction shorter than the
  interval may be missed or under-measured by up to 20 ms plus the sampling query's
  own time.
* :class:`Pgbench`: an OLTP load at a fixed rate (``pgbench -R``) with a custom script on
  the same tables: read a random not-due order, update it, insert a new order with
  one line, as one transaction. Per-transaction logs (``--log``); latency is pgbench's
  logged ``time``, which under ``-R`` counts from the scheduled start (so a stalled
  transaction also delays, and is charged for, the ones queued behind it).
* :func:`statement_ms`: durations of the statements one database ran, from the server
  log (``log_min_duration_statement = 0`` for that database).
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

PGBENCH_SCRIPT = """\
\\set n random(1, :nlive)
\\set acc random(1, 50000)
BEGIN;
SELECT id AS oid FROM bench_live WHERE n = :n \\gset
SELECT status, invoice_address, completed_at FROM orders WHERE id = :oid;
UPDATE orders SET account_id = :acc WHERE id = :oid;
INSERT INTO orders (account_id, status, invoice_address, created_at)
  VALUES (:acc, 'open', 'Damrak 1, 1012 LG Amsterdam, NL', now()) RETURNING id AS new_id \\gset
INSERT INTO order_lines (order_id, product, quantity, price_cents)
  VALUES (:new_id, 'Product 1', 1, 995);
END;
"""


def conninfo(url: str) -> str:
    u = make_url(url)
    parts = [f"host={u.host}", f"port={u.port}", f"user={u.username}",
             f"dbname={u.database}"]
    if u.password:
        parts.append(f"password={u.password}")
    return " ".join(parts)


class XactSampler:
    """Samples the transactions of database ``dbname`` until :meth:`stop`."""

    QUERY = ("SELECT pid, extract(epoch FROM clock_timestamp() - xact_start), "
             "left(query, 80), backend_xid IS NOT NULL FROM pg_stat_activity WHERE datname = %s "
             "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
             "AND xact_start IS NOT NULL AND application_name <> 'pgbench'")

    def __init__(self, admin_url: str, dbname: str, interval: float = 0.02) -> None:
        self.conn = psycopg.connect(conninfo(admin_url), autocommit=True)
        self.dbname = dbname
        self.interval = interval
        self.longest = 0.0
        self.longest_query = ""
        self.longest_writing = 0.0  # transactions that wrote (hold an xid, so row locks)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for _pid, age, query, wrote in self.conn.execute(self.QUERY,
                                                             (self.dbname,)).fetchall():
                if age is not None and float(age) > self.longest:
                    self.longest, self.longest_query = float(age), query or ""
                if age is not None and wrote and float(age) > self.longest_writing:
                    self.longest_writing = float(age)
            self.samples += 1
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(5)
        self.conn.close()
        return {"longest_xact_s": self.longest, "longest_xact_query": self.longest_query,
                "longest_write_xact_s": self.longest_writing,
                "xact_samples": self.samples}


class Pgbench:
    """``pgbench -R rate -T seconds`` with the custom script, logging every transaction."""

    def __init__(self, url: str, workdir: Path, label: str, rate: int, clients: int,
                 seconds: int, nlive: int) -> None:
        u = make_url(url)
        self.dir = workdir / f"pgbench-{label}"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        script = self.dir / "oltp.sql"
        script.write_text(PGBENCH_SCRIPT)
        argv = [shutil.which("pgbench") or "/usr/bin/pgbench", "-n", "-h", str(u.host),
                "-p", str(u.port), "-U", str(u.username), "-f", str(script),
                "-D", f"nlive={nlive}", "-c", str(clients), "-j", str(min(clients, 2)),
                "-R", str(rate), "-T", str(seconds), "-M", "prepared", "--log",
                "--log-prefix", str(self.dir / "log"), str(u.database)]
        self.out = (self.dir / "stdout").open("wb")
        self.started = time.time()
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT,
                                     cwd=self.dir)

    def wait(self) -> None:
        """Wait for the end; pgbench must have run without failed transactions."""
        code = self.proc.wait()
        self.out.close()
        failed = re.search(r"number of failed transactions: (\d+)", self.summary())
        if code != 0 or failed is None or failed.group(1) != "0":
            raise RuntimeError(f"pgbench exit {code}:\n{self.summary()[-3000:]}")

    def summary(self) -> str:
        return (self.dir / "stdout").read_text(errors="replace")

    def latencies_ms(self, start: float, end: float) -> list[float]:
        """Latencies (ms) of the transactions that finished between ``start`` and ``end``
        (epoch seconds). Log line: client xact time_us script epoch_s epoch_us [lag]."""
        out = []
        for path in self.dir.glob("log.*"):
            for line in path.read_text().splitlines():
                f = line.split()
                if len(f) < 6 or f[2] == "skipped":
                    continue
                done = int(f[4]) + int(f[5]) / 1e6
                if start <= done <= end:
                    out.append(int(f[2]) / 1000)
        return out


def percentile(values: list[float], q: float) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def latency_summary(values: list[float]) -> dict[str, Any]:
    return {"transactions": len(values), "p50_ms": percentile(values, 0.5),
            "p99_ms": percentile(values, 0.99), "max_ms": max(values) if values else None}


_DURATION = re.compile(r" db=(\S*) .*duration: ([0-9.]+) ms")


def log_offset(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def statement_ms(log: Path, offset: int, dbname: str) -> list[float]:
    """Durations of the statements (parse, bind and execute steps each) logged for
    ``dbname`` after byte ``offset`` of the server log."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", errors="replace")
    return [float(m.group(2)) for m in _DURATION.finditer(text) if m.group(1) == dbname]
