"""Enforce one rule: lease, reconcile, count, limits, then batch after batch.

Each batch is one transaction in the target, sized to take about the rule's
``batch_seconds`` (:mod:`retention.run.sizing`). Its audit entries (one compact
``records`` entry per table, built before the chain head is locked) are written in
that transaction when the audit store shares the database. Otherwise they are
written as intents just before the commit and confirmed after it, and the
batch writes a commit marker in its own transaction so that whether it
committed can be proven later; markers of confirmed batches are pruned every
``PRUNE_EVERY`` batches and at the end of the rule. A failed batch is
reconciled at once (its commit may have happened before the connection
dropped) and retried with backoff when the error is transient.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from typing import Any

from retention.adapters.protocol import Adapter, Batch, DueCount
from retention.audit import records
from retention.audit.store import AuditStore
from retention.plan import Plan
from retention.policy.rules import Policy
from retention.run import lease as leases
from retention.run import partitions, retry, sizing, stop
from retention.run.outcome import RuleOutcome, Status
from retention.run.reconcile import forget_marks, new_batch_id, reconcile
from retention.run.throttle import Pace
from retention.run.validate import reason
from retention.secrets import scrub

PRUNE_EVERY = 100  # confirmed batches whose commit markers are deleted in one statement


class LeaseLost(RuntimeError):
    """The rule's lease died mid-run (its audit-store session was cut)."""

    def __init__(self, rule: str) -> None:
        super().__init__(f"the lease of rule {rule!r} was lost; stopped between batches")


def limit_reason(plan: Plan, count: DueCount, max_rows: int | None) -> str | None:
    """Why a safety limit stops this plan, or None."""
    limits = [m for m in (plan.max_rows, max_rows) if m is not None]
    if limits and count.due > min(limits):
        return (f"{count.due} rows are due, more than max_rows {min(limits)}; raise "
                f"'max_rows' for rule {plan.rule!r} in the policy if this is intended")
    if count.total and count.due / count.total > plan.max_fraction:
        return (f"{count.due} of {count.total} rows ({count.due / count.total:.0%}) are due, "
                f"more than max_fraction {plan.max_fraction}; raise 'max_fraction' for rule "
                f"{plan.rule!r} in the policy if this is intended")
    return None


def enforce(
    policy: Policy, adapter: Adapter, plan: Plan, result: RuleOutcome,
    store: AuditStore | None, run_id: str, dry_run: bool, max_rows: int | None, log: Any,
    pace: Pace | None = None,
) -> None:
    """Run ``plan`` and fill ``result``; never raises (a failure becomes ``failed``).

    ``pace`` makes the between-batch decisions (:mod:`retention.run.throttle`); by
    default the plan's own, with log lines rather than a progress bar.
    """
    pace = pace or Pace(plan, adapter, result, log)
    result.cutoff, result.plan = plan.cutoff, plan.describe()
    lease = None
    try:
        if not dry_run:
            assert store is not None
            lease = leases.acquire(store, policy.name, plan.rule)
            if lease is None:
                result.status, result.error = Status.SKIPPED, "another runner holds the lease"
                log.warning("rule_skipped", reason=result.error)
                return
            result.recovered = len(reconcile(store, policy, adapter, run_id, plan.rule))
        count = _due_count(adapter, plan, dry_run)
        result.held, result.due, result.blocked = count.held, count.due, dict(count.blocked)
        log.info("rule_planned", plan=result.plan, due=count.due, held=count.held,
                 unreadable=count.unreadable,
                 **({"blocked": result.blocked} if result.blocked else {}))
        why = limit_reason(plan, count, max_rows)
        if why:
            result.status, result.error = Status.STOPPED, why
            log.warning("rule_stopped", reason=why)
            return
        if dry_run:
            result.children = dict(count.children)
            return
        assert store is not None and lease is not None
        _batches(policy, adapter, plan, result, store, run_id, lease, log, pace)
        log.info("rule_finished", status=result.status.value, deleted=result.deleted,
                 anonymized=result.anonymized, children=result.children)
    except Exception as exc:
        result.status, result.error = Status.FAILED, reason(exc)
        # The traceback as plain text: never frame locals (they hold URLs and personal
        # data), whatever structlog configuration a program embedding retention has.
        log.error("rule_failed", error=result.error,
                  traceback=scrub("".join(traceback.format_exception(exc))))
    finally:
        pace.close()
        if lease is not None:
            lease.release()


