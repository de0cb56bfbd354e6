"""The SQL adapter: SQLite, PostgreSQL and MariaDB/MySQL through SQLAlchemy 2 Core.

Database differences live here, keyed on the dialect name:

* SQLite takes its write lock at the start of a batch (``BEGIN IMMEDIATE``) and
  has no ``FOR UPDATE``; PostgreSQL and MariaDB lock the selected rows.
* PyMySQL and SQLite drop the offset of an aware datetime, so aware bounds are
  bound as naive UTC there and MariaDB sessions run with ``time_zone = '+00:00'``.
* ``DELETE ... RETURNING`` is used where the dialect has it (SQLite >= 3.35,
  PostgreSQL, MariaDB); elsewhere the locked selection is deleted and the row
  count must match it.
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
import structlog
from retention.adapters import anonymize, sql_events, sql_foreign_keys, sql_replay
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
from retention.plan import ColumnInfo, ColumnKind, ForeignKeyInfo, Plan, TableInfo
from retention.policy.rules import Source
from retention.stored import StoredForms

log = structlog.get_logger("retention.adapters.sql")

_POSTCOMPILE = re.compile(r"\(?__\[POSTCOMPILE_\w+\]\)?")
# A column type SQLAlchemy does not know reflects as NullType with a warning on stderr;
# retention names such types itself where they matter (SqlAdapter._declared_types).
warnings.filterwarnings("ignore", message="Did not recognize type", category=SAWarning)


def _match(table: Table, keys: list[dict[str, Any]]) -> tuple[list[str], list[Any], Any]:
    """The key column names and columns of ``keys``, and ``key IN (keys)`` for them."""
    names = list(keys[0])
    cols = [table.c[n] for n in names]
    if len(cols) == 1:
        return names, cols, cols[0].in_([k[names[0]] for k in keys])
    return names, cols, sa.tuple_(*cols).in_([tuple(k[n] for n in names) for k in keys])


def _python_type(kind: Any) -> type | None:
    try:
        found = kind.python_type
    except NotImplementedError:
        return None
    return found if isinstance(found, type) else None


_MYSQL_INT_BITS = {"TINYINT": 8, "SMALLINT": 16, "MEDIUMINT": 24, "INTEGER": 32, "INT": 32,
                   "BIGINT": 64}


def _int_bits(kind: Any, dialect: str) -> int:
    """How many bits an integer column stores on this database."""
    if dialect == "sqlite":
        return 64  # SQLite stores every integer in up to 8 bytes, whatever the declared type
    if dialect in ("mysql", "mariadb"):
        return _MYSQL_INT_BITS.get(type(kind).__name__, 64)
    if isinstance(kind, sa.SmallInteger):
        return 16
    return 64 if isinstance(kind, sa.BigInteger) else 32


def _domain(kind: Any, dialect: str) -> dict[str, Any]:
    """The ``ColumnInfo`` fields that say which values the column compares with."""
    if isinstance(kind, sa.Boolean):
        return {"kind": ColumnKind.BOOLEAN}
    if isinstance(kind, sa.Integer):
        bits = _int_bits(kind, dialect)
        low, high = (0, 2**bits - 1) if getattr(kind, "unsigned", False) else (
            -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if dialect in ("mysql", "mariadb") and getattr(kind, "display_width", None) == 1 \
                and type(kind).__name__ == "TINYINT":  # how MySQL spells BOOLEAN
            return {"kind": ColumnKind.BOOLEAN, "low": low, "high": high}
        return {"kind": ColumnKind.INTEGER, "low": low, "high": high}
    if isinstance(kind, sa.Float):
        return {"kind": ColumnKind.FLOAT}
    if isinstance(kind, sa.Numeric):
        precision, scale = kind.precision, kind.scale or 0
        if precision is None:
            return {"kind": ColumnKind.NUMERIC}
        largest = float(10 ** (precision - scale)) - 10.0**-scale
        return {"kind": ColumnKind.NUMERIC, "low": -largest, "high": largest}
    if isinstance(kind, sa.Enum):
        return {"kind": ColumnKind.ENUM, "enums": tuple(str(e) for e in kind.enums)}
    if isinstance(kind, sa.String) and type(kind).__name__ != "SET":
        return {"kind": ColumnKind.TEXT, "length": kind.length}
    if isinstance(kind, sa.DateTime):
        return {"kind": ColumnKind.TIMESTAMP}
    if isinstance(kind, sa.Date):
        return {"kind": ColumnKind.DATE}
    return {}


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
        self._forms: dict[tuple[Any, ...], StoredForms] = {}
        if self.dialect == "sqlite":
            sql_events.register(self.engine)
        self.marks = Marks(self.engine, self.schema, self.url)
        self.replicas = Replicas(self.engine, source.options.get("replicas") or ())

    @property
    def supports_returning(self) -> bool:
        return bool(self.engine.dialect.delete_returning)

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
        if self._name_folding() and table not in self.tables():
            return None
        try:
            reflected = self.table(table)
        except NoSuchTableError:
            return None
        unknown = {c.name for c in reflected.columns if isinstance(c.type, sa.types.NullType)}
        names = self._declared_types(table) if unknown else {}
        columns = {c.name: ColumnInfo(c.name, names.get(c.name, str(c.type)),
                                      self._temporal(c.type),
                                      bool(c.nullable), isinstance(c.type, sa.String),
                                      _python_type(c.type), **_domain(c.type, self.dialect))
                   for c in reflected.columns}
        return TableInfo(table, columns, tuple(c.name for c in reflected.primary_key.columns))

    def _declared_types(self, table: str) -> dict[str, str]:
        """Column -> type name as the database declares it, for the types SQLAlchemy does not
        know (MariaDB's INET6, an extension's type): messages name them, not 'NULL'."""
        if self.dialect == "postgresql":
            stmt = sa.text("SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
                           "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                           "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = :t "
                           "AND n.nspname = COALESCE(:s, current_schema()) AND a.attnum > 0")
        elif self.dialect in ("mysql", "mariadb"):
            stmt = sa.text("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                           "WHERE TABLE_SCHEMA = COALESCE(:s, DATABASE()) AND TABLE_NAME = :t")
        elif self.dialect == "sqlite":
            stmt = sa.text("SELECT name, type FROM pragma_table_info(:t, COALESCE(:s, 'main'))")
        else:
            return {}
        with self.engine.connect() as conn:
            return {str(name): str(kind).upper()
                    for name, kind in conn.execute(stmt, {"t": table, "s": self.schema})}

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

    def _temporal(self, kind: Any) -> str | None:
        if isinstance(kind, sa.DateTime):
            if self.dialect == "postgresql":
                return "aware" if kind.timezone else "naive"
            if self.dialect in ("mysql", "mariadb") and type(kind).__name__ == "TIMESTAMP":
                return "aware"  # stored in UTC; the session time zone is UTC
            return "naive"
        if isinstance(kind, sa.Date):
            return "date"
        return None

    # -- reading ------------------------------------------------------------------

    def count(self, plan: Plan, ahead: Sequence[Plan] = ()) -> DueCount:
        """One scan of the rule's table for all its figures (:func:`q.tally`), then one
        statement per declared child."""
        table = self.table(plan.table)
        with self.engine.connect() as conn:
            found = conn.execute(q.tally(table, plan, self.dialect, ahead)).one()._mapping
            children = {
                child.table: conn.execute(
                    q.count_children(table, self.table(child.table), child.key, plan,
                                     self.dialect)
                ).scalar_one()
                for child in plan.children
            }
        return DueCount(
            due=int(found["due"]), held=int(found["held"]), total=int(found["total"]),
            oldest_due_event=sql_events.oldest_instant(plan, found["oldest"]),
            children=children,
            blocked={name: int(found[f"blocked_{i}"])
                     for i, name in enumerate(q.blocking_tables(plan))},
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
        table = self.table(plan.table)
        shown: list[Any] = [q.select_batch(table, plan, self.dialect, None, lock=True)]
        keys = [tuple(None for _ in plan.primary_key)]
        if plan.action.columns:
            values = {a.column: None for a in plan.action.columns}
            shown.append(table.update().where(q.key_of(table, plan) == sa.bindparam("key"))
                         .values(values))
        else:
            for child in plan.children:
                ct = self.table(child.table)
                shown.append(ct.delete().where(ct.c[child.key].in_([None])))
            shown.append(q.delete_keys(table, plan, self.dialect, keys))
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
        table = self.table(plan.table)
        width = len(plan.primary_key)
        with writing(self.engine) as conn:
            self._timeouts(conn, plan)
            rows = list(conn.execute(
                q.select_batch(table, plan, self.dialect, after, lock=True)
            ).all())
            if not rows:
                batch = Batch((), 0, after)
                hook(batch, conn)
                return batch
            if plan.action.columns:
                affected = self._anonymize(conn, table, plan, rows, width)
            else:
                affected = self._delete(conn, table, plan, rows, width)
            batch = Batch(tuple(affected), len(rows), tuple(rows[-1][:width]))
            if batch_id is not None and affected:
                self.marks.write(conn, batch_id)
            hook(batch, conn)
        return batch

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
                    rows = tuple(self._anonymize(conn, table, plan, sql_replay.pending(
                        conn, table, self.dialect, plan, found), len(plan.primary_key)))
                else:
                    sql_replay.delete(conn, self.table, self.dialect, plan, found)
                if batch_id is not None and rows:
                    self.marks.write(conn, batch_id)
                hook(Batch(rows, len(recorded), None), conn)
        return Replayed(rows, tuple(found.kept))

    def _timeouts(self, conn: Connection, plan: Plan) -> None:
        """Bound how long a batch waits for locks and runs (numbers, never policy text)."""
        lock_ms = max(1, int(plan.lock_timeout * 1000))
        statement_ms = max(1, int(plan.statement_timeout * 1000))
        if self.dialect == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {lock_ms}")
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {statement_ms}")
        elif self.dialect in ("mysql", "mariadb"):
            conn.exec_driver_sql(
                f"SET SESSION innodb_lock_wait_timeout = {max(1, round(plan.lock_timeout))}")
            if getattr(self.engine.dialect, "is_mariadb", False):
                conn.exec_driver_sql(
                    f"SET SESSION max_statement_time = {plan.statement_timeout:.3f}")
            else:
                conn.exec_driver_sql(f"SET SESSION max_execution_time = {statement_ms}")

    def _delete(
        self, conn: Connection, table: Table, plan: Plan, rows: list[Any], width: int
    ) -> list[AffectedRow]:
        keys = [tuple(r[:width]) for r in rows]
        events = {tuple(r[:width]): r[width] for r in rows}
        affected: list[AffectedRow] = []
        children: list[AffectedRow] = []
        for child in plan.children:
            children.extend(self._delete_children(conn, plan, child.table, child.key,
                                                  child.primary_key, events))
        stmt = q.delete_keys(table, plan, self.dialect, keys)
        pk = [table.c[n] for n in plan.primary_key]
        if self.supports_returning:
            gone = [tuple(r) for r in conn.execute(stmt.returning(*pk)).all()]
        else:
            result = conn.execute(stmt)
            if result.rowcount != len(keys):
                raise RuntimeError(
                    f"{plan.table}: deleted {result.rowcount} rows of {len(keys)} locked; "
                    "rolled back")
            gone = keys
        for key in sorted(gone):
            affected.append(self._row(plan, plan.table, plan.primary_key, key, "delete",
                                      events[key]))
        return affected + children

    def _delete_children(
        self, conn: Connection, plan: Plan, name: str, fk: str, pk_names: tuple[str, ...],
        events: dict[tuple[Any, ...], Any],
    ) -> list[AffectedRow]:
        child = self.table(name)
        parent_ids = [k[0] for k in events]
        pk = [child.c[n] for n in pk_names]
        where = child.c[fk].in_(parent_ids)
        if self.supports_returning:
            rows = conn.execute(child.delete().where(where).returning(*pk, child.c[fk])).all()
        else:
            lock = select(*pk, child.c[fk]).where(where)
            rows = conn.execute(lock if self.dialect == "sqlite" else lock.with_for_update()).all()
            conn.execute(child.delete().where(where))
        width = len(pk_names)
        return [
            self._row(plan, name, pk_names, tuple(r[:width]), "delete", events[(r[width],)])
            for r in sorted(rows, key=lambda r: tuple(r[:width]))
        ]

    def _anonymize(
        self, conn: Connection, table: Table, plan: Plan, rows: list[Any], width: int
    ) -> list[AffectedRow]:
        affected: list[AffectedRow] = []
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
            affected.append(self._row(plan, plan.table, plan.primary_key, key, "anonymize",
                                      row[width]))
        if updates:
            stmt = table.update().where(
                *(table.c[n] == sa.bindparam(f"k_{n}") for n in plan.primary_key)
            ).values({a.column: sa.bindparam(f"v_{a.column}") for a in plan.action.columns})
            conn.execute(stmt, updates)
        return affected

    def _row(
        self, plan: Plan, table: str, names: tuple[str, ...], key: tuple[Any, ...],
        action: str, event_value: Any,
    ) -> AffectedRow:
        return AffectedRow(
            table=table, key=dict(zip(names, key, strict=True)), action=action,
            event_at=plan.event_instant(event_value), due_at=plan.due_instant(event_value),
        )

    def replica_lag(self) -> list[ReplicaLag]:
        """How far each replica is behind (:mod:`sql_replicas`); raises only when a
        PostgreSQL primary cannot be asked."""
        return self.replicas.lag()

    def close(self) -> None:
        self.replicas.close()
        with contextlib.suppress(Exception):  # closing must never mask the error in flight
            self.engine.dispose()
