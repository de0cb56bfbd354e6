"""Faults against real processes and real servers: SPEC §4 guarantees 1, 2, 3, 6, 7, 9.

Every test drives the installed ``retention`` console script as a subprocess on a
table of orders (with order lines as children) of which about half is not due, and
then checks the same invariants:

* the keys deleted (seeded keys minus remaining keys) are exactly the keys of the
  committed audit records, for parents and children separately;
* no key is recorded twice, no batch is left open, ``verify()`` holds;
* no row that is not due (too recent, filtered out by ``where``, no event, or under a
  legal hold) was ever deleted (none early), and after a final run every due row is
  gone (none missed).

Faults: ``kill -9`` at random moments (startup, mid-batches, near the end), backends
terminated with ``pg_terminate_backend`` mid-run, three runners started at once, SIGTERM
mid-run, (in-process) a batch whose commit and whose reconciliation both fail, and
(section 4) kill -9 exactly before or after the target's commit, with the application
writing a deleted key again or deleting a row itself before the next run.
SQLite files live on ``/dev/shm`` when it exists (a SQLite commit on a real disk
costs an fsync, which would make a 400-batch run take ~20 s instead of ~5 s).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from retention.adapters.sql import SqlAdapter
from retention.adapters.sql_marks import MARKS_TABLE
from sqlalchemy.pool import NullPool

from retention import calendar
from retention.audit import records
from retention.audit.schema import log as log_table
from retention.audit.store import AuditStore
from retention.policy.load import load_policy
from retention.policy.phrase import parse
from retention.run import engine, holds
from tests.support import write_policy

RETENTION = Path(sys.executable).with_name("retention")
AS_OF = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TIMEZONE = "Europe/Amsterdam"
RETAIN = "1 year after completion"
# The last due event instant: 2025-02-28 23:59:59.999999 Amsterdam time. An order
# completed one microsecond later (local date 2025-03-01) is due only on 2026-03-02.
CUTOFF = calendar.cutoff(AS_OF, parse(RETAIN), calendar.zone(TIMEZONE)).replace(tzinfo=None)
BATCH = 50
KILLS = 15  # kills that must land while the process still runs, per configuration
MAX_ATTEMPTS = 40  # bound on kill attempts (some land after a run already finished)
RUN_TIMEOUT = 180  # seconds any single run may take before the test gives up

POLICY = f"""\
policy: faults
version: "2026-03-01"
timezone: {TIMEZONE}
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

_META = sa.MetaData()
ORDERS = sa.Table(
    "orders", _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("completed_at", sa.DateTime, nullable=True),
    sa.Column("status", sa.String(12), nullable=False),
)
LINES = sa.Table(
    "order_lines", _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("order_id", sa.Integer, nullable=False, index=True),
    sa.Column("sku", sa.String(12), nullable=False),
)


def test_the_boundary_rows_straddle_the_cutoff() -> None:
    """The seed's sharpest rows: the cutoff instant is due, one microsecond later is not."""
    tz, retain = calendar.zone(TIMEZONE), parse(RETAIN)
    last_due = CUTOFF.replace(tzinfo=dt.UTC)
    assert calendar.due_at(last_due, retain, tz) <= AS_OF
    assert calendar.due_at(last_due + dt.timedelta(microseconds=1), retain, tz) > AS_OF


# -- the shop under test ------------------------------------------------------------


