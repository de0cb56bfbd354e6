"""Reading instants from the command line (``--as-of``, ``--since``).

An instant must lie inside the calendar that Python and the databases count in
(years 1 to 9999) with two days to spare at either end: a local date is up to
14 hours from UTC, and the calendar searches a day on either side of it. A
command reports an instant outside that range as bad input, before it opens
anything.
"""

from __future__ import annotations

import datetime as dt

from retention.errors import UsageError

EARLIEST = dt.datetime(1, 1, 3, tzinfo=dt.UTC)  # first instant a command accepts
LATEST = dt.datetime(9999, 12, 29, 23, 59, 59, 999999, tzinfo=dt.UTC)  # last one


def parse_instant(text: str, option: str = "--as-of", latest: dt.datetime = LATEST,
                  who: str = "this tool", why: str = "") -> dt.datetime:
    """An ISO-8601 instant; without an offset it is read as UTC. Raises :class:`UsageError`.

    A command that counts ahead of its instant accepts instants up to ``latest`` and
    says so: ``who`` counts in the calendar to ``latest`` because ``why``.
    """
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            value = dt.datetime.combine(dt.date.fromisoformat(text.strip()), dt.time(0))
        except ValueError:
            raise UsageError(f"{option}: {text!r} is not an ISO-8601 instant "
                             "(like 2026-02-28T12:00:00+01:00)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        value = value.astimezone(dt.UTC)
    except OverflowError:  # the offset moves it past year 1 or 9999
        raise UsageError(outside(option, text, latest, who, why)) from None
    return in_calendar(value, option, text, latest, who, why)


def in_calendar(instant: dt.datetime, option: str, text: str | None = None,
                latest: dt.datetime = LATEST, who: str = "this tool", why: str = ""
                ) -> dt.datetime:
    """``instant`` if a command can count with it, else a :class:`UsageError`."""
    if not EARLIEST <= instant <= latest:
        raise UsageError(outside(option, text or instant.isoformat(), latest, who, why))
    return instant


def outside(option: str, text: str, latest: dt.datetime = LATEST, who: str = "this tool",
            why: str = "") -> str:
    return (f"{option} {text} is outside the calendar {who} counts in "
            f"({EARLIEST.isoformat()} to {latest.isoformat()}{'; ' + why if why else ''})")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
