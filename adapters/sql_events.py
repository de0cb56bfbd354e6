"""The event part of the due predicate, per dialect, and what SQLite event columns hold.

A plan's predicate (``retention.plan.Predicate``) says how the event column is
compared with the cutoff; this module says it in each database's SQL, with a
*readable* condition beside it: values that are no instant are never due and
are counted as unreadable.

* PostgreSQL and MariaDB, ``range``: ``event <= :bound`` on the native type (an
  index range), readable when inside the years a run can record (PostgreSQL's
  ``-infinity``, ``infinity`` and BC dates are not) and, on MariaDB, a real date
  (not ``0000-00-00`` or a zero or overflowing month or day).
* SQLite, ``range``: ``event <= :bound`` as text, for a column whose text values
  are all in the canonical form (checked when the plan was made), with the same
  canonical test in the statement, so a value written since in another form is
  never selected early.
* SQLite, ``parsed``: ``retention_instant(event, ...) <= :key``, a deterministic
  function on the adapter's connections that reads every stored form
  (:func:`retention.stored.sql_read`).
* ``epoch``: ``event <= :bound`` as numbers, readable inside the years a run can
  record (on SQLite only integer and real values).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection, Engine, Table, and_, bindparam, func

from retention import stored
from retention.plan import EventType, Plan, Predicate
from retention.stored import StoredForms

FUNCTION = "retention_instant"  # SQLite: stored value -> key text, or NULL
_FORMS = "retention_forms"  # SQLite aggregate: how many texts are numbers / ISO-8601
_FIRST_DAY = dt.date(1, 1, 3)  # native columns: earlier values are unreadable (stored.py)
_LAST = dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
_DATETIME_GLOB = "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9]*"
_DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]"


def register(engine: Engine) -> None:
    """Give every SQLite connection of ``engine`` the functions the predicates use."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function(FUNCTION, 4, stored.sql_read, deterministic=True)
        dbapi_connection.create_aggregate(_FORMS, 3, _Forms)


class _Forms:
    """Counts texts that are plain numbers and texts in other ISO-8601 forms."""

    def __init__(self) -> None:
        self.numbers = self.iso = 0

    def step(self, value: Any, naive_zone: str, date_zone: str) -> None:
        if not isinstance(value, str):
            return
        if stored.is_number(value):
            self.numbers += 1
        elif stored.sql_read(value, "", naive_zone, date_zone) is not None:
            self.iso += 1

    def finalize(self) -> str:
        return f"{self.numbers} {self.iso}"


def census(conn: Connection, table: Table, column: str, date: bool, naive_zone: str,
           date_zone: str) -> StoredForms:
    """What ``column`` holds now, in one aggregate query (SQLite).

    The canonical test runs once per row, in a subquery that ``LIMIT -1`` (no limit)
    keeps SQLite from flattening into the aggregates (which would run it twice).
    """
    col = table.c[column]
    rows = sa.select(col.label("value"), func.typeof(col).label("kind"),
                     canonical_text(col, date).label("canonical")
                     ).limit(-1).subquery("stored")
    kind, canonical = rows.c.kind, rows.c.canonical == 1
    stmt = sa.select(
        func.count(rows.c.value),
        func.coalesce(func.sum(sa.case((kind == "integer", 1), else_=0)), 0),
        func.coalesce(func.sum(sa.case((kind == "real", 1), else_=0)), 0),
        func.coalesce(func.sum(sa.case((canonical, 1), else_=0)), 0),
        sa.func.retention_forms(rows.c.value, naive_zone, date_zone).filter(
            and_(kind == "text", sa.case((canonical, 0), else_=1) == 1)),
    )
    values, integers, reals, canon, texts = conn.execute(stmt).one()
    numbers, iso = (int(n) for n in (texts or "0 0").split())
    return StoredForms(values=int(values), integers=int(integers), reals=int(reals),
                       number_texts=numbers, canonical=int(canon), other_texts=iso)


def canonical_text(col: Any, date: bool) -> ColumnElement[bool]:
    """SQLite: the value is text in the canonical form (``stored.is_canonical``)."""
    shape = func.length(col) == 10 if date else sa.or_(
        func.length(col) == 19,
        and_(func.length(col).between(21, 29), func.substr(col, 20, 1) == ".",
             sa.not_(func.substr(col, 21).op("GLOB")(_literal("*[^0-9]*")))))
    day = col if date else func.substr(col, 1, 10)
    return and_(
        func.typeof(col) == "text",
        func.length(sa.cast(col, sa.LargeBinary)) == func.length(col),  # ASCII, no NUL
        col.op("GLOB")(_literal(_DATE_GLOB if date else _DATETIME_GLOB)),
        shape,
        col >= _literal("0001-01-03" if date else "0001-01-02"),
        *([] if date else [func.substr(col, 12, 2) <= _literal("23")]),
        func.date(func.julianday(day)) == day,  # a day the calendar has
    )


