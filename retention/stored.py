"""Stored time forms: which instant a stored event value stands for, exactly.

Databases without a time type (SQLite) hold events as text in whatever ISO-8601
form a program wrote, or as epoch numbers. This module reads them without any
database: an ISO-8601 text (date only; ``T`` or space; ``HH:MM`` or
``HH:MM:SS``; any number of fraction digits after ``.`` or ``,``; no offset,
``Z``, ``±HH:MM``, ``±HHMM`` or ``±HH``) or an epoch number (``unix_seconds``,
``unix_millis``) becomes a *key*: the instant in UTC as text,
``YYYY-MM-DD HH:MM:SS.fffffffff``, with a ``+`` after it when the value lies
strictly inside that nanosecond (more than nine fraction digits, a real
number). Keys sort as their instants do, so ``key <= bound`` decides "due"
exactly. Anything else -- MySQL's zero date, a time that does not exist, text
that is no time, an instant outside 0001-01-02 to 9999-12-31 (UTC) -- is
unreadable (``None``): no event, never due.

Naive text is UTC, or wall-clock time in ``naive_zone`` (the source's
``naive_timestamps: local``). A date without a time is the local date of the
event in ``date_zone``: its first instant there. Arithmetic is on integers
(nanoseconds since 0001-01-01 UTC) and exact fractions.

A plan's cutoff is a microsecond. For ``until`` and hour spans the due events
are those at or before it; for calendar spans every event of the cutoff's
microsecond is due too (the next local day starts at the next microsecond), so
the bounds below take ``whole_microsecond``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

from retention import calendar

UNIX_SECONDS = "unix_seconds"  # integer (or real) seconds since 1970-01-01T00:00Z
UNIX_MILLIS = "unix_millis"  # milliseconds since 1970-01-01T00:00Z (Prisma's SQLite DateTime)
EVENT_FORMATS = (UNIX_SECONDS, UNIX_MILLIS)

DATETIME_SHAPE = "YYYY-MM-DD HH:MM:SS[.f]"  # the canonical text of a timestamp column
DATE_SHAPE = "YYYY-MM-DD"  # the canonical text of a date column

_NS = 10**9
_DAY_NS = 86400 * _NS
_UNIT_NS = {UNIX_SECONDS: _NS, UNIX_MILLIS: 10**6}
_EPOCH_NS = (dt.date(1970, 1, 1).toordinal() - 1) * _DAY_NS  # 1970 on our scale
# Readable instants: from 0001-01-02T00:00Z (a day inside the calendar, so that local
# dates and due instants of every readable event can be computed) to the end of 9999.
_START_NS = _DAY_NS
_END_NS = dt.date.max.toordinal() * _DAY_NS  # 10000-01-01T00:00Z

_ISO = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
    r"(?:[Tt ](?P<h>[0-9]{2}):(?P<mi>[0-9]{2})"
    r"(?::(?P<s>[0-9]{2})(?:[.,](?P<f>[0-9]+))?)?"
    r"(?: ?(?P<z>[Zz]|(?P<sign>[+-])(?P<oh>[0-9]{2})(?::?(?P<om>[0-9]{2}))?))?)?")
# A decimal number, also as SQLite writes a real as text (1.5e+12); longer text is no time.
_NUMBER = re.compile(r"(?=.{1,40}$)[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,3})?")
_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?")
_CANONICAL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class StoredForms:
    """What the values of one event column are, counted by an adapter whose database
    lets any column hold any type (SQLite); the planner chooses its predicate by it."""

    values: int = 0  # values that are not NULL
    integers: int = 0
    reals: int = 0
    number_texts: int = 0  # text that is a plain decimal number
    canonical: int = 0  # text in the column's canonical form (DATETIME_SHAPE or DATE_SHAPE)
    other_texts: int = 0  # text in another ISO-8601 form

    @property
    def numbers(self) -> int:
        return self.integers + self.reals + self.number_texts

    @property
    def texts(self) -> int:
        """Text values that are times (not numbers)."""
        return self.canonical + self.other_texts


def key(instant: dt.datetime) -> str:
    """The key of ``instant`` (aware, or naive UTC)."""
    found = _key(_ns_of(calendar.aware(instant)))
    if found is None:
        raise ValueError(f"{instant.isoformat()} is outside the readable instants")
    return found


def cutoff_key(cut: dt.datetime, whole_microsecond: bool = False) -> str:
    """The bound for keys: a value is due exactly when its key is ``<=`` this.

    ``cut`` may lie before the readable instants (from 0001-01-01T00:00Z on): the bound
    then selects nothing.
    """
    found = _key(_ns_of(calendar.aware(cut)), low=0)
    if found is None:
        raise ValueError(f"{cut.isoformat()} is outside the calendar")
    if not whole_microsecond:
        return found
    return found[:-3] + "999+"  # every instant before the next microsecond


def instant(key_text: str) -> dt.datetime:
    """The aware UTC instant of a key, truncated to the microsecond."""
    return dt.datetime.strptime(key_text[:26], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.UTC)


def read(value: Any, event_format: str | None, naive_zone: dt.tzinfo | None,
         date_zone: dt.tzinfo) -> str | None:
    """The key of a stored event value, or None when it is no instant.

    Text is ISO-8601; with ``event_format`` numbers (and text that is a plain
    decimal number) are epoch times in that unit, without it they are unreadable.
    """
    if isinstance(value, str):
        if event_format is not None and _NUMBER.fullmatch(value):
            return _epoch(Fraction(value), event_format)
        return _iso(value, naive_zone, date_zone)
    if event_format is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _epoch(Fraction(value), event_format)
    if isinstance(value, float | Decimal) and math.isfinite(value):
        return _epoch(Fraction(value), event_format)
    return None


def is_canonical(text: str, date: bool = False) -> bool:
    """Whether ``text`` is in the one form whose text order is its time order.

    ``YYYY-MM-DD HH:MM:SS`` with 0 to 9 fraction digits (naive UTC), or
    ``YYYY-MM-DD`` for a date column: compared as text with the key of a cutoff
    (or the cutoff date), such a value is at or before it exactly when its instant is.
    """
    pattern = _CANONICAL_DATE if date else _CANONICAL
    if not pattern.fullmatch(text):
        return False
    try:
        dt.date(int(text[:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return False
    if date:  # the first instant of a day may be up to 14 hours before its UTC midnight
        return text >= "0001-01-03"
    return text >= "0001-01-02" and text[11:13] <= "23" and text[14:16] <= "59" \
        and text[17:19] <= "59"


def is_number(text: str) -> bool:
    """Whether ``text`` is a plain decimal number (read as epoch time with ``event_format``)."""
    return _NUMBER.fullmatch(text) is not None


def epoch_bound(cut: dt.datetime, event_format: str, whole_microsecond: bool = False,
                real: bool = False) -> int | float:
    """The largest epoch integer (or double, with ``real``) that is due: ``value <= it``."""
    ns = _ns_of(calendar.aware(cut)) - _EPOCH_NS
    limit = Fraction(ns + (1000 if whole_microsecond else 0), _UNIT_NS[event_format])
    if not real:
        return math.ceil(limit) - 1 if whole_microsecond else math.floor(limit)
    near = float(limit)
    if Fraction(near) > limit or (whole_microsecond and Fraction(near) == limit):
        near = math.nextafter(near, -math.inf)
    return near


def epoch_range(event_format: str) -> tuple[int, int]:
    """The lowest and highest epoch integers that are readable instants."""
    unit = _UNIT_NS[event_format]
    return -((_EPOCH_NS - _START_NS) // unit), (_END_NS - 1 - _EPOCH_NS) // unit


def sql_read(value: Any, event_format: str, naive_zone: str, date_zone: str) -> str | None:
    """:func:`read` with zone names, for a database function (``''`` for none/UTC)."""
    return read(value, event_format or None, _zone(naive_zone) if naive_zone else None,
                _zone(date_zone or "UTC"))


@lru_cache(maxsize=16)
def _zone(name: str) -> dt.tzinfo:
    return calendar.zone(name)


def _iso(text: str, naive_zone: dt.tzinfo | None, date_zone: dt.tzinfo) -> str | None:
    m = _ISO.fullmatch(text)
    if m is None:
        return None
    try:
        day = dt.date(int(m["y"]), int(m["mo"]), int(m["d"]))
    except ValueError:
        return None
    if m["h"] is None:
        try:
            return key(calendar.first_instant(day, date_zone))
        except (OverflowError, ValueError):
            return None
    hour, minute, second = int(m["h"]), int(m["mi"]), int(m["s"] or 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    fraction = m["f"] or ""
    nanos = int(fraction[:9].ljust(9, "0"))
    inside = fraction[9:].strip("0") != ""  # strictly inside the nanosecond
    wall = ((day.toordinal() - 1) * 86400 + hour * 3600 + minute * 60 + second) * _NS + nanos
    if m["z"] is not None:
        offset = 0
        if m["sign"] is not None:
            oh, om = int(m["oh"]), int(m["om"] or 0)
            if oh > 23 or om > 59:
                return None
            offset = (oh * 60 + om) * 60 * _NS * (-1 if m["sign"] == "-" else 1)
        return _key(wall - offset, inside)
    if naive_zone is None:
        return _key(wall, inside)
    whole, part = divmod(wall, 1000)  # the zone's offset is the same within a microsecond
    try:
        local = dt.datetime.min + dt.timedelta(microseconds=whole)
        return _key(_ns_of(calendar.from_local_naive(local, naive_zone)) + part, inside)
    except (OverflowError, ValueError):
        return None


def _epoch(number: Fraction, event_format: str) -> str | None:
    low, high = epoch_range(event_format)
    if not low <= number <= high:
        return None
    ns = number * _UNIT_NS[event_format]
    return _key(_EPOCH_NS + math.floor(ns), ns.denominator != 1)


def _ns_of(instant: dt.datetime) -> int:
    """Nanoseconds since 0001-01-01T00:00Z of an aware instant."""
    utc = instant.astimezone(dt.UTC)
    seconds = (utc.toordinal() - 1) * 86400 + utc.hour * 3600 + utc.minute * 60 + utc.second
    return seconds * _NS + utc.microsecond * 1000


def _key(ns: int, inside: bool = False, low: int = _START_NS) -> str | None:
    if not low <= ns < _END_NS:
        return None
    days, rest = divmod(ns, _DAY_NS)
    seconds, nanos = divmod(rest, _NS)
    day = dt.date.fromordinal(days + 1)
    return (f"{day.year:04d}-{day.month:02d}-{day.day:02d} {seconds // 3600:02d}:"
            f"{seconds // 60 % 60:02d}:{seconds % 60:02d}.{nanos:09d}" + ("+" if inside else ""))
