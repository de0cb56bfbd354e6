"""The between-batch decisions (``retention.run.throttle.Pace``) on a fake clock.

No database: the plan is plain data and the replicas' lag comes from a scripted reader.
Time passes only when the throttle sleeps (or a test moves the clock), so every wait
and deadline is checked exactly, and instantly.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from retention.adapters.protocol import ReplicaLag
from rich.console import Console
from structlog.testing import capture_logs

from retention.actions import DELETE
from retention.plan import EventType, Plan
from retention.policy.phrase import parse
from retention.run import throttle
from retention.run.outcome import RuleOutcome, Status
from retention.run.throttle import Pace, ReplicaLagError, runtime_limit


class FakeTime:
    """A monotonic clock that moves only when slept on (or told to)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.stop_after: int | None = None  # the sleep that a stop signal cuts short

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        if self.stop_after is not None and len(self.slept) >= self.stop_after:
            return True
        self.now += seconds
        return False


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTime]:
    time = FakeTime()
    monkeypatch.setattr(throttle, "clock", time.clock)
    monkeypatch.setattr(throttle, "sleep", time.sleep)
    yield time


class Replicas:
    """An adapter whose replicas report the scripted lags, one list per reading."""

    def __init__(self, *readings: float | Exception | None) -> None:
        self.readings = list(readings)
        self.asked = 0

    def replica_lag(self) -> list[ReplicaLag]:
        self.asked += 1
        value = self.readings[min(self.asked, len(self.readings)) - 1]
        if isinstance(value, Exception):
            raise value
        return [ReplicaLag("replica-1", value, "" if value is not None else "stopped")]


def plan(**manners: Any) -> Plan:
    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    return Plan(policy="p", rule="orders", source="db", table="orders", primary_key=("id",),
                event_column="done_at", event_type=EventType.AWARE,
                retain=parse("1 day after done_at"), timezone="UTC", as_of=at, cutoff=at,
                bound=at, filters=(), action=DELETE, children=(), batch_size=10,
                max_fraction=1.0, max_rows=None, **manners)


def pace(adapter: Any = None, due: int = 100, max_runtime: float | None = None,
         console: Console | None = None, **manners: Any) -> Pace:
    result = RuleOutcome("orders", "delete", due=due)
    return Pace(plan(**manners), adapter or Replicas(0.0), result,
                structlog.get_logger("test").bind(rule="orders"), max_runtime, console)


def batch(p: Pace, rows: int, seconds: float, fake: FakeTime) -> None:
    """One batch of ``rows`` deleted rows taking ``seconds``."""
    fake.now += seconds
    p.result.deleted += rows
    p.after_batch(rows, f"batch-{p.batches}")


# -- replica lag ------------------------------------------------------------------------


def test_a_lagging_replica_pauses_the_next_batch_until_its_lag_drops(fake: FakeTime) -> None:
    """Lag 12 s and 8 s over a 5 s limit: wait 1 s, then 2 s (backoff), logging each wait
    with the lag; at 3 s the batch goes."""
    replicas = Replicas(12.0, 8.0, 3.0)
    p = pace(replicas, max_replica_lag=5.0)

    with capture_logs() as logs:
        assert p.before_batch() is True

    assert replicas.asked == 3
    assert fake.slept == [1.0, 2.0]
    waited = [e for e in logs if e["event"] == "replica_lag_waited"]
    assert [(e["lag"], e["max_replica_lag"], e["wait"]) for e in waited] == [
        (12.0, 5.0, 1.0), (8.0, 5.0, 2.0)]
    assert waited[0]["replicas"] == {"replica-1": 12.0}
    assert [e["event"] for e in logs][-1] == "replica_lag_recovered"
    assert p.result.waited_seconds == 3.0
    assert p.result.status is Status.OK


def test_a_replica_within_the_limit_costs_one_reading_and_no_wait(fake: FakeTime) -> None:
    """Lag at the limit (5 s of 5 s) is within it: one reading per batch, no sleep."""
    replicas = Replicas(5.0)
    p = pace(replicas, max_replica_lag=5.0)

    for _ in range(3):
        assert p.before_batch() is True
        batch(p, 10, 0.5, fake)

    assert replicas.asked == 3
    assert fake.slept == []


