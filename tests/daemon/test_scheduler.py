"""The daemon's triggers for schedule phrases, without a database.

The properties compare :class:`retention.daemon.scheduler.WallClockTrigger` with a brute-force
oracle that walks the wall clock minute by minute (using :mod:`zoneinfo` directly, not
the trigger's helpers): a wall-clock slot fires once, at its first occurrence; a slot
that does not exist (a DST gap) fires when the gap ends; nothing else fires.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.daemon import scheduler
from retention.errors import PhraseError
from retention.policy.schedule import Schedule, parse
from tests.support import utc

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
ZONES = ["Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
         "UTC"]
WINDOW = dt.timedelta(days=3)


def fires(trig: object, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Fire times in ``[start, end]``, asked the way APScheduler asks after each run."""
    out: list[dt.datetime] = []
    fire = trig.get_next_fire_time(None, start)  # type: ignore[attr-defined]
    while fire is not None and fire <= end:
        out.append(fire)
        assert len(out) < 20_000, "runaway trigger"
        fire = trig.get_next_fire_time(fire, fire)  # type: ignore[attr-defined]
    return out


# ---------------------------------------------------------------------- cron fields


# What the trigger (APScheduler 3's CronTrigger) refuses, parse must refuse: loading a policy
# checks schedules without the daemon, and a phrase that loads must give a trigger.
_EXPRESSIONS = [
    "*", "*/1", "*/2", "*/6", "*/7", "*/11", "*/12", "*/23", "*/24", "*/30", "*/31", "*/59",
    "*/60", "*/0", "*/", "0", "00", "1", "5", "6", "7", "11", "12", "13", "23", "24", "31",
    "32", "59", "60", "0-0", "0-0/5", "0-0/70", "1-1", "1-1/1", "0-6", "0-7", "1-12", "1-31",
    "0-59", "5-1", "2-4", "2-4/2", "2-4/3", "0-59/59", "0-59/60", "1-12/11", "1-12/12", "5/1",
    "5/10", "5/55", "0/6", "0/7", "1/0", "1-2-3", "jan", "JAN", "Jan-Mar", "dec", "dec-jan",
    "jan-", "jan/2", "jan-feb/2", "jan-13", "janx", "jan-febx", "mon", "sun", "SUN", "Mon-Fri",
    "fri-mon", "mon5", "monday", "sun-sun", "last", "Last", "lastday", "last-1", "L", "?", "",
    "first", "x", "-", "-1", "1-", "*-5", "**", "*/*", "61", "noday", "mon-funday", "sun-mon",
    "1-7", "0-10/0", "50/10", "1-2/1", "0-0/60",
]


def _accepted(make: object) -> bool:
    try:
        make()  # type: ignore[operator]
    except PhraseError:
        return False
    return True


def _agree(field: int, expr: str) -> None:
    words = ["*"] * 5
    words[field] = expr
    phrase = " ".join(words)
    by_parse = _accepted(lambda: parse(phrase))
    by_trigger = _accepted(lambda: scheduler.trigger(Schedule(phrase, *words), "UTC"))
    assert by_parse == by_trigger, (phrase, by_parse, by_trigger)


def test_parse_accepts_exactly_the_cron_fields_the_trigger_accepts() -> None:
    """Every listed expression in every field: parse refuses it iff APScheduler refuses it."""
    for field, expr in itertools.product(range(5), _EXPRESSIONS):
        _agree(field, expr)
    for field, a, b in itertools.product(range(5), _EXPRESSIONS[:40], _EXPRESSIONS[40:80]):
        _agree(field, f"{a},{b}")


@settings(max_examples=1500, deadline=None)
@given(field=st.integers(0, 4), parts=st.lists(st.one_of(
    st.sampled_from(_EXPRESSIONS),
    st.integers(0, 70).map(str),
    st.builds("{}-{}".format, st.integers(0, 70), st.integers(0, 70)),
    st.builds("{}-{}/{}".format, st.integers(0, 70), st.integers(0, 70), st.integers(0, 70)),
    st.builds("{}/{}".format, st.integers(0, 70), st.integers(0, 70)),
    st.builds("*/{}".format, st.integers(0, 70)),
    st.text(alphabet="0123456789adefjlmnorstuvyADJLMS*/-?", min_size=1, max_size=8),
), min_size=1, max_size=3))
def test_parse_and_the_trigger_agree_on_generated_cron_fields(field: int, parts: list[str]
                                                             ) -> None:
    """Generated values, ranges, steps, names and lists: parse refuses iff the trigger does."""
    _agree(field, ",".join(parts))


