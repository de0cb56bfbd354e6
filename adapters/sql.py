"""The SQL adapter: SQLite, PostgreSQL and MariaDB/MySQL through SQLAlchemy 2 Core.

Database differences live here, keyed on the dialect name:

* SQLite takes its write lock at the start of a batch (``BEGIN IMMEDIATE``) and
  has no ``FOR UPDATE``; PostgreSQL and MariaDB lock the selected rows.
* PyMySQL and SQLite drop the offset of an aware datetime, so aware bounds are
  bound as naive UTC there and MariaDB sessions run with ``time_zone = '+00:00'``.
* ``DELETE ... RETURNING`` is used where the dialect has it (SQLite >= 3.35,
  PostgreSQL, MariaDB); elsewhere the locked selection is deleted and the row
  count must match it. The shapes of a batch live in :mod:`sql_batch`, what a
  reflected column holds in :mod:`sql_types`.
* Commit markers (``retention_batch_marks``, :mod:`sql_marks`): a batch given an
  id that changes rows writes a row there in its own transaction, so whether it
  committed can be proven later. Replay's checks and deletes live in :mod:`sql_replay`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from retention.adapters import (
    sql_batch,
    sql_counts,
    sql_events,
    sql_foreign_keys,
    sql_partitions,
    sql_replay,
    sql_types,
)
from retention.adapters import sql_statements as q
from retention.adapters.protocol import (
    AffectedRow,
    Batch,
    BatchHook,
    DueCount,
    Recorded,
    Replayed,
    ReplicaLag,
)
from retention.adapters.sql_marks import Marks
from retention.adapters.sql_replicas import Replicas
from sqlalchemy import Connection, MetaData, Table, select
from sqlalchemy.exc import NoSuchTableError, SAWarning

from retention.db import create_engine, safe_url, writing
from retention.errors import SourceError
from retention.plan import (
    ColumnInfo,
    ForeignKeyInfo,
    Plan,
    TableInfo,
)
from retention.policy.rules import Source
from retention.stored import StoredForms

_POSTCOMPILE = re.compile(r"\(?__\[POSTCOMPILE_\w+\]\)?")
_GROUP_CONCAT_MAX = 1 << 32  # bytes: more than max_allowed_packet lets a result hold
# A column type SQLAlchemy does not know reflects as NullType with a warning on stderr;
# retention names such types itself where they matter (sql_types.declared_types).
warnings.filterwarnings("ignore", message="Did not recognize type", category=SAWarning)


def _match(table: Table, keys: list[dict[str, Any]]) -> tuple[list[str], list[Any], Any]:
    """The key column names and columns of ``keys``, and ``key IN (keys)`` for them."""
    names = list(keys[0])
    cols = [table.c[n] for n in names]
    if len(cols) == 1:
        return names, cols, cols[0].in_([k[names[0]] for k in keys])
    return names, cols, sa.tuple_(*cols).in_([tuple(k[n] for n in names) for k in keys])


def _missing_file(engine: sa.Engine) -> str | None:
    """The path of a SQLite database file that does not exist (connecting would create it)."""
    url = engine.url
    if engine.dialect.name != "sqlite" or url.query.get("uri") in ("true", "1"):
        return None  # SQLite URI filenames (file:...?mode=ro) say themselves what may happen
    path = url.database or ""
    return path if path not in ("", ":memory:") and not Path(path).exists() else None


class SqlAdapter:
    """Adapter for every database SQLAlchemy reaches (``adapter: sql``, option ``url``)."""

    name = "sql"
    # Whether to use DELETE ... RETURNING where the database has it. False takes, on any
    # database, the path of a server without it (MySQL; MariaDB before 10.5): lock the
    # selected rows, delete exactly them and check the counts. The tests set it to False
    # to prove that path on MariaDB (tests/adapters/test_sql_without_returning.py).
    use_returning = True

    def __init__(self, source: Source) -> None:
        self.source = source
        raw = str(source.options.get("url") or "")
        self.url = safe_url(raw)
        self.raw_url = raw
        self.engine = create_engine(raw)
        self.dialect = self.engine.dialect.name
        missing = _missing_file(self.engine)
        if missing is not None:
            self.engine.dispose()
            raise SourceError(f"the SQLite database file {missing!r} does not exist (retention "
                              "never creates a source database)")
        self.schema: str | None = source.options.get("schema")
        self._tables: dict[str, Table] = {}
        self._foreign_keys: list[ForeignKeyInfo] | None = None
        self._folds: bool | None = None  # table names compared without regard to case
        self._stored: set[str] | None = None  # table names as stored, read once
        self._forms: dict[tuple[Any, ...], StoredForms] = {}
        if self.dialect == "sqlite":
            sql_events.register(self.engine)
        self.marks = Marks(self.engine, self.schema, self.url)
        self.replicas = Replicas(self.engine, source.options.get("replicas") or ())

    @property
    def supports_returning(self) -> bool:
        return self.use_returning and bool(self.engine.dialect.delete_returning)

    # -- schema -------------------------------------------------------------------

    def table(self, name: str) -> Table:
        if name not in self._tables:  # the tables a foreign key names are not needed
            self._tables[name] = Table(name, MetaData(), autoload_with=self.engine,
                                       schema=self.schema, resolve_fks=False)
        return self._tables[name]

    def reflect(self, table: str) -> TableInfo | None:
        """``table``'s columns and primary key, or None if the source has no such table.

        Where the database compares table names without regard to case, a name
        spelled otherwise than the table is stored counts as missing (validation
        suggests the stored spelling): foreign keys and reports name tables as
        stored, and SQLAlchemy reflects a misspelled SQLite table only in part.
        """
        if self._name_folding() and table not in self._stored_names():
            return None
        try:
            reflected = self.table(table)
        except NoSuchTableError:
            return None
        unknown = {c.name for c in reflected.columns if isinstance(c.type, sa.types.NullType)}
        names: dict[str, str] = {}
        if unknown:
            with self.engine.connect() as conn:
                names = sql_types.declared_types(conn, self.dialect, table, self.schema)
        columns = {c.name: ColumnInfo(c.name, names.get(c.name, str(c.type)),
                                      sql_types.temporal(c.type, self.dialect),
                                      bool(c.nullable), isinstance(c.type, sa.String),
                                      sql_types.python_type(c.type),
                                      **sql_types.domain(c.type, self.dialect))
                   for c in reflected.columns}
        return TableInfo(table, columns, tuple(c.name for c in reflected.primary_key.columns))

    def tables(self) -> list[str]:
        return sorted(sa.inspect(self.engine).get_table_names(schema=self.schema))

    def foreign_keys_into(self, table: str) -> list[ForeignKeyInfo]:
        """Every declared foreign key that references ``table``, from any schema.

        SQLite too: our connections do not enforce foreign keys there, but the
        applications that own the data (Django, for one) do, so a declared key
        counts on every database and a delete never orphans a row the application
        considers referenced. Where the database compares table names without
        regard to case (SQLite; MariaDB with ``lower_case_table_names``), so does
        this. Reflected once per adapter (:mod:`sql_foreign_keys`).
        """
        if self._foreign_keys is None:
            with self.engine.connect() as conn:
                self._foreign_keys = sql_foreign_keys.into(conn, self.dialect, self.schema)
        wanted = self._name_key(table)
        return [dataclasses.replace(fk, referred=table)
                for fk in self._foreign_keys if self._name_key(fk.referred) == wanted]

    def _stored_names(self) -> set[str]:
        """The source's table names as stored, read once (each compilation asks)."""
        if self._stored is None:
            self._stored = set(self.tables())
        return self._stored

    def _name_folding(self) -> bool:
        if self._folds is None:
            self._folds = sql_foreign_keys.folds_names(self.engine)
        return self._folds

    def _name_key(self, name: str) -> str:
        return name.casefold() if self._name_folding() else name

    def cascades_to(self, table: str) -> list[str]:
        """Tables a delete from ``table`` changes by itself (ON DELETE CASCADE / SET NULL).

        On SQLite as elsewhere (see :meth:`foreign_keys_into`): there the
        application's connection would cascade, ours would orphan the rows. A table
        of another schema is named ``schema.table``.
        """
        return sorted({fk.qualified for fk in self.foreign_keys_into(table)
                       if fk.ondelete in ("CASCADE", "SET NULL")})

    def stored_forms(self, table: str, column: str, date: bool, naive_zone: str,
                     date_zone: str) -> StoredForms | None:
        """What ``column`` holds, where any column may hold any type (SQLite), else None.

        Counted once per adapter (one aggregate query). Raises the driver's errors.
        """
        if self.dialect != "sqlite":
            return None
        key = (table, column, date, naive_zone, date_zone)
        if key not in self._forms:
            with self.engine.connect() as conn:
                self._forms[key] = sql_events.census(conn, self.table(table), column, date,
                                                     naive_zone, date_zone)
        return self._forms[key]

    # -- reading ------------------------------------------------------------------

    # count(children=False) leaves the declared children out (a run counts them batch by
    # batch; a scan of each child table saved). Not in the Protocol: see run.enforce.
    counts_children_apart = True

    def count(self, plan: Plan, ahead: Sequence[Plan] = (), children: bool = True
              ) -> DueCount:
        """One scan of the rule's table for all its figures (:func:`sql_counts.tally`), then one
        statement per declared child (unless ``children`` is False: then none)."""
        table = self.table(plan.table)
        with self.engine.connect() as conn:
            found = conn.execute(sql_counts.tally(table, plan, self.dialect, ahead)).one()._mapping
            counted = {
                child.table: conn.execute(
                    sql_counts.count_children(table, self.table(child.table), child.key, plan,
                                     self.dialect)
                ).scalar_one()
                for child in plan.children if children
            }
        return DueCount(
            due=int(found["due"]), held=int(found["held"]), total=int(found["total"]),
            oldest_due_event=sql_events.oldest_instant(plan, found["oldest"]),
            children=counted,
            blocked={name: int(found[f"blocked_{i}"])
                     for i, name in enumerate(sql_counts.blocking_tables(plan))},
            unreadable=int(found["unreadable"]),
            due_ahead=tuple(int(found[f"due_ahead_{i}"]) for i in range(len(ahead))),
        )

    def sample_keys(self, plan: Plan, limit: int) -> list[dict[str, Any]]:
        table = self.table(plan.table)
        pk = [table.c[n] for n in plan.primary_key]
        stmt = select(*pk).where(q.due(table, plan, self.dialect))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(*pk).limit(limit)).all()
        return [dict(zip(plan.primary_key, row, strict=True)) for row in rows]

    def exists(self, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.read(table, keys, [])

    def read(self, table: str, keys: list[dict[str, Any]], columns: list[str]
             ) -> list[dict[str, Any]]:
        if not keys:
            return []
        reflected = self.table(table)
        _names, cols, match = _match(reflected, keys)
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols, *(reflected.c[c] for c in columns))
                                .where(match)).all()
        return [dict(row._mapping) for row in rows]

    def statements(self, plan: Plan) -> list[str]:
        """The statements of a rule's first batch (later batches start after the last key
        of the one before)."""
        table = self.table(plan.table)
        shown: list[Any] = []
        if plan.action.columns:
            values = {a.column: None for a in plan.action.columns}
            shown += [q.select_batch(table, plan, self.dialect, None, lock=True),
                      table.update().where(q.key_of(table, plan) == sa.bindparam("key"))
                      .values(values)]
        elif sql_batch.one_statement(self, plan):
            shown.append(q.delete_batch(table, plan, None,
                                        [(c, self.table(c.table)) for c in plan.children]))
        else:
            # the last key the select locked, bound per batch
            last: tuple[Any, ...] = tuple(sa.bindparam(f"last_{n}") for n in plan.primary_key)
            shown.append(q.select_batch(table, plan, self.dialect, None, lock=True))
            for child in plan.children:
                ct = self.table(child.table)
                shown.append(ct.delete().where(q.children_in_range(
                    table, ct, child.key, plan, self.dialect, None, last)))
            shown.append(q.delete_range(table, plan, self.dialect, None, last))
        return [self._render(stmt) for stmt in shown]

    def _render(self, stmt: Any) -> str:
        compiled = stmt.compile(dialect=self.engine.dialect)
        text = _POSTCOMPILE.sub("(:keys of the batch)", str(compiled)).strip()
        params = {k: v for k, v in compiled.params.items() if v is not None}
        if params:
            text += "\n-- parameters: " + ", ".join(
                f"{k}={v.isoformat() if hasattr(v, 'isoformat') else repr(v)}"
                for k, v in params.items()
            )
        return text

    # -- changing -----------------------------------------------------------------

    def run_batch(self, plan: Plan, after: tuple[Any, ...] | None, hook: BatchHook,
                  batch_id: str | None = None) -> Batch:
        return self.marks.creating(batch_id is not None,
                                   lambda: self._run_batch(plan, after, hook, batch_id))

    def _run_batch(self, plan: Plan, after: tuple[Any, ...] | None, hook: BatchHook,
                   batch_id: str | None) -> Batch:
        self.table(plan.table)  # reflected (once) before the write transaction begins
        with writing(self.engine) as conn:
            self._timeouts(conn, plan)
            batch = sql_batch.run(self, conn, plan, after)
            if batch_id is not None and batch.changed:
                self.marks.write(conn, batch_id)
            hook(batch, conn)
        return batch

    # -- whole partitions (sql_partitions) -------------------------------------------

    def partitions(self, plan: Plan) -> sql_partitions.Layout | None:
        """The partitions of the plan's table and which a run would drop whole; None when
        the table is not partitioned. Reads only; raises the driver's errors."""
        if self.dialect != "postgresql":
            return None
        with self.engine.connect() as conn:
            return sql_partitions.layout(conn, plan, self.table(plan.table))

    def drop_partition(self, plan: Plan, partition: sql_partitions.Partition,
                       record: sql_partitions.Record, before_commit: sql_partitions.BeforeCommit,
                       batch_id: str | None = None) -> int | None:
        """Detach and drop a wholly due partition, its rows given to ``record`` first, with
        the commit marker of ``batch_id`` as a batch writes it (:func:`sql_partitions.drop`).
        """
        def mark(conn: Connection) -> None:
            assert batch_id is not None
            self.marks.write(conn, batch_id)

        return self.marks.creating(batch_id is not None, lambda: sql_partitions.drop(
            self.engine, plan, self.table(plan.table), partition, record, before_commit,
            None if batch_id is None else mark, self._timeouts))

    # -- commit markers and replay -------------------------------------------------

    def committed(self, batch_ids: list[str]) -> set[str]:
        return self.marks.committed(batch_ids)

    def forget(self, batch_ids: list[str]) -> None:
        self.marks.forget(batch_ids)

    def replay(self, plan: Plan, recorded: list[Recorded], hook: BatchHook | None,
               batch_id: str | None = None) -> Replayed:
        return self.marks.creating(hook is not None and batch_id is not None,
                                   lambda: self._replay(plan, recorded, hook, batch_id))

    def _replay(self, plan: Plan, recorded: list[Recorded], hook: BatchHook | None,
                batch_id: str | None) -> Replayed:
        apply = hook is not None
        with writing(self.engine) if apply else self.engine.connect() as conn:
            if apply:
                self._timeouts(conn, plan)
            found = sql_replay.find(conn, self.table, self.dialect, plan, recorded, lock=apply)
            rows = tuple(found.rows)
            if hook is not None:
                if plan.action.columns:  # anonymize the chosen rows again, still pending
                    table = self.table(plan.table)
                    names = plan.primary_key
                    keys, events = sql_batch.anonymize_rows(conn, table, plan, sql_replay.pending(
                        conn, table, self.dialect, plan, found), len(names))
                    rows = tuple(AffectedRow(plan.table, dict(zip(names, k, strict=True)),
                                             "anonymize", plan.event_instant(e),
                                             plan.due_instant(e), e)
                                 for k, e in zip(keys, events, strict=True))
                else:
                    sql_replay.delete(conn, self.table, self.dialect, plan, found)
                if batch_id is not None and rows:
                    self.marks.write(conn, batch_id)
                hook(Batch(rows, len(recorded), None), conn)
        return Replayed(rows, tuple(found.kept))

    def _timeouts(self, conn: Connection, plan: Plan) -> None:
        """Bound how long a batch waits for locks and runs (numbers, never policy text), in
        one round trip."""
        lock_ms = max(1, int(plan.lock_timeout * 1000))
        statement_ms = max(1, int(plan.statement_timeout * 1000))
        if self.dialect == "postgresql":  # set_config(..., true) is SET LOCAL
            conn.execute(sa.text("SELECT set_config('lock_timeout', :lock, true), "
                                 "set_config('statement_timeout', :statement, true)"),
                         {"lock": str(lock_ms), "statement": str(statement_ms)})
        elif self.dialect in ("mysql", "mariadb"):
            settings = [f"innodb_lock_wait_timeout = {max(1, round(plan.lock_timeout))}"]
            if getattr(self.engine.dialect, "is_mariadb", False):
                settings += [f"max_statement_time = {plan.statement_timeout:.3f}",
                             # JSON_ARRAYAGG is cut at this length: arrays must come back whole
                             f"group_concat_max_len = {_GROUP_CONCAT_MAX}"]
            else:
                settings.append(f"max_execution_time = {statement_ms}")
            conn.exec_driver_sql("SET SESSION " + ", ".join(settings))

    def replica_lag(self) -> list[ReplicaLag]:
        """How far each replica is behind (:mod:`sql_replicas`); raises only when a
        PostgreSQL primary cannot be asked."""
        return self.replicas.lag()

    def close(self) -> None:
        self.replicas.close()
        with contextlib.suppress(Exception):  # closing must never mask the error in flight
            self.engine.dispose()
