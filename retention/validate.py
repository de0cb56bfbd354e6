"""Check a loaded policy against the live schemas of its sources.

Every problem is collected, one per rule and cause, before anything runs.
A source that cannot be reached is reported separately: at run time it fails
its rules (exit 1) instead of being bad input (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from retention import secrets
from retention.adapters.protocol import Adapter
from retention.errors import Problem
from retention.plan import ColumnInfo, TableInfo
from retention.rules import Op, Policy, Rule
from retention.stored import StoredForms


@dataclass
class Schema:
    """What validation learned: reflected tables per (source, table), and unreachable sources."""

    tables: dict[tuple[str, str], TableInfo] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)  # source -> error text
    # (source, table, column) -> what an event column holds, where any column may hold
    # any type (SQLite)
    forms: dict[tuple[str, str, str], StoredForms] = field(default_factory=dict)


def check(policy: Policy, adapters: dict[str, Adapter], rules: tuple[Rule, ...]
          ) -> tuple[list[Problem], Schema]:
    """Reflect every table ``rules`` use; return the problems and what was reflected."""
    problems: list[Problem] = []
    schema = Schema()
    for rule in rules:
        if rule.source in schema.unreachable:
            continue
        adapter = adapters[rule.source]
        try:
            problems.extend(_check_rule(policy, rule, adapter, schema))
        except Exception as exc:  # the database is down, a password is wrong, ...
            schema.unreachable[rule.source] = reason(exc)
    return problems, schema


def _reflect(adapter: Adapter, schema: Schema, source: str, table: str) -> TableInfo | None:
    if (source, table) not in schema.tables:
        info = adapter.reflect(table)
        if info is None:
            return None
        schema.tables[(source, table)] = info
    return schema.tables[(source, table)]


def _check_rule(policy: Policy, rule: Rule, adapter: Adapter, schema: Schema) -> list[Problem]:
    out: list[Problem] = []

    def problem(key: str, message: str) -> None:
        out.append(Problem(policy.path, rule.line_of(key), rule.name, message))

    assert rule.table is not None
    info = _reflect(adapter, schema, rule.source, rule.table)
    if info is None:
        problem("table", f"table {rule.table!r} does not exist in source {rule.source!r}")
        return out
    if not info.primary_key:
        problem("table", f"table {rule.table!r} has no primary key (batches are keyed on it)")
    column = info.columns.get(rule.event_column)
    if column is None:
        word = rule.retain.event
        if word == rule.event_column:
            problem("retain", f"unknown event {word!r}: not in 'events' and not a column of "
                    f"{rule.table!r}")
        else:
            problem("events", f"unknown column {rule.event_column!r} for event {word!r} "
                    f"in {rule.table!r}")
    else:
        forms = _forms(policy, rule, adapter, column)
        if forms is not None:
            schema.forms[(rule.source, info.name, column.name)] = forms
        for key, message in event_problems(rule, column, forms):
            problem(key, message)
    for f in rule.filters:
        if f.column not in info.columns:
            problem("where", f"unknown column {f.column!r} in {rule.table!r}")
        elif f.op is Op.IS_NULL and not info.columns[f.column].nullable:
            problem("where", f"column {f.column!r} is NOT NULL, so 'null' matches nothing")
    for action in rule.action.columns:
        if action.column not in info.columns:
            problem("action", f"unknown column {action.column!r} in {rule.table!r}")
        elif action.column in info.primary_key:
            problem("action", f"cannot anonymize {action.column!r}: it is part of the key")
        elif action.column == rule.event_column:
            problem("action", f"cannot anonymize {action.column!r}: it is the event column")
    cascades = getattr(adapter, "cascades_to", None)
    if not rule.action.columns and cascades is not None:
        declared = {c.table for c in rule.children}
        for child in cascades(rule.table):
            if child not in declared:
                problem("children", f"table {child!r} references {rule.table!r} with ON DELETE "
                        "CASCADE or SET NULL: declare it under 'children' so its rows are "
                        "removed and audited with their parent")
        for child in declared:
            for grandchild in cascades(child):
                problem("children", f"table {grandchild!r} references child table {child!r} "
                        "with ON DELETE CASCADE or SET NULL: its rows would change unaudited")
    if rule.children and len(info.primary_key) != 1:
        problem("children", "children need a parent with a single-column primary key")
    if rule.children and rule.action.columns:
        problem("children", "children are removed with their parent; an anonymize rule has none")
    for child in rule.children:
        child_info = _reflect(adapter, schema, rule.source, child.table)
        if child_info is None:
            problem("children", f"child table {child.table!r} does not exist")
            continue
        if child.key not in child_info.columns:
            problem("children", f"unknown column {child.key!r} in child table {child.table!r}")
        if not child_info.primary_key:
            problem("children", f"child table {child.table!r} has no primary key")
    return out


def _forms(policy: Policy, rule: Rule, adapter: Adapter, column: ColumnInfo
           ) -> StoredForms | None:
    census = getattr(adapter, "stored_forms", None)
    if census is None:
        return None
    assert rule.table is not None
    local = policy.sources[rule.source].options.get("naive_timestamps") == "local"
    found: StoredForms | None = census(rule.table, column.name, column.temporal == "date",
                                       policy.timezone if local else "", policy.timezone)
    return found


def event_problems(rule: Rule, column: ColumnInfo, forms: StoredForms | None
                   ) -> list[tuple[str, str]]:
    """What is wrong with ``column`` as the rule's event column: (policy key, message)."""
    events = "events" if "events" in rule.lines else "retain"
    name, kind = column.name, column.type_name
    numbers = "set 'event_format: unix_seconds' or 'unix_millis'"
    if forms is None:  # the declared type is what the column holds
        if rule.event_format is not None and column.temporal is not None:
            return [("event_format", f"column {name!r} is {kind}, a date or timestamp type, "
                     "not epoch numbers: remove 'event_format'")]
        if rule.event_format is not None and column.python_type is not int:
            return [("event_format", f"column {name!r} is {kind}, not an integer column: "
                     "'event_format' reads epoch numbers")]
        if rule.event_format is None and column.temporal is None:
            hint = f" (if it holds epoch times, {numbers})" if column.python_type is int else ""
            return [(events, f"column {name!r} is {kind}, not a date or timestamp{hint}")]
        return []
    if rule.event_format is not None:
        if forms.texts and not forms.numbers:
            return [("event_format", f"column {name!r} holds {forms.texts} ISO-8601 text "
                     "value(s) and no numbers: remove 'event_format'")]
        return []
    if forms.numbers:
        return [(events, f"column {name!r} holds {forms.integers} integer, {forms.reals} "
                 f"real and {forms.number_texts} numeric text value(s), not timestamps: if "
                 f"they are epoch times, {numbers}")]
    if column.temporal is None and forms.values and not forms.texts:
        return [(events, f"column {name!r} is {kind}, not a date or timestamp, and none of "
                 f"its {forms.values} values is a date or timestamp")]
    return []


def reason(exc: BaseException) -> str:
    """A one-line reason for an error, with every known password masked."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    text = secrets.scrub(text)
    return f"{type(orig).__name__}: {text}" if text else type(orig).__name__
