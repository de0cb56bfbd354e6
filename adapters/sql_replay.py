"""Replay in SQL: which restored rows are still the recorded records, and deleting them.

Runs inside the adapter's transaction (:meth:`SqlAdapter.replay`); with
``lock`` the rows are selected ``FOR UPDATE`` (SQLite holds its write lock
from ``BEGIN IMMEDIATE``), so what is checked is what is deleted.

* A parent row (of the plan's table) goes when its key is recorded, its event
  instant equals the recorded one (to the nanosecond, ``Plan.event_key``, when the
  record holds the value as stored; else to the microsecond), it is not held and
  the plan's due predicate (``where`` and cutoff) selects it. Every child of a
  parent that goes, goes with it.
* A recorded child row whose parent does not go goes when its parent is gone
  and not held; a child whose parent is there stays (``parent_kept``).
* For an anonymize rule the same checks choose the rows, which are then anonymized
  again (:func:`pending` re-reads them locked, still not anonymized) instead of deleted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from retention.adapters import sql_events
from retention.adapters import sql_statements as q
from retention.adapters.protocol import AffectedRow, Kept, Recorded
from retention.adapters.sql_marks import chunks
from sqlalchemy import Connection, Table, select

from retention.plan import ChildPlan, Plan

Key = tuple[Any, ...]


def _norm(values: Any) -> tuple[str, ...]:
    """A key as comparable text: a driver's value and its JSON form in the audit log."""
    return tuple(str(v) for v in values)


def _match(table: Table, names: tuple[str, ...], keys: list[Key]) -> Any:
    cols = [table.c[n] for n in names]
    if len(cols) == 1:
        return cols[0].in_([k[0] for k in keys])
    return sa.tuple_(*cols).in_(keys)


@dataclass
class Found:
    """Rows to delete (per table, their keys and audit rows) and records left alone."""

    keys: dict[str, list[Key]] = field(default_factory=dict)
    rows: list[AffectedRow] = field(default_factory=list)
    kept: list[tuple[Recorded, Kept]] = field(default_factory=list)

    def add(self, plan: Plan, table: str, names: tuple[str, ...], key: Key,
            event: Any) -> None:
        self.keys.setdefault(table, []).append(key)
        action = "anonymize" if plan.action.columns else "delete"
        self.rows.append(AffectedRow(table, dict(zip(names, key, strict=True)), action,
                                     plan.event_instant(event), plan.due_instant(event),
                                     event))


def find(conn: Connection, table_of: Callable[[str], Table], dialect: str, plan: Plan,
         recorded: list[Recorded], lock: bool) -> Found:
    """What replaying ``recorded`` under ``plan`` deletes, and what it leaves alone."""
    found = Found()
    events = _parents(conn, table_of(plan.table), dialect, plan,
                      [r for r in recorded if r.table == plan.table], lock, found)
    for child in plan.children:
        _children(conn, table_of, dialect, plan, child,
                  [r for r in recorded if r.table == child.table], events, lock, found)
    return found


def delete(conn: Connection, table_of: Callable[[str], Table], dialect: str, plan: Plan,
           found: Found) -> None:
    """Delete exactly the rows ``find`` locked: children first, parents only while due."""
    for child in plan.children:
        _delete(conn, table_of(child.table), dialect, child.primary_key,
                found.keys.get(child.table, []), None)
    _delete(conn, table_of(plan.table), dialect, plan.primary_key,
            found.keys.get(plan.table, []), plan)


def pending(conn: Connection, table: Table, dialect: str, plan: Plan, found: Found
            ) -> list[Any]:
    """The rows of an anonymize rule that ``find`` chose, as the batch select gives them
    (key, event value, the action's columns), still due (not yet anonymized), locked."""
    pk = [table.c[n] for n in plan.primary_key]
    extra = [table.c[a.column] for a in plan.action.columns]
    rows: list[Any] = []
    for chunk in chunks(found.keys.get(plan.table, [])):
        stmt = select(*pk, sql_events.value(table, plan, dialect), *extra).where(
            _match(table, plan.primary_key, chunk), q.due(table, plan, dialect)).order_by(*pk)
        rows += conn.execute(_select(stmt, dialect, True)).all()
    return rows


def _select(stmt: Any, dialect: str, lock: bool) -> Any:
    return stmt.with_for_update() if lock and dialect != "sqlite" else stmt


