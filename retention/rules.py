"""The frozen value objects a policy file becomes: sources, rules, filters, actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from retention.phrase import Retain

DEFAULT_BATCH_SIZE = 1000  # rows per batch transaction: short locks, bounded memory
DEFAULT_MAX_FRACTION = 0.5  # a rule may remove at most half of its table in one run
DEFAULT_SCHEDULE = "daily at 03:00"  # when the daemon runs a rule that names no schedule
DEFAULT_LOCK_TIMEOUT = 5.0  # seconds a batch waits for a row lock held by the application
DEFAULT_STATEMENT_TIMEOUT = 120.0  # seconds one statement of a batch may run
DEFAULT_HASH_KEY_ENV = "RETENTION_HASH_KEY"  # environment variable holding the HMAC key
REDACTED = "[redacted]"  # the constant marker written by the ``redact`` strategy


class Op(StrEnum):
    EQ = "eq"
    IN = "in"
    IS_NULL = "is_null"
    NOT_NULL = "not_null"
    NOT_EQ = "not_eq"  # {not: value}: every other row, NULL included
    NOT_IN = "not_in"  # {not: [values]}: every other row, NULL included


@dataclass(frozen=True, slots=True)
class Filter:
    """One entry of a rule's ``where`` map, always bound as parameters.

    ``{not: value}`` and ``{not: [values]}`` select exactly the rows that
    ``value`` and ``[values]`` leave, so a row whose column is NULL passes them
    (as in Django's ``exclude``; SQL's bare ``<>`` would drop it).
    """

    column: str
    op: Op
    values: tuple[Any, ...] = ()

    def __str__(self) -> str:
        if self.op is Op.IS_NULL:
            return f"{self.column} IS NULL"
        if self.op is Op.NOT_NULL:
            return f"{self.column} IS NOT NULL"
        listed = ", ".join(repr(v) for v in self.values)
        if self.op is Op.EQ:
            return f"{self.column} = {listed}"
        if self.op is Op.NOT_EQ:
            return f"({self.column} IS NULL OR {self.column} <> {listed})"
        if self.op is Op.NOT_IN:
            return f"({self.column} IS NULL OR {self.column} NOT IN ({listed}))"
        return f"{self.column} IN ({listed})"


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


@dataclass(frozen=True, slots=True)
class Child:
    """A table whose rows go with their parent: ``key`` is its column holding the parent key."""

    table: str
    key: str


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    adapter: str
    options: dict[str, Any] = field(hash=False, repr=False)  # the URL holds a password
    line: int = 0


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    source: str
    table: str | None
    retain: Retain
    event_column: str
    filters: tuple[Filter, ...] = ()
    children: tuple[Child, ...] = ()
    action: Action = Action()
    legal_basis: str | None = None
    description: str | None = None
    schedule: str = DEFAULT_SCHEDULE
    batch_size: int = DEFAULT_BATCH_SIZE
    max_fraction: float = DEFAULT_MAX_FRACTION
    max_rows: int | None = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    line: int = field(default=0, compare=False)  # where it is written is not what it says
    lines: dict[str, int] = field(default_factory=dict, hash=False, compare=False)

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    version: str | None
    timezone: str
    path: str
    sha256: str
    sources: dict[str, Source] = field(hash=False)
    audit_url: str = field(repr=False)  # may hold a password
    rules: tuple[Rule, ...]
    ignore: tuple[tuple[str, str], ...] = ()  # (source, table) that no rule needs to cover

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)
