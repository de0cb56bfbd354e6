"""Build SQLAlchemy Core statements from a plan and a reflected table.

Identifiers come only from the reflected ``Table`` (a policy's names were
checked against it); every value is a bound parameter.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from retention.adapters import sql_events
from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    Table,
    and_,
    bindparam,
    false,
    func,
    not_,
    or_,
    select,
    true,
    tuple_,
)

from retention.plan import Plan
from retention.rules import REDACTED, Filter, Op, Strategy


def bind_value(value: Any, dialect: str) -> Any:
    """PyMySQL and SQLite drop an aware datetime's offset: bind naive UTC there."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None and dialect != "postgresql":
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def key_of(table: Table, plan: Plan) -> ColumnElement[Any]:
    cols = [table.c[name] for name in plan.primary_key]
    return cols[0] if len(cols) == 1 else tuple_(*cols)


def _filter(table: Table, f: Filter) -> ColumnElement[bool]:
    col = table.c[f.column]
    if f.op is Op.IS_NULL:
        return col.is_(None)
    if f.op is Op.NOT_NULL:
        return col.is_not(None)
    if f.op is Op.EQ:
        return col == bindparam(None, f.values[0], type_=col.type)
    return col.in_(list(f.values))


def _key_values(plan: Plan, keys: list[tuple[Any, ...]]) -> list[Any]:
    return [k[0] for k in keys] if len(plan.primary_key) == 1 else keys


def _coerce(column: Any, value: Any) -> Any:
    """A held key given as text, in the key column's own Python type."""
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return value
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except (TypeError, ValueError):
        return value


def _held_values(table: Table, plan: Plan) -> list[Any]:
    cols = [table.c[n] for n in plan.primary_key]
    typed = [tuple(_coerce(c, v) for c, v in zip(cols, key, strict=True))
             for key in plan.held_keys]
    return _key_values(plan, typed)


def due(table: Table, plan: Plan, dialect: str) -> ColumnElement[bool]:
    """The due predicate: event at or before the cutoff, the rule's filters, not held."""
    parts: list[ColumnElement[bool]] = [
        sql_events.compare(table, plan, dialect),
        *(_filter(table, f) for f in plan.filters),
    ]
    if plan.held_keys:
        parts.append(not_(key_of(table, plan).in_(_held_values(table, plan))))
    return and_(*parts)


def held(table: Table, plan: Plan, dialect: str) -> ColumnElement[bool]:
    """Rows that would be due but are under a legal hold."""
    if not plan.held_keys:
        return false()
    return and_(
        sql_events.compare(table, plan, dialect),
        *(_filter(table, f) for f in plan.filters),
        key_of(table, plan).in_(_held_values(table, plan)),
    )


def pending(table: Table, plan: Plan) -> ColumnElement[bool]:
    """For anonymize rules: rows that may still hold a value to anonymize.

    A superset, refined in Python (an address already truncated or a value
    already hashed is only recognised there).
    """
    if not plan.action.columns:
        return true()
    parts: list[ColumnElement[bool]] = []
    for action in plan.action.columns:
        col = table.c[action.column]
        if action.strategy is Strategy.REDACT:
            parts.append(and_(col.is_not(None), col != REDACTED))
        elif action.strategy is Strategy.FIXED and action.value is not None:
            parts.append(and_(col.is_not(None), col != action.value))
        elif action.strategy is Strategy.TRUNCATE_IP and action.column in plan.text_columns:
            parts.append(and_(col.is_not(None), not_(_truncated_ip(col))))
        else:
            parts.append(col.is_not(None))
    return or_(*parts)


def _truncated_ip(col: Any) -> ColumnElement[bool]:
    """Text that ``truncate_ip`` maps to itself: ``a.b.c.0`` and ``x:y:z::`` forms.

    Only fixed points are excluded, so the remaining rows are still a superset.
    """
    colons = func.length(col) - func.length(func.replace(col, ":", ""))
    return or_(
        and_(col.like("%.0"), not_(col.like("%:%"))),
        and_(col.like("%::"), colons <= 4, not_(col.like("%::%::"))),
    )


def select_batch(
    table: Table, plan: Plan, dialect: str, after: tuple[Any, ...] | None, lock: bool
) -> Select[Any]:
    """Up to ``batch_size`` due rows after key ``after``, in key order, locked if asked."""
    pk = [table.c[name] for name in plan.primary_key]
    extra = [table.c[a.column] for a in plan.action.columns]
    stmt = select(*pk, sql_events.value(table, plan, dialect), *extra).where(
        due(table, plan, dialect), pending(table, plan)
    )
    if after is not None:
        stmt = stmt.where(key_of(table, plan) > (after[0] if len(pk) == 1 else tuple_(*after)))
    stmt = stmt.order_by(*pk).limit(plan.batch_size)
    if lock and dialect != "sqlite":
        stmt = stmt.with_for_update()
    return stmt


def delete_keys(table: Table, plan: Plan, dialect: str, keys: list[tuple[Any, ...]]) -> Delete:
    """Delete exactly ``keys``, re-checking the due predicate in the statement itself."""
    return table.delete().where(
        key_of(table, plan).in_(_key_values(plan, keys)), due(table, plan, dialect)
    )


def count_due(table: Table, plan: Plan, dialect: str) -> Select[Any]:
    return select(func.count(), sql_events.oldest(table, plan, dialect)).where(
        due(table, plan, dialect), pending(table, plan)
    )


def count_unreadable(table: Table, plan: Plan, dialect: str) -> Select[Any]:
    """Rows the rule's filters match whose event value is no instant (never due)."""
    return select(func.count()).select_from(table).where(
        sql_events.unreadable(table, plan, dialect), *(_filter(table, f) for f in plan.filters))


def count_held(table: Table, plan: Plan, dialect: str) -> Select[Any]:
    return select(func.count()).select_from(table).where(held(table, plan, dialect))


def count_children(
    table: Table, child: Table, child_key: str, plan: Plan, dialect: str
) -> Select[Any]:
    parents = select(table.c[plan.primary_key[0]]).where(due(table, plan, dialect))
    return select(func.count()).select_from(child).where(child.c[child_key].in_(parents))