@dataclass
class Shop:
    """A target database with orders and order lines, its audit store, and what was seeded."""

    target: str
    audit: str
    workdir: Path
    rng: random.Random
    due: set[int] = field(default_factory=set)  # order ids due at AS_OF
    kept: set[int] = field(default_factory=set)  # order ids not due at AS_OF
    held: set[int] = field(default_factory=set)  # order ids due by time but under a hold
    lines: dict[int, int] = field(default_factory=dict)  # line id -> order id
    next_order: int = 1
    next_line: int = 1
    runs: int = 0

    def __post_init__(self) -> None:
        self.policy = write_policy(self.workdir, POLICY, "faults.yaml")
        eng = sa.create_engine(self.target, poolclass=NullPool)
        try:
            _META.create_all(eng)
        finally:
            eng.dispose()

    # seeding ----------------------------------------------------------------------

    def seed(self, due: int, kept: int) -> None:
        """Append ``due`` due and ``kept`` not-due orders, interleaved, with 1-2 lines each."""
        flags = [True] * due + [False] * kept
        self.rng.shuffle(flags)
        orders, lines = [], []
        for is_due in flags:
            oid = self.next_order
            self.next_order += 1
            at, status = self._due_row() if is_due else self._kept_row()
            orders.append({"id": oid, "completed_at": at, "status": status})
            (self.due if is_due else self.kept).add(oid)
            for _ in range(1 + (self.rng.random() < 0.5)):
                lines.append({"id": self.next_line, "order_id": oid, "sku": "sku"})
                self.lines[self.next_line] = oid
                self.next_line += 1
        eng = sa.create_engine(self.target, poolclass=NullPool)
        try:
            with eng.begin() as conn:
                for start in range(0, len(orders), 5000):
                    conn.execute(ORDERS.insert(), orders[start:start + 5000])
                for start in range(0, len(lines), 5000):
                    conn.execute(LINES.insert(), lines[start:start + 5000])
        finally:
            eng.dispose()

    def _due_row(self) -> tuple[dt.datetime, str]:
        pick = self.rng.random()
        if pick < 0.02:
            return CUTOFF, "completed"  # the last due instant itself
        if pick < 0.04:
            return CUTOFF - dt.timedelta(microseconds=1), "completed"
        span = (CUTOFF - dt.datetime(2019, 1, 1)).total_seconds()
        return dt.datetime(2019, 1, 1) + dt.timedelta(seconds=self.rng.uniform(0, span)), \
            "completed"

    def _kept_row(self) -> tuple[dt.datetime | None, str]:
        """A row that is not due at AS_OF: too recent, filtered out by status, or no event."""
        pick = self.rng.random()
        if pick < 0.1:
            return CUTOFF + dt.timedelta(microseconds=1), "completed"  # one microsecond late
        if pick < 0.15:
            return CUTOFF + dt.timedelta(hours=self.rng.uniform(0, 24)), "completed"
        if pick < 0.6:
            recent = (AS_OF.replace(tzinfo=None) - CUTOFF).total_seconds()
            return CUTOFF + dt.timedelta(seconds=self.rng.uniform(1, recent)), "completed"
        if pick < 0.9:
            return dt.datetime(2019, 6, 1) + dt.timedelta(days=self.rng.uniform(0, 600)), "open"
        return None, "completed"

    def hold(self, count: int) -> None:
        """Place legal holds on ``count`` due orders: from now on they must never go."""
        chosen = self.rng.sample(sorted(self.due), count)
        store = AuditStore(self.audit)
        try:
            for oid in chosen:
                holds.add(store, "faults", "orders", {"id": oid}, "litigation", by="test")
        finally:
            store.close()
        self.due -= set(chosen)
        self.held |= set(chosen)

    # looking ----------------------------------------------------------------------

    def ids(self, table: sa.Table) -> set[int]:
        eng = sa.create_engine(self.target, poolclass=NullPool)
        try:
            with eng.connect() as conn:
                return set(conn.execute(sa.select(table.c.id)).scalars())
        finally:
            eng.dispose()

    def due_left(self) -> int:
        return len(self.due & self.ids(ORDERS))

    # running ----------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        return run_env(self.target, self.audit)

    def start(self, *extra: str) -> Proc:
        """Start ``retention run`` at AS_OF with JSON output; stdout and stderr go to files."""
        self.runs += 1
        return start_run(self.workdir, self.runs, self.policy, AS_OF, self.env, *extra)

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Any other ``retention`` command on this shop's policy, run to its end."""
        return subprocess.run([str(RETENTION), *args], env=self.env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              check=False)

    def run_to_completion(self) -> dict[str, Any]:
        """One run that must finish every due row: exit 0, status ok."""
        proc = self.start()
        code = proc.wait()
        assert code == 0, f"final run exited {code}:\n{proc.stdout()}\n{proc.tail()}"
        result = proc.json()
        assert result is not None and result["rules"][0]["status"] == "ok", proc.stdout()
        return result


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    started: float  # wall clock, comparable with the log timestamps

    def wait(self) -> int:
        try:
            return self.popen.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"a run took more than {RUN_TIMEOUT}s:\n{self.tail()}") from None

    def kill(self) -> bool:
        """SIGKILL; returns whether the process was still running when the signal went out."""
        alive = self.popen.poll() is None
        self.popen.kill()
        self.popen.wait()
        return alive

    def stdout(self) -> str:
        return self.out.read_text()

    def json(self) -> dict[str, Any] | None:
        text = self.stdout().strip()
        return json.loads(text) if text else None

    def events(self) -> list[dict[str, Any]]:
        return events_in(self.err)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.err.read_text().splitlines()[-lines:])


def events_in(path: Path) -> list[dict[str, Any]]:
    """The JSON log events of one run's stderr file."""
    found = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # the last line of a killed run may be cut
            event = json.loads(line)
            if isinstance(event, dict):
                found.append(event)
    return found


def logged(workdir: Path, name: str) -> list[dict[str, Any]]:
    """Every ``name`` event of every run in ``workdir``."""
    return [e for err in sorted(workdir.glob("run-*.err")) for e in events_in(err)
            if e.get("event") == name]


