"""The ``schedule`` phrase of a rule: when the daemon runs it.

Accepted: a five-field cron expression (``"0 3 * * *"``) or one of the phrases
``hourly``, ``daily``, ``daily at HH:MM``, ``every N seconds|minutes|hours``,
``weekly on DAY [at HH:MM]``, ``monthly on day N [at HH:MM]``. Times are wall
clock times in the policy's time zone. The result is plain data;
:mod:`retention.scheduler` turns it into an APScheduler trigger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from retention.errors import PhraseError

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?]+$")
_LONG_NUMBER = re.compile(r"[0-9]{10,}")  # no field of a schedule needs ten digits
MAX_INTERVAL_SECONDS = 366 * 86400  # 'every N ...' at most yearly; longer is a cron's job


@dataclass(frozen=True, slots=True)
class Schedule:
    """Either cron fields (wall-clock slots) or a fixed interval in seconds."""

    text: str
    minute: str = "*"
    hour: str = "*"
    day: str = "*"
    month: str = "*"
    day_of_week: str = "*"
    interval_seconds: int | None = None

    @property
    def is_interval(self) -> bool:
        return self.interval_seconds is not None


def _time(text: str, phrase: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise PhraseError(phrase, f"{text!r} is not a time of day (HH:MM)")
    return int(match.group(1)), int(match.group(2))


def _day_name(text: str, phrase: str) -> str:
    word = text.lower()
    for short, full in zip(_DAYS, _FULL_DAYS, strict=True):
        if word in (short, full, full + "s"):
            return short
    raise PhraseError(phrase, f"{text!r} is not a day of the week")


def parse(phrase: str) -> Schedule:
    """Parse a schedule. Raises :class:`PhraseError` saying what is wrong."""
    text = " ".join(str(phrase).split())
    words = text.lower().split()
    if not words:
        raise PhraseError(str(phrase), "the schedule is empty")
    if (long := _LONG_NUMBER.search(text)) is not None:
        raise PhraseError(text, f"the number {long.group()[:20]}... is too large")
    if len(words) == 5 and all(_CRON_FIELD.match(w) for w in words) and any(
            c.isdigit() or c == "*" for c in text):
        return _cron(text)
    if words == ["hourly"]:
        return Schedule(text, minute="0")
    if words[0] == "daily" and len(words) in (1, 3):
        if len(words) == 3 and words[1] != "at":
            _bad(text)
        hour, minute = _time(words[2], text) if len(words) == 3 else (0, 0)
        return Schedule(text, minute=str(minute), hour=str(hour))
    if words[0] == "every" and len(words) == 3:
        if not words[1].isdigit() or int(words[1]) < 1:
            raise PhraseError(text, f"{words[1]!r} is not a positive whole number")
        unit = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600,
                "hours": 3600}.get(words[2])
        if unit is None:
            raise PhraseError(text, f"unknown unit {words[2]!r} (seconds, minutes or hours)")
        if int(words[1]) * unit > MAX_INTERVAL_SECONDS:
            raise PhraseError(text, f"an interval longer than {MAX_INTERVAL_SECONDS // 86400} "
                              "days (use 'monthly on day N' or a cron expression)")
        return Schedule(text, interval_seconds=int(words[1]) * unit)
    if words[0] == "weekly" and len(words) in (3, 5) and words[1] == "on":
        hour, minute = _at(words[3:], text)
        return Schedule(text, minute=str(minute), hour=str(hour),
                        day_of_week=_day_name(words[2], text))
    if words[:3] == ["monthly", "on", "day"] and len(words) in (4, 6):
        if not words[3].isdigit() or not 1 <= int(words[3]) <= 31:
            raise PhraseError(text, f"{words[3]!r} is not a day of the month (1-31)")
        hour, minute = _at(words[4:], text)
        return Schedule(text, minute=str(minute), hour=str(hour), day=words[3])
    _bad(text)


def _at(words: list[str], phrase: str) -> tuple[int, int]:
    if not words:
        return 0, 0
    if words[0] != "at" or len(words) != 2:
        _bad(phrase)
    return _time(words[1], phrase)


def _cron(text: str) -> Schedule:
    minute, hour, day, month, dow = text.split()
    return Schedule(text, minute=minute, hour=hour, day=day, month=month, day_of_week=dow)


def _bad(phrase: str) -> NoReturn:
    raise PhraseError(phrase, "use a cron expression ('0 3 * * *') or 'hourly', "
                      "'daily at 03:00', 'every 15 minutes', 'weekly on sunday at 02:30', "
                      "'monthly on day 1 at 04:00'")
