"""Due instants and exact cutoffs, counted the way law counts periods.

This is the only module that does calendar arithmetic (with pendulum).

* Calendar spans (days, weeks, months, years): take the local date of the
  event, add the spans left to right as date arithmetic (Aug 31 + 6 months is
  the last day of February), and the period ends at the end of that local day:
  the record is due from the first instant of the next local day
  (EU Regulation 1182/71, art. 3).
* Hour spans: a fixed duration in absolute time from the event instant.
* ``until EVENT``: due at the event instant itself.

The due instant never decreases as the event instant grows, so the due records
at ``now`` are exactly those with ``event <= cutoff(now)``. :func:`cutoff` finds
that one instant, to the microsecond, by inverting the forward function
:func:`due_at` over dates (never by subtracting a period from ``now`` in UTC).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import pendulum

from retention.period import Kind, Retain, Unit

UTC = dt.UTC
ONE_MICROSECOND = dt.timedelta(microseconds=1)
# A cutoff before every event retention reads (they start at 0001-01-02T00:00Z), and late
# enough that its local date and wall-clock time exist in every zone: the cutoff of an
# instant whose real cutoff lies before year 1, when nothing is due yet.
BEFORE_EVERY_EVENT = dt.datetime(1, 1, 1, 23, 59, 59, 999999, tzinfo=dt.UTC)
_ONE_DAY = dt.timedelta(days=1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_FIRST = dt.datetime.min.replace(tzinfo=UTC)  # the ends of what datetime can hold
_LAST = dt.datetime.max.replace(tzinfo=UTC)
_FALL_BACK_WINDOW = dt.timedelta(hours=3)  # longer than any clock change on record


@lru_cache(maxsize=64)
def zone(name: str) -> dt.tzinfo:
    """The time zone called ``name``; raises ``ValueError`` for an unknown name."""
    try:
        return pendulum.timezone(name)
    except Exception as exc:  # pendulum raises its own InvalidTimezone
        raise ValueError(f"unknown time zone {name!r}") from exc


def aware(instant: dt.datetime) -> dt.datetime:
    """``instant`` as an aware UTC datetime; a naive one is read as UTC."""
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


def local_date(instant: dt.datetime, tz: dt.tzinfo) -> dt.date:
    """The calendar date of ``instant`` on a wall clock in ``tz``, never going backwards.

    Where clocks fell back across midnight (St. John's until 2011 went from
    00:00:59 back to 23:01), the wall-clock date briefly returns to the day
    before; the date of such an instant is the latest date the clock already
    showed, so dates (and due instants) never decrease as time goes on.
    """
    instant = aware(instant)
    day = instant.astimezone(tz).date()
    try:
        earlier = instant - _FALL_BACK_WINDOW
        high = earlier.astimezone(tz).utcoffset()
    except OverflowError:  # the first hours of the calendar: no clock change to look back on
        return day
    if high is None or instant.astimezone(tz).utcoffset() == high:
        return day
    lo, hi = _micros(earlier), _micros(instant)  # find the last instant before the change
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _instant(mid).astimezone(tz).utcoffset() == high:
            lo = mid
        else:
            hi = mid
    return max(day, _instant(lo).astimezone(tz).date())


@lru_cache(maxsize=8192)  # a run asks for the same few days for thousands of rows
def first_instant(day: dt.date, tz: dt.tzinfo) -> dt.datetime:
    """The first instant (UTC) whose local date in ``tz`` is ``day``.

    Found by bisection over microseconds rather than by building local
    midnight, so days that start at 01:00 (a DST gap at midnight) or twice are
    handled without special cases.
    """
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=UTC)
    lo = _micros(_moved(midnight, -2 * _ONE_DAY))  # local date < day
    hi = _micros(_moved(midnight, 2 * _ONE_DAY))  # local date >= day
    if lo == _micros(_FIRST) and _local_date_reached(_FIRST, day, tz):
        return _calendar_start(midnight.replace(tzinfo=None), tz)  # day is 0001-01-01
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _local_date_reached(_instant(mid), day, tz):
            hi = mid
        else:
            lo = mid
    return _instant(hi)


def _moved(instant: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """``instant + delta``, held at the first or last instant datetime can hold."""
    try:
        return instant + delta
    except OverflowError:
        return _FIRST if delta < dt.timedelta(0) else _LAST


def _calendar_start(wall: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """The first instant datetime holds, where its wall clock in ``tz`` already reads
    ``wall`` or later: that instant when it reads ``wall`` exactly; else the instant sought
    lies before it, and OverflowError (as for any date outside the calendar)."""
    if as_local_naive(_FIRST, tz) == wall:
        return _FIRST
    raise OverflowError(f"{wall.isoformat()} in {tz} begins before the first instant "
                        "datetime holds")


def _local_date_reached(instant: dt.datetime, day: dt.date, tz: dt.tzinfo) -> bool:
    """Whether the local date of ``instant`` is ``day`` or later. Near the ends of the
    calendar the local date may lie before year 1 (a zone behind UTC on Jan 1, year 1)
    or after 9999: earlier, respectively later, than every date."""
    try:
        return local_date(instant, tz) >= day
    except OverflowError:
        return instant.year > 1


def add_spans(day: dt.date, retain: Retain) -> dt.date:
    """``day`` plus the calendar spans of ``retain``, left to right, clamped at month ends."""
    out = pendulum.Date(day.year, day.month, day.day)
    for span in retain.spans:
        out = _shift(out, span.unit, span.amount)
    return dt.date(out.year, out.month, out.day)


def due_at(event: dt.datetime, retain: Retain, tz: dt.tzinfo) -> dt.datetime:
    """The first instant (UTC) at which a record with this event instant is due."""
    event = aware(event)
    if retain.kind is Kind.UNTIL:
        return event
    if retain.kind is Kind.HOURS:
        return event + dt.timedelta(hours=retain.total_hours)
    return first_instant(add_spans(local_date(event, tz), retain) + _ONE_DAY, tz)


def due_at_date(event: dt.date, retain: Retain, tz: dt.tzinfo) -> dt.datetime:
    """The due instant of an event stored as a date (the local date of the event)."""
    return due_at(first_instant(event, tz), retain, tz)


def cutoff(now: dt.datetime, retain: Retain, tz: dt.tzinfo) -> dt.datetime:
    """The latest event instant (UTC, microsecond precision) that is due at ``now``.

    ``due_at(e) <= now`` holds exactly when ``e <= cutoff(now)``.
    """
    now = aware(now)
    if retain.kind is Kind.UNTIL:
        return now
    if retain.kind is Kind.HOURS:
        return now - dt.timedelta(hours=retain.total_hours)
    # due_at(e) <= now  <=>  add_spans(local_date(e)) + 1 day <= local_date(now)
    last = local_date(now, tz) - _ONE_DAY
    day = _subtract_spans(last, retain)
    while add_spans(day + _ONE_DAY, retain) <= last:  # clamping maps several days to one
        day += _ONE_DAY
    while add_spans(day, retain) > last:
        day -= _ONE_DAY
    return first_instant(day + _ONE_DAY, tz) - ONE_MICROSECOND


def cutoff_date(cut: dt.datetime, tz: dt.tzinfo) -> dt.date:
    """The latest local date whose first instant is ``<= cut`` (for DATE columns)."""
    return local_date(cut, tz)


def as_local_naive(instant: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """``instant`` as a naive wall-clock time in ``tz`` (for naive local columns)."""
    return aware(instant).astimezone(tz).replace(tzinfo=None)


def naive_local_bound(cut: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """The greatest naive wall-clock time in ``tz`` that is read as an instant ``<= cut``.

    A naive local time is read as its first occurrence (:func:`from_local_naive`), so the
    stored times that are due are those up to the latest wall-clock reading shown at or
    before ``cut``. That is ``cut``'s own reading, except in the second pass of an hour
    the clocks repeated (autumn): then the whole first pass, up to the moment the clocks
    went back, is due although it reads later on the wall.
    """
    cut = aware(cut)
    wall = as_local_naive(cut, tz)
    try:
        earlier = cut - _FALL_BACK_WINDOW
        before = earlier.astimezone(tz).utcoffset()
    except OverflowError:  # the first hours of the calendar (as in local_date)
        return wall
    if before is None or cut.astimezone(tz).utcoffset() == before:
        return wall
    lo, hi = _micros(earlier), _micros(cut)  # the last instant with the earlier offset
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _instant(mid).astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return max(wall, as_local_naive(_instant(lo), tz))


def from_local_naive(wall: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """A naive wall-clock time in ``tz`` as an instant: the first instant whose wall clock
    reads ``wall`` or later.

    That is the earlier instant when ``wall`` is ambiguous (the clocks went back), and the
    end of the gap when it does not exist (the clocks went forward), so later wall times
    are never read as earlier instants.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if as_local_naive(first, tz) == wall:
        return first
    return first_wall_instant(wall, tz)  # in a gap


