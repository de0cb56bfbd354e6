"""The dry-run report: per rule, what is due now, what is held, what falls due soon,
whether a safety limit would stop a run now, the rule's last run and the SQL a run
executes; the totals, and the tables no rule covers or an ``ignore:`` entry names.

Nothing is changed and nothing is written to the audit store (it is only peeked at).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from retention.audit.store import AuditStore
from retention.errors import RetentionError
from retention.instants import LATEST, in_calendar, parse_instant
from retention.plan import Plan
from retention.policy.rules import Policy, Rule
from retention.report import history
from retention.report.statement import phrases
from retention.run.enforce import limit_reason
from retention.run.engine import Session, compile_plans, held_on, read_holds, select_rules
from retention.run.validate import reason

log = structlog.get_logger("retention.report.build")

HORIZONS = (7, 30, 90)  # days ahead for the due_next_Nd counts
LATEST_AS_OF = LATEST - dt.timedelta(days=max(HORIZONS))  # the last instant to look ahead from
_AHEAD = f"it counts what falls due in the next {max(HORIZONS)} days"
DEFAULT_SAMPLES = 0  # keys listed per rule unless --samples asks for more
# the figures summed over all rules in "totals" (a table two rules share counts twice)
TOTALLED = ("due", "held", "total", "unreadable_events",
            *(f"due_next_{days}d" for days in HORIZONS))


def build(policy: Policy, as_of: dt.datetime, samples: int = DEFAULT_SAMPLES,
          rule_names: list[str] | None = None) -> dict[str, Any]:
    """The report as plain data (the ``report --format json`` document)."""
    rules = select_rules(policy, rule_names)
    ahead = _horizons(as_of)
    words = phrases(policy)
    out: dict[str, Any] = {"policy": policy.name, "version": policy.version,
                           "timezone": policy.timezone, "as_of": as_of.isoformat(),
                           "as_of_local": _local(as_of, policy.timezone),
                           "policy_sha256": policy.sha256, "rules": []}
    store = AuditStore.peek(policy.audit_url)  # read-only: a missing store stays missing
    try:
        found = read_holds(policy, store)  # once: each horizon only asks another day
        last = history.last_runs(store, policy, [r.name for r in rules])
        changed = history.changes_since(store, policy, last)
    finally:
        if store is not None:
            store.close()
    with Session(policy) as session:
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
                                     "legal_basis": rule.legal_basis,
                                     "source": rule.source, "table": rule.table,
                                     **words[rule.name]}
            missing = [f[rule.name] for _, f in later if rule.name in f]
            if rule.name in failed or missing:
                entry["error"] = failed.get(rule.name) or missing[0]
            else:
                try:
                    entry.update(_counts(session, rule, plans[rule.name],
                                         {days: p[rule.name] for days, (p, _) in
                                          zip(ahead, later, strict=True)}, samples))
                    entry.update(_local_times(entry, policy.timezone))
                    entry["computation"] = _computation(session, rule, plans[rule.name])
                except RetentionError:
                    raise
                except Exception as exc:  # this rule's failure, said with its name
                    entry["error"] = reason(exc)
                    log.error("rule_failed", policy=policy.name, rule=rule.name,
                              error=entry["error"])
            entry["last_run"] = _last_run(last.get(rule.name))
            entry["changed_since_last_run"] = changed.get(rule.name, [])
            out["rules"].append(entry)
        out["uncovered"] = uncovered(policy, session)
    out["ignored"] = ignored(policy)
    out["totals"] = totals(out["rules"])
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


def _computation(session: Session, rule: Rule, plan: Plan) -> dict[str, Any]:
    """How the figures were found: the plan a run executes now and its statements."""
    return {"cutoff": plan.cutoff.isoformat(), "predicate": str(plan.predicate),
            "predicate_reason": plan.predicate_reason, "plan": plan.describe(),
            "statements": session.adapter(rule.source).statements(plan)}


def _local(instant: dt.datetime, timezone: str) -> str:
    """``instant`` in the policy's time zone (as it is, where that zone cannot show it)."""
    try:
        return instant.astimezone(ZoneInfo(timezone)).isoformat()
    except (OverflowError, ValueError):  # the ends of the calendar
        return instant.isoformat()


def _local_times(entry: dict[str, Any], timezone: str) -> dict[str, Any]:
    oldest = entry["oldest_due_event"]
    return {"cutoff_local": _local(dt.datetime.fromisoformat(entry["cutoff"]), timezone),
            "oldest_due_event_local": None if oldest is None
            else _local(dt.datetime.fromisoformat(oldest), timezone)}


def _last_run(found: dict[str, Any] | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {key: found[key] for key in ("run_id", "at", "finished_at", "as_of", "status",
                                         "deleted", "anonymized", "children",
                                         "policy_sha256")}


def totals(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures summed over the rules that were counted; ``blocked`` and ``children``
    per table; ``rules`` and ``failed`` (rules with an ``error``)."""
    counted = [e for e in entries if "error" not in e]
    out: dict[str, Any] = {"rules": len(entries), "failed": len(entries) - len(counted)}
    out.update({name: sum(e[name] for e in counted) for name in TOTALLED})
    for name in ("blocked", "children"):
        per_table: dict[str, int] = {}
        for entry in counted:
            for table, n in entry[name].items():
                per_table[table] = per_table.get(table, 0) + n
        out[name] = per_table
    return out


def ignored(policy: Policy) -> list[dict[str, str | None]]:
    """The ``ignore:`` entries with their reasons (None when the entry gives none)."""
    return [{"source": src, "table": table, "reason": policy.ignore_reasons.get((src, table))}
            for src, table in policy.ignore]


def uncovered(policy: Policy, session: Session) -> list[dict[str, str]]:
    """Tables of each source that no rule covers (as a rule or a child) and no ignore names."""
    covered = {(r.source, r.table) for r in policy.rules}
    covered |= {(r.source, c.table) for r in policy.rules for c in r.children}
    covered |= set(policy.ignore)
    found = []
    for name, source in policy.sources.items():
        try:
            adapter = session.adapter(name)
            own = getattr(adapter, "uncovered", None)  # files: the paths no rule selects
            if own is not None:
                found += [{"source": name, "table": t} for t in
                          own({t for s, t in covered if s == name})]
                continue
            tables = adapter.tables()
        except Exception:
            continue
        found += [{"source": name, "table": t} for t in tables
                  if (name, t) not in covered and not t.startswith("retention_")
                  and source.adapter == "sql"]
    return found