# ------------------------------------------------------------- day-of-week as crontab reads it

A_SUNDAY = dt.date(2023, 1, 1)


def _fired_weekdays(expr: str, start: dt.datetime) -> list[int]:
    """The ISO weekdays of the fire times of '0 3 * * EXPR' in the two weeks from ``start``."""
    trig = scheduler.trigger(parse(f"0 3 * * {expr}"), "UTC")
    times = fires(trig, start, start + dt.timedelta(days=14) - MINUTE)
    assert all((t.hour, t.minute) == (3, 0) for t in times)
    return [t.isoweekday() for t in times]


def test_day_of_week_0_and_7_are_sunday_and_names_are_unchanged() -> None:
    """'0 3 * * 0' runs on Sundays (APScheduler 3 alone would run it on Mondays)."""
    start = utc(2026, 3, 2)  # a Monday
    assert _fired_weekdays("0", start) == [7, 7]
    assert _fired_weekdays("7", start) == [7, 7]
    assert _fired_weekdays("1-5", start) == [1, 2, 3, 4, 5] * 2
    assert _fired_weekdays("mon-fri", start) == [1, 2, 3, 4, 5] * 2
    assert _fired_weekdays("sun", start) == [7, 7]
    assert _fired_weekdays("sat,0", start) == [6, 7, 6, 7]


@settings(max_examples=300, deadline=None)
@given(first=st.integers(0, 7), length=st.integers(0, 7), step=st.integers(1, 7),
       form=st.sampled_from(["value", "range", "range-step", "value-step", "all-step"]),
       extra=st.one_of(st.none(), st.integers(0, 7)), days=st.integers(0, 3000))
def test_day_of_week_numbers_mean_what_crontab_means(
        first: int, length: int, step: int, form: str, extra: int | None, days: int) -> None:
    """Against a reference: crontab day n is the weekday of A_SUNDAY + n days
    (datetime.isoweekday); a step counts from the range's start, '*' being 0-7."""
    last = min(first + length, 7)
    expr, numbers = {
        "value": (str(first), [first]),
        "range": (f"{first}-{last}", range(first, last + 1)),
        "range-step": (f"{first}-{last}/{step}", range(first, last + 1, step)),
        "value-step": (f"{first}/{step}", range(first, 8, step)),
        "all-step": (f"*/{step}", range(0, 8, step)),
    }[form]
    if extra is not None:
        expr, numbers = f"{expr},{extra}", [*numbers, extra]
    try:
        parse(f"0 3 * * {expr}")
    except PhraseError:  # a step longer than its range, as for every field
        span = {"all-step": 7, "value-step": 7 - first}.get(form, (last or 7) - first)
        assert "step" in form and step > span
        return
    expected = {(A_SUNDAY + dt.timedelta(days=n)).isoweekday() for n in numbers}
    start = utc(2026, 1, 1) + dt.timedelta(days=days)
    fired = _fired_weekdays(expr, start)
    assert set(fired) == expected
    assert len(fired) == 2 * len(expected)


# ---------------------------------------------------------------------- concrete DST days


