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
import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from retention.adapters import (
    anonymize,
    sql_events,
    sql_foreign_keys,
    sql_partitions,
    sql_replay,
)
from retention.adapters import sql_statements as q
from retention.adapters.protocol import (
    AffectedRow,
    Batch,
    BatchHook,
    DueCount,
    Recorded,
    Removed,
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
    ChildPlan,
    ColumnInfo,
    ColumnKind,
    ForeignKeyInfo,
    Plan,
    Predicate,
    TableInfo,
)
from retention.policy.rules import Source
from retention.stored import StoredForms

log = structlog.get_logger("retention.adapters.sql")

_POSTCOMPILE = re.compile(r"\(?__\[POSTCOMPILE_\w+\]\)?")
_GROUP_CONCAT_MAX = 1 << 32  # bytes: more than max_allowed_packet lets a result hold
# Key column types whose values PostgreSQL's JSON gives as the audit log writes them.
_JSON_KEYS = (sa.Integer, sa.String, sa.Uuid)
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


def _checked(removed: Removed) -> Removed:
    """``removed`` when its JSON arrays are whole, each with one value per record (an
    aggregate the server cut short must never become an audit entry)."""
    if len(json.loads(removed.keys)) != removed.count or \
            len(json.loads(removed.events)) != removed.count:
        raise RuntimeError(f"{removed.table}: the batch's keys came back incomplete; rolled back")
    return removed


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

    # count(children=False) leaves the declared children out (a run counts them batch by
    # batch; a scan of each child table saved). Not in the Protocol: see run.enforce.
    counts_children_apart = True

    def count(self, plan: Plan, ahead: Sequence[Plan] = (), children: bool = True
              ) -> DueCount:
        """One scan of the rule's table for all its figures (:func:`q.tally`), then one
        statement per declared child (unless ``children`` is False: then none)."""
        table = self.table(plan.table)
        with self.engine.connect() as conn:
            found = conn.execute(q.tally(table, plan, self.dialect, ahead)).one()._mapping
            counted = {
                child.table: conn.execute(
                    q.count_children(table, self.table(child.table), child.key, plan,
                                     self.dialect)
                ).scalar_one()
                for child in plan.children if children
            }
        return DueCount(
            due=int(found["due"]), held=int(found["held"]), total=int(found["total"]),
            oldest_due_event=sql_events.oldest_instant(plan, found["oldest"]),
            children=counted,
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
        """The statements of a rule's first batch (later batches start after the last key
        of the one before)."""
        table = self.table(plan.table)
        shown: list[Any] = []
        if plan.action.columns:
            values = {a.column: None for a in plan.action.columns}
            shown += [q.select_batch(table, plan, self.dialect, None, lock=True),
                      table.update().where(q.key_of(table, plan) == sa.bindparam("key"))
                      .values(values)]
        elif self._one_statement(plan):
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
        table = self.table(plan.table)
        with writing(self.engine) as conn:
            self._timeouts(conn, plan)
            if plan.action.columns:
                batch = self._anonymize(conn, table, plan, after)
            elif self._one_statement(plan):
                batch = self._delete_at_once(conn, table, plan, after)
            elif self._aggregated(plan):
                batch = self._delete_aggregated(conn, table, plan, after)
            else:
                batch = self._delete(conn, table, plan, after)
            if batch_id is not None and batch.changed:
                self.marks.write(conn, batch_id)
            hook(batch, conn)
        return batch

    def _one_statement(self, plan: Plan) -> bool:
        """Whether a batch of ``plan`` runs as one statement (PostgreSQL, :func:`q.delete_batch`):
        a single-column key and key columns whose JSON is what the audit log has always
        written for them (integers, text, UUIDs), no child table that is the rule's own."""
        if self.dialect != "postgresql" or len(plan.primary_key) != 1:
            return False
        tables = [(plan.table, plan.primary_key)] + [(c.table, c.primary_key)
                                                     for c in plan.children]
        if any(c.table == plan.table for c in plan.children):
            return False
        return all(isinstance(self.table(name).c[col].type, _JSON_KEYS)
                   for name, columns in tables for col in columns)

    def _aggregated(self, plan: Plan) -> bool:
        """Whether the database builds a batch's JSON arrays itself (MariaDB >= 10.5,
        ``JSON_ARRAYAGG``): integer keys and a date or time event column, so that no
        row passes through the driver."""
        version = self.engine.dialect.server_version_info or ()
        if not (getattr(self.engine.dialect, "is_mariadb", False) and version >= (10, 5)):
            return False
        if not self.use_returning:  # a server like MySQL or MariaDB < 10.5 (see above)
            return False
        if plan.predicate is not Predicate.RANGE or len(plan.primary_key) != 1:
            return False
        if any(c.table == plan.table or len(c.primary_key) != 1 for c in plan.children):
            return False
        return all(isinstance(self.table(name).c[col].type, sa.Integer)
                   for name, col in [(plan.table, plan.primary_key[0])]
                   + [(c.table, c.primary_key[0]) for c in plan.children])

    def _delete_aggregated(self, conn: Connection, table: Table, plan: Plan,
                           after: tuple[Any, ...] | None) -> Batch:
        """MariaDB: lock the batch and its children and read them as JSON arrays, then
        delete children and parents by key range; every count must match."""
        count, last, keys, events = conn.execute(
            q.locked_batch_json(table, plan, self.dialect, after)).one()
        if not count:
            return Batch((), 0, after)
        upto = (last,)
        removed = [_checked(Removed(plan.table, "delete", plan.primary_key, int(count), keys,
                                    events))]
        for child in plan.children:
            ct = self.table(child.table)
            found, child_keys, child_events = conn.execute(
                q.children_json(table, ct, child, plan, self.dialect, after, upto)).one()
            deleted = conn.execute(ct.delete().where(q.children_in_range(
                table, ct, child.key, plan, self.dialect, after, upto))).rowcount
            if deleted != found:
                raise RuntimeError(f"{child.table}: deleted {deleted} rows of {found} locked; "
                                   "rolled back")
            if found:
                removed.append(_checked(Removed(child.table, "delete", child.primary_key,
                                                int(found), child_keys, child_events)))
        deleted = conn.execute(q.delete_range(table, plan, self.dialect, after, upto)).rowcount
        if deleted != count:
            raise RuntimeError(f"{plan.table}: deleted {deleted} rows of {count} locked; "
                               "rolled back")
        return Batch((), int(count), upto, tuple(removed))

    def _delete_at_once(self, conn: Connection, table: Table, plan: Plan,
                        after: tuple[Any, ...] | None) -> Batch:
        children = [(c, self.table(c.table)) for c in plan.children]
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

    def _delete(self, conn: Connection, table: Table, plan: Plan,
                after: tuple[Any, ...] | None) -> Batch:
        """Select and lock the batch, then delete its children and it by key range."""
        rows = conn.execute(q.select_batch(table, plan, self.dialect, after, lock=True)).all()
        if not rows:
            return Batch((), 0, after)
        width = len(plan.primary_key)
        last = tuple(rows[-1][:width])
        removed = [Removed.of(plan.table, "delete", plan.primary_key, rows,
                              [r[width] for r in rows])]
        events = {r[0]: r[width] for r in rows} if plan.children else {}
        for child in plan.children:
            removed.append(self._delete_children(conn, table, plan, child, after, last, events))
        deleted = conn.execute(q.delete_range(table, plan, self.dialect, after, last)).rowcount
        if deleted != len(rows):
            raise RuntimeError(f"{plan.table}: deleted {deleted} rows of {len(rows)} locked; "
                               "rolled back")
        return Batch((), len(rows), last, tuple(r for r in removed if r.count))

    def _delete_children(self, conn: Connection, table: Table, plan: Plan, child: ChildPlan,
                         after: tuple[Any, ...] | None, last: tuple[Any, ...],
                         events: dict[Any, Any]) -> Removed:
        ct = self.table(child.table)
        pk = [ct.c[n] for n in child.primary_key]
        fk = ct.c[child.key]
        where = q.children_in_range(table, ct, child.key, plan, self.dialect, after, last)
        if self.supports_returning:
            rows = conn.execute(ct.delete().where(where).returning(*pk, fk)).all()
        else:
            lock = select(*pk, fk).where(where)
            rows = conn.execute(lock if self.dialect == "sqlite" else lock.with_for_update()
                                ).all()
            deleted = conn.execute(ct.delete().where(where)).rowcount
            if deleted != len(rows):
                raise RuntimeError(f"{child.table}: deleted {deleted} rows of {len(rows)} "
                                   "locked; rolled back")
        width = len(pk)
        rows = sorted(rows, key=lambda r: tuple(r[:width]))
        return Removed.of(child.table, "delete", child.primary_key, rows,
                          [events[r[width]] for r in rows])

    def _anonymize(self, conn: Connection, table: Table, plan: Plan,
                   after: tuple[Any, ...] | None) -> Batch:
        rows = conn.execute(q.select_batch(table, plan, self.dialect, after, lock=True)).all()
        if not rows:
            return Batch((), 0, after)
        width = len(plan.primary_key)
        keys, events = self._anonymize_rows(conn, table, plan, rows, width)
        changed = Removed.of(plan.table, "anonymize", plan.primary_key, keys, events)
        return Batch((), len(rows), tuple(rows[-1][:width]),
                     (changed,) if changed.count else ())

    def _anonymize_rows(self, conn: Connection, table: Table, plan: Plan, rows: Sequence[Any],
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
                    keys, events = self._anonymize_rows(conn, table, plan, sql_replay.pending(
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
