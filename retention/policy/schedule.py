"""The ``schedule`` phrase of a rule: when the daemon runs it.

Accepted: a five-field cron expression (``"0 3 * * *"``) or one of the phrases
``hourly``, ``daily``, ``daily at HH:MM``, ``every N seconds|minutes|hours``,
``weekly on DAY [at HH:MM]``, ``monthly on day N [at HH:MM]``. Times are wall
clock times in the policy's time zone. The result is plain data;
:mod:`retention.daemon.scheduler` turns it into an APScheduler trigger.

Cron fields are checked here, without APScheduler, exactly as APScheduler 3's
``CronTrigger`` checks them: values within each field's range, ``a-b`` ranges that
do not run backwards, ``*/n`` and ``a-b/n`` steps no longer than their range, lists
with ``,``, month names (``jan``-``dec``) and day names (``mon``-``sun``) and
``last`` for the last day of the month. One difference: day-of-week *numbers* mean
what crontab means, 0 to 7 with 0 and 7 Sunday (APScheduler 3 counts from Monday = 0);
:func:`weekdays` says which days an entry names, and the daemon's trigger uses it.
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
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# (field, least value, greatest value) of the five cron fields, in order
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12),
           ("day_of_week", 0, 7))  # crontab's day numbers: 0 and 7 are Sunday
_ALL = re.compile(r"\*(?:/([0-9]+))?")  # * or */step
_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?(?:/([0-9]+))?")  # a, a-b, a/step, a-b/step
_NAMES = re.compile(r"([a-z]+)(?:-([a-z]+))?", re.IGNORECASE)  # jan, jan-mar; mon, mon-fri


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
    fields = text.split()
    for (name, low, high), field in zip(_FIELDS, fields, strict=True):
        for expr in field.split(","):
            _check_expression(name, low, high, expr, text)
    minute, hour, day, month, dow = fields
    return Schedule(text, minute=minute, hour=hour, day=day, month=month, day_of_week=dow)


def weekdays(expr: str, phrase: str) -> tuple[int, ...] | None:
    """The ISO weekdays (1 Monday ... 7 Sunday) that one entry of a day-of-week list names
    in numbers, as crontab reads them (0 and 7 Sunday, 1 Monday, ..., 6 Saturday; ``*``
    is 0-7 and a step counts from the start of its range); None for a name (``mon-fri``),
    which means what it says. Raises :class:`PhraseError` for an entry :func:`parse`
    refuses."""
    _check_expression("day_of_week", 0, 7, expr, phrase)
    if (match := _ALL.fullmatch(expr)) is not None:
        first, last, step = 0, 7, match.group(1)
    elif (match := _RANGE.fullmatch(expr)) is not None:
        first, step = int(match.group(1)), match.group(3)
        last = int(match.group(2)) if match.group(2) is not None else 7 if step else first
    else:
        return None
    return tuple(sorted({number % 7 or 7 for number in range(first, last + 1,
                                                              int(step or 1))}))


def _check_expression(name: str, low: int, high: int, expr: str, phrase: str) -> None:
    """Refuse one entry of a cron field's list the way APScheduler 3's ``CronTrigger`` does.

    Its quirks are kept so that exactly the expressions it accepts load: a name range
    ignores what follows it (``jan-mar/2`` is ``jan-mar``), ``last...`` in the day field
    is the last day, and the range of ``0-0/n`` counts as the whole field.
    """
    if (match := _ALL.fullmatch(expr)) is not None:
        _check_step(name, expr, match.group(1), high - low, phrase)
        return
    if (match := _RANGE.fullmatch(expr)) is not None:
        first = int(match.group(1))
        last = None if match.group(2) is None else int(match.group(2))
        step = match.group(3)
        if step is not None and int(step) == 0:
            _check_step(name, expr, step, high - low, phrase)
        if last is None and step is None:
            last = first
        if last is not None and first > last:
            raise PhraseError(phrase, f"{name} {expr!r}: the range runs backwards")
        if first < low or (last is not None and last > high):
            raise PhraseError(phrase, f"{name} {expr!r}: {name} runs from {low} to {high}")
        _check_step(name, expr, step, (last or high) - first, phrase)
        return
    names = {"month": _MONTHS, "day_of_week": _DAYS}.get(name)
    if names is not None and (match := _NAMES.match(expr)) is not None:
        numbers = []
        for word in match.groups():
            if word is not None and word.lower() not in names:
                raise PhraseError(phrase, f"{name} {expr!r}: {word!r} is not one of "
                                  f"{', '.join(names)}")
            if word is not None:
                numbers.append(names.index(word.lower()))
        if numbers != sorted(numbers):
            raise PhraseError(phrase, f"{name} {expr!r}: the range runs backwards")
        return
    if name == "day" and expr.lower().startswith("last"):
        return
    raise PhraseError(phrase, f"{name} {expr!r} is not a value, a range, a step or a name")


def _check_step(name: str, expr: str, step: str | None, span: int, phrase: str) -> None:
    if step is None:
        return
    if int(step) == 0:
        raise PhraseError(phrase, f"{name} {expr!r}: a step must be at least 1")
    if int(step) > span:
        raise PhraseError(phrase, f"{name} {expr!r}: the step {int(step)} is longer than the "
                          f"range ({span})")


def _bad(phrase: str) -> NoReturn:
    raise PhraseError(phrase, "use a cron expression ('0 3 * * *') or 'hourly', "
                      "'daily at 03:00', 'every 15 minutes', 'weekly on sunday at 02:30', "
                      "'monthly on day 1 at 04:00'")
