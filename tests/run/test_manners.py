"""Polite runs on real databases: pauses, replica lag, max_runtime, progress, forecasts.

Time is faked where it matters (``throttle.clock`` and ``throttle.sleep``; a batch
"takes" a fixed number of seconds), so the tests prove behaviour without waiting.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from retention.adapters.protocol import ReplicaLag
from retention.adapters.sql import SqlAdapter
from rich.console import Console
from structlog.testing import capture_logs

from retention.audit.store import AuditStore
from retention.policy.load import load_policy
from retention.policy.rules import Policy
from retention.run import engine, throttle
from retention.run.outcome import EXIT_FAILED, EXIT_OK, Status
from tests.support import audited, keys, orders_with_lines, write_policy

AS_OF = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
ORDERS = 10  # orders (two lines each), all due at AS_OF
BATCH_SECONDS = 4.0  # what every batch "takes" on the fake clock


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        self.now += seconds
        return False


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTime]:
    """A clock on which every batch takes BATCH_SECONDS and sleeping takes no real time."""
    time = FakeTime()
    real = SqlAdapter.run_batch

    def slow_batch(self: SqlAdapter, *args: Any, **kwargs: Any) -> Any:
        time.now += BATCH_SECONDS
        return real(self, *args, **kwargs)

    monkeypatch.setattr(throttle, "clock", time.clock)
    monkeypatch.setattr(throttle, "sleep", time.sleep)
    monkeypatch.setattr(SqlAdapter, "run_batch", slow_batch)
    yield time


def shop(url: str, tmp_path: Path, manners: str = "", done_at: list[dt.datetime] | None = None,
         source_options: str = "") -> Policy:
    """ORDERS orders done in 2015 with two lines each, deleted in batches of 2 orders."""
    orders_with_lines(url, tmp_path, done_at or [dt.datetime(2015, 1, i)
                                                 for i in range(1, ORDERS + 1)], 2)
    return load_policy(write_policy(tmp_path, (
        "policy: orders\nsources:\n  db:\n    adapter: sql\n    url: '${ORDERS_TEST_URL}'\n"
        f"{source_options}audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        "rules:\n  orders:\n    table: orders\n    retain: 1 year after done_at\n"
        "    max_fraction: 1.0\n    batch_size: 2\n"
        f"    children:\n      - {{table: lines, key: order_id}}\n{manners}"), "polite.yaml"))


# -- max_runtime ------------------------------------------------------------------------


def test_max_runtime_stops_between_batches_and_the_next_run_finishes(
        db_url: str, tmp_path: Path, fake: FakeTime) -> None:
    """Batches of 4 s under a 10 s limit (the command line's, lower than the rule's 60 s):
    three batches (6 orders) go, the rule is `incomplete` (exit 0) with every change
    audited; the next run deletes the rest, and every order is audited exactly once."""
    policy = shop(db_url, tmp_path, "    max_runtime: 1 minute\n")

    first = engine.run(policy, AS_OF, max_runtime=10)

    result = first.rules[0]
    assert (result.status, result.deleted, result.children) == (
        Status.INCOMPLETE, 6, {"lines": 12})
    assert "max_runtime of 10 s" in (result.error or "")
    assert first.exit_code == EXIT_OK
    assert keys(db_url, "orders") == set(range(7, ORDERS + 1))
    assert sorted(r["key"]["id"] for r in audited(policy.audit_url, "orders")) == [
        1, 2, 3, 4, 5, 6]
    assert len(audited(policy.audit_url, "lines")) == 12
    store = AuditStore(policy.audit_url)
    try:
        assert store.run(first.run_id)["status"] == "incomplete"
        assert store.open_batches() == []
    finally:
        store.close()

    second = engine.run(policy, AS_OF)

    assert (second.rules[0].status, second.rules[0].deleted) == (Status.OK, 4)
    assert keys(db_url, "orders") == set()
    assert sorted(r["key"]["id"] for r in audited(policy.audit_url, "orders")) == list(
        range(1, ORDERS + 1))
    assert len(audited(policy.audit_url, "lines")) == 2 * ORDERS
    store = AuditStore(policy.audit_url)
    try:
        assert store.verify().ok
    finally:
        store.close()


# -- pause_between_batches --------------------------------------------------------------


def test_pause_between_batches_rests_after_every_batch_but_the_last(
        sqlite_url: str, tmp_path: Path, fake: FakeTime) -> None:
    """Five batches of 2 orders and a final empty one: a pause of 0.25 s between the five,
    none before the first, none before the empty one that only confirms nothing is left;
    the pauses are not counted as batch time."""
    policy = shop(sqlite_url, tmp_path, "    pause_between_batches: 0.25\n")

    outcome = engine.run(policy, AS_OF)

    assert outcome.rules[0].status is Status.OK
    assert outcome.rules[0].deleted == ORDERS
    assert fake.slept == [0.25] * 4
    assert outcome.rules[0].waited_seconds == pytest.approx(1.0)
    assert outcome.rules[0].batch_seconds == pytest.approx(6 * BATCH_SECONDS)


# -- max_replica_lag ----------------------------------------------------------------------


def test_lag_over_the_limit_pauses_the_run_until_it_drops(
        postgres_url: str, tmp_path: Path, fake: FakeTime,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A (simulated) standby 30 s behind before the third batch holds it back, re-read after
    1 s and 2 s, until it is 2 s behind; everything is deleted, and the waits are logged
    with the lag."""
    script = iter([0.0, 0.0, 30.0, 12.0, 2.0] + [0.0] * 10)
    monkeypatch.setattr(SqlAdapter, "replica_lag",
                        lambda self: [ReplicaLag("standby b@10.0.0.2", next(script))])
    policy = shop(postgres_url, tmp_path, "    max_replica_lag: 5\n")

    with capture_logs() as logs:
        outcome = engine.run(policy, AS_OF)

    assert (outcome.rules[0].status, outcome.rules[0].deleted) == (Status.OK, ORDERS)
    assert fake.slept == [1.0, 2.0]
    waited = [(e["lag"], e["rule"]) for e in logs if e["event"] == "replica_lag_waited"]
    assert waited == [(30.0, "orders"), (12.0, "orders")]
    assert keys(postgres_url, "orders") == set()


