"""The protocol every adapter implements, and the data it hands back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from retention.plan import Plan, TableInfo


@dataclass(frozen=True, slots=True)
class AffectedRow:
    """One record removed or changed: what the audit log records (never its values)."""

    table: str
    key: dict[str, Any]
    action: str  # "delete" or "anonymize"
    event_at: dt.datetime
    due_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch transaction: the rows it touched and where the next batch starts."""

    rows: tuple[AffectedRow, ...]
    scanned: int  # rows selected; fewer than the batch size means the scan is done
    last_key: tuple[Any, ...] | None


@dataclass(frozen=True, slots=True)
class DueCount:
    """What a plan would touch now (a dry run)."""

    due: int
    held: int
    total: int
    oldest_due_event: dt.datetime | None
    children: dict[str, int]
    # rows that would be due but are kept because a table the rule does not declare
    # references them, per referencing table (every such table, 0 included)
    blocked: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0  # rows whose event value is no instant: never due


# Called inside the batch's transaction, after the changes and before the commit,
# with the adapter's open connection (or None when it has none to share).
BatchHook = Callable[[Batch, Any], None]


@runtime_checkable
class Adapter(Protocol):
    """A data store that retention can enforce rules on.

    Capability attributes:

    ``supports_returning``
        The store reports the rows a delete removed in the same statement
        (``DELETE ... RETURNING``); without it the adapter locks the selected
        rows first and deletes exactly those.
    ``url``
        The address of the store with any password hidden, for logs and reports.

    Optional methods, used by validation when an adapter has them:

    ``foreign_keys_into(table) -> list[ForeignKeyInfo]``
        Every declared foreign key that references ``table``. A delete rule keeps
        the rows that undeclared ones reference (``Plan.references``) and counts
        them in ``DueCount.blocked``. Raises like ``reflect``.
    ``cascades_to(table) -> list[str]``
        Tables whose rows a delete from ``table`` changes by itself (ON DELETE
        CASCADE / SET NULL); they must be declared as children.

    ``stored_forms(table, column, date, naive_zone, date_zone)`` returns
        A ``retention.stored.StoredForms`` where any column may hold any type (SQLite):
        Validation and the planner then decide from the values, not the declared type.
    """

    name: str
    supports_returning: bool
    url: str

    def reflect(self, table: str) -> TableInfo | None:
        """The table's columns and primary key, or None if it does not exist.

        Raises ``sqlalchemy.exc.OperationalError`` (or the adapter's own
        connection error) when the store cannot be reached.
        """
        ...

    def tables(self) -> list[str]:
        """Every table of the store (for the coverage report). Raises on connection errors."""
        ...

    def count(self, plan: Plan) -> DueCount:
        """Count the due, held and total rows of ``plan``; changes nothing."""
        ...

    def due_within(self, plan: Plan, later: Plan) -> int:
        """Rows not due under ``plan`` that are due under ``later`` (a later instant)."""
        ...

    def sample_keys(self, plan: Plan, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` keys of due rows, in key order."""
        ...

    def statements(self, plan: Plan) -> list[str]:
        """The statements a run of ``plan`` executes, as SQL text with bound parameters."""
        ...

    def run_batch(self, plan: Plan, after: tuple[Any, ...] | None, hook: BatchHook) -> Batch:
        """Delete or anonymize the next batch of due rows after key ``after``.

        One short transaction: select and lock up to ``plan.batch_size`` due rows,
        remove their children and them (or anonymize them), call ``hook`` with the
        batch and the connection, then commit. If ``hook`` raises, the
        transaction rolls back and the exception propagates. Raises the driver's
        errors (wrapped by SQLAlchemy) on connection loss, timeouts or deadlocks.
        """
        ...

    def exists(self, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Those of ``keys`` that still have a row in ``table`` (for crash recovery).

        Raises the driver's errors when the store cannot be reached.
        """
        ...

    def read(self, table: str, keys: list[dict[str, Any]], columns: list[str]
             ) -> list[dict[str, Any]]:
        """The key columns and ``columns`` of the rows of ``table`` with these keys.

        Raises the driver's errors when the store cannot be reached.
        """
        ...

    def delete_keys(self, table: str, keys: list[dict[str, Any]],
                    hook: Callable[[list[dict[str, Any]], Any], None]) -> list[dict[str, Any]]:
        """Delete the rows of ``table`` with these keys in one transaction (for replay).

        Calls ``hook`` with the keys actually deleted and the connection before the
        commit; returns those keys. Raises the driver's errors.
        """
        ...

    def close(self) -> None:
        """Release connections. Never raises."""
        ...
