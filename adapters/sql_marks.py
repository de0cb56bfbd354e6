"""Commit markers: proof, in the target database itself, that a batch committed.

When the audit store is another database, a batch's audit entries cannot ride
in its transaction. The batch then inserts one row (its batch id) into
``retention_batch_marks`` in that transaction: the row exists exactly when the
batch committed. To settle a batch left open, :meth:`Marks.committed` reads the
rows; for an id without one it inserts a "not committed" row itself. That
insert waits for a transaction of the batch still in flight (it holds the same
key) and then either fails (the batch committed) or takes the key for good, so
the batch can never commit afterwards: the answer is final.

The table is created outside any batch (MariaDB commits DDL implicitly), and
only when a batch is about to write the first marker: that batch is rolled
back, the table created, and the batch run again (:meth:`Marks.creating`). So a
run that changes nothing, and every reading command, leaves the target as it
was. Rows are deleted once their batches are closed in the audit store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, MetaData, Table, select

from retention.db import writing

MARKS_TABLE = "retention_batch_marks"  # commit markers of batches, in the target itself
PROOF_LOCK_TIMEOUT = 30  # seconds committed() waits for a batch transaction still in flight
CHUNK = 500  # batch ids per IN list
T = TypeVar("T")


class _TableMissing(Exception):
    """A batch is about to write the first marker before the table exists (internal:
    raised inside the batch's transaction so that it rolls back, never escapes)."""


def chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


class Marks:
    """The marker table of one database (and schema)."""

    def __init__(self, engine: Engine, schema: str | None, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self.table = Table(MARKS_TABLE, MetaData(),
                           sa.Column("batch_id", sa.String(48), primary_key=True),
                           sa.Column("committed", sa.Boolean, nullable=False),
                           sa.Column("at", sa.String(40), nullable=False),
                           schema=schema)
        self._ready = False

    def creating(self, needed: bool, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` (one batch transaction that may :meth:`write` a marker when
        ``needed``); if the table is missing then, create it and run the batch again."""
        if needed and not self.present():
            try:
                return attempt()
            except _TableMissing:  # rolled back before anything was written anywhere
                self.ensure()
        return attempt()

    def present(self) -> bool:
        """Whether the table exists (remembered once it does)."""
        self._ready = self._ready or self._exists()
        return self._ready

    def ensure(self) -> None:
        """Create the table if it is missing; never inside a batch's transaction."""
        if self._ready:
            return
        try:
            with self.engine.begin() as conn:
                self.table.create(conn, checkfirst=True)
        except sa.exc.SQLAlchemyError:
            if not self._exists():  # else another runner created it at the same moment
                raise
        self._ready = True

    def _exists(self) -> bool:
        return sa.inspect(self.engine).has_table(MARKS_TABLE, schema=self.table.schema)

    def write(self, conn: Connection, batch_id: str, committed: bool = True) -> None:
        """Insert the marker of ``batch_id`` in ``conn``'s transaction."""
        if not self._ready:
            raise _TableMissing(batch_id)
        at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        conn.execute(self.table.insert().values(batch_id=batch_id, committed=committed, at=at))

    def _read(self, batch_ids: list[str]) -> dict[str, bool]:
        found: dict[str, bool] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(batch_ids):
                rows = conn.execute(select(self.table.c.batch_id, self.table.c.committed)
                                    .where(self.table.c.batch_id.in_(chunk)))
                found.update((str(b), bool(c)) for b, c in rows)
        return found

    def committed(self, batch_ids: list[str]) -> set[str]:
        """See :meth:`retention.adapters.protocol.Adapter.committed`."""
        if not batch_ids:
            return set()
        if not self.present():
            raise LookupError(
                f"table {MARKS_TABLE!r} is missing from {self.url}: whether batch "
                f"{', '.join(batch_ids[:3])} committed cannot be proven")
        found = self._read(batch_ids)
        for batch_id in [b for b in batch_ids if b not in found]:
            try:
                with writing(self.engine) as conn:
                    self._lock_timeout(conn)
                    self.write(conn, batch_id, committed=False)
                found[batch_id] = False
            except sa.exc.IntegrityError:  # the batch committed while this insert waited
                found.update(self._read([batch_id]))
                if batch_id not in found:
                    raise
        return {b for b in batch_ids if found[b]}

    def _lock_timeout(self, conn: Connection) -> None:
        if self.dialect == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {PROOF_LOCK_TIMEOUT * 1000}")
        elif self.dialect in ("mysql", "mariadb"):
            conn.exec_driver_sql(f"SET SESSION innodb_lock_wait_timeout = {PROOF_LOCK_TIMEOUT}")
        # SQLite: the writer waits up to retention.db.SQLITE_BUSY_TIMEOUT for the lock.

    def forget(self, batch_ids: list[str]) -> None:
        """Delete the markers of ``batch_ids`` (closed in the audit store)."""
        if not batch_ids or not self.present():
            return
        with writing(self.engine) as conn:
            for chunk in chunks(batch_ids):
                conn.execute(self.table.delete().where(self.table.c.batch_id.in_(chunk)))
