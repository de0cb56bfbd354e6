"""Compile a rule into a plan at an instant: the cutoff, the predicate, the kept references.

No I/O happens here. The adapter reflects the table into a :class:`TableInfo`;
:func:`make_plan` combines it with the rule and the run's instant into a
:class:`Plan`, which the adapter then turns into statements.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from retention import calendar, stored
from retention.errors import PolicyError
from retention.period import Kind
from retention.plan import (
    ChildPlan,
    EventType,
    ForeignKeyInfo,
    Plan,
    Predicate,
    Reference,
    TableInfo,
    choose_predicate,
    event_type,
)
from retention.policy.rules import Policy, Rule
from retention.stored import StoredForms


def blocking_references(rule: Rule, foreign_keys: tuple[ForeignKeyInfo, ...]
                        ) -> tuple[Reference, ...]:
    """The foreign keys into ``rule``'s table or its declared children that keep rows.

    A delete rule removes a row with its declared children; any other foreign key
    into the table (from another table, from the table itself, from a child by
    another column) or into a declared child (from a table that is not declared)
    would make the delete fail, so the rows it references are kept; so does any key
    from a table of another schema. An anonymize rule keeps every row and has none.
    """
    if rule.action.columns:
        return ()
    children = {c.table: c.key for c in rule.children}
    found: set[Reference] = set()
    for fk in foreign_keys:
        # a table of another schema is never a declared child
        declared = fk.schema is None and fk.table in children
        if fk.referred == rule.table:
            if declared and fk.columns == (children[fk.table],):
                continue  # the declared child's own key: removed with its parent
            found.add(Reference(fk.table, fk.columns, fk.referred, fk.referred_columns,
                                schema=fk.schema))
        elif fk.referred in children and not declared:
            found.add(Reference(fk.table, fk.columns, fk.referred, fk.referred_columns,
                                via_key=children[fk.referred], schema=fk.schema))
    return tuple(sorted(found, key=lambda r: (r.qualified, r.columns, r.referred)))


def _bound(cut: dt.datetime, rule: Rule, kind: EventType, predicate: Predicate,
           forms: StoredForms | None, tz: dt.tzinfo) -> Any:
    """The cutoff in the terms of the stored values the predicate compares."""
    # Calendar spans: every event of the cutoff's microsecond is due (finer stored values).
    whole = rule.retain.kind is Kind.CALENDAR
    if predicate is Predicate.EPOCH:
        assert rule.event_format is not None
        return stored.epoch_bound(cut, rule.event_format, whole,
                                  real=bool(forms and forms.reals))
    if predicate is Predicate.PARSED:
        return stored.cutoff_key(cut, whole)
    if forms is not None:  # canonical text: compared as text
        return (calendar.cutoff_date(cut, tz).isoformat() if kind is EventType.DATE
                else stored.cutoff_key(cut, whole))
    if kind is EventType.DATE:
        return calendar.cutoff_date(cut, tz)
    if kind is EventType.NAIVE_LOCAL:
        return calendar.naive_local_bound(cut, tz)
    if kind is EventType.NAIVE_UTC:
        return cut.replace(tzinfo=None)
    return cut


def make_plan(
    policy: Policy,
    rule: Rule,
    table: TableInfo,
    children: dict[str, TableInfo],
    as_of: dt.datetime,
    naive_timestamps: str = "utc",
    held_keys: tuple[tuple[Any, ...], ...] = (),
    foreign_keys: tuple[ForeignKeyInfo, ...] = (),
    forms: StoredForms | None = None,
    nothing_due_before_year_1: bool = False,
) -> Plan:
    """Compile ``rule`` at instant ``as_of``; ``table`` must have been validated.

    ``foreign_keys`` are those into the rule's table and its declared children.
    ``forms`` is what the event column holds where the database lets a column hold
    any type (SQLite); None where the declared type is what it holds.
    Raises :class:`PolicyError` (on the rule's ``retain`` line) when the cutoff at
    ``as_of`` falls outside the calendar, unless ``nothing_due_before_year_1`` (report,
    plan: any instant is accepted): then such a cutoff lies before year 1 and the plan's
    cutoff is :data:`calendar.BEFORE_EVERY_EVENT`, which selects nothing.
    """
    tz = calendar.zone(policy.timezone)
    column = table.columns[rule.event_column]
    kind = event_type(column, naive_timestamps)
    if kind is None and forms is None and rule.event_format is None:
        raise ValueError(f"{rule.event_column} is not a date or timestamp column")
    if kind is None:
        kind = EventType.NAIVE_LOCAL if naive_timestamps == "local" else EventType.NAIVE_UTC
    predicate, reason = choose_predicate(column, kind, forms, rule.event_format)
    try:
        cut = calendar.cutoff(as_of, rule.retain, tz)
        bound = _bound(cut, rule, kind, predicate, forms, tz)
    except (OverflowError, ValueError):  # the date arithmetic left years 1..9999
        if not nothing_due_before_year_1:
            raise PolicyError.single(
                policy.path, rule.line_of("retain"), rule.name,
                f"as of {calendar.aware(as_of).isoformat()} the cutoff of '{rule.retain}' "
                "falls outside the calendar (years 1 to 9999)") from None
        # A cutoff never lies after as_of (<= the calendar's end), so this one lies before
        # year 1: nothing is due yet.
        cut = calendar.BEFORE_EVERY_EVENT
        bound = _bound(cut, rule, kind, predicate, forms, tz)
    return Plan(
        policy=policy.name,
        rule=rule.name,
        source=rule.source,
        table=table.name,
        primary_key=table.primary_key,
        event_column=rule.event_column,
        event_type=kind,
        retain=rule.retain,
        timezone=policy.timezone,
        as_of=calendar.aware(as_of),
        cutoff=cut,
        bound=bound,
        filters=rule.filters,
        action=rule.action,
        children=tuple(
            ChildPlan(c.table, c.key, children[c.table].primary_key) for c in rule.children
        ),
        batch_size=rule.batch_size,
        max_fraction=rule.max_fraction,
        max_rows=rule.max_rows,
        held_keys=held_keys,
        lock_timeout=rule.lock_timeout,
        statement_timeout=rule.statement_timeout,
        text_columns=frozenset(c.name for c in table.columns.values() if c.text),
        references=blocking_references(rule, foreign_keys),
        event_format=rule.event_format,
        predicate=predicate,
        predicate_reason=reason,
        naive_zone=policy.timezone if naive_timestamps == "local" else "",
        pause_between_batches=rule.pause_between_batches,
        max_runtime=rule.max_runtime,
        max_replica_lag=rule.max_replica_lag,
        batch_seconds=rule.batch_seconds,
        drop_partitions=rule.drop_partitions and not rule.action.columns,
    )