def compare(table: Table, plan: Plan, dialect: str,
            is_readable: ColumnElement[bool] | None = None) -> ColumnElement[bool]:
    """The event column is at or before the cutoff and readable.

    ``is_readable``: :func:`readable` as the statement computed it already (once per
    row for many comparisons, see ``sql_counts.tally``); not for ``parsed``.
    """
    col = table.c[plan.event_column]
    if plan.predicate is Predicate.PARSED:
        return instant_key(col, plan) <= bindparam(None, plan.bound, type_=sa.String)
    known = readable(table, plan, dialect) if is_readable is None else is_readable
    if plan.predicate is Predicate.EPOCH:
        number: Any = sa.Float() if isinstance(plan.bound, float) else sa.BigInteger()
        return and_(col <= bindparam(None, plan.bound, type_=number), known)
    if dialect == "sqlite":
        return and_(col <= bindparam(None, plan.bound, type_=sa.String), known)
    return and_(col <= _native(plan.bound, col, dialect), known)


def readable(table: Table, plan: Plan, dialect: str) -> ColumnElement[bool]:
    """The event value is an instant the plan can read (never NULL for a non-NULL value)."""
    col = table.c[plan.event_column]
    if plan.predicate is Predicate.PARSED:
        return instant_key(col, plan).is_not(None)
    if plan.predicate is Predicate.EPOCH:
        assert plan.event_format is not None
        low, high = stored.epoch_range(plan.event_format)
        inside = col.between(bindparam(None, low, type_=sa.BigInteger),
                             bindparam(None, high, type_=sa.BigInteger))
        if dialect == "sqlite":
            return and_(func.typeof(col).in_(["integer", "real"]), inside)
        return inside
    if dialect == "sqlite":
        return canonical_text(col, plan.event_type is EventType.DATE)
    date = plan.event_type is EventType.DATE
    aware = plan.event_type is EventType.AWARE
    first = _FIRST_DAY if date else dt.datetime.combine(_FIRST_DAY, dt.time(),
                                                        dt.UTC if aware else None)
    last = _LAST.date() if date else _LAST.replace(tzinfo=dt.UTC if aware else None)
    inside = col.between(_native(first, col, dialect), _native(last, col, dialect))
    if dialect in ("mysql", "mariadb"):  # zero dates, zero or overflowing months and days
        return and_(inside, func.month(col) > 0, func.dayofmonth(col) > 0,
                    func.dayofmonth(col) <= func.dayofmonth(func.last_day(col)))
    return inside


def unreadable(table: Table, plan: Plan, dialect: str,
               is_readable: ColumnElement[bool] | None = None) -> ColumnElement[bool]:
    """The event column holds a value that is no instant (never due)."""
    col = table.c[plan.event_column]
    known = readable(table, plan, dialect) if is_readable is None else is_readable
    return and_(col.is_not(None), sa.case((known, 0), else_=1) == 1)


def instant_key(col: Any, plan: Plan) -> ColumnElement[Any]:
    """SQLite: the key of the stored value (``retention.stored.read``), or NULL."""
    call: ColumnElement[Any] = getattr(func, FUNCTION)(
        col, bindparam(None, plan.event_format or "", type_=sa.String),
        bindparam(None, plan.naive_zone, type_=sa.String),
        bindparam(None, plan.timezone, type_=sa.String))
    return call


def value(table: Table, plan: Plan, dialect: str) -> ColumnElement[Any]:
    """The event column as stored (SQLite: untouched by the declared type's conversions)."""
    col = table.c[plan.event_column]
    if dialect == "sqlite" or plan.predicate is Predicate.EPOCH:
        return sa.type_coerce(col, sa.types.NullType()).label(plan.event_column)
    return col


def as_stored(table: Table, plan: Plan, dialect: str) -> ColumnElement[Any]:
    """The event column for the audit log, as stored: :func:`value`, and on MariaDB and
    MySQL a date or time as the server's text (no driver conversion per row)."""
    if dialect in ("mysql", "mariadb") and plan.predicate is Predicate.RANGE:
        col = table.c[plan.event_column]
        return sa.cast(col, sa.CHAR()).label(plan.event_column)
    return value(table, plan, dialect)


def oldest(table: Table, plan: Plan, dialect: str,
           among: ColumnElement[bool] | None = None) -> ColumnElement[Any]:
    """The least event value (``min``), of the rows meeting ``among`` if given (else of
    the rows the statement selects); :func:`oldest_instant` reads it."""
    found: ColumnElement[Any] = (instant_key(table.c[plan.event_column], plan)
                                 if plan.predicate is Predicate.PARSED
                                 else _unlabeled(value(table, plan, dialect)))
    return func.min(found if among is None else sa.case((among, found)))


def _unlabeled(found: ColumnElement[Any]) -> ColumnElement[Any]:
    return found.element if isinstance(found, sa.Label) else found


def oldest_instant(plan: Plan, found: Any) -> dt.datetime | None:
    if found is None:
        return None
    if plan.predicate is Predicate.PARSED:
        return stored.instant(found)
    return plan.event_instant(found)


def _native(bound: Any, col: Any, dialect: str) -> Any:
    """PyMySQL and SQLite drop an aware datetime's offset: bind naive UTC there."""
    if isinstance(bound, dt.datetime) and bound.tzinfo is not None and dialect != "postgresql":
        bound = bound.astimezone(dt.UTC).replace(tzinfo=None)
    return bindparam(None, bound, type_=col.type)


def _literal(text: str) -> Any:
    """A constant of this module (never policy text) written into the statement."""
    return sa.literal_column("'" + text.replace("'", "''") + "'")
