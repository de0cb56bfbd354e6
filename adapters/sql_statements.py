"""Build SQLAlchemy Core statements from a plan and a reflected table.

Identifiers come only from the reflected ``Table`` (a policy's names were
checked against it); every value is a bound parameter.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from retention.adapters import sql_events
from retention.adapters.anonymize import HEX64, PREFIX, TRUNCATED_IP
from sqlalchemy import (
    Column,
    ColumnElement,
    Delete,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    collate,
    column,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy import table as table_clause
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.postgresql import CIDR, INET, aggregate_order_by
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from retention.actions import REDACTED, ColumnAction, Strategy
from retention.filters import Filter, Op
from retention.plan import ChildPlan, Plan, Reference


def bind_value(value: Any, dialect: str) -> Any:
    """PyMySQL and SQLite drop an aware datetime's offset: bind naive UTC there."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None and dialect != "postgresql":
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def key_of(table: Table, plan: Plan) -> ColumnElement[Any]:
    cols = [table.c[name] for name in plan.primary_key]
    return cols[0] if len(cols) == 1 else tuple_(*cols)


def where_filter(table: Table, f: Filter) -> ColumnElement[bool]:
    col = table.c[f.column]
    if f.op is Op.IS_NULL:
        return col.is_(None)
    if f.op is Op.NOT_NULL:
        return col.is_not(None)
    if f.op is Op.EQ:
        return col == bindparam(None, f.values[0], type_=col.type)
    if f.op is Op.NOT_EQ:
        return or_(col.is_(None), col != bindparam(None, f.values[0], type_=col.type))
    if f.op is Op.NOT_IN:
        return or_(col.is_(None), col.not_in(list(f.values)))
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


def due(table: Table, plan: Plan, dialect: str,
        is_readable: ColumnElement[bool] | None = None) -> ColumnElement[bool]:
    """The due predicate: event at or before the cutoff, the rule's filters, not yet
    anonymized (anonymize rules), not held. (``is_readable``: see
    ``sql_events.compare``.)

    Built once per table, plan (whatever its batch size) and dialect and then reused:
    every batch of a rule states the same predicate, and building it costs more
    client time than a small batch's statements take on the server.
    """
    key: tuple[Any, ...] | None = None
    if is_readable is None:
        key = (table, dataclasses.replace(plan, batch_size=0), dialect)
        try:
            found = _DUE.get(key)
        except TypeError:  # a plan holding an unhashable value: built each time
            key, found = None, None
        if found is not None:
            return found
    made = _due(table, plan, dialect, is_readable)
    if key is not None:
        if len(_DUE) >= _DUE_KEPT:
            _DUE.clear()
        _DUE[key] = made
    return made


_DUE: dict[tuple[Any, ...], ColumnElement[bool]] = {}  # see due()
_DUE_KEPT = 32  # predicates remembered (a run needs one per rule)


def _due(table: Table, plan: Plan, dialect: str,
         is_readable: ColumnElement[bool] | None) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = [
        sql_events.compare(table, plan, dialect, is_readable),
        *(where_filter(table, f) for f in plan.filters),
        pending(table, plan, dialect),
    ]
    if plan.held_keys:
        parts.append(not_(key_of(table, plan).in_(_held_values(table, plan))))
    parts += [not_(referenced(table, plan, ref)) for ref in plan.references]
    return and_(*parts)


def _other(table: Table, name: str, columns: set[str], taken: set[str],
           schema: str | None = None) -> Any:
    """A table named by a reflected foreign key (in ``schema`` if given, else the rule's
    table's), aliased when its name is already in use."""
    found = table_clause(name, *(column(c) for c in sorted(columns)),
                         schema=schema or table.schema)
    return found.alias(f"{name}_ref") if name in taken else found


