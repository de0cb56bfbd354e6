"""Wholly due PostgreSQL partitions: proven due under a lock, recorded, detached and dropped.

A delete rule on a table partitioned by range on its event column may remove a
partition whose rows are all due with ``ALTER TABLE ... DETACH PARTITION`` and
``DROP TABLE`` instead of deleting them batch by batch. Only when nothing can
go wrong does that happen (anything else leaves the rows to the batches):

* the table: PostgreSQL, partitioned by ``RANGE`` on the event column alone, which
  the rule compares as a native date or time (the ``range`` predicate, no
  ``event_format``); a delete rule without ``children`` and with
  ``drop_partitions`` on (the default); no ``DELETE`` trigger or rule (a drop
  fires none) and no publication that replicates deletes (a drop reaches no
  subscriber);
* the partition: a plain table (never the ``DEFAULT`` partition, never one that is
  partitioned itself), owned by retention's user (``DETACH`` and ``DROP`` need its
  owner), whose range ends at or before the first instant after the cutoff (so no
  row it could ever hold is not yet due), that holds rows and every one of them is
  due by the rule's own predicate: its ``where``, not held, not referenced by an
  undeclared foreign key, a readable event (counted in one scan).

The drop is one transaction in the target (:func:`drop`): ``lock_timeout`` and
``statement_timeout`` as a batch has, ``LOCK TABLE partition IN SHARE MODE`` (no
row of it can change, reads go on), every check again, the commit marker (when
the batch has an id), the keys and event values read in key order in chunks and
handed to ``record`` (the audit entries a batch would write), then ``DETACH``
(which takes the parent's ``ACCESS EXCLUSIVE`` lock for a moment) and ``DROP``,
``before_commit``, commit. A kill at any point before the commit leaves the
partition attached with all its rows; the audit protocol is the batches' own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from retention.adapters import sql_statements as q
from retention.adapters.protocol import Removed
from sqlalchemy import Connection, Engine, MetaData, Table, select, tuple_

from retention.db import writing
from retention.plan import Plan, Predicate

READ_CHUNK = 50_000  # keys read and recorded per statement while the partition is locked
_TICK = {True: dt.timedelta(days=1), False: dt.timedelta(microseconds=1)}  # date / time
_RANGE = re.compile(r"^FOR VALUES FROM \((?P<lower>.+)\) TO \((?P<upper>.+)\)$", re.S)
_DELETE_TRIGGER = 8  # pg_trigger.tgtype bit TRIGGER_TYPE_DELETE

# Called with each chunk of a partition's rows (one compact group, as a batch reports
# them) and the open connection of the dropping transaction, before the drop.
Record = Callable[[Sequence[Removed], Connection], None]
# Called after the drop, just before the commit, with the same connection.
BeforeCommit = Callable[[Connection], None]


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of a rule's table and what a run does with it."""

    name: str
    schema: str
    bound: str  # as PostgreSQL shows it: FOR VALUES FROM (...) TO (...), or DEFAULT
    drop: bool
    reason: str  # why it is dropped, or why its due rows go through batches instead
    rows: int = 0  # rows it holds (counted for the partitions whose range is due)


@dataclass(frozen=True, slots=True)
class Layout:
    """A rule's partitioned table: its partitions, or why none of them may be dropped."""

    table: str
    key: str  # how the table is partitioned, e.g. "range on completed_at"
    reason: str | None  # why no partition is dropped (then ``partitions`` is empty)
    partitions: tuple[Partition, ...] = ()
    statements: tuple[str, ...] = ()  # the DDL a run executes for the partitions it drops

    @property
    def dropped(self) -> tuple[Partition, ...]:
        return tuple(p for p in self.partitions if p.drop)

    def lines(self) -> list[str]:
        """What ``retention plan`` says: the decision for each partition, and why."""
        head = f"partitions of {self.table} ({self.key})"
        if self.reason is not None:
            return [f"{head}: none dropped: {self.reason}"]
        shown = [f"{head}: {len(self.dropped)} of {len(self.partitions)} dropped whole "
                 "(DETACH PARTITION + DROP TABLE, every row audited), the others' due rows "
                 "go in batches"]
        shown += [f"  {'drop' if p.drop else 'keep'} {p.name}: {p.reason}"
                  for p in self.partitions]
        return shown


def _is_date(plan: Plan) -> bool:
    return not isinstance(plan.bound, dt.datetime) and isinstance(plan.bound, dt.date)


