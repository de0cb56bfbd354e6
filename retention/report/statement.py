"""``retention schedule``: the policy as the retention schedule a privacy statement shows.

Plain language per rule: what data, how long it is kept, what happens then, and
why. Markdown for a repository or wiki, HTML for a web page.
"""

from __future__ import annotations

from typing import Any

from retention.actions import Strategy
from retention.period import Kind
from retention.policy.rules import Policy, Rule
from retention.report import render

COLUMNS = ("Data", "Kept", "Then", "Legal basis", "Stored in", "Checked")

_STRATEGY_WORDS = {
    Strategy.NULL: "removed",
    Strategy.REDACT: "replaced by a marker",
    Strategy.HASH: "replaced by a keyed hash",
    Strategy.TRUNCATE_IP: "shortened to the network (IPv4 /24, IPv6 /48)",
    Strategy.FIXED: "replaced by a fixed value",
}


def kept(rule: Rule) -> str:
    """How long, in words: 'until 6 months after completion, then 7 more years'."""
    retain = rule.retain
    if retain.kind is Kind.UNTIL:
        return f"until {_event(rule)}"
    first, *more = retain.spans
    text = f"{first} after {_event(rule)}"
    if more:
        text += ", then " + ", then ".join(f"{s} more" for s in more)
    if retain.kind is Kind.CALENDAR:
        text += " (to the end of that day)"
    return text


def then(rule: Rule) -> str:
    if not rule.action.columns:
        extra = "".join(f" with its {c.table}" for c in rule.children)
        return f"deleted{extra}"
    return "; ".join(f"{c.column} {_STRATEGY_WORDS[c.strategy]}" for c in rule.action.columns)


def rows(policy: Policy) -> list[list[Any]]:
    return [[rule.description or rule.name, kept(rule), then(rule), rule.legal_basis or "",
             f"{rule.source}.{rule.table}", rule.schedule] for rule in policy.rules]


def render_schedule(policy: Policy, fmt: str) -> str:
    version = f", version {policy.version}" if policy.version else ""
    title = f"Retention schedule: {policy.name}{version} ({policy.timezone})"
    if fmt == "html":
        return render.html_page(title, COLUMNS, rows(policy))
    return render.markdown(title, COLUMNS, rows(policy))


def _event(rule: Rule) -> str:
    word = rule.retain.event
    return word.replace("_at", "").replace("_", " ") if word == rule.event_column else word
