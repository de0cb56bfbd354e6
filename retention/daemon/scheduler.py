"""APScheduler 3 triggers for rule schedules (the only module importing apscheduler).

APScheduler 3's ``CronTrigger`` misbehaves around DST changes: it fires a wall
time inside the autumn hour twice and can return fire times that go backwards.
:class:`WallClockTrigger` computes cron slots on the wall clock instead and maps
each slot to exactly one instant: an ambiguous wall time to its first
occurrence, a wall time in the spring gap to the moment the gap ends. Fire
times are strictly increasing.

Interval schedules are aligned to a fixed epoch so that every replica of the
daemon computes the same slots. Day-of-week numbers mean what crontab means (0 and 7
Sunday); APScheduler 3, which starts at Monday = 0, is handed day names.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from retention import calendar
from retention.errors import PhraseError
from retention.policy.schedule import Schedule, weekdays

UTC = dt.UTC
_INTERVAL_EPOCH = dt.datetime(2000, 1, 1, tzinfo=UTC)  # interval slots are multiples from here
_MAX_STEPS = 10_000  # wall-clock slots examined before giving up (a cron that never fires)
_FIRST_WINDOW = dt.timedelta(hours=2)  # previous_fire looks this far back first
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # ISO weekday 1..7


class WallClockTrigger(BaseTrigger):  # type: ignore[misc]
    """A cron schedule on the wall clock of ``tz``, one instant per wall-clock slot."""

    def __init__(self, schedule: Schedule, tz: dt.tzinfo) -> None:
        self.schedule = schedule
        self.tz = tz
        try:
            self._wall = CronTrigger(minute=schedule.minute, hour=schedule.hour,
                                     day=schedule.day, month=schedule.month,
                                     day_of_week=_day_names(schedule.day_of_week,
                                                            schedule.text),
                                     second="0", timezone=UTC)
        except ValueError as exc:
            raise PhraseError(schedule.text, str(exc)) from None

    def get_next_fire_time(self, previous_fire_time: dt.datetime | None,
                           now: dt.datetime) -> dt.datetime | None:
        start = now if previous_fire_time is None else max(
            now, previous_fire_time + dt.timedelta(microseconds=1))
        wall = self.wall(start)
        for _ in range(_MAX_STEPS):
            slot = self._wall.get_next_fire_time(None, wall)
            if slot is None:
                return None
            instant = self.instant(slot.replace(tzinfo=None))
            if instant >= start:
                return instant.astimezone(self.tz)
            wall = slot + dt.timedelta(seconds=1)
        return None

    def wall(self, instant: dt.datetime) -> dt.datetime:
        """The wall-clock reading of ``instant`` in ``tz``, tagged UTC for the inner cron."""
        return instant.astimezone(self.tz).replace(tzinfo=UTC)

    def instant(self, wall: dt.datetime) -> dt.datetime:
        """The first instant whose wall clock in ``tz`` reads ``wall`` or later."""
        first = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        if first.astimezone(self.tz).replace(tzinfo=None) == wall:
            return first
        return calendar.first_wall_instant(wall, self.tz)  # in a DST gap

    def __str__(self) -> str:
        return f"wallclock[{self.schedule.text}]"


def _day_names(field: str, phrase: str) -> str:
    """A day-of-week field for APScheduler 3, whose numbers start at Monday = 0: crontab's
    numbers (0 and 7 Sunday, :func:`retention.policy.schedule.weekdays`) become names."""
    if field == "*":
        return field
    entries = []
    for expr in field.split(","):
        days = weekdays(expr, phrase)
        entries.append(expr if days is None else ",".join(_DAY_NAMES[d - 1] for d in days))
    return ",".join(entries)


def trigger(schedule: Schedule, timezone: str) -> BaseTrigger:
    """The APScheduler trigger of ``schedule``; raises :class:`PhraseError` if it is invalid."""
    tz = calendar.zone(timezone)
    if schedule.interval_seconds is not None:
        return IntervalTrigger(seconds=schedule.interval_seconds, start_date=_INTERVAL_EPOCH,
                               timezone=UTC)
    return WallClockTrigger(schedule, tz)


def slot_key(schedule: Schedule, fire_time: dt.datetime, timezone: str) -> str:
    """The name of a slot: its wall-clock time for cron schedules, its instant otherwise."""
    if schedule.interval_seconds is not None:
        return fire_time.astimezone(UTC).isoformat()
    return fire_time.astimezone(calendar.zone(timezone)).replace(tzinfo=None).isoformat()


def previous_fire(trig: BaseTrigger, now: dt.datetime, lookback: dt.timedelta
                  ) -> dt.datetime | None:
    """The latest fire time of ``trig`` in ``[now - lookback, now]``, or None.

    Searches backwards in growing windows, so a long lookback costs no more steps
    than the slots near ``now``.
    """
    if isinstance(trig, IntervalTrigger):
        step = trig.interval
        slots = (now - _INTERVAL_EPOCH) // step
        latest = _INTERVAL_EPOCH + slots * step
        return latest if now - latest <= lookback else None
    window = min(lookback, _FIRST_WINDOW)
    while True:
        found = _latest_in(trig, now - window, now)
        if found is not None or window >= lookback:
            return found
        window = min(window * 2, lookback)


def _latest_in(trig: BaseTrigger, start: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    fire = trig.get_next_fire_time(None, start)
    latest = None
    for _ in range(_MAX_STEPS):
        if fire is None or fire > now:
            return latest
        latest = fire
        fire = trig.get_next_fire_time(latest, latest + dt.timedelta(microseconds=1))
    raise RuntimeError("too many slots in one window")  # minute-resolution cron: impossible


def next_fire(trig: BaseTrigger, now: dt.datetime) -> dt.datetime | None:
    fire: dt.datetime | None = trig.get_next_fire_time(None, now)
    return fire


def background_scheduler(timezone: str, misfire_grace: int) -> Any:
    """A scheduler whose jobs coalesce missed runs and never overlap themselves."""
    return BackgroundScheduler(
        timezone=calendar.zone(timezone),
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": misfire_grace},
    )
