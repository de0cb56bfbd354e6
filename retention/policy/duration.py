"""Durations: ``max_runtime: 30 minutes`` in a policy, ``--max-runtime 1800`` on the command line.

A duration is a number of seconds (``90``, ``2.5``) or a phrase::

    duration := part { ["and" | ","] part }
    part     := amount unit
    unit     := second[s] | minute[s] | hour[s]

Amounts are whole numbers in ASCII digits (``1 hour 30 minutes``). The result is
seconds as a float; bounds are the caller's (each key has its own).
"""

from __future__ import annotations

import math
import re
from typing import Any

from retention.errors import PhraseError

UNIT_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_MAX_AMOUNT_DIGITS = 9  # more digits than a billion seconds is no duration but hostile input
_DIGITS = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also accepts '²'
_TOKEN = re.compile(r",|[^\s,]+")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")  # "90" or "2.5" as text (the command line)
UNITS = "seconds, minutes or hours"


def seconds(value: Any) -> float:
    """``value`` (a YAML number, or text) as seconds. Raises :class:`PhraseError`."""
    if isinstance(value, bool):
        raise PhraseError(str(value), f"expected seconds or a duration in {UNITS}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise PhraseError(str(value), "not a finite number of seconds")
        return float(value)
    if not isinstance(value, str):
        raise PhraseError(repr(value)[:80], f"expected seconds or a duration in {UNITS}")
    return parse(value)


def parse(text: str) -> float:
    """A duration phrase or a plain number (as text) -> seconds."""
    phrase = text.strip()
    if _NUMBER.fullmatch(phrase) and len(phrase) <= 2 * _MAX_AMOUNT_DIGITS:
        return float(phrase)
    tokens = [t for t in _TOKEN.findall(phrase) if t != "," and t.lower() != "and"]
    if not tokens:
        raise PhraseError(text, f"expected seconds or a duration in {UNITS}")
    total = 0.0
    for at in range(0, len(tokens), 2):
        amount = tokens[at]
        if amount.startswith("-") and _DIGITS.fullmatch(amount[1:]):
            raise PhraseError(text, f"amount {amount} is negative")
        if not _DIGITS.fullmatch(amount):
            raise PhraseError(text, f"expected an amount, got {amount[:20]!r}")
        if len(amount) > _MAX_AMOUNT_DIGITS:
            raise PhraseError(text, f"the amount {amount[:20]}... is too large")
        if at + 1 >= len(tokens):
            raise PhraseError(text, f"expected a unit ({UNITS}) after {amount}")
        unit = tokens[at + 1].lower().removesuffix("s")
        if unit not in UNIT_SECONDS:
            raise PhraseError(text, f"unknown unit {tokens[at + 1][:20]!r} (use {UNITS})")
        total += int(amount) * UNIT_SECONDS[unit]
    return total
