"""Execute plans through adapters, batch by batch, recording every change.

One run: validate the selected rules against the live schemas (bad input stops
everything before any change), open the audit store, compile plans with the
active legal holds, and hand each rule to :func:`retention.run.enforce.enforce`
(lease, reconcile, count, limits, batches). A failing rule does not stop the
others.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from retention import calendar
from retention.adapters.protocol import Adapter
from retention.adapters.registry import open_adapter
from retention.audit import checkpoints, policies
from retention.audit.store import AuditStore, RunInfo
from retention.errors import (
    AdapterError,
    PolicyError,
    Problem,
    RetentionError,
    SourceError,
    UsageError,
)
from retention.plan import Plan
from retention.policy.rules import Policy, Rule
from retention.run import estimate, holds, stop, validate
from retention.run.compile import make_plan
from retention.run.enforce import enforce
from retention.run.outcome import RuleOutcome, RunOutcome, Status
from retention.run.throttle import Pace, runtime_limit

log = structlog.get_logger("retention.run.engine")


@dataclass
class Session:
    """The open adapters of one policy; close it when done."""

    policy: Policy
    adapters: dict[str, Adapter] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)  # of the last compile_plans

    def __post_init__(self) -> None:
        if self.policy.unset:  # loaded for a command that opens no source (policy.needs)
            raise PolicyError(self.policy.unset)

    def adapter(self, source: str) -> Adapter:
        """The open adapter of ``source``. Raises :class:`PolicyError` (on the source's
        line) for a source that cannot be used as written."""
        if source not in self.adapters:
            found = self.policy.sources[source]
            try:
                self.adapters[source] = open_adapter(found)
            except SourceError as exc:
                raise PolicyError.single(self.policy.path, found.line, None,
                                         f"source {source!r}: {exc.reason}") from None
            except AdapterError as exc:  # not installed, or not a complete adapter
                line = found.lines.get("adapter", found.line)
                raise PolicyError.single(self.policy.path, line, None,
                                         f"source {source!r}: adapter {exc.adapter!r} "
                                         f"{exc.reason}") from None
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


HeldKeys = Callable[[Rule, tuple[str, ...]], tuple[tuple[Any, ...], ...]]


def compile_plans(
    session: Session, rules: tuple[Rule, ...], as_of: dt.datetime,
    held: HeldKeys | None = None, nothing_due_before_year_1: bool = False,
) -> tuple[dict[str, Plan], dict[str, str]]:
    """Plans for ``rules`` at ``as_of``, and the failure reason of rules whose source is down.

    Raises :class:`PolicyError` when the live schema does not fit the policy, or a
    cutoff falls outside the calendar (unless ``nothing_due_before_year_1``: see
    :func:`make_plan`); what is valid but worth a warning is left in ``session.warnings``.
    """
    policy = session.policy
    adapters: dict[str, Adapter] = {}
    failed: dict[str, str] = {}
    refused: dict[str, list[Problem]] = {}  # sources that cannot be used as written
    for rule in rules:
        if rule.source in refused:
            continue
        try:
            adapters[rule.source] = session.adapter(rule.source)
        except PolicyError as exc:  # every such source is said, then nothing runs
            refused[rule.source] = list(exc.problems)
        except RetentionError:
            raise
        except Exception as exc:
            failed[rule.name] = validate.reason(exc)
    if refused:
        raise PolicyError(p for found in refused.values() for p in found)
    usable = tuple(r for r in rules if r.name not in failed)
    problems, schema = validate.check(policy, adapters, usable)
    if problems:
        raise PolicyError(problems)
    session.warnings = list(schema.warnings)
    plans: dict[str, Plan] = {}
    for rule in usable:
        if rule.source in schema.unreachable:
            failed[rule.name] = schema.unreachable[rule.source]
            continue
        assert rule.table is not None
        naive = str(policy.sources[rule.source].options.get("naive_timestamps", "utc"))
        table = schema.tables[(rule.source, rule.table)]
        try:
            plans[rule.name] = make_plan(
                policy, rule, table,
                {c.table: schema.tables[(rule.source, c.table)] for c in rule.children},
                as_of, naive, held(rule, table.primary_key) if held else (),
                foreign_keys=schema.foreign_keys_of(rule),
                forms=schema.forms.get((rule.source, rule.table, rule.event_column)),
                nothing_due_before_year_1=nothing_due_before_year_1,
            )
        except PolicyError as exc:  # a cutoff outside the calendar: every rule's, then stop
            problems.extend(exc.problems)
    if problems:
        raise PolicyError(problems)
    return plans, failed


def read_holds(policy: Policy, store: AuditStore | None) -> list[holds.Hold]:
    """The policy's holds, from ``store`` or from its audit store if that exists already."""
    if store is not None:
        return holds.list_holds(store, policy.name)
    peeked = AuditStore.peek(policy.audit_url)
    if peeked is None:
        return []
    try:
        return holds.list_holds(peeked, policy.name)
    finally:
        peeked.close()


