"""The dry-run report: per rule, what is due now, what is held, what falls due soon,
and whether a safety limit would stop a run now.

Nothing is changed and nothing is written to the audit store.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from retention.errors import RetentionError
from retention.instants import LATEST, in_calendar, parse_instant
from retention.plan import Plan
from retention.policy.rules import Policy, Rule
from retention.run.enforce import limit_reason
from retention.run.engine import Session, compile_plans, held_on, read_holds, select_rules
from retention.run.validate import reason

log = structlog.get_logger("retention.report.build")

HORIZONS = (7, 30, 90)  # days ahead for the due_next_Nd counts
LATEST_AS_OF = LATEST - dt.timedelta(days=max(HORIZONS))  # the last instant to look ahead from
_AHEAD = f"it counts what falls due in the next {max(HORIZONS)} days"
DEFAULT_SAMPLES = 0  # keys listed per rule unless --samples asks for more


def build(policy: Policy, as_of: dt.datetime, samples: int = DEFAULT_SAMPLES,
          rule_names: list[str] | None = None) -> dict[str, Any]:
    """The report as plain data (the ``report --format json`` document)."""
    rules = select_rules(policy, rule_names)
    ahead = _horizons(as_of)
    out: dict[str, Any] = {"policy": policy.name, "version": policy.version,
                           "timezone": policy.timezone, "as_of": as_of.isoformat(), "rules": []}
    with Session(policy) as session:
        found = read_holds(policy, None)  # once: each horizon only asks another day
        plans, failed = compile_plans(session, rules, as_of, held_on(policy, found, as_of),
                                      nothing_due_before_year_1=True)
        # The same rules at each horizon: the tables, foreign keys and (SQLite) what the
        # event columns hold come from the adapters' caches, so nothing is read again.
        compiled = tuple(r for r in rules if r.name in plans)
        later = [compile_plans(session, compiled, at, held_on(policy, found, at),
                                   nothing_due_before_year_1=True)
                 for at in ahead.values()] if compiled else []
        for rule in rules:
            entry: dict[str, Any] = {"rule": rule.name, "action": rule.action.name,
                                     "retain": str(rule.retain),
                                     "legal_basis": rule.legal_basis}
            missing = [f[rule.name] for _, f in later if rule.name in f]
            if rule.name in failed or missing:
                entry["error"] = failed.get(rule.name) or missing[0]
            else:
                try:
                    entry.update(_counts(session, rule, plans[rule.name],
                                         {days: p[rule.name] for days, (p, _) in
                                          zip(ahead, later, strict=True)}, samples))
                except RetentionError:
                    raise
                except Exception as exc:  # this rule's failure, said with its name
                    entry["error"] = reason(exc)
                    log.error("rule_failed", policy=policy.name, rule=rule.name,
                              error=entry["error"])
            out["rules"].append(entry)
        out["uncovered"] = uncovered(policy, session)
    return out


def parse_as_of(text: str) -> dt.datetime:
    """A report's ``--as-of``: an instant it can look ``HORIZONS`` ahead from, or a
    :class:`UsageError` that says which instants those are."""
    return parse_instant(text, latest=LATEST_AS_OF, who="the report", why=_AHEAD)


def _horizons(as_of: dt.datetime) -> dict[int, dt.datetime]:
    """The instants ``HORIZONS`` days after ``as_of``; a :class:`UsageError` past the calendar."""
    in_calendar(as_of, "--as-of", latest=LATEST_AS_OF, who="the report", why=_AHEAD)
    return {days: as_of + dt.timedelta(days=days) for days in HORIZONS}


def _counts(session: Session, rule: Rule, plan: Plan, ahead: dict[int, Plan],
            samples: int) -> dict[str, Any]:
    """One rule's figures: due now, held, total, due within each horizon, sample keys.

    One ``count`` per rule: the adapter counts now and every horizon in one pass.
    """
    adapter = session.adapter(rule.source)
    count = adapter.count(plan, tuple(ahead.values()))
    entry: dict[str, Any] = dict(
        due=count.due, held=count.held, total=count.total,
        cutoff=plan.cutoff.isoformat(),
        oldest_due_event=None if count.oldest_due_event is None
        else count.oldest_due_event.isoformat(),
        children=count.children, blocked=count.blocked,
        unreadable_events=count.unreadable,
        would_stop=limit_reason(plan, count, None),  # the decision a run makes now
    )
    for days, due_then in zip(ahead, count.due_ahead, strict=True):
        entry[f"due_next_{days}d"] = due_then - count.due
    entry["samples"] = adapter.sample_keys(plan, samples) if samples else []
    return entry


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
