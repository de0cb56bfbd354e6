"""The audit store: append-only, hash-chained records of every run and every change.

Any SQLAlchemy database; the default is a SQLite file. The store is the
framework's own: adapters touch the user's data, the store records it.

A batch is recorded as one ``records`` entry per table it changed (the records
compactly in its detail, :mod:`retention.audit.records`) followed by a
``batch_committed`` entry. When the store shares the target's database, both
are written inside the batch's own transaction. Otherwise the records are
written (and committed) before the target commits, as intents, and the
``batch_committed`` entry follows the target's commit; a batch without it is
reconciled by the next run. Stores written by earlier versions hold one
``record`` entry per row instead; both are read everywhere.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from retention import secrets, urls
from retention.adapters.protocol import Removed
from retention.audit import chain, records
from retention.audit.records import KINDS, iso, key_text
from retention.audit.schema import head, log, metadata, runs
from retention.db import create_engine, safe_url, same_database, writing
from retention.errors import AuditError, UrlError

__all__ = ["AuditStore", "RunInfo", "iso", "key_text", "now_text"]

VERIFY_CHUNK = 2000  # small entries read per round trip while reading the whole log
RECORDS_CHUNK = 4  # ``records`` entries read per round trip (each holds a whole batch)
CREATE_ATTEMPTS = 8  # tries to create the tables while other processes do the same


def _unreachable(url: str, exc: Exception) -> AuditError:
    cause = getattr(exc, "orig", None) or exc
    bad_url = isinstance(exc, sa.exc.ArgumentError)
    return AuditError(f"cannot open the audit store {url}: {type(cause).__name__}",
                      exit_code=2 if bad_url else 1)


def _scrubbed_detail(detail: Any) -> Any:
    """An entry's ``detail`` (JSON text, usually) with every remembered password masked."""
    if not isinstance(detail, str):
        return detail
    try:
        data = json.loads(detail)
    except ValueError:
        return secrets.scrub(detail)
    clean = secrets.scrub_data(data)
    return detail if clean == data else json.dumps(clean, sort_keys=True, default=str)


def now_text() -> str:
    return iso(dt.datetime.now(dt.UTC))


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    policy: str
    policy_version: str | None
    policy_sha256: str
    mode: str  # "run" or "dry-run"
    as_of: dt.datetime


_COLUMNS = tuple(c.name for c in log.columns)
_TEXT_BYTES = {"TINYTEXT": 255, "TEXT": 65535, "MEDIUMTEXT": 16777215}  # MySQL, at most