def test_the_backoff_doubles_up_to_its_ceiling(fake: FakeTime) -> None:
    """Re-readings of a lagging replica come 1, 2, 4, 8, 16, 30, 30 s apart."""
    p = pace(Replicas(*[99.0] * 7, 0.0), max_replica_lag=5.0)

    assert p.before_batch() is True

    assert fake.slept == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_unknown_lag_is_waited_for_then_fails_the_rule(fake: FakeTime) -> None:
    """Replication stopped (lag NULL) is never read as 0: the batch waits, logging why, and
    after UNKNOWN_LAG_LIMIT the rule fails before the batch."""
    p = pace(Replicas(None), max_replica_lag=5.0)

    with capture_logs() as logs, pytest.raises(ReplicaLagError) as caught:
        p.before_batch()

    assert sum(fake.slept) >= throttle.UNKNOWN_LAG_LIMIT
    assert sum(fake.slept[:-1]) < throttle.UNKNOWN_LAG_LIMIT
    assert "replica-1 (stopped)" in str(caught.value)
    assert "unknown" in str(caught.value)
    unknown = [e for e in logs if e["event"] == "replica_lag_unknown"]
    assert unknown and unknown[0]["replicas"] == {"replica-1": "stopped"}


def test_unknown_lag_that_comes_back_lets_the_batch_go(fake: FakeTime) -> None:
    """A replica unreadable for a moment (a blip) delays the batch but does not fail it."""
    p = pace(Replicas(None, RuntimeError("connection reset"), 1.0), max_replica_lag=5.0)

    assert p.before_batch() is True
    assert fake.slept == [1.0, 2.0]


def test_a_lag_reader_that_raises_counts_as_unknown(fake: FakeTime) -> None:
    """The primary refusing the lag query is unknown lag, with the reason in the log."""
    p = pace(Replicas(RuntimeError("permission denied for pg_stat_replication")),
             max_replica_lag=5.0)

    with capture_logs() as logs, pytest.raises(ReplicaLagError):
        p.before_batch()

    assert "permission denied" in str(logs[0]["replicas"])


def test_a_replica_lagging_for_an_hour_fails_the_rule(fake: FakeTime) -> None:
    """Lag above the limit is waited for up to LAG_WAIT_LIMIT, then the rule fails."""
    p = pace(Replicas(50.0), max_replica_lag=5.0)

    with pytest.raises(ReplicaLagError) as caught:
        p.before_batch()

    assert throttle.LAG_WAIT_LIMIT <= sum(fake.slept) < throttle.LAG_WAIT_LIMIT + 30
    assert "replica-1 (50.0 s behind)" in str(caught.value)


def test_without_a_lag_limit_the_replicas_are_not_asked(fake: FakeTime) -> None:
    replicas = Replicas(None)
    p = pace(replicas)

    assert p.before_batch() is True
    assert replicas.asked == 0


def test_a_rule_with_nothing_due_does_not_wait_for_replicas(fake: FakeTime) -> None:
    """Its one batch finds nothing and changes nothing: no load to spare the replicas."""
    replicas = Replicas(None)
    p = pace(replicas, due=0, max_replica_lag=5.0)

    assert p.before_batch() is True
    assert replicas.asked == 0


def test_once_every_due_row_is_done_the_closing_batch_goes_at_once(fake: FakeTime) -> None:
    """The batch after the last counted row only confirms nothing is left: no pause, no
    lag reading, no deadline (the rule is done, not incomplete). One batch only: rows
    that fell due unseen after it are paced again."""
    replicas = Replicas(0.0)
    p = pace(replicas, due=20, max_runtime=10.0, pause_between_batches=3.0,
             max_replica_lag=5.0)
    assert p.before_batch() is True
    batch(p, 10, 1.0, fake)
    assert p.before_batch() is True
    batch(p, 10, 20.0, fake)  # past the deadline, with everything due done
    slept, asked = list(fake.slept), replicas.asked

    assert p.before_batch() is True
    assert (fake.slept, replicas.asked) == (slept, asked)
    assert p.result.status is Status.OK
    batch(p, 5, 1.0, fake)  # five more rows were due after all: the next batch is paced
    assert p.before_batch() is False
    assert p.result.status is Status.INCOMPLETE


# -- pause_between_batches ------------------------------------------------------------


def test_a_pause_comes_between_batches_and_not_before_the_first(fake: FakeTime) -> None:
    p = pace(pause_between_batches=2.5)

    assert p.before_batch() is True
    assert fake.slept == []
    batch(p, 10, 0.1, fake)
    assert p.before_batch() is True
    batch(p, 10, 0.1, fake)
    assert p.before_batch() is True

    assert fake.slept == [2.5, 2.5]
    assert p.result.waited_seconds == 5.0
    assert p.result.batch_seconds == pytest.approx(0.2)


