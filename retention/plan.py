"""Plans: frozen data saying exactly what a run will select, and what they are made from.

No I/O happens here. The adapter reflects a table into a :class:`TableInfo`;
:mod:`retention.run.compile` combines it with a rule and the run's instant into a
:class:`Plan`, which the adapter then turns into statements.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from retention import calendar, stored
from retention.actions import Action
from retention.filters import Filter
from retention.period import Retain
from retention.stored import StoredForms


class EventType(StrEnum):
    """How an event column stores its instant."""

    AWARE = "aware"  # timestamp with time zone
    NAIVE_UTC = "naive_utc"  # timestamp without time zone, read as UTC
    NAIVE_LOCAL = "naive_local"  # timestamp without time zone, read in the policy's zone
    DATE = "date"  # the local date of the event


class ColumnKind(StrEnum):
    """What values a column compares with (see :mod:`retention.values`)."""

    BOOLEAN = "boolean"
    INTEGER = "integer"
    FLOAT = "float"
    NUMERIC = "numeric"  # exact decimal
    TEXT = "text"
    ENUM = "enum"
    DATE = "date"
    TIMESTAMP = "timestamp"
    OTHER = "other"  # not checked: compared as written


class Predicate(StrEnum):
    """How the due predicate compares the event column with the cutoff."""

    RANGE = "range"  # event_column <= bound: the database compares (an index range)
    PARSED = "parsed"  # every value read by retention.stored inside the database
    EPOCH = "epoch"  # event_column <= bound as epoch numbers (an index range)


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    name: str
    type_name: str
    temporal: str | None  # "aware", "naive", "date" or None for other types
    nullable: bool = True
    text: bool = False  # a character column (LIKE and LENGTH apply)
    python_type: type | None = None  # int for integer columns, str for text, ...
    kind: ColumnKind = ColumnKind.OTHER
    length: int | None = None  # most characters a text column holds, if declared
    enums: tuple[str, ...] = ()  # the members of an ENUM column
    low: float | None = None  # least value an integer or numeric column holds
    high: float | None = None  # greatest value an integer or numeric column holds


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str
    columns: dict[str, ColumnInfo] = field(hash=False)
    primary_key: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ForeignKeyInfo:
    """A reflected foreign key: ``table(columns)`` references ``referred(referred_columns)``.

    ``referred`` is a table of the source's own schema; ``table`` is too unless
    ``schema`` names the schema (PostgreSQL) or database (MariaDB) it lives in.
    """

    table: str
    columns: tuple[str, ...]
    referred: str
    referred_columns: tuple[str, ...]
    ondelete: str | None = None  # "CASCADE", "SET NULL", ... as reflected; None: NO ACTION
    schema: str | None = None  # the referencing table's schema if not the source's own

    @property
    def qualified(self) -> str:
        """``table``, or ``schema.table`` for a table of another schema."""
        return f"{self.schema}.{self.table}" if self.schema else self.table


@dataclass(frozen=True, slots=True)
class Reference:
    """A foreign key the rule does not declare, which keeps the rows it references.

    ``table(columns)`` references ``referred(referred_columns)``: the rule's table
    itself, or (``via_key`` set) a declared child whose column ``via_key`` holds
    the parent's key, so the parent of a referenced child is kept too. ``schema``
    names the schema of ``table`` when it is not the source's own. Rows kept this
    way count as blocked under :attr:`qualified`.
    """

    table: str
    columns: tuple[str, ...]
    referred: str
    referred_columns: tuple[str, ...]
    via_key: str | None = None
    schema: str | None = None

    @property
    def qualified(self) -> str:
        """``table``, or ``schema.table`` for a table of another schema."""
        return f"{self.schema}.{self.table}" if self.schema else self.table

    def __str__(self) -> str:
        return f"{self.qualified} ({', '.join(self.columns)})"


@dataclass(frozen=True, slots=True)
class ChildPlan:
    table: str
    key: str  # the child's column that holds the parent's key
    primary_key: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a batch needs, decided before the first statement runs."""

    policy: str
    rule: str
    source: str
    table: str
    primary_key: tuple[str, ...]
    event_column: str
    event_type: EventType
    retain: Retain
    timezone: str
    as_of: dt.datetime
    cutoff: dt.datetime  # latest due event instant, aware UTC
    bound: Any  # ``event_column <= bound`` selects the due rows, in the column's own terms
    filters: tuple[Filter, ...]
    action: Action
    children: tuple[ChildPlan, ...]
    batch_size: int
    max_fraction: float
    max_rows: int | None
    held_keys: tuple[tuple[Any, ...], ...] = ()
    lock_timeout: float = 5.0  # seconds
    statement_timeout: float = 120.0  # seconds
    text_columns: frozenset[str] = frozenset()
    references: tuple[Reference, ...] = ()  # undeclared foreign keys: their rows are kept
    event_format: str | None = None  # unix_seconds / unix_millis: the column holds numbers
    predicate: Predicate = Predicate.RANGE
    predicate_reason: str = ""  # why this predicate selects exactly the due rows
    naive_zone: str = ""  # the zone naive stored text is read in ("" for UTC)
    pause_between_batches: float = 0.0  # seconds of rest after each batch
    max_runtime: float | None = None  # seconds; no batch starts later (the next run goes on)
    max_replica_lag: float | None = None  # seconds replicas may lag before a batch waits
    batch_seconds: float = 0.2  # the time a batch transaction should take (batch_size: most rows)
    drop_partitions: bool = True  # delete rules: drop wholly due PostgreSQL partitions

    def describe(self) -> str:
        """One line for the audit record, the logs and ``retention plan``."""
        event = (f"retention_instant({self.event_column})"
                 if self.predicate is Predicate.PARSED else self.event_column)
        unit = f" ({self.event_format})" if self.event_format else ""
        where = [f"{event} <= {_show(self.bound)}{unit}", *(str(f) for f in self.filters)]
        if self.held_keys:
            where.append(f"key not in {len(self.held_keys)} held key(s)")
        where += [f"not referenced by {r}" + (f" through {r.referred}" if r.via_key else "")
                  for r in self.references]
        kids = "".join(f" with {c.table} by {c.key}" for c in self.children)
        return (
            f"{self.action} {self.table}{kids} where {' and '.join(where)} "
            f"({self.retain}; as of {self.as_of.isoformat()}, {self.timezone}; "
            f"{self.predicate} predicate: {self.predicate_reason})"
        )

    def event_instant(self, value: Any) -> dt.datetime:
        """A stored event value as an aware UTC instant (truncated to the microsecond).

        Raises ``ValueError`` for a value that is no instant (the due predicate never
        selects one).
        """
        tz = calendar.zone(self.timezone)
        if not isinstance(value, dt.date):
            return stored.instant(self.event_key(value))
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                return value.astimezone(dt.UTC)
            if self.event_type is EventType.NAIVE_LOCAL:
                return calendar.from_local_naive(value, tz)
            return value.replace(tzinfo=dt.UTC)
        return calendar.first_instant(value, tz)

    def event_key(self, value: Any) -> str:
        """A stored event value's exact instant as a ``retention.stored`` key (to the
        nanosecond, where text holds more digits than a microsecond).

        Raises ``ValueError`` for a value that is no instant.
        """
        if isinstance(value, dt.date):
            return stored.key(self.event_instant(value))
        found = stored.read(value, self.event_format,
                            calendar.zone(self.naive_zone) if self.naive_zone else None,
                            calendar.zone(self.timezone))
        if found is None:
            raise ValueError(f"a stored value of {self.event_column!r} is no instant")
        return found

    def due_instant(self, value: Any) -> dt.datetime:
        return calendar.due_at(self.event_instant(value), self.retain,
                               calendar.zone(self.timezone))


