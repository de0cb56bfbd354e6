"""One batch of a rule in one transaction, in the shape each database allows.

* PostgreSQL with a one-column key whose JSON the audit log writes as it is (integers,
  text, UUIDs): the whole batch is one statement (:func:`sql_statements.delete_batch`),
  the keys and event values coming back as JSON arrays.
* MariaDB >= 10.5 with integer keys and a range predicate: the batch and its children
  are locked and read as JSON arrays (``JSON_ARRAYAGG``), then deleted by key range.
* Everywhere else: the batch is selected and locked, its children deleted (with
  ``RETURNING`` where the database has it, else locked, deleted and counted), then
  the batch by key range. Every count must match what was locked.
* Anonymize rules: the locked rows are rewritten by the action's strategies.

The adapter (:class:`retention.adapters.sql.SqlAdapter`) opens the transaction, sets
its timeouts, writes the commit marker and calls the audit hook around :func:`run`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import sqlalchemy as sa
import structlog
from retention.adapters import anonymize
from retention.adapters import sql_statements as q
from retention.adapters.protocol import Batch, Removed
from sqlalchemy import Connection, Table, select

from retention.plan import ChildPlan, Plan, Predicate

log = structlog.get_logger("retention.adapters.sql")

# Key column types whose values PostgreSQL's JSON gives as the audit log writes them.
_JSON_KEYS = (sa.Integer, sa.String, sa.Uuid)


class Target(Protocol):
    """What a batch needs of its adapter."""

    engine: sa.Engine
    dialect: str
    use_returning: bool

    @property
    def supports_returning(self) -> bool: ...

    def table(self, name: str) -> Table: ...


def run(target: Target, conn: Connection, plan: Plan, after: tuple[Any, ...] | None) -> Batch:
    """The next batch of ``plan`` after the key ``after``, changed in ``conn``'s transaction."""
    table = target.table(plan.table)
    if plan.action.columns:
        return _anonymize(target, conn, table, plan, after)
    if one_statement(target, plan):
        return _delete_at_once(target, conn, table, plan, after)
    if _aggregated(target, plan):
        return _delete_aggregated(target, conn, table, plan, after)
    return _delete(target, conn, table, plan, after)


def one_statement(target: Target, plan: Plan) -> bool:
    """Whether a batch of ``plan`` runs as one statement (PostgreSQL, :func:`q.delete_batch`):
    a single-column key and key columns whose JSON is what the audit log has always
    written for them (integers, text, UUIDs), no child table that is the rule's own."""
    if target.dialect != "postgresql" or len(plan.primary_key) != 1:
        return False
    tables = [(plan.table, plan.primary_key)] + [(c.table, c.primary_key)
                                                 for c in plan.children]
    if any(c.table == plan.table for c in plan.children):
        return False
    return all(isinstance(target.table(name).c[col].type, _JSON_KEYS)
               for name, columns in tables for col in columns)


def _aggregated(target: Target, plan: Plan) -> bool:
    """Whether the database builds a batch's JSON arrays itself (MariaDB >= 10.5,
    ``JSON_ARRAYAGG``): integer keys and a date or time event column, so that no
    row passes through the driver."""
    version = target.engine.dialect.server_version_info or ()
    if not (getattr(target.engine.dialect, "is_mariadb", False) and version >= (10, 5)):
        return False
    if not target.use_returning:  # a server like MySQL or MariaDB < 10.5 (see above)
        return False
    if plan.predicate is not Predicate.RANGE or len(plan.primary_key) != 1:
        return False
    if any(c.table == plan.table or len(c.primary_key) != 1 for c in plan.children):
        return False
    return all(isinstance(target.table(name).c[col].type, sa.Integer)
               for name, col in [(plan.table, plan.primary_key[0])]
               + [(c.table, c.primary_key[0]) for c in plan.children])


def _delete_aggregated(target: Target, conn: Connection, table: Table, plan: Plan,
                       after: tuple[Any, ...] | None) -> Batch:
    """MariaDB: lock the batch and its children and read them as JSON arrays, then
    delete children and parents by key range; every count must match."""
    count, last, keys, events = conn.execute(
        q.locked_batch_json(table, plan, target.dialect, after)).one()
    if not count:
        return Batch((), 0, after)
    upto = (last,)
    removed = [_checked(Removed(plan.table, "delete", plan.primary_key, int(count), keys,
                                events))]
    for child in plan.children:
        ct = target.table(child.table)
        found, child_keys, child_events = conn.execute(
            q.children_json(table, ct, child, plan, target.dialect, after, upto)).one()
        deleted = conn.execute(ct.delete().where(q.children_in_range(
            table, ct, child.key, plan, target.dialect, after, upto))).rowcount
        if deleted != found:
            raise RuntimeError(f"{child.table}: deleted {deleted} rows of {found} locked; "
                               "rolled back")
        if found:
            removed.append(_checked(Removed(child.table, "delete", child.primary_key,
                                            int(found), child_keys, child_events)))
    deleted = conn.execute(q.delete_range(table, plan, target.dialect, after, upto)).rowcount
    if deleted != count:
        raise RuntimeError(f"{plan.table}: deleted {deleted} rows of {count} locked; "
                           "rolled back")
    return Batch((), int(count), upto, tuple(removed))