def test_postgres_without_standbys_runs_at_full_speed(
        postgres_url: str, tmp_path: Path, fake: FakeTime) -> None:
    """The real `pg_stat_replication` of a primary without standbys: no wait, all deleted."""
    policy = shop(postgres_url, tmp_path, "    max_replica_lag: 1\n")

    outcome = engine.run(policy, AS_OF)

    assert (outcome.rules[0].status, outcome.rules[0].deleted) == (Status.OK, ORDERS)
    assert fake.slept == []


def test_a_replica_that_is_no_replica_fails_the_rule_before_it_deletes_anything(
        mariadb_url: str, tmp_path: Path, fake: FakeTime) -> None:
    """A configured replica URL whose server reports no replication is unknown lag: the
    rule waits (logging why), then fails (exit 1) with nothing deleted; the next run starts
    over."""
    os.environ["REPLICA_TEST_URL"] = mariadb_url
    policy = shop(mariadb_url, tmp_path, "    max_replica_lag: 5\n",
                  source_options="    replicas: ['${REPLICA_TEST_URL}']\n")

    with capture_logs() as logs:
        outcome = engine.run(policy, AS_OF)

    result = outcome.rules[0]
    assert result.status is Status.FAILED
    assert outcome.exit_code == EXIT_FAILED
    assert "ReplicaLagError" in (result.error or "") and "no replica" in (result.error or "")
    assert result.deleted == 0
    assert keys(mariadb_url, "orders") == set(range(1, ORDERS + 1))
    assert audited(policy.audit_url) == []
    assert throttle.UNKNOWN_LAG_LIMIT <= sum(fake.slept) < throttle.UNKNOWN_LAG_LIMIT + 30
    assert any(e["event"] == "replica_lag_unknown" for e in logs)


# -- progress -------------------------------------------------------------------------------