def _at(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


# -- the invariants -----------------------------------------------------------------


def check_invariants(shop: Shop, finished: bool = True) -> dict[str, int]:
    """Deleted == audited (parents and children), no duplicates, chain intact, none early."""
    orders_left, lines_left = shop.ids(ORDERS), shop.ids(LINES)
    seeded_orders = shop.due | shop.kept | shop.held
    deleted_orders = seeded_orders - orders_left
    deleted_lines = set(shop.lines) - lines_left
    store = AuditStore(shop.audit)
    try:
        records = list(store.records())
        verdict = store.verify()
        still_open = store.open_batches()
        intents = open_intents(store, [b["batch_id"] for b in still_open])
    finally:
        store.close()
    audited: dict[str, list[int]] = collections.defaultdict(list)
    for rec in records:
        assert rec["rule"] == "orders" and rec["action"] == "delete", rec
        assert dt.datetime.fromisoformat(rec["due_at"]) <= AS_OF, f"deleted before due: {rec}"
        audited[rec["table_name"]].append(json.loads(rec["record_key"])["id"])
    assert set(audited) <= {"orders", "order_lines"}, set(audited)
    for table, deleted in (("orders", deleted_orders), ("order_lines", deleted_lines)):
        twice = {k: n for k, n in collections.Counter(audited[table]).items() if n > 1}
        assert not twice, f"{table}: {len(twice)} keys recorded more than once, e.g. " \
                          f"{sorted(twice.items())[:10]}"
        # Between a kill and the next run, a batch the target committed may still be an
        # open intent (its commit mark never written): it is recorded, not yet confirmed.
        unrecorded = deleted - set(audited[table]) - (set() if finished else intents[table])
        assert not unrecorded, f"{table}: {len(unrecorded)} deleted rows have no audit " \
                               f"record, e.g. {sorted(unrecorded)[:10]}"
        phantom = set(audited[table]) - deleted
        assert not phantom, f"{table}: {len(phantom)} recorded rows still exist, e.g. " \
                            f"{sorted(phantom)[:10]}"
    early = deleted_orders & shop.kept
    assert not early, f"{len(early)} orders deleted before they were due: {sorted(early)[:10]}"
    assert not deleted_orders & shop.held, "orders under a legal hold were deleted"
    never = shop.kept | shop.held
    kept_lines = {line for line, order in shop.lines.items() if order in never}
    assert not deleted_lines & kept_lines, "lines of orders that are not due were deleted"
    assert not deleted_lines - {line for line, order in shop.lines.items()
                                if order in deleted_orders}, "lines deleted without parent"
    assert verdict.ok, str(verdict)
    if finished:
        assert not still_open, f"batches left open after a clean run: {still_open}"
        assert deleted_orders == shop.due, f"{len(shop.due - deleted_orders)} due orders missed"
        assert deleted_lines == {line for line, order in shop.lines.items()
                                 if order in shop.due}
    return {"orders": len(deleted_orders), "order_lines": len(deleted_lines),
            "records": len(records)}


def open_intents(store: AuditStore, batch_ids: list[str]) -> dict[str, set[int]]:
    """The keys recorded as intents in open batches, per table."""
    found: dict[str, set[int]] = collections.defaultdict(set)
    if not batch_ids:
        return found
    readers = records.Readers()
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(log_table).where(
            log_table.c.kind.in_(records.KINDS), log_table.c.batch_id.in_(batch_ids)))
        for row in rows:
            for rec in records.expand(dict(row._mapping), readers):
                found[rec["table_name"]].add(json.loads(rec["record_key"])["id"])
    return found


# -- configurations -----------------------------------------------------------------


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for SQLite files and run logs, in memory when /dev/shm is there."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        path = Path(tempfile.mkdtemp(prefix="retention-faults-", dir=shm))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path


CONFIGS = {
    # name: (target backend, audit store) -- "same" puts the audit tables in the target
    "sqlite": ("sqlite", "sqlite"),
    "postgres-sqlite-audit": ("postgresql", "sqlite"),
    "postgres-shared-audit": ("postgresql", "same"),
}


def make_shop(request: pytest.FixtureRequest, config: str, workdir: Path, seed: int) -> Shop:
    target_kind, audit_kind = CONFIGS[config]
    if target_kind == "sqlite":
        target = f"sqlite:///{workdir}/target.db"
    else:
        target = request.getfixturevalue("postgres_url")
    audit = target if audit_kind == "same" else f"sqlite:///{workdir}/audit.db"
    return Shop(target, audit, workdir, random.Random(seed))


def terminate_backends(url: str) -> int:
    """Cut every other session of ``url``'s database; returns how many were cut."""
    eng = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            return len(conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all())
    finally:
        eng.dispose()


# -- 1. kill -9 at random moments ---------------------------------------------------