def _delete_at_once(target: Target, conn: Connection, table: Table, plan: Plan,
                    after: tuple[Any, ...] | None) -> Batch:
    children = [(c, target.table(c.table)) for c in plan.children]
    row = conn.execute(q.delete_batch(table, plan, after, children)).one()
    scanned, last = int(row[0]), row[1]
    if not scanned:
        return Batch((), 0, after)
    removed = []
    names = [(plan.table, plan.primary_key)] + [(c.table, c.primary_key)
                                                for c in plan.children]
    for i, (name, columns) in enumerate(names):
        count, keys, events = row[2 + 3 * i:5 + 3 * i]
        if count:
            removed.append(Removed(name, "delete", columns, int(count), keys, events))
    return Batch((), scanned, (last,), tuple(removed))


def _delete(target: Target, conn: Connection, table: Table, plan: Plan,
            after: tuple[Any, ...] | None) -> Batch:
    """Select and lock the batch, then delete its children and it by key range."""
    rows = conn.execute(q.select_batch(table, plan, target.dialect, after, lock=True)).all()
    if not rows:
        return Batch((), 0, after)
    width = len(plan.primary_key)
    last = tuple(rows[-1][:width])
    removed = [Removed.of(plan.table, "delete", plan.primary_key, rows,
                          [r[width] for r in rows])]
    events = {r[0]: r[width] for r in rows} if plan.children else {}
    for child in plan.children:
        removed.append(_delete_children(target, conn, table, plan, child, after, last, events))
    deleted = conn.execute(q.delete_range(table, plan, target.dialect, after, last)).rowcount
    if deleted != len(rows):
        raise RuntimeError(f"{plan.table}: deleted {deleted} rows of {len(rows)} locked; "
                           "rolled back")
    return Batch((), len(rows), last, tuple(r for r in removed if r.count))


def _delete_children(target: Target, conn: Connection, table: Table, plan: Plan,
                     child: ChildPlan, after: tuple[Any, ...] | None, last: tuple[Any, ...],
                     events: dict[Any, Any]) -> Removed:
    ct = target.table(child.table)
    pk = [ct.c[n] for n in child.primary_key]
    fk = ct.c[child.key]
    where = q.children_in_range(table, ct, child.key, plan, target.dialect, after, last)
    if target.supports_returning:
        rows = conn.execute(ct.delete().where(where).returning(*pk, fk)).all()
    else:
        lock = select(*pk, fk).where(where)
        rows = conn.execute(lock if target.dialect == "sqlite" else lock.with_for_update()
                            ).all()
        deleted = conn.execute(ct.delete().where(where)).rowcount
        if deleted != len(rows):
            raise RuntimeError(f"{child.table}: deleted {deleted} rows of {len(rows)} "
                               "locked; rolled back")
    width = len(pk)
    rows = sorted(rows, key=lambda r: tuple(r[:width]))
    return Removed.of(child.table, "delete", child.primary_key, rows,
                      [events[r[width]] for r in rows])


def _anonymize(target: Target, conn: Connection, table: Table, plan: Plan,
               after: tuple[Any, ...] | None) -> Batch:
    rows = conn.execute(q.select_batch(table, plan, target.dialect, after, lock=True)).all()
    if not rows:
        return Batch((), 0, after)
    width = len(plan.primary_key)
    keys, events = anonymize_rows(conn, table, plan, rows, width)
    changed = Removed.of(plan.table, "anonymize", plan.primary_key, keys, events)
    return Batch((), len(rows), tuple(rows[-1][:width]),
                 (changed,) if changed.count else ())


def anonymize_rows(conn: Connection, table: Table, plan: Plan, rows: Sequence[Any],
                   width: int) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """Anonymize the locked ``rows`` (key, event value, the action's columns); the keys
    and stored event values of the rows changed."""
    keys: list[tuple[Any, ...]] = []
    events: list[Any] = []
    updates: list[dict[str, Any]] = []
    not_null = [not table.c[a.column].nullable for a in plan.action.columns]
    for row in rows:
        old = row[width + 1:]
        new = [anonymize.apply(a, v, nn)
               for a, v, nn in zip(plan.action.columns, old, not_null, strict=True)]
        key = tuple(row[:width])
        if all(anonymize.same(o, n) for o, n in zip(old, new, strict=True)):
            # The pending predicate selected it, so SQL and the strategies disagree
            # on what is anonymized: a bug. Say so (the row stays due) instead of
            # writing the same value or failing the whole rule.
            log.warning("row_not_changed", table=plan.table,
                        key=dict(zip(plan.primary_key, key, strict=True)),
                        columns=[a.column for a in plan.action.columns])
            continue
        params = {f"k_{n}": v for n, v in zip(plan.primary_key, key, strict=True)}
        params.update({f"v_{a.column}": v for a, v in zip(plan.action.columns, new,
                                                            strict=True)})
        updates.append(params)
        keys.append(key)
        events.append(row[width])
    if updates:
        stmt = table.update().where(
            *(table.c[n] == sa.bindparam(f"k_{n}") for n in plan.primary_key)
        ).values({a.column: sa.bindparam(f"v_{a.column}") for a in plan.action.columns})
        conn.execute(stmt, updates)
    return keys, events


def _checked(removed: Removed) -> Removed:
    """``removed`` when its JSON arrays are whole, each with one value per record (an
    aggregate the server cut short must never become an audit entry)."""
    if len(json.loads(removed.keys)) != removed.count or \
            len(json.loads(removed.events)) != removed.count:
        raise RuntimeError(f"{removed.table}: the batch's keys came back incomplete; rolled back")
    return removed