def referenced(table: Table, plan: Plan, ref: Reference) -> ColumnElement[bool]:
    """EXISTS a row of ``ref.table`` that references this row, or one of its declared children.

    Correlated on the rule's table; NULL in a referencing column references nothing.
    """
    if ref.via_key is None:
        other = _other(table, ref.table, set(ref.columns), {table.name}, ref.schema)
        match = [other.c[a] == table.c[b] for a, b in zip(ref.columns, ref.referred_columns,
                                                           strict=True)]
        return select(literal_column("1")).select_from(other).where(*match).exists()
    child = _other(table, ref.referred, {ref.via_key, *ref.referred_columns}, {table.name})
    other = _other(table, ref.table, set(ref.columns), {table.name, ref.referred}, ref.schema)
    match = [other.c[a] == child.c[b] for a, b in zip(ref.columns, ref.referred_columns,
                                                       strict=True)]
    return (select(literal_column("1")).select_from(child.join(other, and_(*match)))
            .where(child.c[ref.via_key] == table.c[plan.primary_key[0]]).exists())


def held(table: Table, plan: Plan, dialect: str,
         is_readable: ColumnElement[bool] | None = None) -> ColumnElement[bool]:
    """Rows that would be due but are under a legal hold."""
    if not plan.held_keys:
        return false()
    return and_(
        sql_events.compare(table, plan, dialect, is_readable),
        *(where_filter(table, f) for f in plan.filters),
        pending(table, plan, dialect),
        key_of(table, plan).in_(_held_values(table, plan)),
    )


def pending(table: Table, plan: Plan, dialect: str) -> ColumnElement[bool]:
    """Rows with a column not yet in its anonymized form: exactly the rows the
    strategies of ``anonymize.apply`` would change (always true for a delete rule)."""
    if not plan.action.columns:
        return true()
    return or_(*(_pending(table.c[a.column], a, a.column in plan.text_columns, dialect)
                 for a in plan.action.columns))


def _pending(col: Column[Any], action: ColumnAction, text: bool, dialect: str
             ) -> ColumnElement[bool]:
    strategy = action.strategy
    if strategy is Strategy.NULL or (strategy is Strategy.FIXED and action.value is None):
        return col.is_not(None)
    if strategy is Strategy.REDACT:
        return and_(col.is_not(None), _differs(col, REDACTED, text, dialect))
    if strategy is Strategy.FIXED:
        return and_(col.is_not(None), _differs(col, action.value, text, dialect))
    if strategy is Strategy.HASH and text:
        return and_(col.is_not(None), not_(_matches(col, HEX64, dialect)))
    if strategy is Strategy.TRUNCATE_IP and text:
        return and_(col.is_not(None), not_(_matches(col, TRUNCATED_IP, dialect)))
    if strategy is Strategy.TRUNCATE_IP and isinstance(col.type, INET | CIDR):
        return and_(col.is_not(None), _untruncated_address(col))
    raise ValueError(f"{col.name}: {strategy} needs a text column (checked by validate)")


def _differs(col: Column[Any], value: Any, text: bool, dialect: str) -> ColumnElement[bool]:
    """``col <> value``, for text exactly: MySQL and MariaDB compare by collation (case,
    accents) and ignore trailing spaces, so there the binary collation (of the value in
    utf8mb4, whatever the connection's character set) and the length decide."""
    bound = bindparam(None, value, type_=String() if text else col.type)
    if text and dialect in ("mysql", "mariadb"):
        exact = collate(cast(bound, mysql.CHAR(charset="utf8mb4")), "utf8mb4_bin")
        return or_(col != exact, func.char_length(col) != func.char_length(bound))
    return col != bound


def _matches(col: Column[Any], body: str, dialect: str) -> ColumnElement[bool]:
    """The whole text of ``col`` matches the regular expression ``body``, case-sensitively.

    The end anchor matches only at the very end: ``$`` on PostgreSQL, ``\\z`` in PCRE
    (MariaDB, where ``(?-i)`` also overrides a case-insensitive collation), ``\\Z`` in
    Python's ``re`` (SQLite's ``REGEXP`` as SQLAlchemy registers it).
    """
    if dialect == "postgresql":
        pattern = f"^(?:{body})$"
    elif dialect in ("mysql", "mariadb"):
        pattern = f"(?-i)^(?:{body})\\z"
    else:
        pattern = f"^(?:{body})\\Z"
    return col.regexp_match(pattern)


def _untruncated_address(col: Column[Any]) -> ColumnElement[bool]:
    """PostgreSQL ``inet``: not the /24 or /48 host address (full mask length); ``cidr``:
    a network narrower than /24 or /48 (its host bits are always zero)."""
    v4 = func.family(col) == 4
    prefix = case((v4, PREFIX[4]), else_=PREFIX[6])
    if isinstance(col.type, CIDR):
        return func.masklen(col) > prefix
    full = case((v4, 32), else_=128)
    network = cast(func.network(func.set_masklen(col, prefix)), INET)
    return col != func.set_masklen(network, full)