def _shift(day: pendulum.Date, unit: Unit, amount: int) -> pendulum.Date:
    if unit is Unit.YEAR:
        return day.add(years=amount)
    if unit is Unit.MONTH:
        return day.add(months=amount)
    if unit is Unit.WEEK:
        return day.add(weeks=amount)
    return day.add(days=amount)


def _subtract_spans(day: dt.date, retain: Retain) -> dt.date:
    out = pendulum.Date(day.year, day.month, day.day)
    for span in reversed(retain.spans):
        out = _shift(out, span.unit, -span.amount)
    return dt.date(out.year, out.month, out.day)


def _micros(instant: dt.datetime) -> int:
    return (instant - _EPOCH) // ONE_MICROSECOND


def _instant(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


def first_wall_instant(wall: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """The first instant (UTC) whose wall clock in ``tz`` reads ``wall`` or later.

    For a wall time that does not exist (a DST gap) this is the end of the gap.
    """
    lo = _micros(_moved(wall.replace(tzinfo=UTC), -2 * _ONE_DAY))
    hi = _micros(_moved(wall.replace(tzinfo=UTC), 2 * _ONE_DAY))
    if lo == _micros(_FIRST) and _wall_reached(_FIRST, wall, tz):
        return _calendar_start(wall, tz)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall_reached(_instant(mid), wall, tz):
            hi = mid
        else:
            lo = mid
    return _instant(hi)


def _wall_reached(instant: dt.datetime, wall: dt.datetime, tz: dt.tzinfo) -> bool:
    """Whether the wall clock in ``tz`` reads ``wall`` or later at ``instant``; one before
    year 1 or after 9999 is earlier, respectively later, than every wall clock."""
    try:
        return as_local_naive(instant, tz) >= wall
    except OverflowError:
        return instant.year > 1
