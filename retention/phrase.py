"""The ``retain`` phrase: ``6 months after completion plus 7 years``, ``until unsubscribed``.

Grammar (SPEC §2)::

    retain := span "after" event { "plus" span }
            | "until" event
    span   := amount unit { ("and" | ",") amount unit }
    unit   := hour[s] | day[s] | week[s] | month[s] | year[s]

Amounts are whole numbers, written as digits or as the words zero to twelve.
The result is plain data; :mod:`retention.calendar` gives it meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from retention.errors import PhraseError


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


_UNITS = {u.value: u for u in Unit} | {u.value + "s": u for u in Unit}
_WORDS = {
    w: n
    for n, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve"]
    )
}
_MAX_AMOUNT_DIGITS = 9  # 999999999 days already runs off the calendar; more digits is hostile
_DIGITS = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also accepts '²'
_EVENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOKEN = re.compile(r",|[^\s,]+")


def _amount(token: str, phrase: str) -> int:
    if token.lower() in _WORDS:
        return _WORDS[token.lower()]
    if _DIGITS.fullmatch(token.removeprefix("-")) and token.startswith("-"):
        raise PhraseError(phrase, f"amount {token} is negative")
    if not _DIGITS.fullmatch(token):
        raise PhraseError(phrase, f"expected an amount, got {token!r}")
    if len(token) > _MAX_AMOUNT_DIGITS:
        raise PhraseError(phrase, f"the amount {token[:20]}... is too large")
    return int(token)


def _unit(token: str | None, phrase: str) -> Unit:
    if token is None:
        raise PhraseError(phrase, "expected a unit (hours, days, weeks, months, years)")
    unit = _UNITS.get(token.lower())
    if unit is None:
        raise PhraseError(
            phrase, f"unknown unit {token!r} (use hours, days, weeks, months or years)"
        )
    return unit


def _event(token: str | None, phrase: str) -> str:
    if token is None:
        raise PhraseError(phrase, "expected an event after 'after' or 'until'")
    if not _EVENT.match(token):
        raise PhraseError(phrase, f"{token!r} is not an event word or column name")
    return token


def parse(phrase: str) -> Retain:
    """Parse a ``retain`` phrase. Raises :class:`PhraseError` naming what is wrong."""
    if not isinstance(phrase, str) or not phrase.strip():
        raise PhraseError(str(phrase), "the phrase is empty")
    tokens = _TOKEN.findall(phrase.strip())
    if tokens[0].lower() == "until":
        if len(tokens) != 2:
            raise PhraseError(phrase, "expected 'until EVENT'")
        return Retain(Kind.UNTIL, _event(tokens[1], phrase))

    spans: list[Span] = []
    pos = 0

    def span_list() -> None:
        nonlocal pos
        while True:
            amount = _amount(tokens[pos], phrase)
            spans.append(Span(amount, _unit(tokens[pos + 1] if pos + 1 < len(tokens) else None,
                                            phrase)))
            pos += 2
            if pos < len(tokens) and tokens[pos].lower() in ("and", ","):
                pos += 1
                if pos >= len(tokens):
                    raise PhraseError(phrase, "expected an amount after 'and'")
                continue
            return

    span_list()
    if pos >= len(tokens) or tokens[pos].lower() != "after":
        found = repr(tokens[pos]) if pos < len(tokens) else "the end"
        raise PhraseError(phrase, f"expected 'after', got {found}")
    event = _event(tokens[pos + 1] if pos + 1 < len(tokens) else None, phrase)
    pos += 2
    while pos < len(tokens):
        if tokens[pos].lower() != "plus":
            raise PhraseError(phrase, f"expected 'plus' or the end, got {tokens[pos]!r}")
        pos += 1
        if pos >= len(tokens):
            raise PhraseError(phrase, "expected a span after 'plus'")
        span_list()

    hours = [s for s in spans if s.unit is Unit.HOUR]
    if hours and len(hours) != len(spans):
        raise PhraseError(phrase, "hours cannot be mixed with days, weeks, months or years")
    return Retain(Kind.HOURS if hours else Kind.CALENDAR, event, tuple(spans))
