"""The ``schedule`` phrase (SPEC §2): cron fields and named phrases, and what each mistake says.

Plain data, checked without APScheduler; the daemon's triggers are tested in
tests/daemon/test_scheduler.py.
"""

from __future__ import annotations

import pytest

from retention.errors import PhraseError, RetentionError
from retention.policy.schedule import parse


@pytest.mark.parametrize(("phrase", "fields"), [
    ("0 3 * * *", {"minute": "0", "hour": "3", "day": "*", "month": "*", "day_of_week": "*"}),
    ("*/15 2-4 1,15 * mon-fri", {"minute": "*/15", "hour": "2-4", "day": "1,15", "month": "*",
                                 "day_of_week": "mon-fri"}),
    ("daily at 03:00", {"minute": "0", "hour": "3", "day": "*", "day_of_week": "*"}),
    ("Daily  AT 23:59", {"minute": "59", "hour": "23"}),
    ("daily", {"minute": "0", "hour": "0"}),
    ("hourly", {"minute": "0", "hour": "*", "day": "*"}),
    ("weekly on sunday at 02:30", {"minute": "30", "hour": "2", "day_of_week": "sun",
                                   "day": "*"}),
    ("weekly on Mon", {"minute": "0", "hour": "0", "day_of_week": "mon"}),
    ("monthly on day 1 at 04:00", {"minute": "0", "hour": "4", "day": "1",
                                   "day_of_week": "*"}),
    ("monthly on day 31", {"minute": "0", "hour": "0", "day": "31"}),
])
def test_wall_clock_phrases_become_cron_fields(phrase: str, fields: dict[str, str]) -> None:
    """Cron expressions and the named phrases parse into wall-clock cron fields."""
    parsed = parse(phrase)
    assert not parsed.is_interval and parsed.interval_seconds is None
    for name, value in fields.items():
        assert getattr(parsed, name) == value, name


@pytest.mark.parametrize(("phrase", "seconds"), [
    ("every 15 minutes", 900),
    ("every 10 seconds", 10),
    ("every 1 second", 1),
    ("every 2 hours", 7200),
    ("Every 1 Minute", 60),
])
def test_every_phrases_become_intervals(phrase: str, seconds: int) -> None:
    """'every N seconds|minutes|hours' is a fixed interval in seconds."""
    parsed = parse(phrase)
    assert parsed.is_interval and parsed.interval_seconds == seconds


@pytest.mark.parametrize(("phrase", "says"), [
    ("", "empty"),
    ("   ", "empty"),
    ("daily at 25:00", "not a time of day"),
    ("daily at 03:60", "not a time of day"),
    ("daily at 3pm", "not a time of day"),
    ("daily on 03:00", "use a cron expression"),
    ("every 0 minutes", "not a positive whole number"),
    ("every five minutes", "not a positive whole number"),
    ("every 3 days", "unknown unit 'days'"),
    ("every minute", "use a cron expression"),
    ("weekly on funday", "not a day of the week"),
    ("weekly on monday at", "use a cron expression"),
    ("weekly on monday 02:30", "use a cron expression"),
    ("monthly on day 32", "not a day of the month"),
    ("monthly on day 0 at 04:00", "not a day of the month"),
    ("monthly on day first", "not a day of the month"),
    ("sometimes", "use a cron expression"),
    ("0 3 * *", "use a cron expression"),
])
def test_bad_phrases_say_what_is_wrong(phrase: str, says: str) -> None:
    """Each kind of mistake is a PhraseError (exit 2) whose reason names the problem."""
    with pytest.raises(PhraseError) as caught:
        parse(phrase)
    assert says in caught.value.reason
    assert isinstance(caught.value, RetentionError) and caught.value.exit_code == 2


@pytest.mark.parametrize(("phrase", "says"), [
    ("61 * * * *", "minute '61': minute runs from 0 to 59"),
    ("0 24 * * *", "hour '24': hour runs from 0 to 23"),
    ("0 3 32 * *", "day '32': day runs from 1 to 31"),
    ("0 3 0 * *", "day '0': day runs from 1 to 31"),
    ("0 3 * 13 *", "month '13': month runs from 1 to 12"),
    ("0 3 * 0 *", "month '0'"),
    ("0 3 * * 8", "day_of_week '8': day_of_week runs from 0 to 7"),
    ("0 3 * * 1-8", "day_of_week '1-8'"),
    ("0 3 * * noday", "'noday' is not one of mon, tue"),
    ("0 3 * * mon-funday", "'funday' is not one of"),
    ("0 3 * janx *", "'janx' is not one of jan, feb"),
    ("0 3 * * sun-mon", "the range runs backwards"),
    ("0 3 * dec-jan *", "the range runs backwards"),
    ("5-1 * * * *", "the range runs backwards"),
    ("*/0 * * * *", "a step must be at least 1"),
    ("0-10/0 * * * *", "a step must be at least 1"),
    ("*/60 * * * *", "the step 60 is longer than the range (59)"),
    ("1-1/5 * * * *", "the step 5 is longer than the range (0)"),
    ("50/10 * * * *", "the step 10 is longer than the range (9)"),
    ("0 3 * * 0/8", "the step 8 is longer"),
    ("1,,2 * * * *", "minute '' is not a value"),
    ("1, * * * *", "minute '' is not a value"),
    ("? 3 * * *", "minute '?' is not a value"),
    ("0 3 ? * *", "day '?' is not a value"),
    ("0 3 * * ?", "day_of_week '?' is not a value"),
    ("0 3 L * *", "day 'L' is not a value"),
    ("0 3 first * *", "day 'first' is not a value"),
    ("0 jan * * *", "hour 'jan' is not a value"),
    ("0 3 last-1 * *", None),  # 'last...' is the last day, as APScheduler 3 reads it
    ("*-5 * * * *", "minute '*-5' is not a value"),
    ("1-2-3 * * * *", "minute '1-2-3' is not a value"),
])
def test_cron_fields_apscheduler_refuses_are_refused_when_parsed(phrase: str, says: str | None
                                                                 ) -> None:
    """Values out of range, backward ranges, bad steps, names and list entries are refused.

    The policy language checks them itself (loading a policy never imports the daemon);
    tests/daemon/test_scheduler.py checks that it refuses exactly what the trigger refuses.
    """
    if says is None:
        assert parse(phrase).day == phrase.split()[2]
        return
    with pytest.raises(PhraseError) as caught:
        parse(phrase)
    assert caught.value.phrase == phrase
    assert says in caught.value.reason


@pytest.mark.parametrize("phrase", ["0 3 * * 0", "0 3 * * 7", "0 3 * * 1-7", "0 3 * * 0-7",
                                    "0 3 * * 0/7", "0 3 * * 5-7", "0 3 * * */2", "0 3 * * 0,7"])
def test_day_of_week_numbers_run_from_0_to_7_as_in_crontab(phrase: str) -> None:
    """0 and 7 are Sunday, as crontab reads them (tests/daemon/test_scheduler.py fires them)."""
    assert parse(phrase).day_of_week == phrase.split()[4]