def event_type(column: ColumnInfo, naive_timestamps: str) -> EventType | None:
    if column.temporal == "aware":
        return EventType.AWARE
    if column.temporal == "date":
        return EventType.DATE
    if column.temporal == "naive":
        return EventType.NAIVE_LOCAL if naive_timestamps == "local" else EventType.NAIVE_UTC
    return None


def choose_predicate(column: ColumnInfo, kind: EventType, forms: StoredForms | None,
                     event_format: str | None) -> tuple[Predicate, str]:
    """The predicate that selects exactly the due rows of this column, and why."""
    if forms is None:
        if event_format is not None:
            return Predicate.EPOCH, f"{column.type_name} column of {event_format}"
        return Predicate.RANGE, (f"{column.type_name} column: the database compares its "
                                 "values (values that are no instant are never due)")
    shape = stored.DATE_SHAPE if kind is EventType.DATE else stored.DATETIME_SHAPE
    other = forms.values - forms.integers - forms.reals
    if event_format is not None:
        if other:
            return Predicate.PARSED, (f"{other} of {forms.values} values are text: each is "
                                      f"read as {event_format} or ISO-8601")
        return Predicate.EPOCH, (f"all {forms.values} values are numbers: compared as "
                                 f"{event_format}")
    if kind is EventType.NAIVE_LOCAL:  # wall-clock text does not sort as instants do
        return Predicate.PARSED, (f"naive times are local (naive_timestamps: local): each of "
                                  f"the {forms.values} values is read as an instant")
    if forms.other_texts:
        return Predicate.PARSED, (f"{forms.other_texts} of {forms.values} values are not "
                                  f"'{shape}' text: each is read as ISO-8601")
    return Predicate.RANGE, (f"all {forms.canonical} readable values are '{shape}' text, "
                             "checked now and in the statement: compared as text")


def _show(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.date) else repr(value)