def _parents(conn: Connection, table: Table, dialect: str, plan: Plan,
             parents: list[Recorded], lock: bool, found: Found) -> dict[tuple[str, ...], Any]:
    """Classify the rows with recorded parent keys; the event value of each that goes."""
    names = plan.primary_key
    by_key = {_norm(r.key[c] for c in names): r for r in parents}
    held = {_norm(k) for k in plan.held_keys}
    chosen = sa.case((q.due(table, dataclasses.replace(plan, held_keys=()), dialect), 1),
                     else_=0)
    pk = [table.c[n] for n in names]
    events: dict[tuple[str, ...], Any] = {}
    for chunk in chunks(list(by_key.values())):
        keys = [tuple(r.key[c] for c in names) for r in chunk]
        stmt = select(*pk, sql_events.value(table, plan, dialect), chosen).where(
            _match(table, names, keys))
        for row in conn.execute(_select(stmt.order_by(*pk), dialect, lock)):
            key, event, selected = tuple(row[:len(pk)]), row[len(pk)], row[len(pk) + 1]
            rec = by_key[_norm(key)]
            if not _same_instant(plan, event, rec):
                found.kept.append((rec, Kept.REUSED_KEY))
            elif _norm(key) in held:
                found.kept.append((rec, Kept.HELD))
            elif not selected:
                found.kept.append((rec, Kept.NOT_SELECTED))
            else:
                found.add(plan, plan.table, names, key, event)
                events[_norm(key)] = event
    return events


def _same_instant(plan: Plan, value: Any, recorded: Recorded) -> bool:
    if value is None:
        return False
    try:
        if recorded.event_key is not None:
            return plan.event_key(value) == recorded.event_key
        return plan.event_instant(value) == recorded.event_at
    except (TypeError, ValueError):  # no instant at all: not the recorded record
        return False


def _children(conn: Connection, table_of: Callable[[str], Table], dialect: str, plan: Plan,
              child: ChildPlan, recorded: list[Recorded], events: dict[tuple[str, ...], Any],
              lock: bool, found: Found) -> None:
    """Every child of a parent that goes; recorded children of parents gone and not held."""
    table, names = table_of(child.table), child.primary_key
    pk, fk = [table.c[n] for n in names], table.c[child.key]
    width = len(pk)
    going: set[tuple[str, ...]] = set()
    parent_ids = [key[0] for key in found.keys.get(plan.table, [])]  # those that go
    for chunk in chunks(parent_ids):
        stmt = select(*pk, fk).where(fk.in_(chunk)).order_by(*pk)
        for row in conn.execute(_select(stmt, dialect, lock)):
            going.add(_norm(row[:width]))
            found.add(plan, child.table, names, tuple(row[:width]), events[_norm(row[width:])])
    held = {_norm(k) for k in plan.held_keys}
    parent = table_of(plan.table).c[plan.primary_key[0]]
    left = [r for r in recorded if _norm(r.key[c] for c in names) not in going]
    for chunk in chunks(left):
        by_key = {_norm(r.key[c] for c in names): r for r in chunk}
        keys = [tuple(r.key[c] for c in names) for r in chunk]
        stmt = select(*pk, fk).where(_match(table, names, keys)).order_by(*pk)
        rows = conn.execute(_select(stmt, dialect, lock)).all()
        ids = list({row[width] for row in rows if row[width] is not None})
        there = {_norm((v,)) for v in conn.execute(
            select(parent).where(parent.in_(ids))).scalars()} if ids else set()
        for row in rows:
            rec, parent_key = by_key[_norm(row[:width])], _norm(row[width:])
            if parent_key in held:
                found.kept.append((rec, Kept.HELD))
            elif parent_key in there:
                found.kept.append((rec, Kept.PARENT_KEPT))
            else:
                found.add(plan, child.table, names, tuple(row[:width]), rec.event_at)


def _delete(conn: Connection, table: Table, dialect: str, names: tuple[str, ...],
            keys: list[Key], plan: Plan | None) -> None:
    for chunk in chunks(keys):
        stmt = table.delete().where(_match(table, names, chunk))
        if plan is not None:
            stmt = stmt.where(q.due(table, plan, dialect))
        deleted = conn.execute(stmt).rowcount
        if deleted != len(chunk):
            raise RuntimeError(f"{table.name}: deleted {deleted} rows of {len(chunk)} locked; "
                               "rolled back")
