"""The audit store: append-only, hash-chained records of every run and every change.

Any SQLAlchemy database; the default is a SQLite file. The store is the
framework's own: adapters touch the user's data, the store records it.

A batch is recorded as one ``record`` entry per affected row followed by a
``batch_committed`` entry. When the store shares the target's database, both
are written inside the batch's own transaction. Otherwise the records are
written (and committed) before the target commits, as intents, and the
``batch_committed`` entry follows the target's commit; a batch without it is
reconciled by the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
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
from retention.adapters.protocol import AffectedRow
from retention.audit import chain
from retention.audit.schema import head, log, metadata, runs
from retention.db import create_engine, safe_url, same_database, writing
from retention.errors import AuditError, UrlError

VERIFY_CHUNK = 2000  # entries read per round trip while verifying
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


def iso(instant: dt.datetime) -> str:
    """UTC with microseconds always: equal lengths, so text order is time order under
    any collation (MariaDB's utf8mb4_unicode_ci sorts '.' before '+')."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.UTC)
    return instant.astimezone(dt.UTC).isoformat(timespec="microseconds")


def key_text(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    policy: str
    policy_version: str | None
    policy_sha256: str
    mode: str  # "run" or "dry-run"
    as_of: dt.datetime


class AuditStore:
    """Open (and create if needed) the audit store at ``url``."""

    def __init__(self, url: str, create: bool = True) -> None:
        self.raw_url = url
        self.url = safe_url(url)
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
        # Touch the head row first: it takes the lock that keeps the chain a line.
        conn.execute(head.update().where(head.c.id == 1).values(seq=head.c.seq))
        seq, prev = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).one()
        rows = []
        for entry in entries:
            seq += 1
            row = {name: entry.get(name) for name in (c.name for c in log.columns)}
            row["detail"] = _scrubbed_detail(row["detail"])
            row.update(seq=seq, prev_hash=prev, at=entry.get("at") or now_text())
            row["hash"] = prev = chain.entry_hash(row)
            rows.append(row)
        conn.execute(log.insert(), rows)
        conn.execute(head.update().where(head.c.id == 1).values(seq=seq, hash=prev))

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
        self, run_id: str, rule: str, source: str, batch_id: str, rows: Sequence[AffectedRow],
        committed: bool,
    ) -> list[dict[str, Any]]:
        """The entries for one batch: one per row, then its commit mark when ``committed``."""
        at = now_text()
        entries: list[dict[str, Any]] = [{
            "kind": "record", "run_id": run_id, "batch_id": batch_id, "rule": rule,
            "source": source, "table_name": r.table, "record_key": key_text(r.key),
            "action": r.action, "event_at": iso(r.event_at), "due_at": iso(r.due_at), "at": at,
        } for r in rows]
        if committed:
            entries.append(self.mark(run_id, rule, batch_id, "batch_committed"))
        return entries

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
                until: str | None = None, rule: str | None = None
                ) -> Iterator[dict[str, Any]]:
        """Committed ``record`` entries in chain order (rolled-back intents left out),
        at or after ``since`` and before ``until``, of ``rule`` if given."""
        committed = select(log.c.batch_id).where(log.c.kind == "batch_committed")
        stmt = select(log).where(log.c.kind == "record", log.c.batch_id.in_(committed))
        if run_id is not None:
            stmt = stmt.where(log.c.run_id == run_id)
        if since is not None:
            stmt = stmt.where(log.c.at >= since)
        if until is not None:
            stmt = stmt.where(log.c.at < until)
        if rule is not None:
            stmt = stmt.where(log.c.rule == rule)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=VERIFY_CHUNK).execute(
                stmt.order_by(log.c.seq))
            for row in result:
                yield dict(row._mapping)

    def open_batches(self) -> list[dict[str, Any]]:
        """Batches with records but neither a commit nor a rollback mark (crash leftovers)."""
        closed = select(log.c.batch_id).where(
            log.c.kind.in_(("batch_committed", "batch_rolled_back")))
        stmt = (select(log.c.batch_id, log.c.run_id, log.c.rule, sa.func.count())
                .where(log.c.kind == "record", log.c.batch_id.not_in(closed))
                .group_by(log.c.batch_id, log.c.run_id, log.c.rule))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def verify(self) -> chain.Verdict:
        with self.engine.connect() as conn:
            stored = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).first()
            rows = conn.execution_options(yield_per=VERIFY_CHUNK).execute(
                select(log).order_by(log.c.seq))
            return chain.verify((dict(r._mapping) for r in rows),
                                None if stored is None else (int(stored[0]), str(stored[1])),
                                self._seq_of)

    def _seq_of(self, digest: str) -> int | None:
        """The seq of the entry whose hash is ``digest`` (only asked when the chain breaks)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(log.c.seq).where(log.c.hash == digest)
                                 .order_by(log.c.seq).limit(1)).scalar()
        return None if found is None else int(found)

    def close(self) -> None:
        self.engine.dispose()
