"""``retention daemon`` as operators run it: real processes against a real PostgreSQL.

Each test starts ``retention daemon POLICY`` with ``subprocess.Popen``, reads its JSON log
lines from stderr while it runs (SPEC §5) and checks the target database, the audit store
and ``retention status`` afterwards. Every daemon is stopped in a ``finally`` block.
SPEC §3 (daemon, status, run) and §4 guarantees 6 (one runner per rule) and 9 (daemon
manners).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from retention.audit.store import AuditStore, RunInfo
from retention.db import create_engine
from retention.instants import utcnow
from retention.testing import Server
from tests.support import audited, keys, write_policy

RETENTION = Path(sys.executable).with_name("retention")
OLD = "2020-01-01 00:00:00"  # an event long past: due under "1 day after at"
_OUR_VARS = ("SHOP_DATABASE_URL", "RETENTION_AUDIT_URL", "RETENTION_POLICY")

Event = dict[str, Any]


class Daemon:
    """A ``retention daemon`` subprocess whose stdout and stderr are read as they come."""

    def __init__(self, policy: Path, *args: str, name: str = "daemon") -> None:
        env = {k: v for k, v in os.environ.items() if k not in _OUR_VARS}
        self.name = name
        self.proc = subprocess.Popen(
            [str(RETENTION), "daemon", str(policy), *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=policy.parent)
        self.events: list[Event] = []
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self._seen = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, False), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, is_err: bool) -> None:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            with self._seen:
                if not is_err:
                    self.stdout.append(line)
                    continue
                self.stderr.append(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    event = {"event": "<not json>", "line": line}
                if not isinstance(event, dict):
                    event = {"event": "<not an object>", "line": line}
                self.events.append(event)
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def named(self, name: str, **fields: Any) -> list[Event]:
        with self._seen:
            return [e for e in self.events if e.get("event") == name
                    and all(e.get(k) == v for k, v in fields.items())]

    def mark(self) -> int:
        """Position in the event list; :meth:`wait_for` can look only past it."""
        with self._seen:
            return len(self.events)

    def wait_for(self, name: str, timeout: float = 20, after: int = 0,
                 where: Callable[[Event], bool] | None = None, **fields: Any) -> Event:
        """The first event ``name`` (past position ``after``) with ``fields``; fails on
        timeout or when the daemon exits first."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for event in self.events[after:]:
                    if event.get("event") == name and all(
                            event.get(k) == v for k, v in fields.items()) and (
                            where is None or where(event)):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not any(
                        r.is_alive() for r in self._readers)):
                    tail = "\n".join(self.stderr[-25:])
                    raise AssertionError(
                        f"{self.name}: no {name!r} {fields} within {timeout}s "
                        f"(exit code {self.proc.poll()}); stderr tail:\n{tail}")
                self._seen.wait(min(left, 0.2))

    def wait_until(self, check: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                tail = "\n".join(self.stderr[-25:])
                raise AssertionError(f"{self.name}: condition not met within {timeout}s "
                                     f"(exit code {self.proc.poll()}); stderr tail:\n{tail}")
            time.sleep(0.05)

    def terminate(self, timeout: float = 30, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """SIGTERM (or ``sig``); the exit code and the seconds it took to exit."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            tail = "\n".join(self.stderr[-25:])
            raise AssertionError(f"{self.name}: still running {timeout}s after signal {sig}; "
                                 f"stderr tail:\n{tail}") from None
        for reader in self._readers:
            reader.join(5)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def running(policy: Path, *args: str, name: str = "daemon") -> Iterator[Daemon]:
    """A daemon that is killed on the way out unless the test stopped it already."""
    daemon = Daemon(policy, *args, name=name)
    try:
        yield daemon
    finally:
        daemon.kill()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _OUR_VARS}
    return subprocess.run([str(RETENTION), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def make_table(url: str, name: str, due: int, fresh: int = 0) -> None:
    """``name(id, at)`` with ids 1..due long past and the next ``fresh`` ids from now."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {name} (id integer PRIMARY KEY, "
                                 "at timestamp NOT NULL)")
            add_rows(conn, name, 1, due, OLD)
            add_rows(conn, name, due + 1, fresh, None)
    finally:
        engine.dispose()


def add_rows(conn: Any, table: str, first: int, count: int, at: str | None) -> None:
    """Rows ``first..first+count-1``, at ``at`` (a timestamp text) or now (UTC)."""
    if count <= 0:
        return
    value = "localtimestamp" if at is None else f"timestamp '{at}'"  # sessions are UTC
    conn.exec_driver_sql(f"INSERT INTO {table} SELECT g, {value} "
                         f"FROM generate_series({first}, {first + count - 1}) g")


def insert(url: str, table: str, first: int, count: int, at: str | None = OLD) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            add_rows(conn, table, first, count, at)
    finally:
        engine.dispose()


def policy_text(target: str, audit: str, rules: dict[str, dict[str, Any]],
                tz: str = "Europe/Amsterdam") -> str:
    lines = [f"policy: test\ntimezone: {tz}\nsources:\n  db:\n    adapter: sql\n"
             f"    url: {target}\naudit:\n  url: {audit}\n"
             "defaults:\n  source: db\n  max_fraction: 1.0\n  retain: 1 day after at\n"
             "rules:"]
    for name, body in rules.items():
        lines.append(f"  {name}:")
        lines.extend(f"    {key}: {value}" for key, value in body.items())
    return "\n".join(lines) + "\n"


def runs_of(audit_url: str) -> list[dict[str, Any]]:
    """Every finished run in the audit store, its summary parsed, oldest first."""
    store = AuditStore(audit_url)
    try:
        found = store.runs(10_000)
    finally:
        store.close()
    for run in found:
        run["summary"] = json.loads(run["summary"] or "[]")
    return sorted(found, key=lambda r: r["started_at"])


def slots_of(audit_url: str) -> list[dict[str, Any]]:
    engine = create_engine(audit_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(
                "SELECT policy, rule, slot, daemon_id FROM retention_slots"))]
    finally:
        engine.dispose()


