"""Execute plans through adapters, batch by batch, recording every change.

One run: validate the selected rules against the live schemas (bad input stops
everything before any change), open the audit store, reconcile batches a
crashed run left open, then for each rule: plan, count, check the safety
limits, and work through the due rows in batches, each batch one short
transaction whose audit entries are written with it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

from retention import validate
from retention.adapters.protocol import Adapter, Batch, DueCount
from retention.audit.store import AuditStore, RunInfo
from retention.errors import PolicyError, RetentionError, UsageError
from retention.outcome import RuleOutcome, RunOutcome, Status
from retention.plan import Plan, make_plan
from retention.reconcile import reconcile
from retention.registry import open_adapter
from retention.rules import Policy, Rule

log = structlog.get_logger("retention.engine")


@dataclass
class Session:
    """The open adapters of one policy; close it when done."""

    policy: Policy
    adapters: dict[str, Adapter] = field(default_factory=dict)

    def adapter(self, source: str) -> Adapter:
        if source not in self.adapters:
            self.adapters[source] = open_adapter(self.policy.sources[source])
        return self.adapters[source]

    def close(self) -> None:
        for adapter in self.adapters.values():
            adapter.close()
        self.adapters.clear()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def select_rules(policy: Policy, names: Iterable[str] | None) -> tuple[Rule, ...]:
    wanted = list(names or [])
    unknown = [n for n in wanted if n not in {r.name for r in policy.rules}]
    if unknown:
        known = ", ".join(r.name for r in policy.rules)
        raise UsageError(f"unknown rule {unknown[0]!r} in policy {policy.name!r} (rules: {known})")
    return tuple(r for r in policy.rules if not wanted or r.name in wanted)


def compile_plans(
    session: Session, rules: tuple[Rule, ...], as_of: dt.datetime,
    held: dict[str, tuple[tuple[object, ...], ...]] | None = None,
) -> tuple[dict[str, Plan], dict[str, str]]:
    """Plans for ``rules`` at ``as_of``, and the failure reason of rules whose source is down.

    Raises :class:`PolicyError` when the live schema does not fit the policy.
    """
    policy = session.policy
    adapters: dict[str, Adapter] = {}
    failed: dict[str, str] = {}
    for rule in rules:
        try:
            adapters[rule.source] = session.adapter(rule.source)
        except RetentionError:
            raise
        except Exception as exc:
            failed[rule.name] = validate.reason(exc)
    usable = tuple(r for r in rules if r.name not in failed)
    problems, schema = validate.check(policy, adapters, usable)
    if problems:
        raise PolicyError(problems)
    plans: dict[str, Plan] = {}
    for rule in usable:
        if rule.source in schema.unreachable:
            failed[rule.name] = schema.unreachable[rule.source]
            continue
        assert rule.table is not None
        naive = str(policy.sources[rule.source].options.get("naive_timestamps", "utc"))
        plans[rule.name] = make_plan(
            policy, rule, schema.tables[(rule.source, rule.table)],
            {c.table: schema.tables[(rule.source, c.table)] for c in rule.children},
            as_of, naive, (held or {}).get(rule.name, ()),
        )
    return plans, failed


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


def run(
    policy: Policy, as_of: dt.datetime, rule_names: Iterable[str] | None = None,
    dry_run: bool = False, max_rows: int | None = None, audit: AuditStore | None = None,
) -> RunOutcome:
    """Enforce ``policy`` as of ``as_of``. Raises only for bad input (nothing changed then)."""
    rules = select_rules(policy, rule_names)
    run_id = str(uuid.uuid4())
    outcome = RunOutcome(run_id, policy.name, as_of, dry_run)
    bound = log.bind(run_id=run_id, policy=policy.name)
    with Session(policy) as session:
        plans, failed = compile_plans(session, rules, as_of)
        own_audit = audit is None and not dry_run
        store = audit or (None if dry_run else AuditStore(policy.audit_url))
        try:
            if store is not None:
                store.start_run(RunInfo(run_id, policy.name, policy.version, policy.sha256,
                                        "dry-run" if dry_run else "run", as_of))
                reconcile(store, session, run_id)
            bound.info("run_started", as_of=as_of.isoformat(), dry_run=dry_run,
                       rules=[r.name for r in rules])
            for rule in rules:
                result = RuleOutcome(rule.name, rule.action.name)
                outcome.rules.append(result)
                rlog = bound.bind(rule=rule.name)
                if rule.name in failed:
                    result.status, result.error = Status.FAILED, failed[rule.name]
                    rlog.error("rule_failed", error=result.error)
                    continue
                _run_rule(session.adapter(rule.source), plans[rule.name], result, store,
                          run_id, dry_run, max_rows, rlog)
            if store is not None:
                store.finish_run(run_id, outcome.status.value,
                                 [r.as_json() for r in outcome.rules])
            bound.info("run_finished", status=outcome.status.value)
        finally:
            if own_audit and store is not None:
                store.close()
    return outcome


def _run_rule(
    adapter: Adapter, plan: Plan, result: RuleOutcome, store: AuditStore | None, run_id: str,
    dry_run: bool, max_rows: int | None, rlog: structlog.typing.FilteringBoundLogger,
) -> None:
    result.cutoff, result.plan = plan.cutoff, plan.describe()
    try:
        count = adapter.count(plan)
        result.held, result.due = count.held, count.due
        rlog.info("rule_planned", plan=result.plan, due=count.due, held=count.held)
        reason = limit_reason(plan, count, max_rows)
        if reason:
            result.status, result.error = Status.STOPPED, reason
            rlog.warning("rule_stopped", reason=reason)
            return
        if dry_run:
            result.children = dict(count.children)
            return
        assert store is not None
        _batches(adapter, plan, result, store, run_id, rlog)
        rlog.info("rule_finished", deleted=result.deleted, anonymized=result.anonymized,
                  children=result.children)
    except Exception as exc:
        result.status, result.error = Status.FAILED, validate.reason(exc)
        rlog.error("rule_failed", error=result.error, exc_info=True)


def _batches(
    adapter: Adapter, plan: Plan, result: RuleOutcome, store: AuditStore, run_id: str,
    rlog: structlog.typing.FilteringBoundLogger,
) -> None:
    source_url = getattr(adapter, "raw_url", None)
    together = isinstance(source_url, str) and store.shares_database_with(source_url)
    after = None
    while True:
        batch_id = uuid.uuid4().hex

        def hook(batch: Batch, conn: object, batch_id: str = batch_id) -> None:
            entries = store.batch_entries(run_id, plan.rule, plan.source, batch_id, batch.rows,
                                          committed=together)
            store.append(entries, conn if together else None)  # type: ignore[arg-type]

        batch = adapter.run_batch(plan, after, hook)
        if batch.rows and not together:
            store.append([store.mark(run_id, plan.rule, batch_id, "batch_committed")])
        for row in batch.rows:
            if row.table != plan.table:
                result.children[row.table] = result.children.get(row.table, 0) + 1
            elif row.action == "delete":
                result.deleted += 1
            else:
                result.anonymized += 1
        if batch.rows:
            rlog.info("batch_committed", rows=len(batch.rows), batch_id=batch_id)
        if batch.scanned < plan.batch_size:
            return
        after = batch.last_key
