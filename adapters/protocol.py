"""The protocol every adapter implements, and the data it hands back."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
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
    event_value: Any = None  # the event column as stored, when the adapter read it


@dataclass(frozen=True, slots=True)
class Removed:
    """The records of one table that one batch removed or changed, compactly.

    ``keys`` and ``events`` are JSON arrays (text) of equal length, in key order:
    each key is its value (one key column) or an array of values (several, in the
    order of ``columns``); each event is the parent's event value *as stored* (text
    as the database renders it, or a number), read later by the audit log with the
    plan's rules (``retention.audit.records``). Nothing is converted per record at
    run time.
    """

    table: str
    action: str  # "delete" or "anonymize"
    columns: tuple[str, ...]  # the key columns
    count: int
    keys: str
    events: str

    @classmethod
    def of(cls, table: str, action: str, columns: Sequence[str],
           keys: Sequence[Sequence[Any]], events: Sequence[Any]) -> Removed:
        """From a driver's values: keys as rows (the key columns first), events as the
        driver read them (one per key). Keys that are no JSON value are written as
        text, as the audit log has always written them (``default=str``)."""
        width = len(columns)
        key_list = [k[0] for k in keys] if width == 1 else [list(k[:width]) for k in keys]
        try:
            ready: list[Any]
            if width == 1:
                ready = _column(key_list, str)
            else:  # converted column by column, then back into rows
                converted = [_column(list(c), str) for c in zip(*key_list, strict=True)]
                ready = [list(row) for row in zip(*converted, strict=True)]
            key_text = json.dumps(ready, separators=(",", ":"))
        except _Nested:  # keys that are containers: json's own walk
            key_text = json.dumps(key_list, separators=(",", ":"), default=str)
        events = list(events)
        try:
            event_text = json.dumps(_column(events, stored_value), separators=(",", ":"))
        except _Nested:
            event_text = json.dumps(events, separators=(",", ":"), default=stored_value)
        return cls(table, action, tuple(columns), len(key_list), key_text, event_text)


_SCALARS = (str, int, float, bool, type(None))  # what JSON writes as it is
_CONTAINERS = (list, tuple, dict)


class _Nested(Exception):
    """A value is a container: left to json's own walk (``default`` inside it)."""


def _column(values: list[Any], convert: Callable[[Any], Any]) -> list[Any]:
    """One column's values as ``json.dumps(..., default=convert)`` writes them, ready for
    the C encoder: each value JSON cannot write replaced by ``convert(value)`` (text).
    Decided per type (a column's values share one, and None), not per value."""
    kinds = set(map(type, values))
    odd = {t for t in kinds if not issubclass(t, _SCALARS)}
    if not odd:
        return values
    if any(issubclass(t, _CONTAINERS) for t in odd):
        raise _Nested
    if len(kinds) == 1:
        return list(map(convert, values))
    return [convert(v) if type(v) in odd else v for v in values]


