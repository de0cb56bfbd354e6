"""Manners between batches: pause, replica lag and ``max_runtime``, decided by one object.

The batch loop (:mod:`retention.run.enforce`) asks :meth:`Pace.before_batch` before
each batch and tells :meth:`Pace.after_batch` about each batch it committed:

* ``pause_between_batches``: rest that long after a batch, before the next one.
* ``max_replica_lag``: before every batch read the replicas' lag (the adapter's
  ``replica_lag``; the database differences live there) and wait while one is further
  behind than the limit, re-reading with backoff (1 s doubling to 30 s) and logging
  ``replica_lag_waited``. A replica whose lag is unknown (unreachable, replication
  stopped, no replica at all) is waited for the same way, logged as
  ``replica_lag_unknown``: going on could hurt it, stopping at once would fail a run
  over a blip. The rule fails (between batches, everything done is committed and
  audited) once lag stays unknown for ``UNKNOWN_LAG_LIMIT`` or too high for
  ``LAG_WAIT_LIMIT``.
* ``max_runtime`` (the rule's, lowered by ``run --max-runtime``): counted from the
  rule's start; no batch starts once it has passed, and a pause or wait ends at it.
  The rule ends ``incomplete``: its batches are committed and audited, the next run
  continues where it stopped.

A stop signal ends every pause and wait at once; the loop then ends the rule as
``interrupted``. Time comes from :func:`clock` and :func:`sleep` (tests replace them).
"""

from __future__ import annotations

import time
from typing import Any

from retention.adapters.protocol import Adapter, ReplicaLag
from retention.plan import Plan
from retention.run import stop
from retention.run.outcome import RuleOutcome, Status
from retention.run.progress import Bar
from retention.run.validate import reason

LAG_POLL_FIRST = 1.0  # seconds before a lagging replica is read again
LAG_POLL_MAX = 30.0  # seconds: the backoff between readings stops growing here
LAG_WAIT_LIMIT = 3600.0  # seconds a rule waits for lagging replicas before it fails
UNKNOWN_LAG_LIMIT = 300.0  # seconds a rule waits for a replica of unknown lag before it fails


def clock() -> float:
    """Seconds on a clock that never jumps (the runtime and the waits are measured on it)."""
    return time.monotonic()


def sleep(seconds: float) -> bool:
    """Wait ``seconds``; True when a stop was requested meanwhile (the wait ends then)."""
    return stop.requested.wait(max(0.0, seconds))


