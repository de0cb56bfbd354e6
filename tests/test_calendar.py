"""Due instants and cutoffs (retention/calendar.py) against an independent forward oracle.

The oracle below uses only the standard library (zoneinfo, datetime) and a
hand-written month addition with end-of-month clamping; it never calls
``retention.calendar``. It implements SPEC §2 directly: take the local date of
the event, add the calendar spans left to right, and the record is due from
the first instant of the following local day (EU Regulation 1182/71).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache, lru_cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from retention import calendar
from retention.period import Retain
from retention.policy.phrase import parse

UTC = dt.UTC
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
AMS = calendar.zone("Europe/Amsterdam")

ZONES = [
    "Europe/Amsterdam",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST
    "Asia/Beirut",  # DST ends at midnight: 00:00 -> 23:00 the day before
    "America/Havana",  # DST starts at midnight: the day begins at 01:00
    "America/Santiago",  # both changes at midnight
    "Pacific/Apia",  # skipped 2011-12-30 entirely
    "Pacific/Kiritimati",  # UTC+14, skipped 1994-12-31
    "Africa/Casablanca",  # negative DST during Ramadan
    "UTC",
]
# Not here: zones whose clocks once went back across midnight (America/St_Johns before 2012):
# the wall-clock date goes backwards there, so calendar.local_date keeps the latest date the
# clock already showed and a plain-zoneinfo oracle disagrees by design; the properties for
# them are at the end of this file.

LOW = dt.datetime(1990, 1, 1, tzinfo=UTC)
HIGH = dt.datetime(2060, 1, 1, tzinfo=UTC)

PROPERTY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALLER = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- oracle


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (dt.date(year, month + 1, 1) - dt.date(year, month, 1)).days


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, min(day.day, _days_in_month(year, month)))


def oracle_add(day: dt.date, spans: tuple[tuple[int, str], ...]) -> dt.date:
    """``day`` plus ``spans`` left to right, months and years clamped at month ends."""
    for amount, unit in spans:
        if unit == "year":
            day = _add_months(day, 12 * amount)
        elif unit == "month":
            day = _add_months(day, amount)
        elif unit == "week":
            day += dt.timedelta(days=7 * amount)
        else:
            assert unit == "day"
            day += dt.timedelta(days=amount)
    return day


def oracle_local_date(instant: dt.datetime, zi: ZoneInfo) -> dt.date:
    return instant.astimezone(zi).date()


@lru_cache(maxsize=200_000)
def oracle_first_instant(day: dt.date, name: str) -> dt.datetime:
    """The first instant whose local date in ``name`` is ``day`` or later.

    Local midnight read with either fold; when midnight falls in a gap that
    starts at midnight, the pre-transition reading is the transition instant.
    Checks itself: the microsecond before must lie on an earlier local date.
    """
    zi = ZoneInfo(name)
    candidates = [
        dt.datetime.combine(day, dt.time(0), tzinfo=zi).replace(fold=fold).astimezone(UTC)
        for fold in (0, 1)
    ]
    found = min(c for c in candidates if oracle_local_date(c, zi) >= day)
    assert oracle_local_date(found - US, zi) < day, "oracle cannot handle this day"
    return found


@dataclass(frozen=True)
class Case:
    """A retain phrase and, independently, what it means."""

    text: str
    kind: str  # "calendar", "hours" or "until"
    spans: tuple[tuple[int, str], ...] = ()

    @property
    def retain(self) -> Retain:
        return parse(self.text)


def oracle_due(event: dt.datetime, case: Case, name: str) -> dt.datetime:
    """The due instant per SPEC §2, computed without retention.calendar."""
    event = event.astimezone(UTC)
    if case.kind == "until":
        return event
    if case.kind == "hours":
        return event + dt.timedelta(hours=sum(a for a, _ in case.spans))
    last_day = oracle_add(oracle_local_date(event, ZoneInfo(name)), case.spans)
    return oracle_first_instant(last_day + DAY, name)


@cache
def transitions(name: str) -> tuple[dt.datetime, ...]:
    """Every UTC-offset change of ``name`` between 1989 and 2061, to the second."""
    zi = ZoneInfo(name)
    found: list[dt.datetime] = []
    t = dt.datetime(1989, 1, 1, tzinfo=UTC)
    before = t.astimezone(zi).utcoffset()
    while t < dt.datetime(2061, 1, 1, tzinfo=UTC):
        nxt = t + DAY
        offset = nxt.astimezone(zi).utcoffset()
        if offset != before:
            lo, hi = t, nxt
            while hi - lo > dt.timedelta(seconds=1):
                mid = (lo + (hi - lo) / 2).replace(microsecond=0)
                if mid.astimezone(zi).utcoffset() == before:
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
        before, t = offset, nxt
    return tuple(found)


# ----------------------------------------------------------------------- strategies

_CAL_UNITS = {"day": 400, "week": 60, "month": 40, "year": 10}


@st.composite
def calendar_span(draw: st.DrawFn) -> tuple[int, str]:
    unit = draw(st.sampled_from(sorted(_CAL_UNITS)))
    return draw(st.integers(0, _CAL_UNITS[unit])), unit


def _spell(amount: int, unit: str, plural: bool) -> str:
    return f"{amount} {unit}{'s' if plural else ''}"


@st.composite
def span_list_text(draw: st.DrawFn, spans: list[tuple[int, str]]) -> str:
    parts = [_spell(a, u, draw(st.booleans()) if a == 1 else a != 1) for a, u in spans]
    text = parts[0]
    for part in parts[1:]:
        text += draw(st.sampled_from([" and ", ", ", " , "])) + part
    return text


@st.composite
def calendar_cases(draw: st.DrawFn) -> Case:
    segments = draw(
        st.lists(st.lists(calendar_span(), min_size=1, max_size=3), min_size=1, max_size=3)
    )
    texts = [draw(span_list_text(seg)) for seg in segments]
    text = f"{texts[0]} after completion" + "".join(f" plus {t}" for t in texts[1:])
    return Case(text, "calendar", tuple(span for seg in segments for span in seg))


@st.composite
def hour_cases(draw: st.DrawFn) -> Case:
    segments = draw(
        st.lists(st.lists(st.integers(0, 200), min_size=1, max_size=2), min_size=1, max_size=2)
    )
    texts = [draw(span_list_text([(a, "hour") for a in seg])) for seg in segments]
    text = f"{texts[0]} after visited_at" + "".join(f" plus {t}" for t in texts[1:])
    return Case(text, "hours", tuple((a, "hour") for seg in segments for a in seg))


cases = st.one_of(
    calendar_cases(),
    calendar_cases(),
    calendar_cases(),
    hour_cases(),
    st.just(Case("until unsubscribed", "until")),
)
zones = st.sampled_from(ZONES)
micros = st.integers(0, 999_999)


def _between(lo: dt.datetime, hi: dt.datetime) -> st.SearchStrategy[dt.datetime]:
    span = (hi - lo) // US
    return st.integers(0, span - 1).map(lambda n: lo + n * US)


any_instant = _between(LOW, HIGH)
any_date = st.dates(dt.date(1990, 1, 2), dt.date(2059, 12, 30))


@st.composite
def month_end_date(draw: st.DrawFn) -> dt.date:
    year, month = draw(st.integers(1990, 2059)), draw(st.integers(1, 12))
    return dt.date(year, month, min(draw(st.integers(28, 31)), _days_in_month(year, month)))


feb_29 = st.sampled_from(range(1992, 2060, 4)).map(lambda y: dt.date(y, 2, 29))
special_dates = st.one_of(any_date, month_end_date(), feb_29)


@st.composite
def instant_on(draw: st.DrawFn, day: dt.date, name: str) -> dt.datetime:
    """A uniformly chosen instant whose local date is ``day`` (or its first instant)."""
    start = oracle_first_instant(day, name)
    end = oracle_first_instant(day + DAY, name)
    if end <= start:  # a skipped day has no instants of its own
        return start
    return draw(_between(start, end))


@st.composite
def instants(draw: st.DrawFn, name: str) -> dt.datetime:
    """Instants where calendars go wrong: midnights +-1us, month ends, Feb 29, DST changes."""
    how = draw(st.sampled_from(["any", "midnight", "day", "transition"]))
    if how == "any":
        return draw(any_instant)
    if how == "midnight":
        start = oracle_first_instant(draw(special_dates), name)
        return start + draw(st.sampled_from([-US, dt.timedelta(0), US]))
    if how == "day":
        return draw(instant_on(draw(special_dates), name))
    known = transitions(name)
    if not known:
        return draw(any_instant)
    at = draw(st.sampled_from(known))
    delta = draw(
        st.one_of(
            st.sampled_from([-US, dt.timedelta(0), US]),
            st.integers(-3 * 3600 * 10**6, 3 * 3600 * 10**6).map(lambda n: n * US),
        )
    )
    return at + delta


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Case, str, dt.datetime, list[dt.datetime]]:
    """A phrase, a zone, an event, and several ``now``: at the due instant, 1 us before, near."""
    case, name = draw(cases), draw(zones)
    event = draw(instants(name))
    due = oracle_due(event, case, name)
    near = draw(st.integers(-2 * 86400 * 10**6, 2 * 86400 * 10**6).map(lambda n: n * US))
    return case, name, event, [due - US, due, due + US, due + near, draw(instants(name))]


# ------------------------------------------------------------------------ properties


@PROPERTY
@given(scenarios())
def test_an_event_is_at_or_before_the_cutoff_exactly_when_it_is_due(
    scenario: tuple[Case, str, dt.datetime, list[dt.datetime]],
) -> None:
    """``event <= cutoff(now)`` holds exactly when ``due_at(event) <= now``."""
    case, name, event, nows = scenario
    tz, retain = calendar.zone(name), case.retain
    due = calendar.due_at(event, retain, tz)
    for now in nows:
        assert (event <= calendar.cutoff(now, retain, tz)) == (due <= now), now


@PROPERTY
@given(cases, zones, st.data())
def test_due_at_agrees_with_the_forward_oracle(case: Case, name: str, data: st.DataObject) -> None:
    """due_at gives the same instant as the independent forward oracle."""
    event = data.draw(instants(name), label="event")
    assert calendar.due_at(event, case.retain, calendar.zone(name)) == oracle_due(event, case, name)


@SMALLER
@given(cases, zones, st.data())
def test_the_oracle_due_instant_is_due_and_one_microsecond_earlier_is_not(
    case: Case, name: str, data: st.DataObject
) -> None:
    """At the oracle's due instant the event is at or before the cutoff; 1 us before, it is not."""
    event = data.draw(instants(name), label="event")
    due = oracle_due(event, case, name)
    tz = calendar.zone(name)
    assert event <= calendar.cutoff(due, case.retain, tz)
    assert event > calendar.cutoff(due - US, case.retain, tz)