def select_batch(
    table: Table, plan: Plan, dialect: str, after: tuple[Any, ...] | None, lock: bool
) -> Select[Any]:
    """Up to ``batch_size`` due rows after key ``after``, in key order, locked if asked."""
    pk = [table.c[name] for name in plan.primary_key]
    extra = [table.c[a.column] for a in plan.action.columns]
    stmt = select(*pk, sql_events.as_stored(table, plan, dialect), *extra).where(
        due(table, plan, dialect))
    if after is not None:
        stmt = stmt.where(key_of(table, plan) > _key_bound(plan, after))
    stmt = stmt.order_by(*pk).limit(plan.batch_size)
    if lock and dialect != "sqlite":
        stmt = stmt.with_for_update()
    return stmt


def _key_bound(plan: Plan, key: tuple[Any, ...]) -> Any:
    return key[0] if len(plan.primary_key) == 1 else tuple_(*key)


def key_range(table: Table, plan: Plan, after: tuple[Any, ...] | None,
              last: tuple[Any, ...]) -> ColumnElement[bool]:
    """The keys after ``after`` (None: from the first) up to and including ``last``."""
    key = key_of(table, plan)
    upto = key <= _key_bound(plan, last)
    return upto if after is None else and_(key > _key_bound(plan, after), upto)


def delete_range(table: Table, plan: Plan, dialect: str, after: tuple[Any, ...] | None,
                 last: tuple[Any, ...]) -> Delete:
    """Delete the due rows with keys in (``after``, ``last``]: exactly the rows a locked
    :func:`select_batch` selected, the due predicate re-checked in the statement."""
    return table.delete().where(key_range(table, plan, after, last), due(table, plan, dialect))


def children_in_range(table: Table, child: Table, child_key: str, plan: Plan, dialect: str,
                      after: tuple[Any, ...] | None, last: tuple[Any, ...]
                      ) -> ColumnElement[bool]:
    """Child rows of the due parents with keys in (``after``, ``last``].

    The parent key range is repeated on the child's key column, so the child's index
    narrows the rows the per-row membership check looks at.
    """
    fk = child.c[child_key]
    parents = select(table.c[plan.primary_key[0]]).where(
        key_range(table, plan, after, last), due(table, plan, dialect))
    upto = fk <= last[0]
    return and_(upto if after is None else and_(fk > after[0], upto), fk.in_(parents))


class ArrayOf(ColumnElement[Any]):
    """PostgreSQL ``ARRAY(subquery)``: compared with ``= ANY(...)`` it is one parameter to
    the planner (an index scan), where ``IN (subquery)`` may hash-join the whole table."""

    inherit_cache = True
    _traverse_internals = [("query", InternalTraversal.dp_clauseelement)]

    def __init__(self, query: Select[Any]) -> None:
        self.query = query
        self.type = query.selected_columns[0].type


@compiles(ArrayOf)
def _array_of(element: ArrayOf, compiler: Any, **kw: Any) -> str:
    return f"ARRAY({compiler.process(element.query, **kw)})"


class JsonArrayAgg(ColumnElement[Any]):
    """MariaDB (>= 10.5) ``JSON_ARRAYAGG(value ORDER BY key)``."""

    inherit_cache = True
    _traverse_internals = [("aggregated", InternalTraversal.dp_clauseelement),
                           ("ordered_by", InternalTraversal.dp_clauseelement)]

    def __init__(self, aggregated: Any, ordered_by: Any) -> None:
        self.aggregated = aggregated
        self.ordered_by = ordered_by
        self.type = String()


@compiles(JsonArrayAgg)
def _json_arrayagg(element: JsonArrayAgg, compiler: Any, **kw: Any) -> str:
    return (f"JSON_ARRAYAGG({compiler.process(element.aggregated, **kw)} "
            f"ORDER BY {compiler.process(element.ordered_by, **kw)})")