class ReplicaLagError(RuntimeError):
    """Replicas stayed behind, or unreadable, for too long: the rule fails between batches."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message}; stopped between batches (the next run goes on)")


def runtime_limit(plan: Plan, max_runtime: float | None) -> float | None:
    """The rule's ``max_runtime``, lowered (never raised) by the command line's."""
    limits = [m for m in (plan.max_runtime, max_runtime) if m is not None]
    return min(limits) if limits else None


class Pace:
    """The between-batch decisions for one rule's run (see the module)."""

    def __init__(self, plan: Plan, adapter: Adapter, result: RuleOutcome, log: Any,
                 max_runtime: float | None = None, console: Any = None) -> None:
        self.plan, self.adapter, self.result, self.log = plan, adapter, result, log
        self.max_runtime = runtime_limit(plan, max_runtime)
        self.started = clock()
        self.deadline = None if self.max_runtime is None else self.started + self.max_runtime
        self.batches = 0  # batches committed (or found empty) so far
        self.console = console  # a rich Console: show a bar there instead of log lines
        self._bar: Bar | None = None
        self._batch_started: float | None = None
        self._closing = False  # the batch after the last counted row went (see before_batch)

    # -- before a batch -----------------------------------------------------------

    def before_batch(self) -> bool:
        """Rest and wait as the plan asks. False: ``max_runtime`` has passed, and the rule
        ends here as ``incomplete`` (``result`` says so). True: go on (the loop then
        checks the stop flag and the lease, as always).

        Once every row counted as due is done, the next batch only confirms that nothing
        is left (it changes nothing): it goes at once, without pause, wait or deadline.
        Only one batch goes that way, so rows that fell due unseen are still paced.
        """
        done = self.result.deleted + self.result.anonymized
        if done >= self.result.due and not self._closing:
            self._closing = True
            self._batch_started = clock()
            return True
        if self._past_deadline():
            return self._incomplete()
        if self.batches and self.plan.pause_between_batches > 0:
            if self._rest(self.plan.pause_between_batches):
                return True  # a stop was requested: the loop ends the rule
            if self._past_deadline():
                return self._incomplete()
        if self.plan.max_replica_lag is not None \
                and not self._wait_for_replicas(self.plan.max_replica_lag):
            return self._incomplete()
        if self._bar is None and self.console is not None and self.result.due:
            self._bar = Bar(self.console, self.plan.rule, self.result.due, clock)
        self._batch_started = clock()
        return True

    def _past_deadline(self) -> bool:
        return self.deadline is not None and clock() >= self.deadline

    def _incomplete(self) -> bool:
        done = self.result.deleted + self.result.anonymized
        self.result.status = Status.INCOMPLETE
        self.result.error = (f"max_runtime of {self.max_runtime:g} s reached after {done} of "
                             f"{self.result.due} rows; the next run continues")
        self.log.warning("rule_incomplete", max_runtime=self.max_runtime, batches=self.batches,
                         deleted=self.result.deleted, anonymized=self.result.anonymized,
                         due=self.result.due)
        return False

    def _rest(self, seconds: float) -> bool:
        """Sleep ``seconds`` (never past the deadline); True when a stop was requested."""
        if self.deadline is not None:
            seconds = min(seconds, max(0.0, self.deadline - clock()))
        begun = clock()
        stopped = sleep(seconds)
        self.result.waited_seconds += clock() - begun
        return stopped

    def _wait_for_replicas(self, limit: float) -> bool:
        """Wait until every replica is within ``limit``; False once the deadline passed.

        Raises :class:`ReplicaLagError` after ``LAG_WAIT_LIMIT`` behind or
        ``UNKNOWN_LAG_LIMIT`` unknown.
        """
        delay = LAG_POLL_FIRST
        behind_since: float | None = None
        unknown_since: float | None = None
        while True:
            readings = self._read()
            behind = {r.replica: r.seconds for r in readings
                      if r.seconds is not None and r.seconds > limit}
            unknown = {r.replica: r.note for r in readings if r.seconds is None}
            now = clock()
            if not behind and not unknown:
                if behind_since is not None or unknown_since is not None:
                    self.log.info("replica_lag_recovered", waited=round(
                        now - min(t for t in (behind_since, unknown_since) if t is not None), 3))
                return True
            behind_since = None if not behind else now if behind_since is None else behind_since
            unknown_since = (None if not unknown else now if unknown_since is None
                             else unknown_since)
            if unknown_since is not None and now - unknown_since >= UNKNOWN_LAG_LIMIT:
                raise ReplicaLagError(
                    f"the lag of {_listed(unknown)} stayed unknown for {UNKNOWN_LAG_LIMIT:g} s")
            if behind_since is not None and now - behind_since >= LAG_WAIT_LIMIT:
                raise ReplicaLagError(
                    f"{_listed(behind, ' s behind')} stayed more than max_replica_lag "
                    f"{limit:g} s behind for {LAG_WAIT_LIMIT:g} s")
            if self.deadline is not None and now >= self.deadline:
                return False
            if behind:
                self.log.warning("replica_lag_waited", lag=max(behind.values()),
                                 max_replica_lag=limit, replicas=behind, wait=delay)
            if unknown:
                self.log.warning("replica_lag_unknown", replicas=unknown, wait=delay)
            if self._rest(delay):
                return True  # a stop was requested: the loop ends the rule
            delay = min(delay * 2, LAG_POLL_MAX)

    def _read(self) -> list[ReplicaLag]:
        try:
            return list(self.adapter.replica_lag())  # type: ignore[attr-defined]
        except Exception as exc:  # the primary cannot be asked: unknown, like a replica
            return [ReplicaLag(f"source {self.plan.source!r}", None,
                               f"cannot read the replicas' lag: {reason(exc)}")]

    # -- after a batch ------------------------------------------------------------

    def after_batch(self, rows: int, batch_id: str) -> None:
        """Count the batch just committed (``rows`` records, children included): move the
        bar on a terminal, else log ``batch_committed`` with the rate so far."""
        if self._batch_started is not None:
            self.result.batch_seconds += clock() - self._batch_started
            self._batch_started = None
        self.batches += 1
        done = self.result.deleted + self.result.anonymized
        if self._bar is not None:
            self._bar.update(done)
        elif rows:
            seconds = self.result.batch_seconds
            self.log.info("batch_committed", rows=rows, batch_id=batch_id,
                          rows_per_second=round(done / seconds, 1) if seconds > 0 else None)

    def close(self) -> None:
        """End the bar, if one is shown. Never raises."""
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.close()


def _listed(found: dict[str, Any], unit: str = "") -> str:
    return ", ".join(f"{name} ({value}{unit})" for name, value in found.items())