@SMALLER
@given(cases, zones, st.data())
def test_the_cutoff_is_due_and_one_microsecond_later_is_not(
    case: Case, name: str, data: st.DataObject
) -> None:
    """due_at(cutoff(now)) <= now < due_at(cutoff(now) + 1 us): the cutoff is exact."""
    now = data.draw(instants(name), label="now")
    tz, retain = calendar.zone(name), case.retain
    cut = calendar.cutoff(now, retain, tz)
    assert calendar.due_at(cut, retain, tz) <= now
    assert calendar.due_at(cut + US, retain, tz) > now


@SMALLER
@given(cases, zones, st.data())
def test_due_at_never_decreases_as_the_event_instant_grows(
    case: Case, name: str, data: st.DataObject
) -> None:
    """due_at is monotone non-decreasing in the event instant."""
    first = data.draw(instants(name), label="first")
    later = first + data.draw(
        st.one_of(
            st.just(US),
            st.integers(0, 3 * 3600 * 10**6).map(lambda n: n * US),
            st.integers(0, 400 * 86400 * 10**6).map(lambda n: n * US),
        ),
        label="delta",
    )
    tz, retain = calendar.zone(name), case.retain
    assert calendar.due_at(first, retain, tz) <= calendar.due_at(later, retain, tz)


