"""The ``retain`` phrase: ``6 months after completion plus 7 years``, ``until unsubscribed``.

Grammar (SPEC §2)::

    retain := span "after" event { "plus" span }
            | "until" event
    span   := amount unit { ("and" | ",") amount unit }
    unit   := hour[s] | day[s] | week[s] | month[s] | year[s]

Amounts are whole numbers, written as digits or as the words zero to twelve.
The result is plain data (:mod:`retention.period`); :mod:`retention.calendar` gives it
meaning.
"""

from __future__ import annotations

import re

from retention.errors import PhraseError
from retention.period import Kind, Retain, Span, Unit

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
