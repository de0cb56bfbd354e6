"""Reading instants from the command line (``--as-of``, ``--since``)."""

from __future__ import annotations

import datetime as dt

from retention.errors import UsageError


def parse_instant(text: str, option: str = "--as-of") -> dt.datetime:
    """An ISO-8601 instant; without an offset it is read as UTC. Raises :class:`UsageError`."""
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
    return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