@SMALLER
@given(cases, zones, st.data())
def test_the_cutoff_never_decreases_as_now_grows(
    case: Case, name: str, data: st.DataObject
) -> None:
    """cutoff is monotone non-decreasing in ``now``."""
    first = data.draw(instants(name), label="first")
    later = first + data.draw(
        st.one_of(
            st.just(US),
            st.integers(0, 3 * 3600 * 10**6).map(lambda n: n * US),
            st.integers(0, 400 * 86400 * 10**6).map(lambda n: n * US),
        ),
        label="delta",
    )
    tz, retain = calendar.zone(name), case.retain
    assert calendar.cutoff(first, retain, tz) <= calendar.cutoff(later, retain, tz)


@SMALLER
@given(calendar_cases(), zones, special_dates, st.data())
@example(
    Case("1 day after completion", "calendar", ((1, "day"),)),
    "Pacific/Apia",
    dt.date(2011, 12, 29),
    None,
).via("Apia skipped 2011-12-30")
def test_a_date_event_is_at_or_before_the_cutoff_date_exactly_when_it_is_due(
    case: Case, name: str, day: dt.date, data: st.DataObject | None
) -> None:
    """For DATE columns: ``day <= cutoff_date(cutoff(now))`` exactly when due_at_date <= now."""
    tz, retain = calendar.zone(name), case.retain
    due = calendar.due_at_date(day, retain, tz)
    offsets = [-US, dt.timedelta(0), US, DAY]
    for now in [due + d for d in offsets] + ([data.draw(instants(name))] if data else []):
        assert (day <= calendar.cutoff_date(calendar.cutoff(now, retain, tz), tz)) == (due <= now)


