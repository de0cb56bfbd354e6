"""What a run did, per rule and in all: the data behind ``run --format json``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """How a rule's run ended; stored as-is in the audit store."""

    OK = "ok"
    FAILED = "failed"  # an error at run time; the other rules still ran
    STOPPED = "stopped"  # a safety limit stopped the rule before it changed anything
    SKIPPED = "skipped"  # another runner holds the rule's lease
    INTERRUPTED = "interrupted"  # a signal ended the run between batches
    INCOMPLETE = "incomplete"  # max_runtime ended the rule between batches; the next run goes on


EXIT_OK = 0  # every rule ran
EXIT_FAILED = 1  # a rule failed at run time (the others still ran)
EXIT_USAGE = 2  # bad input or usage; nothing was changed
EXIT_STOPPED = 3  # a safety limit stopped a rule
EXIT_LEASE = 4  # another runner holds a rule's lease (nothing done)


@dataclass
class RuleOutcome:
    rule: str
    action: str
    status: Status = Status.OK
    deleted: int = 0
    anonymized: int = 0
    held: int = 0
    due: int = 0
    recovered: int = 0  # records a crashed earlier run changed, confirmed by this run
    children: dict[str, int] = field(default_factory=dict)
    cutoff: dt.datetime | None = None
    plan: str | None = None
    error: str | None = None
    blocked: dict[str, int] = field(default_factory=dict)  # kept: an undeclared table refers
    batch_seconds: float = 0.0  # time spent in batches (not in pauses and waits): the rate
    waited_seconds: float = 0.0  # time paused between batches and waiting for replicas
    estimate: dict[str, Any] | None = None  # a dry run's batches and expected time
    partitions_dropped: list[str] = field(default_factory=list)  # dropped whole, all audited

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule, "status": self.status.value, "deleted": self.deleted,
            "anonymized": self.anonymized, "held": self.held, "children": self.children,
            "action": self.action, "due": self.due, "recovered": self.recovered,
            "cutoff": None if self.cutoff is None else self.cutoff.isoformat(),
            "blocked": self.blocked, "batch_seconds": round(self.batch_seconds, 3),
            "waited_seconds": round(self.waited_seconds, 3),
        }
        if self.estimate is not None:
            out.update(self.estimate)
        if self.partitions_dropped:
            out["partitions_dropped"] = self.partitions_dropped
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class RunOutcome:
    run_id: str
    policy: str
    as_of: dt.datetime
    dry_run: bool
    rules: list[RuleOutcome] = field(default_factory=list)

    @property
    def status(self) -> Status:
        for status in (Status.FAILED, Status.STOPPED, Status.INTERRUPTED, Status.SKIPPED,
                       Status.INCOMPLETE):
            if any(r.status is status for r in self.rules):
                return status
        return Status.OK

    @property
    def exit_code(self) -> int:
        return {Status.FAILED: EXIT_FAILED, Status.STOPPED: EXIT_STOPPED,
                Status.SKIPPED: EXIT_LEASE}.get(self.status, EXIT_OK)

    def as_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "policy": self.policy, "as_of": self.as_of.isoformat(),
                "dry_run": self.dry_run, "rules": [r.as_json() for r in self.rules]}