@dataclass
class Estimate:
    """Running guesses, learned from each run's own logs, of when its phases begin."""

    started: float = 0.4  # seconds from spawn to run_started (interpreter, policy, schema)
    batches: float = 0.5  # seconds from spawn to the first committed batch
    per_batch: float = 0.015

    def learn(self, proc: Proc) -> None:
        events = proc.events()
        started = [_at(e) - proc.started for e in events if e.get("event") == "run_started"]
        batches = [_at(e) for e in events if e.get("event") == "batch_committed"]
        if started:
            self.started = 0.5 * self.started + 0.5 * started[0]
        if batches:
            self.batches = 0.5 * self.batches + 0.5 * (batches[0] - proc.started)
        if len(batches) >= 10:
            self.per_batch = 0.5 * self.per_batch + 0.5 * (
                (batches[-1] - batches[0]) / (len(batches) - 1))
        self.batches = max(self.batches, self.started + 0.05)


@dataclass
class Attempt:
    aimed: str  # the phase the delay aimed at
    delay: float
    landed: bool  # the process was still running when SIGKILL went out
    hit: str  # where it was: boot, startup, batches, end, or finished (too late)
    deleted: int  # orders deleted by this attempt


def _enough(attempts: list[Attempt]) -> bool:
    hits = collections.Counter(a.hit for a in attempts)
    landed = sum(a.landed for a in attempts)
    early = hits["boot"] + hits["startup"]  # before the batch loop began
    return landed >= KILLS and hits["batches"] >= KILLS // 2 and early >= 2


def kill_campaign(shop: Shop, rng: random.Random, estimate: Estimate) -> list[Attempt]:
    """SIGKILL runs after random delays until KILLS of them landed mid-run.

    The delays aim at three phases: start-up (lease, reconcile of the previous victim's
    open batches, counting), the batch loop, and the end (last batches, finish_run).
    """
    attempts: list[Attempt] = []
    while not _enough(attempts) and len(attempts) < MAX_ATTEMPTS:
        before = shop.due_left()
        if before < 4 * BATCH:  # nearly done: give the next kills something to interrupt
            shop.seed(3000, 3000)
            before = shop.due_left()
        work = math.ceil(before / BATCH) * estimate.per_batch
        aimed = rng.choices(("startup", "batches", "end"), weights=(1, 2, 1))[0]
        if aimed == "end" and work > 3.0:
            aimed = "batches"
        if aimed == "startup":
            delay = rng.uniform(0.6 * estimate.started, estimate.batches)
        elif aimed == "batches":
            delay = estimate.batches + rng.uniform(0.02, 0.35) * work
        else:
            delay = estimate.batches + rng.uniform(0.85, 1.1) * work
        proc = shop.start()
        time.sleep(delay)
        landed = proc.kill()
        estimate.learn(proc)
        after = shop.due_left()
        names = {e.get("event") for e in proc.events()}
        if not landed:
            hit = "finished"
        elif after == 0:
            hit = "end"
        elif before != after or "rule_planned" in names:
            hit = "batches"
        elif "run_started" in names:
            hit = "startup"
        else:
            hit = "boot"
        attempts.append(Attempt(aimed, delay, landed, hit, before - after))
        if len(attempts) % 5 == 0:  # the invariants hold between kills too (open intents aside)
            check_invariants(shop, finished=False)
    return attempts


def _reconciled(shop: Shop) -> tuple[int, int, int]:
    """Batches reconciled by later runs, and their confirmed and rolled-back records."""
    found = logged(shop.workdir, "batch_reconciled")
    return (len(found), sum(int(e["confirmed"]) for e in found),
            sum(int(e["rolled_back"]) for e in found))


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_kill_9_at_random_moments_leaves_nothing_unrecorded(
        request: pytest.FixtureRequest, fast_dir: Path, config: str) -> None:
    """SIGKILL >= 15 runs at random moments, then run to completion: deleted == audited."""
    seed = 1182 + list(CONFIGS).index(config)
    shop = make_shop(request, config, fast_dir, seed)
    shop.seed(20_000, 20_000 if CONFIGS[config][0] == "sqlite" else 14_000)
    shop.hold(25)
    assert 0.4 < len(shop.kept) / len(shop.due | shop.kept | shop.held) < 0.6  # ~half not due
    started = time.monotonic()

    attempts = kill_campaign(shop, random.Random(seed), Estimate())
    result = shop.run_to_completion()

    counts = check_invariants(shop)
    hits = collections.Counter(a.hit for a in attempts)
    batches, confirmed, rolled_back = _reconciled(shop)
    summary = (f"{config}: {len(attempts)} kills, {sum(a.landed for a in attempts)} landed "
               f"mid-run {dict(hits)}; {batches} open batches reconciled ({confirmed} "
               f"records confirmed, {rolled_back} rolled back); final run deleted "
               f"{result['rules'][0]['deleted']}; {counts}; "
               f"{time.monotonic() - started:.1f}s")
    print(summary)
    assert _enough(attempts), summary