def locked_batch_json(table: Table, plan: Plan, dialect: str, after: tuple[Any, ...] | None
                      ) -> Select[Any]:
    """MariaDB: the next batch selected and locked (:func:`select_batch`) and returned as
    one row: how many rows, the last key, the keys and the event values as stored (JSON
    arrays in key order)."""
    batch = select_batch(table, plan, dialect, after, lock=True).subquery("sel")
    key, event = batch.c[plan.primary_key[0]], batch.c[plan.event_column]
    return select(func.count(), func.max(key), JsonArrayAgg(key, key), JsonArrayAgg(event, key))


def children_json(table: Table, child: Table, child_plan: ChildPlan, plan: Plan, dialect: str,
                  after: tuple[Any, ...] | None, last: tuple[Any, ...]) -> Select[Any]:
    """MariaDB: the children of a locked batch (the rows :func:`children_in_range` selects),
    locked, as one row: how many, their keys and their parents' event values (JSON
    arrays in key order)."""
    key, fk = child.c[child_plan.primary_key[0]], child.c[child_plan.key]
    event = sql_events.as_stored(table, plan, dialect)
    upto = fk <= last[0]
    return (select(func.count(), JsonArrayAgg(key, key), JsonArrayAgg(event, key))
            .select_from(child.join(table, fk == table.c[plan.primary_key[0]]))
            .where(upto if after is None else and_(fk > after[0], upto),
                   key_range(table, plan, after, last), due(table, plan, dialect))
            .with_for_update())


def delete_batch(table: Table, plan: Plan, after: tuple[Any, ...] | None,
                 children: list[tuple[ChildPlan, Table]]) -> Select[Any]:
    """PostgreSQL: one batch of a delete rule as one statement.

    ``sel`` takes the next ``batch_size`` due keys after ``after``; ``p`` deletes
    those parents that are still due (re-checked under the row lock the delete
    takes, so a row changed meanwhile is left alone) and returns their event
    values; each ``c<i>`` deletes the children of the deleted parents. One row
    comes back: how many keys ``sel`` took and its last key, then per table (the
    parents, then each child table) how many rows went, their keys and their
    parents' event values as JSON arrays in key order (:class:`Removed`).
    """
    pk = table.c[plan.primary_key[0]]
    dialect = "postgresql"
    sel = select(pk.label("k")).where(due(table, plan, dialect))
    if after is not None:
        sel = sel.where(pk > after[0])
    sel_cte = sel.order_by(pk).limit(plan.batch_size).cte("sel")
    event = table.c[plan.event_column]
    parents = (table.delete()
               .where(pk == func.any(ArrayOf(select(sel_cte.c.k))), due(table, plan, dialect))
               .returning(pk.label("k"), event.label("e")).cte("p"))
    columns: list[Any] = [
        select(func.count()).select_from(sel_cte).scalar_subquery().label("scanned"),
        select(sel_cte.c.k).order_by(sel_cte.c.k.desc()).limit(1).scalar_subquery()
        .label("last"),
        *_json_arrays(parents, [parents.c.k], parents.c.e, None),
    ]
    for i, (child, child_table) in enumerate(children):
        keys = [child_table.c[n].label(f"k{j}") for j, n in enumerate(child.primary_key)]
        fk = child_table.c[child.key]
        gone = (child_table.delete()
                .where(fk == func.any(ArrayOf(select(parents.c.k))))
                .returning(*keys, fk.label("fk")).cte(f"c{i}"))
        key_columns = [gone.c[f"k{j}"] for j in range(len(keys))]
        columns += _json_arrays(gone, key_columns, parents.c.e,
                                gone.join(parents, gone.c.fk == parents.c.k))
    return select(*columns)


def _json_arrays(rows: Any, keys: list[Any], event: Any, source: Any) -> list[Any]:
    """Count, keys and event values (JSON text, in key order) of the rows of a DML CTE;
    the event values are read from ``source`` (``rows`` joined with the parents)."""
    key = keys[0] if len(keys) == 1 else func.json_build_array(*keys)
    return [
        select(func.count()).select_from(rows).scalar_subquery(),
        select(cast(func.json_agg(aggregate_order_by(key, *keys)), String))
        .select_from(rows).scalar_subquery(),
        select(cast(func.json_agg(aggregate_order_by(event, *keys)), String))
        .select_from(source if source is not None else rows).scalar_subquery(),
    ]