def test_a_stop_signal_ends_a_pause_at_once_and_the_loop_sees_it(fake: FakeTime) -> None:
    """The pause returns True (go on to the loop's stop check) without waiting for
    replicas or marking the rule incomplete."""
    replicas = Replicas(0.0)
    p = pace(replicas, pause_between_batches=60.0, max_replica_lag=5.0)
    assert p.before_batch() is True
    batch(p, 10, 0.1, fake)
    asked = replicas.asked
    fake.stop_after = 1

    assert p.before_batch() is True

    assert replicas.asked == asked
    assert p.result.status is Status.OK


# -- max_runtime ----------------------------------------------------------------------


def test_max_runtime_stops_before_the_next_batch_once_passed(fake: FakeTime) -> None:
    """Batches of 4 s under a 10 s max_runtime: three start (at 0, 4 and 8 s), the fourth
    does not; the rule is incomplete and says how far it got."""
    p = pace(max_runtime=10.0)
    started = 0
    with capture_logs() as logs:
        while p.before_batch():
            started += 1
            batch(p, 10, 4.0, fake)

    assert started == 3
    assert p.result.status is Status.INCOMPLETE
    assert p.result.error == ("max_runtime of 10 s reached after 30 of 100 rows; the next "
                              "run continues")
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["rule_incomplete"]


def test_a_pause_is_cut_short_at_the_deadline(fake: FakeTime) -> None:
    """A 60 s pause with 7 s of a 10 s max_runtime left sleeps 7 s, then stops the rule."""
    p = pace(max_runtime=10.0, pause_between_batches=60.0)
    assert p.before_batch() is True
    batch(p, 10, 3.0, fake)

    assert p.before_batch() is False

    assert fake.slept == [7.0]
    assert p.result.status is Status.INCOMPLETE


def test_a_wait_for_replicas_ends_at_the_deadline_as_incomplete(fake: FakeTime) -> None:
    """max_runtime wins over waiting for a lagging replica: no failure, incomplete."""
    p = pace(Replicas(0.0, 60.0), max_runtime=10.0, max_replica_lag=5.0)
    assert p.before_batch() is True
    batch(p, 10, 1.0, fake)

    assert p.before_batch() is False

    assert sum(fake.slept) == pytest.approx(9.0)
    assert p.result.status is Status.INCOMPLETE


def test_the_runtime_counts_from_the_rule_start(fake: FakeTime) -> None:
    """Time before the first batch (reconciling, counting) is part of the runtime."""
    p = pace(max_runtime=10.0)
    fake.now += 11

    assert p.before_batch() is False


@given(st.one_of(st.none(), st.floats(1, 1e6)), st.one_of(st.none(), st.floats(1, 1e6)))
def test_the_command_line_max_runtime_only_lowers_the_rules(
        rule: float | None, option: float | None) -> None:
    """`--max-runtime` can shorten a rule's max_runtime, never lengthen or remove it."""
    found = runtime_limit(plan(max_runtime=rule), option)

    given_ = [v for v in (rule, option) if v is not None]
    assert found == (min(given_) if given_ else None)


# -- what each batch shows ------------------------------------------------------------


def test_off_a_terminal_each_batch_is_a_log_line_with_its_rate(fake: FakeTime) -> None:
    """`batch_committed` carries the rows, the batch id and rows per second of batch time
    (pauses left out)."""
    p = pace(pause_between_batches=10.0)
    with capture_logs() as logs:
        for _ in range(2):
            p.before_batch()
            batch(p, 100, 2.0, fake)

    lines = [e for e in logs if e["event"] == "batch_committed"]
    assert [(e["rows"], e["batch_id"], e["rows_per_second"]) for e in lines] == [
        (100, "batch-0", 50.0), (100, "batch-1", 50.0)]


def test_on_a_terminal_a_progress_bar_replaces_the_log_lines(fake: FakeTime) -> None:
    """A forced terminal shows the rule's bar: rows done of due, rows/s and ETA; no
    `batch_committed` lines."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    p = pace(due=30, console=console)
    with capture_logs() as logs:
        for _ in range(3):
            p.before_batch()
            batch(p, 10, 2.0, fake)
        p.close()

    shown = out.getvalue()
    assert "orders" in shown
    assert "30/30" in shown
    assert "rows/s" in shown
    assert "ETA" in shown
    assert [e for e in logs if e["event"] == "batch_committed"] == []


def test_a_rule_with_nothing_due_shows_no_bar(fake: FakeTime) -> None:
    out = io.StringIO()
    p = pace(due=0, console=Console(file=out, force_terminal=True, width=120))
    p.before_batch()
    p.after_batch(0, "batch-0")
    p.close()

    assert out.getvalue() == ""
