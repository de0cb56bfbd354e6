"""The frozen value objects a policy file becomes: the policy, its sources and rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retention.actions import DELETE, Action
from retention.errors import Problem
from retention.filters import Filter
from retention.period import Retain
from retention.policy.needs import Unset, usable

DEFAULT_BATCH_SIZE = 50_000  # most rows per batch transaction (batches are sized by time)
DEFAULT_BATCH_SECONDS = 0.2  # the time a batch transaction should take (short locks)
DEFAULT_MAX_FRACTION = 0.5  # a rule may remove at most half of its table in one run
DEFAULT_SCHEDULE = "daily at 03:00"  # when the daemon runs a rule that names no schedule
DEFAULT_LOCK_TIMEOUT = 5.0  # seconds a batch waits for a row lock held by the application
DEFAULT_STATEMENT_TIMEOUT = 120.0  # seconds one statement of a batch may run
MAX_BATCH_SIZE = 1_000_000  # no statement binds a batch's keys; bounded by memory
MIN_BATCH_SECONDS = 0.001  # seconds: a shorter target would make one-row batches
MAX_BATCH_SECONDS = 3600.0  # seconds: a batch transaction held for an hour is no batch
MAX_ROWS = 10**12  # a max_rows past a trillion rows is a typo, not a limit
MIN_TIMEOUT = 0.001  # seconds: the databases count timeouts in milliseconds
MAX_LOCK_TIMEOUT = 3600.0  # seconds: a batch waiting an hour for a lock should fail instead
MAX_STATEMENT_TIMEOUT = 86400.0  # seconds: one statement of a batch running for a day
DEFAULT_HASH_KEY_ENV = "RETENTION_HASH_KEY"  # environment variable holding the HMAC key
DEFAULT_PAUSE = 0.0  # seconds between batches: none, unless the policy asks for politeness
MAX_PAUSE = 3600.0  # seconds: an hour between batches is a typo, not a pace
MIN_RUNTIME = 1.0  # seconds: a shorter max_runtime could never finish a batch
MAX_RUNTIME = 7 * 86400.0  # seconds: a run allowed to last longer than a week has no limit
MIN_REPLICA_LAG = 0.1  # seconds: below this the databases' own lag figures are noise
MAX_REPLICA_LAG = 86400.0  # seconds: a replica a day behind is broken, not lagging
DEFAULT_DROP_PARTITIONS = True  # a wholly due PostgreSQL partition is dropped, not emptied


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
    lines: dict[str, int] = field(default_factory=dict, hash=False, compare=False)  # per key


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    source: str
    table: str | None
    retain: Retain
    event_column: str
    filters: tuple[Filter, ...] = ()
    children: tuple[Child, ...] = ()
    action: Action = DELETE
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
    event_format: str | None = None  # unix_seconds / unix_millis: epoch numbers, not times
    pause_between_batches: float = DEFAULT_PAUSE  # seconds of rest after each batch
    max_runtime: float | None = None  # seconds; no batch starts later (the next run goes on)
    max_replica_lag: float | None = None  # seconds replicas may lag before a batch waits
    batch_seconds: float = DEFAULT_BATCH_SECONDS
    drop_partitions: bool = DEFAULT_DROP_PARTITIONS  # delete rules: drop wholly due partitions

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
    audit: str | Unset = field(repr=False)  # the audit store's URL (may hold a password)
    rules: tuple[Rule, ...]
    ignore: tuple[tuple[str, str], ...] = ()  # (source, table) that no rule needs to cover
    # settings left unset because the loading command does not need them (needs.Need)
    unset: tuple[Problem, ...] = field(default=(), compare=False)
    # why an ``ignore:`` entry needs no rule, when it says (``{table: shop.logs, reason: ...}``)
    ignore_reasons: dict[tuple[str, str], str] = field(default_factory=dict, hash=False)
    # audit: {checkpoints: PATH, public_key: PEM-or-path} (retention.audit.checkpoints)
    checkpoints: str | Unset | None = None
    public_key: str | Unset | None = field(default=None, repr=False)
    text: str = field(default="", repr=False, compare=False)  # the file as read (history)

    @property
    def audit_url(self) -> str:
        """The audit store's URL; raises :class:`PolicyError` if it was left unset."""
        return usable(self.audit)

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)
