"""The dry-run report: per rule, what is due now, what is held, what falls due soon,
and whether a safety limit would stop a run now.

Nothing is changed and nothing is written to the audit store.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from retention.enforce import limit_reason
from retention.engine import Session, compile_plans, held_on, read_holds, select_rules
from retention.rules import Policy

HORIZONS = (7, 30, 90)  # days ahead for the due_next_Nd counts
DEFAULT_SAMPLES = 0  # keys listed per rule unless --samples asks for more


def build(policy: Policy, as_of: dt.datetime, samples: int = DEFAULT_SAMPLES,
          rule_names: list[str] | None = None) -> dict[str, Any]:
    """The report as plain data (the ``report --format json`` document)."""
    rules = select_rules(policy, rule_names)
    out: dict[str, Any] = {"policy": policy.name, "version": policy.version,
                           "timezone": policy.timezone, "as_of": as_of.isoformat(), "rules": []}
    with Session(policy) as session:
        found = read_holds(policy, None)  # once: each horizon only asks another day
        plans, failed = compile_plans(session, rules, as_of, held_on(policy, found, as_of))
        for rule in rules:
            entry: dict[str, Any] = {"rule": rule.name, "action": rule.action.name,
                                     "retain": str(rule.retain),
                                     "legal_basis": rule.legal_basis}
            if rule.name in failed:
                entry["error"] = failed[rule.name]
                out["rules"].append(entry)
                continue
            plan = plans[rule.name]
            adapter = session.adapter(rule.source)
            count = adapter.count(plan)
            entry.update(
                due=count.due, held=count.held, total=count.total,
                cutoff=plan.cutoff.isoformat(),
                oldest_due_event=None if count.oldest_due_event is None
                else count.oldest_due_event.isoformat(),
                children=count.children, blocked=count.blocked,
                would_stop=limit_reason(plan, count, None),  # the decision a run makes now
            )
            for days in HORIZONS:
                later_at = as_of + dt.timedelta(days=days)
                later, _ = compile_plans(session, (rule,), later_at,
                                         held_on(policy, found, later_at))
                entry[f"due_next_{days}d"] = adapter.count(later[rule.name]).due - count.due
            entry["samples"] = adapter.sample_keys(plan, samples) if samples else []
            out["rules"].append(entry)
        out["uncovered"] = uncovered(policy, session)
    return out


def uncovered(policy: Policy, session: Session) -> list[dict[str, str]]:
    """Tables of each source that no rule covers (as a rule or a child) and no ignore names."""
    covered = {(r.source, r.table) for r in policy.rules}
    covered |= {(r.source, c.table) for r in policy.rules for c in r.children}
    covered |= set(policy.ignore)
    found = []
    for name, source in policy.sources.items():
        try:
            tables = session.adapter(name).tables()
        except Exception:
            continue
        found += [{"source": name, "table": t} for t in tables
                  if (name, t) not in covered and not t.startswith("retention_")
                  and source.adapter == "sql"]
    return found