@SMALLER
@given(calendar_cases(), zones, special_dates)
def test_a_date_event_is_due_from_the_day_after_its_date_plus_the_spans(
    case: Case, name: str, day: dt.date
) -> None:
    """due_at_date counts from the stored date itself, as the oracle does."""
    assume(oracle_first_instant(day + DAY, name) > oracle_first_instant(day, name))  # existed
    due = calendar.due_at_date(day, case.retain, calendar.zone(name))
    assert due == oracle_first_instant(oracle_add(day, case.spans) + DAY, name)


def test_the_oracle_finds_the_dst_changes_it_is_meant_to_probe() -> None:
    """The transition table is not empty for zones with DST (guards the strategies)."""
    assert len(transitions("Europe/Amsterdam")) > 100
    assert dt.datetime(2011, 12, 30, 10, tzinfo=UTC) in transitions("Pacific/Apia")
    assert transitions("UTC") == ()


# -------------------------------------------------------------- examples from SPEC §2

ORDERS = parse("6 months after completion plus 7 years")
MARCH_1_2026_AMS = dt.datetime(2026, 2, 28, 23, 0, tzinfo=UTC)  # 00:00 CET


@pytest.mark.parametrize("wall", [dt.time(0, 0), dt.time(12, 0), dt.time(23, 59, 59, 999_999)])
def test_an_order_completed_on_aug_31_is_due_from_march_1_local_midnight(wall: dt.time) -> None:
    """Aug 31 + 6 months is the last day of February; +7 years; due from Mar 1 00:00."""
    event = dt.datetime.combine(dt.date(2018, 8, 31), wall, tzinfo=ZoneInfo("Europe/Amsterdam"))
    due = calendar.due_at(event, ORDERS, AMS)
    assert due == MARCH_1_2026_AMS
    assert due.astimezone(ZoneInfo("Europe/Amsterdam")) == dt.datetime(
        2026, 3, 1, tzinfo=ZoneInfo("Europe/Amsterdam")
    )


@pytest.mark.parametrize("day", [28, 29, 30])
def test_an_order_completed_on_aug_28_to_30_is_due_from_the_same_instant(day: int) -> None:
    """Aug 28, 29 and 30 all land on Feb 28, like Aug 31: due from 2026-03-01 00:00 local."""
    event = dt.datetime(2018, 8, day, 15, 30, tzinfo=ZoneInfo("Europe/Amsterdam"))
    assert calendar.due_at(event, ORDERS, AMS) == MARCH_1_2026_AMS


def test_an_order_completed_on_aug_27_is_due_one_day_earlier() -> None:
    """Aug 27 + 6 months + 7 years is Feb 27 2026: due from Feb 28 00:00 local."""
    event = dt.datetime(2018, 8, 27, 23, 59, tzinfo=ZoneInfo("Europe/Amsterdam"))
    assert calendar.due_at(event, ORDERS, AMS) == dt.datetime(2026, 2, 27, 23, 0, tzinfo=UTC)