# -- 2. dropped connections ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("config", ["postgres-sqlite-audit", "postgres-shared-audit"])
def test_dropped_connections_mid_run_are_retried_or_fail_cleanly(
        request: pytest.FixtureRequest, fast_dir: Path, config: str) -> None:
    """pg_terminate_backend during runs: each run finishes or exits 1; nothing unrecorded."""
    seed = 1971 + len(config)
    rng = random.Random(seed)
    shop = make_shop(request, config, fast_dir, seed)
    shop.seed(8000, 8000)
    shop.hold(10)
    estimate = Estimate()
    outcomes: list[tuple[int, str, int, str | None]] = []  # exit, status, sessions cut, error
    cuts_landed = 0
    for _ in range(5):
        if shop.due_left() < 20 * BATCH:
            shop.seed(3000, 3000)
        proc = shop.start()
        cut = 0
        moments = sorted(rng.uniform(0.8, 1.0) * estimate.batches
                         + rng.uniform(0, 0.9) * shop.due_left() / BATCH * estimate.per_batch
                         for _ in range(3))
        begun = time.monotonic()
        for moment in moments:
            time.sleep(max(0.0, moment - (time.monotonic() - begun)))
            if proc.popen.poll() is not None:
                break
            cut += terminate_backends(shop.target)
        code = proc.wait()
        estimate.learn(proc)
        result = proc.json()
        status = result["rules"][0]["status"] if result else "-"
        outcomes.append((code, status, cut, (result or {"rules": [{}]})["rules"][0].get("error")))
        cuts_landed += cut > 0
        assert code in (0, 1), f"exit {code}:\n{proc.stdout()}\n{proc.tail()}"
        if code == 0:
            assert status == "ok", proc.stdout()
        elif result is not None:  # a rule failed; the run itself ended in order
            assert status == "failed", proc.stdout()
        loose = [line for line in proc.err.read_text().splitlines()
                 if line.strip() and not line.startswith("{")]
        assert len(loose) <= 1 and "Traceback" not in "".join(loose), loose  # one-line error
        check_invariants(shop, finished=False)
    shop.run_to_completion()
    counts = check_invariants(shop)
    retried = len(logged(fast_dir, "batch_retried"))
    settled = len(logged(fast_dir, "batch_reconciled"))
    print(f"{config}: runs {outcomes}, {retried} batches retried, {settled} reconciled, "
          f"{counts}")
    assert cuts_landed >= 3, outcomes


# -- 3. three runners at once -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("config", ["sqlite", "postgres-shared-audit"])
def test_three_runners_at_once_run_each_rule_in_one_of_them(
        request: pytest.FixtureRequest, fast_dir: Path, config: str) -> None:
    """Three `retention run` at the same moment: one runs the rule, the others skip (exit 4)."""
    seed = 6 + len(config)
    shop = make_shop(request, config, fast_dir, seed)
    shop.seed(8000, 8000)
    shop.hold(10)
    results: list[dict[str, Any]] = []
    spans: list[tuple[float, float, str]] = []
    for stagger in (0.0, 0.4):
        if stagger:
            shop.seed(5000, 5000)
        procs = []
        for i in range(3):
            procs.append(shop.start())
            time.sleep(stagger * (i < 2))
        for proc in procs:
            code = proc.wait()
            result = proc.json()
            assert result is not None, proc.tail()
            rule = result["rules"][0]
            assert (code, rule["status"]) in ((0, "ok"), (4, "skipped")), \
                f"exit {code}: {proc.stdout()}\n{proc.tail()}"
            results.append(result)
            events = proc.events()
            planned = [_at(e) for e in events if e.get("event") == "rule_planned"]
            ended = [_at(e) for e in events if e.get("event") == "rule_finished"]
            if rule["status"] == "ok":
                assert planned and ended, proc.tail()
                spans.append((planned[0], ended[-1], result["run_id"]))
        statuses = [r["rules"][0]["status"] for r in results[-3:]]
        assert statuses.count("ok") >= 1, statuses
        assert max(r["rules"][0]["deleted"] for r in results[-3:]) > 0, statuses

    counts = check_invariants(shop)
    spans.sort()
    for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
        assert end <= begin, f"runs {first} and {second} ran the rule at the same time"
    deleted = sum(r["rules"][0]["deleted"] for r in results)
    children = sum(r["rules"][0]["children"].get("order_lines", 0) for r in results)
    assert (deleted, children) == (counts["orders"], counts["order_lines"])
    print(f"{config}: statuses {[r['rules'][0]['status'] for r in results]}, {counts}")


