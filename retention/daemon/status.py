"""``retention status``: per rule the last run, the next fire time and the backlog."""

from __future__ import annotations

import datetime as dt
from typing import Any

from retention.audit import covered, daemons
from retention.audit.store import AuditStore
from retention.daemon import scheduler
from retention.policy import schedule as schedules
from retention.policy.rules import Policy
from retention.run import engine
from retention.run.validate import reason


def build(policy: Policy, now: dt.datetime) -> dict[str, Any]:
    """The status document (``status --format json``)."""
    store = AuditStore.peek(policy.audit_url)
    try:
        wanted = {r.name for r in policy.rules}
        last = store.last_rule_runs(policy.name, wanted) if store else {}
        unvouched = covered.unvouched(store, last) if store else {}
        running = daemons.daemons(store, policy.name, now) if store else []
    finally:
        if store is not None:
            store.close()
    rules: list[dict[str, Any]] = []
    with engine.Session(policy) as session:
        plans, failed = engine.compile_plans(session, policy.rules, now,
                                             engine.held_keys(policy, now, None))
        for rule in policy.rules:
            trig = scheduler.trigger(schedules.parse(rule.schedule), policy.timezone)
            fire = scheduler.next_fire(trig, now)
            entry: dict[str, Any] = {
                "rule": rule.name, "schedule": rule.schedule,
                "next_run": None if fire is None else fire.isoformat(),
                "last_run": last.get(rule.name), "backlog": None,
            }
            if rule.name in unvouched:  # as report refuses such a last_run (exit 1)
                entry["error"] = f"last {unvouched[rule.name]}"
            elif rule.name in failed:
                entry["error"] = failed[rule.name]
            else:
                try:
                    entry["backlog"] = session.adapter(rule.source).count(plans[rule.name]).due
                except Exception as exc:
                    entry["error"] = reason(exc)
            rules.append(entry)
    return {"policy": policy.name, "as_of": now.isoformat(), "daemons": [
        {k: d[k] for k in ("daemon_id", "host", "pid", "started_at", "beat_at", "age_seconds",
                           "state")} for d in running], "rules": rules}