def test_on_a_terminal_the_run_draws_a_bar_instead_of_batch_lines(
        sqlite_url: str, tmp_path: Path) -> None:
    """With a (forced) terminal console each rule gets a bar: rows done of due, rows/s,
    ETA; no `batch_committed` line. Without one, a line per batch with its rate."""
    policy = shop(sqlite_url, tmp_path)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)

    with capture_logs() as logs:
        outcome = engine.run(policy, AS_OF, progress=console)

    assert outcome.rules[0].deleted == ORDERS
    shown = out.getvalue()
    assert "orders" in shown and f"{ORDERS}/{ORDERS}" in shown
    assert "rows/s" in shown and "ETA" in shown
    assert not [e for e in logs if e["event"] == "batch_committed"]


def test_off_a_terminal_every_batch_is_a_line_with_its_rate(
        sqlite_url: str, tmp_path: Path, fake: FakeTime) -> None:
    policy = shop(sqlite_url, tmp_path)

    with capture_logs() as logs:
        engine.run(policy, AS_OF)

    lines = [e for e in logs if e["event"] == "batch_committed"]
    assert [e["rows"] for e in lines] == [6] * 5  # 2 orders and their 4 lines each
    assert {e["rows_per_second"] for e in lines} == {2 / BATCH_SECONDS}


# -- dry-run forecast ---------------------------------------------------------------------


def test_a_dry_run_forecasts_batches_and_time_from_the_last_measured_rate(
        sqlite_url: str, tmp_path: Path, fake: FakeTime) -> None:
    """Before any run the time is unknown; after a run that deleted 4 orders in 3 batches
    of 4 s (1/3 order per second), 6 due orders in batches of 2 take 3 batches, 18 s of
    batches plus 2 pauses of 1.5 s; with max_runtime 10 s, three runs."""
    done = [dt.datetime(2014, 1, i) for i in range(1, 5)] + [
        dt.datetime(2015, 1, i) for i in range(1, 7)]
    policy = shop(sqlite_url, tmp_path, "    pause_between_batches: 1.5\n"
                  "    max_runtime: 10 seconds\n", done_at=done)

    before = engine.run(policy, AS_OF, dry_run=True).rules[0].as_json()
    assert {k: before[k] for k in ("batches", "expected_seconds", "rows_per_second",
                                   "rate_from")} == {"batches": 5, "expected_seconds": None,
                                                     "rows_per_second": None, "rate_from": None}
    assert not (tmp_path / "audit.db").exists()  # a dry run creates no store to read from

    measured = engine.run(policy, dt.datetime(2015, 6, 1, tzinfo=dt.UTC))  # the 2014 orders
    assert (measured.rules[0].status, measured.rules[0].deleted) == (Status.OK, 4)

    after = engine.run(policy, AS_OF, dry_run=True).rules[0].as_json()

    assert after["batches"] == 3
    assert after["rows_per_second"] == pytest.approx(4 / (3 * BATCH_SECONDS), abs=0.05)
    assert after["expected_seconds"] == pytest.approx(6 * 3 + 2 * 1.5, abs=0.1)
    assert after["rate_from"] == measured.run_id
    assert after["runs_needed"] == 3
    assert after["deleted"] == 0 and keys(sqlite_url, "orders") == set(range(5, 11))


def test_run_dry_run_shows_the_forecast_in_json_and_table(
        sqlite_url: str, tmp_path: Path) -> None:
    """`run --dry-run --format json` adds batches, expected_seconds, rows_per_second and
    rate_from to each rule (the other fields unchanged); the table has batches and
    expected columns."""
    from tests.cli.test_cli import cli

    policy = shop(sqlite_url, tmp_path)
    env = {"ORDERS_TEST_URL": sqlite_url}

    proc = cli("run", policy.path, "--dry-run", "--format", "json", "--max-runtime", "1 hour",
               env=env, cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    rule = json.loads(proc.stdout)["rules"][0]
    assert rule["batches"] == ORDERS // 2
    assert rule["expected_seconds"] is None and rule["rate_from"] is None
    assert {"rule", "status", "deleted", "anonymized", "held", "children", "action", "due",
            "cutoff", "blocked"} <= set(rule)
    assert (rule["due"], rule["deleted"]) == (ORDERS, 0)

    table = cli("run", policy.path, "--dry-run", env=env, cwd=tmp_path)

    assert table.returncode == 0, table.stderr
    assert "batches" in table.stdout and "expected" in table.stdout
    assert "unknown" in table.stdout
