"""What happens to a due record as plain data: ``delete``, or ``anonymize`` column by column.

:mod:`retention.policy.parts` reads an ``action`` from a policy; plans carry it and
:mod:`retention.adapters.anonymize` applies the strategies.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

REDACTED = "[redacted]"  # the constant marker written by the ``redact`` strategy


class Strategy(StrEnum):
    NULL = "null"
    REDACT = "redact"
    HASH = "hash"
    TRUNCATE_IP = "truncate_ip"
    FIXED = "fixed"


@dataclass(frozen=True, slots=True)
class ColumnAction:
    """How one column is anonymized: ``value`` for ``fixed``, ``key_env`` names the HMAC key."""

    column: str
    strategy: Strategy
    value: Any = None
    key_env: str | None = None

    def __str__(self) -> str:
        if self.strategy is Strategy.FIXED:
            return f"{self.column}: fixed {self.value!r}"
        if self.strategy is Strategy.HASH:
            return f"{self.column}: hash (key from ${self.key_env})"
        return f"{self.column}: {self.strategy}"


@dataclass(frozen=True, slots=True)
class Action:
    """``delete`` (no columns) or ``anonymize`` (one entry per column)."""

    columns: tuple[ColumnAction, ...] = ()

    @property
    def name(self) -> str:
        return "anonymize" if self.columns else "delete"

    def __str__(self) -> str:
        if not self.columns:
            return "delete"
        return "anonymize " + ", ".join(str(c) for c in self.columns)


DELETE = Action()  # the default action of a rule: delete the record with its children