def _due_count(adapter: Adapter, plan: Plan, dry_run: bool) -> DueCount:
    """The rule's figures before its batches. A run counts the children batch by batch,
    so an adapter that can leave them out here (``counts_children_apart``: the SQL
    adapter's ``count(children=False)``, beyond the Protocol) saves a scan of each."""
    if not dry_run and getattr(adapter, "counts_children_apart", False):
        return adapter.count(plan, children=False)  # type: ignore[call-arg]
    return adapter.count(plan)


def _batches(
    policy: Policy, adapter: Adapter, plan: Plan, result: RuleOutcome, store: AuditStore,
    run_id: str, lease: leases.Lease, log: Any, pace: Pace,
) -> None:
    source_url = getattr(adapter, "raw_url", None)
    together = isinstance(source_url, str) and store.shares_database_with(source_url)
    closed: list[str] = []  # confirmed batches whose markers may go
    try:
        if partitions.drop_due(policy, adapter, plan, result, store, run_id, lease, log,
                               together, closed, pace):
            _loop(policy, adapter, plan, result, store, run_id, lease, log, together, closed,
                  pace)
    finally:
        forget_marks(adapter, closed, log)


def _loop(
    policy: Policy, adapter: Adapter, plan: Plan, result: RuleOutcome, store: AuditStore,
    run_id: str, lease: leases.Lease, log: Any, together: bool, closed: list[str], pace: Pace,
) -> None:
    after: tuple[Any, ...] | None = None
    attempt = 0
    reading = records.Reading.of(plan)
    sizer = sizing.Sizer(plan.batch_size, plan.batch_seconds)
    while True:
        if not pace.before_batch():  # pause, replica lag; False: max_runtime has passed
            return
        if stop.requested.is_set():
            result.status = Status.INTERRUPTED
            log.warning("rule_interrupted", deleted=result.deleted,
                        anonymized=result.anonymized)
            return
        if not lease.alive():
            raise LeaseLost(plan.rule)
        batch_id = new_batch_id(marked=not together)

        def hook(batch: Batch, conn: Any, batch_id: str = batch_id) -> None:
            removed = (*batch.removed, *records.from_rows(batch.rows))
            if not removed:
                return
            entries = store.batch_entries(run_id, plan.rule, plan.source, batch_id, removed,
                                          reading, committed=together)
            store.append(entries, conn if together else None)

        size = sizer.size
        started = time.monotonic()
        try:
            batch = adapter.run_batch(dataclasses.replace(plan, batch_size=size), after, hook,
                                      None if together else batch_id)
        except Exception as exc:
            # The commit may have gone through before the error. Retry only once the
            # batch is settled: a retry over a batch left open would record rows twice.
            if not together and not _recover(policy, adapter, plan, result, store, run_id,
                                             batch_id, log):
                raise
            if retry.is_transient(exc) and attempt < retry.RETRY_ATTEMPTS:
                attempt += 1
                log.warning("batch_retried", attempt=attempt, error=reason(exc))
                retry.pause(attempt)
                continue
            raise
        took = time.monotonic() - started
        attempt = 0
        changed = batch.changed
        if changed and not together:
            store.append([store.mark(run_id, plan.rule, batch_id, "batch_committed")])
            closed.append(batch_id)
            if len(closed) >= PRUNE_EVERY:
                forget_marks(adapter, closed, log)
        _count(result, plan, [(r.table, r.action, r.count) for r in batch.removed]
               + [(r.table, r.action, 1) for r in batch.rows])
        pace.after_batch(changed, batch_id)  # batch_committed, or the progress bar
        if batch.scanned < size:
            return
        after = batch.last_key
        sizer.measured(took)


def _recover(policy: Policy, adapter: Adapter, plan: Plan, result: RuleOutcome,
             store: AuditStore, run_id: str, batch_id: str, log: Any) -> bool:
    """Settle a failed batch now; False when that is impossible (the next run will)."""
    try:
        found = reconcile(store, policy, adapter, run_id, plan.rule, batch_ids=[batch_id])
    except Exception as exc:  # the target or the store is still away
        log.warning("batch_left_open", batch_id=batch_id, error=reason(exc))
        return False
    _count_recovered(result, plan, found)
    return True


def _count_recovered(result: RuleOutcome, plan: Plan, found: list[dict[str, Any]]) -> None:
    _count(result, plan, [(r["table_name"], r["action"], 1) for r in found])


def _count(result: RuleOutcome, plan: Plan, groups: list[tuple[str, str, int]]) -> None:
    for table, action, count in groups:
        if table != plan.table:
            result.children[table] = result.children.get(table, 0) + count
        elif action == "delete":
            result.deleted += count
        else:
            result.anonymized += count