def layout(conn: Connection, plan: Plan, table: Table, only: str | None = None
           ) -> Layout | None:
    """The partitions of ``plan``'s table (or just the one named ``only``) and the
    decision for each; None when the table is not partitioned (or the database is not
    PostgreSQL). Reads only."""
    if conn.dialect.name != "postgresql":
        return None
    found = conn.execute(sa.text(
        "SELECT c.oid, n.nspname, pt.partstrat, pt.partnatts, pt.partattrs[0] AS attnum, "
        "a.attname, pg_has_role(c.relowner, 'USAGE') AS owned "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_partitioned_table pt ON pt.partrelid = c.oid "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0] "
        "WHERE c.relname = :t AND n.nspname = COALESCE(:s, current_schema())"),
        {"t": table.name, "s": table.schema}).first()
    if found is None:
        return None
    strategy = {"r": "range", "l": "list", "h": "hash"}.get(found.partstrat, found.partstrat)
    columns = found.attname if found.partnatts == 1 and found.attnum else "an expression"
    key = f"{strategy} on {columns}" + (" and more" if found.partnatts > 1 else "")
    why = _table_reason(conn, plan, found)
    if why is not None:
        return Layout(table.name, key, why)
    rows = conn.execute(sa.text(
        "SELECT c.oid, c.relname, n.nspname, c.relkind, pg_get_expr(c.relpartbound, c.oid) "
        "AS bound, pg_has_role(c.relowner, 'USAGE') AS owned "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE i.inhparent = :parent AND c.relname = COALESCE(:only, c.relname) "
        "ORDER BY c.relname"), {"parent": found.oid, "only": only}).all()
    parts = tuple(_partition(conn, plan, table, row, found.nspname) for row in rows)
    parent = _qualified(conn, found.nspname, table.name)
    shown: list[str] = []
    for p in parts:
        if p.drop:
            qualified = _qualified(conn, p.schema, p.name)
            shown += [f"LOCK TABLE {qualified} IN SHARE MODE",
                      f"ALTER TABLE {parent} DETACH PARTITION {qualified}",
                      f"DROP TABLE {qualified}"]
    return Layout(table.name, key, None, parts, tuple(shown))


def _table_reason(conn: Connection, plan: Plan, found: Any) -> str | None:
    """Why no partition of the table may be dropped, or None."""
    if plan.action.columns:
        return "an anonymize rule keeps its rows"
    if not plan.drop_partitions:
        return "drop_partitions: false"
    if plan.children:
        return "the rule declares children, which go with their parents in batches"
    if found.partstrat != "r" or found.partnatts != 1 or found.attname != plan.event_column:
        return f"the table is not partitioned by range on {plan.event_column} alone"
    if plan.predicate is not Predicate.RANGE or plan.event_format is not None:
        return f"{plan.event_column} is not compared as a native date or time"
    if not found.owned:
        return "retention's database user does not own the table (DETACH needs its owner)"
    return _side_effects(conn, found.oid, "the table")


def _side_effects(conn: Connection, oid: int, what: str) -> str | None:
    """A DELETE trigger or rule, or a publication of deletes, on ``oid``: a drop would
    skip what a DELETE does there. One statement."""
    triggers, rules, published = conn.execute(sa.text(
        "SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = :oid AND NOT tgisinternal "
        f"AND tgtype & {_DELETE_TRIGGER} <> 0), "
        "(SELECT count(*) FROM pg_rewrite WHERE ev_class = :oid AND ev_type = '4'), "
        "(SELECT count(*) FROM pg_publication p JOIN pg_publication_tables t "
        "ON t.pubname = p.pubname JOIN pg_class c ON c.relname = t.tablename "
        "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = t.schemaname "
        "WHERE p.pubdelete AND c.oid = :oid)"), {"oid": oid}).one()
    if triggers:
        return f"{what} has a DELETE trigger, which a drop would not fire"
    if rules:
        return f"{what} has a DELETE rule, which a drop would not apply"
    if published:
        return f"{what} is published for logical replication, and a drop reaches no subscriber"
    return None