# -- SIGTERM: the polite stop --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("config", ["sqlite", "postgres-sqlite-audit"])
def test_sigterm_mid_run_lets_the_batch_commit_and_exits_0_interrupted(
        request: pytest.FixtureRequest, fast_dir: Path, config: str) -> None:
    """SPEC §4.9: SIGTERM lets the current batch commit; status interrupted, exit 0."""
    seed = 15 + len(config)
    rng = random.Random(seed)
    shop = make_shop(request, config, fast_dir, seed)
    shop.seed(6000, 6000)
    estimate = Estimate()
    interrupted = 0
    for _ in range(5):
        if shop.due_left() < 20 * BATCH:
            shop.seed(3000, 3000)
        proc = shop.start()
        time.sleep(estimate.batches + rng.uniform(0.05, 0.5) * shop.due_left() / BATCH
                   * estimate.per_batch)
        proc.popen.terminate()
        code = proc.wait()
        estimate.learn(proc)
        names = {e.get("event") for e in proc.events()}
        if code == -signal.SIGTERM:
            # Python's default handling: before the handler was installed nothing began;
            # during interpreter shutdown (handlers reset) the run had already finished.
            assert "run_started" not in names or "run_finished" in names, proc.tail()
            if "run_started" not in names:  # a busy machine: the next SIGTERM goes later
                estimate.started *= 2
                estimate.batches = max(estimate.batches * 2, estimate.started + 0.05)
            continue
        result = proc.json()
        assert code == 0 and result is not None, f"exit {code}:\n{proc.tail()}"
        status = result["rules"][0]["status"]
        assert status in ("interrupted", "ok"), result
        interrupted += status == "interrupted"
        store = AuditStore(shop.audit)
        try:
            assert store.open_batches() == [], "SIGTERM left a batch open"
        finally:
            store.close()
        check_invariants(shop, finished=False)
    shop.run_to_completion()
    counts = check_invariants(shop)
    print(f"{config}: {interrupted} of 5 runs interrupted by SIGTERM, {counts}")
    assert interrupted >= 3


# -- the auditor's report agrees with a run ------------------------------------------


def test_report_counts_held_records_like_a_dry_run(fast_dir: Path) -> None:
    """SPEC §4.7: reports count held records; report and run --dry-run agree at one instant."""
    shop = Shop(f"sqlite:///{fast_dir}/target.db", f"sqlite:///{fast_dir}/audit.db",
                fast_dir, random.Random(47))
    shop.seed(30, 30)
    shop.hold(3)
    dry = shop.command("run", str(shop.policy), "--dry-run", "--as-of", AS_OF.isoformat(),
                       "--format", "json")
    assert dry.returncode == 0, dry.stderr
    dry_rule = json.loads(dry.stdout)["rules"][0]
    assert (dry_rule["due"], dry_rule["held"]) == (len(shop.due), 3)
    report = shop.command("report", str(shop.policy), "--as-of", AS_OF.isoformat(),
                          "--format", "json", "--samples", "100")
    assert report.returncode == 0, report.stderr
    rule = json.loads(report.stdout)["rules"][0]
    sampled = {key["id"] for key in rule["samples"]}
    assert (rule["due"], rule["held"], sampled & shop.held) == (len(shop.due), 3, set()), rule


# -- a failed batch that cannot be settled at once -------------------------------


@pytest.mark.parametrize("committed", [False, True], ids=["rolled-back", "committed"])
@pytest.mark.parametrize("lookup_fails", [False, True], ids=["settled", "left-open"])
def test_a_failed_batch_is_recorded_once_whether_or_not_it_can_be_settled_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, committed: bool,
        lookup_fails: bool) -> None:
    """The connection drops at commit, and the reconcile lookup may fail right after it.

    SPEC §4.1/§4.2 (none twice, nothing unrecorded). A retry over a batch left open
    used to delete and record its rows again, and the next run's reconcile recorded
    them a second time (fixed in 53cb6d3, "Settle a failed batch before retrying it").
    Real SQLite databases and the real engine; the two faults are injected by wrapping
    the adapter, since a real server cannot be made to fail exactly there.
    """
    shop = Shop(f"sqlite:///{tmp_path}/t.db", f"sqlite:///{tmp_path}/a.db", tmp_path,
                random.Random(5))
    shop.seed(10, 5)
    monkeypatch.setenv("FAULT_TARGET_URL", shop.target)
    monkeypatch.setenv("FAULT_AUDIT_URL", shop.audit)
    policy = load_policy(write_policy(tmp_path, POLICY.replace(f"batch_size: {BATCH}",
                                                               "batch_size: 4")))
    real_run_batch, real_committed = SqlAdapter.run_batch, SqlAdapter.committed
    faults = {"commit": 1, "lookup": int(lookup_fails)}
    dropped = sa.exc.OperationalError(
        "COMMIT", {}, Exception("server closed the connection unexpectedly"))

    def run_batch(self: SqlAdapter, plan: Any, after: Any, hook: Any,
                  batch_id: str | None = None) -> Any:
        def dropping(batch: Any, conn: Any) -> None:
            hook(batch, conn)  # the intents are committed in the audit store ...
            if faults["commit"] and not committed:  # ... and the target never commits
                faults["commit"] -= 1
                raise dropped
        done = real_run_batch(self, plan, after, dropping, batch_id)
        if faults["commit"] and committed:  # the target committed; the reply was lost
            faults["commit"] -= 1
            raise dropped
        return done

    def proof(self: SqlAdapter, batch_ids: list[str]) -> Any:
        if faults["lookup"]:  # the database is still away when the batch is settled
            faults["lookup"] -= 1
            raise sa.exc.OperationalError("SELECT", {}, Exception("connection refused"))
        return real_committed(self, batch_ids)

    monkeypatch.setattr(SqlAdapter, "run_batch", run_batch)
    monkeypatch.setattr(SqlAdapter, "committed", proof)
    first = engine.run(policy, AS_OF)
    monkeypatch.setattr(SqlAdapter, "run_batch", real_run_batch)
    monkeypatch.setattr(SqlAdapter, "committed", real_committed)
    second = engine.run(policy, AS_OF)

    assert faults == {"commit": 0, "lookup": 0}
    assert first.rules[0].status.value in ("ok", "failed")
    assert second.rules[0].status.value == "ok"
    check_invariants(shop)


