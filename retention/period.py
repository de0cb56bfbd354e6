"""A retention period as plain data: ``6 months after completion plus 7 years``.

:mod:`retention.policy.phrase` reads a ``retain`` phrase into a :class:`Retain`;
:mod:`retention.calendar` gives it meaning (due instants and cutoffs); plans carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Unit(StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class Kind(StrEnum):
    """How the due instant follows from the event instant."""

    CALENDAR = "calendar"  # whole local days, due from the start of the next local day
    HOURS = "hours"  # a fixed duration in absolute time
    UNTIL = "until"  # due at the event itself


@dataclass(frozen=True, slots=True)
class Span:
    amount: int
    unit: Unit

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}{'' if self.amount == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class Retain:
    """A parsed ``retain`` phrase: the spans to add, in order, after ``event``."""

    kind: Kind
    event: str
    spans: tuple[Span, ...] = ()

    def __post_init__(self) -> None:
        if self.kind is Kind.UNTIL and self.spans:
            raise ValueError("'until' takes no spans")
        units = {s.unit for s in self.spans}
        if self.kind is Kind.HOURS and units != {Unit.HOUR}:
            raise ValueError("an hour retention holds hours only")
        if self.kind is Kind.CALENDAR and Unit.HOUR in units:
            raise ValueError("a calendar retention holds no hours")

    def __str__(self) -> str:
        if self.kind is Kind.UNTIL:
            return f"until {self.event}"
        return " plus ".join(
            [f"{self.spans[0]} after {self.event}", *(str(s) for s in self.spans[1:])]
        )

    @property
    def total_hours(self) -> int:
        return sum(s.amount for s in self.spans if s.unit is Unit.HOUR)