def _partition(conn: Connection, plan: Plan, table: Table, row: Any, schema: str
               ) -> Partition:
    """The decision for one partition (``row`` from the catalog)."""
    bound = str(row.bound or "")

    def keep(reason: str, rows: int = 0) -> Partition:
        return Partition(row.relname, row.nspname, bound, False, reason, rows)

    if bound == "DEFAULT":
        return keep("the default partition is never dropped")
    if row.relkind == "p":
        return keep("partitioned itself: never dropped")
    if row.relkind != "r":
        return keep("not a plain table")
    if row.nspname != schema:
        return keep(f"it lives in schema {row.nspname}, not the table's")
    match = _RANGE.match(bound)
    upper = _literal(match.group("upper")) if match else None
    if upper is None:
        return keep(f"its range has no known end ({bound})")
    column = table.c[plan.event_column]
    try:
        limit = plan.bound + _TICK[_is_date(plan)]
    except OverflowError:  # a cutoff at the end of the calendar
        return keep("the cutoff is at the end of the calendar")
    ends_in_time = conn.execute(select(
        sa.cast(sa.literal(upper, sa.Text), column.type) <= sa.literal(limit, column.type)
    )).scalar_one()
    if not ends_in_time:
        return keep(f"its range ends at {upper}, after the cutoff")
    if not row.owned:
        return keep("retention's database user does not own it (DROP needs its owner)")
    why = _side_effects(conn, row.oid, "it")
    if why is not None:
        return keep(why)
    part = _as_partition(table, row.relname)
    total, due, held = conn.execute(select(
        sa.func.count(),
        sa.func.count(sa.case((q.due(part, plan, "postgresql"), sa.literal_column("1")))),
        sa.func.count(sa.case((q.held(part, plan, "postgresql"), sa.literal_column("1")))),
    ).select_from(part)).one()
    if not total:
        return keep("empty: nothing to remove")
    if due < total:
        verb = "is" if total - due == 1 else "are"
        return keep(f"{total - due} of its {total} rows {verb} not due ({held} held; the "
                    "others filtered out by where, referenced or unreadable)", total)
    return Partition(row.relname, row.nspname, bound, True,
                     f"its range ends at {upper}, at or before the cutoff, and all {total} "
                     "rows are due", total)


def _literal(text: str) -> str | None:
    """The value of one bound of a single-column range: a quoted literal (MINVALUE and
    MAXVALUE are none)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        body = text[1:-1]
        return body.replace("''", "'") if "'" not in body.replace("''", "") else None
    return None


def _as_partition(table: Table, name: str) -> Table:
    """The partition (in the table's schema) as a Table with the table's columns, for the
    due predicate and the key reads."""
    return table.to_metadata(MetaData(), name=name)


def _qualified(conn: Connection, schema: str, name: str) -> str:
    quote = conn.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(name)}"


def drop(engine: Engine, plan: Plan, table: Table, partition: Partition, record: Record,
         before_commit: BeforeCommit, mark: Callable[[Connection], None] | None,
         timeouts: Callable[[Connection, Plan], None]) -> int | None:
    """Detach and drop ``partition`` in one transaction, its rows recorded first.

    ``mark`` writes the batch's commit marker (before any row is recorded, so a marker
    table still to be created fails the attempt before anything is recorded). Returns
    the rows dropped, or None when, under the lock, the partition is no longer wholly
    due (nothing changed; its rows go through batches). Raises the driver's errors (a
    lock timeout, a dependent view, a foreign key) and whatever ``record``,
    ``before_commit`` or ``mark`` raise; then the transaction rolls back.
    """
    with writing(engine) as conn:
        timeouts(conn, plan)
        qualified = _qualified(conn, partition.schema, partition.name)
        _lock(conn, qualified)
        now = layout(conn, plan, table, only=partition.name)
        again = next((p for p in now.partitions if p.name == partition.name), None) \
            if now is not None else None
        if again is None or not again.drop:
            return None  # nothing changed: the commit only ends the lock
        if mark is not None:
            mark(conn)
        count = 0
        for rows in _rows(conn, plan, _as_partition(table, partition.name)):
            record(rows, conn)
            count += sum(r.count for r in rows)
        if count != again.rows:  # the lock forbids it; never drop what was not recorded
            raise RuntimeError(f"{partition.name}: read {count} rows of {again.rows} counted")
        _detach(conn, _qualified(conn, partition.schema, table.name), qualified)
        _drop(conn, qualified)
        before_commit(conn)
    return count


def _lock(conn: Connection, qualified: str) -> None:
    conn.exec_driver_sql(f"LOCK TABLE {qualified} IN SHARE MODE")


def _detach(conn: Connection, parent: str, qualified: str) -> None:
    conn.exec_driver_sql(f"ALTER TABLE {parent} DETACH PARTITION {qualified}")


def _drop(conn: Connection, qualified: str) -> None:
    conn.exec_driver_sql(f"DROP TABLE {qualified}")


def _rows(conn: Connection, plan: Plan, part: Table) -> Iterator[list[Removed]]:
    """The partition's rows in key order, ``READ_CHUNK`` at a time, as the compact group a
    batch reports: keys and event values as the driver reads them (nothing is computed
    per row; the audit log reads the values with the plan's rules)."""
    pk = [part.c[n] for n in plan.primary_key]
    width = len(pk)
    after: tuple[Any, ...] | None = None
    while True:
        stmt = select(*pk, part.c[plan.event_column]).order_by(*pk).limit(READ_CHUNK)
        if after is not None:
            stmt = stmt.where((pk[0] > after[0]) if width == 1 else tuple_(*pk) > tuple_(*after))
        found = conn.execute(stmt).all()
        if not found:
            return
        yield [Removed.of(plan.table, "delete", plan.primary_key, found,
                          [r[width] for r in found])]
        if len(found) < READ_CHUNK:
            return
        after = tuple(found[-1][:width])