def test_the_cutoff_at_noon_on_feb_28_2026_is_the_end_of_aug_27_2018_in_amsterdam() -> None:
    """As of 2026-02-28T12:00Z the latest due completion is 2018-08-27T21:59:59.999999Z."""
    cut = calendar.cutoff(dt.datetime(2026, 2, 28, 12, tzinfo=UTC), ORDERS, AMS)
    assert cut == dt.datetime(2018, 8, 27, 21, 59, 59, 999_999, tzinfo=UTC)
    assert cut.isoformat() == "2018-08-27T21:59:59.999999+00:00"


def test_the_cutoff_date_for_date_columns_is_the_local_date_of_the_cutoff() -> None:
    """A DATE column compares against the local date of the cutoff instant."""
    cut = calendar.cutoff(dt.datetime(2026, 2, 28, 12, tzinfo=UTC), ORDERS, AMS)
    assert calendar.cutoff_date(cut, AMS) == dt.date(2018, 8, 27)


def test_a_date_event_counts_from_its_own_date() -> None:
    """An order dated 2018-08-31 (a DATE column) is due from 2026-03-01 00:00 local."""
    assert calendar.due_at_date(dt.date(2018, 8, 31), ORDERS, AMS) == MARCH_1_2026_AMS


def test_feb_29_plus_one_year_is_feb_28() -> None:
    """Adding a year to a leap day clamps to Feb 28."""
    assert calendar.add_spans(dt.date(2024, 2, 29), parse("1 year after x")) == dt.date(2025, 2, 28)


def test_a_leap_day_event_kept_one_year_is_due_from_march_1() -> None:
    """The period of Feb 29 + 1 year ends with Feb 28, so it is due from Mar 1 00:00 local."""
    event = dt.datetime(2024, 2, 29, 10, tzinfo=UTC)
    assert calendar.due_at(event, parse("1 year after x"), AMS) == dt.datetime(
        2025, 2, 28, 23, 0, tzinfo=UTC
    )


def test_aug_31_plus_six_months_is_feb_29_in_a_leap_year() -> None:
    """Month arithmetic clamps to the last day of the month, which is Feb 29 in 2024."""
    assert calendar.add_spans(dt.date(2023, 8, 31), parse("6 months after x")) == dt.date(
        2024, 2, 29
    )


def test_spans_are_added_left_to_right() -> None:
    """Jan 31 + 1 month + 1 day is Mar 1 (Feb 28 first); + 1 day + 1 month is Mar 1 too."""
    jan31 = dt.date(2023, 1, 31)
    assert calendar.add_spans(jan31, parse("1 month after x plus 1 day")) == dt.date(2023, 3, 1)
    assert calendar.add_spans(jan31, parse("1 day after x plus 1 month")) == dt.date(2023, 3, 1)
    assert calendar.add_spans(dt.date(2023, 1, 30), parse("1 month after x plus 1 day")) == (
        dt.date(2023, 3, 1)
    )
    assert calendar.add_spans(dt.date(2023, 1, 30), parse("1 day after x plus 1 month")) == (
        dt.date(2023, 2, 28)
    )


def test_hour_spans_are_absolute_time_across_a_dst_change() -> None:
    """24 hours after 2026-03-28T12:00 Amsterdam is 2026-03-29T13:00 local (clocks went forward)."""
    ams = ZoneInfo("Europe/Amsterdam")
    event = dt.datetime(2026, 3, 28, 12, 0, tzinfo=ams)
    due = calendar.due_at(event, parse("24 hours after visited_at"), AMS)
    assert due.astimezone(ams) == dt.datetime(2026, 3, 29, 13, 0, tzinfo=ams)
    assert due - event == dt.timedelta(hours=24)


def test_until_is_due_at_the_event_instant() -> None:
    """'until EVENT' is due the moment the event happens, and the cutoff is now itself."""
    until = parse("until unsubscribed")
    event = dt.datetime(2024, 5, 1, 8, 30, 0, 123_456, tzinfo=UTC)
    assert calendar.due_at(event, until, AMS) == event
    assert calendar.cutoff(event, until, AMS) == event


def test_a_naive_event_is_read_as_utc() -> None:
    """A naive timestamp is an instant in UTC (22:30Z on Aug 31 is Sep 1 in Amsterdam)."""
    naive = dt.datetime(2018, 8, 31, 22, 30)  # 2018-09-01 00:30 in Amsterdam: + 6m + 7y = Mar 1
    assert calendar.due_at(naive, ORDERS, AMS) == calendar.due_at(
        naive.replace(tzinfo=UTC), ORDERS, AMS
    )
    assert calendar.due_at(naive, ORDERS, AMS) == dt.datetime(2026, 3, 1, 23, 0, tzinfo=UTC)


