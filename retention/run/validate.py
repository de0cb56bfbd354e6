"""Check a loaded policy against the live schemas of its sources.

Every problem is collected, one per rule and cause, before anything runs.
A source that cannot be reached is reported separately: at run time it fails
its rules (exit 1) instead of being bad input (exit 2).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from retention import secrets, values
from retention.actions import REDACTED, ColumnAction, Strategy
from retention.adapters.protocol import Adapter
from retention.errors import Problem
from retention.filters import Filter, Op
from retention.plan import ColumnInfo, ForeignKeyInfo, Reference, TableInfo
from retention.policy.rules import Policy, Rule
from retention.run.compile import blocking_references
from retention.stored import StoredForms

HASH_LENGTH = 64  # characters of a hex HMAC-SHA-256 digest
_ADDRESS_TYPES = ("INET", "CIDR")  # PostgreSQL address types truncate_ip reads natively


@dataclass
class Schema:
    """What validation learned: reflected tables per (source, table), and unreachable sources."""

    tables: dict[tuple[str, str], TableInfo] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)  # source -> error text
    # (source, table, column) -> what an event column holds, where any column may hold
    # any type (SQLite)
    forms: dict[tuple[str, str, str], StoredForms] = field(default_factory=dict)
    # (source, table) -> the reflected foreign keys into that table
    foreign_keys: dict[tuple[str, str], tuple[ForeignKeyInfo, ...]] = field(
        default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)  # valid, but worth saying

    def foreign_keys_of(self, rule: Rule) -> tuple[ForeignKeyInfo, ...]:
        """The foreign keys into ``rule``'s table and its declared children."""
        names = (rule.table, *(c.table for c in rule.children))
        return tuple(fk for name in names
                     for fk in self.foreign_keys.get((rule.source, str(name)), ()))


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

    if rule.max_replica_lag is not None and not callable(getattr(adapter, "replica_lag", None)):
        problem("max_replica_lag", f"max_replica_lag: adapter {adapter.name!r} of source "
                f"{rule.source!r} cannot tell how far its replicas are behind")
    assert rule.table is not None
    info = _reflect(adapter, schema, rule.source, rule.table)
    if info is None:
        problem("table", f"table {rule.table!r} does not exist in source {rule.source!r}"
                + _spelled(adapter, rule.table))
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
        else:
            out.extend(_where_values(policy, rule, f, info.columns[f.column]))
    for action in rule.action.columns:
        if action.column not in info.columns:
            problem("action", f"unknown column {action.column!r} in {rule.table!r}")
        elif action.column in info.primary_key:
            problem("action", f"cannot anonymize {action.column!r}: it is part of the key")
        elif action.column == rule.event_column:
            problem("action", f"cannot anonymize {action.column!r}: it is the event column")
        else:
            for message in action_problems(action, info.columns[action.column]):
                problem("action", message)
    cascades = getattr(adapter, "cascades_to", None)
    foreign_keys = getattr(adapter, "foreign_keys_into", None)
    if not rule.action.columns and cascades is not None:
        declared = {c.table for c in rule.children}
        elsewhere = {fk.qualified for fk in foreign_keys(rule.table) if fk.schema} \
            if foreign_keys is not None else set()
        for child in cascades(rule.table):
            if child in elsewhere:
                problem("children", f"table {child!r} (another schema) references "
                        f"{rule.table!r} with ON DELETE CASCADE or SET NULL: a delete would "
                        "change its rows unaudited, and children must be tables of the "
                        "source; change the foreign key or anonymize instead")
            elif child not in declared:
                problem("children", f"table {child!r} references {rule.table!r} with ON DELETE "
                        "CASCADE or SET NULL: declare it under 'children' so its rows are "
                        "removed and audited with their parent")
        for child in declared:
            for grandchild in cascades(child):
                problem("children", f"table {grandchild!r} references child table {child!r} "
                        "with ON DELETE CASCADE or SET NULL: its rows would change unaudited")
    if not rule.action.columns and foreign_keys is not None:
        for name in (rule.table, *(c.table for c in rule.children)):
            if (rule.source, name) not in schema.foreign_keys:
                schema.foreign_keys[(rule.source, name)] = tuple(foreign_keys(name))
        for ref in blocking_references(rule, schema.foreign_keys_of(rule)):
            schema.warnings.append(Problem(policy.path, rule.line_of("children"), rule.name,
                                           _kept(rule, ref)))
    if rule.children and len(info.primary_key) != 1:
        problem("children", "children need a parent with a single-column primary key")
    if rule.children and rule.action.columns:
        problem("children", "children are removed with their parent; an anonymize rule has none")
    for child in rule.children:
        child_info = _reflect(adapter, schema, rule.source, child.table)
        if child_info is None:
            problem("children", f"child table {child.table!r} does not exist"
                    + _spelled(adapter, child.table))
            continue
        if child.key not in child_info.columns:
            problem("children", f"unknown column {child.key!r} in child table {child.table!r}")
        if not child_info.primary_key:
            problem("children", f"child table {child.table!r} has no primary key")
    return out