def test_a_slot_in_the_repeated_autumn_hour_fires_once_at_its_first_occurrence() -> None:
    """'30 2 * * *' in Amsterdam on 2026-10-25 (02:00-03:00 happens twice): one firing."""
    trig = scheduler.trigger(parse("30 2 * * *"), "Europe/Amsterdam")
    found = fires(trig, utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert [f.astimezone(UTC) for f in found] == [utc(2026, 10, 25, 0, 30),
                                                  utc(2026, 10, 26, 1, 30)]
    assert found[0].isoformat() == "2026-10-25T02:30:00+02:00"
    # Asked from inside the second 02:00-03:00 hour, the slot that already passed is not
    # fired again.
    assert trig.get_next_fire_time(None, utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 26, 1, 30)


def test_a_slot_in_the_spring_gap_fires_when_the_gap_ends() -> None:
    """'30 2 * * *' in Amsterdam on 2026-03-29 (02:00-03:00 is skipped) fires at 03:00+02:00."""
    trig = scheduler.trigger(parse("30 2 * * *"), "Europe/Amsterdam")
    found = fires(trig, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    assert [f.isoformat() for f in found] == ["2026-03-29T03:00:00+02:00",
                                              "2026-03-30T02:30:00+02:00"]


def test_slots_in_the_gap_and_at_its_end_fire_once_together() -> None:
    """'*/30 2-3 * * *' on the spring day: 02:00, 02:30 and 03:00 are one instant, once."""
    trig = scheduler.trigger(parse("*/30 2-3 * * *"), "Europe/Amsterdam")
    found = fires(trig, utc(2026, 3, 28, 23), utc(2026, 3, 29, 12))
    assert [f.isoformat() for f in found] == ["2026-03-29T03:00:00+02:00",
                                              "2026-03-29T03:30:00+02:00"]


def test_santiago_midnight_that_does_not_exist_fires_at_one() -> None:
    """Chile springs forward at midnight: 'daily at 00:00' fires at 01:00 that day."""
    trig = scheduler.trigger(parse("daily at 00:00"), "America/Santiago")
    found = fires(trig, utc(2026, 9, 5, 12), utc(2026, 9, 7, 12))
    assert [f.isoformat() for f in found] == ["2026-09-06T01:00:00-03:00",
                                              "2026-09-07T00:00:00-03:00"]


def test_slot_key_names_a_repeated_wall_time_once() -> None:
    """Both instants that read 02:30 on 2026-10-25 in Amsterdam have the same slot key."""
    sched = parse("30 2 * * *")
    first = scheduler.slot_key(sched, utc(2026, 10, 25, 0, 30), "Europe/Amsterdam")
    second = scheduler.slot_key(sched, utc(2026, 10, 25, 1, 30), "Europe/Amsterdam")
    assert first == second == "2026-10-25T02:30:00"
    assert scheduler.slot_key(sched, utc(2026, 10, 26, 1, 30), "Europe/Amsterdam") != first


def test_slot_key_of_an_interval_is_its_instant() -> None:
    """Interval slots are named by their UTC instant, whatever the policy's zone."""
    sched = parse("every 10 seconds")
    at = dt.datetime(2026, 10, 25, 2, 30, tzinfo=ZoneInfo("Europe/Amsterdam"))
    assert scheduler.slot_key(sched, at, "Europe/Amsterdam") == "2026-10-25T00:30:00+00:00"


def test_previous_fire_is_the_latest_slot_within_the_lookback() -> None:
    """previous_fire returns the latest fire time in the lookback window, or None."""
    trig = scheduler.trigger(parse("0 * * * *"), "Europe/Amsterdam")
    now = utc(2026, 5, 4, 12, 34, 56)
    assert scheduler.previous_fire(trig, now, dt.timedelta(hours=3)) == utc(2026, 5, 4, 12)
    assert scheduler.previous_fire(trig, now, dt.timedelta(minutes=40)) == utc(2026, 5, 4, 12)
    assert scheduler.previous_fire(trig, now, dt.timedelta(minutes=30)) is None
    on_slot = utc(2026, 5, 4, 12)
    assert scheduler.previous_fire(trig, on_slot, dt.timedelta(seconds=1)) == on_slot
    daily = scheduler.trigger(parse("daily at 03:00"), "Europe/Amsterdam")
    assert scheduler.previous_fire(daily, now, dt.timedelta(days=2)) == utc(2026, 5, 4, 1)
    every = scheduler.trigger(parse("every 10 seconds"), "Europe/Amsterdam")
    assert scheduler.previous_fire(every, now, dt.timedelta(minutes=5)) == utc(
        2026, 5, 4, 12, 34, 50)


def test_previous_fire_finds_the_gap_slot_and_the_autumn_slot() -> None:
    """Around DST changes previous_fire returns the instant the trigger fired at."""
    trig = scheduler.trigger(parse("30 2 * * *"), "Europe/Amsterdam")
    hour = dt.timedelta(hours=1)
    assert scheduler.previous_fire(trig, utc(2026, 3, 29, 1, 5), hour) == utc(2026, 3, 29, 1)
    # In the second 02:00-03:00 hour the latest slot is still the first 02:30. (Compared in
    # UTC: PEP 495 makes an aware time inside a fold unequal to every other zone's times.)
    found = scheduler.previous_fire(trig, utc(2026, 10, 25, 1, 45), 2 * hour)
    assert found is not None and found.astimezone(UTC) == utc(2026, 10, 25, 0, 30)


def test_interval_slots_are_aligned_to_a_fixed_epoch() -> None:
    """Triggers built at different moments fire at the same instants, multiples of N."""
    first = scheduler.trigger(parse("every 10 seconds"), "Europe/Amsterdam")
    time.sleep(0.013)
    second = scheduler.trigger(parse("every 10 seconds"), "America/New_York")
    now = dt.datetime.now(UTC)
    a = fires(first, now, now + dt.timedelta(minutes=1))
    b = fires(second, now + dt.timedelta(seconds=3), now + dt.timedelta(minutes=1))
    assert a[-len(b):] == b and len(a) in (6, 7)
    for fire in a:
        assert fire.microsecond == 0 and int(fire.timestamp()) % 10 == 0
    quarter = scheduler.trigger(parse("every 15 minutes"), "Asia/Kolkata")
    for fire in fires(quarter, utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 2)):
        assert fire.astimezone(UTC).minute % 15 == 0 and fire.second == 0


# ---------------------------------------------------------------------- properties


@cache
def transitions(zone: str) -> tuple[dt.datetime, ...]:
    """Instants (to the minute) at which ``zone``'s UTC offset changes, 2020-2030."""
    tz = ZoneInfo(zone)
    found = []
    day = utc(2019, 12, 25)
    offset = day.astimezone(tz).utcoffset()
    while day < utc(2031, 1, 5):
        nxt = day + dt.timedelta(days=1)
        if nxt.astimezone(tz).utcoffset() != offset:
            lo, hi = day, nxt
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid == lo:
                    mid = lo + MINUTE
                if mid.astimezone(tz).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
            offset = nxt.astimezone(tz).utcoffset()
        day = nxt
    return tuple(found)


def test_the_zones_under_test_have_transitions() -> None:
    """The oracle's transition finder sees both changes a year (Lord Howe: 30 minutes)."""
    assert len(transitions("Europe/Amsterdam")) == 22
    assert utc(2026, 3, 29, 1) in transitions("Europe/Amsterdam")
    assert utc(2026, 10, 25, 1) in transitions("Europe/Amsterdam")
    assert transitions("UTC") == ()
    assert len(transitions("Australia/Lord_Howe")) >= 20


def _field(top: int) -> st.SearchStrategy[tuple[str, frozenset[int]]]:
    every = st.integers(2, top // 2).map(
        lambda n: (f"*/{n}", frozenset(range(0, top, n))))
    one = st.integers(0, top - 1).map(lambda v: (str(v), frozenset([v])))
    several = st.lists(st.integers(0, top - 1), min_size=2, max_size=4, unique=True).map(
        lambda vs: (",".join(str(v) for v in sorted(vs)), frozenset(vs)))
    span = st.tuples(st.integers(0, top - 1), st.integers(0, top - 1)).map(
        lambda ab: (f"{min(ab)}-{max(ab)}", frozenset(range(min(ab), max(ab) + 1))))
    if top == 24:
        return st.one_of(st.just(("*", frozenset(range(24)))), every, one, several, span)
    return st.one_of(every.filter(lambda f: len(f[1]) <= 12), one, several)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, frozenset[int], frozenset[int], str, dt.datetime]:
    minute, minutes = draw(_field(60))
    hour, hours = draw(_field(24))
    zone = draw(st.sampled_from(ZONES))
    second = dt.timedelta(seconds=draw(st.integers(1, 59)), microseconds=draw(
        st.integers(0, 999_999)))
    near = list(transitions(zone))
    around_a_change: bool = draw(st.booleans())
    if near and around_a_change:
        # a window that contains a DST change
        base = draw(st.sampled_from(near)) - dt.timedelta(
            minutes=draw(st.integers(0, 60 * 60)))
    else:
        base = draw(st.datetimes(dt.datetime(2020, 1, 1), dt.datetime(2030, 12, 28))).replace(
            tzinfo=UTC)
    start = base.replace(second=0, microsecond=0) + second
    return f"{minute} {hour} * * *", minutes, hours, zone, start