def test_a_day_that_begins_at_one_oclock_is_due_from_one_oclock() -> None:
    """In Havana 2024-03-10 starts at 01:00 CDT (05:00Z): midnight does not exist."""
    havana = calendar.zone("America/Havana")
    event = dt.datetime(2024, 3, 8, 12, tzinfo=ZoneInfo("America/Havana"))
    assert calendar.due_at(event, parse("1 day after x"), havana) == dt.datetime(
        2024, 3, 10, 5, 0, tzinfo=UTC
    )


def test_a_day_after_a_repeated_hour_at_midnight_starts_after_the_repeat() -> None:
    """In Beirut 23:00-24:00 on 2024-10-26 happens twice; Oct 27 starts at 22:00Z."""
    beirut = calendar.zone("Asia/Beirut")
    event = dt.datetime(2024, 10, 25, 12, tzinfo=ZoneInfo("Asia/Beirut"))
    assert calendar.due_at(event, parse("1 day after x"), beirut) == dt.datetime(
        2024, 10, 26, 22, 0, tzinfo=UTC
    )


def test_a_period_ending_on_a_skipped_day_is_due_from_the_next_day_that_exists() -> None:
    """Apia skipped 2011-12-30: a period ending Dec 29 or Dec 30 is due from Dec 31 00:00."""
    apia = calendar.zone("Pacific/Apia")
    event = dt.datetime(2011, 12, 28, 12, tzinfo=ZoneInfo("Pacific/Apia"))
    dec31 = dt.datetime(2011, 12, 30, 10, 0, tzinfo=UTC)  # 2011-12-31 00:00 +14
    assert calendar.due_at(event, parse("1 day after x"), apia) == dec31
    assert calendar.due_at(event, parse("2 days after x"), apia) == dec31


def test_half_hour_dst_does_not_move_the_start_of_the_day() -> None:
    """Lord Howe changes by 30 minutes at 02:00; days still start at local midnight."""
    lh = ZoneInfo("Australia/Lord_Howe")
    event = dt.datetime(2024, 10, 5, 12, tzinfo=lh)  # DST starts 2024-10-06 02:00
    due = calendar.due_at(event, parse("1 day after x"), calendar.zone("Australia/Lord_Howe"))
    assert due.astimezone(lh) == dt.datetime(2024, 10, 7, 0, 0, tzinfo=lh)
    assert due == dt.datetime(2024, 10, 6, 13, 0, tzinfo=UTC)


def test_an_event_in_a_minute_the_clock_then_repeats_is_not_selected_before_it_is_due() -> None:
    """St John's, 2010-11-07 00:00:30 NDT (then back to Sat 23:01): the property still holds."""
    st_johns = calendar.zone("America/St_Johns")
    retain = parse("1 day after x")
    event = dt.datetime(2010, 11, 7, 2, 30, 30, tzinfo=UTC)  # Sun 00:00:30 -02:30
    now = dt.datetime(2010, 11, 8, 3, 30, tzinfo=UTC)  # Mon 00:00 -03:30
    assert (event <= calendar.cutoff(now, retain, st_johns)) == (
        calendar.due_at(event, retain, st_johns) <= now
    )


_ST_JOHNS_CHANGE = dt.datetime(2010, 11, 7, 2, 31, tzinfo=UTC)  # Sun 00:01 NDT -> Sat 23:01


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=-3 * 3600 * 10**6, max_value=3 * 3600 * 10**6),
    st.integers(min_value=0, max_value=3 * 86400 * 10**6),
    st.sampled_from(["1 day after x", "2 days after x", "1 month after x", "until x",
                     "3 hours after x"]),
)
def test_where_the_clock_went_back_across_midnight_cutoffs_stay_exact(
        event_offset: int, wait: int, phrase: str) -> None:
    """St. John's 2010: due_at never decreases and event <= cutoff(now) iff due by now."""
    st_johns = calendar.zone("America/St_Johns")
    retain = parse(phrase)
    event = _ST_JOHNS_CHANGE + dt.timedelta(microseconds=event_offset)
    later = event + dt.timedelta(minutes=1)
    assert calendar.due_at(event, retain, st_johns) <= calendar.due_at(later, retain, st_johns)
    now = event + dt.timedelta(microseconds=wait)
    for moment in (now, calendar.due_at(event, retain, st_johns),
                   calendar.due_at(event, retain, st_johns) - dt.timedelta(microseconds=1)):
        assert (event <= calendar.cutoff(moment, retain, st_johns)) == (
            calendar.due_at(event, retain, st_johns) <= moment)


