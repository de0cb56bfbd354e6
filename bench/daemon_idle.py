"""How much CPU and memory an idle ``retention daemon`` uses.

Builds the web-shop example (policies/webshop.yaml, schema policies/webshop.sql, demo
rows from retention.policies.examples.fill_webshop) in a SQLite file with a SQLite audit store,
starts ``retention daemon`` on it with the policy's default 'daily at 03:00' schedules
and, next to it, a baseline ``python -c "import time; time.sleep(...)"``. After a settle
period (start-up, and a catch-up run if 03:00 Amsterdam time was less than the misfire
grace ago), both are measured over the same window:

* CPU: utime + stime from /proc/PID/stat, as a percentage of one core;
* memory: VmRSS from /proc/PID/status, sampled every second (mean and max).

Usage: python bench/daemon_idle.py [--seconds 30] [--settle 5] [--json]
Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from retention.policies import examples

from retention.db import create_engine

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RETENTION = Path(sys.executable).with_name("retention")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (fields 14 and 15 of /proc/PID/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14, 15 (1-based)


def sched_seconds(pid: int) -> float:
    """CPU time of all threads of ``pid`` from /proc/PID/task/*/schedstat (nanoseconds,
    finer than the 10 ms ticks of /proc/PID/stat; threads that ended are not counted)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def status_field(pid: int, name: str) -> int:
    """A numeric field of /proc/PID/status (VmRSS in kB, Threads)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


class Watched:
    """A process whose stderr is drained (and counted) while it runs."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.label = label
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()
        self.rss: list[int] = []
        self.cpu0 = self.cpu1 = self.ns0 = self.ns1 = 0.0
        self.t0 = self.t1 = 0.0

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.append(raw.decode("utf-8", errors="replace").rstrip("\n"))

    def events(self, name: str) -> int:
        return sum(1 for line in self.lines if f'"event": "{name}"' in line)

    def start_window(self) -> None:
        self.t0, self.cpu0 = time.monotonic(), cpu_seconds(self.proc.pid)
        self.ns0 = sched_seconds(self.proc.pid)

    def sample(self) -> None:
        self.rss.append(status_field(self.proc.pid, "VmRSS"))

    def end_window(self) -> None:
        self.t1, self.cpu1 = time.monotonic(), cpu_seconds(self.proc.pid)
        self.ns1 = sched_seconds(self.proc.pid)

    def result(self) -> dict[str, Any]:
        wall = self.t1 - self.t0
        cpu = self.cpu1 - self.cpu0
        return {"process": self.label, "window_s": round(wall, 2), "cpu_s": round(cpu, 3),
                "cpu_pct_of_one_core": round(100 * cpu / wall, 3),
                "schedstat_cpu_s": round(self.ns1 - self.ns0, 4),
                "schedstat_pct_of_one_core": round(100 * (self.ns1 - self.ns0) / wall, 4),
                "rss_mean_mib": round(sum(self.rss) / len(self.rss) / 1024, 1),
                "rss_max_mib": round(max(self.rss) / 1024, 1),
                "threads": status_field(self.proc.pid, "Threads")}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self.reader.join(5)
        return code


def build_shop(directory: Path) -> dict[str, str]:
    """The web-shop SQLite database; the environment the example policy reads."""
    target = f"sqlite:///{directory / 'webshop.db'}"
    engine = create_engine(target)
    try:
        examples.create_schema(engine, "webshop")
        examples.fill_webshop(engine, dt.datetime.now(dt.UTC))
    finally:
        engine.dispose()
    env = {k: v for k, v in os.environ.items() if k != "RETENTION_POLICY"}
    env.update(SHOP_DATABASE_URL=target,
               RETENTION_AUDIT_URL=f"sqlite:///{directory / 'audit.db'}")
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds after daemon_started before measuring")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="retention-idle-") as tmp:
        directory = Path(tmp)
        env = build_shop(directory)
        policy = str(examples.policy_path("webshop"))
        nap = args.settle + args.seconds + 30
        daemon = Watched("retention daemon (webshop, idle)",
                         [str(RETENTION), "daemon", policy], env, directory)
        baseline = Watched(f"python -c 'time.sleep({nap:.0f})' (baseline)",
                           [sys.executable, "-c", f"import time; time.sleep({nap})"],
                           env, directory)
        watched = [daemon, baseline]
        try:
            deadline = time.monotonic() + 60
            while daemon.events("daemon_started") == 0:
                if daemon.proc.poll() is not None or time.monotonic() > deadline:
                    print("\n".join(daemon.lines[-20:]), file=sys.stderr)
                    raise SystemExit("the daemon did not start")
                time.sleep(0.1)
            time.sleep(args.settle)
            for w in watched:
                w.start_window()
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                for w in watched:
                    w.sample()
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            for w in watched:
                w.sample()
                w.end_window()
            results = [w.result() for w in watched]
            runs = daemon.events("slot_ran")
        finally:
            codes = [w.stop() for w in watched]

    ratio = {"cpu": round(results[0]["cpu_s"] / results[1]["cpu_s"], 1)
             if results[1]["cpu_s"] else None,
             "cpu_schedstat": round(results[0]["schedstat_cpu_s"]
                                    / results[1]["schedstat_cpu_s"], 1)
             if results[1]["schedstat_cpu_s"] else None,
             "rss": round(results[0]["rss_mean_mib"] / results[1]["rss_mean_mib"], 1)}
    report = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "cores": os.cpu_count(), "window_s": args.seconds, "settle_s": args.settle,
              "python": sys.version.split()[0], "results": results, "ratio": ratio,
              "daemon_catch_up_runs_before_window": runs, "daemon_exit_code": codes[0]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"idle {args.seconds:.0f} s after a {args.settle:.0f} s settle, "
          f"{os.cpu_count()} cores, Python {report['python']}")
    print(f"{'process':44} {'CPU s':>7} {'% core':>7} {'sched s':>8} {'% core':>7} "
          f"{'RSS MiB':>8} {'max':>6} {'thr':>4}")
    for r in results:
        print(f"{r['process']:44} {r['cpu_s']:7.3f} {r['cpu_pct_of_one_core']:7.3f} "
              f"{r['schedstat_cpu_s']:8.4f} {r['schedstat_pct_of_one_core']:7.4f} "
              f"{r['rss_mean_mib']:8.1f} {r['rss_max_mib']:6.1f} {r['threads']:4d}")
    cpu = (f"x{ratio['cpu']}" if ratio["cpu"] is not None
           else "n/a from /proc/PID/stat (the baseline used 0 ticks)")
    fine = (f"x{ratio['cpu_schedstat']}" if ratio["cpu_schedstat"] is not None
            else "n/a (the baseline used no CPU at all)")
    print(f"daemon / baseline: CPU {cpu}; CPU (schedstat) {fine}; RSS x{ratio['rss']}")
    print(f"catch-up runs before the window: {runs}; daemon exit code on SIGTERM: {codes[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