def oracle(minutes: frozenset[int], hours: frozenset[int], zone: str, start: dt.datetime,
           end: dt.datetime) -> list[dt.datetime]:
    """Expected fire instants in ``[start, end]``, walking UTC minute by minute.

    A wall reading fires at the first instant the clock shows it; wall minutes that the
    clock jumps over fire at the instant of the jump.
    """
    tz = ZoneInfo(zone)

    def matches(wall: dt.datetime) -> bool:
        return wall.minute in minutes and wall.hour in hours

    def wall_of(instant: dt.datetime) -> dt.datetime:
        return instant.astimezone(tz).replace(tzinfo=None)

    m = start.replace(second=0, microsecond=0) - dt.timedelta(hours=3)
    highest = wall_of(m)
    expected = []
    while m <= end:
        m += MINUTE
        wall = wall_of(m)
        fire = False
        if wall > highest:  # a reading the clock has not shown before
            fire = matches(wall)
            skipped = highest + MINUTE
            while skipped < wall:  # minutes the clock jumped over
                fire = fire or matches(skipped)
                skipped += MINUTE
            highest = wall
        if fire and start <= m <= end:
            expected.append(m)
    return expected


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_wall_clock_triggers_fire_each_slot_once_and_skip_none(
        case: tuple[str, frozenset[int], frozenset[int], str, dt.datetime]) -> None:
    """Over 3 days from a random instant: increasing, one firing per wall slot, every
    firing on a cron slot (or at the end of a gap holding one), and exactly the oracle's."""
    text, minutes, hours, zone, start = case
    tz = ZoneInfo(zone)
    trig = scheduler.trigger(parse(text), zone)
    assert isinstance(trig, scheduler.WallClockTrigger)
    end = start + WINDOW
    found = fires(trig, start, end)
    instants = [f.astimezone(UTC) for f in found]
    walls = [f.astimezone(tz).replace(tzinfo=None) for f in found]

    assert all(a < b for a, b in itertools.pairwise(instants))
    assert len(set(walls)) == len(walls)
    for instant, wall in zip(instants, walls, strict=True):
        assert instant.second == 0 and instant.microsecond == 0
        if not (wall.minute in minutes and wall.hour in hours):
            before = (instant - dt.timedelta(microseconds=1)).astimezone(tz).replace(
                tzinfo=None)
            assert wall - before > dt.timedelta(minutes=1), (
                f"{instant} reads {wall}, not a slot of {text!r} and not a gap's end")
    assert instants == oracle(minutes, hours, zone, start, end)