@given(data=st.data(), name=zones)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_naive_local_bound_selects_exactly_the_walls_read_at_or_before_the_cutoff(
        data: st.DataObject, name: str) -> None:
    """v <= naive_local_bound(cut) exactly when from_local_naive(v) <= cut, also when the
    cutoff or the wall time falls in a repeated or skipped hour."""
    tz = calendar.zone(name)
    cut = data.draw(instants(name))
    offset = data.draw(st.integers(-4 * 3600 * 10**6, 4 * 3600 * 10**6)) * US
    wall = (calendar.as_local_naive(cut, tz) + offset).replace(tzinfo=None)
    read = calendar.from_local_naive(wall, tz)
    assert (wall <= calendar.naive_local_bound(cut, tz)) == (read <= cut)


# ------------------------------------------------------------ the first days of the calendar

EARLY_ZONES = ["Pacific/Kiritimati", "Asia/Kolkata", "Etc/GMT+12", "Etc/GMT-14", "UTC"]
FIRST_EVENT = dt.datetime(1, 1, 2, tzinfo=UTC)  # the first event instant retention reads


@SMALLER
@given(cases, st.sampled_from(EARLY_ZONES), st.integers(0, 40 * 86400 * 10**6),
       st.integers(0, 80 * 86400 * 10**6))
def test_in_the_first_days_of_the_calendar_the_cutoff_is_still_exact(
        case: Case, name: str, event_us: int, now_us: int) -> None:
    """Where a zone's local time in year 1 lies before the calendar (a zone behind UTC on
    January 1, year 1; their local mean time offsets), ``event <= cutoff(now)`` still holds
    exactly when ``due_at(event) <= now``; a cutoff before year 1 means nothing is due.
    (A report as of 0001-01-05 in Pacific/Kiritimati once counted 0 of 2 due events.)"""
    tz, retain = calendar.zone(name), case.retain
    event = FIRST_EVENT + event_us * US
    now = dt.datetime(1, 1, 3, tzinfo=UTC) + now_us * US
    due = calendar.due_at(event, retain, tz)
    try:
        cut = calendar.cutoff(now, retain, tz)
    except (OverflowError, ValueError):  # the real cutoff lies before year 1
        assert due > now
        return
    assert (event <= cut) == (due <= now)
    assert calendar.local_date(calendar.first_instant(calendar.local_date(event, tz), tz),
                               tz) == calendar.local_date(event, tz)


@pytest.mark.parametrize(("name", "starts"), [
    ("UTC", dt.datetime(1, 1, 1, tzinfo=UTC)),  # the first instant datetime holds
    ("Etc/GMT+12", dt.datetime(1, 1, 1, 12, tzinfo=UTC)),
    ("Pacific/Kiritimati", dt.datetime(1, 1, 1, 10, 29, 20, tzinfo=UTC)),  # LMT -10:29:20
    ("Europe/Berlin", None),  # LMT +0:53:28: the day began before the calendar does
    ("Etc/GMT-14", None),
])
def test_the_first_day_of_the_calendar_starts_exactly_or_not_at_all(
        name: str, starts: dt.datetime | None) -> None:
    """Where 0001-01-01 begins at or after the first instant datetime holds, that is its
    first instant, to the microsecond (not one later); where it began before, no instant
    is its first: OverflowError, as for any date outside the calendar. The same for the
    first instant whose wall clock reads 0001-01-01T00:00 or later."""
    tz, day = calendar.zone(name), dt.date(1, 1, 1)
    wall = dt.datetime.combine(day, dt.time(0))
    if starts is None:
        with pytest.raises(OverflowError):
            calendar.first_instant(day, tz)
        with pytest.raises(OverflowError):
            calendar.first_wall_instant(wall, tz)
        return
    assert calendar.first_instant(day, tz) == starts
    assert calendar.first_wall_instant(wall, tz) == starts
    assert calendar.local_date(starts, tz) == day
