"""``--as-of`` and ``--since``: ISO-8601 instants inside the calendar, or one usage error."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.errors import UsageError
from retention.instants import EARLIEST, LATEST, parse_instant


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-02-28T12:00:00+01:00", dt.datetime(2026, 2, 28, 11, tzinfo=dt.UTC)),
    ("2026-02-28 12:00", dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC)),
    ("2026-02-28", dt.datetime(2026, 2, 28, tzinfo=dt.UTC)),
    ("0001-01-03T00:00:00Z", EARLIEST),
    ("9999-12-29T23:59:59.999999+00:00", LATEST),
])
def test_an_instant_is_read_as_utc(text: str, expected: dt.datetime) -> None:
    assert parse_instant(text) == expected


@pytest.mark.parametrize("text", [
    "0001-01-01T00:00:00Z", "0001-01-02T23:59:59.999999Z", "9999-12-30T00:00:00Z",
    "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+01:00", "9999-12-31",
])
def test_an_instant_outside_the_calendar_is_a_usage_error_naming_the_option(text: str) -> None:
    """Near year 1 and year 9999 the local dates and the calendar's searches would leave
    the years Python counts (this used to crash with OverflowError)."""
    with pytest.raises(UsageError) as caught:
        parse_instant(text, "--since")
    assert str(caught.value).startswith(f"--since {text} is outside the calendar")


@given(st.datetimes(timezones=st.sampled_from([
    None, dt.UTC, dt.timezone(dt.timedelta(hours=-12)), dt.timezone(dt.timedelta(hours=14)),
    dt.timezone(dt.timedelta(hours=5, minutes=45))])))
def test_any_iso_instant_is_read_or_refused_as_usage(value: dt.datetime) -> None:
    """Whatever instant is written, the result is an instant in the calendar or a
    UsageError; never another exception."""
    try:
        parsed = parse_instant(value.isoformat())
    except UsageError:
        return
    assert EARLIEST <= parsed <= LATEST
    assert parsed == (value if value.tzinfo else value.replace(tzinfo=dt.UTC))
