"""Before the batches: drop the rule's wholly due partitions, each recorded like a batch.

A delete rule on a PostgreSQL table partitioned by range on its event column
(``drop_partitions``, on by default) first removes every partition whose whole
range is at or before the cutoff and whose rows are all due
(:mod:`retention.adapters.sql_partitions` decides and drops); the batches then
take the remaining due rows, exactly at the boundary, as always.

Each partition is one batch of the audit protocol, with its own batch id: its
records are the entries a batch would write for the same rows (:func:`_record`,
the one place that appends them). With the audit store in the target database
they, and ``batch_committed``, ride in the dropping transaction. Otherwise the
drop writes its commit marker, the records are appended as intents (committed in
the store) before the target commits, and ``batch_committed`` follows the commit;
a drop left open is settled by :mod:`retention.run.reconcile` from its marker,
exactly as a batch is. A drop that fails is settled at once and its partition is
left to the batches (a lock timeout, a view on the partition, a foreign key).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from retention.adapters.protocol import Adapter, Removed
from retention.audit import records
from retention.audit.store import AuditStore
from retention.plan import Plan
from retention.policy.rules import Policy
from retention.run import lease as leases
from retention.run import stop
from retention.run.outcome import RuleOutcome, Status
from retention.run.reconcile import new_batch_id, reconcile
from retention.run.throttle import Pace
from retention.run.validate import reason


def drop_due(policy: Policy, adapter: Adapter, plan: Plan, result: RuleOutcome,
             store: AuditStore, run_id: str, lease: leases.Lease, log: Any, together: bool,
             closed: list[str], pace: Pace) -> bool:
    """Drop the plan's wholly due partitions; False when the rule must end here
    (``max_runtime`` passed or a stop was requested: ``result`` says so).

    ``together``: the audit store is the target database. ``closed`` collects the
    batch ids whose markers may be pruned. Raises when a failed drop cannot be
    settled (the next run settles it) and when the lease is lost.
    """
    find = getattr(adapter, "partitions", None)
    if find is None or not plan.drop_partitions or plan.action.columns:
        return True
    layout = find(plan)
    if layout is None:
        return True
    for partition in layout.dropped:
        if not pace.before_batch():
            return False
        if stop.requested.is_set():
            result.status = Status.INTERRUPTED
            log.warning("rule_interrupted", deleted=result.deleted, anonymized=0)
            return False
        if not lease.alive():
            from retention.run.enforce import LeaseLost
            raise LeaseLost(plan.rule)
        batch_id = new_batch_id(marked=not together)

        def record(rows: Sequence[Removed], conn: Any, batch_id: str = batch_id) -> None:
            _record(store, run_id, plan, batch_id, rows, conn if together else None)

        def before_commit(conn: Any, batch_id: str = batch_id) -> None:
            if together:
                store.append([store.mark(run_id, plan.rule, batch_id, "batch_committed")], conn)

        try:
            rows = adapter.drop_partition(  # type: ignore[attr-defined]
                plan, partition, record, before_commit, None if together else batch_id)
        except Exception as exc:
            settled = 0 if together else _settle(policy, adapter, plan, result, store, run_id,
                                                 batch_id)
            if settled:  # it committed before the error: dropped, and now recorded
                result.partitions_dropped.append(partition.name)
            log.warning("partition_dropped" if settled else "partition_kept",
                        partition=partition.name, error=reason(exc), recovered=settled)
            continue
        if rows is None:
            log.info("partition_kept", partition=partition.name,
                     reason="no longer wholly due under the lock")
            continue
        if not together:
            store.append([store.mark(run_id, plan.rule, batch_id, "batch_committed")])
            closed.append(batch_id)
        result.deleted += rows
        result.partitions_dropped.append(partition.name)
        log.info("partition_dropped", partition=partition.name, rows=rows, batch_id=batch_id)
        pace.after_batch(rows, batch_id)
    return True


def _record(store: AuditStore, run_id: str, plan: Plan, batch_id: str,
            rows: Sequence[Removed], conn: Any) -> None:
    """Append the records of a chunk of a dropped partition's rows, as a batch would:
    in the target's transaction (``conn``), or as committed intents (``conn`` None)."""
    store.append(store.batch_entries(run_id, plan.rule, plan.source, batch_id,
                                     rows, records.Reading.of(plan),
                                     committed=False), conn)


def _settle(policy: Policy, adapter: Adapter, plan: Plan, result: RuleOutcome,
            store: AuditStore, run_id: str, batch_id: str) -> int:
    """Settle a failed drop now from its marker (its commit may have gone through before
    the error); returns the records it confirmed. Raises when that is impossible, so the
    rule fails and the next run settles it."""
    found = reconcile(store, policy, adapter, run_id, plan.rule, batch_ids=[batch_id])
    result.deleted += len(found)
    return len(found)