def held_on(policy: Policy, found: list[holds.Hold], as_of: dt.datetime) -> HeldKeys:
    """A lookup of each rule's keys under one of ``found`` that is active at ``as_of``."""
    day = calendar.local_date(as_of, calendar.zone(policy.timezone))

    def lookup(rule: Rule, primary_key: tuple[str, ...]) -> tuple[tuple[Any, ...], ...]:
        return tuple(tuple(h.key[c] for c in primary_key) for h in found
                     if h.rule == rule.name and h.active_on(day)
                     and set(h.key) == set(primary_key))

    return lookup


def held_keys(policy: Policy, as_of: dt.datetime, store: AuditStore | None) -> HeldKeys:
    """A lookup of each rule's keys under an active legal hold at ``as_of``."""
    return held_on(policy, read_holds(policy, store), as_of)


def run(
    policy: Policy, as_of: dt.datetime, rule_names: Iterable[str] | None = None,
    dry_run: bool = False, max_rows: int | None = None, audit: AuditStore | None = None,
    max_runtime: float | None = None, progress: Any = None,
) -> RunOutcome:
    """Enforce ``policy`` as of ``as_of``. Raises only for bad input (nothing changed then).

    ``max_runtime`` (seconds) lowers every rule's own; ``progress``, a rich ``Console``,
    shows a progress bar per rule there instead of a log line per batch. A dry run adds
    each rule's forecast (:mod:`retention.run.estimate`).
    """
    rules = select_rules(policy, rule_names)
    run_id = str(uuid.uuid4())
    outcome = RunOutcome(run_id, policy.name, as_of, dry_run)
    bound = log.bind(run_id=run_id, policy=policy.name)
    # A key that cannot be used: exit 2 here. A dry run without a store appends nothing.
    proof = checkpoints.Checkpoints.of(policy, signing=audit is not None or not dry_run)
    with Session(policy) as session:
        if proof is not None:
            _guard(proof, policy, audit, dry_run)
        # Bad input stops here, before anything is written (the store is only peeked at).
        plans, failed = compile_plans(session, rules, as_of, held_keys(policy, as_of, audit))
        own_audit = audit is None and not dry_run
        store = audit or (None if dry_run else AuditStore(policy.audit_url))
        rates = _rates(policy, audit, rules) if dry_run else {}
        try:
            if store is not None:
                store.start_run(RunInfo(run_id, policy.name, policy.version, policy.sha256,
                                        "dry-run" if dry_run else "run", as_of))
                policies.record(store, policy, run_id)
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
                if stop.requested.is_set():
                    result.status = Status.INTERRUPTED
                    continue
                adapter, plan = session.adapter(rule.source), plans[rule.name]
                enforce(policy, adapter, plan, result, store, run_id, dry_run, max_rows, rlog,
                        Pace(plan, adapter, result, rlog, max_runtime, progress))
                if dry_run and result.status is Status.OK:
                    result.estimate = estimate.forecast(
                        plan, result.due, rates.get(rule.name), runtime_limit(plan, max_runtime))
            if store is not None:
                store.finish_run(run_id, outcome.status.value,
                                 [r.as_json() for r in outcome.rules])
                if proof is not None:
                    proof.append(store, run_id, "run")
            bound.info("run_finished", status=outcome.status.value)
        finally:
            if own_audit and store is not None:
                store.close()
    return outcome


def _guard(proof: checkpoints.Checkpoints, policy: Policy, audit: AuditStore | None,
           dry_run: bool) -> None:
    """Before anything is read or written: the checkpoint file can take a line, and the
    store is neither behind nor forked from its newest checkpoint (else exit 1)."""
    if not dry_run:
        proof.ready()
    store = audit or AuditStore.peek(policy.audit_url)
    if store is None:
        return
    try:
        proof.check_latest(store)
    finally:
        if audit is None:
            store.close()


def _rates(policy: Policy, audit: AuditStore | None, rules: tuple[Rule, ...]
           ) -> dict[str, estimate.Rate]:
    """The rules' measured rates, from ``audit`` or the policy's store if it exists (a dry
    run creates nothing)."""
    store = audit or AuditStore.peek(policy.audit_url)
    try:
        return estimate.measured_rates(store, policy.name, (r.name for r in rules))
    finally:
        if audit is None and store is not None:
            store.close()