def stored_value(value: Any) -> Any:
    """A driver's event value that is no JSON value, as the database stores it
    (losslessly): a date or time as ISO-8601 text, a decimal number as its digits."""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch transaction: the rows it touched and where the next batch starts.

    An adapter reports what it changed either as ``removed`` (compact, per table:
    the built-in SQL adapter) or as ``rows`` (one :class:`AffectedRow` each).
    """

    rows: tuple[AffectedRow, ...]
    scanned: int  # rows selected; fewer than the batch size means the scan is done
    last_key: tuple[Any, ...] | None
    removed: tuple[Removed, ...] = ()

    @property
    def changed(self) -> int:
        """How many records the batch removed or changed."""
        return len(self.rows) + sum(r.count for r in self.removed)


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
    # rows due under each plan ``count`` was given ``ahead`` (the same rule, later instants)
    due_ahead: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Recorded:
    """A record whose deletion the audit log holds (for replay): where, which, and when."""

    table: str
    key: dict[str, Any]
    event_at: dt.datetime  # the event instant recorded with the deletion
    # The exact event instant as a ``retention.stored`` key (nanoseconds), when the
    # record holds the value as stored; None for records that hold only ``event_at``.
    event_key: str | None = None


class Kept(StrEnum):
    """Why replay left a restored row alone."""

    REUSED_KEY = "reused_key"  # another record with the recorded key (other event instant)
    NOT_SELECTED = "not_selected"  # the rule no longer selects it (where, cutoff)
    HELD = "held"  # under a legal hold, or a child of a held parent
    PARENT_KEPT = "parent_kept"  # a child whose parent is there and stays


@dataclass(frozen=True, slots=True)
class Replayed:
    """What one replay transaction deleted again (or would), and what it left alone."""

    rows: tuple[AffectedRow, ...]
    kept: tuple[tuple[Recorded, Kept], ...]


@dataclass(frozen=True, slots=True)
class ReplicaLag:
    """How far one replica of a source is behind, read before a batch (``max_replica_lag``).

    ``seconds`` is None when the lag cannot be known: the replica cannot be reached,
    replication is stopped (``Seconds_Behind_Master`` is NULL), the server is no replica,
    or the database hides the figure from this user; ``note`` says which.
    """

    replica: str  # the replica's name or its URL with the password masked
    seconds: float | None
    note: str = ""


# Called inside the batch's transaction, after the changes and before the commit,
# with the adapter's open connection (or None when it has none to share).
BatchHook = Callable[[Batch, Any], None]


@runtime_checkable
class Adapter(Protocol):
    """A data store that retention can enforce rules on.

    A third-party adapter is a class (or a factory) taking the policy's
    :class:`~retention.policy.rules.Source` (its ``options`` hold the source's keys),
    registered under the entry-point group ``retention.adapters``; a source names it
    with ``adapter: NAME``. :mod:`retention.adapters.registry` checks it when a command
    opens the source: every method below must exist and accept the calls the engine
    makes (required arguments positionally, optional ones positionally or by keyword),
    and an instance must have ``name``, ``url`` and ``supports_returning``. Otherwise the
    command stops before reading or changing anything (exit 2), naming the adapter and
    what it lacks.

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

    ``replica_lag() -> list[ReplicaLag]``
        How far each replica of the store is behind, one entry per replica (none: no
        replica to wait for). A rule with ``max_replica_lag`` needs it. A replica that
        cannot be read is an entry with ``seconds`` None, not an exception; raises only
        when the store itself cannot be asked.
    ``stored_forms(table, column, date, naive_zone, date_zone)`` returns
        A ``retention.stored.StoredForms`` where any column may hold any type (SQLite):
        Validation and the planner then decide from the values, not the declared type.
    ``rule_problems(rule) -> list[tuple[int, str]]``
        Bad input only the adapter can see (its source's options, keys its store has no
        use for), as (policy line, message); validation reports them for the rule.
    ``uncovered(covered: set[str]) -> list[str]``
        What the store holds that no rule covers, for the report (``covered``: the
        source's tables that rules and ``ignore`` name); without it the report lists
        the uncovered tables of SQL sources only.
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

    def count(self, plan: Plan, ahead: Sequence[Plan] = ()) -> DueCount:
        """Count the due, held and total rows of ``plan``; changes nothing.

        ``ahead`` are the same rule's plans at later instants (the report's look-ahead):
        ``DueCount.due_ahead`` holds the rows due under each, counted in the same pass
        over the table where the store can.
        """
        ...

    def sample_keys(self, plan: Plan, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` keys of due rows, in key order."""
        ...

    def statements(self, plan: Plan) -> list[str]:
        """The statements a run of ``plan`` executes, as SQL text with bound parameters."""
        ...

    def run_batch(self, plan: Plan, after: tuple[Any, ...] | None, hook: BatchHook,
                  batch_id: str | None = None) -> Batch:
        """Delete or anonymize the next batch of due rows after key ``after``.

        One short transaction: select and lock up to ``plan.batch_size`` due rows,
        remove their children and them (or anonymize them), call ``hook`` with the
        batch (what it changed as ``Batch.removed`` or ``Batch.rows``) and the
        connection, then commit. The caller sets ``plan.batch_size`` per batch (it
        adapts the size to a target transaction time). If ``hook`` raises, the
        transaction rolls back and the exception propagates.

        With ``batch_id``, a batch that changes rows also writes its commit marker
        in the same transaction, before ``hook``: :meth:`committed` later proves
        whether it committed. The store for the markers is created, outside the
        transaction, by the first batch that changes rows (never by a batch that
        changes nothing, nor by the reading methods).

        Raises the driver's errors (wrapped by SQLAlchemy) on connection loss,
        timeouts or deadlocks, and an integrity error when ``batch_id`` was
        already settled by :meth:`committed` (the batch rolls back).
        """
        ...

    def committed(self, batch_ids: list[str]) -> set[str]:
        """Those of ``batch_ids`` whose transaction committed, proven by their markers.

        Every other id is fenced before the answer: a marker saying "not committed"
        takes its place, so a transaction of that batch still in flight (a dropped
        connection during COMMIT) waits for it and can never commit afterwards. The
        answer is final. Waits for such a transaction (bounded by a lock timeout);
        raises the driver's errors when the store cannot be reached or the wait
        times out, and ``LookupError`` when the marker store is missing (it was
        dropped or restored from an older backup: nothing can be proven).
        """
        ...

    def forget(self, batch_ids: list[str]) -> None:
        """Delete the markers of ``batch_ids`` (batches closed in the audit log).

        Raises the driver's errors when the store cannot be reached.
        """
        ...

    def exists(self, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Those of ``keys`` that still have a row in ``table``.

        Used for holds on keys and to settle batches left open by a version without
        commit markers (never to settle a marked batch).

        Raises the driver's errors when the store cannot be reached.
        """
        ...

    def read(self, table: str, keys: list[dict[str, Any]], columns: list[str]
             ) -> list[dict[str, Any]]:
        """The key columns and ``columns`` of the rows of ``table`` with these keys.

        Raises the driver's errors when the store cannot be reached.
        """
        ...

    def replay(self, plan: Plan, recorded: list[Recorded], hook: BatchHook | None,
               batch_id: str | None = None) -> Replayed:
        """Delete again the restored rows of ``recorded`` that are still those records.

        One transaction. A row of ``plan.table`` goes when its key is recorded,
        its event instant equals the recorded one and ``plan`` selects it (its
        ``where``, cutoff and holds); all its children go with it. A recorded
        child row goes when its parent is gone (and not held); one whose parent
        stays, stays. Rows are locked, checked and deleted by key, so no
        concurrent change slips in; with ``batch_id`` the commit marker is written
        as in :meth:`run_batch`; ``hook`` gets the deleted rows before the commit.
        With ``hook`` None nothing changes: the answer says what would go.
        Raises the driver's errors.
        """
        ...

    def close(self) -> None:
        """Release connections. Never raises."""
        ...
