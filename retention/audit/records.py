"""Compact audit entries: one ``records`` entry per batch and table, read per record.

A batch is recorded as one chained entry per table it changed (kind ``records``).
Its ``detail`` holds the batch's records compactly -- the key columns, the keys
as a JSON array and each record's event value *as stored* (the text the database
renders, or a number) -- and how to read those values: the event column's type,
``event_format``, the zone naive values are read in, the policy's time zone and
the ``retain`` phrase. Nothing is converted per record at run time; the entry's
hash covers the detail text, so a changed key or value breaks the chain.

Readers (``audit export``, ``audit show``, reconciliation, replay) expand an
entry into the per-record shape of SPEC §3: ``event_at`` is the stored value
read exactly as the run read it (:func:`retention.stored.read`, truncated to the
microsecond) and ``due_at`` the first instant it was due
(:func:`retention.calendar.due_at`), both cached per local date so that a
million records expand in about a second. Entries of kind ``record`` (one per
row, written by earlier versions) are read as they are.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from retention import calendar, stored
from retention.adapters.protocol import AffectedRow, Removed
from retention.period import Kind, Retain
from retention.plan import EventType, Plan
from retention.policy.phrase import parse

KIND = "records"  # one entry per batch and table, records compact in its detail
LEGACY_KIND = "record"  # one entry per record (stores written before compact entries)
KINDS = (LEGACY_KIND, KIND)
CACHE_LIMIT = 1 << 16  # values (and days) remembered per reading before starting afresh

# Naive UTC (or "Z"/"+00:00") text in ISO-8601 with a real clock time: converted to
# ``event_at`` by slicing once its date is known to be readable.
_UTC_TEXT = re.compile(
    r"([0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01]))[T ]"
    r"((?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])(?:\.([0-9]{1,9}))?(Z|\+00:00|\+00)?")
_FIRST_READABLE = dt.date(1, 1, 2)
_ONE_DAY = dt.timedelta(days=1)


def iso(instant: dt.datetime) -> str:
    """UTC with microseconds always: equal lengths, so text order is time order under
    any collation (MariaDB's utf8mb4_unicode_ci sorts '.' before '+')."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.UTC)
    return instant.astimezone(dt.UTC).isoformat(timespec="microseconds")


def key_text(key: Mapping[str, Any]) -> str:
    """A record key as the audit log stores it: canonical JSON, columns sorted."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


# -- writing --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """How a rule's stored event values are read: kept in every entry with the values."""

    column: str
    type: str  # an EventType value
    format: str | None  # unix_seconds / unix_millis, or None
    naive_zone: str  # the zone naive values are wall-clock time in; "" for UTC
    timezone: str  # the policy's calendar
    retain: str  # the retain phrase

    @classmethod
    def of(cls, plan: Plan) -> Reading:
        # Aware columns render their values in UTC (with an offset, or as MariaDB's
        # TIMESTAMP text in the session's UTC), never as local wall-clock time.
        zone = "" if plan.event_type is EventType.AWARE else plan.naive_zone
        return cls(plan.event_column, plan.event_type.value, plan.event_format, zone,
                   plan.timezone, str(plan.retain))

    def fields(self) -> dict[str, Any]:
        return {"event_column": self.column, "event_type": self.type,
                "event_format": self.format, "naive_zone": self.naive_zone,
                "timezone": self.timezone, "retain": self.retain}

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> Reading:
        return cls(str(detail.get("event_column") or ""), str(detail.get("event_type") or ""),
                   detail.get("event_format"), str(detail.get("naive_zone") or ""),
                   str(detail.get("timezone") or "UTC"), str(detail["retain"]))


def detail_text(removed: Removed, reading: Reading, extra: Mapping[str, Any] | None = None
                ) -> str:
    """The detail of one ``records`` entry: the JSON arrays embedded as they came."""
    rest = json.dumps({**reading.fields(), **(extra or {})}, sort_keys=True,
                      separators=(",", ":"))
    return (f'{{"columns":{json.dumps(list(removed.columns))},"count":{removed.count},'
            f'"keys":{removed.keys},"events":{removed.events},{rest[1:]}')


def fitting(removed: Removed, reading: Reading, limit: int | None,
            extra: Mapping[str, Any] | None = None) -> list[Removed]:
    """``removed`` as parts whose entry detail holds at most ``limit`` bytes (UTF-8):
    halved until each fits, one record at least (None: no limit)."""
    if limit is None or removed.count <= 1 or len(
            detail_text(removed, reading, extra).encode("utf-8")) <= limit:
        return [removed]
    keys, events = json.loads(removed.keys), json.loads(removed.events)
    half = removed.count // 2
    parts = [(keys[:half], events[:half]), (keys[half:], events[half:])]
    return [piece for k, e in parts for piece in fitting(
        Removed(removed.table, removed.action, removed.columns, len(k),
                json.dumps(k, separators=(",", ":")), json.dumps(e, separators=(",", ":"))),
        reading, limit, extra)]


def entry(run_id: str, rule: str, source: str, batch_id: str, removed: Removed,
          reading: Reading, at: str, extra: Mapping[str, Any] | None = None
          ) -> dict[str, Any]:
    """The chained entry for the records ``removed`` of one batch."""
    return {"kind": KIND, "run_id": run_id, "batch_id": batch_id, "rule": rule,
            "source": source, "table_name": removed.table, "action": removed.action,
            "at": at, "detail": detail_text(removed, reading, extra)}


def from_rows(rows: Sequence[AffectedRow]) -> list[Removed]:
    """Per-row results (adapters that give :class:`AffectedRow`) as compact groups.

    The event value is the stored one when the adapter kept it, else the event
    instant it computed (ISO-8601 with offset: read back as that instant).
    """
    groups: dict[tuple[str, str, tuple[str, ...]], list[AffectedRow]] = {}
    for row in rows:
        groups.setdefault((row.table, row.action, tuple(row.key)), []).append(row)
    return [Removed.of(table, action, columns, [tuple(r.key[c] for c in columns) for r in group],
                       [iso(r.event_at) if r.event_value is None else r.event_value
                        for r in group])
            for (table, action, columns), group in groups.items()]


# -- reading ----------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _retain(phrase: str) -> Retain:
    return parse(phrase)


class Reader:
    """Event and due instants (as audit text) of the stored values of one reading."""

    def __init__(self, reading: Reading) -> None:
        self.reading = reading
        self.tz = calendar.zone(reading.timezone)
        self.naive = calendar.zone(reading.naive_zone) if reading.naive_zone else None
        self.retain = _retain(reading.retain)
        self._days: dict[str, tuple[str, ...] | None] = {}
        self._fast = reading.format is None  # epoch numbers in text are read as numbers

    def times(self, value: Any) -> tuple[str | None, str | None]:
        """(event_at, due_at) of a stored value; (None, None) if it is no instant."""
        if type(value) is str and self._fast:
            m = _UTC_TEXT.fullmatch(value)
            if m is not None and (self.naive is None or m[4]):
                day = m[1]
                info = self._days.get(day)
                if info is None:
                    info = self._day(day)
                if info is not None:
                    event_at = f"{day}T{m[2]}.{(m[3] or '')[:6]:0<6}+00:00"
                    if info and info[2] <= event_at < info[4]:  # the usual local date
                        return event_at, info[3]
                    return event_at, self._due(event_at, info)
        return self._slow(value)

    def key(self, value: Any) -> str | None:
        """The exact instant of a stored value as a ``retention.stored`` key, or None."""
        try:
            return stored.read(value, self.reading.format, self.naive, self.tz)
        except (TypeError, ValueError, OverflowError):
            return None

    def _slow(self, value: Any) -> tuple[str | None, str | None]:
        found = self.key(value)
        if found is None:
            return None, None
        event_at = iso(stored.instant(found))
        info = self._day(event_at[:10])
        return event_at, (None if info is None else self._due(event_at, info))

    def _day(self, day: str) -> tuple[str, ...] | None:
        """For a UTC date: what the due instant of its events needs (None: not readable)."""
        if day in self._days:
            return self._days[day]
        if len(self._days) >= CACHE_LIMIT:
            self._days.clear()
        info: tuple[str, ...] | None
        try:
            date = dt.date.fromisoformat(day)
        except ValueError:
            info = None
        else:
            info = None if date < _FIRST_READABLE else self._bounds(date)
        self._days[day] = info
        return info

    def _bounds(self, date: dt.date) -> tuple[str, ...]:
        """Calendar spans: the first instants of the local dates around ``date`` and the
        due instant of each, ``(b[-1], due[-1], b[0], due[0], b[1], due[1], b[2])``.
        Other kinds, or near the ends of the calendar: ``()`` (computed per value)."""
        if self.retain.kind is not Kind.CALENDAR:
            return ()
        try:
            out: list[str] = []
            for offset in (-1, 0, 1):
                local = date + offset * _ONE_DAY
                out.append(iso(calendar.first_instant(local, self.tz)))
                end = calendar.add_spans(local, self.retain) + _ONE_DAY
                out.append(iso(calendar.first_instant(end, self.tz)))
            out.append(iso(calendar.first_instant(date + 2 * _ONE_DAY, self.tz)))
        except (OverflowError, ValueError):
            return ()
        return tuple(out)

    def _due(self, event_at: str, info: tuple[str, ...]) -> str | None:
        # A UTC instant's local date is the last local date that began at or before it
        # (dates never go back, calendar.local_date); at most a day from its UTC date.
        if info and info[0] <= event_at < info[6]:
            if event_at >= info[4]:
                return info[5]
            if event_at >= info[2]:
                return info[3]
            return info[1]
        try:
            return iso(calendar.due_at(dt.datetime.fromisoformat(event_at), self.retain,
                                       self.tz))
        except (OverflowError, ValueError):
            return None


class Readers:
    """One :class:`Reader` per reading met in a stream of entries."""

    def __init__(self) -> None:
        self._found: dict[Reading, Reader] = {}

    def __call__(self, reading: Reading) -> Reader:
        found = self._found.get(reading)
        if found is None:
            found = self._found[reading] = Reader(reading)
        return found


@dataclass(frozen=True, slots=True)
class Compact:
    """A ``records`` entry's detail, parsed."""

    columns: tuple[str, ...]
    keys: list[Any]
    events: list[Any]
    reading: Reading
    extra: dict[str, Any]

    @classmethod
    def parse(cls, detail: str) -> Compact:
        data = json.loads(detail)
        keys, events = data.pop("keys"), data.pop("events")
        columns = tuple(data.pop("columns"))
        data.pop("count", None)
        reading = Reading.from_detail(data)
        for name in reading.fields():
            data.pop(name, None)
        return cls(columns, keys, events, reading, data)

    def key_dicts(self) -> Iterator[dict[str, Any]]:
        """Each record's key as a mapping, columns sorted (as record keys always were)."""
        order = sorted(range(len(self.columns)), key=lambda i: self.columns[i])
        if len(self.columns) == 1:
            name = self.columns[0]
            for value in self.keys:
                yield {name: value}
            return
        for values in self.keys:
            yield {self.columns[i]: values[i] for i in order}

    def subset(self, indexes: Sequence[int], table: str, action: str) -> Removed:
        """The records at ``indexes`` as a :class:`Removed` (for a partial re-append)."""
        return Removed(table, action, self.columns, len(indexes),
                       json.dumps([self.keys[i] for i in indexes], separators=(",", ":")),
                       json.dumps([self.events[i] for i in indexes], separators=(",", ":")))


def expand(entry_row: Mapping[str, Any], readers: Readers, exact: bool = False
           ) -> Iterator[dict[str, Any]]:
    """The per-record dicts of one log row: a ``records`` entry expanded, a ``record``
    entry as it is. Each has the columns of a ``record`` entry (``detail``: what the
    entry says of all its records, e.g. ``recovered_from``), the entry's ``seq``, and
    with ``exact`` also ``event_key`` (the exact stored instant, or None when only
    ``event_at`` was recorded)."""
    if entry_row["kind"] != KIND:
        out = dict(entry_row)
        if exact:
            out["event_key"] = None
        yield out
        return
    compact = Compact.parse(entry_row["detail"])
    reader = readers(compact.reading)
    base = {name: entry_row.get(name) for name in (
        "seq", "run_id", "batch_id", "rule", "source", "table_name", "action", "at")}
    # What the entry says of all its records (recovered_from, replay_of), as a per-row
    # entry said it of its own.
    base.update(kind=LEGACY_KIND,
                detail=json.dumps(compact.extra, sort_keys=True) if compact.extra else None)
    for key, event in zip(compact.key_dicts(), compact.events, strict=True):
        event_at, due_at = reader.times(event)
        record = {**base, "record_key": key_text(key), "event_at": event_at,
                  "due_at": due_at, "event_value": event}
        if exact:
            record["event_key"] = reader.key(event)
        yield record