def chain_ok(audit_url: str) -> bool:
    store = AuditStore(audit_url)
    try:
        return store.verify().ok
    finally:
        store.close()


def sqlite_audit(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/audit.db"


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------------- scheduling


def test_daemon_runs_due_rows_on_schedule_and_status_shows_it(
        postgres_url: str, tmp_path: Path) -> None:
    """An 'every 2 seconds' rule deletes the due rows, audits them, and status reports the
    last run, the next run, backlog 0 and a running daemon; rows that fall due later go
    on a later slot."""
    make_table(postgres_url, "things", due=40, fresh=10)
    audit = sqlite_audit(tmp_path)
    policy = write_policy(tmp_path, policy_text(postgres_url, audit, {
        "r": {"table": "things", "schedule": "every 2 seconds", "batch_size": 7}}))

    with running(policy) as daemon:
        daemon.wait_for("rule_finished", rule="r", where=lambda e: e["deleted"] > 0)
        daemon.wait_for("slot_ran", rule="r")
        assert keys(postgres_url, "things") == set(range(41, 51))
        assert sorted(r["key"]["id"] for r in audited(audit)) == list(range(1, 41))

        shown = cli("status", str(policy), "--format", "json", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        (rule,) = status["rules"]
        last = rule["last_run"]
        assert rule["rule"] == "r" and rule["schedule"] == "every 2 seconds"
        assert last["status"] == "ok"
        assert last["run_id"] in {e["run_id"] for e in daemon.named("slot_ran")}
        in_run = [r for r in audited(audit) if r["run_id"] == last["run_id"]]
        assert last["deleted"] == len(in_run)
        assert rule["backlog"] == 0
        as_of, next_run = instant(status["as_of"]), instant(rule["next_run"])
        assert as_of <= next_run <= as_of + dt.timedelta(seconds=2)
        assert next_run.timestamp() % 2 == 0  # interval slots are aligned
        (alive,) = status["daemons"]
        assert alive["state"] == "running" and alive["pid"] == daemon.proc.pid
        assert alive["age_seconds"] < 30

        mark = daemon.mark()
        insert(postgres_url, "things", 1000, 5)
        daemon.wait_for("rule_finished", after=mark, rule="r", deleted=5, timeout=10)
        assert keys(postgres_url, "things") == set(range(41, 51))
        assert {r["key"]["id"] for r in audited(audit)} == set(range(1, 41)) | set(
            range(1000, 1005))

        code, _ = daemon.terminate()
        assert code == 0
    assert daemon.stdout == []  # a daemon has no result; everything goes to stderr
    ran = daemon.named("slot_ran")
    assert len({e["slot"] for e in ran}) == len(ran)
    assert chain_ok(audit)
    stopped = json.loads(cli("status", str(policy), "--format", "json",
                             cwd=tmp_path).stdout)
    assert [d["state"] for d in stopped["daemons"]] == ["stopped"]


def test_sigterm_mid_run_commits_the_batch_records_interrupted_and_exits_0(
        postgres_url: str, tmp_path: Path) -> None:
    """SIGTERM during a long run: exit 0 soon, the run is 'interrupted', every deleted row
    is audited (and nothing else is), and the chain verifies."""
    total = 30_000
    make_table(postgres_url, "things", due=total)
    audit = sqlite_audit(tmp_path)
    policy = write_policy(tmp_path, policy_text(postgres_url, audit, {
        "big": {"table": "things", "schedule": "every 1 hours", "batch_size": 20}}))

    with running(policy) as daemon:
        daemon.wait_for("rule_planned", rule="big", due=total)
        daemon.wait_until(lambda: len(daemon.named("batch_committed")) >= 3)
        code, took = daemon.terminate(timeout=30)
    assert code == 0
    assert took < 30

    (run,) = runs_of(audit)
    assert run["status"] == "interrupted"
    (summary,) = run["summary"]
    assert summary["status"] == "interrupted"
    left = keys(postgres_url, "things")
    deleted = set(range(1, total + 1)) - left
    assert 0 < len(deleted) < total, "the run should have been cut short"
    assert summary["deleted"] == len(deleted)
    assert {r["key"]["id"] for r in audited(audit)} == deleted
    assert len(audited(audit)) == len(deleted)
    assert chain_ok(audit)
    verify = cli("audit", "verify", str(policy), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert daemon.named("rule_interrupted", rule="big")
    assert daemon.named("daemon_stopped")
    assert [e["status"] for e in daemon.named("slot_ran")] == ["interrupted"]


def test_sighup_keeps_the_old_policy_when_the_new_one_is_bad(
        postgres_url: str, tmp_path: Path) -> None:
    """SIGHUP with a broken file logs policy_reload_failed and keeps running; a valid
    changed file logs policy_reloaded naming only the changed rule."""
    make_table(postgres_url, "ta", due=3)
    make_table(postgres_url, "tb", due=3)
    audit = sqlite_audit(tmp_path)
    rules = {"a": {"table": "ta", "schedule": "every 2 seconds"},
             "b": {"table": "tb", "schedule": "every 3 seconds"}}
    policy = write_policy(tmp_path, policy_text(postgres_url, audit, rules))

    with running(policy) as daemon:
        daemon.wait_for("daemon_started")
        daemon.wait_for("slot_ran", rule="a")

        # 1. not YAML at all
        policy.write_text("policy: test\nrules: [\n", encoding="utf-8")
        mark = daemon.mark()
        daemon.proc.send_signal(signal.SIGHUP)
        failed = daemon.wait_for("policy_reload_failed", after=mark, timeout=10)
        assert failed["level"] == "error" and "YAML" in failed["error"]
        daemon.wait_for("slot_ran", after=daemon.mark(), rule="a", timeout=10)

        # 2. valid YAML, but a table the live schema does not have
        broken = dict(rules, b={"table": "no_such_table", "schedule": "every 3 seconds"})
        policy.write_text(policy_text(postgres_url, audit, broken), encoding="utf-8")
        mark = daemon.mark()
        daemon.proc.send_signal(signal.SIGHUP)
        failed = daemon.wait_for("policy_reload_failed", after=mark, timeout=10)
        assert "no_such_table" in failed["error"]
        daemon.wait_for("slot_ran", after=daemon.mark(), rule="b", timeout=10)  # old 'b' runs
        assert not daemon.named("policy_reloaded")

        # 3. valid, with a new schedule for 'b' only
        changed = dict(rules, b={"table": "tb", "schedule": "every 5 seconds"})
        policy.write_text(policy_text(postgres_url, audit, changed), encoding="utf-8")
        mark = daemon.mark()
        daemon.proc.send_signal(signal.SIGHUP)
        reloaded = daemon.wait_for("policy_reloaded", after=mark, timeout=10)
        assert reloaded["changed"] == ["b"]
        since = daemon.mark()
        daemon.wait_for("slot_ran", after=since, rule="b", timeout=12)
        daemon.wait_for("slot_ran", after=since, rule="a", timeout=10)
        assert daemon.proc.poll() is None
        code, _ = daemon.terminate()
    assert code == 0
    # every slot of 'b' after the reload is on the new 5-second grid
    new_slots = [instant(e["slot"]) for e in daemon.named("slot_ran", rule="b")
                 if instant(e["slot"]) > instant(reloaded["timestamp"])]
    assert new_slots and all(slot.timestamp() % 5 == 0 for slot in new_slots)
    assert not daemon.named("rule_failed")


def test_two_daemons_never_run_a_rule_twice_at_once_and_run_each_slot_once(
        postgres_url: str, tmp_path: Path) -> None:
    """Two replicas on one audit store (in the target's PostgreSQL database): per rule no
    two runs hold the rule at once, and every slot runs on exactly one of them."""
    make_table(postgres_url, "slow_things", due=6000)
    make_table(postgres_url, "quick_things", due=30)
    audit = postgres_url  # the audit store shares the target's database
    AuditStore(audit).close()  # created first: replicas racing to create it fail (below)
    policy = write_policy(tmp_path, policy_text(postgres_url, audit, {
        "slow": {"table": "slow_things", "schedule": "every 2 seconds", "batch_size": 5},
        "quick": {"table": "quick_things", "schedule": "every 2 seconds", "batch_size": 7},
    }))

    with ExitStack() as stack:
        daemons = [stack.enter_context(running(policy, name=f"daemon {i}")) for i in (1, 2)]
        for daemon in daemons:
            daemon.wait_for("daemon_started")
        added = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if not added and time.monotonic() > deadline - 6:
                insert(postgres_url, "quick_things", 100, 10)  # due rows for a later slot
                added = True
        codes = [d.terminate()[0] for d in daemons]
    assert codes == [0, 0]

    events = [e for d in daemons for e in d.events]
    # While a runner holds a rule (from rule_planned, after its lease, to its last event
    # before the lease is released), no other run of that rule does.
    for rule in ("slow", "quick"):
        spans: dict[str, list[dt.datetime]] = {}
        for e in events:
            if e.get("rule") == rule and e.get("event") in (
                    "rule_planned", "rule_finished", "rule_interrupted", "rule_failed"):
                spans.setdefault(e["run_id"], []).append(instant(e["timestamp"]))
        held = sorted((min(ts), max(ts)) for ts in spans.values())
        assert len(held) >= (1 if rule == "slow" else 2), f"{rule}: too few runs: {held}"
        for (_, end), (start, _) in itertools.pairwise(held):
            assert end < start, f"two runs of {rule!r} overlapped"

    ran = [e for e in events if e.get("event") == "slot_ran"]
    claimed = slots_of(audit)
    # A run cut short by the final SIGTERM gives its slot back (a restart runs it again).
    finished = [e for e in ran if e["status"] != "interrupted"]
    assert len(finished) == len(claimed)
    assert {(e["rule"], e["slot"]) for e in finished} == {
        (s["rule"], s["slot"]) for s in claimed}
    assert len({(e["rule"], e["slot"]) for e in ran}) == len(ran)
    assert {s["daemon_id"] for s in claimed} <= {e["daemon_id"] for e in ran}
    assert any(e.get("event") == "slot_already_ran" for e in events)
    # The slow rule runs longer than its interval, so the other replica meets its lease.
    assert any(e.get("event") == "rule_skipped" and e["rule"] == "slow" for e in events)
    runs = runs_of(audit)
    for rule in ("slow", "quick"):
        per_rule = [r for r in runs if any(s["rule"] == rule for s in r["summary"])]
        assert len(per_rule) == len([e for e in ran if e["rule"] == rule])

    deleted = (set(range(1, 6001)) - keys(postgres_url, "slow_things"),
               set(range(1, 31)) | set(range(100, 110)))
    assert keys(postgres_url, "quick_things") == set()
    assert {r["key"]["id"] for r in audited(audit, "slow_things")} == deleted[0]
    assert len(audited(audit, "slow_things")) == len(deleted[0]) > 0
    assert sorted(r["key"]["id"] for r in audited(audit, "quick_things")) == sorted(deleted[1])
    assert chain_ok(audit)


def test_a_missed_slot_runs_once_at_start_up_within_the_misfire_grace(
        postgres_url: str, tmp_path: Path) -> None:
    """'daily at HH:MM' a few minutes ago: grace 1 s → nothing; grace 3600 → one run right
    away; started again → nothing (the slot already ran)."""
    make_table(postgres_url, "things", due=6)
    audit = sqlite_audit(tmp_path)
    tz = ZoneInfo("Europe/Amsterdam")
    slot = (dt.datetime.now(tz) - dt.timedelta(minutes=2)).replace(second=0, microsecond=0)
    policy = write_policy(tmp_path, policy_text(postgres_url, audit, {
        "r": {"table": "things", "schedule": f"daily at {slot:%H:%M}"}}))
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(hours=20)

    def next_run(started: Event) -> dt.datetime:
        (rule,) = started["rules"]
        return instant(rule["next_run"])

    with running(policy, "--misfire-grace", "1", name="grace 1") as late:
        assert next_run(late.wait_for("daemon_started")) > tomorrow
        time.sleep(2)
        assert late.terminate()[0] == 0
    assert not late.named("slot_ran") and not late.named("run_started")
    assert keys(postgres_url, "things") == set(range(1, 7))

    with running(policy, "--misfire-grace", "3600", name="grace 3600") as catching_up:
        catching_up.wait_for("daemon_started")
        ran = catching_up.wait_for("slot_ran", rule="r")
        assert ran["slot"] == slot.replace(tzinfo=None).isoformat()
        time.sleep(2)
        assert catching_up.terminate()[0] == 0
    assert len(catching_up.named("slot_ran")) == 1
    assert keys(postgres_url, "things") == set()
    assert [r["summary"][0]["deleted"] for r in runs_of(audit)] == [6]

    with running(policy, "--misfire-grace", "3600", name="again") as again:
        assert next_run(again.wait_for("daemon_started")) > tomorrow
        time.sleep(1.5)
        assert again.terminate(sig=signal.SIGINT)[0] == 0  # SIGINT stops it like SIGTERM
    assert not again.named("slot_ran")
    assert len(runs_of(audit)) == 1


# ---------------------------------------------------------------------- run for cron


def test_run_quiet_prints_nothing_and_writes_a_metrics_textfile(
        postgres_url: str, tmp_path: Path) -> None:
    """`run --quiet` is silent on success; --metrics-file writes Prometheus text with the
    rule's deleted-rows counter. A failing run is not silenced."""
    make_table(postgres_url, "things", due=12, fresh=3)
    audit = sqlite_audit(tmp_path)
    policy = write_policy(tmp_path, policy_text(postgres_url, audit, {
        "r": {"table": "things", "batch_size": 5}}))
    metrics = tmp_path / "retention.prom"

    done = cli("run", str(policy), "--quiet", "--metrics-file", str(metrics), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert all(json.loads(line)["level"] in ("warning", "error")
               for line in done.stderr.splitlines())
    assert keys(postgres_url, "things") == {13, 14, 15}
    text = metrics.read_text(encoding="utf-8")
    assert "# TYPE retention_rows_deleted_total counter" in text
    assert 'retention_rows_deleted_total{policy="test",rule="r"} 12.0' in text.splitlines()
    assert 'retention_backlog_rows{policy="test",rule="r"} 12.0' in text.splitlines()

    insert(postgres_url, "things", 100, 10)
    limited = write_policy(tmp_path, policy_text(postgres_url, audit, {
        "r": {"table": "things", "max_rows": 2}}), name="limited.yaml")
    stopped = cli("run", str(limited), "--quiet", cwd=tmp_path)
    assert stopped.returncode == 3
    assert "stopped" in stopped.stdout and "max_rows" in stopped.stdout


# ---------------------------------------------------------------------- known bugs


def _open_store(url: str, barrier: Any, results: Any) -> None:
    """In a child process: wait for the others, then open (and create) the audit store."""
    barrier.wait()
    try:
        AuditStore(url).close()
        results.put("ok")
    except Exception as exc:
        results.put(f"{exc} ({exc.__context__!r})"[:300])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_replicas_opening_a_new_audit_store_at_once_all_succeed(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Three processes open the same, not yet created, audit store at the same moment (as
    replicas of a freshly deployed daemon do): every one of them gets it."""
    server: Server | None = (request.getfixturevalue("postgres_server")
                             if backend == "postgresql" else None)
    context = multiprocessing.get_context("fork")
    failures: list[str] = []
    for attempt in range(10):
        name = f"race_{os.getpid()}_{attempt}"
        url = (server.create_database(name) if server is not None
               else f"sqlite:///{tmp_path}/{name}.db")
        try:
            barrier, results = context.Barrier(3), context.Queue()
            procs = [context.Process(target=_open_store, args=(url, barrier, results))
                     for _ in range(3)]
            for proc in procs:
                proc.start()
            outcomes = [results.get(timeout=60) for _ in procs]
            for proc in procs:
                proc.join(10)
        finally:
            if server is not None:
                server.drop_database(name)
        failures += [o for o in outcomes if o != "ok"]
        if failures:
            break
    assert not failures, failures


def test_sighup_with_a_new_time_zone_reschedules_the_wall_clock_rules(
        postgres_url: str, tmp_path: Path) -> None:
    """A policy whose time zone changes from Amsterdam to New York: 'daily at 03:00' now
    means 03:00 in New York, so the rule must be rescheduled (listed in 'changed')."""
    make_table(postgres_url, "things", due=0)
    audit = sqlite_audit(tmp_path)
    rules = {"r": {"table": "things", "schedule": "daily at 03:00"}}
    policy = write_policy(tmp_path, policy_text(postgres_url, audit, rules))
    with running(policy) as daemon:
        daemon.wait_for("daemon_started")
        policy.write_text(policy_text(postgres_url, audit, rules, tz="America/New_York"),
                          encoding="utf-8")
        mark = daemon.mark()
        daemon.proc.send_signal(signal.SIGHUP)
        reloaded = daemon.wait_for("policy_reloaded", after=mark, timeout=10)
        assert daemon.terminate()[0] == 0
    assert reloaded["changed"] == ["r"]


def test_status_shows_the_last_run_of_a_daily_rule_next_to_a_frequent_one(
        postgres_url: str, tmp_path: Path) -> None:
    """A daily rule ran once; a frequent rule then ran 500 times: status still shows the
    daily rule's last run."""
    make_table(postgres_url, "things", due=3)
    make_table(postgres_url, "others", due=0)
    audit = sqlite_audit(tmp_path)
    policy = write_policy(tmp_path, policy_text(postgres_url, audit, {
        "daily": {"table": "things"},
        "often": {"table": "others", "schedule": "every 2 seconds"}}))
    done = cli("run", str(policy), "--rule", "daily", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    store = AuditStore(audit)
    try:  # what a daemon records for 'often' in 17 minutes, without waiting for it
        for _ in range(500):
            run_id = os.urandom(16).hex()
            store.start_run(RunInfo(run_id, "test", None, "0" * 64, "run", utcnow()))
            store.finish_run(run_id, "ok", [{"rule": "often", "status": "ok", "deleted": 0,
                                             "anonymized": 0, "held": 0, "children": {}}])
    finally:
        store.close()
    shown = cli("status", str(policy), "--format", "json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    last = {r["rule"]: r["last_run"] for r in json.loads(shown.stdout)["rules"]}
    assert last["often"] is not None
    assert last["daily"] is not None and last["daily"]["deleted"] == 3


def test_sighup_reports_only_the_edited_rule_when_lines_shift(
        postgres_url: str, tmp_path: Path) -> None:
    """Adding a description line to rule 'a' changes 'a' only, not 'b' below it."""
    make_table(postgres_url, "ta", due=0)
    make_table(postgres_url, "tb", due=0)
    audit = sqlite_audit(tmp_path)
    rules = {"a": {"table": "ta"}, "b": {"table": "tb"}}
    policy = write_policy(tmp_path, policy_text(postgres_url, audit, rules))
    with running(policy) as daemon:
        daemon.wait_for("daemon_started")
        described = {"a": {"table": "ta", "description": "the A records"}, "b": rules["b"]}
        policy.write_text(policy_text(postgres_url, audit, described), encoding="utf-8")
        mark = daemon.mark()
        daemon.proc.send_signal(signal.SIGHUP)
        reloaded = daemon.wait_for("policy_reloaded", after=mark, timeout=10)
        assert daemon.terminate()[0] == 0
    assert reloaded["changed"] == ["a"]


def test_a_restarted_daemon_finishes_the_slot_an_interrupted_run_left(
        postgres_url: str, tmp_path: Path) -> None:
    """SIGTERM cuts a slot's run short; the next daemon runs that slot again at start-up."""
    total = 20_000
    make_table(postgres_url, "things", due=total)
    audit = sqlite_audit(tmp_path)
    policy = write_policy(tmp_path, policy_text(postgres_url, audit, {
        "big": {"table": "things", "schedule": "every 1 hours", "batch_size": 20}}))

    with running(policy, name="cut short") as first:
        first.wait_until(lambda: len(first.named("batch_committed")) >= 3)
        assert first.terminate(timeout=30)[0] == 0
    assert [e["status"] for e in first.named("slot_ran")] == ["interrupted"]
    assert 0 < len(keys(postgres_url, "things")) < total

    with running(policy, name="restarted") as second:
        ran = second.wait_for("slot_ran", rule="big", timeout=120)
        assert second.terminate()[0] == 0
    assert ran["status"] == "ok" and ran["slot"] == first.named("slot_ran")[0]["slot"]
    assert keys(postgres_url, "things") == set()
    assert sorted(r["key"]["id"] for r in audited(audit)) == list(range(1, total + 1))
    assert chain_ok(audit)


def test_the_metrics_endpoint_serves_the_rules_counters(postgres_url: str,
                                                         tmp_path: Path) -> None:
    """--metrics-port serves Prometheus text with the rows deleted and the last success."""
    import socket
    import urllib.request

    make_table(postgres_url, "things", due=7)
    audit = sqlite_audit(tmp_path)
    policy = write_policy(tmp_path, policy_text(postgres_url, audit, {
        "r": {"table": "things", "schedule": "every 2 seconds"}}))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with running(policy, "--metrics-port", str(port)) as daemon:
        daemon.wait_for("slot_ran", rule="r")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
        assert daemon.terminate()[0] == 0
    assert 'retention_rows_deleted_total{policy="test",rule="r"} 7.0' in body
    assert 'retention_last_success_timestamp_seconds{policy="test",rule="r"}' in body