# -- 4. proof of commit: a key the application writes again -------------------------

FAULTPOINT = Path(__file__).with_name("faultpoint")  # sitecustomize that stops the process
SUBSCRIBERS = sa.Table(
    "subscribers", sa.MetaData(),
    sa.Column("email", sa.String(120), primary_key=True),
    sa.Column("unsubscribed_at", sa.DateTime, nullable=True),
    sa.Column("note", sa.String(40), nullable=True),
)
NEWSLETTER_POLICY = """\
policy: proof
version: "1"
timezone: UTC
sources:
  list:
    adapter: sql
    url: ${FAULT_TARGET_URL}
audit:
  url: ${FAULT_AUDIT_URL}
rules:
  newsletter:
    source: list
    table: subscribers
    retain: 30 days after unsubscribed_at
    batch_size: 20
    max_fraction: 1.0
"""
GONE_AT = dt.datetime(2024, 5, 1, 8, 30)  # unsubscribed long before AS_OF: due


@dataclass
class Mailing:
    """A newsletter list keyed by e-mail address, with its audit store in another database."""

    target: str
    audit: str
    workdir: Path
    due: list[str] = field(default_factory=list)
    runs: int = 0

    def __post_init__(self) -> None:
        self.policy = write_policy(self.workdir, NEWSLETTER_POLICY, "proof.yaml")
        self.due = [f"reader-{i:03d}@example.org" for i in range(50)]
        kept = [f"fan-{i:03d}@example.org" for i in range(30)]
        self.write(lambda conn: (SUBSCRIBERS.create(conn), conn.execute(SUBSCRIBERS.insert(), [
            {"email": e, "unsubscribed_at": GONE_AT, "note": "old"} for e in self.due
        ] + [{"email": e, "unsubscribed_at": None, "note": "reader"} for e in kept])))

    def write(self, change: Any) -> None:
        eng = sa.create_engine(self.target, poolclass=NullPool)
        try:
            with eng.begin() as conn:
                change(conn)
        finally:
            eng.dispose()

    def rows(self) -> dict[str, tuple[Any, ...]]:
        eng = sa.create_engine(self.target, poolclass=NullPool)
        try:
            with eng.connect() as conn:
                return {r.email: tuple(r) for r in conn.execute(sa.select(SUBSCRIBERS))}
        finally:
            eng.dispose()

    def marks(self) -> int:
        """Commit markers left in the target."""
        eng = sa.create_engine(self.target, poolclass=NullPool)
        try:
            with eng.connect() as conn:
                return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {MARKS_TABLE}"))
                           .scalar_one())
        finally:
            eng.dispose()

    def start(self, stop_at: str | None = None) -> Proc:
        env = run_env(self.target, self.audit)
        if stop_at:
            env.update(FAULT_STOP_AT=stop_at, PYTHONPATH=str(FAULTPOINT))
        self.runs += 1
        return start_run(self.workdir, self.runs, self.policy, AS_OF, env)