def _spelled(adapter: Adapter, table: str) -> str:
    """A hint when the source has ``table`` in another letter case (names are as stored)."""
    listed = getattr(adapter, "tables", None)
    if listed is None:
        return ""
    same = [name for name in listed() if name.casefold() == table.casefold() and name != table]
    return f" (it has {same[0]!r}: write the name as the database stores it)" if same else ""


def action_problems(action: ColumnAction, column: ColumnInfo) -> list[str]:
    """Why ``action`` cannot write its anonymized form into ``column``, if it cannot."""
    name, strategy = action.column, action.strategy
    if strategy is Strategy.NULL or (strategy is Strategy.FIXED and action.value is None):
        if column.nullable:
            return []
        return [f"anonymize {name!r}: column {name!r} is NOT NULL, so it cannot be set to "
                "null (use redact, {fixed: VALUE} or, for addresses, truncate_ip)"]
    if strategy is Strategy.FIXED:
        return _fixed_problems(name, action.value, column)
    if strategy is Strategy.TRUNCATE_IP and column.type_name.upper() in _ADDRESS_TYPES:
        return []
    if not column.text and strategy is Strategy.TRUNCATE_IP:
        return [f"anonymize {name!r}: truncate_ip writes text (or a PostgreSQL INET/CIDR "
                f"value), but column {name!r} is {column.type_name}"]
    if not column.text:
        return [f"anonymize {name!r}: {strategy} writes text, but column {name!r} is "
                f"{column.type_name}"]
    needed = {Strategy.HASH: HASH_LENGTH, Strategy.REDACT: len(REDACTED)}.get(strategy)
    if needed is not None and column.length is not None and column.length < needed:
        return [f"anonymize {name!r}: {strategy} writes {needed} characters, but column "
                f"{name!r} holds at most {column.length} ({column.type_name})"]
    return []


def _fixed_problems(name: str, value: Any, column: ColumnInfo) -> list[str]:
    """A fixed value must have the column's type (text for text; no bool for a number,
    no datetime for a date) and fit its length."""
    kind = str if column.text else column.python_type
    if kind in (float, Decimal):
        fits = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif kind is dt.date:
        fits = isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    else:
        fits = kind is None or isinstance(value, kind)
    if not fits:
        return [f"anonymize {name!r}: fixed value {value!r} does not fit column {name!r} "
                f"({column.type_name})"]
    if isinstance(value, str) and column.length is not None and len(value) > column.length:
        return [f"anonymize {name!r}: fixed value {value!r} is longer than column {name!r} "
                f"holds ({column.type_name})"]
    return []


def _kept(rule: Rule, ref: Reference) -> str:
    """The warning for a reference that keeps rows: what happens, and what to do about it."""
    columns = ", ".join(ref.columns)
    if ref.via_key is not None:
        return (f"table {ref.qualified!r} references child table {ref.referred!r} ({columns}): "
                "the parents of referenced rows are kept and counted as blocked")
    said = (f"table {ref.qualified!r} references {ref.referred!r} ({columns}): referenced rows "
            "are ")
    if ref.schema is not None or ref.table == rule.table \
            or ref.table in {c.table for c in rule.children}:
        return said + "kept and counted as blocked until nothing references them"
    return (said + "kept and counted as blocked; declare it under 'children' to delete them "
            "together")


def _where_values(policy: Policy, rule: Rule, where: Filter, column: ColumnInfo
                  ) -> list[Problem]:
    """One problem per value of ``where`` (whatever its operator) that does not fit."""
    line = rule.lines.get(f"where.{where.column}", rule.line_of("where"))
    return [Problem(policy.path, line, rule.name, f"where {where.column!r}: {why}")
            for why in (values.problem(v, column) for v in where.values) if why]


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