class AuditStore:
    """Open (and create if needed) the audit store at ``url``."""

    def __init__(self, url: str, create: bool = True) -> None:
        self.raw_url = url
        self.url = safe_url(url)
        self._lz4: bool | None = None  # PostgreSQL: whether TOAST can compress with lz4
        self._limit: int | None = None  # bytes an entry's detail holds (None: any)
        self._limit_known = False
        try:
            self.engine = create_engine(url)
            if create:
                self._create()
        except UrlError as exc:
            raise AuditError(f"cannot open the audit store: {exc.reason}") from None
        except sa.exc.SQLAlchemyError as exc:
            raise _unreachable(self.url, exc) from None

    def _create(self) -> None:
        """Create the tables; replicas starting together on a new store may race for it."""
        for attempt in range(CREATE_ATTEMPTS):
            try:
                with writing(self.engine) as conn:  # SQLite: take the write lock first
                    metadata.create_all(conn)
                self._ensure_head()
                return
            except sa.exc.SQLAlchemyError:
                if attempt == CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * (attempt + 1) + random.uniform(0, 0.1))

    def _ensure_head(self) -> None:
        with self.engine.begin() as conn:
            if conn.execute(select(head.c.id)).first() is None:
                with contextlib.suppress(IntegrityError):  # another process created it first
                    conn.execute(head.insert().values(id=1, seq=0, hash=chain.GENESIS))

    @classmethod
    def peek(cls, url: str) -> AuditStore | None:
        """The store at ``url`` if it already exists, opened without creating anything."""
        try:
            parsed = urls.parse(url)
        except UrlError as exc:
            raise AuditError(f"cannot open the audit store: {exc.reason}") from None
        if parsed.get_backend_name() == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                return None
            if not Path(parsed.database).exists():
                return None
        store = cls(url, create=False)
        try:
            if not sa.inspect(store.engine).has_table(head.name):
                store.close()
                return None
        except sa.exc.SQLAlchemyError as exc:
            store.close()
            raise _unreachable(store.url, exc) from None
        return store

    def shares_database_with(self, url: str) -> bool:
        return same_database(self.raw_url, url)

    # -- appending ----------------------------------------------------------------

    def append(self, entries: Sequence[dict[str, Any]], conn: Connection | None = None) -> None:
        """Append ``entries`` to the chain, in ``conn``'s transaction or a new one."""
        if not entries:
            return
        if conn is not None:
            self._append(conn, entries)
            return
        with writing(self.engine) as own:
            self._append(own, entries)

    def _append(self, conn: Connection, entries: Sequence[dict[str, Any]]) -> None:
        self._compress_fast(conn)
        # Touch the head row first: it takes the lock that keeps the chain a line (and
        # reads it in the same round trip where UPDATE ... RETURNING exists).
        touch = head.update().where(head.c.id == 1).values(seq=head.c.seq)
        if conn.dialect.update_returning:
            seq, prev = conn.execute(touch.returning(head.c.seq, head.c.hash)).one()
        else:
            conn.execute(touch)
            seq, prev = conn.execute(select(head.c.seq, head.c.hash)
                                     .where(head.c.id == 1)).one()
        rows = []
        for entry in entries:
            seq += 1
            row = {name: entry.get(name) for name in _COLUMNS}
            if row["kind"] != records.KIND:  # records hold keys and values, never messages
                row["detail"] = _scrubbed_detail(row["detail"])
            row.update(seq=seq, prev_hash=prev, at=entry.get("at") or now_text())
            row["hash"] = prev = chain.entry_hash(row)
            rows.append(row)
        conn.execute(log.insert(), rows)
        conn.execute(head.update().where(head.c.id == 1).values(seq=seq, hash=prev))

    def _compress_fast(self, conn: Connection) -> None:
        """PostgreSQL >= 14 built with lz4: store long entries (whole batches) with lz4
        instead of pglz, which costs more than writing them. Set once per connection (its
        pool record remembers it), not per batch: a round trip fewer per batch. A SET that
        a rollback undid leaves pglz in use on that connection: slower, nothing else."""
        if conn.dialect.name != "postgresql":
            return
        if self._lz4 is None:
            self._lz4 = bool(conn.exec_driver_sql(
                "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' "
                "AND 'lz4' = ANY(enumvals)").scalar())
        info = conn.connection.info
        if self._lz4 and not info.get("retention_lz4"):
            conn.exec_driver_sql("SET default_toast_compression = 'lz4'")
            info["retention_lz4"] = True

    def start_run(self, run: RunInfo) -> None:
        started = now_text()
        with writing(self.engine) as conn:
            conn.execute(runs.insert().values(
                run_id=run.run_id, policy=run.policy, policy_version=run.policy_version,
                policy_sha256=run.policy_sha256, mode=run.mode, as_of=iso(run.as_of),
                started_at=started,
            ))
            self._append(conn, [{
                "kind": "run_started", "run_id": run.run_id, "at": started,
                "detail": json.dumps({
                    "policy": run.policy, "version": run.policy_version,
                    "policy_sha256": run.policy_sha256, "mode": run.mode,
                    "as_of": iso(run.as_of)}, sort_keys=True),
            }])

    def finish_run(self, run_id: str, status: str, summary: list[dict[str, Any]]) -> None:
        finished = now_text()
        summary = secrets.scrub_data(summary)
        detail = json.dumps({"status": status, "rules": summary}, sort_keys=True, default=str)
        with writing(self.engine) as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(
                finished_at=finished, status=status,
                summary=json.dumps(summary, sort_keys=True, default=str)))
            self._append(conn, [{"kind": "run_finished", "run_id": run_id, "at": finished,
                                 "detail": detail}])

    def batch_entries(
        self, run_id: str, rule: str, source: str, batch_id: str, removed: Sequence[Removed],
        reading: records.Reading, committed: bool,
    ) -> list[dict[str, Any]]:
        """The entries for one batch: one ``records`` entry per table it changed, then its
        commit mark when ``committed``. Built before :meth:`append` takes the chain head."""
        at = now_text()
        limit = self.detail_limit()
        entries = [records.entry(run_id, rule, source, batch_id, part, reading, at)
                   for r in removed if r.count
                   for part in records.fitting(r, reading, limit)]
        if committed:
            entries.append(self.mark(run_id, rule, batch_id, "batch_committed"))
        return entries

    def detail_limit(self) -> int | None:
        """How many bytes an entry's detail may hold: None, except in a MySQL or MariaDB
        store made before LONGTEXT details (TEXT, MEDIUMTEXT)."""
        if not self._limit_known:
            if self.engine.dialect.name in ("mysql", "mariadb"):
                for column in sa.inspect(self.engine).get_columns(log.name):
                    if column["name"] == "detail":
                        self._limit = _TEXT_BYTES.get(type(column["type"]).__name__)
            self._limit_known = True
        return self._limit

    def mark(self, run_id: str, rule: str, batch_id: str, kind: str) -> dict[str, Any]:
        return {"kind": kind, "run_id": run_id, "batch_id": batch_id, "rule": rule,
                "at": now_text()}

    # -- reading ------------------------------------------------------------------

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs).order_by(runs.c.started_at.desc(),
                                                      runs.c.run_id).limit(limit))
            return [dict(r._mapping) for r in rows]

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
            return None if row is None else dict(row._mapping)

    def run_ids(self, policy: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(runs.c.run_id).where(runs.c.policy == policy))
                       .scalars())

    def last_rule_runs(self, policy: str, rules: set[str] | None = None
                       ) -> dict[str, dict[str, Any]]:
        """Per rule, its part of the latest finished (non-dry) run of ``policy``.

        Reads runs newest first and stops once every rule in ``rules`` is found.
        """
        stmt = (select(runs).where(runs.c.policy == policy, runs.c.mode == "run",
                                   runs.c.summary.is_not(None))
                .order_by(runs.c.started_at.desc()))
        found: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for run in conn.execution_options(yield_per=200).execute(stmt):
                for rule in json.loads(run.summary or "[]"):
                    found.setdefault(rule["rule"], {**rule, "run_id": run.run_id,
                                                    "started_at": run.started_at,
                                                    "finished_at": run.finished_at})
                if rules is not None and rules <= set(found):
                    break
        return found

    def records(self, run_id: str | None = None, since: str | None = None,
                until: str | None = None, rule: str | None = None,
                exact: bool = False) -> Iterator[dict[str, Any]]:
        """Committed records in chain order (rolled-back intents left out), one dict per
        record in the columns of a ``record`` entry, whatever kind of entry holds them
        (:func:`retention.audit.records.expand`; ``exact`` adds ``event_key``): at or
        after ``since`` and before ``until``, of ``rule`` if given."""
        readers = records.Readers()
        for row in self.record_entries(run_id, since, until, rule):
            yield from records.expand(row, readers, exact)

    def record_entries(self, run_id: str | None = None, since: str | None = None,
                       until: str | None = None, rule: str | None = None
                       ) -> Iterator[dict[str, Any]]:
        """The committed ``records`` and ``record`` entries in chain order, as stored.

        Two passes, each linear: the ids of committed batches (one per batch), then
        the entries in ``seq`` order, streamed (``records`` entries a few per round
        trip, since each holds a whole batch).
        """
        committed_stmt = select(log.c.batch_id).where(log.c.kind == "batch_committed")
        if run_id is not None:
            committed_stmt = committed_stmt.where(log.c.run_id == run_id)
        with self.engine.connect() as conn:
            committed = set(conn.execute(committed_stmt).scalars())
        if not committed:
            return
        where = []
        if run_id is not None:
            where.append(log.c.run_id == run_id)
        if since is not None:
            where.append(log.c.at >= since)
        if until is not None:
            where.append(log.c.at < until)
        if rule is not None:
            where.append(log.c.rule == rule)
        for row in self._stream([log.c.kind == records.KIND, log.c.kind == records.LEGACY_KIND],
                                where):
            if row["batch_id"] in committed:
                yield row

    def _stream(self, kinds: list[Any], where: list[Any]) -> Iterator[dict[str, Any]]:
        """Log rows matching ``where`` and one of ``kinds`` in ``seq`` order, flat in memory:
        ``records`` entries (the first of ``kinds``) are fetched a few at a time, the
        others in large chunks, each from its own connection, merged by ``seq``."""
        with self.engine.connect() as big, self.engine.connect() as small:
            large = big.execution_options(yield_per=RECORDS_CHUNK).execute(
                select(log).where(kinds[0], *where).order_by(log.c.seq))
            rest = small.execution_options(yield_per=VERIFY_CHUNK).execute(
                select(log).where(*kinds[1:], *where).order_by(log.c.seq))
            try:
                yield from heapq.merge((dict(r._mapping) for r in large),
                                       (dict(r._mapping) for r in rest),
                                       key=lambda r: r["seq"])
            finally:  # read to its end or not: unbuffered results must be closed first
                large.close()
                rest.close()

    def open_batches(self) -> list[dict[str, Any]]:
        """Batches with records but neither a commit nor a rollback mark (crash leftovers)."""
        closed = select(log.c.batch_id).where(
            log.c.kind.in_(("batch_committed", "batch_rolled_back")))
        stmt = (select(log.c.batch_id, log.c.run_id, log.c.rule, sa.func.count())
                .where(log.c.kind.in_(KINDS), log.c.batch_id.not_in(closed))
                .group_by(log.c.batch_id, log.c.run_id, log.c.rule))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def verify(self) -> chain.Verdict:
        """Recheck the whole chain, streaming the log (flat memory, linear time)."""
        with self.engine.connect() as conn:
            stored = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).first()
        rows = self._stream([log.c.kind == records.KIND,
                             sa.or_(log.c.kind != records.KIND, log.c.kind.is_(None))], [])
        return chain.verify(rows, None if stored is None else (int(stored[0]), str(stored[1])),
                            self._seq_of)

    def _seq_of(self, digest: str) -> int | None:
        """The seq of the entry whose hash is ``digest`` (only asked when the chain breaks)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(log.c.seq).where(log.c.hash == digest)
                                 .order_by(log.c.seq).limit(1)).scalar()
        return None if found is None else int(found)

    def close(self) -> None:
        self.engine.dispose()