def run_env(target: str, audit: str, **extra: str) -> dict[str, str]:
    """This process's environment without retention's or the faultpoints' variables, with
    the shop's URLs (and ``extra``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETENTION_", "FAULT_"))}
    env.update(FAULT_TARGET_URL=target, FAULT_AUDIT_URL=audit, **extra)
    return env


def start_run(workdir: Path, number: int, policy: Path, as_of: dt.datetime,
              env: dict[str, str], *extra: str) -> Proc:
    """Start ``retention run`` at ``as_of`` with JSON output; stdout and stderr go to
    ``run-NNN.out`` and ``run-NNN.err`` in ``workdir``."""
    out = workdir / f"run-{number:03d}.out"
    err = workdir / f"run-{number:03d}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        popen = subprocess.Popen(
            [str(RETENTION), "run", str(policy), "--format", "json",
             "--as-of", as_of.isoformat(), *extra],
            stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env, cwd=workdir)
    return Proc(popen, out, err, time.time())


def stopped(proc: Proc, timeout: float = RUN_TIMEOUT) -> None:
    """Wait until ``proc`` has stopped itself (state T in /proc), failing if it ended."""
    deadline = time.monotonic() + timeout
    stat = Path(f"/proc/{proc.popen.pid}/stat")
    while time.monotonic() < deadline:
        assert proc.popen.poll() is None, f"the run ended before its stop:\n{proc.tail()}"
        if stat.read_text().rpartition(")")[2].split()[0] == "T":
            return
        time.sleep(0.01)
    raise AssertionError(f"the run never reached its stop:\n{proc.tail()}")


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def mailing(request: pytest.FixtureRequest, fast_dir: Path) -> Mailing:
    """The newsletter list on each backend; the audit store is a SQLite file beside it."""
    url_fixture = {"sqlite": None, "postgresql": "postgres_url", "mariadb": "mariadb_url"}
    name = url_fixture[request.param]
    target = (f"sqlite:///{fast_dir}/target.db" if name is None
              else request.getfixturevalue(name))
    return Mailing(target, f"sqlite:///{fast_dir}/audit.db", fast_dir)


def _audit_state(audit: str) -> tuple[list[dict[str, Any]], Any, list[dict[str, Any]]]:
    store = AuditStore(audit)
    try:
        return list(store.records()), store.verify(), store.open_batches()
    finally:
        store.close()


def test_a_key_written_again_after_the_target_committed_keeps_the_deletion_recorded(
        mailing: Mailing) -> None:
    """SPEC §4.2: kill -9 after the target committed and before batch_committed; the
    application then subscribes a deleted address again. The next run records the
    crashed batch's deletions (the reused address included) from proof of its commit,
    and leaves the new row alone and unrecorded."""
    proc = mailing.start(stop_at="after_target_commit")
    stopped(proc)
    first = sorted(mailing.due)[:20]  # the first batch, in key order
    assert not set(first) & set(mailing.rows()), "the target has not committed yet"
    again = first[3]
    mailing.write(lambda conn: conn.execute(SUBSCRIBERS.insert().values(
        email=again, unsubscribed_at=None, note="subscribed again")))
    assert proc.kill()

    final = mailing.start()
    assert final.wait() == 0, final.tail()
    result = final.json()
    assert result is not None and result["rules"][0]["status"] == "ok", final.stdout()

    records, verdict, still_open = _audit_state(mailing.audit)
    recorded = collections.Counter(json.loads(r["record_key"])["email"] for r in records)
    assert recorded == collections.Counter(mailing.due), recorded
    assert mailing.rows()[again] == (again, None, "subscribed again")
    assert verdict.ok, str(verdict)
    assert still_open == []
    reconciled = [e for e in final.events() if e.get("event") == "batch_reconciled"]
    assert [(e["confirmed"], e["rolled_back"]) for e in reconciled] == [(20, 0)], reconciled
    assert result["rules"][0]["recovered"] == 20
    assert mailing.marks() == 0


def test_a_row_the_application_deleted_after_a_rolled_back_batch_is_not_recorded_as_ours(
        mailing: Mailing) -> None:
    """SPEC §4.2, the converse: kill -9 before the target committed; the application then
    deletes one of the batch's rows itself. The next run records the batch as rolled back
    and never records that row as deleted by retention."""
    proc = mailing.start(stop_at="before_target_commit")
    stopped(proc)
    first = sorted(mailing.due)[:20]
    assert proc.kill()
    theirs = first[5]
    mailing.write(lambda conn: conn.execute(
        SUBSCRIBERS.delete().where(SUBSCRIBERS.c.email == theirs)))

    final = mailing.start()
    assert final.wait() == 0, final.tail()

    records, verdict, still_open = _audit_state(mailing.audit)
    recorded = collections.Counter(json.loads(r["record_key"])["email"] for r in records)
    assert recorded == collections.Counter(e for e in mailing.due if e != theirs), recorded
    assert verdict.ok, str(verdict)
    assert still_open == []
    reconciled = [e for e in final.events() if e.get("event") == "batch_reconciled"]
    assert [(e["confirmed"], e["rolled_back"]) for e in reconciled] == [(0, 20)], reconciled
    assert mailing.marks() == 0