@settings(max_examples=60, deadline=None)
@given(cases(), st.integers(1, 48 * 60))
def test_previous_fire_agrees_with_the_forward_fire_times(
        case: tuple[str, frozenset[int], frozenset[int], str, dt.datetime],
        lookback_minutes: int) -> None:
    """previous_fire(now, lookback) is the last forward fire time in [now - lookback, now]."""
    text, _, _, zone, start = case
    trig = scheduler.trigger(parse(text), zone)
    now = start + dt.timedelta(hours=30)
    lookback = dt.timedelta(minutes=lookback_minutes)
    forward = fires(trig, now - lookback, now)
    assert scheduler.previous_fire(trig, now, lookback) == (forward[-1] if forward else None)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1, 2, 10, 45, 60, 900, 3600, 7200]),
       st.datetimes(dt.datetime(2020, 1, 1), dt.datetime(2030, 12, 31)),
       st.sampled_from(ZONES))
def test_interval_triggers_fire_on_multiples_of_the_interval(
        seconds: int, start: dt.datetime, zone: str) -> None:
    """Interval fire times are the multiples of N seconds since a fixed epoch, increasing."""
    trig = scheduler.trigger(Schedule(f"every {seconds} seconds", interval_seconds=seconds),
                             zone)
    begin = start.replace(tzinfo=UTC)
    found = fires(trig, begin, begin + dt.timedelta(seconds=seconds * 5))
    assert len(found) in (5, 6)
    assert found[0] - begin < dt.timedelta(seconds=seconds)
    for a, b in itertools.pairwise(found):
        assert b - a == dt.timedelta(seconds=seconds)
    for fire in found:
        assert fire.microsecond == 0 and int(fire.timestamp()) % seconds == 0


def test_previous_fire_is_the_latest_slot_even_with_many_slots_in_the_lookback() -> None:
    """More than 10,000 fire times in the lookback: still the latest one is returned."""
    now = utc(2026, 5, 4, 12, 0, 0) + dt.timedelta(microseconds=500_000)
    every_second = scheduler.trigger(parse("every 1 second"), "UTC")
    assert scheduler.previous_fire(every_second, now, dt.timedelta(hours=3)) == utc(
        2026, 5, 4, 12)
    every_minute = scheduler.trigger(parse("* * * * *"), "UTC")
    assert scheduler.previous_fire(every_minute, now, dt.timedelta(days=8)) == utc(
        2026, 5, 4, 12)
