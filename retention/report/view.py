"""The report for people: every fact of the JSON report under a readable label, times
in the policy's time zone, counts per table in words.

Every human format (the rich table, CSV, Markdown, HTML) is made from :func:`view`, so
they carry the same facts; the JSON report is the data it starts from.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

# Per rule: the labels of its facts, in the order the formats show them.
RULE = "Rule"
RECORDS = "Records"
KEPT = "Kept"
RETAIN = "Retain (as written)"
THEN = "Then"
LEGAL_BASIS = "Legal basis"
SOURCE = "Stored in"
CUTOFF = "Cutoff"  # "(TIME ZONE)" is added
DUE = "Due now"
HELD = "Held"
BLOCKED = "Blocked"
TOTAL = "Rows in table"
OLDEST = "Oldest due event"
AHEAD = {7: "Due within 7 days", 30: "Due within 30 days", 90: "Due within 90 days"}
WOULD_STOP = "Would stop a run"
LAST_RUN = "Last run"
CHANGED = "Changed since the last run"
SAMPLES = "Sample keys"
CHILDREN = "Children due"
UNREADABLE = "Unreadable events"
ERROR = "Error"

# the facts of a rule beside the summary table, in this order
DETAILS = (RECORDS, KEPT, RETAIN, THEN, LEGAL_BASIS, SOURCE, CHILDREN, UNREADABLE, SAMPLES,
           WOULD_STOP, LAST_RUN)

NONE = "none"
NEVER = "never"
NO = "no"
END_OF_DAY = dt.time(23, 59, 59, 999999)  # a calendar cutoff: the end of a local day


def view(report: dict[str, Any]) -> dict[str, Any]:
    """The report as labelled text: ``title``, ``subtitle``, ``timezone``, ``cutoff_label``,
    ``columns`` (the summary table's labels), ``details`` (the labels of each rule's other
    facts), ``rules`` (each ``name``, ``error``, ``facts``: label -> text, ``changed``: lines,
    ``sql``: the computation), ``totals`` (label -> text), ``uncovered``, ``ignored``."""
    zone = report["timezone"]
    cutoff_label = f"{CUTOFF} ({zone})"
    rules = [_rule(entry, zone, cutoff_label) for entry in report["rules"]]
    columns = [RULE, cutoff_label, DUE, HELD, BLOCKED, TOTAL, OLDEST, *AHEAD.values(),
               WOULD_STOP]
    return {
        "title": f"Retention report: {report['policy']}",
        "columns": columns,  # the summary table's; each rule's other facts follow it
        "details": [label for label in DETAILS if label not in columns],
        "numeric": [DUE, HELD, TOTAL, *AHEAD.values()],  # right-aligned figures
        "policy": report["policy"], "version": report.get("version"), "timezone": zone,
        "as_of": local_time(report["as_of"], zone),
        "as_of_utc": report["as_of"], "policy_sha256": report.get("policy_sha256"),
        "cutoff_label": cutoff_label, "rules": rules,
        "totals": _totals(report["totals"]) if "totals" in report else {},
        "uncovered": [f"{u['source']}.{u['table']}" for u in report.get("uncovered", [])],
        "ignored": [{"table": f"{i['source']}.{i['table']}", "reason": i.get("reason") or ""}
                    for i in report.get("ignored", [])],
    }


def counts(per_table: dict[str, int]) -> str:
    """``{"invoices": 2}`` as ``invoices: 2``; nothing as ``none``."""
    return ", ".join(f"{t}: {n}" for t, n in per_table.items()) or NONE


def keys(samples: list[dict[str, Any]]) -> str:
    """Sample keys as ``id=17; id=18`` (``a=1, b=2`` for a composite key)."""
    return "; ".join(", ".join(f"{c}={v}" for c, v in key.items()) for key in samples) or NONE


def local_time(text: str | None, zone: str, cutoff: bool = False) -> str:
    """An ISO-8601 instant in ``zone`` as ``2026-02-28 13:00:00``, whole seconds; a
    ``cutoff`` at the very end of a local day as ``end of 2018-08-27`` (the last instant
    that day, to the microsecond), and one with a fraction keeps it."""
    if text is None:
        return NONE
    instant = dt.datetime.fromisoformat(text)
    try:
        local = instant.astimezone(ZoneInfo(zone))
    except (OverflowError, ValueError):  # the ends of the calendar: as stored, in UTC
        local, zone = instant, "UTC"
    if cutoff and local.time() == END_OF_DAY:
        return f"end of {local.date().isoformat()}"
    shown = local.replace(microsecond=0) if not cutoff else local
    return shown.replace(tzinfo=None).isoformat(sep=" ")


def _rule(entry: dict[str, Any], zone: str, cutoff_label: str) -> dict[str, Any]:
    facts: dict[str, str] = {
        RULE: entry["rule"], RECORDS: entry.get("records", ""), KEPT: entry.get("kept", ""),
        RETAIN: entry["retain"], THEN: entry.get("then", entry["action"]),
        LEGAL_BASIS: entry.get("legal_basis") or "",
        SOURCE: f"{entry['source']}.{entry['table']}" if entry.get("table")
        else str(entry.get("source", "")),
    }
    if "error" not in entry:
        facts.update({
            cutoff_label: local_time(entry["cutoff"], zone, cutoff=True),
            DUE: str(entry["due"]), HELD: str(entry["held"]), BLOCKED: counts(entry["blocked"]),
            TOTAL: str(entry["total"]), OLDEST: local_time(entry["oldest_due_event"], zone),
            **{label: str(entry[f"due_next_{days}d"]) for days, label in AHEAD.items()},
            WOULD_STOP: entry["would_stop"] or NO,
            CHILDREN: counts(entry["children"]), UNREADABLE: str(entry["unreadable_events"]),
            SAMPLES: keys(entry["samples"]),
        })
    facts[LAST_RUN] = last_run(entry.get("last_run"), zone)
    return {"name": entry["rule"], "error": entry.get("error"), "facts": facts,
            "changed": list(entry.get("changed_since_last_run", [])),
            "sql": _sql(entry.get("computation"), zone)}


def last_run(run: dict[str, Any] | None, zone: str) -> str:
    """``2026-02-28 04:00:01, run 85abd9dc-...: ok, 120 deleted, 0 anonymized``, or
    ``never``; a run started long after the instant it ran as of says that instant too."""
    if not run:
        return NEVER
    done = f"{run['deleted']} deleted, {run['anonymized']} anonymized"
    at, as_of = local_time(run["at"], zone), local_time(run.get("as_of"), zone)
    when = at if as_of in (at, NONE) or as_of[:16] == at[:16] else f"{at} (as of {as_of})"
    return f"{when}, run {run['run_id']}: {run['status']}, {done}"


def _sql(computation: dict[str, Any] | None, zone: str) -> dict[str, Any] | None:
    """The plan as shown: cutoff, predicate and why, the plan in one line, and each
    statement with its parameters apart (as ``retention plan`` prints them)."""
    if computation is None:
        return None
    statements = []
    for text in computation["statements"]:
        sql, _, params = text.partition("\n-- parameters:")
        lines = "\n".join(line.rstrip() for line in sql.strip().splitlines())
        statements.append({"sql": lines + ";", "parameters": params.strip()})
    return {"cutoff": computation["cutoff"],
            "cutoff_local": local_time(computation["cutoff"], zone, cutoff=True),
            "predicate": computation["predicate"], "why": computation["predicate_reason"],
            "plan": computation["plan"], "statements": statements}


def _totals(totals: dict[str, Any]) -> dict[str, str]:
    shown = {RULE: f"all {totals['rules']} rules"
             + (f" ({totals['failed']} failed)" if totals["failed"] else ""),
             DUE: str(totals["due"]), HELD: str(totals["held"]),
             BLOCKED: counts(totals["blocked"]), TOTAL: str(totals["total"])}
    shown.update({label: str(totals[f"due_next_{days}d"]) for days, label in AHEAD.items()})
    shown.update({CHILDREN: counts(totals["children"]),
                  UNREADABLE: str(totals["unreadable_events"])})
    return shown
